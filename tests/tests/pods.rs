//! `pod` nodes end to end: the planner and workers as processes, the worker's pods going
//! through the real `kube` client to the tests' control plane, run by the kubelet actor (or
//! to the cluster of `BATON_TEST_KUBECONFIG`).

use std::path::Path;
use std::time::{Duration, Instant};

use baton_schemas::status::{RunStatus, State};
use baton_tests::kube::KubeEnv;
use baton_tests::{Env, Proc, lines, skip, workflow};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

struct PodEnv {
    env: Env,
    kube: KubeEnv,
}

fn pod_env(worker_args: &[&str]) -> PodEnv {
    let mut env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).unwrap();
    let kube = KubeEnv::for_env(&mut env).unwrap();
    let planner = env.start_planner().unwrap();
    env.keep(planner);
    let worker = env.start_worker("worker", "pod,noop", worker_args).unwrap();
    env.keep(worker);
    PodEnv { env, kube }
}

/// A pod node whose only container runs `script` in busybox.
fn pod_node(name: &str, namespace: &str, extra: &str, script: &str) -> String {
    format!(
        "{{name: {name}, kind: pod, namespace: {namespace}{extra}, template: {{spec: {{containers: [{{name: main, image: busybox, command: [sh, -c, '{script}']}}]}}}}}}"
    )
}

fn node<'a>(status: &'a RunStatus, name: &str) -> &'a baton_schemas::status::NodeStatus {
    status.nodes.iter().find(|n| n.name == name).unwrap()
}

fn pods_of(kube: &KubeEnv, run: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), &kube.namespace);
    kube.block_on(api.list(&ListParams::default().labels(&format!("baton.dev/run={run}"))))
        .unwrap()
        .items
}

#[test]
fn pods_pass_their_termination_message_to_the_next_pod() {
    let PodEnv { env, kube } = pod_env(&[]);
    let ns = &kube.namespace;
    let nodes = [
        pod_node(
            "first",
            ns,
            "",
            "echo working; printf hello > /dev/termination-log",
        ),
        pod_node(
            "second",
            ns,
            ", needs: [first]",
            "printf \"%s:%s|%s:%s|%s\" \"$ORCA_INITIATOR\" \"$ORCA_DATA\" \"$BATON_INITIATOR\" \"$BATON_DATA\" \"$BATON_NODE\" > /dev/termination-log",
        ),
    ];
    let wf = env.write("pods.yaml", &workflow("pods", &nodes));
    let run = env.apply(&wf).unwrap();
    let status = env.wait_end(&run, Duration::from_secs(60)).unwrap();
    assert_eq!(status.state, State::Succeeded, "{status:?}");
    assert_eq!(node(&status, "first").output.as_deref(), Some("hello"));
    assert_eq!(
        node(&status, "second").output.as_deref(),
        Some("first:hello|first:hello|second")
    );
    let pods = pods_of(&kube, &run);
    let mut names: Vec<String> = pods
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [format!("first-{run}-1"), format!("second-{run}-1")]);
    for pod in &pods {
        let labels = pod.metadata.labels.clone().unwrap();
        let name = pod.metadata.name.clone().unwrap();
        let node = name.split('-').next().unwrap();
        assert_eq!(labels["app.kubernetes.io/managed-by"], "baton");
        assert_eq!(labels["baton.dev/run"], run);
        assert_eq!(labels["baton.dev/node"], node, "{name}");
        assert_eq!(labels["baton.dev/attempt"], "1");
        assert!(
            !labels.contains_key("baton.dev/task"),
            "a Workflow's pod node runs no Task: {labels:?}"
        );
    }
}

