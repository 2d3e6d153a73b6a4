//! The Kubernetes test fixture, through the real `kube` client: the semantics the tests rely
//! on and the kubelet actor, on the tests' control plane (or the cluster of
//! `BATON_TEST_KUBECONFIG`, where the kubelet conventions for OOM do not hold); and what a
//! real API server refuses of custom resources, which Baton's CRDs must not draw.

use std::time::Duration;

use baton_tests::kube::KubeEnv;
use baton_tests::skip;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

/// Why a test checks no pod logs when the kubelet actor runs a real cluster's pods.
const NO_LOGS: &str = "relaxed: the kubelet actor runs this cluster's pods on no node, so the API server has no logs of them";

fn kube_env() -> (tempfile::TempDir, KubeEnv) {
    let dir = tempfile::tempdir().unwrap();
    let env = KubeEnv::new(dir.path()).unwrap();
    (dir, env)
}

fn reason(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(status) => (status.code, status.reason.clone()),
        other => panic!("not an API error: {other}"),
    }
}

fn config_map(name: &str, labels: serde_json::Value, data: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "data": data}))
        .unwrap()
}

#[test]
fn objects_are_kept_replaced_patched_and_deleted_like_kubernetes_does() {
    let (_dir, env) = kube_env();
    let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
    env.block_on(async {
        let pp = PostParams::default();
        let created = api.create(&pp, &config_map("a", json!({"app": "x"}), json!({"k": "1"}))).await.unwrap();
        let rv1 = created.metadata.resource_version.clone().unwrap();
        assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
        assert_eq!(reason(api.create(&pp, &config_map("a", json!({}), json!({}))).await.unwrap_err()), (409, "AlreadyExists".into()));
        assert!(api.get_opt("missing").await.unwrap().is_none());
        assert_eq!(reason(api.get("missing").await.unwrap_err()), (404, "NotFound".into()));

        let mut changed = created.clone();
        changed.data = Some([("k".to_owned(), "2".to_owned())].into());
        let replaced = api.replace("a", &pp, &changed).await.unwrap();
        assert_ne!(replaced.metadata.resource_version.as_deref(), Some(rv1.as_str()));
        // `changed` still carries the old resourceVersion: a second replace conflicts.
        assert_eq!(reason(api.replace("a", &pp, &changed).await.unwrap_err()), (409, "Conflict".into()));

        let merged = api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"m": "y"}}))).await.unwrap();
        assert_eq!(merged.data.as_ref().unwrap().get("m").map(String::as_str), Some("y"));
        let ops: json_patch::Patch = serde_json::from_value(json!([{"op": "replace", "path": "/data/k", "value": "3"}])).unwrap();
        let patched = api.patch("a", &PatchParams::default(), &Patch::Json::<()>(ops)).await.unwrap();
        assert_eq!(patched.data.as_ref().unwrap()["k"], "3");
        let applied = api
            .patch("b", &PatchParams::apply("baton-test").force(), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "labels": {"app": "y"}}, "data": {"z": "1"}})))
            .await
            .unwrap();
        assert_eq!(applied.metadata.name.as_deref(), Some("b"));

        let xs = api.list(&ListParams::default().labels("app=x")).await.unwrap();
        assert_eq!(xs.items.iter().map(|c| c.metadata.name.clone().unwrap()).collect::<Vec<_>>(), ["a"]);
        let not_x = api.list(&ListParams::default().labels("app,app!=x")).await.unwrap();
        assert_eq!(not_x.items.len(), 1);
        let by_name = api.list(&ListParams::default().fields("metadata.name=b")).await.unwrap();
        assert_eq!(by_name.items.len(), 1);

        api.delete("a", &DeleteParams::default()).await.unwrap();
        assert!(api.get_opt("a").await.unwrap().is_none());
        assert_eq!(reason(api.delete("a", &DeleteParams::default()).await.unwrap_err()).0, 404);
    });
}

