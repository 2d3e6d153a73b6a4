//! Flags and subcommands. Every flag has a `BATON_*` environment variable and a default.

use std::net::SocketAddr;
use std::path::PathBuf;

use baton_bus::{BusConfig, NatsCredentials};
use baton_planner::api::{ApiConfig, Auth, ServerTls, TlsFiles};
use baton_schemas::helm::HelmDriver;
use baton_schemas::{Duration, KindSet, NodeKind};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{Failure, client, serve};

mod client_args;
pub(crate) use client_args::*;

/// Baton: an event-driven release orchestrator on NATS JetStream.
#[derive(Debug, Parser)]
#[command(name = "baton", version, about)]
pub struct Cli {
    /// Logs as JSON lines instead of text (the filter is `BATON_LOG`, default `info`).
    #[arg(long, global = true, env = "BATON_LOG_JSON")]
    pub log_json: bool,
    /// Threads that run the process's tasks. 1 (the default): one thread runs everything, as
    /// Baton's loops are I/O-bound and a message then never waits for a thread to wake up (a
    /// chain node takes about a quarter less time, and a node a third less CPU, than with a
    /// thread per core); 0: one per core; N: N threads.
    #[arg(long, global = true, env = "BATON_THREADS", default_value_t = 1)]
    pub threads: usize,
    /// Exports traces over OTLP/HTTP to this URL (`http://collector:4318/v1/traces`); the
    /// standard OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_TRACES_ENDPOINT variables
    /// work too. Off unless one of them is set.
    #[arg(long, global = true, env = "BATON_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// The service name spans are exported under (`OTEL_SERVICE_NAME` wins).
    pub fn service_name(&self) -> &'static str {
        match self.command {
            Command::Up(_) => "baton",
            Command::Planner(_) => "baton-planner",
            Command::Worker(_) => "baton-worker",
            _ => "baton-cli",
        }
    }

    /// Returns the log filter used when `BATON_LOG` is not set: quiet for client commands.
    pub fn default_log_level(&self) -> &'static str {
        match self.command {
            Command::Up(_) | Command::Planner(_) | Command::Worker(_) | Command::Bench(_) => "info",
            _ => "warn",
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs everything in one process: a local nats-server (unless --nats-url), the planner,
    /// workers for every kind and the HTTP API.
    // Boxed: its flags (the planner's and the workers' together) make it several times the
    // size of any other command's.
    Up(Box<UpArgs>),
    /// Runs the planner and the HTTP API against a NATS server.
    Planner(PlannerArgs),
    /// Runs a worker against a NATS server.
    Worker(WorkerArgs),
    /// Registers the workflows in a file and starts a run of each (prints the run ids).
    Apply(ApplyArgs),
    /// Checks a file without running anything; exit 2 when it is invalid.
    Validate(ValidateArgs),
    /// Shows one run.
    Status(StatusArgs),
    /// Lists runs.
    Runs(RunsArgs),
    /// Cancels a run.
    Cancel(CancelArgs),
    /// Lists tasks: state, last success and failure, consecutive failures.
    Tasks(ListArgs),
    /// Lists ignitors: schedule, last and next fire.
    Ignitors(ListArgs),
    /// Lists application groups, or shows one with its applications and subcharts.
    Groups(GroupsArgs),
    /// Deletes an application group (its releases are uninstalled in reverse dependency
    /// order), or forgets a workflow, task or ignitor.
    Delete(DeleteArgs),
    /// Lists Cells: phase, serving and desired version, step, weights (`--watch`: live).
    Cells(CellsArgs),
    /// Resumes, aborts or promotes a Cell's rollout, or deletes the Cell.
    Cell(CellArgs),
    /// Starts a run of a registered workflow through the bus, as a trigger message would.
    Trigger(TriggerArgs),
    /// Prints the CustomResourceDefinitions of the kinds Baton reads from a cluster, or writes
    /// one file each into a directory (what `deploy/crds/` holds).
    Crds(CrdsArgs),
    /// Prints the nats-server `authorization` block that gives each part of a deployment
    /// (planner, a worker of each kind, trigger publisher, observer) only the subjects it
    /// needs (what `deploy/nats/permissions.conf` holds).
    NatsPermissions(NatsPermissionsArgs),
    /// Measures Baton's orchestration overhead against raw JetStream on its own nats-server,
    /// planner and noop worker, and prints one table.
    Bench(BenchArgs),
}

