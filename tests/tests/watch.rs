//! Live progress: the API's watch stream of a run (server-sent events pushed as the planner
//! changes it), `baton status --watch` in plain mode (output not a terminal: one line per
//! change) and in terminal mode (under a pseudo-terminal made by `script`: a table redrawn in
//! place), and `baton apply --wait`'s progress beside its result.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use baton_tests::{Env, open_gate, wait_for_gate, workflow};

const BATON: &str = env!("CARGO_BIN_EXE_baton-under-test");

/// A workflow whose first node waits for `gate`, then a diamond of three nodes after it, one
/// of which leaves two lines of output.
fn gated(env: &Env, name: &str, gate: &Path) -> std::path::PathBuf {
    let nodes = [
        format!(
            "{{name: first, kind: exec, command: [sh, -c, '{}; echo first done']}}",
            wait_for_gate(gate)
        ),
        "{name: left, kind: exec, needs: [first], command: [sh, -c, 'printf \"one\\ntwo\\n\" > \"$BATON_OUTPUT\"']}"
            .to_owned(),
        "{name: right, kind: noop, needs: [first]}".to_owned(),
        "{name: last, kind: noop, needs: [left, right]}".to_owned(),
    ];
    env.write(&format!("{name}.yaml"), &workflow(name, &nodes))
}

