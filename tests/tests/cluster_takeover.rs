//! The active planner killed with SIGKILL on a three-node NATS cluster (streams, state and
//! lease at R3) while work of every clock-driven kind is in flight: a chain of exec nodes, a
//! Cell waiting in a timed pause (its traffic on the ALB emulator) and a cron ignitor. A
//! standby with its own data directory takes over from what the bus keeps: the chain ends
//! with each effect once, the pause ends when it was due, and each fire happens once.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use baton_core::fire_run_id;
use baton_schemas::status::{RunStatus, State};
use baton_schemas::wire::Timestamp;
use baton_tests::aws::Moto;
use baton_tests::{Env, Proc, exec_chain, lines};
use futures::StreamExt as _;

/// Short enough that the takeover falls inside the pause, long enough that a loaded machine
/// renews it in time (no member of the bus dies in this test).
const TTL: &str = "3s";
/// The pause the takeover falls into.
const PAUSE: Duration = Duration::from_secs(20);
/// The cron ignitor's period, longer than the takeover: at most one fire falls due while no
/// planner acts.
const PERIOD_MS: u64 = 6_000;
/// The chain's length.
const N: usize = 10;

fn start_planner(env: &mut Env, name: &str) -> Proc {
    // Its own data directory; the env's API address, which a standby binds only once it is
    // active.
    let data_dir: PathBuf = env.dir.path().join(format!("{name}-data"));
    let mut command = env.baton();
    command
        .args(["planner", "--lease-ttl", TTL, "--sync-period", "1s"])
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", env.api_port))
        .arg("--data-dir")
        .arg(data_dir);
    env.spawn(name, command).unwrap()
}