/// How big a benchmark run is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scale {
    /// About a minute: a 200-node chain, a 1 000-node fan-out, 20 runs of 50 nodes, a
    /// 5 000-node DAG, 1 000 triggers.
    #[default]
    Quick,
    /// A 1 000-node chain, a 10 000-node fan-out, 100 runs of 100 nodes, a 100 000-node DAG,
    /// 10 000 triggers.
    Full,
    /// Seconds, for the test suite: proves the benchmark works, measures nothing worth keeping.
    Smoke,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// The sizes.
    #[arg(long, value_enum, default_value_t)]
    pub scale: Scale,
    /// Output format; `json` gives the figures under stable keys.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Format,
    /// The nats-server program (default: `.tools/venv/bin/nats-server`, then PATH).
    #[arg(long, env = "BATON_NATS_SERVER")]
    pub nats_server: Option<PathBuf>,
    /// Jobs the noop worker runs at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Measures only planner takeovers instead: on a three-node NATS cluster (streams at R3)
    /// with two planners, kills the active one this many times while a chain runs and
    /// reports the time from each kill to the next job (median and maximum).
    #[arg(long, value_name = "KILLS")]
    pub takeover_kills: Option<usize>,
    /// Measures only the floor, the chain and the fan-out (with CPU per node), on one server
    /// and on a three-node cluster: the figures of throughput work, in a few minutes.
    #[arg(long, conflicts_with = "takeover_kills")]
    pub throughput_only: bool,
    /// The planners' lease ttl in the takeover measurement.
    #[arg(long, default_value = "1500ms")]
    pub takeover_lease_ttl: crate::args::Duration,
}

#[derive(Debug, Args)]
pub(crate) struct NatsPermissionsArgs {
    /// Subject prefix.
    #[arg(long, env = "BATON_PREFIX", default_value = "baton")]
    pub prefix: String,
    /// A subject the trigger publisher may publish on (repeatable; default: every workflow's,
    /// `<prefix>.triggers.*`).
    #[arg(long = "trigger-subject", value_name = "SUBJECT")]
    pub trigger_subjects: Vec<String>,
    /// A subject `publish` nodes may publish on (repeatable; default: every workflow's
    /// trigger subject).
    #[arg(long = "publish-subject", value_name = "SUBJECT")]
    pub publish_subjects: Vec<String>,
}

impl NatsPermissionsArgs {
    fn render(&self) -> String {
        let mut options = baton_bus::permissions::PermissionOptions::new(&self.prefix);
        if !self.trigger_subjects.is_empty() {
            options.trigger_subjects = self.trigger_subjects.clone();
        }
        if !self.publish_subjects.is_empty() {
            options.publish_subjects = self.publish_subjects.clone();
        }
        baton_bus::permissions::server_config(&options)
    }
}

#[derive(Debug, Args)]
pub(crate) struct CrdsArgs {
    /// Writes `<plural>.<group>.yaml` files into this directory instead of printing.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct BusArgs {
    /// Subject prefix; streams are named after it (`BATON_JOBS`, ...).
    #[arg(long, env = "BATON_PREFIX", default_value = "baton")]
    pub prefix: String,
    /// Stream replicas (1 for one server, 3 for a cluster): the planner makes the streams
    /// with it; a worker uses them as the planner made them.
    #[arg(long, env = "BATON_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
    /// How long a worker may hold a job without a progress ack before it goes to another.
    #[arg(long, env = "BATON_JOB_ACK_WAIT", default_value = "30s")]
    pub job_ack_wait: Duration,
    /// How long a publish keeps retrying through passing failures (a server restarting, a
    /// stream missing) before the process gives up on it.
    #[arg(long, env = "BATON_PUBLISH_DEADLINE", default_value = "2m")]
    pub publish_deadline: Duration,
    /// The key jobs are signed with (the planner) and checked against (a worker, which then
    /// sets aside any job not signed with it): a file of at least 32 bytes, the same for the
    /// planner and every worker.
    #[arg(long, env = "BATON_JOB_SIGNING_KEY_FILE", value_name = "FILE")]
    pub job_signing_key_file: Option<PathBuf>,
    #[command(flatten)]
    pub nats: NatsCredentialArgs,
}

