//! The `exec` executor: runs a local process with the node's argv, env and working directory.
//!
//! The process gets `BATON_RUN`, `BATON_NODE`, `BATON_ATTEMPT`, `BATON_INITIATOR`,
//! `BATON_DATA`, `BATON_INPUTS` (several upstreams) and `BATON_OUTPUT`, the path of a file
//! that stands in for a pod's termination log: what the process writes there is the node's
//! output, at most [`OUTPUT_LIMIT_BYTES`]. A larger file fails the node rather than being cut.
//!
//! The data passed is also in files, `BATON_DATA_FILE` and `BATON_INPUTS_FILE` (several
//! upstreams): a value larger than one environment entry may be (`execve` takes 128 KiB,
//! a fan-in of hundreds of 4 KiB outputs is more) is given only there, its variable unset.
//!
//! No process of a job outlives it, as no process of a container outlives the container: the
//! command runs under a small supervisor, the worker's own binary started again as
//! `baton exec-supervise` ([`supervise`]), which starts the command as the leader of a process
//! group of its own and kills that whole group (`SIGKILL`) when
//! - the command's leader exits (a shell's background children go with it);
//! - the worker asks (a timeout, a cancel, a stop): it sends the supervisor `SIGTERM`;
//! - the worker dies, even by `kill -9`: the supervisor has the parent-death signal (`SIGTERM`),
//!   so a command cannot finish an effect that the job's redelivery runs again.
//!
//! Only a process that leaves the group (`setsid`, say) escapes; that takes a cgroup to stop.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_schemas::OUTPUT_LIMIT_BYTES;
use baton_schemas::wire::{Job, Outcome};
use nix::sys::signal::{SigSet, Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::Effect;

/// How many of the process's last output lines go with a failure.
const TAIL_LINES: usize = 20;

/// The hidden subcommand of the `baton` binary that runs [`supervise`]. A binary that runs
/// exec jobs must answer it before anything else (`baton_cli::main` does).
pub const SUPERVISE_COMMAND: &str = "exec-supervise";

/// How long a supervisor asked to stop may take before it is killed itself.
const SUPERVISOR_GRACE: Duration = Duration::from_secs(5);

/// Runs the job's process to its end, its timeout, or `stop`, under a supervisor that is this
/// process's own binary (`/proc/self/exe`, which stays valid when the file is replaced).
pub async fn run(job: &Job, stop: &CancellationToken) -> Effect {
    run_with(job, stop, Path::new("/proc/self/exe")).await
}

/// Runs the job's process as [`run`] does, with `supervisor` as the program that answers
/// [`SUPERVISE_COMMAND`] (for a test binary that does not).
pub async fn run_with(job: &Job, stop: &CancellationToken, supervisor: &Path) -> Effect {
    let Some(spec) = job.exec() else {
        return Effect::Done(failed("not an exec job"));
    };
    let Some(program) = spec.command.first() else {
        return Effect::Done(failed("exec job with an empty command"));
    };
    let scratch = match tempfile::Builder::new().prefix("baton-exec-").tempdir() {
        Ok(dir) => dir,
        Err(e) => return Effect::Done(failed(&format!("cannot create a scratch directory: {e}"))),
    };
    let output_path = scratch.path().join("output");
    let error_path = scratch.path().join("start-error");
    let mut command = Command::new(supervisor);
    command
        .arg0("baton")
        .arg(SUPERVISE_COMMAND)
        .arg("--error-file")
        .arg(&error_path);
    if let Some(dir) = &spec.working_dir {
        command.arg("--working-dir").arg(dir);
    }
    command
        .arg("--")
        .args(&spec.command)
        .envs(&spec.env)
        .envs(job.baton_env())
        .env("BATON_OUTPUT", &output_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: a Ctrl-C at the worker's terminal is the worker's to handle, and the
        // worker drains its jobs rather than see them killed under it.
        .process_group(0);
    if let Err(e) = data_files(&mut command, job, scratch.path()).await {
        return Effect::Done(failed(&format!("cannot write the data passed: {e}")));
    }
    stop_with_worker(&mut command);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            return Effect::Done(failed(&format!(
                "cannot start the exec supervisor {}: {e}",
                supervisor.display()
            )));
        }
    };
    let mut guard = Supervised(
        child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .map(Pid::from_raw),
    );
    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
    let readers = [
        child
            .stdout
            .take()
            .map(|s| tokio::spawn(collect(s, tail.clone(), job.node.to_string()))),
        child
            .stderr
            .take()
            .map(|s| tokio::spawn(collect(s, tail.clone(), job.node.to_string()))),
    ];
    let timeout = job.timeout();
    let ended = tokio::select! {
        status = child.wait() => Ok(status),
        _ = super::timed_out(timeout) => Err(true),
        _ = stop.cancelled() => Err(false),
    };
    if ended.is_err() {
        // The supervisor kills the command's whole group, then exits.
        guard.terminate();
        if tokio::time::timeout(SUPERVISOR_GRACE, child.wait())
            .await
            .is_err()
        {
            warn!(node = %job.node, "the exec supervisor did not stop; killing it");
            let _ = child.kill().await;
        }
    }
    guard.0 = None;
    for reader in readers.into_iter().flatten() {
        // The group is dead; only a process that left it could hold the pipe open.
        let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
    }
    let last_lines = || {
        let tail = tail.lock().expect("tail lock");
        if tail.is_empty() {
            String::new()
        } else {
            format!(
                "; last output:\n{}",
                tail.iter().cloned().collect::<Vec<_>>().join("\n")
            )
        }
    };
    let status = match ended {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Effect::Done(failed(&format!("waiting for the process failed: {e}"))),
        Err(true) => {
            let t = humantime::format_duration(timeout.unwrap_or_default());
            return Effect::Done(failed(&format!("timed out after {t}{}", last_lines())));
        }
        Err(false) => return Effect::Stopped,
    };
    // The supervisor writes the file only when the command cannot start, and exits with 127.
    if status.code() == Some(127)
        && let Ok(error) = tokio::fs::read_to_string(&error_path).await
    {
        return Effect::Done(failed(&format!("cannot start {program:?}: {error}")));
    }
    if !status.success() {
        use std::os::unix::process::ExitStatusExt;
        let how = match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            _ => "failed".to_owned(),
        };
        return Effect::Done(failed(&format!("{how}{}", last_lines())));
    }
    match read_output(&output_path).await {
        Ok(output) => Effect::Done(Outcome::Succeeded { output }),
        Err(e) => Effect::Done(failed(&e)),
    }
}

