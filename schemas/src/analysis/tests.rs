//! Unit tests of analysis templates, their arguments and their metrics.

use super::*;

fn metric(query: &str) -> Metric {
    Metric {
        name: "rate".into(),
        interval: None,
        initial_delay: None,
        count: None,
        failure_limit: None,
        inconclusive_limit: None,
        consecutive_error_limit: None,
        success_condition: Some("result[0] > 0.9".into()),
        failure_condition: None,
        provider: Provider {
            prometheus: Some(PrometheusProvider {
                address: "http://prom:9090".into(),
                query: query.into(),
                timeout: None,
            }),
            ..Provider::default()
        },
    }
}

#[test]
fn placeholders_are_found_and_filled() {
    let text = "rate{service=\"{{args.service-name}}\",v=\"{{ args.version }}\"}";
    assert_eq!(placeholders(text), ["service-name", "version"]);
    let args = BTreeMap::from([
        ("service-name".to_owned(), "web".to_owned()),
        ("version".to_owned(), "2.0.0".to_owned()),
    ]);
    assert_eq!(fill(text, &args), "rate{service=\"web\",v=\"2.0.0\"}");
    assert_eq!(fill("{{args.other}} {{x", &args), "{{args.other}} {{x");
}

#[test]
fn templates_resolve_with_values_defaults_and_fields() {
    let template = AnalysisTemplateSpec {
        args: vec![
            ArgDeclaration {
                name: "service-name".into(),
                value: None,
                value_from: None,
            },
            ArgDeclaration {
                name: "cluster-version".into(),
                value: Some("0.0.0".into()),
                value_from: None,
            },
        ],
        metrics: vec![metric(
            "up{job=\"{{args.service-name}}\",version=\"{{args.cluster-version}}\"}",
        )],
    };
    let spec = AnalysisSpec {
        templates: vec![TemplateRef {
            template_name: "success-rate".into(),
            cluster_scope: None,
        }],
        args: vec![
            Arg {
                name: "service-name".into(),
                value: Some("web".into()),
                value_from: None,
            },
            Arg {
                name: "cluster-version".into(),
                value: None,
                value_from: Some(ValueFrom {
                    field_ref: Some(FieldRef {
                        field_path: "status.desiredVersion".into(),
                    }),
                    secret_key_ref: None,
                }),
            },
        ],
        metrics: vec![],
        namespace: None,
        experiment: None,
    };
    let fields = BTreeMap::from([("status.desiredVersion".to_owned(), "2.0.0".to_owned())]);
    let find = |name: &str| (name == "success-rate").then(|| template.clone());
    let metrics = resolve(&spec, find, &fields).unwrap();
    assert_eq!(
        metrics[0].provider.prometheus.as_ref().unwrap().query,
        "up{job=\"web\",version=\"2.0.0\"}"
    );
    // The default applies when the caller gives nothing.
    let defaults = AnalysisSpec {
        args: spec.args[..1].to_vec(),
        ..spec.clone()
    };
    let metrics = resolve(&defaults, find, &fields).unwrap();
    assert!(
        metrics[0]
            .provider
            .prometheus
            .as_ref()
            .unwrap()
            .query
            .contains("0.0.0")
    );
    let missing = AnalysisSpec {
        args: vec![],
        ..spec.clone()
    };
    assert_eq!(
        resolve(&missing, find, &fields).unwrap_err(),
        "AnalysisTemplate \"success-rate\" needs argument \"service-name\", which has no value"
    );
    let unknown = AnalysisSpec {
        templates: vec![TemplateRef {
            template_name: "nope".into(),
            cluster_scope: None,
        }],
        ..spec
    };
    assert_eq!(
        resolve(&unknown, find, &fields).unwrap_err(),
        "AnalysisTemplate \"nope\" is not registered"
    );
}

#[test]
fn metric_problems_name_their_fields() {
    let mut m = metric("up{job=\"{{args.job}}\"}");
    m.interval = Some(Duration::from_secs(5));
    m.success_condition = Some("result[0] >".into());
    // A template's metric may measure until stopped (background analysis)...
    let errors = metric_problems(
        "spec.metrics",
        std::slice::from_ref(&m),
        Some(&BTreeSet::new()),
    );
    let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        lines,
        [
            "spec.metrics[0].successCondition: the condition ends too early",
            "spec.metrics[0].provider: uses {{args.job}}, which is not declared: declare it in spec.args",
        ]
    );
    assert!(
        unbounded_problem(std::slice::from_ref(&m))
            .unwrap()
            .starts_with("metric rate has an interval and no count")
    );
    // ...a step's or a node's inline metric must end.
    let lines: Vec<String> = metric_problems("steps[1].analysis.metrics", &[m], None)
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        lines[0],
        "steps[1].analysis.metrics[0].count: a metric with an interval needs a count: an analysis that never ends would hold its rollout forever"
    );
}