/// Who the process is to the NATS server: secrets come from files, never from flags.
#[derive(Clone, Debug, Args)]
pub(crate) struct NatsCredentialArgs {
    /// A NATS `.creds` file (user JWT and NKey seed, as `nsc` makes them).
    #[arg(long, env = "BATON_NATS_CREDS", value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,
    /// A file holding a NATS NKey user seed (`SU...`).
    #[arg(long, env = "BATON_NATS_NKEY_SEED_FILE", value_name = "FILE")]
    pub nats_nkey_seed_file: Option<PathBuf>,
    /// The NATS user name; its password is in --nats-password-file.
    #[arg(long, env = "BATON_NATS_USER", requires = "nats_password_file")]
    pub nats_user: Option<String>,
    /// A file holding the password of --nats-user.
    #[arg(
        long,
        env = "BATON_NATS_PASSWORD_FILE",
        value_name = "FILE",
        requires = "nats_user"
    )]
    pub nats_password_file: Option<PathBuf>,
    /// A file holding a NATS authorization token.
    #[arg(long, env = "BATON_NATS_TOKEN_FILE", value_name = "FILE")]
    pub nats_token_file: Option<PathBuf>,
    /// CA certificates (PEM) the NATS server's certificate must chain to (TLS is then
    /// required).
    #[arg(long, env = "BATON_NATS_CA_CERT", value_name = "FILE")]
    pub nats_ca_cert: Option<PathBuf>,
    /// A client certificate (PEM) for mutual TLS with the NATS server.
    #[arg(
        long,
        env = "BATON_NATS_TLS_CERT",
        value_name = "FILE",
        requires = "nats_tls_key"
    )]
    pub nats_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --nats-tls-cert.
    #[arg(
        long,
        env = "BATON_NATS_TLS_KEY",
        value_name = "FILE",
        requires = "nats_tls_cert"
    )]
    pub nats_tls_key: Option<PathBuf>,
    /// The prefix of this process's reply subjects (`_INBOX`); the permission file under
    /// `deploy/nats/` gives each role its own, so no role reads another's replies.
    #[arg(long, env = "BATON_NATS_INBOX_PREFIX")]
    pub nats_inbox_prefix: Option<String>,
}

impl NatsCredentialArgs {
    pub(crate) fn credentials(&self) -> NatsCredentials {
        NatsCredentials {
            creds_file: self.nats_creds.clone(),
            nkey_seed_file: self.nats_nkey_seed_file.clone(),
            user: self.nats_user.clone(),
            password_file: self.nats_password_file.clone(),
            token_file: self.nats_token_file.clone(),
            tls_ca: self.nats_ca_cert.clone(),
            tls_cert: self.nats_tls_cert.clone(),
            tls_key: self.nats_tls_key.clone(),
            inbox_prefix: self.nats_inbox_prefix.clone(),
        }
    }
}

impl BusArgs {
    pub(crate) fn config(&self) -> BusConfig {
        BusConfig {
            prefix: self.prefix.clone(),
            replicas: self.replicas,
            job_ack_wait: self.job_ack_wait.0,
            publish_deadline: self.publish_deadline.0,
            credentials: self.nats.credentials(),
            job_signing_key_file: self.job_signing_key_file.clone(),
            ..BusConfig::default()
        }
    }
}

