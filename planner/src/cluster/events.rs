//! Kubernetes Events for the objects the cluster watch follows, so that `kubectl describe`
//! tells a release's story: a run started and ended, a node failed and why, a group's
//! releases installed or rolled back, a Cell's rollout moved a step, paused, completed or
//! was rolled back. What to say is worked out here from the status written before and the
//! status about to be written (pure); `Sync` publishes it with kube's event recorder.

use std::collections::BTreeSet;

use baton_schemas::status::{RunStatus, State};
use serde_json::Value;

/// One event to publish about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Note {
    /// A warning (something failed) rather than a normal event.
    pub(super) warning: bool,
    /// Why, in PascalCase (`RunFailed`, `RolloutStep`, ...).
    pub(super) reason: &'static str,
    /// What was done, in PascalCase.
    pub(super) action: &'static str,
    /// The message `kubectl describe` shows.
    pub(super) message: String,
}

fn note(warning: bool, reason: &'static str, action: &'static str, message: String) -> Note {
    Note {
        warning,
        reason,
        action,
        // The events API takes at most 1 kB.
        message: message.chars().take(1000).collect(),
    }
}

/// The events between `before` (the status written last, if any) and `after`.
pub(super) fn notes(kind: &str, before: Option<&Value>, after: &Value) -> Vec<Note> {
    let was = |key: &str| before.and_then(|b| b[key].as_str()).unwrap_or_default();
    let now = |key: &str| after[key].as_str().unwrap_or_default();
    let mut out = Vec::new();
    match kind {
        "Workflow" => {
            let run = now("run");
            if now("state") == was("state") && now("run") == was("run") {
                return out;
            }
            match now("state") {
                "pending" | "running" if was("run") != run || before.is_none() => out.push(note(
                    false,
                    "RunStarted",
                    "Run",
                    format!("run {run} started"),
                )),
                "succeeded" => out.push(note(
                    false,
                    "RunSucceeded",
                    "Run",
                    format!("run {run} succeeded"),
                )),
                "failed" => out.push(note(
                    true,
                    "RunFailed",
                    "Run",
                    match after["failure"].as_str() {
                        Some(why) => format!("run {run} failed: {why}"),
                        None => format!("run {run} failed"),
                    },
                )),
                "cancelled" => out.push(note(
                    true,
                    "RunCancelled",
                    "Run",
                    format!("run {run} was cancelled"),
                )),
                _ => {}
            }
        }
        "ApplicationGroup" => {
            // Each release that became ready.
            for (app, release) in releases(after) {
                let ready = |status: &Value| {
                    releases(status)
                        .into_iter()
                        .find(|(a, r)| *a == app && r["release"] == release["release"])
                        .is_some_and(|(_, r)| is_ready(&r))
                };
                if ready(after) && !before.is_some_and(ready) {
                    out.push(note(
                        false,
                        "ReleaseInstalled",
                        "Release",
                        format!(
                            "release {} of application {app} is ready{}",
                            release["release"].as_str().unwrap_or_default(),
                            release["version"]
                                .as_str()
                                .map(|v| format!(" at {v}"))
                                .unwrap_or_default()
                        ),
                    ));
                }
            }
            if now("phase") != was("phase") {
                let ready_message = after["conditions"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                    .and_then(|c| c["message"].as_str())
                    .unwrap_or_default()
                    .to_owned();
                let (warning, reason) = match now("phase") {
                    "Progressing" => (false, "Progressing"),
                    "Succeeded" => (false, "Succeeded"),
                    "RollingBack" => (true, "RollingBack"),
                    "Uninstalling" => (true, "Uninstalling"),
                    "Failed" => (true, "Failed"),
                    "Deleting" => (false, "Deleting"),
                    "Deleted" => (false, "Deleted"),
                    _ => (false, "PhaseChanged"),
                };
                out.push(note(warning, reason, "Reconcile", ready_message));
            }
        }
        "Cell" => {
            let (phase, was_phase) = (now("phase"), was("phase"));
            let step = after["step"].as_u64();
            let weights = weights(after);
            if phase == "Progressing" && was_phase != "Progressing" && was_phase != "Paused" {
                out.push(note(
                    false,
                    "RolloutStarted",
                    "Rollout",
                    format!(
                        "rolling out version {} (serving {})",
                        now("desiredVersion"),
                        now("servingVersion")
                    ),
                ));
            }
            if step.is_some()
                && (step != before.and_then(|b| b["step"].as_u64())
                    || weights != before.map(self::weights).unwrap_or_default())
            {
                out.push(note(
                    false,
                    "RolloutStep",
                    "Rollout",
                    format!("step {}: weights {weights}", step.unwrap_or_default()),
                ));
            }
            if phase != was_phase {
                match phase {
                    "Paused" => out.push(note(
                        false,
                        "RolloutPaused",
                        "Rollout",
                        now("message").to_owned(),
                    )),
                    "Serving" if matches!(was_phase, "Progressing" | "Paused") => out.push(note(
                        false,
                        "RolloutCompleted",
                        "Rollout",
                        format!(
                            "version {} serves: weights {weights}",
                            now("servingVersion")
                        ),
                    )),
                    "Degraded" => out.push(note(
                        true,
                        "RolledBack",
                        "Rollout",
                        now("message").to_owned(),
                    )),
                    _ => {}
                }
            }
        }
        _ => {}
    }
    out
}

/// A `NodeFailed` warning for each node of `run` that failed and was not reported yet (by
/// name and attempts, kept in `reported`).
pub(super) fn failed_nodes(run: &RunStatus, reported: &mut BTreeSet<(String, u32)>) -> Vec<Note> {
    run.nodes
        .iter()
        .filter(|n| n.state == State::Failed)
        .filter(|n| reported.insert((n.name.clone(), n.attempts)))
        .map(|n| {
            let error = n.error.as_deref().unwrap_or("no error recorded");
            note(
                true,
                "NodeFailed",
                "RunNode",
                format!(
                    "run {}: node {} failed after {} attempt(s): {error}",
                    run.run, n.name, n.attempts
                ),
            )
        })
        .collect()
}

/// Each application's releases as `(application, release)`: the application's own release
/// and its subcharts'.
fn releases(status: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for app in status["applications"].as_array().into_iter().flatten() {
        let name = app["name"].as_str().unwrap_or_default().to_owned();
        // An application's own release is flattened into it (`release` is its name).
        if app["release"].is_string() {
            out.push((name.clone(), app.clone()));
        }
        for (_, release) in app["subcharts"].as_object().into_iter().flatten() {
            out.push((name.clone(), release.clone()));
        }
    }
    out
}

fn is_ready(release: &Value) -> bool {
    release["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// A Cell's weights as `version=weight,...`.
fn weights(status: &Value) -> String {
    status["weights"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            let who = w["version"]
                .as_str()
                .or(w["name"].as_str())
                .unwrap_or_default();
            format!("{who}={}", w["weight"])
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reasons(notes: &[Note]) -> Vec<&'static str> {
        notes.iter().map(|n| n.reason).collect()
    }

    #[test]
    fn a_workflow_says_started_once_and_how_it_ended() {
        let started = json!({"run": "r1", "state": "pending"});
        assert_eq!(reasons(&notes("Workflow", None, &started)), ["RunStarted"]);
        let running = json!({"run": "r1", "state": "running"});
        assert!(notes("Workflow", Some(&started), &running).is_empty());
        let failed = json!({"run": "r1", "state": "failed", "failure": "node a: boom"});
        let said = notes("Workflow", Some(&running), &failed);
        assert_eq!(reasons(&said), ["RunFailed"]);
        assert!(said[0].warning && said[0].message.ends_with("node a: boom"));
        assert!(notes("Workflow", Some(&failed), &failed).is_empty());
    }

    #[test]
    fn a_cell_says_each_step_the_pause_and_the_rollback() {
        let serving = json!({"phase": "Serving", "servingVersion": "1", "weights": [{"version": "1", "weight": 100}]});
        let step = json!({"phase": "Progressing", "servingVersion": "1", "desiredVersion": "2", "step": 0,
            "weights": [{"version": "1", "weight": 80}, {"version": "2", "weight": 20}]});
        assert_eq!(
            reasons(&notes("Cell", Some(&serving), &step)),
            ["RolloutStarted", "RolloutStep"]
        );
        let mut paused = step.clone();
        paused["phase"] = json!("Paused");
        paused["step"] = json!(2);
        paused["message"] = json!("waiting for a person");
        assert_eq!(
            reasons(&notes("Cell", Some(&step), &paused)),
            ["RolloutStep", "RolloutPaused"]
        );
        let degraded = json!({"phase": "Degraded", "message": "analysis failed: error rate 0.2", "weights": [{"version": "1", "weight": 100}]});
        let said = notes("Cell", Some(&paused), &degraded);
        assert_eq!(reasons(&said), ["RolledBack"]);
        assert!(said[0].warning);
    }

    #[test]
    fn a_group_says_each_release_ready_and_its_phases() {
        let app = |ready: &str| {
            json!({"name": "db", "release": "db", "namespace": "ns", "version": "1.0.0",
            "conditions": [{"type": "Ready", "status": ready}]})
        };
        let progressing = json!({"phase": "Progressing", "applications": [app("Unknown")]});
        let done = json!({"phase": "Succeeded", "applications": [app("True")],
            "conditions": [{"type": "Ready", "status": "True", "message": "all released"}]});
        assert_eq!(
            reasons(&notes("ApplicationGroup", None, &progressing)),
            ["Progressing"]
        );
        let said = notes("ApplicationGroup", Some(&progressing), &done);
        assert_eq!(reasons(&said), ["ReleaseInstalled", "Succeeded"]);
        assert_eq!(
            said[0].message,
            "release db of application db is ready at 1.0.0"
        );
    }

    #[test]
    fn failed_nodes_are_reported_once_per_attempt_count() {
        let node = |state, attempts| baton_schemas::status::NodeStatus {
            name: "migrate".into(),
            state,
            attempts,
            output: None,
            error: Some("exit status 3".into()),
            started_at: None,
            finished_at: None,
            needs: Vec::new(),
            touches: None,
        };
        let run = |n| RunStatus {
            run: "r".into(),
            workflow: "w".into(),
            state: State::Failed,
            error: None,
            nodes: vec![n],
        };
        let mut reported = BTreeSet::new();
        assert!(failed_nodes(&run(node(State::Running, 1)), &mut reported).is_empty());
        let said = failed_nodes(&run(node(State::Failed, 3)), &mut reported);
        assert_eq!(
            said[0].message,
            "run r: node migrate failed after 3 attempt(s): exit status 3"
        );
        assert!(failed_nodes(&run(node(State::Failed, 3)), &mut reported).is_empty());
    }
}
