//! `Task` and `Ignitor`: Orca's documents (`sirocco.cloud/v1alpha1`, accepted verbatim) and
//! Baton's (`baton.dev/v1alpha1`, the same fields plus Baton's extensions).
//!
//! A task is a pod started when an ignitor fires (`startOnIgnition`), when another task
//! succeeds (`startOnSuccess`) or fails (`startOnFailure`) — any one of them (OR) — or when all
//! of `startOnAll` have ended as listed in the same chain (AND). Each ignition starts a chain,
//! which Baton runs as one run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::workflow::{Metadata, PodTemplateSpec, Retries};
use crate::{Duration, null_as_default};

/// Orca's API version, accepted verbatim.
pub const ORCA_API_VERSION: &str = "sirocco.cloud/v1alpha1";

/// The longest chain a task may extend unless its `chainLimit` says otherwise.
pub const DEFAULT_CHAIN_LIMIT: u32 = 100;

/// A `Task` document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Task {
    /// `sirocco.cloud/v1alpha1` or `baton.dev/v1alpha1`.
    pub api_version: String,
    /// Always `Task`.
    pub kind: String,
    /// The object's name.
    pub metadata: Metadata,
    /// What the task runs and when.
    pub spec: TaskSpec,
    /// What a cluster reported; ignored on input.
    #[serde(default, skip_serializing)]
    pub status: Option<serde_json::Value>,
}

/// When a task starts and what it runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskSpec {
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Ignitors whose fire starts this task.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(with = "Vec<String>")]
    pub start_on_ignition: Vec<String>,
    /// Tasks whose success starts this task (any one of them).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(with = "Vec<String>")]
    pub start_on_success: Vec<String>,
    /// Tasks whose failure starts this task (any one of them). Any non-zero exit code, an OOM
    /// kill, an image that never pulls or a timeout is a failure.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(with = "Vec<String>")]
    pub start_on_failure: Vec<String>,
    /// Tasks that must all have ended as listed, in the same chain, before this task starts.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(with = "Vec<Condition>")]
    pub start_on_all: Vec<Condition>,
    /// What a start does while this task already runs. Default: `Forbid` for Orca's
    /// documents (Orca skipped a start while the task's pod ran), `Allow` for Baton's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<ConcurrencyPolicy>,
    /// How many task runs one chain may hold before this task refuses to extend it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_limit: Option<u32>,
    /// Actions run when the task succeeds.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(with = "Vec<ActionEntry>")]
    pub success_actions: Vec<ActionEntry>,
    /// Actions run when the task fails.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(with = "Vec<ActionEntry>")]
    pub failure_actions: Vec<ActionEntry>,
    /// The pod, used whole.
    pub template: PodTemplateSpec,
    /// The pod's namespace (default: the worker's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The container whose termination message is the task's output (default: the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// How long one run of the pod may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Retries of a failed pod before the task counts as failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
}

/// One requirement of `startOnAll`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// The task.
    pub task: String,
    /// How it must have ended. Orca's files call it `on`, which Baton still reads; but YAML
    /// 1.1 (kubectl, go-yaml, PyYAML) reads a plain `on` key as the boolean `true`, so a
    /// document applied with kubectl must say `outcome`.
    #[serde(alias = "on")]
    pub outcome: Outcome,
}

/// How a task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// It succeeded.
    Success,
    /// It failed.
    Failure,
}

/// What a start does while the task already runs (in any chain).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Both run. The default of `baton.dev` Tasks.
    Allow,
    /// The new start is refused and recorded in its chain as a skipped step. The default of
    /// Orca's Tasks, as Orca skipped a start while the task's pod ran.
    Forbid,
    /// The running one is cancelled and the new one starts.
    Replace,
}

/// An entry of `successActions` or `failureActions`: a typed action, or a name (Orca's
/// plugins). Baton has no plugins: in an Orca document a name is dropped with a warning (as
/// Orca dropped names it did not know), in a Baton document it is refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ActionEntry {
    /// A typed action.
    Typed(Action),
    /// An Orca plugin name, which does nothing.
    Named(String),
}

impl schemars::JsonSchema for ActionEntry {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ActionEntry".into()
    }

    // A string or an object: Kubernetes' structural schemas cannot say "one of a string and
    // an object", so the API server keeps the value and Baton's validation judges it.
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A typed action ({webhook: {url, method, headers, body}} or {publish: {subject, data}}); an Orca plugin name is dropped with a warning.",
            "x-kubernetes-preserve-unknown-fields": true,
        })
    }
}

/// A typed action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Action {
    /// An HTTP request.
    Webhook(Webhook),
    /// A NATS message.
    Publish(Publish),
}