#[test]
fn pod_failures_say_why() {
    let PodEnv { env, kube } = pod_env(&["--image-pull-deadline", "1s"]);
    let ns = &kube.namespace;
    let nodes = [
        pod_node("exits", ns, "", "echo about to fail; exit 3"),
        format!(
            "{{name: nopull, kind: pod, namespace: {ns}, template: {{spec: {{containers: [{{name: main, image: registry.invalid/does-not-exist:1, command: [\"true\"]}}]}}}}}}"
        ),
        format!(
            "{{name: deadline, kind: pod, namespace: {ns}, template: {{spec: {{activeDeadlineSeconds: 1, containers: [{{name: main, image: busybox, command: [sleep, \"30\"]}}]}}}}}}"
        ),
    ];
    let wf = env.write("fail.yaml", &workflow_continue("fail", &nodes));
    let run = env.apply(&wf).unwrap();
    let status = env.wait_end(&run, Duration::from_secs(90)).unwrap();
    assert_eq!(status.state, State::Failed);
    let error = |n: &str| node(&status, n).error.clone().unwrap_or_default();
    if kube.logs {
        assert!(
            error("exits")
                .starts_with("container main exited with code 3; last output:\nabout to fail"),
            "{}",
            error("exits")
        );
    } else {
        assert!(
            error("exits").starts_with("container main exited with code 3"),
            "{}",
            error("exits")
        );
        skip(
            "pod_failures_say_why: the last output in the error",
            "relaxed: the kubelet actor runs this cluster's pods on no node, so the API server has no logs of them",
        );
    }
    assert!(
        error("nopull").contains("could not pull its image within 1s"),
        "{}",
        error("nopull")
    );
    assert!(
        error("deadline").starts_with("deadline exceeded"),
        "{}",
        error("deadline")
    );
    if !kube.local_pods {
        skip(
            "pod_failures_say_why: OOM",
            "the OOM annotation is the kubelet actor's",
        );
    } else {
        let oom = format!(
            "{{name: oom, kind: pod, namespace: {ns}, template: {{metadata: {{annotations: {{kubelet.baton.dev/oom-kill: main}}}}, spec: {{containers: [{{name: main, image: busybox, command: [sleep, \"30\"]}}]}}}}}}"
        );
        let wf = env.write("oom.yaml", &workflow("oom", &[oom]));
        let run = env.apply(&wf).unwrap();
        let status = env.wait_end(&run, Duration::from_secs(30)).unwrap();
        let error = node(&status, "oom").error.clone().unwrap();
        assert!(
            error.starts_with("container main was OOMKilled (exit code 137)"),
            "{error}"
        );
    }
}

fn workflow_continue(name: &str, nodes: &[String]) -> String {
    workflow(name, nodes).replace(
        "spec:\n  nodes:",
        "spec:\n  failurePolicy: continue\n  nodes:",
    )
}

#[test]
fn a_deleted_pod_fails_its_node_and_a_cancel_deletes_the_pod() {
    let PodEnv { env, kube } = pod_env(&[]);
    let ns = &kube.namespace;
    let wf = env.write(
        "long.yaml",
        &workflow("long", &[pod_node("long", ns, "", "sleep 30")]),
    );
    let run = env.apply(&wf).unwrap();
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), ns);
    let name = format!("long-{run}-1");
    env.wait_for(&run, Duration::from_secs(30), |_| {
        kube.block_on(api.get_opt(&name)).unwrap().is_some()
    })
    .unwrap();
    kube.block_on(api.delete(&name, &DeleteParams::default()))
        .unwrap();
    let status = env.wait_end(&run, Duration::from_secs(30)).unwrap();
    let error = node(&status, "long").error.clone().unwrap();
    assert!(
        error.contains("was deleted before it finished") || error.contains("is being deleted"),
        "{error}"
    );

    let run = env.apply(&wf).unwrap();
    let name = format!("long-{run}-1");
    env.wait_for(&run, Duration::from_secs(30), |_| {
        kube.block_on(api.get_opt(&name)).unwrap().is_some()
    })
    .unwrap();
    assert!(env.cli(&["cancel", &run]).status.success());
    env.wait_for(&run, Duration::from_secs(30), |_| {
        kube.block_on(api.get_opt(&name)).unwrap().is_none()
    })
    .unwrap();
}

