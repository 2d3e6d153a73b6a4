//! What the bench runs through Baton: a chain, a fan-out, concurrent runs, a large DAG,
//! trigger ingest and recovery after a kill.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use async_nats::jetstream::{self, consumer};
use tokio::sync::mpsc;

use super::*;

pub(crate) fn chain_nodes(n: usize) -> impl Iterator<Item = (String, Vec<String>)> {
    (0..n).map(|i| {
        let needs = if i == 0 {
            vec![]
        } else {
            vec![format!("n{}", i - 1)]
        };
        (format!("n{i}"), needs)
    })
}

/// What chains measured, per node: from one job to the next, and its two parts: from a job
/// to its node's end (the worker's share), from that end to the next job (the planner's).
#[derive(Default)]
pub(crate) struct Chain {
    pub(crate) per_node: Vec<Duration>,
    pub(crate) worker: Vec<Duration>,
    pub(crate) planner: Vec<Duration>,
}

impl Chain {
    pub(crate) fn extend(&mut self, other: Chain) {
        self.per_node.extend(other.per_node);
        self.worker.extend(other.worker);
        self.planner.extend(other.planner);
    }
}

/// Times a chain of `n` noop nodes as the bus shows it.
pub(crate) async fn chain_round(
    baton: &Baton,
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    round: usize,
    n: usize,
) -> anyhow::Result<Chain> {
    let run = baton
        .apply(&format!("bench-chain-{round}"), chain_nodes(n), true)
        .await?
        .context("no run started")?;
    let mut jobs: Vec<Instant> = Vec::with_capacity(n);
    let mut ends: Vec<Instant> = Vec::with_capacity(n);
    watch(seen, Duration::from_secs(600), |s| match s {
        Seen::Job { at, run: r, .. } if r == run => {
            jobs.push(at);
            false
        }
        Seen::Finished { at, run: r } if r == run => {
            ends.push(at);
            ends.len() == n
        }
        _ => false,
    })
    .await
    .context("the chain")?;
    ensure!(jobs.len() == n, "{} jobs seen for {n} nodes", jobs.len());
    Ok(Chain {
        per_node: jobs.windows(2).map(|w| w[1] - w[0]).collect(),
        worker: jobs
            .iter()
            .zip(&ends)
            .map(|(j, e)| e.saturating_duration_since(*j))
            .collect(),
        planner: ends
            .iter()
            .zip(&jobs[1..])
            .map(|(e, j)| j.saturating_duration_since(*e))
            .collect(),
    })
}

/// Node transitions per second of one fan-out/fan-in run, from its first job to its last
/// finished node.
pub(crate) async fn fan_out_round(
    baton: &Baton,
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    round: usize,
    n: usize,
) -> anyhow::Result<f64> {
    let middle: Vec<String> = (1..n - 1).map(|i| format!("m{i}")).collect();
    let nodes = std::iter::once(("root".to_owned(), vec![]))
        .chain(middle.iter().map(|m| (m.clone(), vec!["root".to_owned()])))
        .chain(std::iter::once(("sink".to_owned(), middle.clone())));
    let run = baton
        .apply(&format!("bench-fan-{round}"), nodes, true)
        .await?
        .context("no run started")?;
    let (mut first, mut last, mut finished) = (None, None, 0);
    watch(seen, Duration::from_secs(900), |s| match s {
        Seen::Job { at, run: r, .. } if r == run => {
            first.get_or_insert(at);
            false
        }
        Seen::Finished { at, run: r } if r == run => {
            finished += 1;
            last = Some(at);
            finished == n
        }
        _ => false,
    })
    .await
    .context("the fan-out")?;
    let wall = last.zip(first).map(|(l, f)| l - f).unwrap_or_default();
    Ok(n as f64 / wall.as_secs_f64())
}

/// Node transitions per second of `runs` chains of `nodes` started together.
pub(crate) async fn concurrent_runs(
    baton: &Baton,
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    runs: usize,
    nodes: usize,
) -> anyhow::Result<f64> {
    baton.apply("bench-runs", chain_nodes(nodes), false).await?;
    let started = Instant::now();
    let mut ids = std::collections::HashSet::new();
    for _ in 0..runs {
        ids.insert(baton.start("bench-runs").await?);
    }
    let total = runs * nodes;
    let (mut finished, mut last) = (0, started);
    watch(seen, Duration::from_secs(900), |s| match s {
        Seen::Finished { at, run } if ids.contains(&run) => {
            finished += 1;
            last = at;
            finished == total
        }
        _ => false,
    })
    .await
    .context("the concurrent runs")?;
    Ok(total as f64 / (last - started).as_secs_f64())
}

pub(crate) struct Dag {
    pub(crate) accepted: Duration,
    pub(crate) completed: bool,
    pub(crate) wall: Duration,
}

