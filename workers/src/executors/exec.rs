//! The `exec` executor: runs a local process with the node's argv, env and working directory.
//!
//! The process gets `BATON_RUN`, `BATON_NODE`, `BATON_ATTEMPT`, `BATON_INITIATOR`,
//! `BATON_DATA`, `BATON_INPUTS` (several upstreams) and `BATON_OUTPUT`, the path of a file
//! that stands in for a pod's termination log: what the process writes there is the node's
//! output, at most [`OUTPUT_LIMIT_BYTES`]. A larger file fails the node rather than being cut.
//!
//! The process runs in its own process group, and a timeout or stop kills the whole group, so
//! a shell's children do not outlive it. If the worker itself dies, the process gets SIGKILL
//! (the parent-death signal), so it cannot finish an effect that the redelivered job repeats.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_schemas::OUTPUT_LIMIT_BYTES;
use baton_schemas::wire::{Job, Outcome};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::Effect;

/// How many of the process's last output lines go with a failure.
const TAIL_LINES: usize = 20;

/// Runs the job's process to its end, its timeout, or `stop`.
pub async fn run(job: &Job, stop: &CancellationToken) -> Effect {
    let Some(spec) = &job.exec else {
        return Effect::Done(failed("exec job without exec settings"));
    };
    let Some((program, args)) = spec.command.split_first() else {
        return Effect::Done(failed("exec job with an empty command"));
    };
    let scratch = match tempfile::Builder::new().prefix("baton-exec-").tempdir() {
        Ok(dir) => dir,
        Err(e) => return Effect::Done(failed(&format!("cannot create a scratch directory: {e}"))),
    };
    let output_path = scratch.path().join("output");
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(&spec.env)
        .envs(job.baton_env())
        .env("BATON_OUTPUT", &output_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &spec.working_dir {
        command.current_dir(dir);
    }
    die_with_worker(&mut command);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return Effect::Done(failed(&format!("cannot start {program:?}: {e}"))),
    };
    let pid = child.id();
    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
    let readers = [
        child
            .stdout
            .take()
            .map(|s| tokio::spawn(collect(s, tail.clone(), job.node.to_string()))),
        child
            .stderr
            .take()
            .map(|s| tokio::spawn(collect(s, tail.clone(), job.node.to_string()))),
    ];
    let timeout = job.timeout_ms.map(Duration::from_millis);
    let timed_out = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let ended = tokio::select! {
        status = child.wait() => Ok(status),
        _ = timed_out => Err(true),
        _ = stop.cancelled() => Err(false),
    };
    if ended.is_err() {
        kill_group(pid);
        let _ = child.wait().await;
    }
    for reader in readers.into_iter().flatten() {
        // The group is dead or exited; a grandchild that escaped it could hold the pipe open.
        let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
    }
    let last_lines = || {
        let tail = tail.lock().expect("tail lock");
        if tail.is_empty() {
            String::new()
        } else {
            format!(
                "; last output:\n{}",
                tail.iter().cloned().collect::<Vec<_>>().join("\n")
            )
        }
    };
    let status = match ended {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Effect::Done(failed(&format!("waiting for the process failed: {e}"))),
        Err(true) => {
            let t = humantime::format_duration(timeout.unwrap_or_default());
            return Effect::Done(failed(&format!("timed out after {t}{}", last_lines())));
        }
        Err(false) => return Effect::Stopped,
    };
    if !status.success() {
        use std::os::unix::process::ExitStatusExt;
        let how = match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            _ => "failed".to_owned(),
        };
        return Effect::Done(failed(&format!("{how}{}", last_lines())));
    }
    match read_output(&output_path).await {
        Ok(output) => Effect::Done(Outcome::Succeeded { output }),
        Err(e) => Effect::Done(failed(&e)),
    }
}

/// Reads the output file: empty when the process wrote none, an error above the cap.
async fn read_output(path: &std::path::Path) -> Result<String, String> {
    match tokio::fs::metadata(path).await {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(format!("cannot read BATON_OUTPUT: {e}")),
        Ok(meta) if meta.len() > OUTPUT_LIMIT_BYTES as u64 => {
            return Err(format!(
                "output is {} bytes, above the {OUTPUT_LIMIT_BYTES}-byte limit of BATON_OUTPUT (the size of a termination log)",
                meta.len()
            ));
        }
        Ok(_) => {}
    }
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| format!("cannot read BATON_OUTPUT: {e}"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

async fn collect(stream: impl AsyncRead + Unpin, tail: Arc<Mutex<VecDeque<String>>>, node: String) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        debug!(%node, %line, "exec output");
        let mut tail = tail.lock().expect("tail lock");
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

/// Makes the process get SIGKILL when the worker dies, so a worker killed in the middle of a
/// job leaves no process behind to finish an effect that the job's redelivery runs again.
#[allow(unsafe_code)] // pre_exec is unsafe; the hook below only makes async-signal-safe calls
fn die_with_worker(command: &mut Command) {
    let worker = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2) and
    // getppid(2), both async-signal-safe; it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // The signal follows the forking thread: a tokio runtime thread, which lives as long
            // as the worker. The worker may have died between fork and prctl: check.
            if nix::unistd::getppid() != worker {
                return Err(std::io::Error::other(
                    "the worker exited while starting the process",
                ));
            }
            Ok(())
        });
    }
}

