//! Unit tests of ApplicationGroup parsing, naming, the task model and validation.

use super::*;
use crate::wire::Timestamp;
use crate::{Document, parse_documents};
use serde_json::json;

const BOOKINFO: &str = include_str!("../../../examples/applicationgroups/bookinfo.yaml");

fn group(text: &str) -> ApplicationGroup {
    match parse_documents("g.yaml", text, Timestamp(0)) {
        Ok(mut docs) => match docs.remove(0) {
            Document::Group(g) => *g,
            other => panic!("not a group: {other:?}"),
        },
        Err(e) => panic!("{e}"),
    }
}

fn errors(text: &str) -> Vec<String> {
    parse_documents("g.yaml", text, Timestamp(0))
        .unwrap_err()
        .to_string()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A group of applications given as `(name, dependencies, extra spec lines)`.
fn apps(list: &[(&str, &str, &str)]) -> String {
    let mut text = String::from(
        "apiVersion: baton.dev/v1alpha1\nkind: ApplicationGroup\nmetadata: {name: g}\nspec:\n  applications:\n",
    );
    for (name, deps, extra) in list {
        text.push_str(&format!(
            "  - name: {name}\n    dependencies: [{deps}]\n    spec:\n      chart: {{url: 'https://charts.example.com', name: {name}, version: 1.0.0}}\n      release: {{targetNamespace: ns}}\n{extra}"
        ));
    }
    text
}

#[test]
fn orkestras_bookinfo_parses_verbatim() {
    let g = group(BOOKINFO);
    assert_eq!(g.api_version, "orkestra.azure.microsoft.com/v1alpha1");
    assert_eq!(g.metadata.name, "bookinfo");
    let names: Vec<&str> = g
        .spec
        .applications
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["ambassador", "bookinfo"]);
    let bookinfo = &g.spec.applications[1];
    assert_eq!(bookinfo.dependencies, ["ambassador"]);
    assert_eq!(bookinfo.spec.subcharts.len(), 4);
    assert_eq!(bookinfo.spec.release.upgrade, Some(json!({"force": true})));
}

