//! Unit tests of graph compilation: forward, reverse, rollback and delete graphs.

use super::*;
use baton_schemas::group::ApplicationGroup;
use baton_schemas::wire::Timestamp;
use baton_schemas::{Document, parse_documents};

const BOOKINFO: &str = include_str!("../../../../examples/applicationgroups/bookinfo.yaml");

fn group(text: &str) -> ApplicationGroup {
    match parse_documents("g.yaml", text, Timestamp(0))
        .unwrap()
        .remove(0)
    {
        Document::Group(g) => *g,
        other => panic!("not a group: {other:?}"),
    }
}

fn tasks(text: &str) -> Vec<ReleaseTask> {
    let g = group(text);
    g.spec.tasks(g.name())
}

/// `(name, needs)` of every node, needs sorted.
fn shape(nodes: &[NodeSpec]) -> Vec<(String, Vec<String>)> {
    nodes
        .iter()
        .map(|n| {
            let mut needs: Vec<String> = n.needs.iter().map(|x| x.to_string()).collect();
            needs.sort();
            (n.name.to_string(), needs)
        })
        .collect()
}

fn action(node: &NodeSpec) -> HelmAction {
    node.helm.as_ref().unwrap().action
}

fn owned(list: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
    list.iter()
        .map(|(n, needs)| (n.to_string(), needs.iter().map(|s| s.to_string()).collect()))
        .collect()
}

#[test]
fn bookinfo_forward_graph_follows_dependencies_and_subchart_order() {
    let nodes = forward(&tasks(BOOKINFO)).nodes;
    assert_eq!(
        shape(&nodes),
        owned(&[
            ("ambassador", &[]),
            ("bookinfo-productpage", &["bookinfo-reviews"]),
            (
                "bookinfo-reviews",
                &["bookinfo-details", "bookinfo-ratings"]
            ),
            ("bookinfo-ratings", &["ambassador"]),
            ("bookinfo-details", &["ambassador"]),
            ("bookinfo", &["bookinfo-productpage"]),
        ])
    );
    assert!(
        nodes
            .iter()
            .all(|n| n.kind == NodeKind::Helm && action(n) == HelmAction::Apply)
    );
    // Helm's 5 minutes plus the node's slack.
    assert_eq!(nodes[0].timeout, Some(Duration::from_secs(420)));
}

#[test]
fn bookinfo_reverse_graph_is_the_forward_graph_turned_around() {
    let nodes = reverse(&tasks(BOOKINFO)).nodes;
    assert_eq!(
        shape(&nodes),
        owned(&[
            ("ambassador", &["bookinfo-details", "bookinfo-ratings"]),
            ("bookinfo-productpage", &["bookinfo"]),
            ("bookinfo-reviews", &["bookinfo-productpage"]),
            ("bookinfo-ratings", &["bookinfo-reviews"]),
            ("bookinfo-details", &["bookinfo-reviews"]),
            ("bookinfo", &[]),
        ])
    );
    assert!(nodes.iter().all(|n| action(n) == HelmAction::Uninstall));
}

const TWO: &str = "apiVersion: baton.dev/v1alpha1\nkind: ApplicationGroup\nmetadata: {name: g}\nspec:\n  applications:\n  - name: db\n    spec: {chart: {url: 'https://c.example.com', name: db, version: 1.0.0}, release: {targetNamespace: data}}\n  - name: api\n    dependencies: [db]\n    spec: {chart: {url: 'https://c.example.com', name: api, version: 1.0.0}, release: {targetNamespace: apps}}\n";