fn kill_group(pid: Option<u32>) {
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    let group = nix::unistd::Pid::from_raw(pid);
    if let Err(e) = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL) {
        warn!(pid, error = %e, "killing the process group failed");
    }
}

fn failed(error: &str) -> Outcome {
    Outcome::failed(error.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_schemas::wire::{ExecJob, JobInputs, SCHEMA_VERSION};
    use baton_schemas::{Attempt, NodeKind, NodeName, RunId, WorkflowName};

    fn job(script: &str, timeout_ms: Option<u64>) -> Job {
        Job {
            v: SCHEMA_VERSION,
            run: RunId::new("r1"),
            workflow: WorkflowName::new("wf"),
            node: NodeName::new("n"),
            attempt: Attempt(2),
            kind: NodeKind::Exec,
            timeout_ms,
            exec: Some(ExecJob {
                command: vec!["sh".into(), "-c".into(), script.into()],
                env: [("GREETING".to_owned(), "hi".to_owned())].into(),
                working_dir: None,
            }),
            pod: None,
            webhook: None,
            publish: None,
            helm: None,
            traffic: None,
            analysis: None,
            inputs: JobInputs {
                initiator: "up".into(),
                data: "d1".into(),
                inputs: Some([(NodeName::new("up"), "d1".to_owned())].into()),
            },
        }
    }

    async fn outcome(script: &str, timeout_ms: Option<u64>) -> Outcome {
        match run(&job(script, timeout_ms), &CancellationToken::new()).await {
            Effect::Done(o) => o,
            Effect::Stopped => panic!("not stopped"),
        }
    }

    #[tokio::test]
    async fn output_file_and_env_reach_the_process() {
        let o = outcome(
            r#"printf '%s|%s|%s|%s|%s|%s|%s' "$GREETING" "$BATON_RUN" "$BATON_NODE" "$BATON_ATTEMPT" "$BATON_INITIATOR" "$BATON_DATA" "$BATON_INPUTS" > "$BATON_OUTPUT""#,
            None,
        )
        .await;
        assert_eq!(
            o,
            Outcome::Succeeded {
                output: r#"hi|r1|n|2|up|d1|{"up":"d1"}"#.into()
            }
        );
    }

    #[tokio::test]
    async fn non_zero_exit_fails_with_the_last_lines() {
        let Outcome::Failed { error, .. } = outcome("echo one; echo two >&2; exit 3", None).await
        else {
            panic!()
        };
        assert!(error.starts_with("exit code 3; last output:"), "{error}");
        assert!(error.contains("one") && error.contains("two"), "{error}");
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let started = std::time::Instant::now();
        let Outcome::Failed { error, .. } =
            outcome("sleep 30 & sleep 30; echo never", Some(300)).await
        else {
            panic!()
        };
        assert!(error.starts_with("timed out after 300ms"), "{error}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the sleeping children were killed"
        );
    }

    #[tokio::test]
    async fn output_above_the_cap_fails() {
        let Outcome::Failed { error, .. } =
            outcome("head -c 4097 /dev/zero > \"$BATON_OUTPUT\"", None).await
        else {
            panic!()
        };
        assert!(
            error.contains("4097 bytes, above the 4096-byte limit"),
            "{error}"
        );
        let o = outcome(
            "head -c 4096 /dev/zero | tr '\\0' x > \"$BATON_OUTPUT\"",
            None,
        )
        .await;
        assert!(matches!(o, Outcome::Succeeded { output } if output.len() == 4096));
    }

    #[tokio::test]
    async fn missing_program_fails_clearly() {
        let mut j = job("", None);
        j.exec.as_mut().unwrap().command = vec!["/no/such/program".into()];
        let Effect::Done(Outcome::Failed { error, .. }) = run(&j, &CancellationToken::new()).await
        else {
            panic!()
        };
        assert!(
            error.starts_with("cannot start \"/no/such/program\""),
            "{error}"
        );
    }

    #[tokio::test]
    async fn stop_ends_the_process() {
        let stop = CancellationToken::new();
        let j = job("sleep 30", None);
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            stopper.cancel();
        });
        assert_eq!(run(&j, &stop).await, Effect::Stopped);
    }
}