#[test]
fn bookinfo_tasks_split_subcharts_and_order_them() {
    let g = group(BOOKINFO);
    let tasks = g.spec.tasks("bookinfo");
    let view: Vec<(&str, Vec<&str>)> = tasks
        .iter()
        .map(|t| {
            (
                t.name.as_str(),
                t.needs.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        view,
        [
            ("ambassador", vec![]),
            ("bookinfo-productpage", vec!["bookinfo-reviews"]),
            (
                "bookinfo-reviews",
                vec!["bookinfo-details", "bookinfo-ratings"]
            ),
            ("bookinfo-ratings", vec!["ambassador"]),
            ("bookinfo-details", vec!["ambassador"]),
            ("bookinfo", vec!["bookinfo-productpage"]),
        ]
    );
    // Orkestra's release names: the chart's name, and the hashed application name for a
    // subchart.
    let releases: Vec<&str> = tasks.iter().map(|t| t.helm.release.as_str()).collect();
    assert_eq!(releases[0], "ambassador");
    assert_eq!(releases[5], "bookinfo");
    assert_eq!(
        releases[1],
        subchart_release_name("bookinfo", "productpage")
    );
    assert!(releases[1].ends_with("-productpage") && releases[1].len() == 10 + 1 + 11);
    // Values: the subchart gets its own map, the parent has it switched off.
    let productpage = &tasks[1];
    assert_eq!(
        Value::Object(productpage.helm.values.clone()),
        json!({"replicaCount": 1})
    );
    assert_eq!(
        productpage.helm.chart.as_ref().unwrap().subchart.as_deref(),
        Some("productpage")
    );
    let parent = &tasks[5];
    assert_eq!(parent.helm.values["productpage"], json!({"enabled": false}));
    assert_eq!(parent.helm.values["ratings"], json!({"enabled": false}));
    assert_eq!(parent.helm.namespace, "bookinfo");
    assert_eq!(parent.helm.labels[GROUP_LABEL], "bookinfo");
    assert_eq!(productpage.helm.labels[SUBCHART_LABEL], "productpage");
    assert!(!parent.helm.labels.contains_key(SUBCHART_LABEL));
}

#[test]
fn global_values_go_to_every_subchart() {
    let text = apps(&[(
        "shop",
        "",
        "      subcharts: [{name: cart}, {name: pay, dependencies: [cart]}]\n      parentOrder: first\n",
    )])
    .replace(
        "release: {targetNamespace: ns}",
        "release: {targetNamespace: ns, values: {global: {region: eu}, cart: {size: 2}, replicas: 3}}",
    );
    let g = group(&text);
    let tasks = g.spec.tasks("g");
    let by_name = |n: &str| tasks.iter().find(|t| t.name == n).unwrap();
    assert_eq!(
        Value::Object(by_name("shop-cart").helm.values.clone()),
        json!({"size": 2, "global": {"region": "eu"}})
    );
    assert_eq!(
        Value::Object(by_name("shop-pay").helm.values.clone()),
        json!({"global": {"region": "eu"}})
    );
    assert_eq!(
        Value::Object(by_name("shop").helm.values.clone()),
        json!({"global": {"region": "eu"}, "cart": {"enabled": false}, "pay": {"enabled": false}, "replicas": 3})
    );
    // parentOrder: first — the parent goes before the subcharts that need nothing else.
    assert_eq!(by_name("shop-cart").needs, ["shop"]);
    assert_eq!(by_name("shop-pay").needs, ["shop-cart"]);
    assert!(by_name("shop").needs.is_empty());
}

#[test]
fn parallel_parents_have_no_order_and_dependents_wait_for_all() {
    let text = apps(&[
        (
            "shop",
            "",
            "      subcharts: [{name: cart}]\n      parentOrder: parallel\n",
        ),
        ("web", "shop", ""),
    ]);
    let tasks = group(&text).spec.tasks("g");
    let needs = |n: &str| tasks.iter().find(|t| t.name == n).unwrap().needs.clone();
    assert!(needs("shop").is_empty() && needs("shop-cart").is_empty());
    assert_eq!(needs("web"), ["shop-cart", "shop"]);
}

#[test]
fn unknown_dependencies_duplicates_and_self_references_name_their_path() {
    let e = errors(&apps(&[("a", "b", ""), ("a", "", ""), ("c", "c", "")]));
    assert_eq!(
        e,
        [
            "g.yaml: spec.applications[1].name: duplicate application name \"a\" (first used at spec.applications[0])",
            "g.yaml: spec.applications[0].dependencies[0]: unknown application \"b\"",
            "g.yaml: spec.applications[2].dependencies[0]: application \"c\" cannot depend on itself",
        ]
    );
}

#[test]
fn a_cycle_is_printed() {
    let e = errors(&apps(&[
        ("a", "c", ""),
        ("b", "a", ""),
        ("c", "b", ""),
        ("d", "", ""),
    ]));
    assert_eq!(
        e,
        ["g.yaml: spec.applications[0].dependencies: cycle: a -> c -> b -> a"]
    );
    let e = errors(&apps(&[(
        "a",
        "",
        "      subcharts: [{name: x, dependencies: [y]}, {name: y, dependencies: [x]}, {name: z, dependencies: [w]}]\n",
    )]));
    assert_eq!(
        e,
        [
            "g.yaml: spec.applications[0].spec.subcharts[2].dependencies[0]: unknown subchart \"w\"",
            "g.yaml: spec.applications[0].spec.subcharts[0].dependencies: cycle: x -> y -> x",
        ]
    );
}

#[test]
fn two_releases_of_one_name_in_one_namespace_are_refused() {
    // Two applications of one chart in one namespace: Orkestra names both releases after
    // the chart, and the second would overwrite the first.
    let text =
        apps(&[("a", "", ""), ("b", "", "")]).replace("name: b, version", "name: a, version");
    let e = errors(&text);
    assert_eq!(
        e,
        [
            "g.yaml: spec.applications[1].spec.chart.name: release \"a\" in namespace \"ns\" is also the release of spec.applications[0]; set spec.release.releaseName to tell them apart"
        ]
    );
    // A release name of its own tells them apart.
    let fixed = text.replacen(
        "release: {targetNamespace: ns}",
        "release: {targetNamespace: ns, releaseName: a-two}",
        2,
    );
    let fixed = fixed.replacen("releaseName: a-two", "releaseName: a-one", 1);
    assert!(parse_documents("g.yaml", &fixed, Timestamp(0)).is_ok());
}

#[test]
fn node_names_of_two_tasks_must_differ() {
    let text = apps(&[("a", "", "      subcharts: [{name: b}]\n"), ("a-b", "", "")]);
    let e = errors(&text);
    assert_eq!(
        e,
        [
            "g.yaml: spec.applications[1].name: \"a-b\" is also the name of spec.applications[0].spec.subcharts[0]: rename one of them"
        ]
    );
}

#[test]
fn node_names_of_every_compiled_graph_must_differ() {
    // Application `a`'s executor `b` is node `a-b`, as is application `a-b`.
    let text = apps(&[
        (
            "a",
            "",
            "      workflow: [{name: helmrelease, type: helmrelease}, {name: b, dependencies: [helmrelease], image: busybox}]\n",
        ),
        ("a-b", "", ""),
    ]);
    assert_eq!(
        errors(&text),
        [
            "g.yaml: spec.applications[1].name: the node \"a-b\" (of \"a-b\") is also the node of \"a-b\" at spec.applications[0]: rename one of them"
        ]
    );
    // Names of 63 characters are valid; `uninstall-` ahead of them is cut with a hash, so
    // two that differ only at the end stay apart.
    let long = |c: char| format!("{}{c}", "x".repeat(62));
    let text = apps(&[(&long('a'), "", ""), (&long('b'), "", "")])
        .replace(
            "release: {targetNamespace: ns}",
            "release: {targetNamespace: ns, releaseName: r}",
        )
        .replacen("releaseName: r}", "releaseName: r1}", 1)
        .replacen("releaseName: r}", "releaseName: r2}", 1);
    assert!(
        parse_documents("g.yaml", &text, Timestamp(0)).is_ok(),
        "{:?}",
        parse_documents("g.yaml", &text, Timestamp(0)).err()
    );
    let removal = |c| node_name(REMOVAL_PREFIX, &long(c));
    assert_ne!(removal('a'), removal('b'));
    assert_eq!(removal('a').len(), 63);
}

#[test]
fn a_release_name_collision_points_at_the_field_that_made_the_name() {
    let text = apps(&[("a", "", ""), ("b", "", "")]).replacen(
        "release: {targetNamespace: ns}",
        "release: {targetNamespace: ns, releaseName: b}",
        1,
    );
    // a's release is named by releaseName, b's by its chart: b's chart name is the field.
    assert_eq!(
        errors(&text),
        [
            "g.yaml: spec.applications[1].spec.chart.name: release \"b\" in namespace \"ns\" is also the release of spec.applications[0]; set spec.release.releaseName to tell them apart"
        ]
    );
    let text = apps(&[("a", "", ""), ("b", "", "")]).replace(
        "release: {targetNamespace: ns}",
        "release: {targetNamespace: ns, releaseName: same}",
    );
    assert_eq!(
        errors(&text),
        [
            "g.yaml: spec.applications[1].spec.release.releaseName: release \"same\" in namespace \"ns\" is also the release of spec.applications[0]; set spec.release.releaseName to tell them apart"
        ]
    );
    let text = apps(&[("a", "", "")]).replace(
        "release: {targetNamespace: ns}",
        "release: {targetNamespace: ns, releaseName: Not_A_Name}",
    );
    assert_eq!(
        errors(&text),
        [
            "g.yaml: spec.applications[0].spec.release.releaseName: release name \"Not_A_Name\" is not one Helm accepts (use at most 53 lowercase letters, digits, '-' and '.'); set spec.release.releaseName"
        ]
    );
}

#[test]
fn values_from_is_cut_for_subcharts_and_refused_to_flux() {
    let text = apps(&[("shop", "", "      subcharts: [{name: cart}]\n")]).replace(
        "release: {targetNamespace: ns}",
        "release: {targetNamespace: ns, valuesFrom: [{kind: Secret, name: shop-values}]}",
    );
    let g = group(&text);
    let tasks = g.spec.tasks("g");
    let by_name = |n: &str| tasks.iter().find(|t| t.name == n).unwrap();
    assert_eq!(
        by_name("shop-cart").helm.values_from_scope,
        Some(ValuesScope::Subchart {
            name: "cart".into()
        })
    );
    assert_eq!(
        by_name("shop").helm.values_from_scope,
        Some(ValuesScope::Parent {
            subcharts: vec!["cart".into()]
        })
    );
    assert_eq!(by_name("shop-cart").helm.values_from.len(), 1);
    let flux = text.replace(
        "spec:\n  applications:",
        "spec:\n  driver: flux\n  applications:",
    );
    assert_eq!(
        errors(&flux),
        [
            "g.yaml: spec.applications[0].spec.release.valuesFrom: valuesFrom cannot be given to an application split into subcharts with the flux driver (a HelmRelease merges valuesFrom into the whole values, a subchart's release needs only its part): use the cli driver, or move those values into values"
        ]
    );
    // Flux splits subcharts of http(s) repositories without credentials only (the planner
    // serves them); the cli driver takes any.
    let oci = apps(&[("shop", "", "      subcharts: [{name: cart}]\n")])
        .replace("'https://charts.example.com'", "'oci://ghcr.io/org/charts'");
    assert!(parse_documents("g.yaml", &oci, Timestamp(0)).is_ok());
    let oci_flux = oci.replace(
        "spec:\n  applications:",
        "spec:\n  driver: flux\n  applications:",
    );
    assert_eq!(
        errors(&oci_flux),
        [format!(
            "g.yaml: spec.applications[0].spec.chart: {}",
            crate::helm::SUBCHARTS_NOT_SERVED
        )]
    );
    // So is a range, and a URL with credentials in it.
    let http_flux = oci_flux.replace("'oci://ghcr.io/org/charts'", "'https://charts.example.com'");
    assert!(parse_documents("g.yaml", &http_flux, Timestamp(0)).is_ok());
    for (from, to) in [
        ("version: 1.0.0", "version: ^1.0"),
        (
            "'https://charts.example.com'",
            "'https://u:p@charts.example.com'",
        ),
    ] {
        let refused = http_flux.replace(from, to);
        assert_eq!(errors(&refused).len(), 1, "{refused}");
    }
    // An application not split keeps valuesFrom whole, with either driver.
    let whole = apps(&[("shop", "", "")])
        .replace(
            "release: {targetNamespace: ns}",
            "release: {targetNamespace: ns, valuesFrom: [{kind: Secret, name: shop-values}]}",
        )
        .replace(
            "spec:\n  applications:",
            "spec:\n  driver: flux\n  applications:",
        );
    let g = group(&whole);
    assert_eq!(g.spec.tasks("g")[0].helm.values_from_scope, None);
}

#[test]
fn executors_are_checked() {
    let text = apps(&[(
        "a",
        "",
        "      workflow:\n      - {name: helmrelease, type: helmrelease, params: nil}\n      - {name: keptn, type: keptn, dependencies: [helmrelease], params: {configmapRef: {name: cfg, namespace: orkestra}}}\n      - {name: check, dependencies: [helmrelease], image: {name: check, image: busybox}}\n",
    )]);
    let g = group(&text);
    let workflow = &g.spec.applications[0].spec.workflow;
    assert_eq!(
        workflow[1].config_map_ref(),
        Some(("cfg".into(), "orkestra".into()))
    );
    assert_eq!(workflow[2].kind(), Some(ExecutorType::Custom));
    let bad = apps(&[(
        "a",
        "",
        "      workflow:\n      - {name: keptn, type: keptn}\n      - {name: x, dependencies: [nope]}\n",
    )]);
    assert_eq!(
        errors(&bad),
        [
            "g.yaml: spec.applications[0].spec.workflow[0].params.configMapRef: a keptn executor needs params.configMapRef (or configmapRef) with the name and namespace of its ConfigMap",
            "g.yaml: spec.applications[0].spec.workflow[1].dependencies[0]: unknown executor \"nope\"",
            "g.yaml: spec.applications[0].spec.workflow[1].type: missing: helmrelease, keptn or custom (custom needs an image)",
        ]
    );
}

#[test]
fn missing_namespace_bad_url_and_unknown_fields() {
    let text = apps(&[("a", "", "")])
        .replace("release: {targetNamespace: ns}", "release: {}")
        .replace("https://charts.example.com", "ftp://x");
    assert_eq!(
        errors(&text),
        [
            "g.yaml: spec.applications[0].spec.chart.url: \"ftp://x\" is not a Helm repository URL (http:// or https://) or an OCI registry path (oci://)",
            "g.yaml: spec.applications[0].spec.release.targetNamespace: missing: the namespace the release goes to",
        ]
    );
    let typo = apps(&[("a", "", "")]).replace("release: {", "release: {targetNamespaec: x, ");
    let e = errors(&typo);
    assert!(e[0].starts_with("g.yaml: spec.applications[0].spec.release.targetNamespaec: unknown field `targetNamespaec`"), "{e:?}");
}

#[test]
fn dns1123_follows_orkestra() {
    assert_eq!(dns1123("My_Chart"), "my-chart");
    assert_eq!(dns1123("stable/nginx"), "stable-nginx");
    assert_eq!(dns1123("--x"), "x");
    assert_eq!(dns1123("__").len(), 63);
    assert_eq!(dns1123(&"a".repeat(80)).len(), 63);
    // The first ten hex digits of SHA-256("bookinfo").
    assert_eq!(
        subchart_release_name("bookinfo", "ratings"),
        format!("{}-ratings", &sha256_hex("bookinfo")[..10])
    );
    assert_eq!(&sha256_hex("abc")[..16], "ba7816bf8f01cfea");
}

#[test]
fn an_application_too_large_for_a_job_is_refused_with_its_path() {
    // 600 KB of inline values: every job releasing the application would carry them.
    let text = apps(&[("web", "", "")]).replace(
        "release: {targetNamespace: ns}",
        &format!(
            "release: {{targetNamespace: ns, values: {{blob: {}}}}}",
            "x".repeat(600 * 1024)
        ),
    );
    let found = errors(&text);
    assert!(
        found[0].starts_with("g.yaml: spec.applications[0]: its settings are")
            && found[0].ends_with("above the 524288 bytes a job may carry"),
        "{found:?}"
    );
}
