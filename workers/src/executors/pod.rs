//! The `pod` executor: runs a Kubernetes pod from the node's template and takes the chosen
//! container's termination message (`state.terminated.message`, at most 4096 bytes) as the
//! node's output.
//!
//! - The whole template is used: every container and init container, volumes, resources,
//!   args, env. Baton adds labels (`baton.dev/run`, `/node`, `/attempt`, `/task` for a chain's
//!   Task, `app.kubernetes.io/managed-by=baton`), sets `restartPolicy: Never`, and gives every
//!   container `BATON_RUN`, `BATON_NODE`, `BATON_ATTEMPT`, `BATON_INITIATOR`, `BATON_DATA`,
//!   `BATON_INPUTS` (several upstreams) and Orca's `ORCA_INITIATOR` and `ORCA_DATA`.
//! - The pod name is `<node>-<run>-<attempt>` (63 characters at most, [`pod_name`]: a long
//!   node name is cut and ends with a hash of the whole). A redelivered job finds
//!   the pod the first delivery created (`409 AlreadyExists`), checks its labels, and adopts it
//!   instead of creating another.
//! - Completion is followed by a watch on the pod, not by polling.
//! - Failures are told apart: a non-zero exit code (with the container's name), OOMKilled,
//!   an image that did not pull within the pull deadline, the pod's deadline exceeded, the pod
//!   deleted or evicted; the last log lines of the failed container go with the error.
//! - Finished pods are left for the janitor ([`PodExecutor::janitor`]), which deletes
//!   succeeded pods after one TTL and failed pods after another.

use std::collections::BTreeMap;
use std::time::Duration;

