//! Callers of the API reach the active planner only. In Kubernetes the API's Service has no
//! selector: its addresses come from one EndpointSlice, and the active planner writes its own
//! pod address there when it takes over. Callers follow the lease at once, without waiting
//! for a dead pod to be marked unready, and a standby (ready, so rollouts and drains can
//! count it, but serving no API) never gets a caller.
//!
//! Fenced by the lease: the slice carries the epoch (lease revision) of the planner that
//! wrote it (annotation `baton.dev/epoch`), and a planner never overwrites a later epoch's
//! address. A write is a replace with the resourceVersion read just before, so two writers
//! at once cannot both win. The active planner checks the slice again every
//! [`RECHECK`] and puts its address back if something else changed it.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The annotation naming the epoch of the planner whose address the slice holds.
const EPOCH: &str = "baton.dev/epoch";

/// How often the active planner checks that the slice still names it.
const RECHECK: Duration = Duration::from_secs(30);

/// How long it waits before trying again after a failed write (the API server restarting,
/// RBAC missing): the Service sends callers nowhere meanwhile, so the wait stays short.
const RETRY: Duration = Duration::from_secs(2);

/// What the active planner advertises.
#[derive(Clone, Debug)]
pub(crate) struct Advertisement {
    /// The EndpointSlice's name, in the client's namespace (the pod's own in a cluster).
    pub slice: String,
    /// The pod's address (the downward API's `status.podIP`).
    pub address: IpAddr,
    /// The API's port, named `api` as the Service's port is.
    pub port: u16,
}

/// What one look at the slice found.
#[derive(Debug, PartialEq, Eq)]
enum Claim {
    /// The slice named another address or epoch; it names this planner now.
    Written,
    /// It already named this planner.
    Current,
    /// A planner with a later epoch wrote it: this one lost the lease and stops soon.
    Superseded(u64),
}

/// Keeps the slice naming this planner, under lease `epoch`, until `shutdown`.
pub(crate) async fn run(
    client: kube::Client,
    advertisement: Advertisement,
    epoch: u64,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let api: Api<EndpointSlice> = Api::default_namespaced(client);
    loop {
        let wait = match claim(&api, &advertisement, epoch).await {
            Ok(Claim::Written) => {
                info!(slice = %advertisement.slice, address = %advertisement.address, epoch, "the API's Service sends callers to this planner");
                RECHECK
            }
            Ok(Claim::Current) => RECHECK,
            Ok(Claim::Superseded(theirs)) => {
                warn!(slice = %advertisement.slice, epoch, theirs, "a planner with a later lease advertises itself; this one leaves the slice alone");
                RECHECK
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Duration::from_millis(200),
            Err(e) => {
                warn!(slice = %advertisement.slice, error = %e, "the API's EndpointSlice could not be written; trying again");
                RETRY
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Reads the slice and, unless a later epoch wrote it or it already names this planner,
/// replaces its endpoints and ports with this planner's.
async fn claim(
    api: &Api<EndpointSlice>,
    advertisement: &Advertisement,
    epoch: u64,
) -> Result<Claim, kube::Error> {
    let mut slice = api.get(&advertisement.slice).await?;
    let theirs = slice
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(EPOCH))
        .and_then(|e| e.parse::<u64>().ok())
        .unwrap_or(0);
    if theirs > epoch {
        return Ok(Claim::Superseded(theirs));
    }
    let (endpoints, ports) = wanted(advertisement);
    if theirs == epoch && slice.endpoints == endpoints && slice.ports == ports {
        return Ok(Claim::Current);
    }
    slice
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(EPOCH.to_owned(), epoch.to_string());
    slice.endpoints = endpoints;
    slice.ports = ports;
    api.replace(&advertisement.slice, &PostParams::default(), &slice)
        .await?;
    Ok(Claim::Written)
}

/// The endpoints and ports that send the Service's callers to this planner.
fn wanted(advertisement: &Advertisement) -> (Vec<Endpoint>, Option<Vec<EndpointPort>>) {
    let endpoint = Endpoint {
        addresses: vec![advertisement.address.to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(true),
            serving: Some(true),
            terminating: Some(false),
        }),
        ..Default::default()
    };
    let port = EndpointPort {
        name: Some("api".to_owned()),
        port: Some(i32::from(advertisement.port)),
        protocol: Some("TCP".to_owned()),
        ..Default::default()
    };
    (vec![endpoint], Some(vec![port]))
}