#[test]
fn a_redelivered_pod_job_adopts_the_pod_instead_of_creating_another() {
    let mut env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).unwrap();
    let kube = KubeEnv::for_env(&mut env).unwrap();
    let planner = env.start_planner().unwrap();
    env.keep(planner);
    let mut first = env.start_worker("worker-1", "pod", &[]).unwrap();
    let file = env.dir.path().join("effects");
    let script = format!(
        "echo ran >> {}; sleep 3; printf adopted > /dev/termination-log",
        file.display()
    );
    let wf = env.write(
        "adopt.yaml",
        &workflow("adopt", &[pod_node("task", &kube.namespace, "", &script)]),
    );
    let run = env.apply(&wf).unwrap();
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let name = format!("task-{run}-1");
    env.wait_for(&run, Duration::from_secs(30), |_| {
        kube.block_on(api.get_opt(&name)).unwrap().is_some()
    })
    .unwrap();
    first.kill9();
    let second = env.start_worker("worker-2", "pod", &[]).unwrap();
    env.keep(second);
    let status = env.wait_end(&run, Duration::from_secs(60)).unwrap();
    assert_eq!(status.state, State::Succeeded, "{status:?}");
    assert_eq!(status.nodes[0].output.as_deref(), Some("adopted"));
    assert_eq!(status.nodes[0].attempts, 1);
    assert_eq!(pods_of(&kube, &run).len(), 1, "one pod for one attempt");
    if kube.local_pods {
        assert_eq!(lines(&file), ["ran"], "the pod ran once");
    }
    assert!(
        std::fs::read_to_string(env.dir.path().join("worker-2.log"))
            .unwrap()
            .contains("adopting the pod")
    );
}

#[test]
fn the_janitor_deletes_finished_pods_after_their_ttl() {
    let PodEnv { env, kube } = pod_env(&["--pod-success-ttl", "1s", "--pod-failure-ttl", "1h"]);
    let ns = &kube.namespace;
    let nodes = [
        pod_node("ok", ns, "", "true"),
        pod_node("bad", ns, "", "exit 1"),
    ];
    let wf = env.write("ttl.yaml", &workflow_continue("ttl", &nodes));
    let run = env.apply(&wf).unwrap();
    env.wait_end(&run, Duration::from_secs(60)).unwrap();
    // The janitor runs every 10 seconds.
    env.wait_for(&run, Duration::from_secs(30), |_| {
        pods_of(&kube, &run).len() == 1
    })
    .unwrap();
    let left = pods_of(&kube, &run);
    assert_eq!(
        left[0].metadata.name.clone().unwrap(),
        format!("bad-{run}-1"),
        "the failed pod is kept for its TTL"
    );
}

/// The name of the service account a least-privilege pod worker runs as.
const POD_WORKER: &str = "pod-worker";

/// Gives the service account [`POD_WORKER`] of the test's namespace what a pod worker needs on
/// pods, by a Role in each of `namespaces` (no ClusterRole), waits until the API server
/// allows it, and writes a kubeconfig acting as that account to `kubeconfig`.
fn pod_worker_identity(kube: &KubeEnv, namespaces: &[&str], kubeconfig: &Path) {
    let home = &kube.namespace;
    let user = format!("system:serviceaccount:{home}:{POD_WORKER}");
    kube.block_on(async {
        let accounts: Api<ServiceAccount> = Api::namespaced(kube.client.clone(), home);
        let account = serde_json::from_value(json!({"metadata": {"name": POD_WORKER}})).unwrap();
        accounts
            .create(&PostParams::default(), &account)
            .await
            .unwrap();
        for ns in namespaces {
            let role: Role = serde_json::from_value(json!({
                "metadata": {"name": POD_WORKER},
                "rules": [
                    {"apiGroups": [""], "resources": ["pods"],
                     "verbs": ["create", "get", "list", "watch", "delete"]},
                    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
                ],
            }))
            .unwrap();
            Api::<Role>::namespaced(kube.client.clone(), ns)
                .create(&PostParams::default(), &role)
                .await
                .unwrap();
            let binding: RoleBinding = serde_json::from_value(json!({
                "metadata": {"name": POD_WORKER},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": POD_WORKER},
                "subjects": [{"kind": "ServiceAccount", "name": POD_WORKER, "namespace": home}],
            }))
            .unwrap();
            Api::<RoleBinding>::namespaced(kube.client.clone(), ns)
                .create(&PostParams::default(), &binding)
                .await
                .unwrap();
        }
    });
    let token = kube.token(home, POD_WORKER).unwrap();
    // RBAC takes effect when the API server's cache sees the bindings.
    for ns in namespaces {
        wait_until(
            &format!("{user} may create pods in {ns}"),
            Duration::from_secs(30),
            || may(kube, &user, "create", Some(ns)),
        );
    }
    kube.kubeconfig_with_token(kubeconfig, &token, "default")
        .unwrap();
}