use baton_schemas::wire::{Job, Outcome, PodJob, pod_name};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{EnvVar, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Effect;

/// The label every pod Baton runs carries.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "baton");

/// Pod executor settings.
#[derive(Clone, Debug)]
pub struct PodConfig {
    /// How long a container may fail to pull its image before the node fails.
    pub image_pull_deadline: Duration,
    /// How long a succeeded pod is kept.
    pub success_ttl: Duration,
    /// How long a failed pod is kept, for a look at it.
    pub failure_ttl: Duration,
    /// How many log lines of a failed container go with the error.
    pub log_lines: i64,
}

impl Default for PodConfig {
    fn default() -> Self {
        Self {
            image_pull_deadline: Duration::from_secs(120),
            success_ttl: Duration::from_secs(60),
            failure_ttl: Duration::from_secs(300),
            log_lines: 20,
        }
    }
}

/// Runs pods through a Kubernetes client.
#[derive(Clone)]
pub struct PodExecutor {
    client: kube::Client,
    config: PodConfig,
}

/// How a watched pod ended, as seen in its status.
enum Ended {
    Succeeded(Pod),
    Failed(Pod),
    Gone(String),
}

impl PodExecutor {
    /// Builds the executor around a client.
    pub fn new(client: kube::Client, config: PodConfig) -> Self {
        Self { client, config }
    }

    /// Runs (or adopts) the job's pod to its end. When `stop` fires the pod is deleted, unless
    /// `handing_back` has fired too: then the pod is left running for the job's redelivery
    /// to adopt.
    pub async fn run(
        &self,
        job: &Job,
        stop: &CancellationToken,
        handing_back: &CancellationToken,
    ) -> Effect {
        let Some(spec) = &job.pod else {
            return Effect::Done(failed("pod job without pod settings".to_owned()));
        };
        let namespace = spec
            .namespace
            .clone()
            .unwrap_or_else(|| self.client.default_namespace().to_owned());
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let name = pod_name(&job.node, &job.run, job.attempt);
        if let Err(e) = self.create_or_adopt(&pods, job, spec, &name).await {
            return Effect::Done(failed(e));
        }
        let timeout = job.timeout_ms.map(Duration::from_millis);
        let timed_out = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let ended = tokio::select! {
            ended = self.watch(&pods, &name) => ended,
            _ = timed_out => {
                self.delete(&pods, &name).await;
                let t = humantime::format_duration(timeout.unwrap_or_default());
                return Effect::Done(failed(format!("timed out after {t}; pod {namespace}/{name} deleted")));
            }
            _ = stop.cancelled() => {
                if !handing_back.is_cancelled() {
                    self.delete(&pods, &name).await;
                }
                return Effect::Stopped;
            }
        };
        match ended {
            Ended::Succeeded(pod) => Effect::Done(Outcome::Succeeded {
                output: output(&pod, spec.container.as_deref()),
            }),
            Ended::Failed(pod) => {
                let message = output(&pod, spec.container.as_deref());
                Effect::Done(Outcome::Failed {
                    error: self.explain(&pods, &pod).await,
                    output: (!message.is_empty()).then_some(message),
                })
            }
            Ended::Gone(reason) => Effect::Done(failed(format!("pod {namespace}/{name} {reason}"))),
        }
    }

    async fn create_or_adopt(
        &self,
        pods: &Api<Pod>,
        job: &Job,
        spec: &PodJob,
        name: &str,
    ) -> Result<(), String> {
        let pod = build_pod(job, spec, name);
        match pods.create(&PostParams::default(), &pod).await {
            Ok(_) => {
                debug!(pod = name, "pod created");
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let existing = pods
                    .get(name)
                    .await
                    .map_err(|e| format!("reading pod {name}: {e}"))?;
                let labels = existing.metadata.labels.unwrap_or_default();
                let ours = labels.get("baton.dev/run").map(String::as_str)
                    == Some(job.run.as_str())
                    && labels.get("baton.dev/node").map(String::as_str) == Some(job.node.as_str())
                    && labels.get("baton.dev/attempt") == Some(&job.attempt.to_string());
                if ours {
                    info!(pod = name, "adopting the pod an earlier delivery created");
                    Ok(())
                } else {
                    Err(format!(
                        "a pod named {name} exists and belongs to something else"
                    ))
                }
            }
            Err(e) => Err(format!("creating pod {name}: {e}")),
        }
    }

    /// Follows the pod until it ends, or is deleted, evicted, or cannot pull its image.
    async fn watch(&self, pods: &Api<Pod>, name: &str) -> Ended {
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut events = watcher(pods.clone(), config).boxed();
        // Since when, and why, a container has been unable to pull its image.
        let mut pulling: Option<(tokio::time::Instant, String)> = None;
        // Whether the pod showed up in the watcher's current (re)list.
        let mut listed = false;
        loop {
            let deadline = self.config.image_pull_deadline;
            let wait = match &pulling {
                Some((since, _)) => deadline.saturating_sub(since.elapsed()),
                None => Duration::from_secs(30),
            };
            let event = match tokio::time::timeout(wait, events.next()).await {
                Ok(Some(Ok(event))) => event,
                Ok(Some(Err(e))) => {
                    debug!(pod = name, error = %e, "pod watch error; the watcher retries");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Ok(None) => return Ended::Gone("watch ended".to_owned()),
                Err(_) => match &pulling {
                    Some((since, problem)) if since.elapsed() >= deadline => {
                        self.delete(pods, name).await;
                        let within = humantime::format_duration(deadline);
                        return Ended::Gone(format!(
                            "could not pull its image within {within}: {problem}"
                        ));
                    }
                    _ => continue,
                },
            };
            let pod = match event {
                watcher::Event::Apply(pod) => pod,
                watcher::Event::InitApply(pod) => {
                    listed = true;
                    pod
                }
                watcher::Event::Init => {
                    listed = false;
                    continue;
                }
                watcher::Event::InitDone if !listed => {
                    return Ended::Gone("does not exist".to_owned());
                }
                watcher::Event::InitDone => continue,
                watcher::Event::Delete(_) => {
                    return Ended::Gone("was deleted before it finished".to_owned());
                }
            };
            if pod.metadata.deletion_timestamp.is_some() {
                return Ended::Gone("is being deleted before it finished".to_owned());
            }
            let status = pod.status.clone().unwrap_or_default();
            match status.phase.as_deref() {
                Some("Succeeded") => return Ended::Succeeded(pod),
                Some("Failed") => return Ended::Failed(pod),
                _ => {}
            }
            match image_pull_problem(&pod) {
                Some(problem) => {
                    let since = pulling
                        .take()
                        .map_or_else(tokio::time::Instant::now, |(since, _)| since);
                    pulling = Some((since, problem));
                }
                None => pulling = None,
            }
        }
    }

    /// Says why a failed pod failed, with the last log lines of the container that failed.
    async fn explain(&self, pods: &Api<Pod>, pod: &Pod) -> String {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        if status.reason.as_deref() == Some("Evicted") {
            return format!(
                "pod {name} was evicted: {}",
                status.message.unwrap_or_default()
            );
        }
        let mut reasons = Vec::new();
        let mut failed_container = None;
        for c in status.container_statuses.iter().flatten() {
            if let Some(t) = c.state.as_ref().and_then(|s| s.terminated.as_ref())
                && t.exit_code != 0
            {
                let reason = match t.reason.as_deref() {
                    Some("OOMKilled") => format!(
                        "container {} was OOMKilled (exit code {})",
                        c.name, t.exit_code
                    ),
                    _ => format!("container {} exited with code {}", c.name, t.exit_code),
                };
                reasons.push(reason);
                failed_container.get_or_insert(c.name.clone());
            }
        }
        if status.reason.as_deref() == Some("DeadlineExceeded") {
            reasons.insert(
                0,
                format!(
                    "deadline exceeded: {}",
                    status.message.clone().unwrap_or_default()
                ),
            );
        }
        if reasons.is_empty() {
            reasons.push(format!(
                "pod {name} failed: {}",
                status
                    .message
                    .clone()
                    .or(status.reason.clone())
                    .unwrap_or_default()
            ));
        }
        let mut error = reasons.join("; ");
        if let Some(container) = failed_container {
            let params = LogParams {
                container: Some(container),
                tail_lines: Some(self.config.log_lines),
                ..Default::default()
            };
            match pods.logs(&name, &params).await {
                Ok(logs) if !logs.trim().is_empty() => {
                    error.push_str("; last output:\n");
                    error.push_str(logs.trim_end());
                }
                Ok(_) => {}
                Err(e) => debug!(pod = %name, error = %e, "no logs for the failure"),
            }
        }
        error
    }

    async fn delete(&self, pods: &Api<Pod>, name: &str) {
        match pods.delete(name, &DeleteParams::default()).await {
            Ok(_) => debug!(pod = name, "pod deleted"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => warn!(pod = name, error = %e, "deleting the pod failed"),
        }
    }

    /// Deletes finished pods Baton ran once their TTL has passed (succeeded and failed pods
    /// have TTLs of their own), every `every`, until `shutdown` fires. Any number of workers
    /// may run it; a pod another worker deleted first is skipped.
    pub async fn janitor(self, every: Duration, shutdown: CancellationToken) {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let list = match pods.list(&ListParams::default().labels(&selector)).await {
                Ok(list) => list,
                Err(e) => {
                    debug!(error = %e, "janitor could not list pods");
                    continue;
                }
            };
            let now = std::time::SystemTime::now();
            for pod in list.items {
                let Some(finished) = finished_at(&pod) else {
                    continue;
                };
                let ttl = match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
                    Some("Succeeded") => self.config.success_ttl,
                    Some("Failed") => self.config.failure_ttl,
                    _ => continue,
                };
                if now.duration_since(finished).unwrap_or_default() >= ttl {
                    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    self.delete(&Api::namespaced(self.client.clone(), &namespace), &name)
                        .await;
                }
            }
        }
    }
}

/// Returns when the pod's last container terminated.
fn finished_at(pod: &Pod) -> Option<std::time::SystemTime> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses
        .iter()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| std::time::SystemTime::from(t.0))
        .max()
}

