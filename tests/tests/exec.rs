//! The `exec` executor with its supervisor, the `baton` binary's `exec-supervise`: env and
//! output, exit codes, timeouts and stops, and that no process of a job outlives it, not
//! even when its worker is killed with `kill -9`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use baton_schemas::wire::{ExecJob, Job, JobInputs, Outcome, Work};
use baton_schemas::{Attempt, NodeName, RunId, WorkflowName};
use baton_tests::{Env, lines, workflow};
use baton_workers::executors::{Effect, exec};
use tokio_util::sync::CancellationToken;

const BATON: &str = env!("CARGO_BIN_EXE_baton-under-test");

fn job(script: &str, timeout_ms: Option<u64>) -> Job {
    Job {
        timeout_ms,
        inputs: JobInputs {
            initiator: "up".into(),
            data: "d1".into(),
            inputs: Some([(NodeName::new("up"), "d1".to_owned())].into()),
        },
        ..Job::new(
            RunId::new("r1"),
            WorkflowName::new("wf"),
            NodeName::new("n"),
            Attempt(2),
            Work::Exec(ExecJob {
                command: vec!["sh".into(), "-c".into(), script.into()],
                env: [("GREETING".to_owned(), "hi".to_owned())].into(),
                working_dir: None,
            }),
        )
    }
}

async fn run(job: &Job, stop: &CancellationToken) -> Effect {
    exec::run_with(job, stop, Path::new(BATON)).await
}

async fn outcome(script: &str, timeout_ms: Option<u64>) -> Outcome {
    match run(&job(script, timeout_ms), &CancellationToken::new()).await {
        Effect::Done(o) => o,
        Effect::Stopped => panic!("not stopped"),
    }
}

/// Whether `pid` is a live process (not gone, not a zombie waiting to be reaped).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

