//! How the kubelet actor runs a pod: its containers as local processes, their statuses, logs
//! and termination messages.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::Api;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::PodLogs;

/// The most a termination message may hold, as in Kubernetes.
const MESSAGE_LIMIT: usize = 4096;

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Container statuses as they change, kept in container order.
struct Statuses {
    order: Vec<String>,
    by_name: BTreeMap<String, Value>,
}

impl Statuses {
    fn array(&self) -> Vec<Value> {
        self.order
            .iter()
            .filter_map(|n| self.by_name.get(n).cloned())
            .collect()
    }
}

/// The pod conditions a kubelet reports once its containers were started: `Ready` and
/// `ContainersReady` are `ready`, else false for `reason`.
fn conditions(ready: bool, reason: &str) -> Value {
    let at = now();
    let (status, reason) = if ready {
        ("True", None)
    } else {
        ("False", Some(reason))
    };
    json!([
        {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": at},
        {"type": "Initialized", "status": "True", "lastTransitionTime": at},
        {"type": "Ready", "status": status, "reason": reason, "lastTransitionTime": at},
        {"type": "ContainersReady", "status": status, "reason": reason, "lastTransitionTime": at},
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": at},
    ])
}

async fn patch_status(api: &Api<Pod>, name: &str, status: Value) {
    crate::kube::merge_status(api, name, status, "kubelet").await;
}

pub(super) async fn run_pod(api: Api<Pod>, pod: Pod, logs: PodLogs, stop: CancellationToken) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let init_containers = spec.init_containers.clone().unwrap_or_default();
    let oom = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kubelet.baton.dev/oom-kill"))
        .cloned();
    let started = now();

    let never_pulls = |c: &&Container| c.image.as_deref().unwrap_or("").contains("does-not-exist");
    let bad_init = init_containers.iter().find(never_pulls);
    if let Some(bad) = bad_init.or_else(|| spec.containers.iter().find(never_pulls)) {
        let list = if bad_init.is_some() {
            "initContainerStatuses"
        } else {
            "containerStatuses"
        };
        let waiting = |reason: &str| {
            json!({list: [{"name": bad.name, "ready": false, "restartCount": 0, "image": bad.image,
                   "state": {"waiting": {"reason": reason, "message": format!("failed to pull image {:?}: not found", bad.image.as_deref().unwrap_or(""))}}}]})
        };
        let mut first = waiting("ErrImagePull");
        first["phase"] = json!("Pending");
        first["startTime"] = json!(started);
        patch_status(&api, &name, first).await;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        patch_status(&api, &name, waiting("ImagePullBackOff")).await;
        return;
    }

    let deadline = spec
        .active_deadline_seconds
        .map(|s| Duration::from_secs(s.max(0) as u64));
    let deadline_passed = CancellationToken::new();
    let kill = stop.child_token();
    if let Some(d) = deadline {
        let (kill, passed) = (kill.clone(), deadline_passed.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = kill.cancelled() => {}
                _ = tokio::time::sleep(d) => { passed.cancel(); kill.cancel(); }
            }
        });
    }
    let waiting_containers = || -> Vec<Value> {
        spec.containers
            .iter()
            .map(|c| {
                json!({"name": c.name, "ready": false, "restartCount": 0, "image": c.image,
                       "state": {"waiting": {"reason": "PodInitializing"}}})
            })
            .collect()
    };

    // Init containers run one at a time, in order, before any container; with
    // `restartPolicy: Never` the first that fails fails the pod, and the containers never run.
    let init_statuses = Arc::new(Mutex::new(Statuses {
        order: init_containers.iter().map(|c| c.name.clone()).collect(),
        by_name: BTreeMap::new(),
    }));
    let mut init_ok = true;
    for c in &init_containers {
        init_statuses.lock().expect("statuses").by_name.insert(
            c.name.clone(),
            json!({"name": c.name, "ready": false, "restartCount": 0, "image": c.image,
                   "state": {"running": {"startedAt": now()}}}),
        );
        let inits = init_statuses.lock().expect("statuses").array();
        patch_status(
            &api,
            &name,
            json!({"phase": "Pending", "startTime": started, "initContainerStatuses": inits, "containerStatuses": waiting_containers()}),
        )
        .await;
        let code = run_container(
            c.clone(),
            &pod,
            logs.clone(),
            kill.clone(),
            false,
            init_statuses.clone(),
        )
        .await;
        if stop.is_cancelled() {
            return;
        }
        if code != Some(0) {
            init_ok = false;
            break;
        }
    }
    let inits = init_statuses.lock().expect("statuses").array();
    if !init_ok || deadline_passed.is_cancelled() {
        kill.cancel();
        let mut status = json!({"phase": "Failed", "initContainerStatuses": inits, "containerStatuses": waiting_containers()});
        if deadline_passed.is_cancelled() {
            status["reason"] = json!("DeadlineExceeded");
            status["message"] =
                json!("Pod was active on the node longer than the specified deadline");
        }
        patch_status(&api, &name, status).await;
        debug!(pod = %name, %namespace, "kubelet failed pod in its init containers");
        return;
    }

    let statuses = Arc::new(Mutex::new(Statuses {
        order: spec.containers.iter().map(|c| c.name.clone()).collect(),
        by_name: spec
            .containers
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    json!({"name": c.name, "ready": c.readiness_probe.is_none(), "restartCount": 0, "image": c.image,
                                         "state": {"running": {"startedAt": now()}}}),
                )
            })
            .collect(),
    }));
    // The actor runs no probes: a container with a readiness probe never passes it, so a
    // test can ask for a pod that runs but is never Ready (as Helm's `--wait` sees it).
    let ready = spec.containers.iter().all(|c| c.readiness_probe.is_none());
    let running = statuses.lock().expect("statuses").array();
    let mut status = json!({"phase": "Running", "startTime": started, "containerStatuses": running,
        "conditions": conditions(ready, "ContainersNotReady")});
    if !init_containers.is_empty() {
        status["initContainerStatuses"] = json!(inits);
    }
    patch_status(&api, &name, status).await;

    let runs = spec.containers.iter().map(|c| {
        let oom_kill = oom.as_deref() == Some(c.name.as_str());
        run_container(
            c.clone(),
            &pod,
            logs.clone(),
            kill.clone(),
            oom_kill,
            statuses.clone(),
        )
    });
    let results = futures::future::join_all(runs).await;
    kill.cancel();
    if stop.is_cancelled() {
        return;
    }
    let all_ok = results.iter().all(|code| *code == Some(0));
    let containers = statuses.lock().expect("statuses").array();
    let mut status = json!({"containerStatuses": containers, "phase": if all_ok { "Succeeded" } else { "Failed" },
        "conditions": conditions(false, "PodCompleted")});
    if deadline_passed.is_cancelled() {
        status["phase"] = json!("Failed");
        status["reason"] = json!("DeadlineExceeded");
        status["message"] = json!("Pod was active on the node longer than the specified deadline");
    }
    patch_status(&api, &name, status).await;
    debug!(pod = %name, %namespace, all_ok, "kubelet finished pod");
}

