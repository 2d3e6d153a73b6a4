//! The process's own figures, named as every Prometheus client names them (`process_*`):
//! CPU seconds, resident and virtual memory, open and allowed file descriptors, threads and
//! start time. Read from `/proc/self` at each scrape; on a system without it, nothing is
//! reported.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Reports `process_*` metrics of this process.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// What `/proc/self` says at one moment.
#[derive(Debug, PartialEq)]
struct Sample {
    cpu_seconds: f64,
    resident_bytes: i64,
    virtual_bytes: i64,
    threads: i64,
    start_time_seconds: f64,
    open_fds: i64,
    max_fds: Option<i64>,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(sample) = Sample::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(sample.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent in seconds.",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?)?;
        let gauges: [(&str, &str, Option<Unit>, i64); 4] = [
            (
                "process_resident_memory",
                "Resident memory size in bytes.",
                Some(Unit::Bytes),
                sample.resident_bytes,
            ),
            (
                "process_virtual_memory",
                "Virtual memory size in bytes.",
                Some(Unit::Bytes),
                sample.virtual_bytes,
            ),
            (
                "process_threads",
                "Number of OS threads in the process.",
                None,
                sample.threads,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                sample.open_fds,
            ),
        ];
        for (name, help, unit, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(
                name,
                help,
                unit.as_ref(),
                gauge.metric_type(),
            )?)?;
        }
        if let Some(max) = sample.max_fds {
            let gauge = ConstGauge::new(max);
            gauge.encode(encoder.encode_descriptor(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                None,
                gauge.metric_type(),
            )?)?;
        }
        let start = ConstGauge::new(sample.start_time_seconds);
        start.encode(encoder.encode_descriptor(
            "process_start_time",
            "Start time of the process since unix epoch in seconds.",
            Some(&Unit::Seconds),
            start.metric_type(),
        )?)?;
        Ok(())
    }
}

impl Sample {
    fn read() -> Option<Sample> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as i64;
        let ticks = sysconf(nix::unistd::SysconfVar::CLK_TCK)?;
        let page = sysconf(nix::unistd::SysconfVar::PAGE_SIZE)?;
        Sample::parse(&stat, &boot, &limits, open_fds, ticks, page)
    }

    /// Reads the figures from the texts of `/proc/self/stat`, `/proc/stat` (boot time) and
    /// `/proc/self/limits`.
    fn parse(
        stat: &str,
        boot: &str,
        limits: &str,
        open_fds: i64,
        ticks: i64,
        page: i64,
    ) -> Option<Sample> {
        // The command name (field 2) is in parentheses and may hold spaces: fields are
        // counted after its closing one, from field 3 (the state).
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
        let field = |n: usize| -> Option<i64> { fields.get(n - 3)?.parse().ok() };
        let boot_time: i64 = boot
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        let max_fds = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_ascii_whitespace().nth(3))
            .and_then(|soft| soft.parse().ok());
        Some(Sample {
            cpu_seconds: (field(14)? + field(15)?) as f64 / ticks as f64,
            threads: field(20)?,
            start_time_seconds: boot_time as f64 + field(22)? as f64 / ticks as f64,
            virtual_bytes: field(23)?,
            resident_bytes: field(24)? * page,
            open_fds,
            max_fds,
        })
    }
}

fn sysconf(var: nix::unistd::SysconfVar) -> Option<i64> {
    // `c_long`: i64 on the 64-bit Linux targets Baton builds for.
    #[allow(clippy::useless_conversion)]
    nix::unistd::sysconf(var).ok().flatten().map(i64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_texts() {
        let stat = "4242 (baton (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 7 0 12345 104857600 2560 18446744073709551615";
        let boot = "cpu  1 2 3\nbtime 1700000000\nprocesses 9\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        let sample = Sample::parse(stat, boot, limits, 12, 100, 4096).unwrap();
        assert_eq!(
            sample,
            Sample {
                cpu_seconds: 3.0,
                resident_bytes: 2560 * 4096,
                virtual_bytes: 104_857_600,
                threads: 7,
                start_time_seconds: 1_700_000_123.45,
                open_fds: 12,
                max_fds: Some(1024),
            }
        );
    }

    #[test]
    fn reads_this_process() {
        let sample = Sample::read().expect("/proc/self on Linux");
        assert!(sample.resident_bytes > 0 && sample.threads >= 1 && sample.open_fds > 0);
    }
}