/// Waits until none of the pids in `file` is alive, at most `within`; returns those alive.
fn wait_all_dead(file: &Path, within: Duration) -> Vec<u32> {
    let pids: Vec<u32> = lines(file).iter().map(|l| l.parse().unwrap()).collect();
    assert!(!pids.is_empty(), "no pids in {}", file.display());
    let started = Instant::now();
    loop {
        let living: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if living.is_empty() || started.elapsed() > within {
            return living;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `file` has `n` lines.
fn wait_lines(file: &Path, n: usize, within: Duration) {
    let started = Instant::now();
    while lines(file).len() < n {
        assert!(
            started.elapsed() < within,
            "{} never had {n} lines",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A script that starts two background sleepers, writes their pids and its own to `pids`,
/// and waits for them.
fn sleepers(pids: &Path) -> String {
    let p = pids.display();
    format!(
        "sleep 300 & echo $! >> {p}; (sleep 300; echo never) & echo $! >> {p}; echo $$ >> {p}; wait"
    )
}

#[tokio::test]
async fn output_file_and_env_reach_the_process() {
    let o = outcome(
        r#"printf '%s|%s|%s|%s|%s|%s|%s' "$GREETING" "$BATON_RUN" "$BATON_NODE" "$BATON_ATTEMPT" "$BATON_INITIATOR" "$BATON_DATA" "$BATON_INPUTS" > "$BATON_OUTPUT""#,
        None,
    )
    .await;
    assert_eq!(
        o,
        Outcome::Succeeded {
            output: r#"hi|r1|n|2|up|d1|{"up":"d1"}"#.into()
        }
    );
}

#[tokio::test]
async fn the_command_starts_with_no_signal_blocked_in_its_working_directory() {
    // The supervisor blocks signals to wait for them; the command must not inherit that.
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(
        "grep SigBlk /proc/self/status | tr -d '\\t ' > \"$BATON_OUTPUT\"; pwd >> \"$BATON_OUTPUT\"",
        None,
    );
    if let Work::Exec(exec) = &mut j.work {
        exec.working_dir = Some(dir.path().display().to_string());
    }
    let Effect::Done(Outcome::Succeeded { output }) = run(&j, &CancellationToken::new()).await
    else {
        panic!()
    };
    let canonical = dir.path().canonicalize().unwrap();
    assert_eq!(
        output,
        format!("SigBlk:0000000000000000\n{}\n", canonical.display())
    );
}

#[tokio::test]
async fn non_zero_exit_fails_with_the_last_lines() {
    let Outcome::Failed { error, .. } = outcome("echo one; echo two >&2; exit 3", None).await
    else {
        panic!()
    };
    assert!(error.starts_with("exit code 3; last output:"), "{error}");
    assert!(error.contains("one") && error.contains("two"), "{error}");
}

#[tokio::test]
async fn a_command_killed_by_a_signal_says_so() {
    let Outcome::Failed { error, .. } = outcome("kill -KILL $$", None).await else {
        panic!()
    };
    assert!(error.starts_with("killed by signal 9"), "{error}");
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let started = Instant::now();
    let Outcome::Failed { error, .. } = outcome(&sleepers(&pids), Some(500)).await else {
        panic!()
    };
    assert!(error.starts_with("timed out after 500ms"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the sleeping children were killed"
    );
    assert_eq!(
        wait_all_dead(&pids, Duration::from_secs(5)),
        Vec::<u32>::new()
    );
}

#[tokio::test]
async fn background_children_do_not_outlive_their_command() {
    // As in a container: when the main process exits, what it left running is killed.
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let script = format!(
        "sleep 300 & echo $! >> {p}; printf done > \"$BATON_OUTPUT\"",
        p = pids.display()
    );
    let started = Instant::now();
    assert_eq!(
        outcome(&script, None).await,
        Outcome::Succeeded {
            output: "done".into()
        }
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        wait_all_dead(&pids, Duration::from_secs(5)),
        Vec::<u32>::new()
    );
}

#[tokio::test]
async fn missing_program_fails_clearly() {
    let mut j = job("", None);
    if let Work::Exec(exec) = &mut j.work {
        exec.command = vec!["/no/such/program".into()];
    }
    let Effect::Done(Outcome::Failed { error, .. }) = run(&j, &CancellationToken::new()).await
    else {
        panic!()
    };
    assert!(
        error.starts_with("cannot start \"/no/such/program\""),
        "{error}"
    );
}

#[tokio::test]
async fn stop_ends_the_process_and_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let stop = CancellationToken::new();
    let j = job(&sleepers(&pids), None);
    let stopper = stop.clone();
    let watched = pids.clone();
    tokio::spawn(async move {
        while lines(&watched).len() < 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stopper.cancel();
    });
    assert_eq!(run(&j, &stop).await, Effect::Stopped);
    assert_eq!(
        wait_all_dead(&pids, Duration::from_secs(5)),
        Vec::<u32>::new()
    );
}

/// The worker is killed with `kill -9` while its exec job's shell waits for two background
/// children: none of the three outlives it (a parent-death signal on the shell alone would
/// leave the children running beside the job's redelivery).
#[test]
fn a_worker_killed_mid_job_leaves_no_process_of_the_job_running() {
    let mut env = Env::new(BATON).unwrap();
    let planner = env.start_planner().unwrap();
    env.keep(planner);
    let mut worker = env.start_worker("worker", "exec", &[]).unwrap();
    let pids: PathBuf = env.dir.path().join("pids");
    let node = format!(
        "{{name: work, kind: exec, command: [sh, -c, '{}']}}",
        sleepers(&pids)
    );
    let wf = env.write("work.yaml", &workflow("work", &[node]));
    env.apply(&wf).unwrap();
    wait_lines(&pids, 3, Duration::from_secs(60));
    worker.kill9();
    let living = wait_all_dead(&pids, Duration::from_secs(10));
    assert!(
        living.is_empty(),
        "processes of the job outlived their worker: {living:?}"
    );
}