/// A running supervisor, asked to stop (and so to kill its command's group) when dropped: an
/// exec future dropped half way leaves nothing behind. Emptied once the supervisor is reaped,
/// so that a reused pid is never signalled.
/// Writes the data passed to the node into files of `dir` and names them in
/// `BATON_DATA_FILE` and `BATON_INPUTS_FILE`; a variable whose value is too large for the
/// environment is unset, its file the only way in.
async fn data_files(command: &mut Command, job: &Job, dir: &Path) -> std::io::Result<()> {
    let mut files = vec![("BATON_DATA", job.inputs.data.clone())];
    if let Some(inputs) = &job.inputs.inputs {
        let json = serde_json::to_string(inputs).unwrap_or_else(|_| "{}".to_owned());
        files.push(("BATON_INPUTS", json));
    }
    for (name, value) in files {
        let path = dir.join(name.to_ascii_lowercase());
        tokio::fs::write(&path, &value).await?;
        command.env(format!("{name}_FILE"), &path);
        if name.len() + 1 + value.len() > baton_schemas::validate::MAX_EXEC_STRING {
            command.env_remove(name);
        }
    }
    Ok(())
}

struct Supervised(Option<Pid>);

impl Supervised {
    fn terminate(&self) {
        if let Some(pid) = self.0
            && let Err(e) = kill(pid, Signal::SIGTERM)
        {
            debug!(%pid, error = %e, "stopping the exec supervisor");
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Reads the output file: empty when the process wrote none, an error above the cap.
async fn read_output(path: &std::path::Path) -> Result<String, String> {
    match tokio::fs::metadata(path).await {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(format!("cannot read BATON_OUTPUT: {e}")),
        Ok(meta) if meta.len() > OUTPUT_LIMIT_BYTES as u64 => {
            return Err(format!(
                "output is {} bytes, above the {OUTPUT_LIMIT_BYTES}-byte limit of BATON_OUTPUT (the size of a termination log)",
                meta.len()
            ));
        }
        Ok(_) => {}
    }
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| format!("cannot read BATON_OUTPUT: {e}"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

async fn collect(stream: impl AsyncRead + Unpin, tail: Arc<Mutex<VecDeque<String>>>, node: String) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        debug!(%node, %line, "exec output");
        let mut tail = tail.lock().expect("tail lock");
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

/// Gives the supervisor `SIGTERM` when the worker dies (the parent-death signal, kept across
/// its exec), so that it kills the command's group: a worker killed in the middle of a job
/// leaves no process behind to finish an effect that the job's redelivery runs again.
#[allow(unsafe_code)] // pre_exec is unsafe; the hook below only makes async-signal-safe calls
fn stop_with_worker(command: &mut Command) {
    let worker = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2) and
    // getppid(2), both async-signal-safe; it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
            // The signal follows the forking thread: a tokio runtime thread, which lives as long
            // as the worker. The worker may have died between fork and prctl: check.
            if nix::unistd::getppid() != worker {
                return Err(std::io::Error::other(
                    "the worker exited while starting the process",
                ));
            }
            Ok(())
        });
    }
}

/// What `baton exec-supervise` was asked to run.
#[derive(Debug, PartialEq)]
struct SuperviseArgs {
    /// Where to write why the command could not start.
    error_file: PathBuf,
    /// The command's working directory.
    working_dir: Option<PathBuf>,
    /// The command: program and arguments.
    argv: Vec<OsString>,
}

impl SuperviseArgs {
    /// Reads `--error-file <path> [--working-dir <dir>] -- <program> [<arg>...]`.
    fn parse(args: Vec<OsString>) -> Result<SuperviseArgs, String> {
        let mut args = args.into_iter();
        let (mut error_file, mut working_dir) = (None, None);
        loop {
            let Some(flag) = args.next() else {
                return Err("missing `-- <program>`".to_owned());
            };
            match flag.to_str() {
                Some("--") => break,
                Some("--error-file") => error_file = args.next().map(PathBuf::from),
                Some("--working-dir") => working_dir = args.next().map(PathBuf::from),
                _ => return Err(format!("unknown argument {flag:?}")),
            }
        }
        let argv: Vec<OsString> = args.collect();
        if argv.is_empty() {
            return Err("missing the program after `--`".to_owned());
        }
        Ok(SuperviseArgs {
            error_file: error_file.ok_or("missing --error-file")?,
            working_dir,
            argv,
        })
    }
}

/// Runs `baton exec-supervise`: starts the command as the leader of a new process group, waits
/// for it, and kills the whole group with `SIGKILL` when the leader exits or when the
/// supervisor gets `SIGTERM`, `SIGINT` or `SIGHUP` (its worker's stop, or its worker's death).
/// Exits as the leader did: with its exit code, or by its signal (as exit code 128 + the
/// signal when that signal cannot end this process). When the command cannot start, writes why
/// to the error file and exits with 127.
///
/// Call it first thing in `main`, with the arguments after [`SUPERVISE_COMMAND`], before any
/// thread starts: it blocks signals for the process and waits for them synchronously.
pub fn supervise(args: Vec<OsString>) -> ExitCode {
    let args = match SuperviseArgs::parse(args) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: baton {SUPERVISE_COMMAND}: {e}");
            return ExitCode::from(2);
        }
    };
    let mut signals = SigSet::empty();
    for signal in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGCHLD,
    ] {
        signals.add(signal);
    }
    // Blocked, they wait for `sigwait` below: one arriving before the command starts is not
    // lost. The command gets them unblocked again (`unblock_in_child`).
    if let Err(e) = signals.thread_block() {
        eprintln!("error: baton {SUPERVISE_COMMAND}: blocking signals: {e}");
        return ExitCode::from(2);
    }
    let mut command = std::process::Command::new(&args.argv[0]);
    command.args(&args.argv[1..]);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    unblock_in_child(&mut command, signals);
    if let Some(dir) = &args.working_dir {
        command.current_dir(dir);
    }
    let leader = match command.spawn() {
        Ok(child) => Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX)),
        Err(e) => {
            let _ = std::fs::write(&args.error_file, e.to_string());
            return ExitCode::from(127);
        }
    };
    loop {
        let signal = match signals.wait() {
            Ok(signal) => signal,
            Err(_) => continue,
        };
        if signal != Signal::SIGCHLD {
            kill_group(leader);
            let _ = waitpid(leader, None);
            return exit_by(signal);
        }
        match waitpid(leader, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => {
                kill_group(leader);
                return ExitCode::from(u8::try_from(code).unwrap_or(1));
            }
            Ok(WaitStatus::Signaled(_, signal, _)) => {
                kill_group(leader);
                return exit_by(signal);
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("error: baton {SUPERVISE_COMMAND}: waiting for the command: {e}");
                kill_group(leader);
                return ExitCode::from(1);
            }
        }
    }
}

