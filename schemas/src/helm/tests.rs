use super::*;

fn spec(url: &str, version: Option<&str>) -> HelmSpec {
    HelmSpec {
        action: HelmAction::Apply,
        release: "web".into(),
        namespace: "apps".into(),
        chart: Some(HelmChart {
            url: url.into(),
            name: "nginx".into(),
            version: version.map(str::to_owned),
            auth_secret_ref: None,
            subchart: None,
        }),
        values: serde_json::from_value(json!({"replicas": 2})).unwrap(),
        values_from: vec![],
        values_from_scope: None,
        driver: None,
        timeout: Some(Duration::from_secs(90)),
        interval: None,
        install: None,
        upgrade: Some(json!({"force": true, "remediation": {"retries": 2}})),
        rollback: None,
        uninstall: None,
        labels: BTreeMap::from([("app".into(), "web".into())]),
    }
}

#[test]
fn helm_nodes_in_workflows_are_checked() {
    let text = |helm: &str| {
        format!(
            "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: w}}\nspec:\n  nodes:\n  - {{name: a, kind: helm{helm}}}\n"
        )
    };
    let errors = |helm: &str| -> Vec<String> {
        match crate::parse_documents("w.yaml", &text(helm), crate::wire::Timestamp(0)) {
            Ok(_) => vec![],
            Err(e) => e.to_string().lines().map(str::to_owned).collect(),
        }
    };
    assert!(
        errors(", helm: {release: web, namespace: apps, chart: {url: 'oci://r.io/c', name: web}}")
            .is_empty()
    );
    assert!(errors(", helm: {action: uninstall, release: web, namespace: apps}").is_empty());
    assert_eq!(
        errors(""),
        [
            "w.yaml: spec.nodes[0].helm: a helm node needs helm: {release, namespace, chart: {url, name}}"
        ]
    );
    assert_eq!(
        errors(", helm: {release: Web_1, namespace: apps, timeout: 0s}"),
        [
            "w.yaml: spec.nodes[0].helm.release: invalid release name \"Web_1\": use at most 53 lowercase letters, digits, '-' and '.'",
            "w.yaml: spec.nodes[0].helm.chart: an apply needs a chart: {url, name, version}",
            "w.yaml: spec.nodes[0].helm.timeout: must be longer than zero",
        ]
    );
    assert_eq!(
        errors(", command: [x], helm: {action: uninstall, release: web, namespace: apps}"),
        ["w.yaml: spec.nodes[0].command: only exec nodes take this field"]
    );
}

#[test]
fn go_durations() {
    assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
    assert_eq!(go_duration(Duration::from_secs(5400)), "1h30m0s");
    assert_eq!(go_duration(Duration::from_secs(7)), "7s");
    assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
    assert_eq!(go_duration(Duration::from_millis(1500)), "1.500s");
}

#[test]
fn a_helm_repository_chart_renders_a_helm_repository_and_a_release() {
    let (source, release) = spec("https://charts.example.com", Some("1.2.3")).flux_objects(
        &BTreeMap::from([("baton.dev/job".into(), "r.n.1".into())]),
        None,
    );
    assert_eq!(source["kind"], "HelmRepository");
    assert_eq!(source["spec"]["url"], "https://charts.example.com");
    assert_eq!(source["metadata"]["namespace"], "apps");
    assert_eq!(release["apiVersion"], "helm.toolkit.fluxcd.io/v2");
    let spec = &release["spec"];
    assert_eq!(spec["releaseName"], "web");
    assert_eq!(spec["targetNamespace"], "apps");
    assert_eq!(spec["timeout"], "1m30s");
    assert_eq!(spec["chart"]["spec"]["chart"], "nginx");
    assert_eq!(spec["chart"]["spec"]["version"], "1.2.3");
    assert_eq!(spec["chart"]["spec"]["sourceRef"]["name"], "apps-web");
    assert_eq!(source["metadata"]["name"], "apps-web");
    assert_eq!(spec["values"]["replicas"], 2);
    assert_eq!(spec["upgrade"]["force"], true);
    assert_eq!(release["metadata"]["annotations"]["baton.dev/job"], "r.n.1");
}

#[test]
fn an_oci_chart_renders_an_oci_repository_and_a_chart_ref() {
    let (source, release) =
        spec("oci://ghcr.io/org/charts/", Some("^1.0")).flux_objects(&BTreeMap::new(), None);
    assert_eq!(source["kind"], "OCIRepository");
    assert_eq!(source["spec"]["url"], "oci://ghcr.io/org/charts/nginx");
    assert_eq!(source["spec"]["ref"], json!({"semver": "^1.0"}));
    assert_eq!(release["spec"]["chartRef"]["kind"], "OCIRepository");
    assert!(release["spec"].get("chart").is_none());
}

#[test]
fn a_subchart_asks_for_its_own_newest_version_not_the_parents() {
    let mut sub = spec("https://charts.example.com", Some("1.2.3"));
    sub.chart.as_mut().unwrap().subchart = Some("reviews".into());
    let (_, release) = sub.flux_objects(&BTreeMap::new(), None);
    assert_eq!(release["spec"]["chart"]["spec"]["chart"], "reviews");
    assert_eq!(release["spec"]["chart"]["spec"]["version"], "*");
    let mut oci = spec("oci://ghcr.io/org/charts", Some("1.2.3"));
    oci.chart.as_mut().unwrap().subchart = Some("reviews".into());
    let (source, _) = oci.flux_objects(&BTreeMap::new(), None);
    assert_eq!(source["spec"]["url"], "oci://ghcr.io/org/charts/reviews");
    assert_eq!(source["spec"]["ref"], json!({"semver": "*"}));
}