#[test]
fn status_is_a_subresource() {
    let (_dir, env) = kube_env();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    env.block_on(async {
        // An image that never pulls keeps a real kubelet (and the actor) from touching the pod.
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "annotations": {"test": "status"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "registry.invalid/does-not-exist:1", "command": ["true"]}]},
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
        let patched = pods
            .patch("p", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"l": "1"}}, "status": {"message": "ignored"}})))
            .await
            .unwrap();
        assert_ne!(patched.status.as_ref().and_then(|s| s.message.as_deref()), Some("ignored"), "the object's endpoint keeps status");
        let generation = patched.metadata.generation;
        let with_status = pods
            .patch_status("p", &PatchParams::default(), &Patch::Merge(json!({"status": {"message": "set"}, "spec": {"activeDeadlineSeconds": 5}})))
            .await
            .unwrap();
        assert_eq!(with_status.status.as_ref().and_then(|s| s.message.as_deref()), Some("set"));
        // (A pod's labels may change through its status endpoint in Kubernetes; its spec not.)
        assert_eq!(with_status.spec.unwrap().active_deadline_seconds, None, "the status endpoint keeps the spec");
        assert_eq!(with_status.metadata.generation, generation, "status writes do not bump the generation");
        pods.delete("p", &DeleteParams::default().grace_period(0)).await.unwrap();
    });
}

#[test]
fn watches_resume_from_a_resource_version_and_filter_by_label() {
    let (_dir, env) = kube_env();
    let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
    env.block_on(async {
        let pp = PostParams::default();
        let first = api
            .create(&pp, &config_map("w1", json!({"watch": "yes"}), json!({})))
            .await
            .unwrap();
        let mut seen = watcher(api.clone(), watcher::Config::default().labels("watch=yes")).boxed();
        let mut names = Vec::new();
        // The writes begin once the watcher has listed what is there.
        let listed = tokio::sync::Notify::new();
        let collect = async {
            while let Some(event) = seen.next().await {
                match event.unwrap() {
                    watcher::Event::InitDone => listed.notify_one(),
                    watcher::Event::Apply(cm) | watcher::Event::InitApply(cm) => {
                        names.push(format!("apply {}", cm.metadata.name.unwrap()))
                    }
                    watcher::Event::Delete(cm) => {
                        names.push(format!("delete {}", cm.metadata.name.unwrap()))
                    }
                    _ => {}
                }
                if names.len() == 4 {
                    break;
                }
            }
        };
        let produce = async {
            listed.notified().await;
            api.create(
                &pp,
                &config_map("ignored", json!({"watch": "no"}), json!({})),
            )
            .await
            .unwrap();
            api.create(&pp, &config_map("w2", json!({"watch": "yes"}), json!({})))
                .await
                .unwrap();
            api.patch(
                "w1",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"x": "1"}})),
            )
            .await
            .unwrap();
            api.delete("w2", &DeleteParams::default()).await.unwrap();
        };
        tokio::time::timeout(
            Duration::from_secs(20),
            futures::future::join(collect, produce),
        )
        .await
        .unwrap();
        assert_eq!(names, ["apply w1", "apply w2", "apply w1", "delete w2"]);

        // A raw watch from the first object's version replays what came after it.
        let rv = first.metadata.resource_version.unwrap();
        let stream = api
            .watch(
                &kube::api::WatchParams::default()
                    .labels("watch=yes")
                    .timeout(2),
                &rv,
            )
            .await
            .unwrap();
        let events: Vec<_> = stream.take(3).collect().await;
        let kinds: Vec<String> = events
            .into_iter()
            .map(|e| match e.unwrap() {
                kube::api::WatchEvent::Added(cm) => format!("ADDED {}", cm.metadata.name.unwrap()),
                kube::api::WatchEvent::Modified(cm) => {
                    format!("MODIFIED {}", cm.metadata.name.unwrap())
                }
                kube::api::WatchEvent::Deleted(cm) => {
                    format!("DELETED {}", cm.metadata.name.unwrap())
                }
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(kinds, ["ADDED w2", "MODIFIED w1", "DELETED w2"]);
    });
}