#[test]
fn a_web_check_json_path_is_read_as_its_users_write_it_and_refused_when_broken() {
    for written in ["$.data.ok", "{$.data.ok}", ".data.ok", "$.items[0]['a-b']"] {
        assert!(json_path(written).is_ok(), "{written}");
    }
    let mut m = metric("up");
    m.provider.prometheus = None;
    m.provider.web = Some(WebProvider {
        url: "http://127.0.0.1:1/health".into(),
        method: None,
        headers: Vec::new(),
        body: None,
        json_path: Some("$.data[".into()),
        timeout_seconds: None,
    });
    let errors = metric_problems("spec.metrics", &[m], None);
    let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0]
            .starts_with("spec.metrics[0].provider.web.jsonPath: \"$.data[\" is not a JSONPath"),
        "{lines:?}"
    );
}

/// Parses one document, or returns its errors as lines.
fn parsed(text: &str) -> Result<AnalysisTemplate, Vec<String>> {
    let now = crate::wire::Timestamp(1_800_000_000_000);
    match crate::parse_documents("t.yaml", text, now) {
        Ok(mut docs) => match docs.remove(0) {
            crate::Document::AnalysisTemplate(t) => Ok(*t),
            other => panic!("{other:?}"),
        },
        Err(e) => Err(e.errors.iter().map(|e| e.to_string()).collect()),
    }
}

