//! A real OTLP/HTTP receiver (`tests/otlp_receiver.py`, decoding with the `opentelemetry-proto`
//! package `scripts/tools.sh --test` installs) on a free loopback port, killed on drop; the
//! spans it received, read back.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// One span as the receiver wrote it.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Span {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits; empty for a root span.
    pub parent_span_id: String,
    /// The span's name.
    pub name: String,
    /// The exporting service's `service.name`.
    pub service_name: Option<String>,
    /// The span's attributes.
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// A running receiver.
pub struct Receiver {
    child: Child,
    out: PathBuf,
    /// Where spans go: `http://127.0.0.1:<port>/v1/traces`.
    pub endpoint: String,
}

impl Receiver {
    /// Starts a receiver writing to `dir/spans.jsonl`.
    pub fn start(dir: &Path) -> anyhow::Result<Receiver> {
        let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin/python");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("otlp_receiver.py");
        let out = dir.join("spans.jsonl");
        let mut child = Command::new(&python)
            .arg(&script)
            .arg("0")
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (scripts/tools.sh --test installs it)",
                    python.display()
                )
            })?;
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut first)
            .context("reading the receiver's port")?;
        let port: u16 = first
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("the receiver said {first:?}"))?;
        Ok(Receiver {
            child,
            out,
            endpoint: format!("http://127.0.0.1:{port}/v1/traces"),
        })
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until the spans received satisfy `done`, at most `within`; returns them.
    pub fn wait(
        &self,
        within: Duration,
        done: impl Fn(&[Span]) -> bool,
    ) -> anyhow::Result<Vec<Span>> {
        let started = Instant::now();
        loop {
            let spans = self.spans();
            if done(&spans) {
                return Ok(spans);
            }
            if started.elapsed() > within {
                bail!("the spans after {within:?}: {spans:#?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
