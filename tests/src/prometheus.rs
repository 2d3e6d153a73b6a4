//! A real Prometheus (Debian's `prometheus`, installed by `scripts/tools.sh`) on a free
//! loopback port, scraping the targets a test names every second, killed on drop; and
//! PromQL instant queries over its HTTP API.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{Proc, free_port, wait_for_port};

/// Returns the prometheus program: `$PROMETHEUS`, then PATH (Debian installs it in /usr/bin).
pub fn prometheus_program() -> PathBuf {
    std::env::var_os("PROMETHEUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("prometheus"))
}

/// One scrape job: a name and a `host:port` target, with a bearer token file when the
/// endpoint asks for one.
#[derive(Clone, Debug)]
pub struct ScrapeJob {
    /// The job's name (the `job` label of what it scrapes).
    pub name: String,
    /// `127.0.0.1:<port>`.
    pub target: String,
    /// A file holding the bearer token Prometheus presents.
    pub token_file: Option<PathBuf>,
}

impl ScrapeJob {
    /// A job scraping `/metrics` at `127.0.0.1:port` without a token.
    pub fn new(name: &str, port: u16) -> ScrapeJob {
        ScrapeJob {
            name: name.to_owned(),
            target: format!("127.0.0.1:{port}"),
            token_file: None,
        }
    }

    /// The same job presenting the token in `file`.
    pub fn with_token_file(mut self, file: PathBuf) -> ScrapeJob {
        self.token_file = Some(file);
        self
    }
}

/// A running Prometheus.
pub struct PrometheusServer {
    _proc: Proc,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl PrometheusServer {
    /// Starts a Prometheus with its data under `dir` scraping `jobs` every second; waits
    /// until it listens.
    pub fn start(dir: &Path, jobs: &[ScrapeJob]) -> anyhow::Result<PrometheusServer> {
        let port = free_port();
        let config = dir.join("prometheus.yml");
        let mut yaml = String::from(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n",
        );
        for job in jobs {
            yaml.push_str(&format!(
                "  - job_name: {}\n    static_configs:\n      - targets: ['{}']\n",
                job.name, job.target
            ));
            if let Some(file) = &job.token_file {
                yaml.push_str(&format!(
                    "    authorization: {{type: Bearer, credentials_file: '{}'}}\n",
                    file.display()
                ));
            }
        }
        std::fs::write(&config, yaml)?;
        let mut command = Command::new(prometheus_program());
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .current_dir(dir);
        let proc = Proc::spawn("prometheus", command, dir.join("prometheus.log"))
            .context("starting prometheus (scripts/tools.sh installs Debian's package)")?;
        wait_for_port(port, Duration::from_secs(30))?;
        Ok(PrometheusServer {
            _proc: proc,
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    /// Runs the instant query `query` and returns its result vector (`data.result`).
    pub fn query(&self, query: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let answer: serde_json::Value = runtime.block_on(async {
            reqwest::Client::new()
                .post(format!("{}/api/v1/query", self.url))
                .form(&[("query", query)])
                .send()
                .await?
                .json()
                .await
        })?;
        if answer["status"] != "success" {
            bail!("prometheus refused {query}: {answer}");
        }
        Ok(answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Waits until the instant query `query` gives a first value for which `done` holds,
    /// at most `within`; returns that value.
    pub fn wait_for(
        &self,
        query: &str,
        within: Duration,
        done: impl Fn(f64) -> bool,
    ) -> anyhow::Result<f64> {
        let started = Instant::now();
        let mut last = None;
        while started.elapsed() < within {
            match self.query(query) {
                Ok(result) => {
                    let value = result
                        .first()
                        .and_then(|r| r["value"][1].as_str())
                        .and_then(|v| v.parse::<f64>().ok());
                    if let Some(value) = value.filter(|v| done(*v)) {
                        return Ok(value);
                    }
                    last = Some(format!("{result:?}"));
                }
                Err(e) => last = Some(format!("{e:#}")),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!("prometheus: {query} not there after {within:?}; last answer {last:?}")
    }
}
