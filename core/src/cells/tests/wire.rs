//! Jobs on the wire across versions. `core/src/histories/jobs-v1.jsonl` holds the jobs of
//! [`jobs_of_every_kind`] as the build before jobs carried a typed payload wrote them (made at
//! commit c5b2c4e by this same scenario, serialized with `serde_json::to_string`, one per
//! line). This build must write the same bytes, and read every one of them back: a worker of
//! this version takes the jobs an older planner left in the stream, and the reverse.

use baton_schemas::wire::Work;

use super::*;

const BOOKINFO: &str = include_str!("../../../../examples/applicationgroups/bookinfo.yaml");

/// A workflow with a node of every kind a workflow may hold.
const EVERY_KIND: &str = r#"apiVersion: baton.dev/v1alpha1
kind: Workflow
metadata: {name: every-kind}
spec:
  nodes:
  - {name: nothing, kind: noop}
  - {name: local, kind: exec, command: [sh, -c, "echo hi"], env: {GREETING: hi}, timeout: 30s}
  - name: in-a-pod
    kind: pod
    namespace: jobs
    template: {spec: {containers: [{name: main, image: busybox, command: [echo, hi]}]}}
  - {name: hook, kind: webhook, webhook: {url: "https://hooks.example.com/x", body: "{}"}}
  - {name: say, kind: publish, publish: {subject: releases.done, data: hi}}
"#;

/// Jobs of every kind as the core dispatches them: a Cell's traffic step and its analysis,
/// bookinfo's helm releases, and a workflow's noop, exec, pod, webhook and publish nodes.
pub(crate) fn jobs_of_every_kind() -> Vec<Job> {
    let mut out = Vec::new();
    let mut core = serving_v1(OKRA_README);
    let traffic = only_job(&core.apply(observed(&V1_V2, Some(&RULE_V1), at(10)), at(10)));
    let analysis = only_job(&succeed(&mut core, &traffic, at(11)));
    out.push(traffic);
    out.push(analysis);
    let mut core = Core::new(CoreConfig::default());
    let text = format!("{EVERY_KIND}---\n{BOOKINFO}");
    for doc in parse_documents("every-kind.yaml", &text, T0).unwrap() {
        out.extend(jobs(&core.apply(Input::from(doc), T0)).into_iter().cloned());
    }
    let start = Input::StartRun {
        run: RunId::new("r1"),
        workflow: baton_schemas::WorkflowName::new("every-kind"),
        initiator: "api".into(),
        data: "seed".into(),
    };
    out.extend(jobs(&core.apply(start, T0)).into_iter().cloned());
    out
}

#[test]
fn jobs_are_written_as_the_previous_version_wrote_them_and_read_back() {
    let fixture = include_str!("../../histories/jobs-v1.jsonl");
    let now: Vec<String> = jobs_of_every_kind()
        .iter()
        .map(|j| serde_json::to_string(j).unwrap())
        .collect();
    let before: Vec<&str> = fixture.lines().collect();
    assert_eq!(now, before);
    let mut kinds = Vec::new();
    for line in before {
        let job: Job = serde_json::from_str(line).unwrap();
        assert_eq!(serde_json::to_string(&job).unwrap(), line);
        kinds.push(job.kind());
    }
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        baton_schemas::NodeKind::ALL.to_vec(),
        "a job of every kind"
    );
}

#[test]
fn a_job_of_a_kind_without_its_settings_is_refused_when_read() {
    let line = include_str!("../../histories/jobs-v1.jsonl")
        .lines()
        .find(|l| l.contains("\"kind\":\"exec\""))
        .unwrap();
    let mut job: serde_json::Value = serde_json::from_str(line).unwrap();
    job.as_object_mut().unwrap().remove("exec");
    let error = serde_json::from_value::<Job>(job).unwrap_err().to_string();
    assert_eq!(error, "a job of kind exec without its exec settings");
    // A payload is what its kind says, whatever else a message carries.
    let job: Job = serde_json::from_str(line).unwrap();
    assert!(matches!(job.work, Work::Exec(_)));
}