/// One DAG of `width` chains of `depth` nodes under one root: accepted, completed, wall time.
pub(crate) async fn large_dag(
    baton: &Baton,
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    width: usize,
    depth: usize,
) -> anyhow::Result<Dag> {
    let n = width * depth;
    let nodes = (0..depth).flat_map(move |d| {
        (0..width).map(move |w| {
            let needs = if d == 0 {
                vec![]
            } else {
                vec![format!("c{w}-{}", d - 1)]
            };
            (format!("c{w}-{d}"), needs)
        })
    });
    let started = Instant::now();
    let run = baton
        .apply("bench-dag", nodes, true)
        .await?
        .context("no run started")?;
    let accepted = started.elapsed();
    let mut finished = 0;
    watch(seen, Duration::from_secs(1800), |s| match s {
        Seen::Finished { run: r, .. } if r == run => {
            finished += 1;
            finished == n
        }
        _ => false,
    })
    .await
    .context("the large DAG")?;
    let wall = started.elapsed();
    // The run's state, once the planner has applied the last event.
    let mut state = String::new();
    for _ in 0..100 {
        state = baton.state(&run).await?;
        if state == "succeeded" || state == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Dag {
        accepted,
        completed: state == "succeeded",
        wall,
    })
}

/// Trigger messages per second turned into runs: from the first publish to the first job of
/// the last run.
pub(crate) async fn triggers(
    baton: &Baton,
    js: &jetstream::Context,
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    n: usize,
) -> anyhow::Result<f64> {
    baton
        .apply(
            "bench-trigger",
            std::iter::once(("t".to_owned(), vec![])),
            false,
        )
        .await?;
    let subject = format!("{PREFIX}.triggers.bench-trigger");
    let started = Instant::now();
    let publisher = {
        let js = js.clone();
        tokio::spawn(async move {
            for window in (0..n).collect::<Vec<_>>().chunks(1000) {
                let mut acks = Vec::with_capacity(window.len());
                for i in window {
                    let publish = jetstream::message::PublishMessage::build()
                        .payload(format!("trigger {i}").into())
                        .message_id(format!("bench-trigger-{i}"));
                    acks.push(js.send_publish(subject.clone(), publish).await?);
                }
                for ack in acks {
                    ack.await?;
                }
            }
            anyhow::Ok(())
        })
    };
    // Jobs and finished events arrive on two subscriptions, so a run's end may be seen
    // before its job: both are counted in one pass.
    let (mut jobs, mut ends) = (HashSet::with_capacity(n), HashSet::with_capacity(n));
    let (mut both, mut last) = (0, None);
    watch(seen, Duration::from_secs(600), |s| {
        match s {
            Seen::Job { at, run, node } if node == "t" => {
                if !jobs.contains(&run) && ends.contains(&run) {
                    both += 1;
                }
                jobs.insert(run);
                if jobs.len() == n {
                    last = Some(at);
                }
            }
            Seen::Finished { run, .. } => {
                if !ends.contains(&run) && jobs.contains(&run) {
                    both += 1;
                }
                ends.insert(run);
            }
            _ => {}
        }
        last.is_some() && both == n
    })
    .await
    .context("the triggers")?;
    publisher.await??;
    let last = last.expect("checked by the watch");
    let per_second = n as f64 / (last - started).as_secs_f64();
    // Let the planner apply the last events before anything else is measured.
    planner_idle(js).await?;
    Ok(per_second)
}

/// Waits until the planner has taken and acknowledged every event on the bus.
pub(crate) async fn planner_idle(js: &jetstream::Context) -> anyhow::Result<()> {
    let stream = js
        .get_stream(format!("{}_EVENTS", PREFIX.to_uppercase()))
        .await?;
    let mut consumer: consumer::PullConsumer = stream
        .get_consumer("planner-events")
        .await
        .map_err(|e| anyhow::anyhow!("the planner's consumer: {e}"))?;
    let started = Instant::now();
    loop {
        let info = consumer.info().await?;
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            return Ok(());
        }
        ensure!(
            started.elapsed() < Duration::from_secs(300),
            "the planner did not catch up with its events"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Returns how many events the planner has applied (its consumer's acknowledged floor).
pub(crate) async fn events_applied(js: &jetstream::Context) -> anyhow::Result<u64> {
    let mut stream = js
        .get_stream(format!("{}_EVENTS", PREFIX.to_uppercase()))
        .await?;
    Ok(stream.info().await?.state.messages)
}

/// The time from a planner's start to the first job of a run triggered at that moment.
pub(crate) async fn recovery(
    js: &jetstream::Context,
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    restarted: Instant,
) -> anyhow::Result<Duration> {
    let publish = jetstream::message::PublishMessage::build()
        .payload("after restart".into())
        .message_id("bench-recovery");
    js.send_publish(format!("{PREFIX}.triggers.bench-trigger"), publish)
        .await?
        .await?;
    let mut at = restarted;
    watch(seen, Duration::from_secs(300), |s| match s {
        Seen::Job { at: a, node, .. } if node == "t" && a > restarted => {
            at = a;
            true
        }
        _ => false,
    })
    .await
    .context("the restarted planner")?;
    Ok(at - restarted)
}
