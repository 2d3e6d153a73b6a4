//! One commit of the store as data: the records it puts and removes, table by table, and the
//! stream positions it sets, in the order the store writes them. The planner appends each to
//! the bus's state stream before its own store applies it, so that another planner, or this
//! one after its disk is lost, applies the same commits and holds the same store.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use baton_core::Registered;

use super::{Change, NodeRecord, StoredSource, source_key};

/// A table of the store that holds records by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Table {
    /// Workflows by name.
    Workflows,
    /// Orca tasks by name.
    Tasks,
    /// Orca ignitors by name.
    Ignitors,
    /// Application groups by name.
    Groups,
    /// Run headers by id.
    Runs,
    /// Messages not yet known published, by message id.
    Outbox,
    /// Cells by name.
    Cells,
    /// Analysis templates by name.
    AnalysisTemplates,
    /// Documents' cluster sources by `<kind>/<name>`.
    ClusterSources,
}

impl Table {
    /// Every table, in the order a dump lists them.
    pub const ALL: [Table; 9] = [
        Table::Workflows,
        Table::Tasks,
        Table::Ignitors,
        Table::Groups,
        Table::Runs,
        Table::Outbox,
        Table::Cells,
        Table::AnalysisTemplates,
        Table::ClusterSources,
    ];
}

/// One write of a commit.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Op {
    /// Every record of every table goes, positions included: a dump begins with it, so that
    /// applying one to a store that held something else leaves exactly the dump.
    Clear,
    /// A record is written.
    Put {
        /// Its table.
        table: Table,
        /// Its key.
        key: String,
        /// The record, as JSON.
        value: Box<RawValue>,
    },
    /// A node of a run is written.
    PutNode {
        /// The run.
        run: String,
        /// The node's index.
        index: u32,
        /// The node's spec and state, as JSON.
        value: Box<RawValue>,
    },
    /// A record goes.
    Remove {
        /// Its table.
        table: Table,
        /// Its key.
        key: String,
    },
    /// A run goes: its header and its `nodes` node records.
    RemoveRun {
        /// The run.
        run: String,
        /// How many nodes it has.
        nodes: u32,
    },
    /// A stream position is set.
    Position {
        /// Which: `triggers-seq` or `events-seq`.
        key: String,
        /// The sequence.
        seq: u64,
    },
}

/// One commit of the store.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WriteSet {
    /// Its writes, in order.
    pub ops: Vec<Op>,
}

fn json<T: Serialize>(item: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(item).expect("stored records serialize")
}

impl WriteSet {
    /// Returns the writes of `change`, in the order the store has always made them.
    pub fn of(change: &Change<'_>) -> WriteSet {
        let state = &change.state;
        let mut ops = Vec::new();
        let put =
            |ops: &mut Vec<Op>, table, key: String, value| ops.push(Op::Put { table, key, value });
        for (run, _) in &state.runs {
            put(&mut ops, Table::Runs, run.id.to_string(), json(*run));
        }
        for (run, changed) in &state.runs {
            for &index in changed {
                let (spec, node) = run.node_record(index);
                ops.push(Op::PutNode {
                    run: run.id.to_string(),
                    index,
                    value: json(&NodeRecord { spec, node }),
                });
            }
        }
        for w in &state.workflows {
            put(
                &mut ops,
                Table::Workflows,
                w.metadata.name.clone(),
                json(*w),
            );
        }
        for t in &state.tasks {
            put(
                &mut ops,
                Table::Tasks,
                t.task.metadata.name.clone(),
                json(*t),
            );
        }
        for i in &state.ignitors {
            let key = i.ignitor.metadata.name.clone();
            put(&mut ops, Table::Ignitors, key, json(*i));
        }
        for g in &state.groups {
            put(&mut ops, Table::Groups, g.group.name().to_owned(), json(*g));
        }
        for c in &state.cells {
            put(
                &mut ops,
                Table::Cells,
                c.cell.metadata.name.clone(),
                json(*c),
            );
        }
        for t in &state.templates {
            let key = t.metadata.name.clone();
            put(&mut ops, Table::AnalysisTemplates, key, json(*t));
        }
        for m in &change.outbox {
            put(&mut ops, Table::Outbox, m.msg_id.clone(), json(m));
        }
        for id in &change.published {
            ops.push(Op::Remove {
                table: Table::Outbox,
                key: id.clone(),
            });
        }
        for (document, source) in &state.sources {
            let key = source_key(document);
            match source {
                Some(source) => {
                    let stored = StoredSource {
                        document: document.clone(),
                        source: (*source).clone(),
                    };
                    put(&mut ops, Table::ClusterSources, key, json(&stored));
                }
                None => ops.push(Op::Remove {
                    table: Table::ClusterSources,
                    key,
                }),
            }
        }
        for (run, nodes) in &state.pruned {
            ops.push(Op::RemoveRun {
                run: run.to_string(),
                nodes: *nodes,
            });
        }
        for removed in &state.removed {
            let (table, key) = match removed {
                Registered::Workflow(name) => (Table::Workflows, name.to_string()),
                Registered::Task(name) => (Table::Tasks, name.to_string()),
                Registered::Ignitor(name) => (Table::Ignitors, name.to_string()),
                Registered::Group(name) => (Table::Groups, name.to_string()),
                Registered::Cell(name) => (Table::Cells, name.to_string()),
                Registered::AnalysisTemplate(name) => (Table::AnalysisTemplates, name.to_string()),
            };
            ops.push(Op::Remove { table, key });
        }
        for (key, seq) in [
            (super::TRIGGERS_SEQ, change.triggers_seq),
            (super::EVENTS_SEQ, change.events_seq),
        ] {
            if let Some(seq) = seq {
                ops.push(Op::Position {
                    key: key.to_owned(),
                    seq,
                });
            }
        }
        WriteSet { ops }
    }