fn pod(name: &str, spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

async fn wait_for(pods: &Api<Pod>, name: &str, done: impl Fn(&Pod) -> bool) -> Pod {
    for _ in 0..300 {
        if let Some(p) = pods.get_opt(name).await.unwrap()
            && done(&p)
        {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("pod {name} never reached the state");
}

fn phase(p: &Pod) -> Option<&str> {
    p.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn terminated(p: &Pod, container: usize) -> k8s_openapi::api::core::v1::ContainerStateTerminated {
    p.status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[container]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap()
}

#[test]
fn the_kubelet_runs_pods_and_reports_termination_messages() {
    let (_dir, env) = kube_env();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    env.block_on(async {
        let pp = PostParams::default();
        pods.create(&pp, &pod("ok", json!({"restartPolicy": "Never", "containers": [
            {"name": "main", "image": "busybox", "command": ["sh", "-c", "echo hello from $GREETING; printf 'result:42' > /dev/termination-log"],
             "env": [{"name": "GREETING", "value": "baton"}]},
            {"name": "side", "image": "busybox", "command": ["sh", "-c"], "args": ["echo side > /tmp/x"]},
        ]}))).await.unwrap();
        let done = wait_for(&pods, "ok", |p| matches!(phase(p), Some("Succeeded" | "Failed"))).await;
        assert_eq!(phase(&done), Some("Succeeded"));
        let main = terminated(&done, 0);
        assert_eq!((main.exit_code, main.reason.as_deref(), main.message.as_deref()), (0, Some("Completed"), Some("result:42")));
        if env.logs {
            let log = pods.logs("ok", &kube::api::LogParams { container: Some("main".into()), ..Default::default() }).await.unwrap();
            assert_eq!(log, "hello from baton\n");
        } else {
            skip("the_kubelet_runs_pods_and_reports_termination_messages: its pods/log check", NO_LOGS);
        }

        pods.create(&pp, &pod("fails", json!({"restartPolicy": "Never", "containers": [
            {"name": "main", "image": "busybox", "command": ["sh", "-c", "echo boom; exit 3"], "terminationMessagePolicy": "FallbackToLogsOnError"},
        ]}))).await.unwrap();
        let done = wait_for(&pods, "fails", |p| matches!(phase(p), Some("Succeeded" | "Failed"))).await;
        assert_eq!(phase(&done), Some("Failed"));
        let main = terminated(&done, 0);
        assert_eq!((main.exit_code, main.reason.as_deref(), main.message.as_deref()), (3, Some("Error"), Some("boom")));

        pods.create(&pp, &pod("big", json!({"restartPolicy": "Never", "containers": [
            {"name": "main", "image": "busybox", "command": ["sh", "-c", "head -c 5000 /dev/zero | tr '\\0' x > /dev/termination-log"]},
        ]}))).await.unwrap();
        let done = wait_for(&pods, "big", |p| matches!(phase(p), Some("Succeeded" | "Failed"))).await;
        assert_eq!(terminated(&done, 0).message.map(|m| m.len()), Some(4096), "termination messages are capped at 4096 bytes");

        pods.create(&pp, &pod("deadline", json!({"restartPolicy": "Never", "activeDeadlineSeconds": 1, "containers": [
            {"name": "main", "image": "busybox", "command": ["sleep", "30"]},
        ]}))).await.unwrap();
        let done = wait_for(&pods, "deadline", |p| phase(p) == Some("Failed")).await;
        assert_eq!(done.status.as_ref().unwrap().reason.as_deref(), Some("DeadlineExceeded"));

        // A running pod is Ready unless a container has a readiness probe, which the actor
        // never passes (it runs no probes).
        for (name, probe) in [("plain", json!(null)), ("probed", json!({"exec": {"command": ["false"]}}))] {
            pods.create(&pp, &pod(name, json!({"restartPolicy": "Never", "containers": [
                {"name": "main", "image": "busybox", "command": ["sleep", "30"], "readinessProbe": probe},
            ]}))).await.unwrap();
        }
        let ready = |p: &Pod| {
            p.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == "Ready")).map(|c| c.status.clone())
        };
        let plain = wait_for(&pods, "plain", |p| phase(p) == Some("Running")).await;
        assert_eq!(ready(&plain).as_deref(), Some("True"));
        let probed = wait_for(&pods, "probed", |p| phase(p) == Some("Running")).await;
        assert_eq!(ready(&probed).as_deref(), Some("False"));
        for name in ["plain", "probed"] {
            pods.delete(name, &DeleteParams::default()).await.unwrap();
        }

        pods.create(&pp, &pod("nopull", json!({"restartPolicy": "Never", "containers": [
            {"name": "main", "image": "registry.invalid/does-not-exist:1", "command": ["true"]},
        ]}))).await.unwrap();
        let waiting = wait_for(&pods, "nopull", |p| {
            p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).and_then(|c| c[0].state.as_ref()).and_then(|s| s.waiting.as_ref()).is_some_and(|w| {
                matches!(w.reason.as_deref(), Some("ErrImagePull" | "ImagePullBackOff"))
            })
        })
        .await;
        assert_eq!(phase(&waiting), Some("Pending"));
    });
}

#[test]
fn the_kubelet_reports_oom_kills() {
    let (_dir, env) = kube_env();
    if !env.local_pods {
        // A test-kubelet convention: a real cluster needs a real memory limit.
        skip(
            "the_kubelet_reports_oom_kills",
            "the OOM annotation is the kubelet actor's",
        );
        return;
    }
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    env.block_on(async {
        let oom: Pod = serde_json::from_value(json!({
            "metadata": {"name": "oom", "annotations": {"kubelet.baton.dev/oom-kill": "main"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "30"]}]},
        }))
        .unwrap();
        pods.create(&PostParams::default(), &oom).await.unwrap();
        let done = wait_for(&pods, "oom", |p| phase(p) == Some("Failed")).await;
        let main = terminated(&done, 0);
        assert_eq!((main.exit_code, main.reason.as_deref()), (137, Some("OOMKilled")));
    });
}

