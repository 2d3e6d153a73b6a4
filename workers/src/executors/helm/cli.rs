//! The `cli` driver: runs the Helm 3 or Helm 4 binary, with the flags of the one it finds.
//!
//! - **apply**: `helm upgrade --install <release> <chart> --namespace <ns> --create-namespace
//!   --values <file> --wait --timeout <t> --description <marker>`, the chart from its
//!   repository (`--repo <url> --version <v>`) or its OCI reference. A subchart is taken out of
//!   its parent chart (`helm pull --untar`, then `charts/<subchart>`). Flux's options map to
//!   flags (`upgrade.force` to `--force`, `disableWait` to no `--wait`, `disableHooks` to
//!   `--no-hooks`, ...), and Flux's remediation too: with `remediation.retries`, a failed
//!   install is uninstalled and a failed upgrade rolled back (`helm rollback`) before each
//!   retry.
//! - **uninstall**: `helm uninstall <release> --namespace <ns> --wait --timeout <t>`; a
//!   release that is not there counts as uninstalled.
//!
//! Before either, the release is read (`helm status -o json`). An operation still pending on
//! it (`pending-install`, `pending-upgrade`, `pending-rollback`, `uninstalling`: an earlier
//! delivery's helm, which outlives its worker) is waited for instead of starting another; one
//! pending for longer than its timeout allows is stale (its helm died with its machine) and
//! is cleared: an uninstall is finished, anything else rolled back to the last deployed
//! revision (`helm history -o json`), or uninstalled when there is none. A release deployed
//! with this attempt's marker as its description is adopted as it is.
//!
//! Repository credentials (`authSecretRef`) never go on Helm's command line, where any user
//! of the machine could read them: a username and password are handed to `helm repo add
//! --password-stdin` (or `helm registry login --password-stdin` for OCI) writing a repository
//! (or registry) config file in the operation's scratch directory, which the chart commands
//! read (`--repository-config`, `--registry-config`); certificates are files there too.
//!
//! Helm runs in its own process group and is not killed when the worker dies, so that an
//! operation under way ends cleanly for a redelivery to adopt; it is killed only when it
//! outlives the node's timeout. Its output goes to files, not pipes: the worker opens them
//! unlinked and reads them when Helm exits, and Helm holds its own descriptors, so a worker
//! that dies or stops takes nothing from it (with pipes, Helm's next write would kill it with
//! `SIGPIPE` and leave the release pending). Inside a pod, a killed container takes its Helm
//! with it: the release stays pending until a redelivery finds it stale and clears it.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use baton_schemas::helm::{Deploy, FluxOptions, HelmSpec, go_duration};
use serde_json::Value;
use tokio::process::Command;
use tracing::{debug, info, warn};

use super::generation::Generation;
use super::values::{self, Credentials};
use super::{Done, Failure, HelmConfig, Operation, pause};

/// How long past its own timeout an operation may stay pending before it counts as stale.
const STALE_AFTER: Duration = Duration::from_secs(30);

/// The name of the repository `helm repo add` registers in an operation's own repository
/// config, when the repository needs a username and password.
const REPOSITORY_NAME: &str = "baton";

/// A release's status, as Helm names it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ReleaseStatus {
    Deployed,
    Failed,
    Superseded,
    Uninstalled,
    Uninstalling,
    PendingInstall,
    PendingUpgrade,
    PendingRollback,
    /// A status this driver does not know (a newer Helm's).
    Other(String),
}

impl ReleaseStatus {
    fn parse(status: &str) -> ReleaseStatus {
        match status {
            "deployed" => ReleaseStatus::Deployed,
            "failed" => ReleaseStatus::Failed,
            "superseded" => ReleaseStatus::Superseded,
            "uninstalled" => ReleaseStatus::Uninstalled,
            "uninstalling" => ReleaseStatus::Uninstalling,
            "pending-install" => ReleaseStatus::PendingInstall,
            "pending-upgrade" => ReleaseStatus::PendingUpgrade,
            "pending-rollback" => ReleaseStatus::PendingRollback,
            other => ReleaseStatus::Other(other.to_owned()),
        }
    }

    /// Returns whether an operation is under way: another may not start until it ends.
    fn is_pending(&self) -> bool {
        matches!(
            self,
            ReleaseStatus::PendingInstall
                | ReleaseStatus::PendingUpgrade
                | ReleaseStatus::PendingRollback
                | ReleaseStatus::Uninstalling
        )
    }
}