#[derive(Clone, Debug, Args)]
pub(crate) struct PlannerOptions {
    /// Where the planner keeps its state (`planner.redb`).
    #[arg(long, env = "BATON_DATA_DIR", default_value = ".baton")]
    pub data_dir: PathBuf,
    /// Where the HTTP API listens.
    #[arg(long, env = "BATON_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// The API's bearer tokens: a CSV file of `token,name,role` lines (roles: viewer,
    /// operator, admin). The planner needs it, or --api-no-auth; `baton up` makes its own.
    #[arg(long, env = "BATON_API_TOKEN_FILE", value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,
    /// Serves the API to anyone who reaches it, with every role: only for a listener that
    /// no one but trusted callers can reach.
    #[arg(long, env = "BATON_API_NO_AUTH", conflicts_with = "api_token_file")]
    pub api_no_auth: bool,
    /// Takes Kubernetes bearer tokens (service accounts', users') instead of a token file:
    /// each is checked with a TokenReview, and the role a request needs with a
    /// SubjectAccessReview of verb `use` on baton.dev `roles` named viewer, operator or admin,
    /// so that RBAC grants Baton roles (the planner's own account needs
    /// system:auth-delegator).
    #[arg(
        long,
        env = "BATON_API_AUTH_KUBERNETES",
        conflicts_with_all = ["api_token_file", "api_no_auth"]
    )]
    pub api_auth_kubernetes: bool,
    /// The API's certificate chain (PEM, leaf first): it serves HTTPS, and loads the pair
    /// again when the files change (a cert-manager renewal, say).
    #[arg(
        long,
        env = "BATON_API_TLS_CERT",
        value_name = "FILE",
        requires = "api_tls_key"
    )]
    pub api_tls_cert: Option<PathBuf>,
    /// The private key of --api-tls-cert (PEM).
    #[arg(
        long,
        env = "BATON_API_TLS_KEY",
        value_name = "FILE",
        requires = "api_tls_cert"
    )]
    pub api_tls_key: Option<PathBuf>,
    /// How long an API client has to send a request's head, and how long a kept-alive
    /// connection may stay idle, before the API closes it (slow or idle clients hold no
    /// connection).
    #[arg(long, env = "BATON_API_IDLE_TIMEOUT", default_value = "30s")]
    pub api_idle_timeout: Duration,
    /// The largest request body the API reads, in bytes; a larger one is answered 413. The
    /// default, 8 MiB, holds a 100 000-node workflow.
    #[arg(long, env = "BATON_API_BODY_LIMIT", value_name = "BYTES", default_value_t = ApiConfig::DEFAULT_BODY_LIMIT)]
    pub api_body_limit: usize,
    /// How long past a node's timeout the planner waits for a worker before failing it.
    #[arg(long, env = "BATON_TIMEOUT_GRACE", default_value = "60s")]
    pub timeout_grace: Duration,
    /// How long a finished run is kept (in `baton runs`, the API and the store) before the
    /// planner forgets it; like the event stream's 7 days by default.
    #[arg(long, env = "BATON_RUN_RETENTION", default_value = "7days")]
    pub run_retention: Duration,
    /// How much the bus's state stream grows before the planner writes its whole state there
    /// as one commit and drops the commits before it (at least the last such snapshot's size,
    /// so snapshots cost at most as much as the commits between them).
    #[arg(long, env = "BATON_STATE_SNAPSHOT_BYTES", value_name = "BYTES", default_value_t = baton_planner::service::DEFAULT_SNAPSHOT_BYTES)]
    pub state_snapshot_bytes: u64,
    /// The most jobs one message carries: the jobs of one kind that one decision dispatches
    /// (a fan-out's) travel together, one stored message, delivery and ack for all of them.
    /// 1 sends every job alone, as builds before batches did (for workers older than
    /// batches, which set a batch aside).
    #[arg(long, env = "BATON_JOB_BATCH", value_name = "JOBS", default_value_t = baton_planner::service::DEFAULT_JOB_BATCH, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub job_batch: u16,
    /// The node kinds whose jobs are batched, comma-separated. A worker takes a batch whole,
    /// so the default batches only kinds whose jobs hold a worker's slot for a moment
    /// (`noop`, `publish`, `webhook`); jobs of kinds that hold one for long (a pod, a Helm
    /// release, a process) go alone and spread over every worker.
    #[arg(
        long,
        env = "BATON_JOB_BATCH_KINDS",
        value_delimiter = ',',
        default_value = "noop,publish,webhook"
    )]
    pub job_batch_kinds: Vec<NodeKind>,
    /// How long the bus keeps the active planner's lease after its last renewal: a standby
    /// takes over at most this long after the active planner dies. The holder renews it five
    /// times as often, and stops acting when it could not for three quarters of it: keep that
    /// longer than the NATS cluster takes to choose new stream leaders when a member dies.
    #[arg(long, env = "BATON_LEASE_TTL", default_value = "10s")]
    pub lease_ttl: Duration,
    /// Watches Workflow, Task, Ignitor, Cell and AnalysisTemplate objects in the cluster of
    /// KUBECONFIG (or the in-cluster config) and writes their status, so that `kubectl apply`
    /// works.
    #[arg(long, env = "BATON_WATCH_KUBERNETES")]
    pub watch_kubernetes: bool,
    /// The namespace watched with --watch-kubernetes (default: every namespace).
    #[arg(long, env = "BATON_WATCH_NAMESPACE", requires = "watch_kubernetes")]
    pub watch_namespace: Option<String>,
    /// Where a health endpoint (`GET /healthz`, no token) listens from the start, standby
    /// or active: the API listens only on the active planner, yet a standby is a healthy
    /// replica that rollouts and drains must count as ready. It serves `GET /metrics` too,
    /// so that a standby's are scraped (the API's `/metrics` asks for a token).
    #[arg(long, env = "BATON_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
    /// Counts nothing and serves no `/metrics` (the bench's baseline; a planner nobody
    /// scrapes saves the little they cost).
    #[arg(long, env = "BATON_NO_METRICS")]
    pub no_metrics: bool,
    /// The EndpointSlice (in the pod's namespace) behind the API's selector-less Service:
    /// the active planner writes --advertise-address there, so callers reach it and no
    /// standby.
    #[arg(
        long,
        env = "BATON_ADVERTISE_ENDPOINT_SLICE",
        requires = "advertise_address"
    )]
    pub advertise_endpoint_slice: Option<String>,
    /// This planner's address for --advertise-endpoint-slice (a pod's `status.podIP`).
    #[arg(
        long,
        env = "BATON_ADVERTISE_ADDRESS",
        requires = "advertise_endpoint_slice"
    )]
    pub advertise_address: Option<std::net::IpAddr>,
    /// How often Cells' target groups and listener rules are discovered in ELBv2 (AWS
    /// settings come from the standard chain: AWS_REGION, AWS_ENDPOINT_URL, keys, ...).
    #[arg(long, env = "BATON_SYNC_PERIOD", default_value = "30s")]
    pub sync_period: Duration,
    /// The node kinds documents may use, comma-separated; a document that uses another is
    /// refused at the field that asks for it. Default: every kind but `exec` (a workflow's
    /// exec node runs any command on a worker) for `baton planner`; every kind for `baton
    /// up`, whose workers run on the machine of the one user it serves.
    #[arg(long, env = "BATON_ALLOW_KINDS", value_delimiter = ',')]
    pub allow_kinds: Option<Vec<NodeKind>>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

