//! kstatus conditions for every kind the cluster watch writes status for: `Ready`,
//! `Reconciling` and `Stalled`, with `observedGeneration`, as the Kubernetes community's
//! status convention (kstatus) reads them. `kubectl wait --for=condition=Ready`, Flux's
//! health checks and Argo CD's then understand Baton's objects without a custom check.
//!
//! What each kind's conditions say, from the status the watch writes:
//!
//! | kind | Ready | Reconciling | Stalled |
//! |---|---|---|---|
//! | Workflow | the run succeeded | the run is pending or running | it failed or was cancelled |
//! | Cell | a version serves and no rollout is under way | pending, progressing, paused | degraded: the rollout failed, the stable version got the traffic back |
//! | ApplicationGroup | Orkestra's own `Ready`, kept | forward, rollback, uninstall or delete runs | the group failed |
//! | Task, Ignitor, AnalysisTemplate | registered | never | an ignitor whose schedule fails |
//!
//! Any kind refused (an invalid document) is `Stalled` with the refusal, and not `Ready`.

use serde_json::{Value, json};

/// One condition before it is dated: type, status, reason, message.
type Said = (&'static str, bool, String, String);

/// Adds `observedGeneration` and the kstatus conditions to `status` (what the watch is about
/// to write for an object of `kind` at `generation`), keeping each condition's
/// `lastTransitionTime` from `previous` (the status written before) while its status holds.
pub(super) fn with_conditions(
    kind: &str,
    mut status: Value,
    generation: Option<i64>,
    previous: Option<&Value>,
    now: &str,
) -> Value {
    let said = conditions(kind, &status);
    let earlier = |kind: &str| {
        previous
            .and_then(|p| p["conditions"].as_array())
            .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
            .cloned()
    };
    let mut written: Vec<Value> = match kind {
        // Orkestra's conditions (its `Ready` among them) stay as the group's view makes them.
        "ApplicationGroup" => status["conditions"].as_array().cloned().unwrap_or_default(),
        _ => Vec::new(),
    };
    for (kind, on, reason, message) in said {
        if written.iter().any(|c| c["type"] == kind) {
            continue;
        }
        let value = if on { "True" } else { "False" };
        let since = earlier(kind)
            .filter(|c| c["status"] == value)
            .and_then(|c| c["lastTransitionTime"].as_str().map(str::to_owned))
            .unwrap_or_else(|| now.to_owned());
        let mut condition = json!({
            "type": kind,
            "status": value,
            "reason": reason,
            "message": message,
            "lastTransitionTime": since,
        });
        if let Some(generation) = generation {
            condition["observedGeneration"] = json!(generation);
        }
        written.push(condition);
    }
    status["conditions"] = Value::Array(written);
    if let Some(generation) = generation {
        status["observedGeneration"] = json!(generation);
    }
    status
}

/// The conditions `status` means for `kind`.
fn conditions(kind: &str, status: &Value) -> Vec<Said> {
    if let Some(refused) = status["message"].as_str().filter(|_| kind != "Cell") {
        return vec![
            ("Ready", false, "Refused".into(), refused.to_owned()),
            ("Reconciling", false, "Refused".into(), String::new()),
            ("Stalled", true, "Refused".into(), refused.to_owned()),
        ];
    }
    let text = |key: &str| status[key].as_str().unwrap_or_default().to_owned();
    // (ready, reconciling, stalled, reason, message)
    let (ready, reconciling, stalled, reason, message) = match kind {
        "Workflow" => match status["state"].as_str().unwrap_or("pending") {
            "succeeded" => (
                true,
                false,
                false,
                "Succeeded",
                format!("run {} succeeded", text("run")),
            ),
            "failed" => (false, false, true, "Failed", failure(status)),
            "cancelled" => (
                false,
                false,
                true,
                "Cancelled",
                format!("run {} was cancelled", text("run")),
            ),
            "running" => (
                false,
                true,
                false,
                "Running",
                format!("run {} is running", text("run")),
            ),
            _ => (
                false,
                true,
                false,
                "Pending",
                format!("run {} is starting", text("run")),
            ),
        },
        "Cell" => {
            let message = text("message");
            match status["phase"].as_str().unwrap_or("Pending") {
                "Serving" => (
                    true,
                    false,
                    false,
                    "Serving",
                    format!("version {} serves", text("servingVersion")),
                ),
                "Degraded" => (false, false, true, "Degraded", message),
                "Paused" => (false, true, false, "Paused", message),
                "Progressing" => (
                    false,
                    true,
                    false,
                    "Progressing",
                    format!("rolling out version {}", text("desiredVersion")),
                ),
                _ => (false, true, false, "Pending", message),
            }
        }
        "ApplicationGroup" => {
            let phase = status["phase"].as_str().unwrap_or_default();
            let ready = status["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                .map(|c| c["message"].as_str().unwrap_or_default().to_owned())
                .unwrap_or_default();
            match phase {
                "Succeeded" | "Deleted" => (true, false, false, "Succeeded", ready),
                "Failed" => (false, false, true, "Failed", ready),
                _ => (
                    false,
                    true,
                    false,
                    "Progressing",
                    format!("{phase}: {ready}"),
                ),
            }
        }
        _ => (
            true,
            false,
            false,
            "Registered",
            "registered with the planner".to_owned(),
        ),
    };
    let reason = reason.to_owned();
    vec![
        ("Ready", ready, reason.clone(), message.clone()),
        (
            "Reconciling",
            reconciling,
            reason.clone(),
            if reconciling {
                message.clone()
            } else {
                String::new()
            },
        ),
        (
            "Stalled",
            stalled,
            reason,
            if stalled { message } else { String::new() },
        ),
    ]
}

/// What a failed workflow's status says went wrong.
fn failure(status: &Value) -> String {
    match status["failure"].as_str() {
        Some(failure) => format!(
            "run {} failed: {failure}",
            status["run"].as_str().unwrap_or_default()
        ),
        None => format!("run {} failed", status["run"].as_str().unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(status: &'a Value, kind: &str) -> &'a Value {
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == kind)
            .unwrap()
    }

    #[test]
    fn a_workflow_is_reconciling_then_ready_and_keeps_its_transition_times() {
        let running = with_conditions(
            "Workflow",
            json!({"run": "r1", "state": "running"}),
            Some(3),
            None,
            "T1",
        );
        assert_eq!(find(&running, "Ready")["status"], "False");
        assert_eq!(find(&running, "Reconciling")["status"], "True");
        assert_eq!(find(&running, "Stalled")["status"], "False");
        assert_eq!(running["observedGeneration"], 3);
        assert_eq!(find(&running, "Ready")["observedGeneration"], 3);
        let done = with_conditions(
            "Workflow",
            json!({"run": "r1", "state": "succeeded"}),
            Some(3),
            Some(&running),
            "T2",
        );
        assert_eq!(find(&done, "Ready")["status"], "True");
        assert_eq!(find(&done, "Ready")["lastTransitionTime"], "T2");
        // Stalled was False and stays False: its time is kept.
        assert_eq!(find(&done, "Stalled")["lastTransitionTime"], "T1");
        let failed = with_conditions(
            "Workflow",
            json!({"run": "r2", "state": "failed", "failure": "node migrate: exit status 3"}),
            Some(4),
            None,
            "T3",
        );
        assert_eq!(find(&failed, "Stalled")["status"], "True");
        assert_eq!(
            find(&failed, "Stalled")["message"],
            "run r2 failed: node migrate: exit status 3"
        );
    }

    #[test]
    fn a_refused_object_is_stalled_and_a_groups_own_ready_is_kept() {
        let refused = with_conditions(
            "Task",
            json!({"message": "spec.x: unknown"}),
            Some(1),
            None,
            "T",
        );
        assert_eq!(find(&refused, "Stalled")["status"], "True");
        assert_eq!(find(&refused, "Ready")["status"], "False");
        let group = json!({
            "phase": "RollingBack",
            "conditions": [{"type": "Ready", "status": "False", "reason": "WorkflowFailed", "message": "web failed"}],
        });
        let group = with_conditions("ApplicationGroup", group, Some(2), None, "T");
        assert_eq!(find(&group, "Ready")["reason"], "WorkflowFailed");
        assert_eq!(find(&group, "Reconciling")["status"], "True");
        assert_eq!(group["conditions"].as_array().unwrap().len(), 3);
        let cell = with_conditions(
            "Cell",
            json!({"phase": "Degraded", "message": "analysis failed"}),
            Some(1),
            None,
            "T",
        );
        assert_eq!(find(&cell, "Stalled")["message"], "analysis failed");
    }
}
