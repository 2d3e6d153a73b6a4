//! The long-running commands: `up`, `planner` and `worker`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use baton_bus::{Bus, BusConfig, BusErrorKind};
use baton_planner::api::{ApiConfig, Auth, KubernetesAuth, LiveTokens, Role, Tokens};
use baton_planner::cluster::{self, ClusterConfig};
use baton_planner::discovery::{self, DiscoveryConfig};
use baton_planner::lease::LeaseConfig;
use baton_planner::metrics::PlannerMetrics;
use baton_planner::service::{Command, Planner, PlannerConfig};
use baton_planner::supervise::{SideTask, supervise};
use baton_schemas::status::RunStatus;
use baton_schemas::{Document, KindSet, NodeKind};
use baton_workers::executors::helm::HelmConfig;
use baton_workers::executors::pod::{PodConfig, ServedNamespaces};
use baton_workers::{WorkerConfig, WorkerMetrics};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Failure;
use crate::args::{PlannerArgs, PlannerOptions, UpArgs, WorkerArgs, WorkerOptions};
use crate::client::read_documents;
use crate::credentials;
use crate::nats_server::{self, NatsServer};

/// Returns a token cancelled on SIGTERM or SIGINT.
fn shutdown_on_signals() -> anyhow::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: shutting down"),
            _ = int.recv() => info!("SIGINT: shutting down"),
        }
        cancel.cancel();
    });
    Ok(token)
}

/// Connects to the bus; credentials that cannot be read, or that the server refuses, are the
/// user's input (exit 2). The URL is shown without any password it carries.
async fn connect(url: &str, config: BusConfig) -> Result<Bus, Failure> {
    let shown = baton_bus::redact_url(url);
    info!(nats = %shown, credentials = %config.credentials.describe(), "connecting to the bus");
    Bus::connect(url, config, Duration::from_secs(30))
        .await
        .map_err(|e| {
            let usage = matches!(e.kind(), BusErrorKind::Config | BusErrorKind::Refused);
            let error = anyhow::Error::new(e).context(format!("connecting to {shown}"));
            match usage {
                true => Failure::usage(error),
                false => Failure::from(error),
            }
        })
}

pub(crate) async fn planner(args: PlannerArgs) -> Result<(), Failure> {
    let Some(auth) = flag_auth(&args.planner).await? else {
        return Err(Failure::usage(anyhow::anyhow!(
            "the API needs --api-token-file (BATON_API_TOKEN_FILE) or --api-auth-kubernetes, or --api-no-auth to serve anyone who can reach --listen"
        )));
    };
    let api = args
        .planner
        .api_config(args.planner.document_limits(PLANNER_KINDS), auth)?;
    let shutdown = shutdown_on_signals()?;
    let bus = connect(&args.nats_url, args.bus.config()).await?;
    let (commands, receiver) = mpsc::channel(64);
    let lease = LeaseConfig {
        url: args.nats_url.clone(),
        bus: args.bus.config(),
        ttl: args.planner.lease_ttl.0,
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let (metrics, exposition) = match args.planner.no_metrics {
        true => (PlannerMetrics::default(), None),
        false => {
            let metrics = PlannerMetrics::register(&mut registry);
            (metrics, Some(baton_telemetry::Exposition::new(registry)))
        }
    };
    let planner = PlannerRun {
        options: &args.planner,
        lease,
        api,
        metrics,
        exposition,
    };
    run_planner(bus, planner, commands, receiver, shutdown).await?;
    Ok(())
}

/// What one planner runs with, besides its bus and command channel.
struct PlannerRun<'a> {
    options: &'a PlannerOptions,
    lease: LeaseConfig,
    api: ApiConfig,
    /// The planner's metric families, registered in `exposition`.
    metrics: PlannerMetrics,
    /// What `/metrics` serves: the planner's families (and `up`'s workers'); `None` with
    /// `--no-metrics`.
    exposition: Option<baton_telemetry::Exposition>,
}

/// The node kinds `baton planner` allows without --allow-kinds: every kind but `exec`, which
/// runs any command on a worker.
const PLANNER_KINDS: KindSet = KindSet::ALL.without(NodeKind::Exec);