impl std::fmt::Display for ReleaseStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReleaseStatus::Deployed => "deployed",
            ReleaseStatus::Failed => "failed",
            ReleaseStatus::Superseded => "superseded",
            ReleaseStatus::Uninstalled => "uninstalled",
            ReleaseStatus::Uninstalling => "uninstalling",
            ReleaseStatus::PendingInstall => "pending-install",
            ReleaseStatus::PendingUpgrade => "pending-upgrade",
            ReleaseStatus::PendingRollback => "pending-rollback",
            ReleaseStatus::Other(other) => other,
        })
    }
}

/// What `helm status` says of a release.
#[derive(Debug)]
enum Release {
    /// Not installed.
    Absent,
    /// Installed (or its latest operation failed or is pending).
    Present {
        status: ReleaseStatus,
        description: String,
        revision: i64,
        chart: Option<String>,
        last_deployed: Option<std::time::SystemTime>,
    },
}

/// What Helm printed.
struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Output {
    /// Returns the error Helm printed, at most its last 20 lines.
    fn error(&self) -> String {
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
    fn not_found(&self) -> bool {
        !self.success && self.stderr.contains("release: not found")
    }
}

/// Runs helm for one operation.
struct Helm<'a> {
    config: &'a HelmConfig,
    generation: Generation,
    op: &'a Operation<'a>,
}