/// A pod no kubelet runs (no node matches its selector, and its image never pulls), so only the
/// test writes its status; with thousands of annotations (within Kubernetes' 256 KiB) so that
/// each write takes long enough for concurrent writes to overlap.
fn idle_pod(name: &str) -> Pod {
    let ballast: serde_json::Map<String, serde_json::Value> = (0..5000)
        .map(|i| (format!("test.baton.dev/b{i}"), json!("x")))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": ballast},
        "spec": {"restartPolicy": "Never", "nodeSelector": {"baton.dev/no-such-node": "true"},
                 "containers": [{"name": "c", "image": "registry.invalid/does-not-exist:1", "command": ["true"]}]},
    }))
    .unwrap()
}

/// Writes to the object and to its status at once lose neither: every read-modify-write is one
/// step, as in Kubernetes (a status write used to put back the object it read, undoing a label
/// written in between).
#[test]
fn concurrent_object_and_status_writes_lose_nothing() {
    let (_dir, env) = kube_env();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    env.block_on(async {
        pods.create(&PostParams::default(), &idle_pod("race"))
            .await
            .unwrap();
        const WRITES: usize = 40;
        let writer = |labels: bool| {
            let pods = pods.clone();
            tokio::spawn(async move {
                for i in 0..WRITES {
                    let pp = PatchParams::default();
                    if labels {
                        let patch = json!({"metadata": {"labels": {format!("l{i}"): "1"}}});
                        pods.patch("race", &pp, &Patch::Merge(patch)).await.unwrap();
                    } else {
                        let patch = json!({"status": {"message": format!("m{i}")}});
                        pods.patch_status("race", &pp, &Patch::Merge(patch))
                            .await
                            .unwrap();
                    }
                }
            })
        };
        let both = futures::future::join_all([writer(true), writer(false), writer(false)]);
        // A bound against a hang, not a speed test: 120 writes of a 200 KB object through
        // etcd took over 60 s on a busy 2-core machine while the binary's other tests ran.
        for done in tokio::time::timeout(Duration::from_secs(300), both)
            .await
            .unwrap()
        {
            done.unwrap();
        }
        let pod = pods.get("race").await.unwrap();
        let labels = pod.metadata.labels.unwrap_or_default();
        let lost: Vec<usize> = (0..WRITES)
            .filter(|i| !labels.contains_key(&format!("l{i}")))
            .collect();
        assert!(
            lost.is_empty(),
            "labels lost to concurrent status writes: {lost:?}"
        );
        assert_eq!(
            pod.status.and_then(|s| s.message).as_deref(),
            Some(format!("m{}", WRITES - 1).as_str())
        );
        pods.delete("race", &DeleteParams::default().grace_period(0))
            .await
            .unwrap();
    });
}