/// Returns how the API authenticates as the flags say (`None` when they say nothing); a bad
/// token file is the user's input (exit 2).
async fn flag_auth(options: &PlannerOptions) -> Result<Option<Auth>, Failure> {
    if options.api_auth_kubernetes {
        let client = baton_telemetry::kube_client().await.map_err(|e| {
            Failure::usage(anyhow::anyhow!(
                "--api-auth-kubernetes needs a Kubernetes client (KUBECONFIG or an in-cluster config): {e}"
            ))
        })?;
        info!(
            "the API takes Kubernetes tokens (TokenReview) and roles from RBAC (SubjectAccessReview)"
        );
        return Ok(Some(Auth::Kubernetes(Arc::new(KubernetesAuth::new(
            client,
        )))));
    }
    match (&options.api_token_file, options.api_no_auth) {
        (Some(file), _) => {
            let tokens = LiveTokens::read(file.clone()).map_err(Failure::usage)?;
            Ok(Some(Auth::Tokens(Arc::new(tokens))))
        }
        (None, true) => {
            warn!("--api-no-auth: the API serves anyone who can reach it, with every role");
            Ok(Some(Auth::Open))
        }
        (None, false) => Ok(None),
    }
}

/// Returns how `baton up`'s API is protected: as the flags say, else by the token it keeps
/// in its data directory, left for the CLI on this machine too.
async fn up_auth(args: &UpArgs) -> Result<Auth, Failure> {
    let options = &args.planner;
    if let Some(auth) = flag_auth(options).await? {
        return Ok(auth);
    }
    let token = credentials::up_token(&options.data_dir)?;
    let file = credentials::local_token_path(options.listen.port())
        .context("no HOME or XDG_RUNTIME_DIR to leave the API token in")?;
    credentials::write_secret(&file, &token)?;
    info!(token_file = %file.display(), "the API takes the bearer token in this file; the CLI on this machine finds it by itself");
    let tokens = Tokens::one(&token, "up", Role::Admin);
    Ok(Auth::Tokens(Arc::new(LiveTokens::fixed(tokens))))
}

pub(crate) async fn worker(args: WorkerArgs) -> Result<(), Failure> {
    let shutdown = shutdown_on_signals()?;
    let mut config = worker_config(args.kinds, &args.worker);
    // Without an endpoint nobody reads them: the worker counts nothing.
    if let Some(addr) = args.worker.metrics_listen {
        let mut registry = prometheus_client::registry::Registry::default();
        config.metrics = WorkerMetrics::register(&mut registry);
        baton_telemetry::Exposition::new(registry)
            .serve(addr, "--metrics-listen", shutdown.clone())
            .await
            .map_err(|e| Failure::usage(anyhow::Error::new(e)))?;
    }
    let bus = connect(&args.nats_url, args.bus.config()).await?;
    baton_workers::run(bus, config, shutdown).await?;
    Ok(())
}

