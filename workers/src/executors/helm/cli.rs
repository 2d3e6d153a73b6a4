//! The `cli` driver: runs the Helm 3 binary.
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
//! it (`pending-install`, `pending-upgrade`, `pending-rollback`: an earlier delivery's helm,
//! which outlives its worker) is waited for instead of starting another; one pending for
//! longer than its timeout allows is stale (its helm died with its machine) and is cleared:
//! rolled back to the last deployed revision (`helm history -o json`), or uninstalled when
//! there is none. A release deployed with this attempt's marker as its description is
//! adopted as it is.
//!
//! Helm runs in its own process group and is not killed when the worker dies, so that an
//! operation under way ends cleanly for a redelivery to adopt; it is killed only when it
//! outlives the node's timeout.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use baton_schemas::helm::{HelmSpec, go_duration};
use serde_json::Value;
use tokio::process::Command;
use tracing::{debug, info, warn};

use super::values::{self, Credentials};
use super::{Done, Failure, HelmConfig, Operation, pause};

/// How long past its own timeout an operation may stay pending before it counts as stale.
const STALE_AFTER: Duration = Duration::from_secs(30);

/// What `helm status` says of a release.
#[derive(Debug)]
enum Release {
    /// Not installed.
    Absent,
    /// Installed (or its latest operation failed or is pending).
    Present {
        status: String,
        description: String,
        revision: i64,
        chart: Option<String>,
        last_deployed: Option<std::time::SystemTime>,
    },
}

impl Release {
    fn status(&self) -> Option<&str> {
        match self {
            Release::Absent => None,
            Release::Present { status, .. } => Some(status),
        }
    }

    fn pending(&self) -> bool {
        self.status().is_some_and(|s| s.starts_with("pending-"))
    }
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

    fn not_found(&self) -> bool {
        !self.success && self.stderr.contains("not found")
    }
}

