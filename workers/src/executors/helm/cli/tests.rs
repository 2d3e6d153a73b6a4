use super::*;
use crate::executors::helm::values::Credentials;
use serde_json::json;
use std::path::Path;
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
    assert!(failed("Error: uninstall: Release not loaded: web: release: not found").not_found());
    assert!(
        !failed("Error: chart \"web\" version \"9\" not found in https://x repository").not_found()
    );
    assert!(!failed("Error: create: failed to create: namespaces \"apps\" not found").not_found());
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
