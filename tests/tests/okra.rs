//! okra's management cluster, as okra's README sets it up: an `AWSTargetGroupSet` turns the
//! `TargetGroupBinding`s of member clusters (listed by Argo CD cluster Secrets) into
//! `AWSTargetGroup`s, and a Cell rolls out the new version's target groups they name.
//!
//! The tests' Kubernetes API server stands in for the management cluster and for two member
//! clusters: each member's Secret carries the server, the CA and a ServiceAccount's token, and
//! limits the member to its own namespace (Argo CD's `namespaces` key), so the two see
//! different bindings. ELBv2, CloudWatch and EKS are moto's.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton_tests::Env;
use baton_tests::aws::Moto;
use baton_tests::kube::KubeEnv;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};

/// An okra Cell `name` in `ns` on rule `priority` of `listener` (host `<name>.example.com`),
/// one target group per version labelled `role: web`, with canary `steps` (YAML list items).
fn canary_cell(name: &str, ns: &str, listener: &str, priority: u32, steps: &str) -> Value {
    let text = format!(
        "apiVersion: okra.mumo.co/v1alpha1\nkind: Cell\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  ingress:\n    type: AWSApplicationLoadBalancer\n    awsApplicationLoadBalancer:\n      listenerARN: {listener}\n      listener: {{rule: {{priority: {priority}, hosts: [{name}.example.com]}}}}\n      targetGroupSelector: {{matchLabels: {{role: web}}}}\n  replicas: 1\n  updateStrategy:\n    type: Canary\n    canary:\n      steps:\n{steps}"
    );
    serde_norway::from_str(&text).unwrap()
}

/// Starts a planner that watches namespace `ns` and syncs okra's sets every second.
fn start_watching_planner(env: &mut Env, ns: &str) {
    let args = [
        "--watch-kubernetes",
        "--watch-namespace",
        ns,
        "--sync-period",
        "1s",
    ];
    let planner = env.start_planner_with(&args).unwrap();
    env.keep(planner);
}

