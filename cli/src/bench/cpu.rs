//! What the bench reads of its processes (CPU seconds, peak memory) and the statistics it
//! prints (medians, percentiles).

use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio::process::Child;

/// How many rounds the floor and Baton take turns for.
pub(crate) const ROUNDS: usize = 3;

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// The processes whose CPU time the bench reads.
pub(crate) struct Processes {
    pub(crate) planner: u32,
    pub(crate) worker: u32,
    /// Every nats-server of the bus (three for a cluster): their times are summed.
    pub(crate) nats: Vec<u32>,
}

/// CPU seconds used so far, by process.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Cpu {
    pub(crate) planner: f64,
    pub(crate) worker: f64,
    pub(crate) nats: f64,
    pub(crate) bench: f64,
    /// Items (edges, nodes) the times were spent on.
    pub(crate) items: usize,
}

/// CPU microseconds per item, by process.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(crate) struct CpuPerItem {
    pub(crate) planner: f64,
    pub(crate) worker: f64,
    pub(crate) nats: f64,
    pub(crate) bench: f64,
}

impl Processes {
    pub(crate) fn cpu(&self) -> anyhow::Result<Cpu> {
        Ok(Cpu {
            planner: cpu_seconds(self.planner)?,
            worker: cpu_seconds(self.worker)?,
            nats: self
                .nats
                .iter()
                .map(|pid| cpu_seconds(*pid))
                .sum::<anyhow::Result<f64>>()?,
            bench: cpu_seconds(std::process::id())?,
            items: 0,
        })
    }
}

impl Cpu {
    pub(crate) fn since(&self, earlier: &Cpu) -> Cpu {
        Cpu {
            planner: self.planner - earlier.planner,
            worker: self.worker - earlier.worker,
            nats: self.nats - earlier.nats,
            bench: self.bench - earlier.bench,
            items: 0,
        }
    }

    pub(crate) fn add(&mut self, spent: Cpu, items: usize) {
        self.planner += spent.planner;
        self.worker += spent.worker;
        self.nats += spent.nats;
        self.bench += spent.bench;
        self.items += items;
    }

    pub(crate) fn per_item(&self) -> CpuPerItem {
        let us = |s: f64| s * 1e6 / self.items.max(1) as f64;
        CpuPerItem {
            planner: us(self.planner),
            worker: us(self.worker),
            nats: us(self.nats),
            bench: us(self.bench),
        }
    }
}

/// Returns the CPU time (user and system) a process has used, from `/proc/PID/stat`.
pub(crate) fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| -> f64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0.0) };
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name, in
    // clock ticks: USER_HZ, 100 on every Linux architecture Baton builds for.
    let hz = 100.0;
    Ok((ticks(11) + ticks(12)) / hz)
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub(crate) fn percentile(values: &[Duration], p: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub(crate) fn peak_rss_mib(child: &Child) -> anyhow::Result<f64> {
    let pid = child.id().context("the planner has exited")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/PID/status")?;
    Ok(kib / 1024.0)
}