/// Runs one container to its end; returns its exit code (`None` when it never ran).
async fn run_container(
    container: Container,
    pod: &Pod,
    logs: PodLogs,
    kill: CancellationToken,
    oom_kill: bool,
    statuses: Arc<Mutex<Statuses>>,
) -> Option<i32> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let scratch = tempfile::tempdir().ok()?;
    let message_file = scratch.path().join("termination-log");
    std::fs::write(&message_file, b"").ok()?;
    let message_path = container
        .termination_message_path
        .clone()
        .unwrap_or_else(|| "/dev/termination-log".to_owned());
    let argv: Vec<String> = container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .map(|a| a.replace(&message_path, &message_file.display().to_string()))
        .collect();
    let started = now();
    let log_key = (namespace.clone(), pod_name.clone(), container.name.clone());
    let finish = |code: i32, reason: &str, message: String| {
        let mut statuses = statuses.lock().expect("statuses");
        statuses.by_name.insert(
            container.name.clone(),
            json!({"name": container.name, "ready": false, "restartCount": 0, "image": container.image,
                   "state": {"terminated": {"exitCode": code, "reason": reason, "message": message,
                                            "startedAt": started, "finishedAt": now()}}}),
        );
    };
    let Some((program, args)) = argv.split_first() else {
        finish(
            128,
            "ContainerCannotRun",
            "no command: the test kubelet cannot run an image's entrypoint".to_owned(),
        );
        return Some(128);
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .current_dir(scratch.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    die_with_parent(&mut command);
    for var in container.env.iter().flatten() {
        let value = match (
            &var.value,
            var.value_from.as_ref().and_then(|f| f.field_ref.as_ref()),
        ) {
            (Some(v), _) => v.clone(),
            (None, Some(field)) => match field.field_path.as_str() {
                "metadata.name" => pod_name.clone(),
                "metadata.namespace" => namespace.clone(),
                _ => String::new(),
            },
            _ => String::new(),
        };
        command.env(&var.name, value);
    }
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            finish(128, "StartError", format!("cannot start {program:?}: {e}"));
            return Some(128);
        }
    };
    let pid = child.id().map(|p| p as i32);
    let mut readers = Vec::new();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child.stderr.take().map(|s| Box::new(s) as _),
    ]
    .into_iter()
    .flatten()
    {
        let (logs, key) = (logs.clone(), log_key.clone());
        readers.push(tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut logs = logs.lock().expect("logs");
                let log = logs.entry(key.clone()).or_default();
                log.push_str(&line);
                log.push('\n');
            }
        }));
    }
    let oom_timer = async {
        if oom_kill {
            tokio::time::sleep(Duration::from_millis(200)).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let (status, oom) = tokio::select! {
        s = child.wait() => (s.ok(), false),
        _ = kill.cancelled() => { kill_group(pid); (child.wait().await.ok(), false) }
        _ = oom_timer => { kill_group(pid); (child.wait().await.ok(), true) }
    };
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_secs(2), r).await;
    }
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .map(|s| s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9)))
        .unwrap_or(137);
    let mut message = std::fs::read(&message_file).unwrap_or_default();
    message.truncate(MESSAGE_LIMIT);
    let mut message = String::from_utf8_lossy(&message).into_owned();
    if message.is_empty()
        && code != 0
        && container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
    {
        let logs = logs.lock().expect("logs");
        let text = logs.get(&log_key).cloned().unwrap_or_default();
        message = log_tail(&text).to_owned();
    }
    let reason = if oom {
        "OOMKilled"
    } else if code == 0 {
        "Completed"
    } else {
        "Error"
    };
    finish(code, reason, message);
    Some(code)
}

