//! One Helm as a child process: its commands, what it prints read back when it ends, the
//! release's status, and settling a release another Helm left pending.

use std::io::{Read, Seek, Write};
use std::process::Stdio;

use baton_schemas::helm::{FluxOptions, go_duration};
use serde_json::Value;
use tokio::process::Command;
use tracing::{debug, info, warn};

use super::super::generation::Generation;
use super::super::{Failure, HelmConfig, Operation, pause};

use super::*;

/// What Helm printed.
pub(crate) struct Output {
    pub(crate) success: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Output {
    /// Returns the error Helm printed, at most its last 20 lines.
    pub(crate) fn error(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let lines: Vec<&str> = text.trim_end().lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Returns whether Helm failed because the release does not exist: its storage's
    /// `release: not found` (`helm status`, `helm history`; `helm uninstall` wraps it). Other
    /// things not found (a chart, a namespace, a file) are failures.
    pub(crate) fn not_found(&self) -> bool {
        !self.success && self.stderr.contains("release: not found")
    }
}

/// Runs helm for one operation.
pub(crate) struct Helm<'a> {
    pub(crate) config: &'a HelmConfig,
    pub(crate) generation: Generation,
    pub(crate) op: &'a Operation<'a>,
}

impl Helm<'_> {
    pub(crate) fn release(&self) -> &str {
        &self.op.spec.release
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.op.spec.namespace
    }

    /// Runs `helm <args>` to its end, the operation's deadline (it is then killed), or the
    /// stop token (it is then left to end on its own).
    pub(crate) async fn run(&self, args: &[String]) -> Result<Output, Failure> {
        self.run_with_input(args, None).await
    }

    /// Runs `helm <verb> <release> --namespace <ns> --output json` (`status`, `history`).
    pub(crate) async fn read(&self, verb: &str) -> Result<Output, Failure> {
        self.run(&strings(&[
            verb,
            self.release(),
            "--namespace",
            self.namespace(),
            "--output",
            "json",
        ]))
        .await
    }