/// The AWS Load Balancer Controller's kind, as far as the test needs it.
fn install_target_group_bindings(kube: &KubeEnv) {
    kube.apply_crds(vec![json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "targetgroupbindings.elbv2.k8s.aws"},
        "spec": {
            "group": "elbv2.k8s.aws",
            "names": {"kind": "TargetGroupBinding", "plural": "targetgroupbindings", "singular": "targetgroupbinding"},
            "scope": "Namespaced",
            "versions": [{"name": "v1beta1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    })])
    .unwrap();
}

fn create<K>(kube: &KubeEnv, api: &Api<K>, value: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).unwrap();
    match kube.block_on(api.create(&PostParams::default(), &object)) {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("{e}"),
    }
}

/// A member cluster's Argo CD Secret: this API server, as ServiceAccount `member` of `ns`
/// sees it, limited to `only`.
fn member_secret(kube: &KubeEnv, name: &str, token: &str, only: &str) -> Value {
    let text = std::fs::read_to_string(&kube.kubeconfig).unwrap();
    let config: Value = serde_norway::from_str(&text).unwrap();
    let cluster = &config["clusters"][0]["cluster"];
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": {"argocd.argoproj.io/secret-type": "cluster", "service": "demo"}},
        "type": "Opaque",
        "stringData": {
            "name": name,
            "server": cluster["server"],
            "config": json!({"bearerToken": token, "tlsClientConfig": {"caData": cluster["certificate-authority-data"]}}).to_string(),
            "namespaces": only,
        },
    })
}

fn binding(namespace: &str, name: &str, role: &str, version: &str, arn: &str) -> Value {
    json!({
        "apiVersion": "elbv2.k8s.aws/v1beta1",
        "kind": "TargetGroupBinding",
        "metadata": {"name": name, "namespace": namespace, "labels": {"role": role, "okra.mumo.co/version": version}},
        "spec": {"targetGroupARN": arn, "serviceRef": {"name": name, "port": 80}},
    })
}

/// Waits until `check` holds of the objects `api` lists, at most `within`.
fn wait_objects(
    kube: &KubeEnv,
    api: &Api<DynamicObject>,
    within: Duration,
    check: impl Fn(&[DynamicObject]) -> bool,
) -> Vec<DynamicObject> {
    let started = Instant::now();
    loop {
        let items = kube.block_on(api.list(&Default::default())).unwrap().items;
        if check(&items) {
            return items;
        }
        assert!(
            started.elapsed() < within,
            "not there after {within:?}: {:#?}",
            items
                .iter()
                .map(|o| (&o.metadata.name, &o.metadata.labels, &o.data))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn names(items: &[DynamicObject]) -> Vec<String> {
    let mut names: Vec<String> = items
        .iter()
        .filter_map(|o| o.metadata.name.clone())
        .collect();
    names.sort();
    names
}

/// An Argo Rollouts template asking CloudWatch for a version's error rate.
const ERROR_RATE_TEMPLATE: &str = r#"apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: error-rate}
spec:
  args: [{name: version}]
  metrics:
  - name: error-rate
    successCondition: "len(result[0].Values) >= 3 and all(result[0].Values, {# <= 0.01})"
    provider:
      cloudWatch:
        interval: 15m
        metricDataQueries:
        - id: rate
          metricStat:
            metric:
              namespace: Baton/Test
              metricName: ErrorRate
              dimensions: [{name: Version, value: "{{args.version}}"}]
            period: 60
            stat: Maximum
"#;

/// okra's README experiment step (examples/okra/experiment-cell.yaml) with a shorter
/// duration and the CloudWatch template, which the experiment waits for.
const EXPERIMENT_STEP: &str = "      - experiment:\n          duration: 5s\n          templates:\n          - {name: wy, specRef: wy, replicas: 1}\n          analyses:\n          - name: error-rate\n            templateName: error-rate\n            requiredForCompletion: true\n            args:\n            - name: version\n              valueFrom: {fieldRef: {fieldPath: status.desiredVersion}}\n";

/// What a watch saw of a ReplicaSet: its replicas and available replicas, or its deletion.
#[derive(Clone, Copy, Debug, PartialEq)]
enum RsState {
    Is { replicas: i32, available: i32 },
    Deleted,
}

/// ReplicaSets by name and the states a watch saw of them.
type Seen = Arc<Mutex<Vec<(String, RsState)>>>;

/// Every state of each ReplicaSet of a namespace, as a watch sees them.
struct ReplicaSetLog {
    states: Seen,
    _runtime: tokio::runtime::Runtime,
}

impl ReplicaSetLog {
    fn start(client: kube::Client, namespace: &str) -> ReplicaSetLog {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let states: Seen = Arc::default();
        let log = states.clone();
        let api: Api<ReplicaSet> = Api::namespaced(client, namespace);
        runtime.spawn(async move {
            let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
            while let Some(event) = events.next().await {
                let (rs, state) = match event {
                    Ok(watcher::Event::Apply(rs) | watcher::Event::InitApply(rs)) => {
                        let state = RsState::Is {
                            replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                            available: rs
                                .status
                                .as_ref()
                                .and_then(|s| s.available_replicas)
                                .unwrap_or(0),
                        };
                        (rs, state)
                    }
                    Ok(watcher::Event::Delete(rs)) => (rs, RsState::Deleted),
                    _ => continue,
                };
                let name = rs.metadata.name.unwrap_or_default();
                log.lock().unwrap().push((name, state));
            }
        });
        ReplicaSetLog {
            states,
            _runtime: runtime,
        }
    }

    /// The states of `name`, once the watch has seen it deleted (waiting at most 30 s).
    fn of_deleted(&self, name: &str) -> Vec<RsState> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut states: Vec<RsState> = self
                .states
                .lock()
                .unwrap()
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, s)| *s)
                .collect();
            states.dedup();
            if states.last() == Some(&RsState::Deleted) {
                return states;
            }
            assert!(
                Instant::now() < deadline,
                "{name} not seen deleted: {states:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Asserts that the experiment's ReplicaSet `name` had its one pod available, then was
/// scaled to zero, then deleted.
fn assert_ran_and_was_removed(seen: &ReplicaSetLog, name: &str) {
    let states = seen.of_deleted(name);
    let available = RsState::Is {
        replicas: 1,
        available: 1,
    };
    let ran = states.iter().position(|s| *s == available);
    let scaled = states
        .iter()
        .rposition(|s| matches!(s, RsState::Is { replicas: 0, .. }));
    assert!(
        ran.is_some() && scaled.is_some() && ran < scaled,
        "{name}: not available, then scaled to zero, then deleted: {states:?}"
    );
}

#[test]
fn a_target_group_set_feeds_a_cell_from_member_clusters_bindings() {
    let mut env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).expect("test env");
    let moto = Moto::start(env.dir.path()).unwrap();
    let listener = moto.listener().unwrap();
    env.extra_env.extend(moto.env());
    let kube = KubeEnv::for_env(&mut env).unwrap();
    kube.install_crds().unwrap();
    install_target_group_bindings(&kube);
    let ns = kube.namespace.clone();
    // Two member clusters: the same API server, each limited to a namespace of its own.
    let (ns_a, ns_b) = (format!("{ns}-a"), format!("{ns}-b"));
    let namespaces: Api<Namespace> = Api::all(kube.client.clone());
    for name in [&ns_a, &ns_b] {
        create(
            &kube,
            &namespaces,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        );
    }
    let accounts: Api<ServiceAccount> = Api::namespaced(kube.client.clone(), &ns);
    create(
        &kube,
        &accounts,
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "member"}}),
    );
    let role = format!("{ns}-bindings-reader");
    create(
        &kube,
        &Api::<ClusterRole>::all(kube.client.clone()),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": role},
            "rules": [{"apiGroups": ["elbv2.k8s.aws"], "resources": ["targetgroupbindings"], "verbs": ["get", "list", "watch"]}],
        }),
    );
    create(
        &kube,
        &Api::<ClusterRoleBinding>::all(kube.client.clone()),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "member", "namespace": ns}],
        }),
    );
    let token = kube.token(&ns, "member").unwrap();

    start_watching_planner(&mut env, &ns);
    let worker = env.start_worker("worker", "traffic,analysis", &[]).unwrap();
    env.keep(worker);
    // The experiment's analysis: 2.0.0's error rate in CloudWatch, by an Argo template.
    moto.put_metric_data(
        "Baton/Test",
        "ErrorRate",
        ("Version", "2.0.0"),
        &[0.001, 0.004, 0.002],
    )
    .unwrap();
    let template = env.write("error-rate.yaml", ERROR_RATE_TEMPLATE);
    let out = env.cli(&["apply", "-f", template.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The ReplicaSet the experiment copies, in the Cell's namespace (the test kubelet runs a
    // container's command, not an image's entrypoint).
    let experiment_cell = include_str!("../../examples/okra/experiment-cell.yaml");
    let mut wy: Value =
        serde_norway::from_str(experiment_cell.split("---\n").nth(1).unwrap()).unwrap();
    wy["spec"]["template"]["spec"]["containers"][0]["command"] = json!(["sleep", "600"]);
    wy["spec"]["template"]["spec"]["containers"][0]["args"] = json!([]);
    let replica_sets: Api<ReplicaSet> = Api::namespaced(kube.client.clone(), &ns);
    create(&kube, &replica_sets, wy);
    let seen = ReplicaSetLog::start(kube.client.clone(), &ns);

    // The target groups carry no tags: only the bindings say what they are.
    let a1 = moto.target_group(&listener.vpc_id, "web-a1", &[]).unwrap();
    let b1 = moto.target_group(&listener.vpc_id, "web-b1", &[]).unwrap();
    let api_group = moto.target_group(&listener.vpc_id, "api-a1", &[]).unwrap();
    let resource = kube::api::ApiResource {
        group: "elbv2.k8s.aws".into(),
        version: "v1beta1".into(),
        api_version: "elbv2.k8s.aws/v1beta1".into(),
        kind: "TargetGroupBinding".into(),
        plural: "targetgroupbindings".into(),
    };
    let bindings = |namespace: &str| -> Api<DynamicObject> {
        Api::namespaced_with(kube.client.clone(), namespace, &resource)
    };
    create(
        &kube,
        &bindings(&ns_a),
        binding(&ns_a, "web1", "web", "1.0.0", &a1),
    );
    create(
        &kube,
        &bindings(&ns_a),
        binding(&ns_a, "api1", "api", "1.0.0", &api_group),
    );
    create(
        &kube,
        &bindings(&ns_b),
        binding(&ns_b, "web1", "web", "2.0.0", &b1),
    );

    let secrets: Api<Secret> = Api::namespaced(kube.client.clone(), &ns);
    create(
        &kube,
        &secrets,
        member_secret(&kube, "member-a", &token, &ns_a),
    );
    // okra's README set and a Cell, in the management cluster.
    let readme = include_str!("../../examples/okra/management-cluster.yaml");
    let set_text = readme
        .split("---")
        .find(|d| d.contains("kind: AWSTargetGroupSet"))
        .unwrap();
    let mut set: Value = serde_norway::from_str(set_text).unwrap();
    set["metadata"]["namespace"] = ns.clone().into();
    let sets = kube.kind_api("okra.mumo.co", "AWSTargetGroupSet");
    create(&kube, &sets, set);
    let cells = kube.kind_api("okra.mumo.co", "Cell");
    let steps = format!("      - setWeight: 50\n{EXPERIMENT_STEP}");
    create(
        &kube,
        &cells,
        canary_cell("web", &ns, &listener.arn, 14, &steps),
    );

    // member-a's web binding becomes an AWSTargetGroup (not its api one), and the Cell
    // serves 1.0.0 from it.
    let groups = kube.kind_api("okra.mumo.co", "AWSTargetGroup");
    let made = wait_objects(&kube, &groups, Duration::from_secs(60), |items| {
        items.len() == 1
    });
    let web_a = format!("{ns_a}-web1");
    assert_eq!(names(&made), std::slice::from_ref(&web_a));
    assert_eq!(made[0].data["spec"]["arn"], a1.as_str());
    let labels = made[0].metadata.labels.clone().unwrap();
    assert_eq!(labels["okra.mumo.co/version"], "1.0.0");
    assert_eq!(labels["okra.mumo.co/awstargetgroupset"], "cell1");
    let owner = &made[0].metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("AWSTargetGroupSet", "cell1")
    );
    let status = kube.wait_status(&cells, "web", Duration::from_secs(60), |s| {
        s["servingVersion"] == "1.0.0" && s["phase"] == "Serving"
    });
    assert_eq!(status["targetGroupSource"], "AWSTargetGroup");

    // A second member cluster arrives with 2.0.0: it is rolled out.
    create(
        &kube,
        &secrets,
        member_secret(&kube, "member-b", &token, &ns_b),
    );
    wait_objects(&kube, &groups, Duration::from_secs(60), |items| {
        items.len() == 2
    });
    kube.wait_status(&cells, "web", Duration::from_secs(60), |s| {
        s["servingVersion"] == "2.0.0" && s["phase"] == "Serving"
    });
    assert_eq!(
        moto.weights(&listener.arn, 14).unwrap().unwrap(),
        [(baton_tests::aws::target_group_name(&b1), 100)]
    );
    // Through the experiment (of run web-2, step 1): its ReplicaSet ran one available pod
    // of wy's template, then was scaled to zero and deleted.
    assert_ran_and_was_removed(&seen, "web-2-1-experiment-wy");

    // 3.0.0 errors: its experiment fails, the version is blocked and 2.0.0 keeps serving,
    // and the experiment's ReplicaSet is removed all the same.
    moto.put_metric_data(
        "Baton/Test",
        "ErrorRate",
        ("Version", "3.0.0"),
        &[0.2, 0.3, 0.2],
    )
    .unwrap();
    let b2 = moto.target_group(&listener.vpc_id, "web-b2", &[]).unwrap();
    create(
        &kube,
        &bindings(&ns_b),
        binding(&ns_b, "web2", "web", "3.0.0", &b2),
    );
    let status = kube.wait_status(&cells, "web", Duration::from_secs(90), |s| {
        s["blocked"].as_array().is_some_and(|b| !b.is_empty()) && s["phase"] == "Degraded"
    });
    let cause = status["blocked"][0]["cause"].as_str().unwrap();
    assert_eq!(status["blocked"][0]["version"], "3.0.0");
    assert!(
        cause.contains("experiment web-3-1-experiment")
            && cause.contains("metric error-rate/error-rate"),
        "{cause}"
    );
    assert_eq!(status["servingVersion"], "2.0.0");
    assert_eq!(
        moto.weights(&listener.arn, 14).unwrap().unwrap(),
        [(baton_tests::aws::target_group_name(&b1), 100)]
    );
    assert_ran_and_was_removed(&seen, "web-3-1-experiment-wy");
    let set = kube.wait_status(&sets, "cell1", Duration::from_secs(30), |s| {
        s["targetGroups"].as_array().is_some_and(|a| a.len() == 3)
    });
    assert_eq!(
        set["targetGroups"],
        json!([web_a, format!("{ns_b}-web1"), format!("{ns_b}-web2")])
    );

    // A binding that goes takes its AWSTargetGroup with it.
    kube.block_on(bindings(&ns_a).delete("web1", &DeleteParams::default()))
        .unwrap();
    let left = wait_objects(&kube, &groups, Duration::from_secs(60), |items| {
        items.len() == 2
    });
    assert_eq!(
        names(&left),
        [format!("{ns_b}-web1"), format!("{ns_b}-web2")]
    );
}