/// Runs helm for one operation.
struct Helm<'a> {
    config: &'a HelmConfig,
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
        debug!(release = self.release(), ?args, "helm");
        let mut command = Command::new(&self.config.binary);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let child = command.spawn().map_err(|e| {
            Failure::Error(format!(
                "cannot run {} (the Helm 3 binary; --helm-binary): {e}",
                self.config.binary.display()
            ))
        })?;
        let pid = child.id();
        tokio::select! {
            output = child.wait_with_output() => {
                let output = output.map_err(|e| Failure::Error(format!("waiting for helm: {e}")))?;
                Ok(Output {
                    success: output.status.success(),
                    stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
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
        let out = self
            .run(&strings(&[
                "status",
                self.release(),
                "--namespace",
                self.namespace(),
                "--output",
                "json",
            ]))
            .await?;
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
        let status = info["status"].as_str().unwrap_or_default().to_owned();
        if status == "uninstalled" {
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
            if !release.pending() {
                return Ok((release, waited));
            }
            let Release::Present {
                status,
                last_deployed,
                ..
            } = &release
            else {
                unreachable!("pending releases are present")
            };
            let timeout = self.op.spec.timeout().0;
            let stale = last_deployed
                .is_some_and(|at| at.elapsed().unwrap_or_default() > timeout + STALE_AFTER);
            if stale {
                if !clear {
                    return Ok((release, waited));
                }
                warn!(release = self.release(), namespace = self.namespace(), %status, "an operation pending for longer than its timeout; clearing it");
                self.clear_stale().await?;
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

    /// Clears a stale pending operation: rolls back to the last deployed revision, or
    /// uninstalls a release that never deployed.
    async fn clear_stale(&self) -> Result<(), Failure> {
        let out = self
            .run(&strings(&[
                "history",
                self.release(),
                "--namespace",
                self.namespace(),
                "--output",
                "json",
            ]))
            .await?;
        if !out.success {
            return Err(Failure::Error(format!("helm history: {}", out.error())));
        }
        let history: Vec<Value> = serde_json::from_str(&out.stdout)
            .map_err(|e| Failure::Error(format!("helm history printed no JSON: {e}")))?;
        let deployed = history
            .iter()
            .filter(|r| matches!(r["status"].as_str(), Some("deployed" | "superseded")))
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
        let options = spec.options("rollback");
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
            args.push("--wait".to_owned());
            if !flag(options, "disableWaitForJobs") {
                args.push("--wait-for-jobs".to_owned());
            }
        }
        for (option, helm_flag) in [
            ("force", "--force"),
            ("recreate", "--recreate-pods"),
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
        let options = spec.options("uninstall");
        let mut args = strings(&[
            "uninstall",
            self.release(),
            "--namespace",
            self.namespace(),
            "--timeout",
            &go_duration(spec.timeout()),
        ]);
        if !flag(options, "disableWait") {
            args.push("--wait".to_owned());
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
    client: Option<&kube::Client>,
    op: &Operation<'_>,
) -> Result<Done, Failure> {
    let helm = Helm { config, op };
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
        if status == "deployed" && *description == op.marker {
            info!(release = %spec.release, namespace = %spec.namespace, revision, "the release is at this attempt's spec already; adopting it");
            return Ok(Done {
                what: "adopted",
                revision: Some(*revision),
                chart: chart.clone(),
            });
        }
        if waited && status == "failed" {
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
    let auth = match spec.chart.as_ref().and_then(|c| c.auth_secret_ref.as_ref()) {
        Some(secret) => auth_flags(&values::credentials(client, secret).await?, scratch.path())?,
        None => Vec::new(),
    };
    let chart = chart_args(&helm, scratch.path(), &auth).await?;
    let exists = !matches!(release, Release::Absent);
    let which = if exists { "upgrade" } else { "install" };
    let mut retries_left = spec.remediation_retries(which);
    loop {
        let args = upgrade_args(spec, exists, &chart, &values_file, &op.marker, &auth);
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
            remediate(&helm, which).await?;
            continue;
        }
        if remediate_last_failure(spec, which) {
            remediate(&helm, which).await?;
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
        what: if exists { "upgraded" } else { "installed" },
        revision,
        chart,
    })
}

/// Removes the release, after waiting out an operation under way on it.
pub(crate) async fn uninstall(config: &HelmConfig, op: &Operation<'_>) -> Result<Done, Failure> {
    let helm = Helm { config, op };
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
async fn remediate(helm: &Helm<'_>, which: &str) -> Result<(), Failure> {
    let strategy = helm
        .op
        .spec
        .options(which)
        .get("remediation")
        .and_then(|r| r.get("strategy"))
        .and_then(Value::as_str)
        .unwrap_or("rollback");
    if which == "install" || strategy == "uninstall" {
        helm.uninstall().await.map(|_| ())
    } else {
        helm.rollback(None).await
    }
}

/// Returns whether Flux remediates the last failure: `remediateLastFailure`, by default
/// false for installs and true for upgrades with retries.
fn remediate_last_failure(spec: &HelmSpec, which: &str) -> bool {
    let remediation = spec.options(which).get("remediation");
    match remediation
        .and_then(|r| r.get("remediateLastFailure"))
        .and_then(Value::as_bool)
    {
        Some(set) => set,
        None => which == "upgrade" && spec.remediation_retries(which).is_none_or(|r| r > 0),
    }
}

/// Returns the chart arguments: a repository chart and its version, an OCI reference, or
/// the directory of a subchart taken out of its parent.
async fn chart_args(
    helm: &Helm<'_>,
    scratch: &Path,
    auth: &[String],
) -> Result<Vec<String>, Failure> {
    let Some(chart) = &helm.op.spec.chart else {
        return Err(Failure::Error("an apply needs a chart".to_owned()));
    };
    let mut source = if chart.is_oci() {
        vec![chart.oci_ref()]
    } else {
        vec![chart.name.clone(), "--repo".to_owned(), chart.url.clone()]
    };
    if let Some(version) = chart.pinned_version() {
        source.extend(["--version".to_owned(), version.to_owned()]);
    }
    let Some(subchart) = &chart.subchart else {
        return Ok(source);
    };
    let into = scratch.join("charts");
    let mut args = vec!["pull".to_owned()];
    args.extend(source);
    args.extend([
        "--untar".to_owned(),
        "--untardir".to_owned(),
        into.display().to_string(),
    ]);
    args.extend(auth.iter().cloned());
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
    if dir.join("Chart.yaml").is_file() {
        return Ok(vec![dir.display().to_string()]);
    }
    let packed = std::fs::read_dir(&charts)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{subchart}-")) && n.ends_with(".tgz"))
        });
    match packed {
        Some(path) => Ok(vec![path.display().to_string()]),
        None => Err(Failure::Error(format!(
            "chart {} has no subchart {subchart} (no charts/{subchart} in it)",
            chart.name
        ))),
    }
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
    exists: bool,
    chart: &[String],
    values: &Path,
    marker: &str,
    auth: &[String],
) -> Vec<String> {
    let options = spec.options(if exists { "upgrade" } else { "install" });
    let mut args = strings(&["upgrade", "--install", &spec.release]);
    args.extend(chart.iter().cloned());
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
        args.push("--wait".to_owned());
        if !flag(options, "disableWaitForJobs") {
            args.push("--wait-for-jobs".to_owned());
        }
    }
    let mut mapped = vec![
        ("disableHooks", "--no-hooks"),
        ("disableOpenAPIValidation", "--disable-openapi-validation"),
    ];
    if exists {
        mapped.extend([
            ("force", "--force"),
            ("cleanupOnFail", "--cleanup-on-fail"),
            ("preserveValues", "--reuse-values"),
        ]);
    } else if flag(options, "skipCRDs")
        || options.get("crds").and_then(Value::as_str) == Some("Skip")
    {
        args.push("--skip-crds".to_owned());
    }
    for (option, helm_flag) in mapped {
        if flag(options, option) {
            args.push(helm_flag.to_owned());
        }
    }
    args.extend(auth.iter().cloned());
    args
}

/// Writes a repository's certificates into `dir` and returns the flags naming them.
fn auth_flags(credentials: &Credentials, dir: &Path) -> Result<Vec<String>, Failure> {
    let mut args = Vec::new();
    if let Some(user) = &credentials.username {
        args.extend(["--username".to_owned(), user.clone()]);
    }
    if let Some(password) = &credentials.password {
        args.extend(["--password".to_owned(), password.clone()]);
    }
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
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
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

    #[test]
    fn upgrade_flags_follow_flux_options() {
        let s = spec(
            json!({"upgrade": {"force": true, "disableWait": true}, "install": {"disableHooks": true, "crds": "Skip"}, "timeout": "90s"}),
        );
        let chart = strings(&[
            "nginx",
            "--repo",
            "https://charts.example.com",
            "--version",
            "1.2.3",
        ]);
        let upgrade = upgrade_args(
            &s,
            true,
            &chart,
            Path::new("/tmp/v.json"),
            "baton r/n/1",
            &[],
        );
        assert_eq!(
            upgrade.join(" "),
            "upgrade --install web nginx --repo https://charts.example.com --version 1.2.3 --namespace apps --create-namespace --values /tmp/v.json --timeout 1m30s --description baton r/n/1 --force"
        );
        let install = upgrade_args(
            &s,
            false,
            &chart,
            Path::new("/tmp/v.json"),
            "baton r/n/1",
            &[],
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
        assert!(!remediate_last_failure(&spec(json!({})), "install"));
        assert!(!remediate_last_failure(&spec(json!({})), "upgrade"));
        assert!(remediate_last_failure(
            &spec(json!({"upgrade": {"remediation": {"retries": 1}}})),
            "upgrade"
        ));
        assert!(remediate_last_failure(
            &spec(json!({"install": {"remediation": {"remediateLastFailure": true}}})),
            "install"
        ));
    }

    #[test]
    fn helm_times_parse_with_offsets() {
        let a = parse_time("2024-05-01T10:00:00.123456789Z").unwrap();
        let b = parse_time("2024-05-01T12:00:00.123456789+02:00").unwrap();
        assert_eq!(a, b);
    }
}