/// Unblocks `signals` in the command before it runs: a blocked mask is inherited across exec,
/// and the standard library does not reset it.
#[allow(unsafe_code)] // pre_exec is unsafe; the hook below only makes an async-signal-safe call
fn unblock_in_child(command: &mut std::process::Command, signals: SigSet) {
    // SAFETY: the closure runs in the forked child before exec and only calls
    // pthread_sigmask(3), which is async-signal-safe; it allocates nothing and takes no lock.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(command, move || {
            signals.thread_unblock()?;
            Ok(())
        });
    }
}

/// Ends this process by `signal`, so that its parent sees what the command saw; when the
/// signal does not end it (ignored or handled here, as `SIGPIPE` and `SIGSEGV` are), returns
/// the shell's code for it, 128 + the signal.
fn exit_by(signal: Signal) -> ExitCode {
    let mut only = SigSet::empty();
    only.add(signal);
    let _ = only.thread_unblock();
    let _ = nix::sys::signal::raise(signal);
    ExitCode::from(128u8.saturating_add(u8::try_from(signal as i32).unwrap_or(0)))
}

/// Kills every process left in the group led by `leader`.
fn kill_group(leader: Pid) {
    match killpg(leader, Signal::SIGKILL) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => eprintln!("error: baton {SUPERVISE_COMMAND}: killing the command's group: {e}"),
    }
}

