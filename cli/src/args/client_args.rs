//! The client commands' flags: where the API is and how to reach it, and what `apply`,
//! `status`, `runs`, `cells`, `groups`, `delete`, `cell`, `cancel` and `trigger` take.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::LimitArgs;

#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// The Baton API.
    #[arg(long, env = "BATON_SERVER", default_value = "http://127.0.0.1:7070")]
    pub server: String,
    /// A file holding the API's bearer token (the token itself may instead be in BATON_TOKEN;
    /// without either, the token `baton up` left on this machine for a loopback server).
    #[arg(long, env = "BATON_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The CA certificates (PEM) an `https://` server's certificate must chain to, instead of
    /// the system's.
    #[arg(long, env = "BATON_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Human-readable text.
    #[default]
    Text,
    /// JSON.
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// The file (YAML or JSON; several documents allowed).
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Waits for the runs to end (for an application group, until it settles, remediation
    /// included); exit 0 if all succeeded, 1 if any did not.
    #[arg(long)]
    pub wait: bool,
    /// Only registers the workflows.
    #[arg(long, conflicts_with = "wait")]
    pub no_run: bool,
    /// Trigger data for the runs (the first nodes' BATON_DATA).
    #[arg(long, default_value = "")]
    pub data: String,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Format,
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// The file to check.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The run id.
    pub run: String,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Follows the run until it ends: a table redrawn in place on a terminal, a line per
    /// change otherwise; exit 0 if it succeeded, 1 if not.
    #[arg(long, short = 'w', conflicts_with = "output")]
    pub watch: bool,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Format,
}

#[derive(Debug, Args)]
pub(crate) struct RunsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Format,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Format,
}

#[derive(Debug, Args)]
pub(crate) struct CellsArgs {
    /// One Cell to show.
    pub name: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Follows the Cells (or the one named) as they change, until interrupted or the Cell
    /// is deleted: a table redrawn in place on a terminal, a line per change otherwise.
    #[arg(long, short = 'w', conflicts_with = "output")]
    pub watch: bool,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Format,
}

#[derive(Debug, Args)]
pub(crate) struct GroupsArgs {
    /// One group to show with its applications and subcharts.
    pub name: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Format,
}

/// What `baton delete` deletes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum DeleteKind {
    /// An application group (also `applicationgroup`, `ag`): its releases are uninstalled in
    /// reverse dependency order, then it is forgotten.
    #[value(alias = "applicationgroup", alias = "ag")]
    Group,
    /// A workflow (also `wf`): it starts no new run; runs going on finish.
    #[value(alias = "wf")]
    Workflow,
    /// A task (also `tk`): nothing starts it any more; instances running finish.
    #[value(alias = "tk")]
    Task,
    /// An ignitor (also `ig`): it fires no more.
    #[value(alias = "ig")]
    Ignitor,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// What to delete: `group`, `workflow`, `task` or `ignitor` (exit 2 for anything else;
    /// exit 1 when nothing of that name is known).
    #[arg(value_enum)]
    pub kind: DeleteKind,
    /// Its name.
    pub name: String,
    #[command(flatten)]
    pub server: ServerArgs,
    /// For a group: waits for the delete to end; exit 0 if every release was uninstalled, 1
    /// if not.
    #[arg(long)]
    pub wait: bool,
    /// For a group: lets it go whatever its delete leaves installed (a group whose uninstall
    /// failed is otherwise held, its cluster object by Baton's finalizer).
    #[arg(long)]
    pub force: bool,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Format,
}

/// What `baton cell` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum CellAction {
    /// Goes on past a pause or an inconclusive analysis, or tries a failed step again.
    Resume,
    /// The stable version gets 100% and the version is blocked.
    Abort,
    /// The new version gets 100% now; with no rollout under way, the newest blocked version
    /// is unblocked and gets it.
    Promote,
    /// Forgets the Cell; its rule goes too with `deletionPolicy: Delete`.
    Delete,
}

#[derive(Debug, Args)]
pub(crate) struct CellArgs {
    /// What to do.
    #[arg(value_enum)]
    pub command: CellAction,
    /// The Cell's name.
    pub name: String,
    /// Acts only if the rollout under way is this run (as `baton cells` shows it); refused
    /// otherwise, so that a command meant for one rollout never moves the next.
    #[arg(long)]
    pub run: Option<String>,
    /// Acts only if the rollout is at this step.
    #[arg(long)]
    pub step: Option<u32>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub(crate) struct CancelArgs {
    /// The run id.
    pub run: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub(crate) struct TriggerArgs {
    /// The workflow's name.
    pub name: String,
    /// The trigger data (the first nodes' BATON_DATA).
    #[arg(long, default_value = "")]
    pub data: String,
    #[command(flatten)]
    pub server: ServerArgs,
}
