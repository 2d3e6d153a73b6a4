//! The planner's window on ELBv2 for Cells: every `--sync-period` (and as soon as a Cell is
//! applied) it lists the account's target groups with their tags, once for every Cell, reads
//! each Cell's listener rule, and hands what it saw to the planner loop as an observation.
//! The decision core does the rest; this task only reads.
//!
//! A planner that watches a cluster reads okra's `AWSTargetGroup` objects too: a Cell whose
//! namespace holds any matching its selector (by label) takes its target groups from them,
//! as okra's did; otherwise from the tags. The observation says which.
//!
//! The AWS client is built from the standard chain the first time there is a Cell, so a
//! planner without Cells never reads AWS settings. Its calls time out
//! ([`baton_alb::Timeouts`]): a read that hangs fails, the Cell's observation says so, and the
//! discovery goes on with the next Cell.

use std::sync::Arc;
use std::time::Duration;

use baton_alb::{Alb, TargetGroup};
use baton_schemas::cell::Cell;
use baton_schemas::wire::Timestamp;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::service::Command;
use baton_core::{Observation, SeenTargetGroup, TargetGroupSource};

/// How the discovery runs.
#[derive(Clone)]
pub struct DiscoveryConfig {
    /// The time between two discoveries.
    pub sync_period: Duration,
    /// Woken when a Cell is applied (see [`crate::service::PlannerConfig::discover_now`]).
    pub discover_now: Arc<Notify>,
    /// The ELBv2 client; `None` builds one from the standard chain when first needed.
    pub alb: Option<Alb>,
    /// The cluster whose `AWSTargetGroup` objects are read, when the planner watches one.
    pub kube: Option<kube::Client>,
    /// The namespace watched, for Cells applied without one.
    pub namespace: Option<String>,
}

/// Whether the account's target groups could be read at the last discovery: a failure is
/// logged when it starts, not at every sync period while it lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listing {
    /// The last listing worked (or there was none yet).
    Working,
    /// The last listing failed; the failure was logged.
    Failing,
}

/// Discovers until `shutdown` fires or the planner loop goes away.
pub async fn run(
    config: DiscoveryConfig,
    commands: mpsc::Sender<Command>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut alb = config.alb;
    let mut ticks = tokio::time::interval(config.sync_period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut listing = Listing::Working;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = ticks.tick() => {}
            _ = config.discover_now.notified() => {}
        }
        let (reply, answer) = oneshot::channel();
        if commands.send(Command::CellSpecs { reply }).await.is_err() {
            return Ok(());
        }
        let Ok(cells) = answer.await else {
            return Ok(());
        };
        if cells.is_empty() {
            continue;
        }
        let alb = match &alb {
            Some(alb) => alb,
            None => alb.insert(Alb::from_env().await),
        };
        let at = Timestamp::now();
        let groups = alb.tagged_target_groups().await;
        listing = match (&groups, listing) {
            (Err(e), Listing::Working) => {
                warn!(error = %e, "discovering target groups failed; trying again every sync period");
                Listing::Failing
            }
            (Err(_), Listing::Failing) => Listing::Failing,
            (Ok(all), _) => {
                debug!(
                    target_groups = all.len(),
                    cells = cells.len(),
                    "target groups discovered"
                );
                Listing::Working
            }
        };
        for cell in cells {
            let listed = match &config.kube {
                Some(kube) => listed_target_groups(kube, &cell, config.namespace.as_deref()).await,
                None => Ok(None),
            };
            // A listing that failed says so: it does not switch the Cell to the tags.
            let (source, chosen) = match &listed {
                Ok(Some(listed)) => (TargetGroupSource::AwsTargetGroup, Ok(listed.as_slice())),
                Err(e) => (TargetGroupSource::AwsTargetGroup, Err(e.clone())),
                Ok(None) => (
                    TargetGroupSource::Tags,
                    groups
                        .as_ref()
                        .map(Vec::as_slice)
                        .map_err(|e| e.to_string()),
                ),
            };
            let observation = observe(alb, &cell, chosen, source, at).await;
            let (reply, answer) = oneshot::channel();
            let command = Command::Observe {
                observation: Box::new(observation),
                reply,
            };
            if commands.send(command).await.is_err() || answer.await.is_err() {
                return Ok(());
            }
        }
    }
}

/// Builds one Cell's observation from the account's target groups and its rule.
async fn observe(
    alb: &Alb,
    cell: &Cell,
    groups: Result<&[TargetGroup], String>,
    source: TargetGroupSource,
    at: Timestamp,
) -> Observation {
    let selector = cell.alb().target_group_selector.match_labels;
    let target_groups = match groups {
        Ok(all) => Ok(all
            .iter()
            .filter(|g| selector.iter().all(|(k, v)| g.tags.get(k) == Some(v)))
            .map(|g| SeenTargetGroup {
                arn: g.arn.clone(),
                name: g.name.clone(),
                tags: g.tags.clone(),
            })
            .collect()),
        Err(e) => Err(e.to_string()),
    };
    let rule = alb
        .find_rule(&cell.alb().listener_arn, cell.priority())
        .await
        .map(|found| found.map(|r| r.target_groups()))
        .map_err(|e| e.to_string());
    if let Err(e) = &rule {
        warn!(cell = %cell.metadata.name, error = %e, "reading the cell's listener rule failed");
    }
    Observation {
        cell: cell.metadata.name.clone(),
        at,
        target_groups,
        source,
        rule,
    }
}

/// Returns the target groups okra's `AWSTargetGroup` objects in the Cell's namespace name,
/// their labels as their tags, when any match the Cell's selector; `None` when none do (or
/// the kind is not installed): the tags serve then. A listing that fails is an error.
async fn listed_target_groups(
    kube: &kube::Client,
    cell: &Cell,
    watched: Option<&str>,
) -> Result<Option<Vec<TargetGroup>>, String> {
    use baton_schemas::okra::{AwsTargetGroup, LabelSelector, target_group_problems};
    use kube::api::{Api, DynamicObject, ListParams};
    let kind = &baton_schemas::crd::OKRA_KINDS[0];
    let resource = crate::cluster::api_resource(kind);
    let namespace = cell.metadata.namespace.as_deref().or(watched);
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(kube.clone(), ns, &resource),
        None => Api::all_with(kube.clone(), &resource),
    };
    let selector = LabelSelector {
        match_labels: cell.alb().target_group_selector.match_labels.clone(),
    };
    let listed = match api
        .list(&ListParams::default().labels(&selector.query()))
        .await
    {
        Ok(listed) => listed,
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(None),
        Err(e) => return Err(format!("listing AWSTargetGroups: {e}")),
    };
    let groups: Vec<TargetGroup> = listed
        .items
        .into_iter()
        .filter_map(|object| {
            let name = object.metadata.name.clone().unwrap_or_default();
            let value = serde_json::to_value(&object).ok()?;
            match serde_json::from_value::<AwsTargetGroup>(value) {
                Ok(t) if target_group_problems(&t).is_empty() => Some(TargetGroup {
                    name: t.spec.arn.split('/').nth(1).unwrap_or(&name).to_owned(),
                    arn: t.spec.arn,
                    tags: t.metadata.labels,
                }),
                Ok(t) => {
                    let problems = target_group_problems(&t);
                    warn!(cell = %cell.metadata.name, %name, problems = ?problems, "AWSTargetGroup left out");
                    None
                }
                Err(e) => {
                    warn!(cell = %cell.metadata.name, %name, error = %e, "AWSTargetGroup left out");
                    None
                }
            }
        })
        .collect();
    Ok((!groups.is_empty()).then_some(groups))
}