#[test]
fn a_subchart_is_read_from_the_planners_chart_repository_when_it_serves_one() {
    let mut sub = spec("https://charts.example.com/", Some("1.2.3"));
    sub.chart.as_mut().unwrap().subchart = Some("reviews".into());
    let path = sub.chart.as_ref().unwrap().subchart_repository_path();
    assert_eq!(path.len(), 16);
    // The same parent at another version, or another parent, has another path.
    let other = HelmChart {
        version: Some("1.2.4".into()),
        ..sub.chart.clone().unwrap()
    };
    assert_ne!(other.subchart_repository_path(), path);
    let (source, release) = sub.flux_objects(&BTreeMap::new(), Some("http://baton:8080/charts/"));
    assert_eq!(
        source["spec"]["url"],
        format!("http://baton:8080/charts/{path}")
    );
    assert_eq!(release["spec"]["chart"]["spec"]["chart"], "reviews");
    assert_eq!(release["spec"]["chart"]["spec"]["version"], ">=0.0.0-0");
    // The parent itself is read from its own repository.
    sub.chart.as_mut().unwrap().subchart = None;
    let (source, release) = sub.flux_objects(&BTreeMap::new(), Some("http://baton:8080/charts"));
    assert_eq!(source["spec"]["url"], "https://charts.example.com/");
    assert_eq!(release["spec"]["chart"]["spec"]["version"], "1.2.3");
}

#[test]
fn sources_of_one_release_name_in_two_namespaces_stay_apart() {
    // Both sources sit in the namespace of the credentials Secret.
    let secret = SecretRef {
        name: "creds".into(),
        namespace: "flux-system".into(),
    };
    let mut a = spec("https://charts.example.com", None);
    a.chart.as_mut().unwrap().auth_secret_ref = Some(secret.clone());
    let mut b = a.clone();
    b.namespace = "other".into();
    let (source_a, release_a) = a.flux_objects(&BTreeMap::new(), None);
    let (source_b, _) = b.flux_objects(&BTreeMap::new(), None);
    assert_eq!(source_a["metadata"]["namespace"], "flux-system");
    assert_eq!(source_b["metadata"]["namespace"], "flux-system");
    assert_ne!(source_a["metadata"]["name"], source_b["metadata"]["name"]);
    assert_eq!(
        release_a["spec"]["chart"]["spec"]["sourceRef"],
        json!({"kind": "HelmRepository", "name": "apps-web", "namespace": "flux-system"})
    );
    let mut long = a.clone();
    long.namespace = "n".repeat(63);
    let name = long.source_name();
    assert_eq!(name.len(), 63);
    assert!(crate::ids::is_dns_label(&name), "{name}");
}

#[test]
fn values_scopes_cut_a_subchart_and_switch_it_off_in_the_parent() {
    let values: Map<String, Value> = serde_json::from_value(
        json!({"global": {"region": "eu"}, "reviews": {"replicas": 2}, "port": 80}),
    )
    .unwrap();
    let sub = ValuesScope::Subchart {
        name: "reviews".into(),
    };
    assert_eq!(
        Value::Object(sub.cut(&values)),
        json!({"replicas": 2, "global": {"region": "eu"}})
    );
    let parent = ValuesScope::Parent {
        subcharts: vec!["reviews".into(), "ratings".into()],
    };
    assert_eq!(
        Value::Object(parent.cut(&values)),
        json!({"global": {"region": "eu"}, "reviews": {"enabled": false}, "ratings": {"enabled": false}, "port": 80})
    );
    // Flux merges valuesFrom over the whole values: a subchart's part cannot be taken.
    let mut s = spec("https://x.example.com", None);
    s.values_from = vec![ValuesReference {
        kind: ValuesKind::Secret,
        name: "v".into(),
        values_key: None,
        target_path: None,
        optional: false,
    }];
    assert!(s.flux_values_problem().is_none());
    s.values_from_scope = Some(sub);
    assert!(s.flux_values_problem().is_some());
    s.values_from_scope = Some(parent);
    assert!(s.flux_values_problem().is_none());
}

#[test]
fn remediation_retries_follow_flux() {
    let s = spec("https://x", None);
    assert_eq!(s.remediation_retries(Deploy::Upgrade), Some(2));
    assert_eq!(s.remediation_retries(Deploy::Install), Some(0));
    let mut unlimited = s.clone();
    unlimited.install = Some(json!({"remediation": {"retries": -1}}));
    assert_eq!(unlimited.remediation_retries(Deploy::Install), None);
}

#[test]
fn values_merge_deeply() {
    let mut base: Map<String, Value> =
        serde_json::from_value(json!({"a": {"b": 1, "c": 2}, "d": [1]})).unwrap();
    let overlay: Map<String, Value> =
        serde_json::from_value(json!({"a": {"c": 3}, "d": [2], "e": null})).unwrap();
    merge_values(&mut base, &overlay);
    assert_eq!(
        Value::Object(base),
        json!({"a": {"b": 1, "c": 3}, "d": [2], "e": null})
    );
}