impl PlannerOptions {
    /// Returns the API's certificate, loaded: a pair that does not load is the user's input
    /// (exit 2), found before anything starts.
    pub(crate) fn api_tls(&self) -> Result<Option<ServerTls>, crate::Failure> {
        let (Some(cert), Some(key)) = (&self.api_tls_cert, &self.api_tls_key) else {
            return Ok(None);
        };
        let files = TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        };
        ServerTls::load(files)
            .map(Some)
            .map_err(crate::Failure::usage)
    }

    /// Returns the API's settings, with `limits` on documents and `auth` for callers.
    pub(crate) fn api_config(
        &self,
        limits: baton_schemas::Limits,
        auth: Auth,
    ) -> Result<ApiConfig, crate::Failure> {
        Ok(ApiConfig {
            limits,
            auth,
            tls: self.api_tls()?,
            idle_timeout: self.api_idle_timeout.0,
            body_limit: self.api_body_limit,
            metrics: None,
            changes: Default::default(),
        })
    }

    /// Returns what a document applied to this planner may hold; `kinds` are the node kinds
    /// it allows unless --allow-kinds says.
    pub(crate) fn document_limits(&self, kinds: KindSet) -> baton_schemas::Limits {
        baton_schemas::Limits {
            allowed_kinds: self
                .allow_kinds
                .as_ref()
                .map_or(kinds, |k| k.iter().copied().collect()),
            ..self.limits.limits()
        }
    }
}