impl Helm<'_> {
    fn release(&self) -> &str {
        &self.op.spec.release
    }

    fn namespace(&self) -> &str {
        &self.op.spec.namespace
    }

    /// Runs `helm <args>` to its end, the operation's deadline (it is then killed), or the
    /// stop token (it is then left to end on its own).
    async fn run(&self, args: &[String]) -> Result<Output, Failure> {
        self.run_with_input(args, None).await
    }

    /// Runs `helm <verb> <release> --namespace <ns> --output json` (`status`, `history`).
    async fn read(&self, verb: &str) -> Result<Output, Failure> {
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
    async fn run_with_input(
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
    async fn status(&self) -> Result<Release, Failure> {
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
    async fn settle(&self, clear: bool) -> Result<(Release, bool), Failure> {
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
    async fn clear_stale(&self, status: &ReleaseStatus) -> Result<(), Failure> {
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
    async fn rollback(&self, revision: Option<i64>) -> Result<(), Failure> {
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
    async fn uninstall(&self) -> Result<bool, Failure> {
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

/// Brings the release to its spec: `helm upgrade --install`, after waiting out or adopting
/// what an earlier delivery did.
pub(crate) async fn apply(
    config: &HelmConfig,
    generation: Generation,
    client: Option<&kube::Client>,
    op: &Operation<'_>,
) -> Result<Done, Failure> {
    let helm = Helm {
        config,
        generation,
        op,
    };
    let spec = op.spec;
    let (release, waited) = helm.settle(true).await?;
    if let Release::Present {
        status,
        description,
        revision,
        chart,
        ..
    } = &release
    {
        if *status == ReleaseStatus::Deployed && *description == op.marker {
            info!(release = %spec.release, namespace = %spec.namespace, revision, "the release is at this attempt's spec already; adopting it");
            return Ok(Done {
                what: "adopted",
                revision: Some(*revision),
                chart: chart.clone(),
            });
        }
        if waited && *status == ReleaseStatus::Failed {
            return Err(Failure::Error(format!(
                "the operation under way on release {}/{} (an earlier delivery's) failed: {description}",
                spec.namespace, spec.release
            )));
        }
    }
    let scratch = tempfile::Builder::new()
        .prefix("baton-helm-")
        .tempdir()
        .map_err(|e| Failure::Error(format!("cannot create a scratch directory: {e}")))?;
    let values = values::values(client, spec).await?;
    let values_file = scratch.path().join("values.json");
    // JSON is YAML: Helm reads it as a values file.
    std::fs::write(&values_file, Value::Object(values).to_string())
        .map_err(|e| Failure::Error(format!("writing the values file: {e}")))?;
    let credentials = match spec.chart.as_ref().and_then(|c| c.auth_secret_ref.as_ref()) {
        Some(secret) => Some(values::credentials(client, secret).await?),
        None => None,
    };
    let chart = chart_source(&helm, scratch.path(), credentials.as_ref()).await?;
    let deploy = match release {
        Release::Absent => Deploy::Install,
        Release::Present { .. } => Deploy::Upgrade,
    };
    let mut retries_left = spec.remediation_retries(deploy);
    loop {
        let args = upgrade_args(
            spec,
            helm.generation,
            deploy,
            &chart,
            &values_file,
            &op.marker,
        );
        let out = helm.run(&args).await?;
        if out.success {
            break;
        }
        let error = format!("helm upgrade --install: {}", out.error());
        let retry = match retries_left {
            None => true,
            Some(0) => false,
            Some(n) => {
                retries_left = Some(n - 1);
                true
            }
        };
        if retry && tokio::time::Instant::now() < op.deadline {
            warn!(release = %spec.release, %error, "release failed; remediating before a retry");
            remediate(&helm, deploy).await?;
            continue;
        }
        if remediate_last_failure(spec, deploy) {
            remediate(&helm, deploy).await?;
        }
        return Err(Failure::Error(error));
    }
    let after = helm.status().await?;
    let (revision, chart) = match after {
        Release::Present {
            revision, chart, ..
        } => (Some(revision), chart),
        Release::Absent => (None, None),
    };
    Ok(Done {
        what: match deploy {
            Deploy::Install => "installed",
            Deploy::Upgrade => "upgraded",
        },
        revision,
        chart,
    })
}

/// Removes the release, after waiting out an operation under way on it.
pub(crate) async fn uninstall(
    config: &HelmConfig,
    generation: Generation,
    op: &Operation<'_>,
) -> Result<Done, Failure> {
    let helm = Helm {
        config,
        generation,
        op,
    };
    let (release, _) = helm.settle(false).await?;
    if matches!(release, Release::Absent) {
        return Ok(Done {
            what: "absent",
            ..Done::default()
        });
    }
    let removed = helm.uninstall().await?;
    Ok(Done {
        what: if removed { "uninstalled" } else { "absent" },
        ..Done::default()
    })
}

/// Undoes a failed install (uninstall) or upgrade (Flux's strategy: rollback by default).
async fn remediate(helm: &Helm<'_>, deploy: Deploy) -> Result<(), Failure> {
    let strategy = helm
        .op
        .spec
        .options(deploy.into())
        .get("remediation")
        .and_then(|r| r.get("strategy"))
        .and_then(Value::as_str)
        .unwrap_or("rollback");
    if deploy == Deploy::Install || strategy == "uninstall" {
        helm.uninstall().await.map(|_| ())
    } else {
        helm.rollback(None).await
    }
}

/// Returns whether Flux remediates the last failure: `remediateLastFailure`, by default
/// false for installs and true for upgrades with retries.
fn remediate_last_failure(spec: &HelmSpec, deploy: Deploy) -> bool {
    let remediation = spec.options(deploy.into()).get("remediation");
    match remediation
        .and_then(|r| r.get("remediateLastFailure"))
        .and_then(Value::as_bool)
    {
        Some(set) => set,
        None => deploy == Deploy::Upgrade && spec.remediation_retries(deploy).is_none_or(|r| r > 0),
    }
}

/// Where Helm finds the chart: the chart arguments of `upgrade` (a reference and its version,
/// or the directory of a subchart taken out of its parent), and the flags every chart
/// command needs to reach the repository.
#[derive(Debug, Default, PartialEq)]
struct ChartSource {
    chart: Vec<String>,
    access: Vec<String>,
}

/// Prepares the chart: logs in to its repository when it needs a username and password (a
/// config file of the operation's own, the password on Helm's standard input), writes its
/// certificates, and takes a subchart out of its parent.
async fn chart_source(
    helm: &Helm<'_>,
    scratch: &Path,
    credentials: Option<&Credentials>,
) -> Result<ChartSource, Failure> {
    let Some(chart) = &helm.op.spec.chart else {
        return Err(Failure::Error("an apply needs a chart".to_owned()));
    };
    let mut access = match credentials {
        Some(credentials) => certificate_flags(credentials, scratch)?,
        None => Vec::new(),
    };
    let login = credentials.filter(|c| c.username.is_some() || c.password.is_some());
    let mut source = match login {
        None if chart.is_oci() => vec![chart.oci_ref()],
        None => vec![chart.name.clone(), "--repo".to_owned(), chart.url.clone()],
        Some(credentials) => {
            let (args, config) = login_args(chart, credentials, scratch, &access);
            let password = credentials.password.clone().unwrap_or_default();
            let out = helm.run_with_input(&args, Some(&password)).await?;
            if !out.success {
                return Err(Failure::Error(format!(
                    "helm {} {}: {}",
                    args[0],
                    args[1],
                    out.error()
                )));
            }
            access.extend(config);
            if chart.is_oci() {
                vec![chart.oci_ref()]
            } else {
                vec![format!("{REPOSITORY_NAME}/{}", chart.name)]
            }
        }
    };
    if let Some(version) = chart.pinned_version() {
        source.extend(["--version".to_owned(), version.to_owned()]);
    }
    let Some(subchart) = &chart.subchart else {
        return Ok(ChartSource {
            chart: source,
            access,
        });
    };
    let into = scratch.join("charts");
    let mut args = vec!["pull".to_owned()];
    args.extend(source);
    args.extend([
        "--untar".to_owned(),
        "--untardir".to_owned(),
        into.display().to_string(),
    ]);
    args.extend(access.iter().cloned());
    let out = helm.run(&args).await?;
    if !out.success {
        return Err(Failure::Error(format!(
            "helm pull {}: {}",
            chart.name,
            out.error()
        )));
    }
    let parent = first_dir(&into)
        .ok_or_else(|| Failure::Error(format!("helm pull {} unpacked no chart", chart.name)))?;
    let charts = parent.join("charts");
    let dir = charts.join(subchart);
    let local = if dir.join("Chart.yaml").is_file() {
        dir
    } else {
        std::fs::read_dir(&charts)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{subchart}-")) && n.ends_with(".tgz"))
            })
            .ok_or_else(|| {
                Failure::Error(format!(
                    "chart {} has no subchart {subchart} (no charts/{subchart} in it)",
                    chart.name
                ))
            })?
    };
    // A local chart needs no repository: only its path.
    Ok(ChartSource {
        chart: vec![local.display().to_string()],
        access: Vec::new(),
    })
}

/// Returns the command that logs in to the chart's repository with the password on standard
/// input — `helm repo add` for a Helm repository, `helm registry login` for an OCI registry
/// — and the flags that make later commands read what it wrote.
fn login_args(
    chart: &baton_schemas::helm::HelmChart,
    credentials: &Credentials,
    scratch: &Path,
    certificates: &[String],
) -> (Vec<String>, Vec<String>) {
    let username = credentials.username.clone().unwrap_or_default();
    let (mut args, config) = if chart.is_oci() {
        let registry = chart
            .url
            .trim_start_matches("oci://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let file = scratch.join("registry.json").display().to_string();
        (
            strings(&["registry", "login", &registry, "--registry-config", &file]),
            strings(&["--registry-config", &file]),
        )
    } else {
        let file = scratch.join("repositories.yaml").display().to_string();
        let cache = scratch.join("repository-cache").display().to_string();
        let config = strings(&["--repository-config", &file, "--repository-cache", &cache]);
        let mut args = strings(&["repo", "add", REPOSITORY_NAME, &chart.url]);
        args.extend(config.iter().cloned());
        (args, config)
    };
    args.extend(strings(&["--username", &username, "--password-stdin"]));
    args.extend(certificates.iter().cloned());
    (args, config)
}

fn first_dir(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
}

/// Returns the flags of `helm upgrade --install`.
fn upgrade_args(
    spec: &HelmSpec,
    generation: Generation,
    deploy: Deploy,
    chart: &ChartSource,
    values: &Path,
    marker: &str,
) -> Vec<String> {
    let options = spec.options(deploy.into());
    let mut args = strings(&["upgrade", "--install", &spec.release]);
    args.extend(chart.chart.iter().cloned());
    args.extend(strings(&[
        "--namespace",
        &spec.namespace,
        "--create-namespace",
        "--values",
        &values.display().to_string(),
        "--timeout",
        &go_duration(spec.timeout()),
        "--description",
        marker,
    ]));
    if !flag(options, "disableWait") {
        args.push(generation.wait().to_owned());
        if !flag(options, "disableWaitForJobs") {
            args.push("--wait-for-jobs".to_owned());
        }
    }
    let mut mapped = vec![
        ("disableHooks", "--no-hooks"),
        ("disableOpenAPIValidation", "--disable-openapi-validation"),
    ];
    match deploy {
        Deploy::Upgrade => mapped.extend([
            ("force", generation.force()),
            ("cleanupOnFail", "--cleanup-on-fail"),
            ("preserveValues", "--reuse-values"),
        ]),
        Deploy::Install => {
            if flag(options, "skipCRDs")
                || options.get("crds").and_then(Value::as_str) == Some("Skip")
            {
                args.push("--skip-crds".to_owned());
            }
        }
    }
    for (option, helm_flag) in mapped {
        if flag(options, option) {
            args.push(helm_flag.to_owned());
        }
    }
    args.extend(chart.access.iter().cloned());
    args
}

/// Writes a repository's certificates into `dir` and returns the flags naming them.
fn certificate_flags(credentials: &Credentials, dir: &Path) -> Result<Vec<String>, Failure> {
    let mut args = Vec::new();
    for (bytes, file, helm_flag) in [
        (&credentials.ca, "ca.crt", "--ca-file"),
        (&credentials.cert, "tls.crt", "--cert-file"),
        (&credentials.key, "tls.key", "--key-file"),
    ] {
        if let Some(bytes) = bytes {
            let path = dir.join(file);
            write_private(&path, bytes)
                .map_err(|e| Failure::Error(format!("writing {file}: {e}")))?;
            args.extend([helm_flag.to_owned(), path.display().to_string()]);
        }
    }
    Ok(args)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

/// Reads back what Helm wrote to one of its output files.
fn read_back(mut file: std::fs::File) -> std::io::Result<String> {
    let mut bytes = Vec::new();
    file.rewind()?;
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn flag(options: &serde_json::Map<String, Value>, key: &str) -> bool {
    options.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Parses Helm's times (RFC 3339 with any offset and fraction).
fn parse_time(text: &str) -> Option<std::time::SystemTime> {
    let at = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    Some(std::time::SystemTime::from(at.with_timezone(&chrono::Utc)))
}

fn kill_group(pid: Option<u32>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio_util::sync::CancellationToken;

    fn spec(extra: Value) -> HelmSpec {
        let mut base = json!({
            "release": "web", "namespace": "apps",
            "chart": {"url": "https://charts.example.com", "name": "nginx", "version": "1.2.3"},
        });
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    fn repository_chart() -> ChartSource {
        ChartSource {
            chart: strings(&[
                "nginx",
                "--repo",
                "https://charts.example.com",
                "--version",
                "1.2.3",
            ]),
            access: Vec::new(),
        }
    }

    #[test]
    fn upgrade_flags_follow_flux_options() {
        let s = spec(
            json!({"upgrade": {"force": true, "disableWait": true}, "install": {"disableHooks": true, "crds": "Skip"}, "timeout": "90s"}),
        );
        let chart = repository_chart();
        let upgrade = upgrade_args(
            &s,
            Generation::Helm3,
            Deploy::Upgrade,
            &chart,
            Path::new("/tmp/v.json"),
            "baton r/n/1",
        );
        assert_eq!(
            upgrade.join(" "),
            "upgrade --install web nginx --repo https://charts.example.com --version 1.2.3 --namespace apps --create-namespace --values /tmp/v.json --timeout 1m30s --description baton r/n/1 --force"
        );
        let install = upgrade_args(
            &s,
            Generation::Helm3,
            Deploy::Install,
            &chart,
            Path::new("/tmp/v.json"),
            "baton r/n/1",
        );
        assert!(
            install
                .join(" ")
                .ends_with("--wait --wait-for-jobs --skip-crds --no-hooks"),
            "{install:?}"
        );
    }

    #[test]
    fn the_last_failure_is_remediated_as_flux_does() {
        assert!(!remediate_last_failure(&spec(json!({})), Deploy::Install));
        assert!(!remediate_last_failure(&spec(json!({})), Deploy::Upgrade));
        assert!(remediate_last_failure(
            &spec(json!({"upgrade": {"remediation": {"retries": 1}}})),
            Deploy::Upgrade
        ));
        assert!(remediate_last_failure(
            &spec(json!({"install": {"remediation": {"remediateLastFailure": true}}})),
            Deploy::Install
        ));
    }

    #[test]
    fn helm_times_parse_with_offsets() {
        let a = parse_time("2024-05-01T10:00:00.123456789Z").unwrap();
        let b = parse_time("2024-05-01T12:00:00.123456789+02:00").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn an_uninstall_under_way_is_pending_and_unknown_statuses_are_kept() {
        assert!(ReleaseStatus::parse("uninstalling").is_pending());
        assert!(ReleaseStatus::parse("pending-rollback").is_pending());
        assert!(!ReleaseStatus::parse("failed").is_pending());
        let other = ReleaseStatus::parse("pending-something-new");
        assert_eq!(other, ReleaseStatus::Other("pending-something-new".into()));
        assert_eq!(other.to_string(), "pending-something-new");
        assert_eq!(
            ReleaseStatus::parse("uninstalling").to_string(),
            "uninstalling"
        );
    }

    #[test]
    fn only_a_missing_release_is_not_found() {
        let failed = |stderr: &str| Output {
            success: false,
            stdout: String::new(),
            stderr: stderr.to_owned(),
        };
        assert!(failed("Error: release: not found").not_found());
        assert!(
            failed("Error: uninstall: Release not loaded: web: release: not found").not_found()
        );
        assert!(
            !failed("Error: chart \"web\" version \"9\" not found in https://x repository")
                .not_found()
        );
        assert!(
            !failed("Error: create: failed to create: namespaces \"apps\" not found").not_found()
        );
    }

    #[test]
    fn a_repository_password_goes_to_standard_input_not_the_command_line() {
        let credentials = Credentials {
            username: Some("robot".into()),
            password: Some("hunter2".into()),
            ..Credentials::default()
        };
        let s = spec(json!({}));
        let chart = s.chart.as_ref().unwrap();
        let (args, config) = login_args(
            chart,
            &credentials,
            Path::new("/s"),
            &strings(&["--ca-file", "/s/ca.crt"]),
        );
        assert_eq!(
            args.join(" "),
            "repo add baton https://charts.example.com --repository-config /s/repositories.yaml --repository-cache /s/repository-cache --username robot --password-stdin --ca-file /s/ca.crt"
        );
        assert_eq!(
            config.join(" "),
            "--repository-config /s/repositories.yaml --repository-cache /s/repository-cache"
        );
        let mut oci = chart.clone();
        oci.url = "oci://registry.example.com/charts".into();
        let (args, config) = login_args(&oci, &credentials, Path::new("/s"), &[]);
        assert_eq!(
            args.join(" "),
            "registry login registry.example.com --registry-config /s/registry.json --username robot --password-stdin"
        );
        assert_eq!(config.join(" "), "--registry-config /s/registry.json");
        assert!(!args.iter().chain(&config).any(|a| a.contains("hunter2")));
    }

    /// Runs `sh -c script` as Helm would be run.
    async fn run_sh(script: &str, stop: &CancellationToken) -> Result<Output, Failure> {
        let config = HelmConfig {
            binary: "sh".into(),
            ..HelmConfig::default()
        };
        let spec = spec(json!({}));
        let op = Operation {
            spec: &spec,
            marker: "baton r/n/1".into(),
            deadline: tokio::time::Instant::now() + Duration::from_secs(10),
            stop,
        };
        Helm {
            config: &config,
            generation: Generation::Helm3,
            op: &op,
        }
        .run_with_input(&strings(&["-c", script]), Some("from stdin"))
        .await
    }

    #[tokio::test]
    async fn what_helm_prints_is_read_back_when_it_ends() {
        let out = run_sh(
            "read line; echo \"out $line\"; echo err >&2; exit 3",
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert!(!out.success);
        assert_eq!(out.stdout, "out from stdin\n");
        assert_eq!(out.stderr, "err\n");
    }

    #[tokio::test]
    async fn helm_writes_on_after_its_worker_stopped_waiting() {
        // A worker that stops (or dies) stops reading; Helm writes on and ends its operation.
        // On a pipe its next write would kill it with SIGPIPE, the release left pending.
        let dir = tempfile::tempdir().unwrap();
        let done = dir.path().join("done");
        let stop = CancellationToken::new();
        let script = format!(
            "sleep 0.5; echo still here; echo still here >&2; touch {}",
            done.display()
        );
        let stopper = {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                stop.cancel();
            })
        };
        assert!(matches!(
            run_sh(&script, &stop).await,
            Err(Failure::Stopped)
        ));
        stopper.await.unwrap();
        let started = std::time::Instant::now();
        while !done.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "helm died writing after its worker stopped reading"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
