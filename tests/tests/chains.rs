//! Orca's Task and Ignitor end to end: the planner and a pod worker as processes, pods going
//! through the real `kube` client to the tests' control plane (or the cluster of
//! `BATON_TEST_KUBECONFIG`), started by ignitor fires and by each other's success or failure.

use std::time::{Duration, Instant};

use baton_core::fire_run_id;
use baton_schemas::status::{RunStatus, State};
use baton_schemas::wire::Timestamp;
use baton_tests::kube::KubeEnv;
use baton_tests::{Env, Proc, lines, open_gate, wait_for_gate};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

struct ChainEnv {
    env: Env,
    kube: KubeEnv,
}

fn chain_env() -> ChainEnv {
    let mut env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).unwrap();
    let kube = KubeEnv::for_env(&mut env).unwrap();
    let planner = env.start_planner().unwrap();
    env.keep(planner);
    let worker = env
        .start_worker("worker", "pod,webhook,publish", &[])
        .unwrap();
    env.keep(worker);
    ChainEnv { env, kube }
}

/// An Orca Task document (`sirocco.cloud/v1alpha1`) whose one container runs `script` in
/// busybox; `triggers` are the lines of its spec before the template.
fn task(name: &str, namespace: &str, triggers: &str, script: &str) -> String {
    format!(
        "---\napiVersion: sirocco.cloud/v1alpha1\nkind: Task\nmetadata:\n  name: {name}\nspec:\n  namespace: {namespace}\n{triggers}  template:\n    spec:\n      containers:\n      - name: main\n        image: busybox\n        command: [sh, -c, '{script}']\n      restartPolicy: Never\n"
    )
}

/// An Orca Ignitor document.
fn ignitor(name: &str, scheduled: &str, data: &str) -> String {
    format!(
        "---\napiVersion: sirocco.cloud/v1alpha1\nkind: Ignitor\nmetadata:\n  name: {name}\nspec:\n  scheduled: \"{scheduled}\"\n  data: \"{data}\"\n"
    )
}

