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

mod chart;
mod process;
#[cfg(test)]
mod tests;

use std::time::Duration;

use baton_schemas::helm::{Deploy, HelmSpec};
use serde_json::Value;
use tracing::{info, warn};

use super::generation::Generation;
use super::values::{self};
use super::{Done, Failure, HelmConfig, Operation};

use chart::*;
use process::*;

/// How long past its own timeout an operation may stay pending before it counts as stale.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(30);

/// The name of the repository `helm repo add` registers in an operation's own repository
/// config, when the repository needs a username and password.
pub(crate) const REPOSITORY_NAME: &str = "baton";

/// A release's status, as Helm names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ReleaseStatus {
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
    pub(crate) fn parse(status: &str) -> ReleaseStatus {
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
    pub(crate) fn is_pending(&self) -> bool {
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
pub(crate) enum Release {
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
pub(crate) async fn remediate(helm: &Helm<'_>, deploy: Deploy) -> Result<(), Failure> {
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
pub(crate) fn remediate_last_failure(spec: &HelmSpec, deploy: Deploy) -> bool {
    let remediation = spec.options(deploy.into()).get("remediation");
    match remediation
        .and_then(|r| r.get("remediateLastFailure"))
        .and_then(Value::as_bool)
    {
        Some(set) => set,
        None => deploy == Deploy::Upgrade && spec.remediation_retries(deploy).is_none_or(|r| r > 0),
    }
}

/// Parses Helm's times (RFC 3339 with any offset and fraction).
pub(crate) fn parse_time(text: &str) -> Option<std::time::SystemTime> {
    let at = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    Some(std::time::SystemTime::from(at.with_timezone(&chrono::Utc)))
}