/// okra's `AWSTargetGroup` objects in the Cell's namespace are its target groups once there
/// are any (their labels as tags), as okra had them: target groups no tag names roll out,
/// and the Cell's status says where they came from.
#[test]
fn a_cells_target_groups_come_from_awstargetgroup_objects_when_there_are_any() {
    let mut env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).expect("test env");
    let moto = Moto::start(env.dir.path()).unwrap();
    let listener = moto.listener().unwrap();
    env.extra_env.extend(moto.env());
    let kube = KubeEnv::for_env(&mut env).unwrap();
    kube.install_crds().unwrap();
    start_watching_planner(&mut env, &kube.namespace);
    let worker = env.start_worker("worker", "traffic", &[]).unwrap();
    env.keep(worker);
    let v1 = [("role", "web"), ("okra.mumo.co/version", "1.0.0")];
    let a1 = moto.target_group(&listener.vpc_id, "web-a1", &v1).unwrap();
    // 2.0.0's target groups carry no tags: only the objects say what they are.
    let b1 = moto.target_group(&listener.vpc_id, "web-b1", &[]).unwrap();
    let cell = format!(
        "apiVersion: okra.mumo.co/v1alpha1\nkind: Cell\nmetadata: {{name: tg}}\nspec:\n  ingress:\n    type: AWSApplicationLoadBalancer\n    awsApplicationLoadBalancer:\n      listenerARN: {}\n      listener: {{rule: {{priority: 12, hosts: [tg.example.com]}}}}\n      targetGroupSelector: {{matchLabels: {{role: web}}}}\n  replicas: 1\n  updateStrategy:\n    type: Canary\n    canary: {{steps: [{{setWeight: 50}}]}}\n",
        listener.arn
    );
    let cells = kube.kind_api("okra.mumo.co", "Cell");
    let object: DynamicObject = serde_norway::from_str(&cell).unwrap();
    kube.block_on(cells.create(&PostParams::default(), &object))
        .unwrap();
    let status = kube.wait_status(&cells, "tg", Duration::from_secs(60), |s| {
        s["phase"] == "Serving" && s["servingVersion"] == "1.0.0"
    });
    assert_eq!(status["targetGroupSource"], "Tags", "{status:#}");
    // The objects, as okra's README writes them (its indentation mended).
    let groups = kube.kind_api("okra.mumo.co", "AWSTargetGroup");
    for (name, arn, version) in [
        ("default-web-a1", &a1, "1.0.0"),
        ("default-web-b1", &b1, "2.0.0"),
    ] {
        let text = format!(
            "apiVersion: okra.mumo.co/v1alpha1\nkind: AWSTargetGroup\nmetadata:\n  name: {name}\n  labels:\n    role: web\n    okra.mumo.co/version: {version}\nspec:\n  arn: {arn}\n"
        );
        let object: DynamicObject = serde_norway::from_str(&text).unwrap();
        kube.block_on(groups.create(&PostParams::default(), &object))
            .unwrap();
    }
    let status = kube.wait_status(&cells, "tg", Duration::from_secs(60), |s| {
        s["phase"] == "Serving" && s["servingVersion"] == "2.0.0"
    });
    assert_eq!(status["targetGroupSource"], "AWSTargetGroup", "{status:#}");
    assert_eq!(
        moto.weights(&listener.arn, 12).unwrap(),
        Some(vec![("web-b1".to_owned(), 100)])
    );
}