/// A status write racing a delete never brings the pod back: it finds the pod (and writes) or
/// finds it gone (404), and once the delete has answered, the pod stays gone.
#[test]
fn a_status_write_racing_a_delete_never_resurrects_the_pod() {
    let (_dir, env) = kube_env();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    env.block_on(async {
        let started = std::time::Instant::now();
        for round in 0..30 {
            let name = format!("gone-{round}");
            pods.create(&PostParams::default(), &idle_pod(&name))
                .await
                .unwrap();
            let writes = (0..8).map(|i| {
                let (pods, name) = (pods.clone(), name.clone());
                tokio::spawn(async move {
                    let patch = json!({"status": {"message": format!("w{i}")}});
                    match pods
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
                        .await
                    {
                        Ok(_) => {}
                        Err(e) => assert_eq!(reason(e).0, 404),
                    }
                })
            });
            let writes: Vec<_> = writes.collect();
            pods.delete(&name, &DeleteParams::default().grace_period(0))
                .await
                .unwrap();
            for w in writes {
                w.await.unwrap();
            }
            assert!(
                pods.get_opt(&name).await.unwrap().is_none(),
                "round {round}: the deleted pod {name} is back"
            );
            // Generous: a debug build on two busy cores; the rounds' outcome is the point.
            assert!(started.elapsed() < Duration::from_secs(180), "too slow");
        }
    });
}

/// `metadata.resourceVersion` is a precondition of every write that carries one: replace,
/// merge patch, JSON patch, and writes to the status subresource; a stale one is a 409
/// `Conflict`, and the object is left as it was.
#[test]
fn a_stale_resource_version_is_a_conflict() {
    let (_dir, env) = kube_env();
    let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    env.block_on(async {
        let pp = PatchParams::default();
        let created = api
            .create(
                &PostParams::default(),
                &config_map("rv", json!({}), json!({"k": "1"})),
            )
            .await
            .unwrap();
        let stale = created.metadata.resource_version.clone().unwrap();
        let fresh = api
            .patch("rv", &pp, &Patch::Merge(json!({"data": {"k": "2"}})))
            .await
            .unwrap();
        let fresh_rv = fresh.metadata.resource_version.clone().unwrap();
        assert_ne!(stale, fresh_rv);

        let merge = json!({"metadata": {"resourceVersion": stale}, "data": {"k": "stale"}});
        assert_eq!(
            reason(
                api.patch("rv", &pp, &Patch::Merge(merge))
                    .await
                    .unwrap_err()
            ),
            (409, "Conflict".into())
        );
        let ops: json_patch::Patch = serde_json::from_value(json!([
            {"op": "replace", "path": "/metadata/resourceVersion", "value": stale},
            {"op": "replace", "path": "/data/k", "value": "stale"},
        ]))
        .unwrap();
        assert_eq!(
            reason(
                api.patch("rv", &pp, &Patch::Json::<()>(ops))
                    .await
                    .unwrap_err()
            ),
            (409, "Conflict".into())
        );
        let mut old = created.clone();
        old.data = Some([("k".to_owned(), "stale".to_owned())].into());
        assert_eq!(
            reason(
                api.replace("rv", &PostParams::default(), &old)
                    .await
                    .unwrap_err()
            ),
            (409, "Conflict".into())
        );
        assert_eq!(
            api.get("rv").await.unwrap().data.unwrap()["k"],
            "2",
            "a refused write changes nothing"
        );

        // The current version passes.
        let merge = json!({"metadata": {"resourceVersion": fresh_rv}, "data": {"k": "3"}});
        let written = api.patch("rv", &pp, &Patch::Merge(merge)).await.unwrap();
        assert_eq!(written.data.unwrap()["k"], "3");

        // The status subresource too.
        let pod = pods
            .create(&PostParams::default(), &idle_pod("rv-pod"))
            .await
            .unwrap();
        let pod_rv = pod.metadata.resource_version.clone().unwrap();
        pods.patch_status(
            "rv-pod",
            &pp,
            &Patch::Merge(json!({"status": {"message": "first"}})),
        )
        .await
        .unwrap();
        let stale_status =
            json!({"metadata": {"resourceVersion": pod_rv}, "status": {"message": "stale"}});
        assert_eq!(
            reason(
                pods.patch_status("rv-pod", &pp, &Patch::Merge(stale_status))
                    .await
                    .unwrap_err()
            ),
            (409, "Conflict".into())
        );
        pods.delete("rv-pod", &DeleteParams::default().grace_period(0))
            .await
            .unwrap();
    });
}