/// Limits on what one document may hold.
#[derive(Clone, Copy, Debug, Args)]
pub(crate) struct LimitArgs {
    /// The most nodes a workflow may have; a larger one is refused at validation, naming the
    /// limit.
    #[arg(long, env = "BATON_MAX_NODES", default_value_t = baton_schemas::Limits::DEFAULT_MAX_NODES)]
    pub max_nodes: usize,
}

impl LimitArgs {
    pub(crate) fn limits(self) -> baton_schemas::Limits {
        let LimitArgs { max_nodes } = self;
        baton_schemas::Limits {
            max_nodes,
            ..baton_schemas::Limits::default()
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct WorkerOptions {
    /// How many jobs of each kind run at once.
    #[arg(long, env = "BATON_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,
    /// How long jobs in flight may go on after SIGTERM before they are handed back.
    #[arg(long, env = "BATON_SHUTDOWN_DEADLINE", default_value = "30s")]
    pub shutdown_deadline: Duration,
    /// How long one pull request waits at the server for jobs (at least 100 ms); a stopping
    /// worker hands back what its open pull still delivers, so a stop can take this long.
    #[arg(long, env = "BATON_PULL_WAIT", default_value = "2s")]
    pub pull_wait: Duration,
    /// How long a succeeded pod is kept before it is deleted.
    #[arg(long, env = "BATON_POD_SUCCESS_TTL", default_value = "60s")]
    pub pod_success_ttl: Duration,
    /// How long a failed pod is kept before it is deleted.
    #[arg(long, env = "BATON_POD_FAILURE_TTL", default_value = "5m")]
    pub pod_failure_ttl: Duration,
    /// The only namespaces pod jobs may run in, comma-separated (default: every namespace).
    /// A pod job for another namespace fails at once, naming it; the janitor lists pods in
    /// these namespaces alone, so the worker needs Roles in them and no ClusterRole.
    #[arg(
        long,
        env = "BATON_POD_NAMESPACES",
        value_name = "NS",
        value_delimiter = ',',
        value_parser = namespace_name
    )]
    pub pod_namespaces: Vec<String>,
    /// How long a pod may fail to pull its image before its node fails.
    #[arg(long, env = "BATON_IMAGE_PULL_DEADLINE", default_value = "2m")]
    pub image_pull_deadline: Duration,
    /// Who performs helm jobs whose spec names no driver: `cli` runs the Helm 3 or 4 binary,
    /// `flux` writes Flux HelmRelease objects (needs KUBECONFIG or an in-cluster config).
    #[arg(long, env = "BATON_HELM_DRIVER", default_value = "cli")]
    pub helm_driver: HelmDriver,
    /// The Helm 3 or 4 program the `cli` driver runs.
    #[arg(long, env = "BATON_HELM_BINARY", default_value = "helm")]
    pub helm_binary: PathBuf,
    /// The planner's chart repository as Flux's source-controller reaches it (the planner's
    /// API URL and `/charts`, e.g. `http://baton-planner.baton-system:8080/charts`): the
    /// `flux` driver reads subcharts split out of umbrella charts from there.
    #[arg(long, env = "BATON_SUBCHART_REPOSITORY_URL")]
    pub subchart_repository_url: Option<String>,
    /// Where `GET /metrics` (Prometheus, no token) listens; off unless given.
    #[arg(long, env = "BATON_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

/// Parses one of `--pod-namespaces`: a namespace's name is a DNS-1123 label.
fn namespace_name(value: &str) -> Result<String, String> {
    if baton_schemas::ids::is_dns_label(value) {
        Ok(value.to_owned())
    } else if value.is_empty() {
        // An empty value is how one might try to say "every namespace", which is the flag
        // left unset: the message says so.
        Err("an empty namespace name: leave --pod-namespaces and BATON_POD_NAMESPACES unset to serve every namespace".to_owned())
    } else {
        Err(format!(
            "{value:?} is not a namespace name: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
        ))
    }
}

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// A NATS server to use instead of starting one.
    #[arg(long, env = "BATON_NATS_URL")]
    pub nats_url: Option<String>,
    /// The nats-server program to start (default: `.tools/venv/bin/nats-server`, then PATH).
    #[arg(long, env = "BATON_NATS_SERVER")]
    pub nats_server: Option<PathBuf>,
    /// The port of the nats-server `up` starts.
    #[arg(long, env = "BATON_NATS_PORT", default_value_t = 4222)]
    pub nats_port: u16,
    /// Files to apply once Baton is up; their runs are followed in the log.
    #[arg(long = "apply", value_name = "FILE")]
    pub apply: Vec<PathBuf>,
    /// The job kinds the embedded workers take (`pod` needs KUBECONFIG or an in-cluster config;
    /// `traffic` reads AWS settings from the standard chain on its first job).
    #[arg(
        long,
        env = "BATON_KINDS",
        value_delimiter = ',',
        default_value = "noop,exec,webhook,publish,traffic,analysis"
    )]
    pub kinds: Vec<NodeKind>,
    #[command(flatten)]
    pub bus: BusArgs,
    #[command(flatten)]
    pub planner: PlannerOptions,
    #[command(flatten)]
    pub worker: WorkerOptions,
}

