//! A run as users see it (`baton status`, the API, the dashboard): each node's state, and
//! the edges a graph of it draws, with what each node touched outside Baton.

use baton_schemas::status::{NodeStatus, RunStatus};
use baton_schemas::wire::pod_name;
use baton_schemas::{Attempt, NodeKind, NodeSpec};

use super::{Node, Run, RunKind};

impl Run {
    /// Returns the status users see.
    pub fn status(&self) -> RunStatus {
        RunStatus {
            run: self.id.to_string(),
            workflow: self.workflow.to_string(),
            state: self.phase.state(),
            error: self.error.clone(),
            nodes: self
                .nodes
                .iter()
                .zip(&self.spec.nodes)
                .enumerate()
                .map(|(i, (n, spec))| NodeStatus {
                    name: n.name.to_string(),
                    state: n.state.shown(),
                    attempts: n.attempts,
                    output: n.output.clone(),
                    error: n.error.clone(),
                    started_at: n.started_at.map(|t| t.to_string()),
                    finished_at: n.finished_at.map(|t| t.to_string()),
                    needs: self.shown_needs(i),
                    touches: self.touched_by(spec, n),
                })
                .collect(),
        }
    }

    /// The node's edges in a graph of the run. A workflow's and a group's come from `needs`.
    /// A Cell's rollout pushes each node once the one before has ended, so its edges follow
    /// the order. A chain's node was started by a node's end, which it names.
    fn shown_needs(&self, i: usize) -> Vec<String> {
        let spec = &self.spec.nodes[i];
        if !spec.needs.is_empty() {
            return spec.needs.iter().map(|d| d.to_string()).collect();
        }
        match self.kind {
            RunKind::Cell => i
                .checked_sub(1)
                .map(|j| vec![self.nodes[j].name.to_string()])
                .unwrap_or_default(),
            RunKind::Chain => self.nodes[i]
                .started_by
                .as_ref()
                .and_then(|by| by.after.as_ref())
                .map(|after| vec![after.to_string()])
                .unwrap_or_default(),
            RunKind::Workflow | RunKind::Group => Vec::new(),
        }
    }

    /// What the node's last attempt acts on outside Baton: its pod, its Helm release or its
    /// load balancer rule. Names only, never settings: no secret is in a name.
    fn touched_by(&self, spec: &NodeSpec, node: &Node) -> Option<String> {
        match spec.kind {
            NodeKind::Pod if node.attempts > 0 => {
                let pod = pod_name(&node.name, &self.id, Attempt(node.attempts));
                Some(match &spec.namespace {
                    Some(namespace) => format!("pod {namespace}/{pod}"),
                    None => format!("pod {pod} (in the worker's namespace)"),
                })
            }
            NodeKind::Helm => spec
                .helm
                .as_ref()
                .map(|h| format!("release {}/{}", h.namespace, h.release)),
            NodeKind::Traffic => spec.traffic.as_ref().map(|t| {
                format!(
                    "listener rule of priority {} on {}",
                    t.priority, t.listener_arn
                )
            }),
            _ => None,
        }
    }
}
