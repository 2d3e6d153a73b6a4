//! Baton under measure: its planner and worker as child processes, and a plain
//! subscription that sees every job and event with the time it was seen.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use baton_schemas::wire::{BATCH_SUBJECT_TOKEN, Event, EventBatch, EventEnvelope, headers};
use futures::StreamExt;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::*;
use crate::credentials;

/// What the bench sees on the bus.
#[derive(Debug)]
pub(crate) enum Seen {
    /// The planner published a job.
    Job {
        at: Instant,
        run: String,
        node: String,
    },
    /// A worker published that a node finished.
    Finished { at: Instant, run: String },
}

/// Subscribes to every job and event under the bench prefix.
pub(crate) async fn observe(
    client: &async_nats::Client,
) -> anyhow::Result<mpsc::UnboundedReceiver<Seen>> {
    // One subscription sees jobs and events in the order the server handled them.
    let mut all = client.subscribe(format!("{PREFIX}.>")).await?;
    // The floor's messages are observed too, so that the floor carries the same load.
    for subject in ["rawserial.>", "rawpipe.>"] {
        let mut raw = client.subscribe(subject).await?;
        tokio::spawn(async move { while raw.next().await.is_some() {} });
    }
    client.flush().await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let jobs = format!("{PREFIX}.jobs.");
    let events = format!("{PREFIX}.events.");
    tokio::spawn(async move {
        while let Some(m) = all.next().await {
            let at = Instant::now();
            // A worker's batch of completions: each one it holds is seen.
            if m.subject.ends_with(BATCH_SUBJECT_TOKEN) && m.subject.starts_with(events.as_str()) {
                let Ok(batch) = serde_json::from_slice::<EventBatch>(&m.payload) else {
                    continue;
                };
                for batched in batch.events {
                    if let Event::NodeFinished { run, .. } = batched.envelope.event {
                        let seen = Seen::Finished {
                            at,
                            run: run.to_string(),
                        };
                        if tx.send(seen).is_err() {
                            return;
                        }
                    }
                }
                continue;
            }
            // A batch of jobs: each one it holds is seen.
            let batch = m.headers.as_ref().and_then(|h| h.get(headers::JOB_BATCH));
            if batch.is_some() && m.subject.starts_with(jobs.as_str()) {
                let Ok(batch) = serde_json::from_slice::<SeenJobs>(&m.payload) else {
                    continue;
                };
                for SeenJob { job } in batch.jobs {
                    let seen = Seen::Job {
                        at,
                        run: job.run,
                        node: job.node,
                    };
                    if tx.send(seen).is_err() {
                        return;
                    }
                }
                continue;
            }
            let seen = if m.subject.starts_with(jobs.as_str()) {
                let header = |name: &str| {
                    m.headers
                        .as_ref()
                        .and_then(|h| h.get(name))
                        .map(|v| v.as_str().to_owned())
                        .unwrap_or_default()
                };
                Seen::Job {
                    at,
                    run: header(headers::RUN),
                    node: header(headers::NODE),
                }
            } else if m.subject.starts_with(events.as_str()) {
                match serde_json::from_slice(&m.payload) {
                    Ok(EventEnvelope {
                        event: Event::NodeFinished { run, .. },
                        ..
                    }) => Seen::Finished {
                        at,
                        run: run.to_string(),
                    },
                    _ => continue,
                }
            } else {
                continue;
            };
            if tx.send(seen).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// What the bench reads of a batch of jobs: each job's run and node.
#[derive(serde::Deserialize)]
struct SeenJobs {
    jobs: Vec<SeenJob>,
}

#[derive(serde::Deserialize)]
struct SeenJob {
    job: SeenNames,
}

#[derive(serde::Deserialize)]
struct SeenNames {
    run: String,
    node: String,
}

/// Waits for what the bench sees until `done` says so, at most `within`.
pub(crate) async fn watch(
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    within: Duration,
    mut done: impl FnMut(Seen) -> bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, seen.recv()).await {
            Ok(Some(s)) => {
                if done(s) {
                    return Ok(());
                }
            }
            Ok(None) => bail!("the bus observer stopped"),
            Err(_) => bail!("timed out after {within:?}"),
        }
    }
}

/// The planner and worker under test, and how to reach them.
pub(crate) struct Baton {
    pub(crate) url: String,
    pub(crate) dir: PathBuf,
    pub(crate) api: String,
    pub(crate) api_port: u16,
    pub(crate) http: reqwest::Client,
    /// The replicas of Baton's streams: 1 on one server, 3 on a cluster.
    pub(crate) replicas: usize,
}

impl Baton {
    /// Returns the planner and worker to start against `url`, in `dir`, with the API on
    /// `api_port` and a token of the admin role for the benchmark's requests.
    pub(crate) fn new(
        url: &str,
        dir: &Path,
        api_port: u16,
        replicas: usize,
    ) -> anyhow::Result<Baton> {
        let token = credentials::new_token()?;
        credentials::write_secret(&dir.join("api-tokens.csv"), &format!("{token},bench,admin"))?;
        let headers = credentials::bearer_headers(&token)?;
        Ok(Baton {
            url: url.to_owned(),
            dir: dir.to_owned(),
            api: format!("http://127.0.0.1:{api_port}"),
            api_port,
            http: reqwest::Client::builder()
                .default_headers(headers)
                .build()?,
            replicas,
        })
    }

    pub(crate) fn command(&self, name: &str) -> anyhow::Result<Command> {
        let mut command = Command::new(std::env::current_exe()?);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))?;
        command
            .env(
                "BATON_LOG",
                std::env::var("BATON_BENCH_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .env("BATON_PREFIX", PREFIX)
            .env("BATON_NATS_URL", &self.url)
            // Every process makes the streams with the same replicas, or they rewrite each
            // other's.
            .env("BATON_REPLICAS", self.replicas.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        Ok(command)
    }

    pub(crate) fn spawn_planner_nowait(&self) -> anyhow::Result<Child> {
        self.spawn_planner_nowait_with(&[])
    }

    fn spawn_planner_nowait_with(&self, args: &[String]) -> anyhow::Result<Child> {
        let mut command = self.command("planner")?;
        command
            .arg("planner")
            .arg("--data-dir")
            .arg(self.dir.join("planner"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.api_port))
            .arg("--api-token-file")
            .arg(self.dir.join("api-tokens.csv"))
            .args(args);
        Ok(command.spawn()?)
    }

    pub(crate) async fn spawn_planner(&self) -> anyhow::Result<Child> {
        self.spawn_planner_with(&[]).await
    }

    /// Starts a planner with `args` added and waits until its API answers.
    pub(crate) async fn spawn_planner_with(&self, args: &[String]) -> anyhow::Result<Child> {
        let child = self.spawn_planner_nowait_with(args)?;
        let started = Instant::now();
        while self
            .http
            .get(format!("{}/healthz", self.api))
            .send()
            .await
            .is_err()
        {
            // Generous: on a loaded machine, a planner on a three-node cluster waits for
            // its streams' replicas and the lease before it serves.
            ensure!(
                started.elapsed() < Duration::from_secs(90),
                "the planner's API did not answer within 90 s (its log: {})",
                self.dir.join("planner.log").display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(child)
    }

    pub(crate) fn spawn_worker(&self, concurrency: usize) -> anyhow::Result<Child> {
        self.spawn_worker_with(concurrency, &[])
    }

    /// Starts a noop worker with `args` added.
    pub(crate) fn spawn_worker_with(
        &self,
        concurrency: usize,
        args: &[String],
    ) -> anyhow::Result<Child> {
        let mut command = self.command("worker")?;
        command
            .args(["worker", "--kinds", "noop", "--concurrency"])
            .arg(concurrency.to_string())
            .args(args);
        Ok(command.spawn()?)
    }

    /// Registers a workflow of `nodes` (each `(name, needs)`) and, if `start`, starts a run;
    /// returns its id.
    pub(crate) async fn apply(
        &self,
        name: &str,
        nodes: impl Iterator<Item = (String, Vec<String>)>,
        start: bool,
    ) -> anyhow::Result<Option<String>> {
        let nodes: Vec<serde_json::Value> = nodes
            .map(|(n, needs)| serde_json::json!({"name": n, "kind": "noop", "needs": needs}))
            .collect();
        let document = serde_json::json!({
            "apiVersion": "baton.dev/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": name},
            "spec": {"nodes": nodes},
        });
        let response = self
            .http
            .post(format!("{}/v1/apply", self.api))
            .json(&serde_json::json!({"document": document, "run": start}))
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await?;
        ensure!(status.is_success(), "apply {name}: {status} {body}");
        Ok(body["run"].as_str().map(str::to_owned))
    }

    pub(crate) async fn start(&self, workflow: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .post(format!("{}/v1/workflows/{workflow}/runs", self.api))
            .json(&serde_json::json!({}))
            .send()
            .await?;
        let body: serde_json::Value = response.json().await?;
        body["run"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("start {workflow}: {body}"))
    }

    pub(crate) async fn state(&self, run: &str) -> anyhow::Result<String> {
        let body: serde_json::Value = self
            .http
            .get(format!("{}/v1/runs/{run}", self.api))
            .send()
            .await?
            .json()
            .await?;
        Ok(body["state"].as_str().unwrap_or_default().to_owned())
    }
}