#[test]
fn argo_rollouts_cloudwatch_and_datadog_templates_are_read_as_argo_writes_them() {
    let cloudwatch = parsed(
        r#"apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: cloudwatch-error-rate, namespace: apps}
spec:
  args:
  - name: load-balancer
  metrics:
  - name: error-rate
    interval: 1m
    count: "5"
    successCondition: "len(result[0].Values) >= 5 and all(result[0].Values, {# <= 0.01})"
    failureLimit: 3
    provider:
      cloudWatch:
        interval: 5m
        metricDataQueries:
        - id: rate
          expression: errors / requests
        - id: errors
          metricStat:
            metric:
              namespace: AWS/ApplicationELB
              metricName: HTTPCode_Target_5XX_Count
              dimensions:
              - {name: LoadBalancer, value: "{{args.load-balancer}}"}
            period: "300"
            stat: Sum
            unit: Count
          returnData: false
        - id: requests
          metricStat:
            metric: {namespace: AWS/ApplicationELB, metricName: RequestCount}
            period: 300
            stat: Sum
          returnData: false
"#,
    )
    .unwrap();
    let metric = &cloudwatch.spec.metrics[0];
    assert_eq!((metric.count, metric.failure_limit), (Some(5), Some(3)));
    let queries = &metric
        .provider
        .cloud_watch
        .as_ref()
        .unwrap()
        .metric_data_queries;
    assert_eq!(
        queries[1].metric_stat.as_ref().unwrap().period,
        Seconds(300)
    );
    let filled = metric.filled(&BTreeMap::from([(
        "load-balancer".to_owned(),
        "app/web/1".to_owned(),
    )]));
    let stat = filled.provider.cloud_watch.unwrap().metric_data_queries[1].clone();
    assert_eq!(
        stat.metric_stat.unwrap().metric.dimensions[0].value,
        "app/web/1"
    );

    let datadog = parsed(
        r#"apiVersion: argoproj.io/v1alpha1
kind: ClusterAnalysisTemplate
metadata: {name: loq-error-rate}
spec:
  args:
  - name: service-name
  - name: api-token
    valueFrom:
      secretKeyRef: {name: token-secret, key: apiToken}
  metrics:
  - name: error-rate
    interval: 5m
    count: 3
    successCondition: default(result, 0) < 0.05
    provider:
      datadog:
        apiVersion: v2
        interval: 5m
        queries:
          a: sum:requests.errors{service:{{args.service-name}}}.as_count()
          b: sum:requests{service:{{args.service-name}}}.as_count()
        formula: "a / b"
  - name: health
    provider:
      web:
        url: http://example.com/health
        headers: [{key: Authorization, value: "Bearer {{args.api-token}}"}]
        jsonBody: {check: deep}
        insecure: false
"#,
    )
    .unwrap();
    assert_eq!(datadog.kind, "ClusterAnalysisTemplate");
    let web = datadog.spec.metrics[1].provider.web.clone().unwrap();
    assert_eq!(web.body.as_deref(), Some(r#"{"check":"deep"}"#));
    // A Secret's value is never in the resolved metric: a marker the worker fills.
    let spec = AnalysisSpec {
        templates: vec![TemplateRef {
            template_name: "loq-error-rate".into(),
            cluster_scope: Some(true),
        }],
        args: vec![Arg {
            name: "service-name".into(),
            value: Some("web".into()),
            value_from: None,
        }],
        ..AnalysisSpec::default()
    };
    let find = |_: &str| Some(datadog.spec.clone());
    let metrics = resolve(&spec, find, &BTreeMap::new()).unwrap();
    let header = &metrics[1].provider.web.as_ref().unwrap().headers[0].value;
    assert_eq!(header, "Bearer {{secret:token-secret:apiToken}}");
    let markers = secret_markers(header);
    assert_eq!(markers[0].1.name, "token-secret");
    assert_eq!(markers[0].1.key, "apiToken");
    let (queries, formula) = metrics[0].provider.datadog.as_ref().unwrap().v2_queries();
    assert_eq!(queries["a"], "sum:requests.errors{service:web}.as_count()");
    assert_eq!(formula, "a / b");
}

#[test]
fn what_baton_cannot_measure_is_refused_with_its_path() {
    let errors = parsed(
        r#"apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: mixed}
spec:
  dryRun: [{metricName: rate}]
  metrics:
  - name: rate
    count: "{{args.count}}"
    provider:
      newRelic: {query: "SELECT 1"}
  - name: check
    provider:
      web: {url: "https://example.com", insecure: true}
  - name: dd
    provider:
      datadog: {apiVersion: v2, queries: {a: x, b: y}}
  - name: cw
    provider:
      cloudWatch:
        metricDataQueries:
        - {id: Rate, metricStat: {metric: {metricName: m}, period: 7, stat: Sum}}
"#,
    )
    .unwrap_err();
    assert_eq!(
        errors,
        [
            "spec.dryRun: not supported: Baton has no dry run: a metric that fails fails its analysis",
            "spec.metrics[0].count: \"{{args.count}}\": Baton takes a whole number here (not an argument)",
            "spec.metrics[0].provider.newRelic: Baton has no newRelic provider; it measures with prometheus, web, cloudWatch, datadog",
            "spec.metrics[1].provider.web.insecure: Baton always verifies TLS certificates",
        ]
    );
    let errors = parsed(
        r#"apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: mixed}
spec:
  metrics:
  - name: dd
    provider:
      datadog: {apiVersion: v2, queries: {a: x, b: y}}
  - name: cw
    provider:
      cloudWatch:
        metricDataQueries:
        - {id: Rate, metricStat: {metric: {metricName: m}, period: 7, stat: Sum}}
"#,
    )
    .unwrap_err();
    assert_eq!(
        errors,
        [
            "spec.metrics[0].provider.datadog.formula: missing: several queries need a formula that combines them",
            "spec.metrics[1].provider.cloudWatch.metricDataQueries[0].id: \"Rate\": an id starts with a lowercase letter, then letters, digits and '_'",
            "spec.metrics[1].provider.cloudWatch.metricDataQueries[0].metricStat.period: 7: CloudWatch takes 1, 5, 10, 30 or a multiple of 60 seconds",
        ]
    );
}

#[test]
fn only_a_secret_key_ref_makes_a_secret_marker() {
    // Written in a metric, the marker is refused with its path...
    let mut m = metric("up");
    m.provider.prometheus.as_mut().unwrap().query = "up{k=\"{{secret:db:password}}\"}".into();
    let lines: Vec<String> = metric_problems("spec.metrics", &[m], None)
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert!(
        lines[0]
            .starts_with("spec.metrics[0].provider: {{secret:...}} is how Baton carries a Secret"),
        "{lines:?}"
    );
    // ...and a value that holds one (a field read from a target group's tags) is refused
    // when the analysis is resolved.
    let template = AnalysisTemplateSpec {
        args: vec![ArgDeclaration {
            name: "version".into(),
            value: None,
            value_from: None,
        }],
        metrics: vec![metric("up{v=\"{{args.version}}\"}")],
    };
    let spec = AnalysisSpec {
        templates: vec![TemplateRef {
            template_name: "t".into(),
            cluster_scope: None,
        }],
        args: vec![Arg {
            name: "version".into(),
            value: None,
            value_from: Some(ValueFrom {
                field_ref: Some(FieldRef {
                    field_path: "status.desiredVersion".into(),
                }),
                secret_key_ref: None,
            }),
        }],
        ..AnalysisSpec::default()
    };
    let fields = BTreeMap::from([(
        "status.desiredVersion".to_owned(),
        "{{secret:db:password}}".to_owned(),
    )]);
    let refused = resolve(&spec, |_| Some(template.clone()), &fields).unwrap_err();
    assert!(
        refused.contains("holds {{secret:, which only a secretKeyRef may"),
        "{refused}"
    );
    // A document may not choose the namespace Secrets are read in.
    let chosen = AnalysisSpec {
        namespace: Some("kube-system".into()),
        ..spec
    };
    let lines: Vec<String> = spec_problems("spec.nodes[0].analysis", &chosen, true)
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        lines[0],
        "spec.nodes[0].analysis.namespace: set by Baton (a Cell's own namespace), not by a document"
    );
}
