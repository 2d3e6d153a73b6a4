//! `baton bench --takeover-kills N`: how long the planners of a three-node NATS cluster
//! (streams at R3) go without a leader when the active one dies. Two planners, each with its
//! own data directory, hold the lease in turn; a long chain of noop nodes runs; the active
//! planner is killed with SIGKILL N times, and each time the bench measures the time from the
//! kill to the first job published after it (necessarily by the new leader), then starts the
//! killed planner again as the standby.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::process::Child;
use tracing::info;

use super::cluster::{MEMBERS, cluster};
use super::{Baton, Seen, observe, percentile, watch};
use crate::nats_server::free_port;

/// The takeover figures.
#[derive(Debug, Serialize)]
pub(crate) struct TakeoverReport {
    pub(crate) takeover_kills: usize,
    pub(crate) takeover_lease_ttl_ms: u128,
    /// The nodes of the chain that runs through the kills: the state a new leader loads.
    pub(crate) takeover_chain_nodes: usize,
    pub(crate) takeover_p50_s: f64,
    pub(crate) takeover_max_s: f64,
    /// Every kill's figure, in order.
    pub(crate) takeover_s: Vec<f64>,
}

/// One planner of the pair: its own data directory and API port.
struct PlannerSlot {
    name: &'static str,
    port: u16,
    child: Option<Child>,
}

impl PlannerSlot {
    fn spawn(&mut self, baton: &Baton, lease_ttl: Duration) -> anyhow::Result<()> {
        let mut command = baton.command(self.name)?;
        // The measurement follows the planners by their logs: who is active, who stands by.
        if std::env::var_os("BATON_BENCH_LOG").is_none() {
            command.env("BATON_LOG", "warn,baton_planner=info");
        }
        command
            .arg("planner")
            .arg("--data-dir")
            .arg(baton.dir.join(self.name))
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--api-token-file")
            .arg(baton.dir.join("api-tokens.csv"))
            .arg("--lease-ttl")
            .arg(format!("{}ms", lease_ttl.as_millis()));
        self.child = Some(command.spawn()?);
        Ok(())
    }

    fn log(&self, baton: &Baton) -> String {
        std::fs::read_to_string(baton.dir.join(format!("{}.log", self.name))).unwrap_or_default()
    }
}

/// Waits until `slot`'s log has said `text` `times` times, at most `within`.
async fn wait_log(
    baton: &Baton,
    slot: &PlannerSlot,
    text: &str,
    times: usize,
    within: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    while slot.log(baton).matches(text).count() < times {
        if started.elapsed() > within {
            bail!("{} did not say {text:?} within {within:?}", slot.name);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Measures `kills` takeovers with a lease of `lease_ttl`.
pub(crate) async fn takeover(
    program: &Path,
    dir: &Path,
    kills: usize,
    lease_ttl: Duration,
    nodes: usize,
) -> anyhow::Result<TakeoverReport> {
    let (members, url) = cluster(program, dir).await?;
    let result = measure(&url, dir, kills, lease_ttl, nodes).await;
    for member in members {
        member.stop().await;
    }
    result
}

async fn measure(
    url: &str,
    dir: &Path,
    kills: usize,
    lease_ttl: Duration,
    nodes: usize,
) -> anyhow::Result<TakeoverReport> {
    let client = async_nats::ConnectOptions::new()
        .subscription_capacity(1 << 20)
        .connect(baton_bus::server_list(url)?)
        .await?;
    let mut seen = observe(&client).await?;
    let mut slots = [
        PlannerSlot {
            name: "planner-a",
            port: free_port()?,
            child: None,
        },
        PlannerSlot {
            name: "planner-b",
            port: free_port()?,
            child: None,
        },
    ];
    let baton = Baton::new(url, dir, slots[0].port, MEMBERS)?;
    let mut worker = baton
        .command("worker")?
        .args(["worker", "--kinds", "noop", "--concurrency", "256"])
        .spawn()?;
    slots[0].spawn(&baton, lease_ttl)?;
    wait_log(
        &baton,
        &slots[0],
        "this planner is active now",
        1,
        Duration::from_secs(60),
    )
    .await?;
    slots[1].spawn(&baton, lease_ttl)?;
    wait_log(&baton, &slots[1], "standing by", 1, Duration::from_secs(60)).await?;
    // A chain long enough to run through every kill: jobs flow until the end.
    let mut api_up = Instant::now();
    while baton
        .http
        .get(format!("{}/healthz", baton.api))
        .send()
        .await
        .is_err()
    {
        if api_up.elapsed() > Duration::from_secs(30) {
            bail!("the active planner's API did not answer");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    api_up = Instant::now();
    baton
        .apply(
            "takeover",
            (0..nodes).map(|i| {
                let needs = if i == 0 {
                    vec![]
                } else {
                    vec![format!("n{}", i - 1)]
                };
                (format!("n{i}"), needs)
            }),
            true,
        )
        .await
        .context("starting the chain")?;
    info!(after = ?api_up.elapsed(), "chain started");
    let mut figures = Vec::with_capacity(kills);
    let mut active = 0;
    for kill in 0..kills {
        // Jobs flow under the active planner.
        watch(&mut seen, Duration::from_secs(60), |s| {
            matches!(s, Seen::Job { .. })
        })
        .await?;
        let standby = 1 - active;
        let child = slots[active].child.as_mut().context("no active planner")?;
        child.start_kill()?;
        let killed = Instant::now();
        child.wait().await?;
        // Messages the dead planner wrote before it died are in flight for a moment.
        let settle = killed + Duration::from_millis(20);
        let mut at = None;
        watch(&mut seen, Duration::from_secs(60), |s| match s {
            Seen::Job { at: seen_at, .. } if seen_at > settle => {
                at = Some(seen_at);
                true
            }
            _ => false,
        })
        .await
        .with_context(|| format!("no job after kill {kill}"))?;
        let took = at.expect("set when the watch ended").duration_since(killed);
        info!(kill, took = ?took, "takeover");
        figures.push(took.as_secs_f64());
        let times = slots[active].log(&baton).matches("standing by").count() + 1;
        slots[active].spawn(&baton, lease_ttl)?;
        wait_log(
            &baton,
            &slots[active],
            "standing by",
            times,
            Duration::from_secs(60),
        )
        .await?;
        active = standby;
    }
    for slot in &mut slots {
        if let Some(child) = slot.child.as_mut() {
            child.kill().await.ok();
        }
    }
    worker.kill().await.ok();
    let mut sorted: Vec<Duration> = figures
        .iter()
        .map(|s| Duration::from_secs_f64(*s))
        .collect();
    sorted.sort();
    Ok(TakeoverReport {
        takeover_kills: kills,
        takeover_lease_ttl_ms: lease_ttl.as_millis(),
        takeover_chain_nodes: nodes,
        takeover_p50_s: percentile(&sorted, 50.0).as_secs_f64(),
        takeover_max_s: sorted.last().copied().unwrap_or_default().as_secs_f64(),
        takeover_s: figures,
    })
}
