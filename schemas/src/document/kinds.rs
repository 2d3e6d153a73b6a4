//! Which node kinds a planner lets documents use: a workflow's `exec` node runs any command
//! on a worker, so a planner refuses it unless it was told to allow it.

use std::fmt;

use super::{Document, SpecError};
use crate::workflow::NodeKind;

/// A set of node kinds.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KindSet(u16);

impl KindSet {
    /// Every kind.
    pub const ALL: KindSet = KindSet((1 << NodeKind::ALL.len()) - 1);

    /// Returns whether `kind` is in the set.
    pub fn contains(self, kind: NodeKind) -> bool {
        self.0 & bit(kind) != 0
    }

    /// Returns the set without `kind`.
    pub const fn without(self, kind: NodeKind) -> KindSet {
        KindSet(self.0 & !bit(kind))
    }
}

/// A kind's bit: its place in the enum, which is its place in [`NodeKind::ALL`].
const fn bit(kind: NodeKind) -> u16 {
    1 << kind as u16
}

impl FromIterator<NodeKind> for KindSet {
    fn from_iter<I: IntoIterator<Item = NodeKind>>(kinds: I) -> Self {
        KindSet(kinds.into_iter().map(bit).fold(0, |set, b| set | b))
    }
}

impl fmt::Display for KindSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = NodeKind::ALL
            .into_iter()
            .filter(|k| self.contains(*k))
            .map(NodeKind::as_str)
            .collect();
        match names.is_empty() {
            true => f.write_str("none"),
            false => f.write_str(&names.join(", ")),
        }
    }
}

impl fmt::Debug for KindSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KindSet({self})")
    }
}

/// Returns the node kinds a document makes jobs of, each with the field path that asks for
/// it: a workflow's nodes, a Task's pod, a group's Helm releases, a Cell's traffic writes and
/// analyses, an AnalysisTemplate's analyses. An Ignitor only starts Tasks.
fn kinds_used(document: &Document) -> Vec<(String, NodeKind)> {
    match document {
        Document::Workflow(w) => w
            .spec
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("spec.nodes[{i}].kind"), n.kind))
            .collect(),
        Document::Task(_) => vec![("spec".to_owned(), NodeKind::Pod)],
        Document::Ignitor(_) => Vec::new(),
        Document::Group(_) => vec![("spec.applications".to_owned(), NodeKind::Helm)],
        Document::Cell(cell) => {
            let mut used = vec![("spec".to_owned(), NodeKind::Traffic)];
            used.extend(
                cell.raw_steps()
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.analysis.is_some())
                    .map(|(i, _)| {
                        let at = format!("spec.updateStrategy.canary.steps[{i}].analysis");
                        (at, NodeKind::Analysis)
                    }),
            );
            used
        }
        Document::AnalysisTemplate(_) => vec![("spec".to_owned(), NodeKind::Analysis)],
    }
}

/// Returns an error for each kind a document uses that `allowed` does not hold.
pub(super) fn refused_kinds(document: &Document, allowed: KindSet) -> Vec<SpecError> {
    kinds_used(document)
        .into_iter()
        .filter(|(_, kind)| !allowed.contains(*kind))
        .map(|(path, kind)| {
            SpecError::new(
                path,
                format!(
                    "{kind} nodes are not allowed by this planner (it allows: {allowed}; --allow-kinds, BATON_ALLOW_KINDS)"
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{Limits, parse_documents_within};
    use crate::wire::Timestamp;

    #[test]
    fn a_set_holds_what_it_was_made_of() {
        let set: KindSet = [NodeKind::Noop, NodeKind::Helm].into_iter().collect();
        assert!(set.contains(NodeKind::Noop) && set.contains(NodeKind::Helm));
        assert!(!set.contains(NodeKind::Exec));
        assert_eq!(set.to_string(), "noop, helm");
        assert!(NodeKind::ALL.into_iter().all(|k| KindSet::ALL.contains(k)));
        for (place, kind) in NodeKind::ALL.into_iter().enumerate() {
            assert_eq!(
                kind as usize, place,
                "{kind}: ALL lists the kinds in enum order"
            );
        }
        let no_exec = KindSet::ALL.without(NodeKind::Exec);
        assert!(!no_exec.contains(NodeKind::Exec) && no_exec.contains(NodeKind::Pod));
        assert_eq!(KindSet::from_iter([]).to_string(), "none");
    }

    #[test]
    fn a_document_using_a_kind_not_allowed_is_refused_at_its_field() {
        let limits = Limits {
            allowed_kinds: KindSet::ALL.without(NodeKind::Exec),
            ..Limits::default()
        };
        let text = "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nspec:\n  nodes:\n  - {name: a, kind: noop}\n  - {name: b, kind: exec, command: [id]}\n";
        let errors = parse_documents_within("w.yaml", text, Timestamp::now(), limits)
            .unwrap_err()
            .to_string();
        assert_eq!(
            errors,
            "w.yaml: spec.nodes[1].kind: exec nodes are not allowed by this planner (it allows: noop, pod, webhook, publish, helm, traffic, analysis; --allow-kinds, BATON_ALLOW_KINDS)"
        );
        assert!(
            parse_documents_within("w.yaml", text, Timestamp::now(), Limits::default()).is_ok()
        );
    }
}
