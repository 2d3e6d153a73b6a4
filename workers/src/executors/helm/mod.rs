//! The `helm` executor: brings one Helm release to its spec (`apply`) or removes it
//! (`uninstall`), with one of two drivers:
//!
//! - [`cli`]: runs the Helm 3 or Helm 4 binary (`upgrade --install`, `rollback`,
//!   `uninstall`, reading the release with `status -o json` and `history -o json`), with the
//!   flags of the version `helm version` names ([`generation`]);
//! - [`flux`]: writes a Flux `HelmRelease` and its chart source through the Kubernetes API and
//!   waits for Flux's helm-controller to report it `Ready` for the current generation.
//!
//! The spec's `driver` chooses one; without it the worker's `--helm-driver` does.
//!
//! Idempotence: every operation carries the job's marker (`baton <run>/<node>/<attempt>`),
//! as the Helm release's description or a `HelmRelease` annotation. A job redelivered after
//! its worker died finds what the first delivery did: a release deployed with its marker is
//! adopted as it is, an operation still pending is waited for, and a `HelmRelease` written
//! already is written again unchanged (its generation stays) and waited for. Nothing is
//! installed twice.

pub mod cli;
pub mod flux;
pub mod generation;
mod values;

use std::path::PathBuf;
use std::time::Duration;

use baton_schemas::helm::{HelmAction, HelmDriver, HelmSpec};
use baton_schemas::wire::{Job, Outcome};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Effect;

/// Helm executor settings.
#[derive(Clone, Debug)]
pub struct HelmConfig {
    /// The driver of specs that name none.
    pub driver: HelmDriver,
    /// The Helm 3 or Helm 4 program the `cli` driver runs.
    pub binary: PathBuf,
    /// How often a pending release or a `HelmRelease` is looked at while it changes.
    pub poll: Duration,
    /// The planner's chart repository (its API URL and `/charts`) as Flux's source-controller
    /// reaches it, from which the `flux` driver reads subcharts.
    pub subchart_repository: Option<String>,
}

impl Default for HelmConfig {
    fn default() -> Self {
        Self {
            driver: HelmDriver::Cli,
            binary: PathBuf::from("helm"),
            poll: Duration::from_secs(1),
            subchart_repository: None,
        }
    }
}

/// Performs `helm` jobs.
#[derive(Clone)]
pub struct HelmExecutor {
    config: HelmConfig,
    /// The Helm the `cli` driver runs, read from `helm version` on its first job.
    generation: std::sync::Arc<tokio::sync::OnceCell<generation::Generation>>,
    /// The Kubernetes client: the `flux` driver needs it, the `cli` driver reads `valuesFrom`
    /// and `authSecretRef` with it.
    client: Option<kube::Client>,
}

/// The settings one operation runs with.
pub(crate) struct Operation<'a> {
    pub(crate) spec: &'a HelmSpec,
    /// What identifies this attempt on the release.
    pub(crate) marker: String,
    /// When the operation gives up.
    pub(crate) deadline: tokio::time::Instant,
    pub(crate) stop: &'a CancellationToken,
}

impl HelmExecutor {
    /// Builds the executor.
    pub fn new(config: HelmConfig, client: Option<kube::Client>) -> Self {
        Self {
            config,
            generation: Default::default(),
            client,
        }
    }