/// okra's README ClusterSet makes an Argo CD cluster Secret for the EKS cluster its tags
/// select (moto's EKS), for okra's AWSTargetGroupSet to reach it with an EKS token; the Secret
/// goes when the cluster does.
#[test]
fn a_cluster_set_makes_argo_cd_secrets_for_eks_clusters_found_by_tags() {
    let mut env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).expect("test env");
    let moto = Moto::start(env.dir.path()).unwrap();
    env.extra_env.extend(moto.env());
    let kube = KubeEnv::for_env(&mut env).unwrap();
    kube.install_crds().unwrap();
    let ns = kube.namespace.clone();
    let endpoint = moto.eks_cluster("cdk1", &[("Service", "demo")]).unwrap();
    moto.eks_cluster("other", &[("Service", "batch")]).unwrap();
    start_watching_planner(&mut env, &ns);
    let readme = include_str!("../../examples/okra/management-cluster.yaml");
    let text = readme
        .split("---")
        .find(|d| d.contains("kind: ClusterSet"))
        .unwrap();
    let sets = kube.kind_api("okra.mumo.co", "ClusterSet");
    create(&kube, &sets, serde_norway::from_str::<Value>(text).unwrap());

    let secrets: Api<Secret> = Api::namespaced(kube.client.clone(), &ns);
    let started = Instant::now();
    let secret = loop {
        if let Some(secret) = kube.block_on(secrets.get_opt("cdk1")).unwrap() {
            break secret;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no Secret for cdk1"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let labels = secret.metadata.labels.clone().unwrap();
    assert_eq!(labels["argocd.argoproj.io/secret-type"], "cluster");
    assert_eq!(labels["service"], "demo");
    let data = secret.data.clone().unwrap();
    let text = |k: &str| String::from_utf8(data[k].0.clone()).unwrap();
    assert_eq!(
        (text("name"), text("server")),
        ("cdk1".to_owned(), endpoint.clone())
    );
    let config: Value = serde_json::from_str(&text("config")).unwrap();
    assert_eq!(config["awsAuthConfig"]["clusterName"], "cdk1");
    assert!(kube.block_on(secrets.get_opt("other")).unwrap().is_none());
    let status = kube.wait_status(&sets, "cell1", Duration::from_secs(30), |s| {
        s["clusters"] == json!(["cdk1"])
    });
    assert!(status["message"].is_null(), "{status:#}");

    // A cluster Secret with awsAuthConfig.roleARN is reached as that role: the planner
    // assumes it (moto's STS) and asks EKS for the endpoint as it. The endpoint moto gives
    // does not resolve here, so the set says the cluster could not be read.
    let mark = moto.mark();
    let role = "arn:aws:iam::123456789012:role/okra-member";
    create(
        &kube,
        &secrets,
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "cdk1-as-role", "labels": {"argocd.argoproj.io/secret-type": "cluster", "service": "by-role"}},
            "stringData": {
                "name": "cdk1-as-role",
                "server": endpoint,
                "config": json!({"awsAuthConfig": {"clusterName": "cdk1", "roleARN": role}}).to_string(),
            },
        }),
    );
    let target_group_sets = kube.kind_api("okra.mumo.co", "AWSTargetGroupSet");
    create(
        &kube,
        &target_group_sets,
        json!({
            "apiVersion": "okra.mumo.co/v1alpha1", "kind": "AWSTargetGroupSet",
            "metadata": {"name": "by-role", "namespace": ns},
            "spec": {"generators": [{"awseks": {
                "bindingSelector": {"matchLabels": {"role": "web"}},
                "clusterSelector": {"matchLabels": {"service": "by-role"}},
            }}], "template": {"metadata": {}}},
        }),
    );
    let status = kube.wait_status(
        &target_group_sets,
        "by-role",
        Duration::from_secs(60),
        |s| {
            s["message"]
                .as_str()
                .is_some_and(|m| m.contains("cdk1-as-role"))
        },
    );
    let message = status["message"].as_str().unwrap();
    assert!(
        !message.contains("not supported") && !message.contains("assuming role"),
        "{message}"
    );
    eprintln!("by-role: {message}");
    let actions = moto.actions_since(mark);
    assert!(actions.iter().any(|a| a == "AssumeRole"), "{actions:?}");

    moto.delete_eks_cluster("cdk1").unwrap();
    let started = Instant::now();
    while kube.block_on(secrets.get_opt("cdk1")).unwrap().is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the Secret of a deleted cluster stayed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An experiment whose worker is killed mid-way is taken up by another worker: the job