/// The lines `reader` gives, read on a thread of their own so that waiting for them can be
/// bounded.
fn lines_of(reader: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Takes lines from `lines` until one satisfies `done`, at most `within`; returns them all.
fn read_until(
    lines: &mpsc::Receiver<String>,
    within: Duration,
    done: impl Fn(&str) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let stop = done(&line);
                seen.push(line);
                if stop {
                    return seen;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("no end after {within:?}: {seen:#?}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("the output ended early: {seen:#?}")
            }
        }
    }
}

/// Waits for `child` to exit, at most `within`; kills it and fails past that.
fn wait_exit(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_runs_stream_pushes_each_change_and_status_watch_prints_them_as_lines() {
    let mut env = Env::new(BATON).unwrap();
    env.start_all().unwrap();
    let gate = env.dir.path().join("gate");
    let run = env.apply(&gated(&env, "watched", &gate)).unwrap();

    // The raw stream: a snapshot first, with every node (the pending ones too).
    let mut curl = Command::new("curl")
        .args(["-sSN", "-H"])
        .arg(format!("Authorization: Bearer {}", env.tokens.viewer))
        .arg(format!("{}/v1/runs/{run}/watch", env.server()))
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    let raw = lines_of(curl.stdout.take().unwrap());
    let opening = read_until(&raw, Duration::from_secs(30), |l| l.starts_with("data:"));
    assert!(
        opening.contains(&"event: snapshot".to_owned()),
        "{opening:?}"
    );
    let snapshot: serde_json::Value =
        serde_json::from_str(opening.last().unwrap().trim_start_matches("data:").trim()).unwrap();
    assert_eq!(snapshot["nodes"].as_array().unwrap().len(), 4, "{snapshot}");

    // `status --watch` with its output in a pipe: plain lines.
    let mut watch = env.baton();
    watch
        .args(["status", &run, "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut watch = watch.spawn().unwrap();
    let plain = lines_of(watch.stdout.take().unwrap());
    let head = read_until(&plain, Duration::from_secs(30), |l| {
        l.starts_with("node last")
    });
    assert!(
        head[0].starts_with(&format!("run {run}  workflow watched")),
        "{head:?}"
    );
    assert!(
        head.iter().any(|l| l.starts_with("node left  pending")),
        "{head:?}"
    );

    open_gate(&gate);
    // Each change comes as it happens, the stream ends with the run.
    let streamed = read_until(&raw, Duration::from_secs(60), |l| l == "event: end");
    let events: Vec<String> = streamed
        .iter()
        .filter_map(|l| l.strip_prefix("event: ").map(str::to_owned))
        .collect();
    assert!(
        events.iter().filter(|e| *e == "node").count() >= 4,
        "{events:?}"
    );
    assert_eq!(events.last().map(String::as_str), Some("end"));
    // The server closes the stream after `end`.
    assert!(wait_exit(&mut curl, Duration::from_secs(30)).success());

    let rest = read_until(&plain, Duration::from_secs(60), |l| l.contains("ended:"));
    assert_eq!(
        rest.last().unwrap(),
        &format!("run {run} ended: succeeded"),
        "{rest:?}"
    );
    assert!(
        rest.iter()
            .any(|l| l.starts_with("node left  succeeded  attempt 1") && l.ends_with("two")),
        "the last output line of `left`: {rest:?}"
    );
    let order: Vec<&str> = rest
        .iter()
        .filter(|l| l.contains(" succeeded "))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(order.first(), Some(&"first"), "{rest:?}");
    assert_eq!(order.last(), Some(&"last"), "{rest:?}");
    assert!(
        wait_exit(&mut watch, Duration::from_secs(30)).success(),
        "exit 0 for a run that succeeded"
    );

    // An unknown run is refused with the API's words, exit 1.
    let out = env.cli(&["status", "no-such-run", "--watch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

#[test]
fn status_watch_redraws_a_table_on_a_terminal_and_apply_wait_keeps_stdout_for_the_result() {
    let mut env = Env::new(BATON).unwrap();
    env.start_all().unwrap();
    let gate = env.dir.path().join("gate");
    let run = env.apply(&gated(&env, "drawn", &gate)).unwrap();

    // `script` gives the command a pseudo-terminal and copies what it draws to a file.
    let typescript = env.dir.path().join("typescript");
    let mut watch = Command::new("script");
    watch
        .args(["-qfec"])
        .arg(format!("{BATON} status {run} --watch"))
        .arg(&typescript)
        .envs(env.baton().get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env("COLUMNS", "120")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut watch = watch.spawn().expect("script (util-linux)");
    // The first drawing shows every node, then the gate lets the run go on.
    let drawn = |within: Duration, what: &str| {
        let started = Instant::now();
        loop {
            let text = String::from_utf8_lossy(&std::fs::read(&typescript).unwrap_or_default())
                .into_owned();
            if text.contains(what) {
                return text;
            }
            assert!(
                started.elapsed() < within,
                "no {what:?} after {within:?} in:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let first = drawn(Duration::from_secs(30), "NODE");
    assert!(first.contains("LAST OUTPUT"), "{first}");
    open_gate(&gate);
    assert!(wait_exit(&mut watch, Duration::from_secs(60)).success());
    let mut stderr = String::new();
    watch
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let text = drawn(Duration::from_secs(5), "succeeded");
    // Redrawn in place: the cursor goes up over the last drawing, which is cleared.
    assert!(
        text.contains("\x1b[") && text.contains("A\r\x1b[J"),
        "{text:?} {stderr}"
    );
    // The last drawing: the run and every node succeeded, `left`'s last line of output.
    let last = text.rsplit("\x1b[J").next().unwrap();
    assert!(
        last.contains(&format!("run {run}  workflow drawn  succeeded")),
        "{last}"
    );
    for node in ["first", "left", "right", "last"] {
        assert!(
            last.lines()
                .any(|l| l.starts_with(node) && l.contains("succeeded")),
            "{node} in {last}"
        );
    }
    assert!(
        last.lines()
            .any(|l| l.starts_with("left") && l.trim_end().ends_with("two"))
    );

    // `apply --wait` with its output in pipes: progress lines on stderr, the result alone
    // on stdout.
    let gate2 = env.dir.path().join("gate2");
    open_gate(&gate2);
    let file = gated(&env, "waited", &gate2);
    let out = env.cli(&[
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--wait",
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["state"], "succeeded");
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(progress.contains("node last  succeeded"), "{progress}");
    assert!(progress.contains("ended: succeeded"), "{progress}");
}
