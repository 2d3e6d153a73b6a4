//! Who may do what on the bus: a real nats-server with the permission file `baton
//! nats-permissions` generates, every refusal a role meets and the run its own credentials
//! allow, and signed jobs: a job the planner did not sign is set aside, never run.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton_bus::permissions::Role;
use baton_bus::{Bus, BusConfig, BusErrorKind, NatsCredentials, inputs_digest};
use baton_schemas::status::State;
use baton_schemas::wire::{ExecJob, Job, JobInputs, Work};
use baton_schemas::{Attempt, NodeKind, NodeName, RunId, WorkflowName};
use baton_tests::bus_auth::{BusUsers, env_with_roles};
use baton_tests::{Env, assert_fails, wait_for_port, workflow};

const PROGRAM: &str = env!("CARGO_BIN_EXE_baton-under-test");

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A raw NATS client that keeps what the server refused it.
struct Client {
    nats: async_nats::Client,
    refusals: Arc<Mutex<Vec<String>>>,
}

impl Client {
    async fn connect(env: &Env, users: &BusUsers, role: Role) -> Client {
        let refusals = Arc::new(Mutex::new(Vec::new()));
        let seen = refusals.clone();
        let password = std::fs::read_to_string(users.password_file(role)).unwrap();
        let nats = async_nats::ConnectOptions::with_user_and_password(
            role.user(),
            password.trim().to_owned(),
        )
        .custom_inbox_prefix(role.inbox_prefix())
        .event_callback(move |event| {
            let seen = seen.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    seen.lock().unwrap().push(e.to_string());
                }
            }
        })
        .connect(env.nats.url())
        .await
        .unwrap();
        Client { nats, refusals }
    }

    /// Publishes on `subject` and waits (bounded) for the server to refuse it.
    async fn assert_publish_refused(&self, subject: &str) {
        self.nats
            .publish(subject.to_owned(), "{}".into())
            .await
            .unwrap();
        self.nats.flush().await.unwrap();
        let wanted = format!("Permissions Violation for Publish to \"{subject}\"");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self
                .refusals
                .lock()
                .unwrap()
                .iter()
                .any(|r| r.contains(&wanted))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no refusal of {subject}: {:?}",
                self.refusals.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn config(env: &Env, credentials: NatsCredentials) -> BusConfig {
    BusConfig {
        prefix: env.prefix.clone(),
        credentials,
        ..BusConfig::default()
    }
}

/// Starts the planner as the planner role and waits for its API.
fn start_planner(env: &mut Env, users: &BusUsers) -> String {
    let mut command = env.planner_command();
    users.connect_as(&mut command, Role::Planner);
    let planner = env.spawn("planner", command).unwrap();
    wait_for_port(env.api_port, Duration::from_secs(30)).unwrap();
    let cmdline = planner.cmdline();
    env.keep(planner);
    cmdline
}

/// Starts a worker of `kind` as that kind's role.
fn start_worker(env: &mut Env, users: &BusUsers, kind: NodeKind) -> baton_tests::Proc {
    let mut command = env.baton();
    command.args(["worker", "--kinds", &kind.to_string()]);
    users.connect_as(&mut command, Role::Worker(kind));
    env.spawn(&format!("worker-{kind}"), command).unwrap()
}

#[test]
fn anonymous_clients_and_wrong_passwords_are_refused_at_connect() {
    let (env, users) = env_with_roles(PROGRAM).unwrap();
    runtime().block_on(async {
        let anonymous = Bus::connect(
            &env.nats.url(),
            config(&env, NatsCredentials::default()),
            Duration::from_secs(20),
        )
        .await
        .unwrap_err();
        assert_eq!(anonymous.kind(), BusErrorKind::Refused, "{anonymous}");
        assert!(
            anonymous.to_string().contains("no credentials"),
            "{anonymous}"
        );
        let right = Bus::connect(
            &env.nats.url(),
            config(&env, users.credentials(Role::Observer)),
            Duration::from_secs(20),
        )
        .await;
        assert!(right.is_ok(), "{:?}", right.err());
    });
    // The processes say so and exit 2: credentials are the user's input.
    let wrong = env.write("wrong-password", "not-the-password\n");
    let out = env
        .baton()
        .args(["worker", "--kinds", "noop"])
        .env("BATON_NATS_USER", "worker-noop")
        .env("BATON_NATS_PASSWORD_FILE", &wrong)
        .output()
        .unwrap();
    let said = assert_fails(&out, 2, "refused user worker-noop");
    assert!(!said.contains("not-the-password"), "{said}");
    let out = env
        .baton()
        .args(["worker", "--kinds", "noop"])
        .output()
        .unwrap();
    assert_fails(&out, 2, "refused no credentials");
}

#[test]
fn each_role_is_refused_what_it_does_not_need() {
    let (mut env, users) = env_with_roles(PROGRAM).unwrap();
    start_planner(&mut env, &users);
    // A worker of each kind the test uses, so their consumers exist.
    let noop = start_worker(&mut env, &users, NodeKind::Noop);
    noop.wait_log("worker running", Duration::from_secs(30))
        .unwrap();
    env.keep(noop);
    let p = env.prefix.clone();
    let s = p.to_ascii_uppercase();
    runtime().block_on(async {
        let worker = Client::connect(&env, &users, Role::Worker(NodeKind::Noop)).await;
        // It cannot publish a job, of its kind or another, or a trigger or a cancel.
        for subject in [
            format!("{p}.jobs.noop"),
            format!("{p}.jobs.exec"),
            format!("{p}.triggers.w"),
            format!("{p}.cancels.r1"),
            // Nor write the planner's state, nor take its lease.
            format!("{p}.state"),
            format!("$KV.{s}_LEADER.planner"),
        ] {
            worker.assert_publish_refused(&subject).await;
        }
        // It cannot read another kind's jobs: not through that kind's consumer, not with a
        // consumer of its own over them, not by reading the stream's messages.
        for subject in [
            format!("$JS.API.CONSUMER.MSG.NEXT.{s}_JOBS.worker-exec"),
            format!("$JS.API.CONSUMER.CREATE.{s}_JOBS.worker-exec.{p}.jobs.exec"),
            format!("$JS.API.CONSUMER.CREATE.{s}_JOBS.worker-noop.{p}.jobs.exec"),
            format!("$JS.API.CONSUMER.CREATE.{s}_JOBS.spy"),
            format!("$JS.API.STREAM.MSG.GET.{s}_JOBS"),
            format!("$JS.API.DIRECT.GET.{s}_JOBS"),
            format!("$JS.API.STREAM.UPDATE.{s}_JOBS"),
            format!("$JS.API.STREAM.DELETE.{s}_EVENTS"),
            // Nor make a consumer of the inputs store (its delivery subject its own choice):
            // it reads inputs one message at a time.
            format!("$JS.API.CONSUMER.CREATE.OBJ_{s}_INPUTS"),
            format!("$JS.API.CONSUMER.CREATE.OBJ_{s}_INPUTS.spy.$O.{s}_INPUTS.C.x"),
        ] {
            worker.assert_publish_refused(&subject).await;
        }
        // Nor read the planner's replies.
        let spy = worker.nats.subscribe("_INBOX_planner.>").await.unwrap();
        drop(spy);
        worker.nats.flush().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !worker
            .refusals
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.contains("Permissions Violation for Subscription to \"_INBOX_planner.>\""))
        {
            assert!(
                Instant::now() < deadline,
                "the planner's replies were not refused"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let trigger = Client::connect(&env, &users, Role::Trigger).await;
        for subject in [
            format!("{p}.jobs.noop"),
            format!("{p}.events.r1"),
            format!("{p}.cancels.r1"),
            format!("{p}.triggers.ignitors.nightly"),
            format!("$JS.API.STREAM.PURGE.{s}_TRIGGERS"),
        ] {
            trigger.assert_publish_refused(&subject).await;
        }
        // What it is for: a trigger, stored.
        let js = async_nats::jetstream::new(trigger.nats.clone());
        let ack = js
            .publish(format!("{p}.triggers.nothing-registered"), "{}".into())
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(ack.stream, format!("{s}_TRIGGERS"));

        let observer = Client::connect(&env, &users, Role::Observer).await;
        let js = async_nats::jetstream::new(observer.nats.clone());
        let mut jobs = js.get_stream(format!("{s}_JOBS")).await.unwrap();
        assert_eq!(jobs.info().await.unwrap().config.name, format!("{s}_JOBS"));
        for subject in [
            format!("{p}.triggers.w"),
            format!("{p}.events.r1"),
            format!("$JS.API.STREAM.MSG.GET.{s}_JOBS"),
            format!("$JS.API.CONSUMER.MSG.NEXT.{s}_JOBS.worker-noop"),
        ] {
            observer.assert_publish_refused(&subject).await;
        }
    });
}

#[test]
fn a_workflow_runs_with_each_role_on_its_own_credentials_and_jobs_signed() {
    let (mut env, users) = env_with_roles(PROGRAM).unwrap();
    let key = env.write("job-key", "a-job-signing-key-of-at-least-32-bytes\n");
    env.extra_env.push((
        "BATON_JOB_SIGNING_KEY_FILE".into(),
        key.display().to_string(),
    ));
    let planner_cmdline = start_planner(&mut env, &users);
    let workers: Vec<_> = [NodeKind::Noop, NodeKind::Exec]
        .into_iter()
        .map(|kind| start_worker(&mut env, &users, kind))
        .collect();
    let nodes = [
        "{name: a, kind: noop}".to_owned(),
        r#"{name: c, kind: exec, command: [sh, -c, 'wc -c < "$BATON_DATA_FILE" | tr -d " " > "$BATON_OUTPUT"']}"#.to_owned(),
        "{name: b, kind: noop, needs: [a, c]}".to_owned(),
    ];
    let file = env.write("w.yaml", &workflow("signed", &nodes));
    let run = env.apply(&file).unwrap();
    let status = env.wait_end(&run, Duration::from_secs(60)).unwrap();
    assert_eq!(status.state, State::Succeeded, "{status:?}");

    // A trigger publisher starts a run of it through the bus, with data large enough that
    // its first jobs carry it by reference: the workers read it from the inputs store.
    let p = env.prefix.clone();
    runtime().block_on(async {
        let trigger = Client::connect(&env, &users, Role::Trigger).await;
        async_nats::jetstream::new(trigger.nats.clone())
            .publish(
                format!("{p}.triggers.signed"),
                "x".repeat(300 * 1024).into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = env.cli(&["runs", "-o", "json"]);
        let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let triggered = runs.as_array().into_iter().flatten().find(|r| {
            r["state"] == "succeeded"
                && r["nodes"][1]["output"].as_str().map(str::trim) == Some("307200")
        });
        if triggered.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the triggered run did not succeed: {runs}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // No secret in any log, or in the processes' arguments, which every user of the machine
    // can read.
    drop_secrets_check(&env, &users, "a-job-signing-key-of-at-least-32-bytes");
    // Read now: the workers have run jobs, so they are long past their exec.
    let mut cmdlines = vec![planner_cmdline];
    cmdlines.extend(workers.iter().map(|w| w.cmdline()));
    assert!(
        cmdlines
            .iter()
            .all(|c| c.contains(" planner") || c.contains(" worker")),
        "{cmdlines:?}"
    );
    for secret in users.secrets() {
        assert!(
            cmdlines.iter().all(|c| !c.contains(secret.as_str())),
            "{cmdlines:?}"
        );
    }
}

/// Asserts that no log of the env holds a password, the signing key or an API token.
fn drop_secrets_check(env: &Env, users: &BusUsers, key: &str) {
    let mut secrets: Vec<&str> = users.secrets().iter().map(String::as_str).collect();
    secrets.extend([
        key,
        env.tokens.admin.as_str(),
        env.tokens.operator.as_str(),
        env.tokens.viewer.as_str(),
    ]);
    for entry in std::fs::read_dir(env.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path).unwrap();
            for secret in &secrets {
                assert!(!text.contains(secret), "{} holds a secret", path.display());
            }
        }
    }
}

/// A job the planner did not sign (one forged by a client that may publish jobs, or a real
/// one altered) is set aside and reported; nothing of it runs, and the worker goes on.
#[test]
fn a_forged_or_altered_job_is_set_aside_and_never_runs() {
    let (mut env, users) = env_with_roles(PROGRAM).unwrap();
    let key = env.write("job-key", "the-planner-and-workers-shared-key\n");
    env.extra_env.push((
        "BATON_JOB_SIGNING_KEY_FILE".into(),
        key.display().to_string(),
    ));
    start_planner(&mut env, &users);
    let worker = start_worker(&mut env, &users, NodeKind::Exec);
    worker
        .wait_log("worker running", Duration::from_secs(30))
        .unwrap();
    let touched = env.dir.path().join("forged-ran");
    let job = |node: &str| {
        serde_json::json!({
            "v": baton_schemas::wire::SCHEMA_VERSION, "run": "r1", "workflow": "w",
            "node": node, "attempt": 1, "kind": "exec",
            "exec": {"command": ["touch", touched.display().to_string()]},
            "inputs": {"initiator": "", "data": ""},
        })
        .to_string()
    };
    let p = env.prefix.clone();
    runtime().block_on(async {
        // The planner's credentials may publish jobs (a stolen planner password, say), but
        // not sign them: unsigned, and signed with another key.
        let other_key = env.write("other-key", "not-the-key-the-workers-were-given\n");
        for (node, key) in [("unsigned", None), ("otherkey", Some(other_key))] {
            let bus = Bus::connect(
                &env.nats.url(),
                BusConfig {
                    job_signing_key_file: key,
                    ..config(&env, users.credentials(Role::Planner))
                },
                Duration::from_secs(20),
            )
            .await
            .unwrap();
            let body = job(node);
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("r1.{node}.1").as_str());
            if let Some(signer) = bus.signer() {
                let sig = signer.sign(
                    &format!("{p}.jobs.exec"),
                    &format!("r1.{node}.1"),
                    body.as_bytes(),
                );
                headers.insert(baton_bus::SIGNATURE_HEADER, sig.as_str());
            }
            bus.jetstream()
                .publish_with_headers(format!("{p}.jobs.exec"), headers, body.into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
        // A signed job altered on the way: the signature is of another body.
        let bus = Bus::connect(
            &env.nats.url(),
            BusConfig {
                job_signing_key_file: Some(key.clone()),
                ..config(&env, users.credentials(Role::Planner))
            },
            Duration::from_secs(20),
        )
        .await
        .unwrap();
        let signed_for = job("altered").replace("touch", "true");
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", "r1.altered.1");
        let sig = bus.signer().unwrap().sign(
            &format!("{p}.jobs.exec"),
            "r1.altered.1",
            signed_for.as_bytes(),
        );
        headers.insert(baton_bus::SIGNATURE_HEADER, sig.as_str());
        bus.jetstream()
            .publish_with_headers(format!("{p}.jobs.exec"), headers, job("altered").into())
            .await
            .unwrap()
            .await
            .unwrap();
        // Inputs kept apart in the object store: the signed job names their digest, so an
        // object written over them is refused, and so is a signed job that names none.
        let inputs = JobInputs {
            initiator: "up".into(),
            data: "the planner's data".into(),
            inputs: None,
        };
        let swapped = JobInputs {
            data: "someone else's data".into(),
            ..inputs.clone()
        };
        for (node, digest) in [
            (
                "swapped",
                Some(inputs_digest(&serde_json::to_vec(&inputs).unwrap())),
            ),
            ("nodigest", None),
        ] {
            let exec = ExecJob {
                command: vec!["touch".into(), touched.display().to_string()],
                env: Default::default(),
                working_dir: None,
            };
            let mut job = Job::new(
                RunId::new("r1"),
                WorkflowName::new("w"),
                NodeName::new(node),
                Attempt(1),
                Work::Exec(exec),
            );
            job.inputs_ref = Some(job.msg_id());
            job.inputs_digest = digest;
            let written = serde_json::to_vec(&swapped).unwrap().into();
            bus.put_inputs(&job.msg_id(), &written).await.unwrap();
            bus.publish_one(&bus.job_message(&job)).await.unwrap();
        }
    });
    for said in [
        "the job is not signed",
        "does not match it",
        "(r1.swapped.1) are not the planner's: their digest is sha256:",
        "(r1.nodigest.1) are not the planner's: the job names no digest",
    ] {
        worker.wait_log(said, Duration::from_secs(30)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while worker.log().matches("set aside").count() < 3 {
        assert!(Instant::now() < deadline, "{}", worker.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!touched.exists(), "a forged job ran");
    env.keep(worker);
    // Real, signed work still runs.
    let nodes = ["{name: a, kind: exec, command: ['true']}".to_owned()];
    let run = env
        .apply(&env.write("w.yaml", &workflow("real", &nodes)))
        .unwrap();
    let status = env.wait_end(&run, Duration::from_secs(60)).unwrap();
    assert_eq!(status.state, State::Succeeded, "{status:?}");
    assert!(!touched.exists(), "a forged job ran");
}
