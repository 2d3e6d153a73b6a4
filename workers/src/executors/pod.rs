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
//! - A worker may serve only some namespaces ([`ServedNamespaces`], `--pod-namespaces`): a
//!   job for another fails at once, before any call to the API, and the janitor lists pods
//!   in those namespaces alone.

mod janitor;
mod namespaces;

pub use namespaces::{NotServed, ServedNamespaces};

use std::collections::BTreeMap;
use std::time::Duration;

use baton_schemas::wire::{FailureKind, Job, Outcome, PodJob, pod_name};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{EnvVar, Pod};
use kube::api::{Api, DeleteParams, LogParams, PostParams};
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
    /// The namespaces pods may run in.
    pub namespaces: ServedNamespaces,
}

impl Default for PodConfig {
    fn default() -> Self {
        Self {
            image_pull_deadline: Duration::from_secs(120),
            success_ttl: Duration::from_secs(60),
            failure_ttl: Duration::from_secs(300),
            log_lines: 20,
            namespaces: ServedNamespaces::All,
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
#[derive(Debug)]
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
        let Some(spec) = job.pod() else {
            return Effect::Done(failed("not a pod job".to_owned()));
        };
        let namespace = spec
            .namespace
            .clone()
            .unwrap_or_else(|| self.client.default_namespace().to_owned());
        if let Err(refused) = self.config.namespaces.check(&namespace) {
            info!(%namespace, run = %job.run, node = %job.node, "pod job refused: namespace not served");
            // Another attempt would meet workers configured alike: the node fails now.
            return Effect::Done(Outcome::Failed {
                error: refused.to_string(),
                output: None,
                kind: FailureKind::Final,
            });
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let name = pod_name(&job.node, &job.run, job.attempt);
        if let Err(e) = self.create_or_adopt(&pods, job, spec, &name).await {
            return Effect::Done(failed(e));
        }
        let timeout = job.timeout();
        let ended = tokio::select! {
            ended = self.watch(&pods, &name) => ended,
            _ = super::timed_out(timeout) => {
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
                    kind: FailureKind::Retryable,
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
            match seen(pod) {
                Seen::Ended(ended) => return *ended,
                Seen::Pulling(problem) => {
                    let since = pulling
                        .take()
                        .map_or_else(tokio::time::Instant::now, |(since, _)| since);
                    pulling = Some((since, problem));
                }
                Seen::Running => pulling = None,
            }
        }
    }

    /// Says why a failed pod failed ([`failure`]), with the last log lines of the container
    /// that failed.
    async fn explain(&self, pods: &Api<Pod>, pod: &Pod) -> String {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let (mut error, failed_container) = failure(pod);
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
}

/// Says why a failed pod failed, and names the container whose logs tell more: an eviction;
/// the pod's deadline; every init container and container that ended with a non-zero code
/// (an OOM kill named); else the pod's own message or reason.
fn failure(pod: &Pod) -> (String, Option<String>) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    if status.reason.as_deref() == Some("Evicted") {
        let message = status.message.unwrap_or_default();
        return (format!("pod {name} was evicted: {message}"), None);
    }
    let mut reasons = Vec::new();
    let mut failed_container = None;
    let inits = status.init_container_statuses.iter().flatten();
    let containers = status.container_statuses.iter().flatten();
    for (what, c) in inits
        .map(|c| ("init container", c))
        .chain(containers.map(|c| ("container", c)))
    {
        if let Some(t) = c.state.as_ref().and_then(|s| s.terminated.as_ref())
            && t.exit_code != 0
        {
            let reason = match t.reason.as_deref() {
                Some("OOMKilled") => format!(
                    "{what} {} was OOMKilled (exit code {})",
                    c.name, t.exit_code
                ),
                _ => format!("{what} {} exited with code {}", c.name, t.exit_code),
            };
            reasons.push(reason);
            failed_container.get_or_insert(c.name.clone());
        }
    }
    if status.reason.as_deref() == Some("DeadlineExceeded") {
        let message = status.message.clone().unwrap_or_default();
        reasons.insert(0, format!("deadline exceeded: {message}"));
    }
    if reasons.is_empty() {
        let why = status.message.or(status.reason).unwrap_or_default();
        reasons.push(format!("pod {name} failed: {why}"));
    }
    (reasons.join("; "), failed_container)
}

/// What one look at the watched pod tells.
#[derive(Debug)]
enum Seen {
    /// It ended; the watch is over.
    Ended(Box<Ended>),
    /// A container cannot pull its image, and why.
    Pulling(String),
    /// It runs, or waits to.
    Running,
}

/// Reads one state of the watched pod.
fn seen(pod: Pod) -> Seen {
    if pod.metadata.deletion_timestamp.is_some() {
        return Seen::Ended(Box::new(Ended::Gone(
            "is being deleted before it finished".to_owned(),
        )));
    }
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Succeeded") => return Seen::Ended(Box::new(Ended::Succeeded(pod))),
        Some("Failed") => return Seen::Ended(Box::new(Ended::Failed(pod))),
        _ => {}
    }
    match image_pull_problem(&pod) {
        Some(problem) => Seen::Pulling(problem),
        None => Seen::Running,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use baton_schemas::wire::{JobInputs, Work};
    use baton_schemas::{Attempt, NodeName, RunId, WorkflowName};
    use serde_json::json;

    fn job(template: serde_json::Value, container: Option<&str>, task: Option<&str>) -> Job {
        Job {
            inputs: JobInputs {
                initiator: "build".into(),
                data: "artifact".into(),
                inputs: Some(
                    [
                        (NodeName::new("build"), "artifact".to_owned()),
                        (NodeName::new("scan"), "clean".to_owned()),
                    ]
                    .into(),
                ),
            },
            ..Job::new(
                RunId::new("r1"),
                WorkflowName::new("wf"),
                NodeName::new("report-2"),
                Attempt(3),
                Work::Pod(Box::new(PodJob {
                    template: serde_json::from_value(template).unwrap(),
                    namespace: Some("ns".into()),
                    container: container.map(str::to_owned),
                    task: task.map(str::to_owned),
                })),
            )
        }
    }

    fn built(job: &Job) -> Pod {
        build_pod(job, job.pod().unwrap(), "the-pod")
    }

    fn env_of(c: &k8s_openapi::api::core::v1::Container) -> BTreeMap<String, String> {
        c.env
            .iter()
            .flatten()
            .map(|v| (v.name.clone(), v.value.clone().unwrap_or_default()))
            .collect()
    }

    const TEMPLATE: &str = r#"{
        "metadata": {"labels": {"team": "data", "baton.dev/task": "forged"}, "annotations": {"a": "b"},
                     "name": "ignored", "generateName": "ignored-", "namespace": "elsewhere"},
        "spec": {
            "restartPolicy": "Always",
            "serviceAccountName": "reporter",
            "volumes": [{"name": "scratch", "emptyDir": {}}],
            "initContainers": [{"name": "fetch", "image": "busybox", "command": ["true"]}],
            "containers": [
                {"name": "main", "image": "busybox", "command": ["sh"], "args": ["-c", "run"],
                 "env": [{"name": "MODE", "value": "full"}, {"name": "BATON_DATA", "value": "forged"},
                         {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                 "resources": {"limits": {"memory": "64Mi"}},
                 "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]},
                {"name": "side", "image": "busybox"}
            ]
        }
    }"#;

    #[test]
    fn the_whole_template_is_used_with_batons_labels_and_env() {
        let j = job(
            serde_json::from_str(TEMPLATE).unwrap(),
            None,
            Some("report"),
        );
        let pod = built(&j);
        let meta = &pod.metadata;
        assert_eq!(meta.name.as_deref(), Some("the-pod"));
        assert_eq!(
            (meta.generate_name.as_ref(), meta.namespace.as_ref()),
            (None, None)
        );
        assert_eq!(meta.annotations.as_ref().unwrap()["a"], "b");
        let labels = meta.labels.clone().unwrap();
        let expected = [
            ("team", "data"),
            ("baton.dev/run", "r1"),
            ("baton.dev/node", "report-2"),
            ("baton.dev/attempt", "3"),
            ("baton.dev/task", "report"),
            ("app.kubernetes.io/managed-by", "baton"),
        ];
        for (k, v) in expected {
            assert_eq!(labels.get(k).map(String::as_str), Some(v), "{k}");
        }
        let spec = pod.spec.unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.service_account_name.as_deref(), Some("reporter"));
        assert_eq!(spec.volumes.unwrap()[0].name, "scratch");
        let main = &spec.containers[0];
        assert_eq!(
            main.args.as_deref(),
            Some(&["-c".to_owned(), "run".to_owned()][..])
        );
        assert_eq!(
            main.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0,
            "64Mi"
        );
        assert_eq!(
            main.volume_mounts.as_ref().unwrap()[0].mount_path,
            "/scratch"
        );
        let pod_var = main.env.iter().flatten().find(|v| v.name == "POD").unwrap();
        assert!(pod_var.value_from.is_some(), "valueFrom kept");
        // Every container and init container gets Baton's and Orca's variables; a template's
        // own variable of the same name gives way.
        let fetch = &spec.init_containers.as_ref().unwrap()[0];
        for c in [main, &spec.containers[1], fetch] {
            let env = env_of(c);
            assert_eq!(env["BATON_RUN"], "r1", "{}", c.name);
            assert_eq!(env["BATON_NODE"], "report-2");
            assert_eq!(env["BATON_ATTEMPT"], "3");
            assert_eq!(env["BATON_INITIATOR"], "build");
            assert_eq!(env["BATON_DATA"], "artifact");
            assert_eq!(env["ORCA_INITIATOR"], "build");
            assert_eq!(env["ORCA_DATA"], "artifact");
            let inputs: serde_json::Value = serde_json::from_str(&env["BATON_INPUTS"]).unwrap();
            assert_eq!(inputs, json!({"build": "artifact", "scan": "clean"}));
        }
        assert_eq!(env_of(main)["MODE"], "full");
        let data_vars = main.env.iter().flatten().filter(|v| v.name == "BATON_DATA");
        assert_eq!(data_vars.count(), 1);
    }

    #[test]
    fn a_workflow_pod_claims_no_task() {
        let j = job(serde_json::from_str(TEMPLATE).unwrap(), None, None);
        let labels = built(&j).metadata.labels.unwrap();
        assert!(!labels.contains_key("baton.dev/task"), "{labels:?}");
        assert_eq!(labels["baton.dev/node"], "report-2");
    }

    #[tokio::test]
    async fn a_job_for_a_namespace_not_served_fails_finally_before_any_request() {
        // Nothing listens on the discard port: a request would fail with a connection error.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let served = ServedNamespaces::from_names(["jobs".to_owned()]);
        let executor = PodExecutor::new(
            client,
            PodConfig {
                namespaces: served,
                ..PodConfig::default()
            },
        );
        let j = job(serde_json::from_str(TEMPLATE).unwrap(), None, None);
        let never = CancellationToken::new();
        let effect = executor.run(&j, &never, &never).await;
        let Effect::Done(Outcome::Failed {
            error,
            output,
            kind,
        }) = effect
        else {
            panic!("{effect:?}");
        };
        assert!(
            error.starts_with(
                "namespace ns is not served: this worker serves only the namespaces jobs (--pod-namespaces)"
            ),
            "{error}"
        );
        assert_eq!((output, kind), (None, FailureKind::Final));
    }

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn terminated(name: &str, code: i32, reason: &str, message: &str) -> serde_json::Value {
        json!({"name": name, "ready": false, "restartCount": 0, "image": "busybox", "imageID": "",
               "state": {"terminated": {"exitCode": code, "reason": reason, "message": message}}})
    }

    #[test]
    fn the_output_is_the_chosen_containers_termination_message() {
        let finished = pod(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "main"}, {"name": "side"}]},
            // Statuses in another order than the spec's containers.
            "status": {"phase": "Succeeded", "containerStatuses": [
                terminated("side", 0, "Completed", "from side"),
                terminated("main", 0, "Completed", "from main"),
            ]},
        }));
        assert_eq!(
            output(&finished, None),
            "from main",
            "the first container by default"
        );
        assert_eq!(output(&finished, Some("side")), "from side");
        assert_eq!(output(&finished, Some("missing")), "");
    }

    fn failed_pod(status: serde_json::Value) -> Pod {
        pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "main"}]}, "status": status}),
        )
    }

    #[test]
    fn failures_are_told_apart() {
        let exit = failed_pod(json!({"phase": "Failed", "containerStatuses": [
            terminated("main", 0, "Completed", ""), terminated("side", 3, "Error", ""),
        ]}));
        assert_eq!(
            failure(&exit),
            (
                "container side exited with code 3".to_owned(),
                Some("side".to_owned())
            )
        );
        let oom = failed_pod(
            json!({"phase": "Failed", "containerStatuses": [terminated("main", 137, "OOMKilled", "")]}),
        );
        assert_eq!(
            failure(&oom).0,
            "container main was OOMKilled (exit code 137)"
        );
        let evicted = failed_pod(json!({"phase": "Failed", "reason": "Evicted",
            "message": "The node was low on resource: memory."}));
        assert_eq!(
            failure(&evicted),
            (
                "pod p was evicted: The node was low on resource: memory.".to_owned(),
                None
            )
        );
        let deadline = failed_pod(json!({"phase": "Failed", "reason": "DeadlineExceeded",
            "message": "Pod was active on the node longer than the specified deadline",
            "containerStatuses": [terminated("main", 137, "Error", "")]}));
        assert_eq!(
            failure(&deadline).0,
            "deadline exceeded: Pod was active on the node longer than the specified deadline; container main exited with code 137"
        );
        let init = failed_pod(json!({"phase": "Failed",
            "initContainerStatuses": [terminated("fetch", 0, "Completed", ""), terminated("migrate", 4, "Error", "")],
            "containerStatuses": [{"name": "main", "ready": false, "restartCount": 0, "image": "busybox", "imageID": "",
                                   "state": {"waiting": {"reason": "PodInitializing"}}}]}));
        assert_eq!(
            failure(&init),
            (
                "init container migrate exited with code 4".to_owned(),
                Some("migrate".to_owned())
            )
        );
        let other = failed_pod(json!({"phase": "Failed", "reason": "NodeLost"}));
        assert_eq!(failure(&other), ("pod p failed: NodeLost".to_owned(), None));
    }

    #[test]
    fn a_watched_pod_ends_is_deleted_or_cannot_pull() {
        let mut deleting = failed_pod(json!({"phase": "Running"}));
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-11-21T10:00:00Z".parse().unwrap(),
            ));
        assert!(
            matches!(seen(deleting), Seen::Ended(e) if matches!(*e, Ended::Gone(ref why) if why == "is being deleted before it finished"))
        );
        assert!(matches!(
            seen(failed_pod(json!({"phase": "Succeeded"}))),
            Seen::Ended(e) if matches!(*e, Ended::Succeeded(_))
        ));
        assert!(matches!(
            seen(failed_pod(json!({"phase": "Failed"}))),
            Seen::Ended(e) if matches!(*e, Ended::Failed(_))
        ));
        assert!(matches!(
            seen(failed_pod(json!({"phase": "Running"}))),
            Seen::Running
        ));
        let waiting = |reason: &str| {
            json!({"name": "main", "ready": false, "restartCount": 0, "image": "x", "imageID": "",
                   "state": {"waiting": {"reason": reason, "message": "not found"}}})
        };
        let pulling = failed_pod(
            json!({"phase": "Pending", "containerStatuses": [waiting("ImagePullBackOff")]}),
        );
        assert!(
            matches!(seen(pulling), Seen::Pulling(why) if why == "ImagePullBackOff: not found")
        );
        let init_pulling = failed_pod(
            json!({"phase": "Pending", "initContainerStatuses": [waiting("ErrImagePull")]}),
        );
        assert!(
            matches!(seen(init_pulling), Seen::Pulling(why) if why == "ErrImagePull: not found")
        );
        let creating = failed_pod(
            json!({"phase": "Pending", "containerStatuses": [waiting("ContainerCreating")]}),
        );
        assert!(matches!(seen(creating), Seen::Running));
    }
}