/// An HTTP request. Without a `body`, it sends Orca's `{"id": <task>, "message":
/// "SUCCESS"|"FAILURE"}` plus `run` and `data` (the task's output, or its error when it
/// failed without one).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Webhook {
    /// Where to send it (http or https).
    pub url: String,
    /// The method (default POST).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Extra headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The body (default: Orca's JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// A NATS message on a subject.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Publish {
    /// The subject.
    pub subject: String,
    /// The message (default: Orca's JSON, as for webhooks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

impl Task {
    /// Whether this is an Orca document (`sirocco.cloud/v1alpha1`), which keeps Orca's
    /// defaults.
    pub fn is_orca(&self) -> bool {
        self.api_version == ORCA_API_VERSION
    }

    /// What a start does while this task already runs: as written, or the default of the
    /// document's API version.
    pub fn concurrency_policy(&self) -> ConcurrencyPolicy {
        self.spec.concurrency_policy.unwrap_or(if self.is_orca() {
            ConcurrencyPolicy::Forbid
        } else {
            ConcurrencyPolicy::Allow
        })
    }
}

/// An `Ignitor` document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ignitor {
    /// `sirocco.cloud/v1alpha1` or `baton.dev/v1alpha1`.
    pub api_version: String,
    /// Always `Ignitor`.
    pub kind: String,
    /// The object's name.
    pub metadata: Metadata,
    /// When it fires.
    pub spec: IgnitorSpec,
    /// What a cluster reported; ignored on input.
    #[serde(default, skip_serializing)]
    pub status: Option<serde_json::Value>,
}