fn failed(error: &str) -> Outcome {
    Outcome::failed(error.to_owned())
}

#[cfg(test)]
mod tests {
    //! The supervisor's arguments; the executor itself runs processes, and is tested against
    //! the `baton` binary in `tests/tests/exec.rs`.
    use super::*;

    fn args(text: &[&str]) -> Vec<OsString> {
        text.iter().map(OsString::from).collect()
    }

    #[test]
    fn supervise_arguments() {
        assert_eq!(
            SuperviseArgs::parse(args(&["--error-file", "/t/e", "--", "sh", "-c", "--"])),
            Ok(SuperviseArgs {
                error_file: "/t/e".into(),
                working_dir: None,
                argv: args(&["sh", "-c", "--"]),
            })
        );
        assert_eq!(
            SuperviseArgs::parse(args(&[
                "--working-dir",
                "/w",
                "--error-file",
                "e",
                "--",
                "x"
            ]))
            .unwrap()
            .working_dir,
            Some(PathBuf::from("/w"))
        );
        assert!(SuperviseArgs::parse(args(&["--error-file", "e", "--"])).is_err());
        assert!(SuperviseArgs::parse(args(&["--", "x"])).is_err());
        assert!(SuperviseArgs::parse(args(&["--bogus", "--", "x"])).is_err());
    }

    #[tokio::test]
    async fn output_above_the_cap_is_an_error_and_none_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output");
        assert_eq!(read_output(&path).await, Ok(String::new()));
        std::fs::write(&path, vec![b'x'; OUTPUT_LIMIT_BYTES + 1]).unwrap();
        let error = read_output(&path).await.unwrap_err();
        assert!(
            error.contains("4097 bytes, above the 4096-byte limit"),
            "{error}"
        );
        std::fs::write(&path, vec![b'x'; OUTPUT_LIMIT_BYTES]).unwrap();
        assert_eq!(read_output(&path).await.unwrap().len(), OUTPUT_LIMIT_BYTES);
    }
}