    /// Runs one `helm` job to its outcome, or until `stop` fires. A stop leaves a Helm
    /// process or a `HelmRelease` to finish on its own, for a redelivery to adopt.
    pub async fn run(&self, job: &Job, stop: &CancellationToken) -> Effect {
        let Some(spec) = job.helm() else {
            return Effect::Done(Outcome::failed("not a helm job"));
        };
        let budget = job
            .timeout()
            .unwrap_or(spec.timeout().0.saturating_add(Duration::from_secs(120)));
        let op = Operation {
            spec,
            marker: marker(job),
            deadline: tokio::time::Instant::now() + budget,
            stop,
        };
        let driver = spec.driver.unwrap_or(self.config.driver);
        tracing::info!(run = %job.run, node = %job.node, release = %spec.release, namespace = %spec.namespace, action = spec.action.as_str(), %driver, "helm job");
        let result = match (driver, spec.action) {
            (HelmDriver::Cli, action) => match self.generation().await {
                Err(failure) => Err(failure),
                Ok(generation) => match action {
                    HelmAction::Apply => {
                        cli::apply(&self.config, generation, self.client.as_ref(), &op).await
                    }
                    HelmAction::Uninstall => cli::uninstall(&self.config, generation, &op).await,
                },
            },
            (HelmDriver::Flux, action) => match &self.client {
                None => Err(Failure::Error(
                    "the flux driver needs a Kubernetes client (KUBECONFIG or in-cluster config)"
                        .to_owned(),
                )),
                Some(client) => match action {
                    HelmAction::Apply => flux::apply(&self.config, client, &op).await,
                    HelmAction::Uninstall => flux::uninstall(&self.config, client, &op).await,
                },
            },
        };
        match result {
            Ok(done) => Effect::Done(Outcome::Succeeded {
                output: done.output(spec, driver),
            }),
            Err(Failure::Stopped) => Effect::Stopped,
            Err(Failure::Error(error)) => Effect::Done(Outcome::failed(error)),
        }
    }
}

impl HelmExecutor {
    /// The Helm the `cli` driver runs: `helm version`, read once (a failure is not kept, so
    /// a Helm installed later is found).
    async fn generation(&self) -> Result<generation::Generation, Failure> {
        self.generation
            .get_or_try_init(|| async {
                let output = tokio::time::timeout(
                    Duration::from_secs(30),
                    tokio::process::Command::new(&self.config.binary)
                        .arg("version")
                        .stdin(std::process::Stdio::null())
                        .output(),
                )
                .await
                .map_err(|_| "`helm version` took more than 30 s".to_owned())
                .and_then(|o| {
                    o.map_err(|e| format!("cannot run {}: {e}", self.config.binary.display()))
                })?;
                generation::Generation::from_version_output(&String::from_utf8_lossy(
                    &output.stdout,
                ))
            })
            .await
            .copied()
            .map_err(|e: String| Failure::Error(format!("helm: {e}")))
    }
}

/// Returns the marker of a job's attempt: `baton <run>/<node>/<attempt>`.
pub fn marker(job: &Job) -> String {
    format!("baton {}/{}/{}", job.run, job.node, job.attempt)
}

/// Why an operation did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The stop token fired.
    Stopped,
    /// It failed; the text says why.
    Error(String),
}

impl From<String> for Failure {
    fn from(error: String) -> Self {
        Failure::Error(error)
    }
}

/// What a successful operation did, for the node's output.
#[derive(Debug, Default)]
pub(crate) struct Done {
    /// `installed`, `upgraded`, `adopted`, `uninstalled` or `absent`.
    pub(crate) what: &'static str,
    /// The release's revision after it, when known.
    pub(crate) revision: Option<i64>,
    /// The chart version deployed, when known.
    pub(crate) chart: Option<String>,
}

impl Done {
    /// Returns the node's output: a small JSON document.
    fn output(&self, spec: &HelmSpec, driver: HelmDriver) -> String {
        let mut out = json!({
            "release": spec.release,
            "namespace": spec.namespace,
            "action": spec.action.as_str(),
            "result": self.what,
            "driver": driver.as_str(),
        });
        if let Some(revision) = self.revision {
            out["revision"] = json!(revision);
        }
        if let Some(chart) = &self.chart {
            out["chart"] = Value::String(chart.clone());
        }
        out.to_string()
    }
}

/// Waits `every`, or returns `Stopped` when `stop` fires first.
pub(crate) async fn pause(every: Duration, stop: &CancellationToken) -> Result<(), Failure> {
    tokio::select! {
        _ = stop.cancelled() => Err(Failure::Stopped),
        _ = tokio::time::sleep(every) => Ok(()),
    }
}