    /// Runs `helm <args>` with `input` on its standard input (a password, never an
    /// argument). Its output goes to unlinked files it keeps writing to whatever becomes of
    /// this worker (see the module's docs).
    pub(crate) async fn run_with_input(
        &self,
        args: &[String],
        input: Option<&str>,
    ) -> Result<Output, Failure> {
        debug!(release = self.release(), ?args, "helm");
        let scratch = |what: &str, e: std::io::Error| {
            Failure::Error(format!("cannot open a scratch file for helm's {what}: {e}"))
        };
        let stdout = tempfile::tempfile().map_err(|e| scratch("output", e))?;
        let stderr = tempfile::tempfile().map_err(|e| scratch("errors", e))?;
        let stdin = match input {
            None => Stdio::null(),
            Some(text) => {
                let mut file = tempfile::tempfile().map_err(|e| scratch("input", e))?;
                file.write_all(text.as_bytes())
                    .and_then(|()| file.rewind())
                    .map_err(|e| scratch("input", e))?;
                Stdio::from(file)
            }
        };
        let mut command = Command::new(&self.config.binary);
        command
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::from(
                stdout.try_clone().map_err(|e| scratch("output", e))?,
            ))
            .stderr(Stdio::from(
                stderr.try_clone().map_err(|e| scratch("errors", e))?,
            ))
            .process_group(0);
        let mut child = command.spawn().map_err(|e| {
            Failure::Error(format!(
                "cannot run {} (the Helm 3 or 4 binary; --helm-binary): {e}",
                self.config.binary.display()
            ))
        })?;
        // The child has its own descriptors now; the command's copies go.
        drop(command);
        let pid = child.id();
        tokio::select! {
            status = child.wait() => {
                let status = status.map_err(|e| Failure::Error(format!("waiting for helm: {e}")))?;
                Ok(Output {
                    success: status.success(),
                    stdout: read_back(stdout).map_err(|e| scratch("output", e))?,
                    stderr: read_back(stderr).map_err(|e| scratch("errors", e))?,
                })
            }
            _ = tokio::time::sleep_until(self.op.deadline) => {
                kill_group(pid);
                Err(Failure::Error(format!(
                    "helm {} did not end within the node's timeout; killed",
                    args.first().map(String::as_str).unwrap_or_default()
                )))
            }
            _ = self.op.stop.cancelled() => Err(Failure::Stopped),
        }
    }

    /// Reads the release with `helm status -o json`.
    pub(crate) async fn status(&self) -> Result<Release, Failure> {
        let out = self.read("status").await?;
        if out.not_found() {
            return Ok(Release::Absent);
        }
        if !out.success {
            return Err(Failure::Error(format!(
                "helm status {}: {}",
                self.release(),
                out.error()
            )));
        }
        let json: Value = serde_json::from_str(&out.stdout)
            .map_err(|e| Failure::Error(format!("helm status printed no JSON: {e}")))?;
        let info = &json["info"];
        let status = ReleaseStatus::parse(info["status"].as_str().unwrap_or_default());
        if status == ReleaseStatus::Uninstalled {
            return Ok(Release::Absent);
        }
        let chart = json["chart"]["metadata"]["name"]
            .as_str()
            .zip(json["chart"]["metadata"]["version"].as_str())
            .map(|(n, v)| format!("{n}-{v}"));
        Ok(Release::Present {
            status,
            description: info["description"].as_str().unwrap_or_default().to_owned(),
            revision: json["version"].as_i64().unwrap_or_default(),
            chart,
            last_deployed: info["last_deployed"].as_str().and_then(parse_time),
        })
    }

    /// Waits until no operation is pending on the release. A pending one that outlived its
    /// timeout is cleared when `clear` is set (an apply needs the release free). Returns the
    /// release and whether something pending was waited for.
    pub(crate) async fn settle(&self, clear: bool) -> Result<(Release, bool), Failure> {
        let mut waited = false;
        loop {
            let release = self.status().await?;
            let Release::Present {
                status,
                last_deployed,
                ..
            } = &release
            else {
                return Ok((release, waited));
            };
            if !status.is_pending() {
                return Ok((release, waited));
            }
            let timeout = self.op.spec.timeout().0;
            let stale = last_deployed
                .is_some_and(|at| at.elapsed().unwrap_or_default() > timeout + STALE_AFTER);
            if stale {
                if !clear {
                    return Ok((release, waited));
                }
                warn!(release = self.release(), namespace = self.namespace(), %status, "an operation pending for longer than its timeout; clearing it");
                self.clear_stale(status).await?;
                continue;
            }
            if !waited {
                info!(release = self.release(), namespace = self.namespace(), %status, "an operation is under way on the release; waiting for it");
            }
            waited = true;
            if tokio::time::Instant::now() >= self.op.deadline {
                return Err(Failure::Error(format!(
                    "release {}/{} stayed {status} until the node's timeout",
                    self.namespace(),
                    self.release()
                )));
            }
            pause(self.config.poll, self.op.stop).await?;
        }
    }

    /// Clears a stale pending operation: finishes an uninstall, rolls anything else back to
    /// the last deployed revision, or uninstalls a release that never deployed.
    pub(crate) async fn clear_stale(&self, status: &ReleaseStatus) -> Result<(), Failure> {
        if *status == ReleaseStatus::Uninstalling {
            return self.uninstall().await.map(|_| ());
        }
        let out = self.read("history").await?;
        if !out.success {
            return Err(Failure::Error(format!("helm history: {}", out.error())));
        }
        let history: Vec<Value> = serde_json::from_str(&out.stdout)
            .map_err(|e| Failure::Error(format!("helm history printed no JSON: {e}")))?;
        let deployed = history
            .iter()
            .filter(|r| {
                let status = ReleaseStatus::parse(r["status"].as_str().unwrap_or_default());
                matches!(status, ReleaseStatus::Deployed | ReleaseStatus::Superseded)
            })
            .filter_map(|r| r["revision"].as_i64())
            .max();
        match deployed {
            Some(revision) => self.rollback(Some(revision)).await,
            None => self.uninstall().await.map(|_| ()),
        }
    }

    /// `helm rollback`, to `revision` or to the one before the latest.
    pub(crate) async fn rollback(&self, revision: Option<i64>) -> Result<(), Failure> {
        let spec = self.op.spec;
        let options = spec.options(FluxOptions::Rollback);
        let mut args = strings(&["rollback", self.release()]);
        if let Some(revision) = revision {
            args.push(revision.to_string());
        }
        args.extend(strings(&[
            "--namespace",
            self.namespace(),
            "--timeout",
            &go_duration(spec.timeout()),
        ]));
        if !flag(options, "disableWait") {
            args.push(self.generation.wait().to_owned());
            if !flag(options, "disableWaitForJobs") {
                args.push("--wait-for-jobs".to_owned());
            }
        }
        if flag(options, "recreate") {
            match self.generation.recreate_pods() {
                Some(helm_flag) => args.push(helm_flag.to_owned()),
                None => warn!(
                    release = self.release(),
                    "rollback.recreate asked for, but {} has no --recreate-pods: rolling back without it",
                    self.generation
                ),
            }
        }
        for (option, helm_flag) in [
            ("force", self.generation.force()),
            ("disableHooks", "--no-hooks"),
            ("cleanupOnFail", "--cleanup-on-fail"),
        ] {
            if flag(options, option) {
                args.push(helm_flag.to_owned());
            }
        }
        let out = self.run(&args).await?;
        if out.success {
            info!(
                release = self.release(),
                namespace = self.namespace(),
                ?revision,
                "rolled back"
            );
            Ok(())
        } else {
            Err(Failure::Error(format!("helm rollback: {}", out.error())))
        }
    }

    /// `helm uninstall`; returns false when there was nothing to uninstall.
    pub(crate) async fn uninstall(&self) -> Result<bool, Failure> {
        let spec = self.op.spec;
        let options = spec.options(FluxOptions::Uninstall);
        let mut args = strings(&[
            "uninstall",
            self.release(),
            "--namespace",
            self.namespace(),
            "--timeout",
            &go_duration(spec.timeout()),
        ]);
        if !flag(options, "disableWait") {
            args.push(self.generation.wait().to_owned());
        }
        if flag(options, "keepHistory") {
            args.push("--keep-history".to_owned());
        }
        if flag(options, "disableHooks") {
            args.push("--no-hooks".to_owned());
        }
        if let Some(propagation) = options.get("deletionPropagation").and_then(Value::as_str) {
            args.extend(strings(&["--cascade", propagation]));
        }
        let out = self.run(&args).await?;
        if out.success {
            Ok(true)
        } else if out.not_found() {
            Ok(false)
        } else {
            Err(Failure::Error(format!("helm uninstall: {}", out.error())))
        }
    }
}

/// Reads back what Helm wrote to one of its output files.
pub(crate) fn read_back(mut file: std::fs::File) -> std::io::Result<String> {
    let mut bytes = Vec::new();
    file.rewind()?;
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

pub(crate) fn kill_group(pid: Option<u32>) {
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    if let Err(e) = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    ) {
        warn!(pid, error = %e, "killing helm failed");
    }
}
