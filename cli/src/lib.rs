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
    init_tracing(&cli);
    // One crypto provider for every TLS client in the process (kube, webhooks, the CLI's own
    // HTTP client): ring, the one the workspace builds.
    let _ = rustls::crypto::ring::default_provider().install_default();
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
    match runtime.block_on(args::dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("error: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}

fn init_tracing(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("BATON_LOG")
        .unwrap_or_else(|_| EnvFilter::new(cli.default_log_level()));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if cli.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}