    /// Returns whether the commit writes nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::*;
    use baton_core::{Core, CoreConfig, Input};
    use baton_schemas::wire::Timestamp;
    use baton_schemas::{RunId, WorkflowName, parse_documents};

    /// A store holding a workflow, a task, an ignitor and a run, committed as the planner does.
    fn populated(path: &std::path::Path) -> Store {
        let text = "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {name: wf}\nspec: {nodes: [{name: a, kind: noop}, {name: b, kind: noop, needs: [a]}]}\n---\napiVersion: sirocco.cloud/v1alpha1\nkind: Task\nmetadata: {name: t}\nspec: {startOnIgnition: [i], template: {spec: {containers: [{name: c, image: busybox}]}}}\n---\napiVersion: sirocco.cloud/v1alpha1\nkind: Ignitor\nmetadata: {name: i}\nspec: {scheduled: '@hourly'}\n";
        let mut core = Core::new(CoreConfig::default());
        for doc in parse_documents("t", text, Timestamp(1)).unwrap() {
            core.apply(Input::from(doc), Timestamp(1));
        }
        core.apply(
            Input::StartRun {
                run: RunId::new("r1"),
                workflow: WorkflowName::new("wf"),
                initiator: "api".into(),
                data: "d".into(),
            },
            Timestamp(2),
        );
        let store = Store::open(path).unwrap();
        let change = Change {
            state: core.take_changes(),
            events_seq: Some(7),
            triggers_seq: Some(3),
            ..Change::default()
        };
        store.commit(&change).unwrap();
        store
    }

    /// What another planner rebuilds from the bus: a dump, through JSON, applied to a store
    /// that held something else, leaves exactly what the first store holds.
    #[test]
    fn a_dump_applied_anywhere_leaves_the_same_store() {
        let dir = tempfile::tempdir().unwrap();
        let first = populated(&dir.path().join("a.redb"));
        let other = Store::open(&dir.path().join("b.redb")).unwrap();
        let stale = WriteSet {
            ops: vec![
                Op::Put {
                    table: Table::Workflows,
                    key: "stale".into(),
                    value: json(&serde_json::json!({"not": "a workflow"})),
                },
                Op::Position {
                    key: super::super::EVENTS_SEQ.into(),
                    seq: 99,
                },
            ],
        };
        other.apply(&stale, Some(5)).unwrap();
        let wire = serde_json::to_vec(&first.dump().unwrap()).unwrap();
        let dump: WriteSet = serde_json::from_slice(&wire).unwrap();
        other.apply(&dump, Some(6)).unwrap();
        let (a, b) = (first.load().unwrap(), other.load().unwrap());
        assert_eq!(format!("{:?}", a.state), format!("{:?}", b.state));
        assert_eq!((b.events_seq, b.triggers_seq), (7, 3));
        assert_eq!(b.state.runs.len(), 1);
        assert_eq!(b.state.runs[0].nodes.len(), 2);
        assert_eq!(other.state_seq().unwrap(), 6);
    }
}
