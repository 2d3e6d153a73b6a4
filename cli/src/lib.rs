//! The `baton` command line: runs Baton (`up`, `planner`, `worker`) and drives it (`apply`,
//! `validate`, `status`, `runs`, `cancel`, `trigger`).
//!
//! Exit codes: 0 success; 1 a run failed or Baton could not do what was asked; 2 bad input
//! (an invalid spec or a bad flag).

mod advertise;
mod args;
mod bench;
mod client;
mod credentials;
mod health;
mod live;
pub mod nats_server;
mod output;
mod serve;
mod watch;

use std::process::ExitCode;

use baton_workers::executors::exec;
use clap::Parser;

pub use args::Cli;

/// The allocator of every binary that links this crate. Baton's processes make and drop many
/// small objects per message on several threads, where glibc's allocator spent a quarter of
/// the planner's and the worker's CPU time (`baton bench`, fan-out profile).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A failure with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl Failure {
    fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: 2,
            error: error.into(),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Self {
            code: 1,
            error: error.into(),
        }
    }
}

/// Parses the arguments, runs the command and returns its exit code.
pub fn main() -> ExitCode {
    // The exec executor's supervisor (hidden): it runs before any thread or runtime starts.
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == exec::SUPERVISE_COMMAND) {
        return exec::supervise(args.collect());
    }
    let cli = Cli::parse();
    // One crypto provider for every TLS client in the process (kube, webhooks, the CLI's own
    // HTTP client, the trace exporter): ring, the one the workspace builds.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let traces = init_tracing(&cli);
    let mut builder = match cli.threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        n => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(args::dispatch(cli));
    // Outside the runtime: the exporter's last batch goes out from its own thread.
    drop(runtime);
    if let Some(traces) = traces {
        baton_telemetry::trace::shutdown(traces);
    }
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("error: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}

/// Logs to stderr (`BATON_LOG` filters them) and, with an OTLP endpoint, exports spans
/// (Baton's own, at info and above, whatever `BATON_LOG` says). Returns the trace exporter
/// to shut down at exit.
fn init_tracing(cli: &Cli) -> Option<baton_telemetry::trace::TracerProvider> {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer, Registry, fmt};
    type Boxed = Box<dyn Layer<Registry> + Send + Sync>;
    let filter = EnvFilter::try_from_env("BATON_LOG")
        .unwrap_or_else(|_| EnvFilter::new(cli.default_log_level()));
    let logs: Boxed = match cli.log_json {
        true => fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        false => fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed(),
    };
    let provider =
        match baton_telemetry::trace::provider(cli.service_name(), cli.otlp_endpoint.as_deref()) {
            Ok(provider) => provider,
            Err(e) => {
                eprintln!("warning: traces are not exported: {e}");
                None
            }
        };
    let spans: Option<Boxed> = provider.as_ref().map(|p| {
        let baton = tracing_subscriber::filter::Targets::new()
            .with_target("baton_planner", tracing::Level::INFO)
            .with_target("baton_workers", tracing::Level::INFO)
            .with_target("baton_bus", tracing::Level::INFO)
            .with_target("baton_telemetry", tracing::Level::INFO)
            .with_target("baton_alb", tracing::Level::INFO);
        baton_telemetry::trace::layer(p).with_filter(baton).boxed()
    });
    let mut layers = vec![logs];
    layers.extend(spans);
    tracing_subscriber::registry().with(layers).init();
    provider
}