fn wait_until<T>(what: &str, within: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn runs(env: &Env) -> Vec<RunStatus> {
    let out = env.cli(&["runs", "-o", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn cell(env: &Env, name: &str) -> serde_json::Value {
    let out = env.cli(&["cells", "-o", "json"]);
    let cells: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    cells
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_default()
}

fn at(text: Option<&str>) -> SystemTime {
    humantime::parse_rfc3339_weak(text.expect("a time")).expect("an RFC 3339 time")
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

#[test]
fn a_standby_on_its_own_disk_takes_over_runs_a_timed_pause_and_a_cron_ignitor() {
    let mut env = Env::on_cluster(env!("CARGO_BIN_EXE_baton-under-test")).expect("cluster env");
    let moto = Moto::start(env.dir.path()).expect("moto");
    let listener = moto.listener().expect("a listener");
    env.extra_env.extend(moto.env());
    let mut first = start_planner(&mut env, "planner-a");
    first
        .wait_log("this planner is active now", Duration::from_secs(60))
        .unwrap();
    let worker = env.start_worker("worker", "exec,traffic", &[]).unwrap();
    env.keep(worker);
    let second = start_planner(&mut env, "planner-b");
    second
        .wait_log("standing by", Duration::from_secs(30))
        .unwrap();
    baton_tests::wait_for_port(env.api_port, Duration::from_secs(30)).unwrap();

    // A cron ignitor from the start (its task's pods are never run: no pod worker).
    let applied = SystemTime::now();
    let cron = "apiVersion: baton.dev/v1alpha1\nkind: Task\nmetadata: {name: tick}\nspec:\n  startOnIgnition: [every6s]\n  template: {spec: {containers: [{name: main, image: busybox}]}}\n---\napiVersion: baton.dev/v1alpha1\nkind: Ignitor\nmetadata: {name: every6s}\nspec: {scheduled: \"*/6 * * * * * *\"}\n";
    env.apply(&env.write("cron.yaml", cron)).unwrap();

    // A Cell serving 1.0.0, then rolling out 2.0.0 into a timed pause at 50 %.
    let tags = |v: &'static str| [("app", "web"), ("baton.dev/version", v)];
    moto.target_group(&listener.vpc_id, "web-1", &tags("1.0.0"))
        .unwrap();
    let text = format!(
        "apiVersion: baton.dev/v1alpha1\nkind: Cell\nmetadata: {{name: web}}\nspec:\n  ingress:\n    awsApplicationLoadBalancer:\n      listenerARN: {}\n      listener: {{rule: {{priority: 10, hosts: [example.com]}}}}\n      targetGroupSelector: {{matchLabels: {{app: web}}}}\n  updateStrategy: {{canary: {{steps: [{{setWeight: 50}}, {{pause: {{duration: {}s}}}}]}}}}\n",
        listener.arn,
        PAUSE.as_secs()
    );
    env.apply(&env.write("cell.yaml", &text)).unwrap();
    let weights = |wanted: &[(&str, u32)]| {
        let wanted: Vec<(String, u32)> = wanted.iter().map(|(n, w)| ((*n).into(), *w)).collect();
        let (moto, arn) = (&moto, listener.arn.clone());
        move || (moto.weights(&arn, 10).unwrap() == Some(wanted.clone())).then_some(())
    };
    wait_until(
        "web-1 at 100 %",
        Duration::from_secs(60),
        weights(&[("web-1", 100)]),
    );
    moto.target_group(&listener.vpc_id, "web-2", &tags("2.0.0"))
        .unwrap();
    wait_until(
        "the rollout at 50 %",
        Duration::from_secs(60),
        weights(&[("web-1", 50), ("web-2", 50)]),
    );

    // A chain of exec nodes, killed into after its second effect.
    let file = env.dir.path().join("effects");
    let chain = env
        .apply(&env.write("chain.yaml", &exec_chain("chain", N, &file, "0.3")))
        .unwrap();
    wait_until("two effects", Duration::from_secs(60), || {
        (lines(&file).len() >= 2).then_some(())
    });
    // The first planner fires at least once (its epoch is on the fire), however quickly the
    // set-up above went.
    wait_until("a fire before the kill", Duration::from_secs(30), || {
        runs(&env)
            .iter()
            .any(|r| r.workflow == "every6s")
            .then_some(())
    });
    // Killed about a second before a fire is due, so that the fire falls due while no
    // planner acts (the takeover takes longer than the lease's ttl less a renewal period).
    wait_until("a second before a fire", Duration::from_secs(10), || {
        let phase = millis(SystemTime::now()) % PERIOD_MS;
        (PERIOD_MS - 1_300..PERIOD_MS - 700)
            .contains(&phase)
            .then_some(())
    });
    first.kill9();
    let killed = SystemTime::now();
    second
        .wait_log("this planner is active now", Duration::from_secs(60))
        .unwrap();
    let active = SystemTime::now();
    eprintln!(
        "the standby was active {:?} after the kill",
        active.duration_since(killed).unwrap()
    );
    assert!(
        second
            .log()
            .contains("standing by: following the bus's planner state"),
        "the standby followed the state stream while it waited: {}",
        second.log()
    );

    // The chain: every node once, in order.
    let status = env.wait_end(&chain, Duration::from_secs(120)).unwrap();
    assert_eq!(status.state, State::Succeeded, "{status:?}");
    let expected: Vec<String> = (0..N).map(|i| format!("s{i}")).collect();
    assert_eq!(lines(&file), expected, "every node ran exactly once");
    assert!(status.nodes.iter().all(|n| n.attempts == 1), "{status:?}");

    // The Cell: the pause the takeover fell into ended when it was due, then 2.0.0 serves.
    wait_until(
        "web-2 at 100 %",
        Duration::from_secs(60),
        weights(&[("web-2", 100)]),
    );
    let serving = wait_until("2.0.0 serving", Duration::from_secs(30), || {
        let c = cell(&env, "web");
        (c["servingVersion"] == "2.0.0").then_some(c)
    });
    let rollout = runs(&env)
        .into_iter()
        .find(|r| Some(r.run.as_str()) == serving["run"].as_str())
        .or_else(|| runs(&env).into_iter().rfind(|r| r.workflow == "web"))
        .expect("the rollout's run");
    let pause = rollout
        .nodes
        .iter()
        .find(|n| n.name.ends_with("-pause"))
        .unwrap_or_else(|| panic!("no pause node: {rollout:?}"));
    let (began, ended) = (
        at(pause.started_at.as_deref()),
        at(pause.finished_at.as_deref()),
    );
    assert!(
        killed > began && active < began + PAUSE,
        "the takeover fell into the pause: {pause:?}, killed {killed:?}, active {active:?}"
    );
    let lasted = ended.duration_since(began).unwrap();
    eprintln!("the pause lasted {lasted:?}");
    // The timestamps are whole milliseconds; the new planner's timer fires when due.
    assert!(
        lasted + Duration::from_millis(1) >= PAUSE && lasted <= PAUSE + Duration::from_secs(2),
        "the pause lasted {lasted:?}, not {PAUSE:?}: {pause:?}"
    );

    // The ignitor, stopped: each fire is one message on the triggers stream (none was
    // published twice) and one run, once the planner has read them all back.
    let out = env.cli(&["delete", "ignitor", "every6s"]);
    assert!(out.status.success(), "{out:?}");
    let subject = format!("{}.triggers.ignitors.every6s", env.prefix);
    let stream = format!("{}_TRIGGERS", env.prefix.to_ascii_uppercase());
    // Each fire message names the lease revision (epoch) of the planner that published it.
    let epochs: Vec<u64> = moto.block_on(async {
        let client = async_nats::connect(baton_bus::server_list(&env.nats_url()).unwrap())
            .await
            .unwrap();
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream(&stream).await.unwrap();
        let pending = stream
            .info_with_subjects(&subject)
            .await
            .unwrap()
            .map(|entry| entry.unwrap().1)
            .fold(0, |total, n| async move { total + n })
            .await;
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                filter_subject: subject.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut messages = consumer.messages().await.unwrap().take(pending);
        let mut epochs = Vec::new();
        while let Some(message) = messages.next().await {
            let message = message.unwrap();
            let epoch = message
                .headers
                .as_ref()
                .and_then(|h| h.get(baton_schemas::wire::headers::EPOCH))
                .unwrap_or_else(|| panic!("a fire without an epoch: {message:?}"));
            epochs.push(epoch.as_str().parse().unwrap());
        }
        epochs
    });
    let published = epochs.len();
    // A fire published just before the delete may be read after it: it then starts no run,
    // and the planner says so.
    let unstarted = || {
        ["planner-a", "planner-b"]
            .iter()
            .map(|name| {
                std::fs::read_to_string(env.dir.path().join(format!("{name}.log")))
                    .unwrap_or_default()
                    .matches("ignitor fired; no task started")
                    .count()
            })
            .sum::<usize>()
    };
    let (fired, unstarted) = wait_until("a run per fire", Duration::from_secs(30), || {
        let fired: Vec<RunStatus> = runs(&env)
            .into_iter()
            .filter(|r| r.workflow == "every6s")
            .collect();
        let unstarted = unstarted();
        (fired.len() + unstarted >= published).then_some((fired, unstarted))
    });
    assert!(
        unstarted <= 1,
        "only the last fire may find the ignitor gone"
    );
    assert_eq!(fired.len() + unstarted, published, "{fired:#?}");
    // The first planner's fires, then the standby's under a later lease.
    assert!(
        epochs.windows(2).all(|e| e[0] <= e[1]) && epochs.first() < epochs.last(),
        "{epochs:?}"
    );
    // Every fire on the schedule; a fire time skipped only while no planner acted, and then
    // the latest of them fired once (README: missed fires).
    let now = SystemTime::now();
    let first_fire = millis(applied) / PERIOD_MS * PERIOD_MS;
    let schedule: Vec<u64> = (first_fire..=millis(now))
        .step_by(PERIOD_MS as usize)
        .collect();
    let mut fires: Vec<u64> = fired
        .iter()
        .map(|r| {
            *schedule
                .iter()
                .find(|t| fire_run_id("every6s", Timestamp(**t)).as_str() == r.run)
                .unwrap_or_else(|| panic!("run {} is no fire of every6s's schedule", r.run))
        })
        .collect();
    fires.sort();
    let down = (millis(killed), millis(active));
    assert!(fires.len() >= 3, "{fires:?}");
    eprintln!("fires at {fires:?}; no planner acted in {down:?}");
    let due_while_down = (down.0 / PERIOD_MS + 1) * PERIOD_MS;
    assert!(
        due_while_down <= down.1 && fires.contains(&due_while_down),
        "the fire due at {due_while_down}, while no planner acted ({down:?}), happened: {fires:?}"
    );
    for pair in fires.windows(2) {
        let skipped = (pair[0] + PERIOD_MS..pair[1]).step_by(PERIOD_MS as usize);
        for t in skipped {
            assert!(
                t > down.0 && t <= down.1,
                "fire time {t} skipped outside the takeover {down:?}: {fires:?}"
            );
        }
    }
    env.keep(second);
}