#[derive(Debug, Args)]
pub(crate) struct PlannerArgs {
    /// The NATS server.
    #[arg(long, env = "BATON_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    #[command(flatten)]
    pub bus: BusArgs,
    #[command(flatten)]
    pub planner: PlannerOptions,
}

#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// The NATS server.
    #[arg(long, env = "BATON_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// The job kinds to take, comma-separated (`pod` needs KUBECONFIG or an in-cluster config).
    #[arg(
        long,
        env = "BATON_KINDS",
        value_delimiter = ',',
        default_value = "noop,exec,webhook,publish"
    )]
    pub kinds: Vec<NodeKind>,
    #[command(flatten)]
    pub bus: BusArgs,
    #[command(flatten)]
    pub worker: WorkerOptions,
}

/// Runs the parsed command; returns the exit code of a command that did its job.
pub(crate) async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Command::Up(args) => serve::up(*args).await.map(|()| 0),
        Command::Planner(args) => serve::planner(args).await.map(|()| 0),
        Command::Worker(args) => serve::worker(args).await.map(|()| 0),
        Command::Validate(args) => {
            let valid = client::validate_documents(&args.file, args.limits.limits())?;
            println!("{}: {valid} valid document(s)", args.file.display());
            Ok(0)
        }
        Command::Apply(args) => client::apply(args).await,
        Command::Status(args) => client::status(args).await,
        Command::Runs(args) => client::runs(args).await,
        Command::Cancel(args) => client::cancel(args).await,
        Command::Tasks(args) => client::list(args, "tasks").await,
        Command::Ignitors(args) => client::list(args, "ignitors").await,
        Command::Groups(args) => client::groups(args).await,
        Command::Delete(args) => client::delete(args).await,
        Command::Cells(args) => client::cells(args).await,
        Command::Cell(args) => client::cell(args).await,
        Command::Trigger(args) => client::trigger(args).await,
        Command::NatsPermissions(args) => {
            print!("{}", args.render());
            Ok(0)
        }
        Command::Bench(args) => {
            crate::bench::run(args).await?;
            Ok(0)
        }
        Command::Crds(args) => {
            crds(args)?;
            Ok(0)
        }
    }
}

fn crds(args: CrdsArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use baton_schemas::crd;
    let Some(dir) = args.out_dir else {
        print!("{}", crd::crds_yaml());
        return Ok(());
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for kind in crd::crd_kinds() {
        let path = dir.join(crd::file_name(kind));
        std::fs::write(&path, crd::crd_yaml(kind))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
