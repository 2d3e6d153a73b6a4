//! Which planner acts: the one holding the lease on the bus ([`baton_bus::Lease`]). Any number
//! of planners run, each with its own data directory or sharing one; the others stand by
//! until the lease is free, then catch up with the bus's state stream and act.
//!
//! The lease is kept on a thread of its own with a connection of its own: the planner's loop
//! may hold its thread for seconds (a workflow of 100 000 nodes applied), and a renewal must
//! not wait for it. A holder gives up when it has not renewed for three quarters of the ttl,
//! counted from before it sent its last successful renewal, so it stops acting before the
//! server can drop its lease; and when a renewal finds another revision, it knows at once.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use baton_bus::{Bus, BusConfig, LeaseError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The lease's settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// The bus's URL, for the lease's own connection.
    pub url: String,
    /// The bus's settings.
    pub bus: BusConfig,
    /// How long the server keeps the lease after its last renewal: a dead planner's standby
    /// takes over this long after the last renewal, at most.
    pub ttl: Duration,
}

/// The lease's default ttl: a standby takes over within 10 s of the active planner's death,
/// and a holder survives 7.5 s of a bus that does not answer, longer than a NATS cluster
/// takes to choose new stream leaders when a member dies.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// The lease as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// Not held yet: another planner holds it.
    Waiting,
    /// Held since revision `epoch`, and surely until `until`: three quarters of the ttl
    /// after the last renewal was sent, before the server can drop it.
    Held {
        /// The revision it was taken at.
        epoch: u64,
        /// Until when the planner may act without word from the lease's thread.
        until: Instant,
    },
    /// Lost, or never to be held (why): the planner must stop acting at once.
    Lost(String),
}

impl LeaseState {
    /// Returns why the planner may not act now: the lease is lost, or its thread has not
    /// renewed it in time (the process was paused, say, and the thread has not run since).
    pub fn refuses_acting(&self, now: Instant) -> Option<String> {
        match self {
            LeaseState::Held { until, .. } if now < *until => None,
            LeaseState::Held { .. } => Some("the lease was not renewed in time".to_owned()),
            LeaseState::Waiting => Some("the lease is not held".to_owned()),
            LeaseState::Lost(why) => Some(why.clone()),
        }
    }
}

/// Returns this data directory's planner id, made the first time: a planner restarted on the
/// same directory is the same planner, and takes its own lease back without waiting for it to
/// expire (the store's file lock proves the earlier process gone).
pub fn planner_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("planner-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        _ => {
            let id = baton_schemas::ids::new_run_id().to_string();
            std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
            Ok(id)
        }
    }
}

/// Starts keeping the lease for planner `id`; the returned watch says how it stands. The
/// thread ends, giving the lease up, when `release` fires.
pub fn keep(
    config: LeaseConfig,
    id: String,
    release: CancellationToken,
) -> anyhow::Result<watch::Receiver<LeaseState>> {
    let (state, watched) = watch::channel(LeaseState::Waiting);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("baton-lease".into())
        .spawn(move || runtime.block_on(hold(config, id, state, release)))?;
    Ok(watched)
}

async fn hold(
    config: LeaseConfig,
    id: String,
    state: watch::Sender<LeaseState>,
    shutdown: CancellationToken,
) {
    let lose = |why: String| {
        warn!(reason = %why, "the planner lease is lost; this planner stops acting");
        state.send_replace(LeaseState::Lost(why));
    };
    let bus = match Bus::connect(&config.url, config.bus.clone(), Duration::from_secs(60)).await {
        Ok(bus) => bus,
        Err(e) => return lose(format!("the lease's connection: {e}")),
    };
    let holder = format!("{id} {}", std::process::id());
    let give_up_after = config.ttl * 3 / 4;
    let mut standing_by = false;
    let (mut lease, mut renewed) = loop {
        let sent = Instant::now();
        match bus.try_lease(&holder, &id, config.ttl).await {
            Ok(Some(lease)) => break (lease, sent),
            Ok(None) if !standing_by => {
                let current = bus.lease_holder(config.ttl).await.ok().flatten();
                info!(holder = ?current, "another planner holds the lease; standing by");
                standing_by = true;
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "the lease could not be asked for; trying again"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(config.ttl / 10) => {}
        }
    };
    info!(epoch = lease.epoch, "this planner holds the lease");
    state.send_replace(LeaseState::Held {
        epoch: lease.epoch,
        until: renewed + give_up_after,
    });
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                lease.release().await;
                return;
            }
            _ = tokio::time::sleep(config.ttl / 5) => {}
        }
        let sent = Instant::now();
        match lease.renew().await {
            Ok(()) => {
                renewed = sent;
                state.send_replace(LeaseState::Held {
                    epoch: lease.epoch,
                    until: renewed + give_up_after,
                });
            }
            Err(LeaseError::Lost) => return lose("another planner holds the lease now".into()),
            Err(LeaseError::Bus(e)) => warn!(error = %e, "the lease was not renewed"),
        }
        if renewed.elapsed() >= give_up_after {
            return lose(format!(
                "not renewed for {:?}, near its ttl of {:?}",
                renewed.elapsed(),
                config.ttl
            ));
        }
    }
}