/// Returns what `FallbackToLogsOnError` takes of a container's log: its last 80 lines, at
/// most their last 2048 bytes, cut at a character boundary (a log is any UTF-8 text).
fn log_tail(log: &str) -> &str {
    let log = log.trim_end_matches('\n');
    let from_line = log.rmatch_indices('\n').nth(79).map_or(0, |(i, _)| i + 1);
    let mut from = from_line.max(log.len().saturating_sub(2048));
    while !log.is_char_boundary(from) {
        from += 1;
    }
    &log[from..]
}

/// Makes a container's process die with the thread that started it: the shared kubelet
/// actor's runtime is never dropped, so `kill_on_drop` alone would leave a running container
/// behind when the test binary exits.
#[allow(unsafe_code)] // pre_exec is unsafe; the hook below only makes an async-signal-safe call
fn die_with_parent(command: &mut tokio::process::Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}

fn kill_group(pid: Option<i32>) {
    if let Some(pid) = pid {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::log_tail;

    #[test]
    fn the_log_tail_is_cut_at_a_character_boundary() {
        assert_eq!(log_tail("boom\n"), "boom");
        assert_eq!(log_tail("a\nb\n"), "a\nb");
        let lines: String = (0..100).map(|i| format!("{i}\n")).collect();
        assert!(log_tail(&lines).starts_with("20\n") && log_tail(&lines).ends_with("\n99"));
        // 3-byte characters: 2048 bytes from the end falls inside one of them.
        let wide = "€".repeat(1000);
        let tail = log_tail(&wide);
        assert!(tail.len() <= 2048 && tail.len() > 2040, "{}", tail.len());
        assert!(tail.chars().all(|c| c == '€'));
    }
}