pub(crate) async fn up(args: UpArgs) -> Result<(), Failure> {
    let shutdown = shutdown_on_signals()?;
    // `up` serves the one user on its machine, whose workers it runs: every kind is allowed
    // unless --allow-kinds says.
    let limits = args.planner.document_limits(KindSet::ALL);
    let files: Vec<Vec<Document>> = args
        .apply
        .iter()
        .map(|f| read_documents(f, limits))
        .collect::<Result<_, _>>()?;
    let api = args.planner.api_config(limits, up_auth(&args).await?)?;
    let data_dir = &args.planner.data_dir;
    let mut bus_config = args.bus.config();
    // The planner and workers `up` runs share one bus; their jobs are signed all the same, so
    // a client of the bus that is not `up` cannot make its workers run anything.
    if bus_config.job_signing_key_file.is_none() {
        let (key_file, _) = credentials::up_secret(data_dir, "job-signing-key")?;
        bus_config.job_signing_key_file = Some(key_file);
    }
    let server = match &args.nats_url {
        Some(_) => None,
        None => {
            let program = nats_server::find(args.nats_server.as_deref())?;
            let store = data_dir.join("nats");
            // Its own server takes only clients with the token it keeps in its data
            // directory: an anonymous client on the machine is refused.
            let (token_file, token) = credentials::up_secret(data_dir, "nats-token")?;
            let server = NatsServer::start(&program, &store, args.nats_port, Some(&token)).await?;
            info!(url = %server.url, program = %program.display(), store = %store.display(), token_file = %token_file.display(), "nats-server started; clients present the token in this file");
            bus_config.credentials = baton_bus::NatsCredentials {
                token_file: Some(token_file),
                ..Default::default()
            };
            Some(server)
        }
    };
    let url = args
        .nats_url
        .clone()
        .or_else(|| server.as_ref().map(|s| s.url.clone()))
        .expect("a url either way");
    let result = up_with(&url, bus_config, &args, api, files, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(server) = server {
        server.stop().await;
    }
    result.map_err(Failure::from)
}

async fn up_with(
    url: &str,
    bus_config: BusConfig,
    args: &UpArgs,
    api: ApiConfig,
    files: Vec<Vec<Document>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let bus = connect(url, bus_config.clone())
        .await
        .map_err(|failure| failure.error)?;
    bus.ensure_streams().await?;
    let (commands, receiver) = mpsc::channel(64);
    // One process, one registry: `up`'s `/metrics` shows its planner and its workers.
    let mut registry = prometheus_client::registry::Registry::default();
    let planner_metrics = PlannerMetrics::register(&mut registry);
    let mut workers_config = worker_config(args.kinds.clone(), &args.worker);
    workers_config.metrics = WorkerMetrics::register(&mut registry);
    let exposition = baton_telemetry::Exposition::new(registry);
    if let Some(addr) = args.worker.metrics_listen {
        exposition
            .serve(addr, "--metrics-listen", shutdown.clone())
            .await?;
    }
    let workers = tokio::spawn(baton_workers::run(
        bus.clone(),
        workers_config,
        shutdown.clone(),
    ));
    let planner = tokio::spawn({
        let (bus, options, commands, shutdown) = (
            bus.clone(),
            args.planner.clone(),
            commands.clone(),
            shutdown.clone(),
        );
        let lease = LeaseConfig {
            url: url.to_owned(),
            bus: bus_config.clone(),
            ttl: args.planner.lease_ttl.0,
        };
        async move {
            let planner = PlannerRun {
                options: &options,
                lease,
                api,
                metrics: planner_metrics,
                exposition: Some(exposition),
            };
            run_planner(bus, planner, commands, receiver, shutdown).await
        }
    });
    let scheme = match args.planner.api_tls_cert {
        Some(_) => "https",
        None => "http",
    };
    let api_url = format!("{scheme}://{}", args.planner.listen);
    info!(api = %api_url, dashboard = %format!("{api_url}/ui/"), nats = %url, "baton is up; try: baton apply -f examples/diamond.yaml --wait, and watch it in the dashboard (its token is in the token file)");
    if let Err(e) = apply_files(files, &commands, &shutdown).await {
        // The planner stopped before it took them all: its own error says why.
        shutdown.cancel();
        planner.await??;
        let _ = workers.await;
        return Err(
            e.context("the planner stopped before the files given with --apply were applied")
        );
    }
    let (planner, workers) = tokio::join!(
        async {
            let r = planner.await;
            shutdown.cancel();
            r
        },
        async {
            let r = workers.await;
            shutdown.cancel();
            r
        }
    );
    planner??;
    workers??;
    Ok(())
}

/// Applies the documents given with `--apply` through the planner's command channel, and
/// follows each run they start. Fails when the planner has stopped.
async fn apply_files(
    files: Vec<Vec<Document>>,
    commands: &mpsc::Sender<Command>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    for doc in files.into_iter().flatten() {
        let (reply, answer) = oneshot::channel();
        let name = doc.describe();
        commands
            .send(Command::Apply {
                document: Box::new(doc),
                start: Some(String::new()),
                run: None,
                source: None,
                reply,
            })
            .await?;
        match answer.await? {
            Ok(Some(run)) => {
                info!(applied = %name, %run, "run started; follow it with: baton status {run}");
                tokio::spawn(follow(run.to_string(), commands.clone(), shutdown.clone()));
            }
            Ok(None) => {}
            Err(refusal) => warn!(applied = %name, %refusal, "not started"),
        }
    }
    Ok(())
}

/// Logs each node's state changes of one run until it ends.
async fn follow(run: String, commands: mpsc::Sender<Command>, shutdown: CancellationToken) {
    let mut seen: Option<RunStatus> = None;
    while !shutdown.is_cancelled() {
        let (reply, answer) = oneshot::channel();
        let asked = Command::Status {
            run: baton_schemas::RunId::new(run.clone()),
            reply,
        };
        if commands.send(asked).await.is_err() {
            return;
        }
        let Ok(Some(status)) = answer.await else {
            return;
        };
        for node in &status.nodes {
            let before = seen
                .as_ref()
                .and_then(|s| s.nodes.iter().find(|n| n.name == node.name));
            if before.map(|b| (b.state, b.attempts)) != Some((node.state, node.attempts)) {
                info!(%run, node = %node.name, state = %node.state, attempts = node.attempts, output = node.output.as_deref().unwrap_or(""), error = node.error.as_deref().unwrap_or(""), "node");
            }
        }
        if status.state.is_terminal() {
            info!(%run, state = %status.state, "run ended; Ctrl-C stops Baton");
            return;
        }
        seen = Some(status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn run_planner(
    bus: Bus,
    run: PlannerRun<'_>,
    commands: mpsc::Sender<Command>,
    receiver: mpsc::Receiver<Command>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let PlannerRun {
        options,
        lease,
        mut api,
        metrics,
        exposition,
    } = run;
    api.metrics = exposition.clone();
    let mut config = PlannerConfig::new(options.data_dir.clone());
    config.metrics = metrics.clone();
    api.changes = config.changes.clone();
    config.core.timeout_grace = options.timeout_grace.0;
    config.core.run_retention = options.run_retention.0;
    config.snapshot_bytes = options.state_snapshot_bytes;
    config.job_batch = usize::from(options.job_batch);
    config.job_batch_kinds = options.job_batch_kinds.clone();
    config.lease = Some(lease);
    let mut discovery_config = DiscoveryConfig {
        sync_period: options.sync_period.0,
        discover_now: config.discover_now.clone(),
        alb: None,
        kube: None,
        namespace: options.watch_namespace.clone(),
    };
    let role = crate::health::Role::default();
    if let Some(addr) = options.health_listen {
        crate::health::serve(addr, role.clone(), exposition.as_ref(), shutdown.clone()).await?;
    }
    // A standby serves no API: it binds the port once it is the active planner.
    let Some(planner) = Planner::start(bus.clone(), config, &shutdown).await? else {
        return Ok(());
    };
    role.set_active();
    tokio::spawn(baton_planner::metrics::follow_backlog(
        bus.clone(),
        metrics,
        shutdown.clone(),
    ));
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", options.listen))?;
    info!(listen = %options.listen, "api listening");
    let mut okra = None;
    let cluster = match options.watch_kubernetes {
        true => {
            let client = baton_telemetry::kube_client()
                .await
                .context("--watch-kubernetes: no Kubernetes client (KUBECONFIG or in-cluster)")?;
            let config = ClusterConfig {
                limits: api.limits,
                namespace: options.watch_namespace.clone(),
                status_period: Duration::from_secs(1),
            };
            // Cells find okra's AWSTargetGroup objects in the cluster watched, which okra's
            // controllers keep.
            discovery_config.kube = Some(client.clone());
            okra = Some(SideTask {
                name: "okra controllers",
                handle: tokio::spawn(baton_planner::okra::run(
                    client.clone(),
                    baton_planner::okra::OkraConfig {
                        namespace: options.watch_namespace.clone(),
                        sync_period: options.sync_period.0,
                    },
                    shutdown.clone(),
                )),
            });
            Some(SideTask {
                name: "cluster watch",
                handle: tokio::spawn(cluster::run(
                    client,
                    config,
                    commands.clone(),
                    shutdown.clone(),
                )),
            })
        }
        false => None,
    };
    let advertise = match (&options.advertise_endpoint_slice, options.advertise_address) {
        (Some(slice), Some(address)) => {
            let client = baton_telemetry::kube_client().await.context(
                "--advertise-endpoint-slice: no Kubernetes client (KUBECONFIG or in-cluster)",
            )?;
            let advertisement = crate::advertise::Advertisement {
                slice: slice.clone(),
                address,
                port: options.listen.port(),
            };
            Some(SideTask {
                name: "advertise",
                handle: tokio::spawn(crate::advertise::run(
                    client,
                    advertisement,
                    bus.epoch(),
                    shutdown.clone(),
                )),
            })
        }
        _ => None,
    };
    let discovery = SideTask {
        name: "discovery",
        handle: tokio::spawn(discovery::run(
            discovery_config,
            commands.clone(),
            shutdown.clone(),
        )),
    };
    // The API runs on a thread and a runtime of its own: a flood of requests (refused ones
    // included) takes that thread's time, not the planner loop's (`baton bench`, the chain
    // under a burst of invalid requests).
    let listener = listener.into_std()?;
    let api_shutdown = shutdown.clone();
    let api = SideTask {
        name: "api",
        handle: tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name("baton-api")
                .build()?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                baton_planner::api::serve(listener, commands, bus, api, api_shutdown).await
            })
        }),
    };
    let tasks = [Some(api), Some(discovery), cluster, okra, advertise]
        .into_iter()
        .flatten()
        .collect();
    supervise(planner.run(receiver, shutdown.clone()), tasks, shutdown).await
}

fn worker_config(kinds: Vec<NodeKind>, options: &WorkerOptions) -> WorkerConfig {
    WorkerConfig {
        kinds,
        concurrency: options.concurrency,
        shutdown_deadline: options.shutdown_deadline.0,
        pull_wait: options.pull_wait.0,
        pod: PodConfig {
            image_pull_deadline: options.image_pull_deadline.0,
            success_ttl: options.pod_success_ttl.0,
            failure_ttl: options.pod_failure_ttl.0,
            namespaces: ServedNamespaces::from_names(options.pod_namespaces.iter().cloned()),
            ..PodConfig::default()
        },
        helm: HelmConfig {
            driver: options.helm_driver,
            binary: options.helm_binary.clone(),
            subchart_repository: options.subchart_repository_url.clone(),
            ..HelmConfig::default()
        },
        metrics: WorkerMetrics::default(),
    }
}
