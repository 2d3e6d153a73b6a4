//! The watch streams' events (`GET /v1/runs/{run}/watch`, `/v1/cells/{name}/watch`,
//! `/v1/groups/{name}/watch`), as server-sent events: `event: <kind>` and `data: <JSON>`.
//!
//! A run's stream opens with `snapshot` (the whole [`RunStatus`]), then sends `node` (a
//! node's whole [`NodeStatus`], when anything of it changed or it is new) and `run` (the
//! [`RunHeader`], when the run's state or error changed), and ends with `end` (the header)
//! once the run has ended. A Cell's or group's stream sends its whole view (`cell`, `group`)
//! at the start and whenever it changed, and `deleted` when it is gone.

use serde::{Deserialize, Serialize};

use crate::status::{NodeStatus, RunStatus, State};

/// A run without its nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunHeader {
    /// The run id.
    pub run: String,
    /// The workflow's name.
    pub workflow: String,
    /// The run's state.
    pub state: State,
    /// Why the run failed as a whole, before any node could.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RunStatus {
    /// The run without its nodes.
    pub fn header(&self) -> RunHeader {
        RunHeader {
            run: self.run.clone(),
            workflow: self.workflow.clone(),
            state: self.state,
            error: self.error.clone(),
        }
    }
}

/// One event of a run's watch stream.
#[derive(Clone, Debug, PartialEq)]
pub enum RunEvent {
    /// The whole run, first.
    Snapshot(RunStatus),
    /// A node changed or appeared.
    Node(NodeStatus),
    /// The run's state or error changed.
    Run(RunHeader),
    /// The run ended; nothing follows.
    End(RunHeader),
}

impl RunEvent {
    /// The event's name on the stream.
    pub fn kind(&self) -> &'static str {
        match self {
            RunEvent::Snapshot(_) => "snapshot",
            RunEvent::Node(_) => "node",
            RunEvent::Run(_) => "run",
            RunEvent::End(_) => "end",
        }
    }

    /// The event's data.
    pub fn data(&self) -> String {
        let json = match self {
            RunEvent::Snapshot(s) => serde_json::to_string(s),
            RunEvent::Node(n) => serde_json::to_string(n),
            RunEvent::Run(h) | RunEvent::End(h) => serde_json::to_string(h),
        };
        json.expect("status types serialize")
    }

    /// Reads an event from its name and data; `None` for a name this build does not know
    /// (a newer server's), which a client skips.
    pub fn parse(kind: &str, data: &str) -> Option<Result<RunEvent, serde_json::Error>> {
        Some(match kind {
            "snapshot" => serde_json::from_str(data).map(RunEvent::Snapshot),
            "node" => serde_json::from_str(data).map(RunEvent::Node),
            "run" => serde_json::from_str(data).map(RunEvent::Run),
            "end" => serde_json::from_str(data).map(RunEvent::End),
            _ => return None,
        })
    }
}

/// Returns the events that take a watcher from `before` to `after`: each node that changed
/// or is new, then the run's header if it changed, then `end` if the run has ended.
pub fn run_events(before: &RunStatus, after: &RunStatus) -> Vec<RunEvent> {
    let mut events: Vec<RunEvent> = after
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, node)| {
            // Nodes keep their place (spec order; a chain or Cell only adds at the end).
            match before.nodes.get(*i) {
                Some(old) if old.name == node.name => old != *node,
                _ => before.nodes.iter().all(|old| old != *node),
            }
        })
        .map(|(_, node)| RunEvent::Node(node.clone()))
        .collect();
    let header = after.header();
    if before.header() != header {
        events.push(RunEvent::Run(header.clone()));
    }
    if after.state.is_terminal() {
        events.push(RunEvent::End(header));
    }
    events
}

/// Applies `event` to `status` (a client's copy): what the watcher sees after it.
pub fn apply_run_event(status: &mut RunStatus, event: &RunEvent) {
    match event {
        RunEvent::Snapshot(s) => *status = s.clone(),
        RunEvent::Node(node) => match status.nodes.iter_mut().find(|n| n.name == node.name) {
            Some(n) => *n = node.clone(),
            None => status.nodes.push(node.clone()),
        },
        RunEvent::Run(h) | RunEvent::End(h) => {
            status.state = h.state;
            status.error = h.error.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, state: State, attempts: u32) -> NodeStatus {
        NodeStatus {
            name: name.into(),
            state,
            attempts,
            output: None,
            error: None,
            started_at: None,
            finished_at: None,
            needs: Vec::new(),
            touches: None,
        }
    }

    fn run(state: State, nodes: Vec<NodeStatus>) -> RunStatus {
        RunStatus {
            run: "r1".into(),
            workflow: "wf".into(),
            state,
            error: None,
            nodes,
        }
    }

    #[test]
    fn events_carry_a_watcher_from_one_status_to_the_next() {
        let before = run(
            State::Running,
            vec![node("a", State::Running, 1), node("b", State::Pending, 0)],
        );
        let after = run(
            State::Failed,
            vec![
                node("a", State::Failed, 2),
                node("b", State::Pending, 0),
                node("handler", State::Succeeded, 1),
            ],
        );
        let events = run_events(&before, &after);
        let kinds: Vec<&str> = events.iter().map(RunEvent::kind).collect();
        assert_eq!(kinds, ["node", "node", "run", "end"]);
        let mut seen = before.clone();
        for event in &events {
            let parsed = RunEvent::parse(event.kind(), &event.data())
                .unwrap()
                .unwrap();
            assert_eq!(&parsed, event);
            apply_run_event(&mut seen, &parsed);
        }
        assert_eq!(seen, after);
        assert!(run_events(&after, &after).iter().all(|e| e.kind() == "end"));
        assert!(run_events(&before, &before).is_empty());
        assert!(RunEvent::parse("newer", "{}").is_none());
    }
}