fn init_status(p: &Pod, name: &str) -> Option<k8s_openapi::api::core::v1::ContainerStatus> {
    p.status
        .as_ref()?
        .init_container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)
        .cloned()
}

fn seconds(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> i64 {
    t.0.as_second()
}

/// Init containers run one at a time, in order, before the containers; the first that fails
/// fails the pod (`restartPolicy: Never`), and neither the later init containers nor the
/// containers run.
#[test]
fn the_kubelet_runs_init_containers_in_order_first() {
    let (_dir, env) = kube_env();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    env.block_on(async {
        let pp = PostParams::default();
        pods.create(&pp, &pod("init-ok", json!({"restartPolicy": "Never",
            "initContainers": [
                {"name": "first", "image": "busybox", "command": ["sh", "-c", "sleep 1.2; printf one > /dev/termination-log"]},
                {"name": "second", "image": "busybox", "command": ["sh", "-c", "sleep 1.2; printf two > /dev/termination-log"]},
            ],
            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "printf main > /dev/termination-log"]}],
        }))).await.unwrap();
        let done = wait_for(&pods, "init-ok", |p| matches!(phase(p), Some("Succeeded" | "Failed"))).await;
        assert_eq!(phase(&done), Some("Succeeded"), "{:?}", done.status);
        let ended = |name: &str| init_status(&done, name).and_then(|c| c.state?.terminated).unwrap_or_else(|| panic!("{name} did not run: {:?}", done.status));
        let (first, second, main) = (ended("first"), ended("second"), terminated(&done, 0));
        assert_eq!((first.exit_code, first.message.as_deref()), (0, Some("one")));
        assert_eq!((second.exit_code, second.message.as_deref()), (0, Some("two")));
        assert_eq!(main.message.as_deref(), Some("main"));
        // `first` and `second` sleep over a second (times are whole seconds): run together,
        // the next would start before the one before it ended.
        let finished = |t: &k8s_openapi::api::core::v1::ContainerStateTerminated| seconds(t.finished_at.as_ref().unwrap());
        let started = |t: &k8s_openapi::api::core::v1::ContainerStateTerminated| seconds(t.started_at.as_ref().unwrap());
        assert!(started(&second) >= finished(&first), "{first:?} {second:?}");
        assert!(started(&main) >= finished(&second), "{second:?} {main:?}");

        pods.create(&pp, &pod("init-fails", json!({"restartPolicy": "Never",
            "initContainers": [
                {"name": "first", "image": "busybox", "command": ["true"]},
                {"name": "second", "image": "busybox", "command": ["sh", "-c", "exit 4"]},
                {"name": "third", "image": "busybox", "command": ["true"]},
            ],
            "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
        }))).await.unwrap();
        let done = wait_for(&pods, "init-fails", |p| matches!(phase(p), Some("Succeeded" | "Failed"))).await;
        assert_eq!(phase(&done), Some("Failed"), "{:?}", done.status);
        let exit = |name: &str| init_status(&done, name).and_then(|c| c.state?.terminated).map(|t| t.exit_code);
        assert_eq!((exit("first"), exit("second"), exit("third")), (Some(0), Some(4), None));
        let main = done.status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0].clone();
        assert!(main.state.unwrap().terminated.is_none(), "the container never ran");
    });
}