/// When an ignitor fires and what it passes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IgnitorSpec {
    /// Free text (Orca's examples have it though Orca's type did not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `NOW`, an RFC 3339 time in the future, or a cron expression.
    pub scheduled: String,
    /// The IANA time zone cron fields are read in (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Passed to the first tasks as `ORCA_DATA` / `BATON_DATA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Missed fires: after downtime, a cron ignitor fires once for the latest time it missed,
    /// unless that time is older than this; then it waits for the next time. Default: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use crate::wire::Timestamp;
    use crate::{Document, parse_documents};

    const NOW: Timestamp = Timestamp(1_800_000_000_000);
    const README: &str = include_str!("../../examples/orca/README-documents.yaml");

    /// The warnings of a document that parses, as `baton apply` prints them.
    fn warnings(doc: &Document) -> Vec<String> {
        crate::validate::warnings(doc)
            .iter()
            .map(|w| w.to_string())
            .collect()
    }

    #[test]
    fn plugin_names_are_dropped_with_a_warning_in_orca_documents_and_refused_in_batons() {
        let text = "apiVersion: sirocco.cloud/v1alpha1\nkind: Task\nmetadata: {name: t}\nspec:\n  successActions: [sirocco-demo-alert-success]\n  failureActions: [SIROCCO-DEMO-ALERT-FAILURE, {webhook: {url: 'http://127.0.0.1:9/'}}, MY-PLUGIN]\n  template: {spec: {containers: [{name: main, image: busybox}]}}\n";
        let docs = parse_documents("t.yaml", text, NOW).unwrap();
        let lines = warnings(&docs[0]);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[0].starts_with("spec.successActions[0]: Orca's demo plugin \"sirocco-demo-alert-success\" posted to a demo bot's hard-coded URL; Baton drops it; for a call, write {webhook: {url: https://...}}"),
            "{lines:?}"
        );
        assert!(lines[1].starts_with("spec.failureActions[0]: Orca's demo plugin"));
        assert!(
            lines[2].starts_with("spec.failureActions[2]: plugin \"MY-PLUGIN\" is unknown (Baton has no plugins) and is dropped"),
            "{lines:?}"
        );

        let baton = text.replace("sirocco.cloud", "baton.dev");
        let errors = parse_documents("t.yaml", &baton, NOW).unwrap_err();
        let lines: Vec<String> = errors.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[2].starts_with(
                "spec.failureActions[2]: unknown action \"MY-PLUGIN\": Baton has no plugins"
            ),
            "{lines:?}"
        );
    }

    #[test]
    fn orcas_readme_documents_parse_and_the_placeholder_plugin_is_dropped_with_a_warning() {
        let errors = parse_documents("orca.yaml", README, NOW).unwrap_err();
        let lines: Vec<String> = errors.errors.iter().map(|e| e.to_string()).collect();
        // Kubernetes refuses these container names too (they must be DNS-1123 labels): Baton
        // says so before anything runs, with the rest of what it found.
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with(
            "(document 1) spec.template.spec.containers[0].name: invalid container name \"continerName1\""
        ));
        assert!(lines[1].starts_with(
            "(document 2) spec.template.spec.containers[0].name: invalid container name \"continerName2\""
        ));
        let named = README.replace("continerName", "container-");
        let docs = parse_documents("orca.yaml", &named, NOW).unwrap();
        let kinds: Vec<String> = docs.iter().map(Document::describe).collect();
        assert_eq!(kinds, ["Task/task1", "Task/task2", "Ignitor/ignitor1"]);
        let Document::Task(task1) = &docs[0] else {
            panic!()
        };
        assert_eq!(task1.spec.start_on_ignition, ["ignitor1"]);
        assert_eq!(task1.spec.start_on_failure, ["task1"]);
        assert!(task1.spec.start_on_success.is_empty() && task1.spec.success_actions.is_empty());
        let dropped = warnings(&docs[0]);
        assert_eq!(dropped.len(), 1);
        assert!(
            dropped[0]
                .starts_with("spec.failureActions[0]: plugin \"YOUR-PLUGIN-NAME\" is unknown"),
            "{dropped:?}"
        );
        let Document::Task(task2) = &docs[1] else {
            panic!()
        };
        assert_eq!(task2.spec.start_on_success, ["task1"]);
        assert!(warnings(&docs[1]).is_empty());
    }

    #[test]
    fn orca_tasks_skip_a_start_while_running_and_baton_tasks_allow_it_by_default() {
        use crate::task::ConcurrencyPolicy;
        let task = |version: &str, policy: &str| {
            let text = format!(
                "apiVersion: {version}\nkind: Task\nmetadata: {{name: t}}\nspec:\n{policy}  template: {{spec: {{containers: [{{name: main, image: busybox}}]}}}}\n"
            );
            match parse_documents("t.yaml", &text, NOW).unwrap().remove(0) {
                Document::Task(t) => t.concurrency_policy(),
                _ => panic!(),
            }
        };
        assert_eq!(
            task("sirocco.cloud/v1alpha1", ""),
            ConcurrencyPolicy::Forbid
        );
        assert_eq!(task("baton.dev/v1alpha1", ""), ConcurrencyPolicy::Allow);
        let allow = "  concurrencyPolicy: Allow\n";
        assert_eq!(
            task("sirocco.cloud/v1alpha1", allow),
            ConcurrencyPolicy::Allow
        );
    }

    #[test]
    fn ignitor_schedules_are_checked_when_applied() {
        let ignitor = |scheduled: &str| {
            format!(
                "apiVersion: sirocco.cloud/v1alpha1\nkind: Ignitor\nmetadata: {{name: ig}}\nspec: {{scheduled: \"{scheduled}\", data: hello}}\n"
            )
        };
        assert!(parse_documents("i.yaml", &ignitor("5 * * * *"), NOW).is_ok());
        let past = parse_documents("i.yaml", &ignitor("2020-02-03T19:34:05Z"), NOW)
            .unwrap_err()
            .to_string();
        assert!(
            past.starts_with("i.yaml: spec.scheduled: 2020-02-03T19:34:05Z is in the past"),
            "{past}"
        );
        let garbage = parse_documents("i.yaml", &ignitor("whenever"), NOW)
            .unwrap_err()
            .to_string();
        assert!(
            garbage.contains(
                "spec.scheduled: \"whenever\" is not NOW, an RFC 3339 time, or a cron expression"
            ),
            "{garbage}"
        );
    }

    #[test]
    fn typed_actions_and_all_of_conditions() {
        let text = r#"apiVersion: baton.dev/v1alpha1
kind: Task
metadata: {name: deploy}
spec:
  startOnAll: [{task: build, on: success}, {task: scan, outcome: success}]
  concurrencyPolicy: Forbid
  chainLimit: 5
  successActions: [{webhook: {url: "http://127.0.0.1:9/hook"}}, {publish: {subject: deploys.done}}]
  failureActions: [{webhook: {url: "ftp://x"}}, {publish: {subject: "a.*"}}]
  template: {spec: {containers: [{name: main, image: busybox}]}}
"#;
        let errors = parse_documents("t.yaml", text, NOW)
            .unwrap_err()
            .to_string();
        let lines: Vec<&str> = errors.lines().collect();
        assert_eq!(
            lines,
            [
                "t.yaml: spec.failureActions[0].webhook.url: \"ftp://x\" is not an http or https URL",
                "t.yaml: spec.failureActions[1].publish.subject: \"a.*\" is not a NATS subject to publish on",
            ]
        );
    }
}
