//! Where a chart comes from (a repository, OCI, a URL), with the credentials it needs, and the
//! flags an upgrade is given.

use std::io::Write;
use std::path::{Path, PathBuf};

use baton_schemas::helm::{Deploy, HelmSpec, go_duration};
use serde_json::Value;

use super::super::Failure;
use super::super::generation::Generation;
use super::super::values::Credentials;

use super::*;

/// Where Helm finds the chart: the chart arguments of `upgrade` (a reference and its version,
/// or the directory of a subchart taken out of its parent), and the flags every chart
/// command needs to reach the repository.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ChartSource {
    pub(crate) chart: Vec<String>,
    pub(crate) access: Vec<String>,
}

/// Prepares the chart: logs in to its repository when it needs a username and password (a
/// config file of the operation's own, the password on Helm's standard input), writes its
/// certificates, and takes a subchart out of its parent.
pub(crate) async fn chart_source(
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
pub(crate) fn login_args(
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

pub(crate) fn first_dir(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
}

/// Returns the flags of `helm upgrade --install`.
pub(crate) fn upgrade_args(
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
pub(crate) fn certificate_flags(
    credentials: &Credentials,
    dir: &Path,
) -> Result<Vec<String>, Failure> {
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

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

pub(crate) fn flag(options: &serde_json::Map<String, Value>, key: &str) -> bool {
    options.get(key).and_then(Value::as_bool).unwrap_or(false)
}

pub(crate) fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}