#[test]
fn a_rollback_uninstalls_what_was_added_in_reverse_order_then_applies_the_last_spec() {
    let last = tasks(TWO);
    // The failed spec upgraded api, added cache (which db depends on... no: which needs db)
    // and web (which needs api and cache).
    let current_text = TWO.replace("name: api, version: 1.0.0", "name: api, version: 2.0.0")
        + "  - name: cache\n    dependencies: [db]\n    spec: {chart: {url: 'https://c.example.com', name: cache}, release: {targetNamespace: data}}\n  - name: web\n    dependencies: [api, cache]\n    spec: {chart: {url: 'https://c.example.com', name: web}, release: {targetNamespace: apps}}\n";
    let current = tasks(&current_text);
    let nodes = converge(&last, &current).nodes;
    assert_eq!(
        shape(&nodes),
        owned(&[
            ("uninstall-cache", &["uninstall-web"]),
            ("uninstall-web", &[]),
            ("db", &["uninstall-cache", "uninstall-web"]),
            ("api", &["db"]),
        ])
    );
    assert_eq!(action(&nodes[0]), HelmAction::Uninstall);
    assert_eq!(action(&nodes[2]), HelmAction::Apply);
    // The re-applied api is the last successful one, not the one that failed.
    let api = nodes[3].helm.as_ref().unwrap();
    assert_eq!(
        api.chart.as_ref().unwrap().version.as_deref(),
        Some("1.0.0")
    );
}

#[test]
fn a_subchart_split_out_since_is_uninstalled_before_its_parent_is_applied_whole() {
    let whole = BOOKINFO.replace(
        "        subcharts:\n        - name: productpage\n          dependencies: [reviews]\n        - name: reviews\n          dependencies: [details, ratings]\n        - name: ratings\n          dependencies: []\n        - name: details\n          dependencies: []\n",
        "",
    );
    let nodes = converge(&tasks(&whole), &tasks(BOOKINFO)).nodes;
    assert_eq!(
        shape(&nodes),
        owned(&[
            ("uninstall-bookinfo-productpage", &[]),
            (
                "uninstall-bookinfo-reviews",
                &["uninstall-bookinfo-productpage"]
            ),
            (
                "uninstall-bookinfo-ratings",
                &["uninstall-bookinfo-reviews"]
            ),
            (
                "uninstall-bookinfo-details",
                &["uninstall-bookinfo-reviews"]
            ),
            (
                "ambassador",
                &[
                    "uninstall-bookinfo-details",
                    "uninstall-bookinfo-productpage",
                    "uninstall-bookinfo-ratings",
                    "uninstall-bookinfo-reviews"
                ]
            ),
            ("bookinfo", &["ambassador"]),
        ])
    );
    // The parent is applied with its subcharts inside it again.
    let parent = nodes[5].helm.as_ref().unwrap();
    assert_eq!(
        parent.values["productpage"],
        serde_json::json!({"replicaCount": 1})
    );
}

#[test]
fn a_new_spec_uninstalls_what_it_dropped_before_applying_the_rest() {
    let last = tasks(
        &(TWO.to_owned()
            + "  - name: cache\n    dependencies: [db]\n    spec: {chart: {url: 'https://c.example.com', name: cache}, release: {targetNamespace: data}}\n"),
    );
    let nodes = converge(&tasks(TWO), &last).nodes;
    assert_eq!(
        shape(&nodes),
        owned(&[
            ("uninstall-cache", &[]),
            ("db", &["uninstall-cache"]),
            ("api", &["db"]),
        ])
    );
    // Nothing dropped: the forward graph itself.
    assert_eq!(
        shape(&converge(&tasks(TWO), &tasks(TWO)).nodes),
        shape(&forward(&tasks(TWO)).nodes)
    );
}

#[test]
fn delete_also_removes_what_only_the_last_successful_spec_had() {
    let last = tasks(TWO);
    let current = tasks(&TWO.replace("name: api, version", "name: api2, version"));
    let nodes = delete(&current, &last).nodes;
    // api2's release is new; api's (chart api) is only in the last spec, under the same task
    // name: it gets the `previous-` prefix.
    assert_eq!(
        shape(&nodes),
        owned(&[
            ("db", &["api", "previous-api"]),
            ("api", &[]),
            ("previous-api", &[])
        ])
    );
    assert_eq!(nodes[1].helm.as_ref().unwrap().release, "api2");
    assert_eq!(nodes[2].helm.as_ref().unwrap().release, "api");
}