/// Returns the waiting message of a container that cannot pull its image.
fn image_pull_problem(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .find_map(|c| {
            let waiting = c.state.as_ref()?.waiting.as_ref()?;
            matches!(
                waiting.reason.as_deref(),
                Some(
                    "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull"
                )
            )
            .then(|| {
                format!(
                    "{}: {}",
                    waiting.reason.clone().unwrap_or_default(),
                    waiting.message.clone().unwrap_or_default()
                )
            })
        })
}

/// Returns the termination message of `container` (the first container when `None`).
fn output(pod: &Pod, container: Option<&str>) -> String {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    let wanted = container.map(str::to_owned).or_else(|| {
        pod.spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .map(|c| c.name.clone())
    });
    statuses
        .iter()
        .find(|c| Some(&c.name) == wanted.as_ref())
        .and_then(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
        .unwrap_or_default()
}

/// Builds the pod for a job from its template.
fn build_pod(job: &Job, spec: &PodJob, name: &str) -> Pod {
    let template = spec.template.clone();
    let mut metadata = template.metadata.unwrap_or_default();
    let mut labels = metadata.labels.take().unwrap_or_default();
    labels.extend(BTreeMap::from([
        ("baton.dev/run".to_owned(), job.run.to_string()),
        ("baton.dev/node".to_owned(), job.node.to_string()),
        ("baton.dev/attempt".to_owned(), job.attempt.to_string()),
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
    ]));
    match &spec.task {
        Some(task) => {
            labels.insert("baton.dev/task".to_owned(), label_value(task));
        }
        // A template's own `baton.dev/task` would claim a Task this pod does not run.
        None => {
            labels.remove("baton.dev/task");
        }
    }
    metadata.labels = Some(labels);
    metadata.name = Some(name.to_owned());
    metadata.generate_name = None;
    metadata.namespace = None;
    let mut pod_spec = template.spec.unwrap_or_default();
    pod_spec.restart_policy = Some("Never".to_owned());
    let mut env: Vec<(String, String)> = job.baton_env();
    env.push(("ORCA_INITIATOR".to_owned(), job.inputs.initiator.clone()));
    env.push(("ORCA_DATA".to_owned(), job.inputs.data.clone()));
    for container in pod_spec
        .containers
        .iter_mut()
        .chain(pod_spec.init_containers.iter_mut().flatten())
    {
        let vars = container.env.get_or_insert_with(Vec::new);
        vars.retain(|v| !env.iter().any(|(name, _)| name == &v.name));
        vars.extend(env.iter().map(|(name, value)| EnvVar {
            name: name.clone(),
            value: Some(value.clone()),
            value_from: None,
        }));
    }
    Pod {
        metadata,
        spec: Some(pod_spec),
        status: None,
    }
}

/// Returns `value` as a label value: as it is when it fits the 63 characters a label value may
/// hold, else cut and ended with a hash of the whole (a Task's name is a DNS subdomain, up to
/// 253 characters).
fn label_value(value: &str) -> String {
    baton_schemas::ids::cut_with_hash(value, 63)
}

fn failed(error: String) -> Outcome {
    Outcome::failed(error)
}
