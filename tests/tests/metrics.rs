//! Metrics, scraped by a real Prometheus: a planner (its API's `/metrics` with a viewer's
//! token, and its health port's without one) and a worker (`--metrics-listen`) during two
//! runs, one that succeeds and one that fails after retries. PromQL over Prometheus's HTTP
//! API then shows the counts the runs imply and histograms with observations.

use std::time::Duration;

use baton_schemas::status::State;
use baton_tests::prometheus::{PrometheusServer, ScrapeJob};
use baton_tests::{Env, free_port, wait_for_port};

const BATON: &str = env!("CARGO_BIN_EXE_baton-under-test");

fn example(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// GETs `url` with `token` (when given); returns the status, the content type and the body.
fn get(url: &str, token: Option<&str>) -> (u16, String, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut request = reqwest::Client::new().get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let kind = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, kind, response.text().await.unwrap())
    })
}

#[test]
fn prometheus_scrapes_a_planner_and_a_worker_during_runs() {
    let mut env = Env::new(BATON).unwrap();
    let (health_port, worker_port) = (free_port(), free_port());
    let planner = env
        .start_planner_with(&["--health-listen", &format!("127.0.0.1:{health_port}")])
        .unwrap();
    env.keep(planner);
    let worker = env
        .start_worker(
            "worker",
            "noop,exec",
            &["--metrics-listen", &format!("127.0.0.1:{worker_port}")],
        )
        .unwrap();
    env.keep(worker);
    wait_for_port(health_port, Duration::from_secs(30)).unwrap();
    wait_for_port(worker_port, Duration::from_secs(30)).unwrap();

    // The API's /metrics asks for a token like every other read; the health port's does not.
    let api_metrics = format!("{}/metrics", env.server());
    assert_eq!(get(&api_metrics, None).0, 401);
    let (status, kind, text) = get(&api_metrics, Some(&env.tokens.viewer));
    assert_eq!(status, 200, "{text}");
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# TYPE baton_planner_leader gauge"), "{text}");

    let token_file = env.write("viewer-token", &env.tokens.viewer);
    let jobs = [
        ScrapeJob::new("planner", env.api_port).with_token_file(token_file),
        ScrapeJob::new("planner-health", health_port),
        ScrapeJob::new("worker", worker_port),
    ];
    let prometheus_dir = env.dir.path().join("prometheus");
    std::fs::create_dir_all(&prometheus_dir).unwrap();
    let prometheus = PrometheusServer::start(&prometheus_dir, &jobs).unwrap();

    let diamond = env.apply(&example("diamond.yaml")).unwrap();
    let retry = env.apply(&example("retry-and-handler.yaml")).unwrap();
    let within = Duration::from_secs(60);
    assert_eq!(
        env.wait_end(&diamond, within).unwrap().state,
        State::Succeeded
    );
    assert_eq!(env.wait_end(&retry, within).unwrap().state, State::Failed);

    let wait = |query: &str, want: f64| {
        prometheus
            .wait_for(query, within, |v| v == want)
            .unwrap_or_else(|e| panic!("{e:#}"))
    };
    // Every scrape works, the API's with the token.
    for job in ["planner", "planner-health", "worker"] {
        wait(&format!("up{{job=\"{job}\"}}"), 1.0);
    }
    // Exact counts. The planner's: two workflow runs, one succeeded and one failed; the
    // diamond's four nodes and the handler succeeded, `migrate` failed all three of its
    // attempts; nothing waits on the bus once both ended (read every 5 s). The worker's:
    // eight deliveries, five succeeded and three failed, each timed twice (its effect, and its
    // wait on the bus).
    for (query, want) in [
        (
            r#"baton_runs_started_total{job="planner",kind="workflow"}"#,
            2.0,
        ),
        (
            r#"baton_runs_finished_total{job="planner",kind="workflow",state="succeeded"}"#,
            1.0,
        ),
        (
            r#"baton_runs_finished_total{job="planner",kind="workflow",state="failed"}"#,
            1.0,
        ),
        (
            r#"baton_node_attempts_total{job="planner",kind="exec",outcome="succeeded"}"#,
            5.0,
        ),
        (
            r#"baton_node_attempts_total{job="planner",kind="exec",outcome="failed"}"#,
            3.0,
        ),
        (r#"baton_planner_leader{job="planner-health"}"#, 1.0),
        (
            r#"baton_consumer_pending{job="planner",consumer="worker-exec"}"#,
            0.0,
        ),
        (
            r#"baton_worker_jobs_total{job="worker",kind="exec",outcome="succeeded"}"#,
            5.0,
        ),
        (
            r#"baton_worker_jobs_total{job="worker",kind="exec",outcome="failed"}"#,
            3.0,
        ),
        (
            r#"baton_node_duration_seconds_count{job="worker",kind="exec"}"#,
            8.0,
        ),
        (
            r#"baton_node_queue_seconds_count{job="worker",kind="exec"}"#,
            8.0,
        ),
        (
            r#"baton_worker_jobs_in_flight{job="worker",kind="exec"}"#,
            0.0,
        ),
    ] {
        wait(query, want);
    }
    // Lower bounds: the planner loop's own histograms and counters, the streams' sizes.
    for (query, least) in [
        (r#"baton_planner_apply_seconds_count{job="planner"}"#, 8.0),
        (
            r#"baton_planner_checkpoint_seconds_count{job="planner"}"#,
            1.0,
        ),
        (
            r#"baton_planner_messages_applied_total{job="planner",stream="events"}"#,
            8.0,
        ),
        (
            r#"baton_stream_messages{job="planner",stream="EVENTS"}"#,
            8.0,
        ),
    ] {
        prometheus
            .wait_for(query, within, |v| v >= least)
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    // A quantile over the histogram's buckets: every exec node here runs a shell command, so
    // the median is above zero and well under the largest bucket.
    prometheus
        .wait_for(
            r#"histogram_quantile(0.5, sum by (le) (baton_node_duration_seconds_bucket{job="worker"}))"#,
            within,
            |v| v > 0.0 && v < 60.0,
        )
        .unwrap();
    // Process metrics on both.
    for job in ["planner", "worker"] {
        prometheus
            .wait_for(
                &format!("process_resident_memory_bytes{{job=\"{job}\"}}"),
                within,
                |v| v > 1e6,
            )
            .unwrap();
    }
    // No run id is a label anywhere.
    let series = prometheus.query(r#"{__name__=~"baton_.+"}"#).unwrap();
    assert!(!series.is_empty());
    for s in series {
        let labels = s["metric"].to_string();
        assert!(
            !labels.contains(&diamond) && !labels.contains(&retry),
            "a run id as a label: {labels}"
        );
    }
}