fn apply_documents(env: &Env, name: &str, text: &str) {
    let file = env.write(name, text);
    let out = env.cli(&["apply", "-f", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn runs(env: &Env) -> Vec<RunStatus> {
    let out = env.cli(&["runs", "-o", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn tasks(env: &Env) -> Vec<serde_json::Value> {
    let out = env.cli(&["tasks", "-o", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn ignitors(env: &Env) -> Vec<serde_json::Value> {
    let out = env.cli(&["ignitors", "-o", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// Waits until some run satisfies `done`, at most `within`, and returns every run then.
fn wait_runs(env: &Env, within: Duration, done: impl Fn(&[RunStatus]) -> bool) -> Vec<RunStatus> {
    let started = Instant::now();
    loop {
        let all = runs(env);
        if done(&all) {
            return all;
        }
        assert!(
            started.elapsed() < within,
            "runs not there after {within:?}: {all:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn ended_chain_of<'a>(all: &'a [RunStatus], ignitor: &str) -> Option<&'a RunStatus> {
    all.iter()
        .find(|r| r.workflow == ignitor && r.state.is_terminal())
}

/// Waits until a chain started by `ignitor` has ended, at most `within`; returns every run and
/// that chain.
fn wait_chain_end(env: &Env, ignitor: &str, within: Duration) -> (Vec<RunStatus>, RunStatus) {
    let all = wait_runs(env, within, |all| ended_chain_of(all, ignitor).is_some());
    let chain = ended_chain_of(&all, ignitor)
        .cloned()
        .expect("waited for it");
    (all, chain)
}

fn node<'a>(run: &'a RunStatus, name: &str) -> &'a baton_schemas::status::NodeStatus {
    run.nodes
        .iter()
        .find(|n| n.name == name)
        .unwrap_or_else(|| panic!("no node {name} in {run:#?}"))
}

#[test]
fn an_ignitor_starts_task1_whose_termination_log_reaches_task2() {
    let ChainEnv { env, kube } = chain_env();
    let ns = &kube.namespace;
    let docs = [
        task(
            "task1",
            ns,
            "  startOnIgnition:\n    - ignitor1\n  startOnSuccess:\n  startOnFailure:\n",
            "printf \"task1 saw %s\" \"$ORCA_DATA\" > /dev/termination-log",
        ),
        task(
            "task2",
            ns,
            "  startOnSuccess:\n    - task1\n",
            "printf \"%s|%s|%s|%s\" \"$ORCA_INITIATOR\" \"$ORCA_DATA\" \"$BATON_INITIATOR\" \"$BATON_DATA\" > /dev/termination-log",
        ),
        ignitor("ignitor1", "NOW", "abc"),
    ]
    .concat();
    apply_documents(&env, "orca.yaml", &docs);
    let (_, chain) = wait_chain_end(&env, "ignitor1", Duration::from_secs(90));
    assert_eq!(chain.state, State::Succeeded, "{chain:#?}");
    assert_eq!(
        node(&chain, "task1").output.as_deref(),
        Some("task1 saw abc")
    );
    assert_eq!(
        node(&chain, "task2").output.as_deref(),
        Some("task1|task1 saw abc|task1|task1 saw abc")
    );
    let tasks = tasks(&env);
    let task1 = tasks.iter().find(|t| t["name"] == "task1").unwrap();
    assert_eq!(task1["state"], "Pending");
    assert_eq!(task1["failuresCount"], 0);
    assert!(task1["lastSuccess"].as_str().unwrap().ends_with('Z'));
    assert!(task1["lastFailure"].is_null());
    // A one-shot fires once: the ignitor shows its fire and nothing next.
    let ignitor1 = ignitors(&env)
        .into_iter()
        .find(|i| i["name"] == "ignitor1")
        .unwrap();
    assert!(ignitor1["lastFire"].is_string() && ignitor1["nextFire"].is_null());
    assert_eq!(runs(&env).len(), 1);
}

/// A task applied with `baton apply` whose document names its namespace in `metadata` (not
/// `spec.namespace`) runs its pod there, as the same document applied with kubectl does, not
/// in the worker's default namespace (where no kubelet of this test would run it).
#[test]
fn a_task_without_spec_namespace_runs_in_its_documents_namespace() {
    let ChainEnv { env, kube } = chain_env();
    let ns = &kube.namespace;
    let docs = format!(
        "apiVersion: sirocco.cloud/v1alpha1\nkind: Task\nmetadata:\n  name: placed\n  namespace: {ns}\nspec:\n  startOnIgnition: [go]\n  template:\n    spec:\n      containers:\n      - name: main\n        image: busybox\n        command: [sh, -c, 'printf here > /dev/termination-log']\n      restartPolicy: Never\n{}",
        ignitor("go", "NOW", "")
    );
    apply_documents(&env, "placed.yaml", &docs);
    let (_, chain) = wait_chain_end(&env, "go", Duration::from_secs(90));
    assert_eq!(chain.state, State::Succeeded, "{chain:#?}");
    assert_eq!(node(&chain, "placed").output.as_deref(), Some("here"));
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), ns);
    let listed = kube
        .block_on(pods.list(&ListParams::default().labels("baton.dev/task=placed")))
        .unwrap();
    assert_eq!(listed.items.len(), 1, "the pod is in {ns}");
}

#[test]
fn failures_take_the_failure_path_and_a_self_retry_loop_stops_at_the_chain_limit() {
    let ChainEnv { env, kube } = chain_env();
    let ns = &kube.namespace;
    // Exit code 2: Orca ignored any exit code but 1; Baton counts every non-zero exit.
    let docs = [
        task(
            "flaky",
            ns,
            "  startOnIgnition: [go]\n  startOnFailure: [flaky]\n  chainLimit: 3\n",
            "printf tried > /dev/termination-log; exit 2",
        ),
        task("on-success", ns, "  startOnSuccess: [flaky]\n", "true"),
        ignitor("go", "NOW", ""),
    ]
    .concat();
    apply_documents(&env, "loop.yaml", &docs);
    let (_, chain) = wait_chain_end(&env, "go", Duration::from_secs(120));
    assert_eq!(chain.state, State::Failed, "{chain:#?}");
    let names: Vec<&str> = chain.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["flaky", "flaky-2", "flaky-3", "flaky-4"]);
    for n in &chain.nodes[..3] {
        assert_eq!(n.state, State::Failed);
        assert!(
            n.error.as_deref().unwrap().contains("exited with code 2"),
            "{n:?}"
        );
    }
    let refused = &chain.nodes[3];
    assert_eq!(refused.state, State::Skipped);
    assert!(refused.error.as_deref().unwrap().contains("chain limit"));
    let tasks = tasks(&env);
    let flaky = tasks.iter().find(|t| t["name"] == "flaky").unwrap();
    assert_eq!(flaky["failuresCount"], 3);
    assert!(flaky["lastSuccess"].is_null());
    let on_success = tasks.iter().find(|t| t["name"] == "on-success").unwrap();
    assert!(
        on_success["lastSuccess"].is_null(),
        "the success path never ran"
    );
}

/// Where Baton now follows Orca: a failed task that left no termination message passes an
/// empty `ORCA_DATA` (not its error), an instance's `ORCA_INITIATOR` names its task (`quiet`,
/// not `quiet-2`), a plugin name is dropped with a warning `baton apply` prints, and a `NOW`
/// ignitor applied again fires again.
#[test]
fn orca_documents_keep_orcas_data_initiator_plugins_and_one_shots() {
    let ChainEnv { env, kube } = chain_env();
    let ns = &kube.namespace;
    let docs = [
        task(
            "quiet",
            ns,
            "  startOnIgnition: [again]\n  startOnFailure: [quiet]\n  chainLimit: 2\n  failureActions:\n    - YOUR-PLUGIN-NAME\n",
            "[ \"$ORCA_INITIATOR\" = again ] && exit 1; printf \"%s|%s|%s\" \"$ORCA_INITIATOR\" \"$ORCA_DATA\" \"$BATON_NODE\" > /dev/termination-log",
        ),
        ignitor("again", "NOW", "first"),
    ]
    .concat();
    let file = env.write("quiet.yaml", &docs);
    let out = env.cli(&["apply", "-f", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: ") && stderr.contains("Task/quiet: spec.failureActions[0]: plugin \"YOUR-PLUGIN-NAME\" is unknown (Baton has no plugins) and is dropped"),
        "{stderr}"
    );
    let (_, chain) = wait_chain_end(&env, "again", Duration::from_secs(120));
    // A chain in which a task failed ends failed, its failure path having run.
    assert_eq!(node(&chain, "quiet").state, State::Failed, "{chain:#?}");
    assert_eq!(
        node(&chain, "quiet-2").state,
        State::Succeeded,
        "{chain:#?}"
    );
    assert_eq!(
        node(&chain, "quiet-2").output.as_deref(),
        Some("quiet||quiet-2")
    );
    // Applied again, unchanged, the one-shot fires again: a second chain.
    let ignitor_only = env.write("again.yaml", &ignitor("again", "NOW", "first"));
    let out = env.cli(&["apply", "-f", ignitor_only.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = wait_runs(&env, Duration::from_secs(120), |all| {
        all.iter()
            .filter(|r| r.workflow == "again" && r.state.is_terminal())
            .count()
            == 2
    });
    for chain in all.iter().filter(|r| r.workflow == "again") {
        let second = node(chain, "quiet-2").output.as_deref();
        assert_eq!(second, Some("quiet||quiet-2"), "{all:#?}");
    }
}

/// Instances of one Task in a chain are nodes `<task>`, `<task>-2`, ...: with a long task name
/// their pod names are cut, and must still differ (the second pod used to collide with the
/// first, "a pod named ... exists and belongs to something else"). Every pod is labelled with
/// the Task it runs and its own node.
#[test]
fn instances_of_a_long_named_task_run_pods_of_their_own() {
    let ChainEnv { env, kube } = chain_env();
    let ns = &kube.namespace;
    let name = "a-task-with-a-name-long-enough-to-be-cut-in-pod-names";
    assert!(name.len() > 50);
    let docs = [
        task(
            name,
            ns,
            &format!("  startOnIgnition: [long]\n  startOnFailure: [{name}]\n  chainLimit: 2\n"),
            "exit 1",
        ),
        ignitor("long", "NOW", ""),
    ]
    .concat();
    apply_documents(&env, "long.yaml", &docs);
    let (_, chain) = wait_chain_end(&env, "long", Duration::from_secs(120));
    let second = format!("{name}-2");
    for node_name in [name, second.as_str()] {
        let n = node(&chain, node_name);
        assert_eq!(n.state, State::Failed, "{chain:#?}");
        assert!(
            n.error.as_deref().unwrap().contains("exited with code 1"),
            "{n:?}"
        );
    }
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), ns);
    let pods = kube
        .block_on(api.list(&ListParams::default().labels(&format!("baton.dev/run={}", chain.run))))
        .unwrap()
        .items;
    let mut seen: Vec<(String, String)> = pods
        .iter()
        .map(|p| {
            let labels = p.metadata.labels.clone().unwrap();
            assert!(p.metadata.name.as_ref().unwrap().len() <= 63);
            (
                labels["baton.dev/node"].clone(),
                labels["baton.dev/task"].clone(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (name.to_owned(), name.to_owned()),
            (second.clone(), name.to_owned())
        ]
    );
}

#[test]
fn a_cron_ignitor_fires_on_the_real_clock() {
    let ChainEnv { env, kube } = chain_env();
    let ns = &kube.namespace;
    // Seven fields: seconds first. Every second second, in a named time zone.
    let docs = [
        task("tick", ns, "  startOnIgnition: [every2s]\n", "true"),
        "---\napiVersion: sirocco.cloud/v1alpha1\nkind: Ignitor\nmetadata: {name: every2s}\nspec: {scheduled: \"*/2 * * * * * *\", timeZone: Europe/Rome}\n".to_owned(),
    ]
    .concat();
    let applied = std::time::SystemTime::now();
    apply_documents(&env, "cron.yaml", &docs);
    let all = wait_runs(&env, Duration::from_secs(60), |all| {
        all.iter()
            .filter(|r| r.workflow == "every2s" && r.state == State::Succeeded)
            .count()
            >= 3
    });
    let elapsed = applied.elapsed().unwrap();
    // A fire's run id names its scheduled time (`fire_run_id`): read every chain's fire time
    // back from its id, among the whole seconds of the test.
    let millis = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
    };
    let first_second = millis(applied) / 1000 * 1000;
    let seconds: Vec<u64> = (0..=elapsed.as_secs() + 2)
        .map(|s| first_second + s * 1000)
        .collect();
    let mut fires: Vec<u64> = all
        .iter()
        .filter(|r| r.workflow == "every2s")
        .map(|r| {
            *seconds
                .iter()
                .find(|t| fire_run_id("every2s", Timestamp(**t)).as_str() == r.run)
                .unwrap_or_else(|| panic!("run {} is no fire of every2s during the test", r.run))
        })
        .collect();
    // One fire cannot make two chains: the run id is the fire's.
    fires.sort();
    for t in &fires {
        assert_eq!(t % 2000, 0, "a fire off the schedule: {fires:?}");
    }
    let at_most = elapsed.as_millis() as usize / 2000 + 1;
    assert!(
        (3..=at_most).contains(&fires.len()),
        "{} fires in {elapsed:?}: {fires:?}",
        fires.len()
    );
    let every2s = ignitors(&env)
        .into_iter()
        .find(|i| i["name"] == "every2s")
        .unwrap();
    assert!(every2s["lastFire"].is_string() && every2s["nextFire"].is_string());
}

/// Returns a time `seconds` from now, and its RFC 3339 text. Far enough ahead that starting a
/// CLI process on a busy machine does not make it a time in the past.
fn time_in(seconds: u64) -> (std::time::SystemTime, String) {
    let at = std::time::SystemTime::now() + Duration::from_secs(seconds);
    (at, humantime::format_rfc3339_seconds(at).to_string())
}

#[test]
fn a_planner_killed_between_a_schedule_and_its_fire_fires_exactly_once() {
    let mut env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).unwrap();
    let kube = KubeEnv::for_env(&mut env).unwrap();
    let mut planner = env.start_planner().unwrap();
    let worker = env.start_worker("worker", "pod", &[]).unwrap();
    env.keep(worker);
    let effects = env.dir.path().join("effects");
    let (at, text) = time_in(15);
    let docs = [
        task(
            "once",
            &kube.namespace,
            "  startOnIgnition: [later]\n",
            &format!("echo ran >> {}", effects.display()),
        ),
        ignitor("later", &text, "x"),
    ]
    .concat();
    apply_documents(&env, "once.yaml", &docs);
    planner.kill9();
    let due = at.duration_since(std::time::SystemTime::now());
    std::thread::sleep(due.unwrap_or_default() + Duration::from_secs(2));
    // The fire was due while no planner ran: the restarted one fires it, once.
    let mut planner = restart_planner(&mut env, planner);
    let (all, _) = wait_chain_end(&env, "later", Duration::from_secs(60));
    assert_eq!(all.len(), 1, "{all:#?}");
    // Killed right after the fire and started again, it does not fire again.
    planner.kill9();
    let planner = restart_planner(&mut env, planner);
    env.keep(planner);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(runs(&env).len(), 1);
    if kube.local_pods {
        assert_eq!(lines(&effects), ["ran"], "the task ran once");
    }
}

fn restart_planner(env: &mut Env, old: Proc) -> Proc {
    drop(old);
    env.start_planner().unwrap()
}

#[test]
fn a_standby_planner_takes_over_and_fires_once() {
    let mut env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).unwrap();
    let kube = KubeEnv::for_env(&mut env).unwrap();
    let mut active = env.start_planner().unwrap();
    let worker = env.start_worker("worker", "pod", &[]).unwrap();
    env.keep(worker);
    // The standby shares the store (its lock is the lease) and the API address, which it
    // binds only once it is active.
    let standby = env.start_standby_planner().unwrap();
    env.keep(standby);
    let effects = env.dir.path().join("effects");
    let docs = [
        task(
            "once",
            &kube.namespace,
            "  startOnIgnition: [soon]\n",
            &format!("echo ran >> {}", effects.display()),
        ),
        ignitor("soon", &time_in(12).1, "x"),
    ]
    .concat();
    apply_documents(&env, "once.yaml", &docs);
    active.kill9();
    let (all, _) = wait_chain_end(&env, "soon", Duration::from_secs(60));
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].state, State::Succeeded);
    if kube.local_pods {
        assert_eq!(lines(&effects), ["ran"], "the task ran once");
    }
}

#[test]
fn orcas_readme_example_runs_as_orca_meant_it() {
    let ChainEnv { env, kube: _kube } = chain_env();
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/orca/task1-task2-ignitor1.yaml"
    );
    let out = env.cli(&["apply", "-f", example]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, chain) = wait_chain_end(&env, "ignitor1", Duration::from_secs(90));
    assert_eq!(chain.state, State::Succeeded, "{chain:#?}");
    let greeting = "hello from task1 (started by ignitor1 with workflow ABC)";
    assert_eq!(node(&chain, "task1").output.as_deref(), Some(greeting));
    assert_eq!(node(&chain, "task2").output.as_deref(), Some(greeting));
}

#[test]
fn a_planner_killed_again_and_again_while_a_chain_runs_runs_each_task_once() {
    let mut env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).unwrap();
    let kube = KubeEnv::for_env(&mut env).unwrap();
    let mut planner = env.start_planner().unwrap();
    let worker = env.start_worker("worker", "pod", &[]).unwrap();
    env.keep(worker);
    let effects = env.dir.path().join("effects");
    let e = effects.display();
    let steps = 10;
    let mut docs: Vec<String> = (1..=steps)
        .map(|k| {
            let on = match k {
                1 => "  startOnIgnition: [go]\n".to_owned(),
                k => format!("  startOnSuccess: [step{}]\n", k - 1),
            };
            task(
                &format!("step{k}"),
                &kube.namespace,
                &on,
                &format!("sleep 0.2; echo step{k} >> {e}"),
            )
        })
        .collect();
    docs.push(ignitor("go", "NOW", ""));
    apply_documents(&env, "steps.yaml", &docs.concat());
    // SIGKILL the planner every 400 ms while the chain runs, and start it again: each time it
    // loses what it had not checkpointed and applies the streams again.
    let started = Instant::now();
    let mut kills = 0;
    while ended_chain_of(&runs(&env), "go").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the chain did not end: {:#?}",
            runs(&env)
        );
        std::thread::sleep(Duration::from_millis(400));
        if kills < 10 {
            planner.kill9();
            planner = restart_planner(&mut env, planner);
            kills += 1;
        }
    }
    env.keep(planner);
    let (all, chain) = wait_chain_end(&env, "go", Duration::from_secs(10));
    assert_eq!(all.len(), 1, "one fire, one chain: {all:#?}");
    assert_eq!(chain.state, State::Succeeded, "{chain:#?}");
    let names: Vec<&str> = chain.nodes.iter().map(|n| n.name.as_str()).collect();
    let expected: Vec<String> = (1..=steps).map(|k| format!("step{k}")).collect();
    assert_eq!(names, expected);
    assert!(chain.nodes.iter().all(|n| n.attempts == 1), "{chain:#?}");
    if kube.local_pods {
        assert_eq!(lines(&effects), expected, "each task instance ran once");
    }
    eprintln!("the planner was killed {kills} times while the chain ran");
    assert!(
        kills >= 2,
        "the planner was killed while the chain ran ({kills} times)"
    );
}

#[test]
fn a_replaced_instance_still_queued_never_runs() {
    let mut env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).unwrap();
    let kube = KubeEnv::for_env(&mut env).unwrap();
    let planner = env.start_planner().unwrap();
    env.keep(planner);
    // One pod at a time: `busy` waits in the queue behind `block`, dispatched first.
    let worker = env
        .start_worker("worker", "pod", &["--concurrency", "1"])
        .unwrap();
    let ns = &kube.namespace;
    let effects = env.dir.path().join("effects");
    let e = effects.display();
    // `block` keeps the only slot until the replacement is done (with the kubelet actor, whose
    // pods are local processes; a real cluster's pod sleeps 5 s).
    let gate = env.dir.path().join("gate");
    let hold = if kube.local_pods {
        wait_for_gate(&gate)
    } else {
        "sleep 5".to_owned()
    };
    let docs = [
        task(
            "block",
            ns,
            "  startOnIgnition: [first]
",
            &format!("echo block >> {e}; {hold}"),
        ),
        task(
            "busy",
            ns,
            "  startOnIgnition: [first, second]
  concurrencyPolicy: Replace
",
            &format!("echo busy $BATON_RUN >> {e}"),
        ),
        ignitor("first", "NOW", ""),
    ]
    .concat();
    apply_documents(&env, "replace.yaml", &docs);
    let started = Instant::now();
    while lines(&effects).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "block never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // While `block` runs, a second fire starts `busy` again: the queued instance is replaced.
    apply_documents(&env, "second.yaml", &ignitor("second", "NOW", ""));
    wait_runs(&env, Duration::from_secs(60), |all| {
        all.iter().any(|r| {
            r.workflow == "first"
                && r.nodes
                    .iter()
                    .any(|n| n.name == "busy" && n.state == State::Cancelled)
        })
    });
    open_gate(&gate);
    let (all, _) = wait_chain_end(&env, "second", Duration::from_secs(90));
    let first = all.iter().find(|r| r.workflow == "first").unwrap();
    let second = all.iter().find(|r| r.workflow == "second").unwrap();
    assert_eq!(node(first, "busy").state, State::Cancelled, "{first:#?}");
    assert_eq!(node(second, "busy").state, State::Succeeded, "{second:#?}");
    worker
        .wait_log(
            "job of a cancelled run or node dropped",
            Duration::from_secs(20),
        )
        .unwrap_or_else(|e| panic!("the replaced job was never taken: {e}"));
    if kube.local_pods {
        assert_eq!(
            lines(&effects),
            ["block".to_owned(), format!("busy {}", second.run)],
            "the replaced instance never ran"
        );
    }
}

#[test]
fn typed_actions_send_a_webhook_on_success_and_publish_on_failure() {
    let ChainEnv { env, kube } = chain_env();
    let ns = &kube.namespace;
    let (port, request) = baton_tests::one_http_request();
    let subject = format!("{}.alerts", env.prefix);
    let nats = async_nats::ConnectOptions::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut alerts = runtime.block_on(async {
        let client = nats.connect(env.nats.url()).await.unwrap();
        let sub = client.subscribe(subject.clone()).await.unwrap();
        client.flush().await.unwrap();
        (client, sub)
    });
    let docs = [
        task(
            "good",
            ns,
            &format!(
                "  startOnIgnition: [go]\n  successActions:\n    - webhook: {{url: \"http://127.0.0.1:{port}/hook\"}}\n"
            ),
            "printf fine > /dev/termination-log",
        ),
        task(
            "bad",
            ns,
            &format!(
                "  startOnIgnition: [go]\n  failureActions:\n    - publish: {{subject: {subject}}}\n"
            ),
            "printf broken > /dev/termination-log; exit 1",
        ),
        ignitor("go", "NOW", ""),
    ]
    .concat();
    apply_documents(&env, "actions.yaml", &docs);
    let (_, chain) = wait_chain_end(&env, "go", Duration::from_secs(90));
    assert_eq!(chain.state, State::Failed, "{chain:#?}");
    assert_eq!(node(&chain, "good-on-success-1").state, State::Succeeded);
    assert_eq!(node(&chain, "bad-on-failure-1").state, State::Succeeded);
    let hook: serde_json::Value = serde_json::from_str(&request.join().unwrap().body).unwrap();
    assert_eq!(
        (&hook["id"], &hook["message"], &hook["data"]),
        (&"good".into(), &"SUCCESS".into(), &"fine".into())
    );
    let published = runtime.block_on(async {
        use futures::StreamExt;
        tokio::time::timeout(Duration::from_secs(10), alerts.1.next())
            .await
            .unwrap()
            .unwrap()
    });
    let alert: serde_json::Value = serde_json::from_slice(&published.payload).unwrap();
    assert_eq!(
        (&alert["id"], &alert["message"], &alert["data"]),
        (&"bad".into(), &"FAILURE".into(), &"broken".into())
    );
    drop(alerts.0);
}
