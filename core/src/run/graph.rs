//! The edges and counters a run derives from its spec and node states.

use std::collections::{BTreeSet, HashMap};

use crate::*;
use baton_schemas::NodeName;

/// What a run derives from its spec and node states so that an event costs what it touches,
/// not the size of the run: node indices by name, edges both ways, and per node how many of
/// its needs are still open, failed, or ended other than succeeded. Rebuilt from the nodes
/// whenever their number changes (at a run's start, after a restore, when a chain grows).
#[derive(Clone, Debug, Default)]
pub(crate) struct Graph {
    /// How many nodes it was built for.
    pub(crate) built_for: usize,
    pub(crate) index: HashMap<NodeName, u32>,
    pub(crate) needs: Vec<Vec<u32>>,
    pub(crate) dependents: Vec<Vec<u32>>,
    /// Per node: needs not final yet.
    pub(crate) open: Vec<u32>,
    /// Per node: needs that failed.
    pub(crate) failed: Vec<u32>,
    /// Per node: needs that ended other than succeeded.
    pub(crate) unsuccessful: Vec<u32>,
    /// Pending nodes whose readiness may have changed, for the next readiness pass.
    pub(crate) candidates: BTreeSet<u32>,
    pub(crate) failed_nodes: u32,
    pub(crate) cancelled_nodes: u32,
    /// The node that failed first.
    pub(crate) first_failed: Option<u32>,
}

/// Derived data: two runs with the same nodes are equal whatever their graphs hold.
impl PartialEq for Graph {
    fn eq(&self, _: &Graph) -> bool {
        true
    }
}

impl Graph {
    pub(crate) fn build(r: &Run) -> Graph {
        let n = r.nodes.len();
        let index: HashMap<NodeName, u32> = r
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| (node.name.clone(), i as u32))
            .collect();
        let needs: Vec<Vec<u32>> = r
            .spec
            .nodes
            .iter()
            .map(|spec| {
                spec.needs
                    .iter()
                    .filter_map(|n| index.get(n).copied())
                    .collect()
            })
            .collect();
        let mut graph = Graph {
            built_for: n,
            dependents: vec![Vec::new(); n],
            open: vec![0; n],
            failed: vec![0; n],
            unsuccessful: vec![0; n],
            ..Graph::default()
        };
        for (i, node_needs) in needs.iter().enumerate() {
            for &j in node_needs {
                graph.dependents[j as usize].push(i as u32);
                let state = r.nodes[j as usize].state;
                graph.count_need(i, state);
            }
        }
        for (i, node) in r.nodes.iter().enumerate() {
            match node.state {
                NodeState::Pending => {
                    graph.candidates.insert(i as u32);
                }
                NodeState::Failed => graph.failed_nodes += 1,
                NodeState::Cancelled => graph.cancelled_nodes += 1,
                _ => {}
            }
        }
        graph.first_failed = r
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.state == NodeState::Failed)
            .min_by_key(|(_, n)| n.finish_order)
            .map(|(i, _)| i as u32);
        graph.index = index;
        graph.needs = needs;
        graph
    }

    /// Counts one need of node `i` in `state`.
    pub(crate) fn count_need(&mut self, i: usize, state: NodeState) {
        if !state.is_terminal() {
            self.open[i] += 1;
            return;
        }
        if state == NodeState::Failed {
            self.failed[i] += 1;
        }
        if state != NodeState::Succeeded {
            self.unsuccessful[i] += 1;
        }
    }
}