/// delivered again adopts the same ReplicaSet (never a second one, never deleted and made
/// again), runs its duration anew, and removes it at the end.
#[test]
fn an_experiment_whose_worker_is_killed_is_adopted_by_the_next() {
    let mut env = Env::new(env!("CARGO_BIN_EXE_baton-under-test")).expect("test env");
    let moto = Moto::start(env.dir.path()).unwrap();
    let listener = moto.listener().unwrap();
    env.extra_env.extend(moto.env());
    // A job held by a dead worker goes to another after 2 s.
    env.extra_env
        .push(("BATON_JOB_ACK_WAIT".into(), "2s".into()));
    let kube = KubeEnv::for_env(&mut env).unwrap();
    kube.install_crds().unwrap();
    let ns = kube.namespace.clone();
    start_watching_planner(&mut env, &ns);
    let traffic = env.start_worker("traffic", "traffic", &[]).unwrap();
    env.keep(traffic);
    let mut analysis = env.start_worker("analysis", "analysis", &[]).unwrap();
    let replica_sets: Api<ReplicaSet> = Api::namespaced(kube.client.clone(), &ns);
    let wy = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "wy"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "wy"}},
            "template": {"metadata": {"labels": {"app": "wy"}},
                "spec": {"containers": [{"name": "wy", "image": "mumoshu/wy", "command": ["sleep", "600"]}]}}},
    });
    create(&kube, &replica_sets, wy);
    let seen = ReplicaSetLog::start(kube.client.clone(), &ns);
    let v1 = [("role", "web"), ("okra.mumo.co/version", "1.0.0")];
    moto.target_group(&listener.vpc_id, "web-a1", &v1).unwrap();
    let cells = kube.kind_api("okra.mumo.co", "Cell");
    let steps = "      - setWeight: 50\n      - experiment: {duration: 15s, templates: [{name: wy, specRef: wy}]}\n";
    create(
        &kube,
        &cells,
        canary_cell("ex", &ns, &listener.arn, 16, steps),
    );
    kube.wait_status(&cells, "ex", Duration::from_secs(60), |s| {
        s["servingVersion"] == "1.0.0" && s["phase"] == "Serving"
    });
    let v2 = [("role", "web"), ("okra.mumo.co/version", "2.0.0")];
    moto.target_group(&listener.vpc_id, "web-b1", &v2).unwrap();

    // The experiment's pod is up: its worker dies.
    let name = "ex-2-1-experiment-wy";
    wait_available(&kube, &replica_sets, name);
    analysis.kill9();
    let mut analysis = env.start_worker("analysis-2", "analysis", &[]).unwrap();
    kube.wait_status(&cells, "ex", Duration::from_secs(120), |s| {
        s["servingVersion"] == "2.0.0" && s["phase"] == "Serving"
    });
    // One object from start to end: scaled to zero and deleted once, by the second worker.
    let states = seen.of_deleted(name);
    let deletions = states.iter().filter(|s| **s == RsState::Deleted).count();
    assert_eq!(deletions, 1, "{states:?}");
    assert_ran_and_was_removed(&seen, name);
    let log = std::fs::read_to_string(env.dir.path().join("analysis-2.log")).unwrap_or_default();
    assert!(log.contains("experiment ReplicaSet made"), "{log}");
    assert!(log.contains("experiment ReplicaSet removed"), "{log}");

    // 3.0.0's experiment loses its worker and its rollout is aborted meanwhile: no one
    // removes its ReplicaSet (the next worker drops the cancelled job) until the Cell's next
    // experiment, 4.0.0's, removes what earlier rollouts left.
    let v3 = [("role", "web"), ("okra.mumo.co/version", "3.0.0")];
    moto.target_group(&listener.vpc_id, "web-c1", &v3).unwrap();
    let left = "ex-3-1-experiment-wy";
    wait_available(&kube, &replica_sets, left);
    analysis.kill9();
    let out = env.cli(&["cell", "abort", "ex"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    kube.wait_status(&cells, "ex", Duration::from_secs(60), |s| {
        s["servingVersion"] == "2.0.0" && s["blocked"][0]["version"] == "3.0.0"
    });
    let analysis = env.start_worker("analysis-3", "analysis", &[]).unwrap();
    env.keep(analysis);
    let v4 = [("role", "web"), ("okra.mumo.co/version", "4.0.0")];
    moto.target_group(&listener.vpc_id, "web-d1", &v4).unwrap();
    kube.wait_status(&cells, "ex", Duration::from_secs(120), |s| {
        s["servingVersion"] == "4.0.0" && s["phase"] == "Serving"
    });
    assert_eq!(seen.of_deleted(left).last(), Some(&RsState::Deleted));
    assert_ran_and_was_removed(&seen, "ex-4-1-experiment-wy");
    let log = std::fs::read_to_string(env.dir.path().join("analysis-3.log")).unwrap_or_default();
    assert!(
        log.contains("an earlier rollout's experiment ReplicaSet is removed") && log.contains(left),
        "{log}"
    );
}

/// Waits, at most 90 s, until the ReplicaSet `name` has its one pod available.
fn wait_available(kube: &KubeEnv, api: &Api<ReplicaSet>, name: &str) {
    let started = Instant::now();
    loop {
        let found = kube.block_on(api.get_opt(name)).unwrap();
        if found.is_some_and(|rs| {
            rs.status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .is_some_and(|a| a == 1)
        }) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{name} never had its pod available"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