#[test]
fn executors_become_nodes_in_their_order_and_turn_around_on_removal() {
    let text = TWO.replace(
        "release: {targetNamespace: apps}}\n",
        "release: {targetNamespace: apps, timeout: 2m}, workflow: [{name: helmrelease, type: helmrelease}, {name: gate, type: keptn, dependencies: [helmrelease], params: {configMapRef: {name: kc, namespace: keptn}}}, {name: smoke, dependencies: [gate], image: {name: smoke, image: busybox, command: [sh, -c]}, params: {data: {url: x}}}]}\n",
    );
    let all = tasks(&text);
    let nodes = forward(&all).nodes;
    assert_eq!(
        shape(&nodes),
        owned(&[
            ("db", &[]),
            ("api-helmrelease", &["db"]),
            ("api-gate", &["api-helmrelease"]),
            ("api-smoke", &["api-gate"]),
        ])
    );
    assert_eq!(nodes[1].kind, NodeKind::Helm);
    let gate = &nodes[2];
    assert_eq!(gate.kind, NodeKind::Pod);
    assert_eq!(gate.namespace.as_deref(), Some("apps"));
    let container = &gate
        .template
        .as_ref()
        .unwrap()
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(container.image.as_deref(), Some(KEPTN_EXECUTOR_IMAGE));
    let args = container.args.clone().unwrap();
    assert_eq!(
        args[2..8],
        [
            "--action",
            "install",
            "--timeout",
            "2m0s",
            "--interval",
            "1s"
        ]
    );
    assert_eq!(
        args[8..],
        ["--configmap-name", "kc", "--configmap-namespace", "keptn"]
    );
    let spec = base64::engine::general_purpose::STANDARD
        .decode(&args[1])
        .unwrap();
    let release: serde_json::Value = serde_json::from_slice(&spec).unwrap();
    assert_eq!(release["kind"], "HelmRelease");
    assert_eq!(release["spec"]["releaseName"], "api");
    let smoke = &nodes[3]
        .template
        .as_ref()
        .unwrap()
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(
        smoke.command.as_deref(),
        Some(&["sh".to_owned(), "-c".to_owned()][..])
    );
    let args = smoke.args.clone().unwrap();
    assert_eq!(args[8], "--data");
    let data = base64::engine::general_purpose::STANDARD
        .decode(&args[9])
        .unwrap();
    assert_eq!(String::from_utf8(data).unwrap(), r#"{"url":"x"}"#);

    let removal = reverse(&all).nodes;
    assert_eq!(
        shape(&removal),
        owned(&[
            ("db", &["api-helmrelease"]),
            ("api-smoke", &[]),
            ("api-gate", &["api-smoke"]),
            ("api-helmrelease", &["api-gate"]),
        ])
    );
    let args = removal[1]
        .template
        .as_ref()
        .unwrap()
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap();
    assert_eq!(args[3], "delete");
}

/// A group of applications `(name, dependencies)` in namespace `ns`.
fn apps(list: &[(&str, &str)]) -> Vec<ReleaseTask> {
    let mut text = String::from(
        "apiVersion: baton.dev/v1alpha1\nkind: ApplicationGroup\nmetadata: {name: g}\nspec:\n  applications:\n",
    );
    for (name, deps) in list {
        text.push_str(&format!(
            "  - name: {name}\n    dependencies: [{deps}]\n    spec: {{chart: {{url: 'https://c.example.com', name: {name}}}, release: {{targetNamespace: ns}}}}\n"
        ));
    }
    tasks(&text)
}

#[test]
fn removals_keep_their_order_through_releases_kept() {
    // c needs b needs a; b stays, a and c go: c is still uninstalled before a.
    let from = apps(&[("a", ""), ("b", "a"), ("c", "b")]);
    let to = apps(&[("b", "")]);
    assert_eq!(
        shape(&converge(&to, &from).nodes),
        owned(&[
            ("uninstall-a", &["uninstall-c"]),
            ("uninstall-c", &[]),
            ("b", &["uninstall-a", "uninstall-c"]),
        ])
    );
}

/// An application of bookinfo's document that depends on bookinfo.
const WEB: &str = "    - name: web\n      dependencies: [bookinfo]\n      spec: {chart: {url: 'https://c.example.com', name: web}, release: {targetNamespace: web}}\n";

#[test]
fn a_subchart_split_out_of_an_installed_parent_waits_for_the_parent_to_let_it_go() {
    let whole = BOOKINFO.replace(
        "        subcharts:\n        - name: productpage\n          dependencies: [reviews]\n        - name: reviews\n          dependencies: [details, ratings]\n        - name: ratings\n          dependencies: []\n        - name: details\n          dependencies: []\n",
        "",
    ) + WEB;
    let split = BOOKINFO.to_owned() + WEB;
    // The parent, installed whole, owns its subcharts' resources: it is applied with them
    // switched off before their own releases are installed; web still waits for them all.
    let plan = converge(&tasks(&split), &tasks(&whole));
    assert_eq!(
        shape(&plan.nodes),
        owned(&[
            ("ambassador", &[]),
            ("bookinfo-productpage", &["bookinfo", "bookinfo-reviews"]),
            (
                "bookinfo-reviews",
                &["bookinfo", "bookinfo-details", "bookinfo-ratings"]
            ),
            ("bookinfo-ratings", &["ambassador", "bookinfo"]),
            ("bookinfo-details", &["ambassador", "bookinfo"]),
            ("bookinfo", &["ambassador"]),
            ("web", &["bookinfo", "bookinfo-productpage"]),
        ])
    );
    let parent = plan.nodes[5].helm.as_ref().unwrap();
    assert_eq!(
        parent.values["productpage"],
        serde_json::json!({"enabled": false})
    );
    // Installed fresh, or already split: the usual order (subcharts, then the parent).
    for from in [vec![], tasks(&split)] {
        let plan = converge(&tasks(&split), &from);
        assert_eq!(shape(&plan.nodes), shape(&forward(&tasks(&split)).nodes));
    }
}

#[test]
fn a_removal_is_renamed_when_a_new_application_has_its_name() {
    // db is dropped; the new spec has an application called uninstall-db.
    let from = apps(&[("db", ""), ("x", "")]);
    let to = apps(&[("x", ""), ("uninstall-db", "")]);
    let plan = converge(&to, &from);
    assert_eq!(
        shape(&plan.nodes),
        owned(&[
            ("uninstall-db-2", &[]),
            ("x", &["uninstall-db-2"]),
            ("uninstall-db", &["uninstall-db-2"]),
        ])
    );
    assert_eq!(plan.nodes[0].helm.as_ref().unwrap().release, "db");
    assert_eq!(
        plan.nodes[0].helm.as_ref().unwrap().action,
        HelmAction::Uninstall
    );
    assert_eq!(plan.removes[0].1, [NodeName::new("uninstall-db-2")]);
}

#[test]
fn tasks_left_out_along_a_long_chain_are_followed_without_recursion() {
    // A 100 000-long chain of dependencies, only its ends selected: the last still needs the
    // first, through every task left out (a recursive walk overflowed a 2 MiB stack here).
    let base = apps(&[("a", "")]).remove(0);
    let n = 100_000;
    let chain: Vec<ReleaseTask> = (0..n)
        .map(|i| ReleaseTask {
            name: format!("t{i}"),
            needs: if i == 0 {
                vec![]
            } else {
                vec![format!("t{}", i - 1)]
            },
            ..base.clone()
        })
        .collect();
    let last = format!("t{}", n - 1);
    let kept = only(&chain, |t| t.name == "t0" || t.name == last);
    let shape: Vec<(String, Vec<String>)> = kept.into_iter().map(|t| (t.name, t.needs)).collect();
    assert_eq!(shape, owned(&[("t0", &[]), (last.as_str(), &["t0"])]));
}