/// Returns whether `user` may `verb` pods in `namespace` (in every namespace when `None`).
fn may(kube: &KubeEnv, user: &str, verb: &str, namespace: Option<&str>) -> bool {
    kube.may(user, verb, "", "pods", namespace)
}

/// Waits until `done` holds, at most `within`.
#[track_caller]
fn wait_until(what: &str, within: Duration, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < within,
            "{what}: not so after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts a pod worker that acts as the identity in `kubeconfig`, with `args` added.
fn start_pod_worker(env: &mut Env, name: &str, kubeconfig: &Path, args: &[&str]) -> Proc {
    let mut command = env.baton();
    command
        .env("KUBECONFIG", kubeconfig)
        .args(["worker", "--kinds", "pod"])
        .args(args);
    env.spawn(name, command).unwrap()
}

#[test]
fn a_worker_serving_listed_namespaces_needs_roles_in_them_only_and_refuses_other_namespaces() {
    let mut env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).unwrap();
    let kube = KubeEnv::for_env(&mut env).unwrap();
    let other_dir = env.dir.path().join("other");
    std::fs::create_dir(&other_dir).unwrap();
    // A namespace the worker's identity may create pods in, but that it does not serve.
    let other = KubeEnv::new(&other_dir).unwrap();
    let (ns, elsewhere) = (kube.namespace.as_str(), other.namespace.as_str());
    let kubeconfig = env.dir.path().join("pod-worker.kubeconfig");
    pod_worker_identity(&kube, &[ns, elsewhere], &kubeconfig);
    let user = format!("system:serviceaccount:{ns}:{POD_WORKER}");
    assert!(
        !may(&kube, &user, "list", None),
        "the worker's identity may not list pods cluster-wide"
    );
    let planner = env.start_planner().unwrap();
    env.keep(planner);
    let worker = start_pod_worker(
        &mut env,
        "worker",
        &kubeconfig,
        &["--pod-namespaces", ns, "--pod-success-ttl", "1s"],
    );

    let nodes = [
        pod_node("served", ns, "", "printf ran > /dev/termination-log"),
        pod_node("refused", elsewhere, ", retries: {limit: 2}", "true"),
    ];
    let wf = env.write("served.yaml", &workflow_continue("served", &nodes));
    let run = env.apply(&wf).unwrap();
    let status = env.wait_end(&run, Duration::from_secs(60)).unwrap();
    let served = node(&status, "served");
    assert_eq!(served.state, State::Succeeded, "{status:?}");
    assert_eq!(served.output.as_deref(), Some("ran"));
    let refused = node(&status, "refused");
    assert_eq!(refused.state, State::Failed, "{status:?}");
    let error = refused.error.clone().unwrap_or_default();
    assert!(
        error.starts_with(&format!(
            "namespace {elsewhere} is not served: this worker serves only the namespaces {ns} (--pod-namespaces)"
        )),
        "{error}"
    );
    assert_eq!(refused.attempts, 1, "a refusal is not tried again");
    let pods_elsewhere: Api<Pod> = Api::namespaced(kube.client.clone(), elsewhere);
    let created = kube
        .block_on(
            pods_elsewhere.list(&ListParams::default().labels(&format!("baton.dev/run={run}"))),
        )
        .unwrap();
    assert!(created.items.is_empty(), "{:?}", created.items);

    // The janitor finds the finished pod by listing the served namespace alone (every 10 s).
    wait_until(
        "the janitor deleted the succeeded pod",
        Duration::from_secs(30),
        || pods_of(&kube, &run).is_empty(),
    );
    assert!(
        !worker.log().contains("janitor could not list pods"),
        "{}",
        worker.log()
    );

    // A worker with the same Roles that serves every namespace cannot list pods cluster-wide:
    // its janitor says so at warn, once a minute however often it tries.
    let everywhere = start_pod_worker(&mut env, "worker-everywhere", &kubeconfig, &[]);
    let failed_lists = || {
        everywhere
            .log()
            .lines()
            .filter(|l| l.contains("janitor could not list pods"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    wait_until(
        "the janitor of a worker serving every namespace failed to list twice",
        Duration::from_secs(60),
        || failed_lists().len() >= 2,
    );
    let failed_lists = failed_lists();
    let warnings: Vec<&String> = failed_lists.iter().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{failed_lists:#?}");
    assert!(warnings[0].contains("forbidden"), "{}", warnings[0]);
}