/// Sends `body` to `path` with `method` through the client and returns the status, the
/// `Warning` headers and the body.
async fn raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> (u16, Vec<String>, serde_json::Value) {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    let response = client
        .send(request.map(kube::client::Body::from))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let warnings = response
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, warnings, serde_json::from_slice(&bytes).unwrap())
}

fn crd_with(group: &str, spec_schema: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("things.{group}")},
        "spec": {
            "group": group,
            "names": {"kind": "Thing", "plural": "things", "singular": "thing", "listKind": "ThingList"},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec_schema}}}}],
        },
    })
}

/// What once passed against the suite's own fake API server and a real one refused: a CRD
/// whose `required` holds a boolean (YAML 1.1's `on`); and a format Kubernetes does not know
/// draws a warning. Baton's own CRDs draw neither (sent as a dry run: other tests of this
/// binary share the cluster and its CRDs).
#[test]
fn crds_are_admitted_as_a_real_api_server_admits_them() {
    let (_dir, env) = kube_env();
    let path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions?dryRun=All";
    env.block_on(async {
        let bad = crd_with("bad.example.com", json!({"type": "object", "required": [true], "properties": {"true": {"type": "string"}}}));
        let (status, _, body) = raw(&env.client, "POST", path, bad).await;
        assert_eq!(status, 400, "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("cannot unmarshal bool into Go struct field JSONSchemaProps"), "{message}");
        let odd = crd_with("odd.example.com", json!({"type": "object", "properties": {"n": {"type": "integer", "format": "uint32"}}}));
        let (status, warnings, body) = raw(&env.client, "POST", path, odd).await;
        assert_eq!(status, 201, "{body}");
        assert!(warnings.iter().any(|w| w.contains("unrecognized format") && w.contains("uint32")), "{warnings:?}");
        for crd in baton_schemas::crd::crds() {
            let (status, warnings, body) = raw(&env.client, "POST", path, serde_json::to_value(&crd).unwrap()).await;
            assert_eq!((status, warnings), (201, vec![]), "{body}");
        }
    });
}

/// A custom object's undeclared fields are refused under `fieldValidation=Strict` (kubectl's
/// way) and pruned otherwise; `x-kubernetes-preserve-unknown-fields` keeps them.
#[test]
fn undeclared_fields_of_custom_objects_are_refused_or_pruned() {
    let (_dir, env) = kube_env();
    let ns = env.namespace.clone();
    let schema = json!({"type": "object", "properties": {
        "startOnAll": {"type": "array", "items": {"type": "object", "properties": {"task": {"type": "string"}, "outcome": {"type": "string"}}}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    }});
    env.apply_crds(vec![crd_with("fields.example.com", schema)])
        .unwrap();
    env.block_on(async {
        let path = format!("/apis/fields.example.com/v1/namespaces/{ns}/things");
        // What kubectl sends for `startOnAll: [{task: build, on: success}]`, read as YAML 1.1.
        let object = |name: &str| json!({"apiVersion": "fields.example.com/v1", "kind": "Thing", "metadata": {"name": name},
            "spec": {"startOnAll": [{"task": "build", "true": "success"}], "free": {"anything": 1}}});
        let (status, _, body) = raw(&env.client, "POST", &format!("{path}?fieldValidation=Strict"), object("strict")).await;
        // A real API server answers 400 (the fake one said 422) and names the kind first.
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["message"], "Thing in version \"v1\" cannot be handled as a Thing: strict decoding error: unknown field \"spec.startOnAll[0].true\"");
        let (status, warnings, body) = raw(&env.client, "POST", &path, object("pruned")).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["spec"]["startOnAll"][0], json!({"task": "build"}));
        assert_eq!(body["spec"]["free"], json!({"anything": 1}));
        assert_eq!(warnings, ["299 - \"unknown field \\\"spec.startOnAll[0].true\\\"\""]);
    });
}
