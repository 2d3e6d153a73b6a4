//! The store's contents decoded in memory, kept by a standby planner beside its store: it
//! applies each commit it reads from the bus's state stream to both, so that taking over
//! starts the core from what it already holds instead of reading and decoding every record
//! again (half a second and more for a state of 50 000 nodes).
//!
//! A mirror applies the same [`Op`]s the store does, with the same meaning; tables are kept
//! in key order, as redb keeps them, so [`Mirror::into_loaded`] returns what
//! [`Store::load`](super::Store::load) would.

use std::collections::BTreeMap;

use baton_bus::Outgoing;
use baton_core::{CellEntry, GroupEntry, IgnitorEntry, Run, Snapshot, TaskEntry};
use baton_schemas::Workflow;
use baton_schemas::analysis::AnalysisTemplate;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::{EVENTS_SEQ, Loaded, Op, StoreError, StoredNode, StoredSource, TRIGGERS_SEQ, Table};
use super::{WriteSet, name_static};

/// Every record of the store, decoded, by table and key.
#[derive(Default)]
pub struct Mirror {
    workflows: BTreeMap<String, Workflow>,
    tasks: BTreeMap<String, TaskEntry>,
    ignitors: BTreeMap<String, IgnitorEntry>,
    groups: BTreeMap<String, GroupEntry>,
    /// Run headers (their nodes are apart, as in the store).
    runs: BTreeMap<String, Run>,
    nodes: BTreeMap<(String, u32), StoredNode>,
    outbox: BTreeMap<String, Outgoing>,
    cells: BTreeMap<String, CellEntry>,
    templates: BTreeMap<String, AnalysisTemplate>,
    sources: BTreeMap<String, StoredSource>,
    triggers_seq: u64,
    events_seq: u64,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("runs", &self.runs.len())
            .field("nodes", &self.nodes.len())
            .field("triggers_seq", &self.triggers_seq)
            .field("events_seq", &self.events_seq)
            .finish_non_exhaustive()
    }
}

impl Mirror {
    /// Applies commits in order, as [`Store::apply_all`](super::Store::apply_all) does. A
    /// record that does not decode fails the whole call and leaves the mirror part-applied:
    /// the caller drops it and loads the store instead.
    pub fn apply_all(&mut self, commits: &[WriteSet]) -> Result<(), StoreError> {
        for op in commits.iter().flat_map(|c| &c.ops) {
            self.apply_op(op)?;
        }
        Ok(())
    }

    fn apply_op(&mut self, op: &Op) -> Result<(), StoreError> {
        match op {
            Op::Clear => *self = Mirror::default(),
            Op::Put { table, key, value } => self.put(*table, key, value)?,
            Op::PutNode { run, index, value } => {
                let node = decode(value, "nodes", || format!("{run}/{index}"))?;
                self.nodes.insert((run.clone(), *index), node);
            }
            Op::Remove { table, key } => self.remove(*table, key),
            Op::RemoveRun { run, nodes } => {
                self.runs.remove(run);
                for index in 0..*nodes {
                    self.nodes.remove(&(run.clone(), index));
                }
            }
            Op::Position { key, seq } => match key.as_str() {
                TRIGGERS_SEQ => self.triggers_seq = *seq,
                EVENTS_SEQ => self.events_seq = *seq,
                // The store keeps positions it does not read; so may the mirror.
                _ => {}
            },
        }
        Ok(())
    }

    fn put(&mut self, table: Table, key: &str, value: &RawValue) -> Result<(), StoreError> {
        let name = name_static(table);
        fn insert<T: DeserializeOwned>(
            map: &mut BTreeMap<String, T>,
            key: &str,
            value: &RawValue,
            name: &'static str,
        ) -> Result<(), StoreError> {
            map.insert(key.to_owned(), decode(value, name, || key.to_owned())?);
            Ok(())
        }
        match table {
            Table::Workflows => insert(&mut self.workflows, key, value, name),
            Table::Tasks => insert(&mut self.tasks, key, value, name),
            Table::Ignitors => insert(&mut self.ignitors, key, value, name),
            Table::Groups => insert(&mut self.groups, key, value, name),
            Table::Runs => insert(&mut self.runs, key, value, name),
            Table::Outbox => insert(&mut self.outbox, key, value, name),
            Table::Cells => insert(&mut self.cells, key, value, name),
            Table::AnalysisTemplates => insert(&mut self.templates, key, value, name),
            Table::ClusterSources => insert(&mut self.sources, key, value, name),
        }
    }

    fn remove(&mut self, table: Table, key: &str) {
        match table {
            Table::Workflows => drop(self.workflows.remove(key)),
            Table::Tasks => drop(self.tasks.remove(key)),
            Table::Ignitors => drop(self.ignitors.remove(key)),
            Table::Groups => drop(self.groups.remove(key)),
            Table::Runs => drop(self.runs.remove(key)),
            Table::Outbox => drop(self.outbox.remove(key)),
            Table::Cells => drop(self.cells.remove(key)),
            Table::AnalysisTemplates => drop(self.templates.remove(key)),
            Table::ClusterSources => drop(self.sources.remove(key)),
        }
    }

    /// Returns the contents as [`Store::load`](super::Store::load) returns them: every table
    /// in key order, each run with its nodes in index order.
    pub fn into_loaded(self) -> Loaded {
        let mut nodes = self.nodes.into_iter().peekable();
        let mut runs = Vec::with_capacity(self.runs.len());
        for (id, header) in self.runs {
            let mut parts = Vec::new();
            // Nodes of runs whose header is gone (never written by the planner, which removes
            // both) are skipped, as the store's range read skips them.
            while let Some(((run, _), _)) = nodes.peek() {
                match run.as_str().cmp(id.as_str()) {
                    std::cmp::Ordering::Less => drop(nodes.next()),
                    std::cmp::Ordering::Equal => {
                        let (_, node) = nodes.next().expect("peeked");
                        parts.push((node.spec, node.node));
                    }
                    std::cmp::Ordering::Greater => break,
                }
            }
            runs.push(Run::from_parts(header, parts));
        }
        Loaded {
            state: Snapshot {
                workflows: self.workflows.into_values().collect(),
                tasks: self.tasks.into_values().collect(),
                ignitors: self.ignitors.into_values().collect(),
                groups: self.groups.into_values().collect(),
                runs,
                cells: self.cells.into_values().collect(),
                templates: self.templates.into_values().collect(),
                sources: self
                    .sources
                    .into_values()
                    .map(|s| (s.document, s.source))
                    .collect(),
            },
            outbox: self.outbox.into_values().collect(),
            triggers_seq: self.triggers_seq,
            events_seq: self.events_seq,
        }
    }
}

fn decode<T: DeserializeOwned>(
    value: &RawValue,
    table: &'static str,
    key: impl FnOnce() -> String,
) -> Result<T, StoreError> {
    serde_json::from_str(value.get()).map_err(|source| StoreError::Decode {
        table,
        key: key(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Change, Store};
    use baton_core::{Core, CoreConfig, Input, Registered};
    use baton_schemas::wire::{Event, Outcome, Timestamp};
    use baton_schemas::{Attempt, NodeName, RunId, WorkflowName, parse_documents};

    /// The commits as the state stream carries them, applied to a store and to a mirror:
    /// after each, the mirror returns what the store loads (runs with their nodes, documents,
    /// the outbox, positions), through puts, removals, a pruned run and a clear.
    #[test]
    fn a_mirror_fed_the_stores_commits_loads_what_the_store_loads() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("planner.redb")).unwrap();
        let text = "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {name: wf}\nspec: {nodes: [{name: a, kind: noop}, {name: b, kind: noop, needs: [a]}]}\n---\napiVersion: sirocco.cloud/v1alpha1\nkind: Task\nmetadata: {name: t}\nspec: {startOnIgnition: [i], template: {spec: {containers: [{name: c, image: busybox}]}}}\n---\napiVersion: sirocco.cloud/v1alpha1\nkind: Ignitor\nmetadata: {name: i}\nspec: {scheduled: '@hourly'}\n";
        let config = CoreConfig {
            run_retention: std::time::Duration::from_secs(1),
            ..CoreConfig::default()
        };
        let mut core = Core::new(config);
        // Every commit, serialized as the bus carries it.
        let mut log: Vec<Vec<u8>> = Vec::new();
        let mut commit = |change: Change<'_>| {
            let writes = WriteSet::of(&change);
            store.apply(&writes, None).unwrap();
            log.push(serde_json::to_vec(&writes).unwrap());
            let mut mirror = Mirror::default();
            for bytes in &log {
                let writes: WriteSet = serde_json::from_slice(bytes).unwrap();
                mirror.apply_all(&[writes]).unwrap();
            }
            assert_eq!(
                format!("{:?}", mirror.into_loaded()),
                format!("{:?}", store.load().unwrap()),
                "after commit {}",
                log.len()
            );
        };
        for doc in parse_documents("t", text, Timestamp(1)).unwrap() {
            core.apply(Input::from(doc), Timestamp(1));
        }
        let start = |run: &str| Input::StartRun {
            run: RunId::new(run),
            workflow: WorkflowName::new("wf"),
            initiator: "api".into(),
            data: String::new(),
        };
        let done = |run: &str, node: &str, at: u64| {
            Input::Bus(Event::NodeFinished {
                run: RunId::new(run),
                node: NodeName::new(node),
                attempt: Attempt(1),
                started_at: Timestamp(at),
                finished_at: Timestamp(at),
                outcome: Outcome::Succeeded {
                    output: String::new(),
                },
            })
        };
        for run in ["r2", "r1", "r3"] {
            core.apply(start(run), Timestamp(1_000));
        }
        let message = Outgoing {
            subject: "s".into(),
            msg_id: "r1.a.1".into(),
            payload: "{}".into(),
            headers: vec![],
        };
        let state = core.take_changes();
        commit(Change {
            state,
            outbox: vec![message],
            triggers_seq: Some(7),
            events_seq: Some(9),
            ..Change::default()
        });
        core.apply(done("r1", "a", 2_000), Timestamp(2_000));
        core.apply(done("r1", "b", 2_000), Timestamp(2_000));
        core.apply(done("r3", "a", 2_000), Timestamp(2_000));
        let state = core.take_changes();
        commit(Change {
            state,
            published: vec!["r1.a.1".into()],
            events_seq: Some(12),
            ..Change::default()
        });
        // r1 is pruned (its header and nodes go); an ignitor is removed.
        core.apply(Input::Tick, Timestamp(10_000));
        core.apply(
            Input::Remove(Registered::Ignitor("i".into())),
            Timestamp(10_000),
        );
        assert!(core.run(&RunId::new("r1")).is_none(), "r1 pruned");
        let state = core.take_changes();
        commit(Change {
            state,
            ..Change::default()
        });
        // A snapshot as the planner writes it (a clear, then everything), applied over a
        // mirror holding other records.
        let dump = store.dump().unwrap();
        let dumped: WriteSet = serde_json::from_slice(&serde_json::to_vec(&dump).unwrap()).unwrap();
        let mut mirror = Mirror::default();
        let other = Change {
            outbox: vec![Outgoing {
                subject: "other".into(),
                msg_id: "other.1".into(),
                payload: "{}".into(),
                headers: vec![],
            }],
            triggers_seq: Some(99),
            ..Change::default()
        };
        mirror.apply_all(&[WriteSet::of(&other), dumped]).unwrap();
        let loaded = mirror.into_loaded();
        assert_eq!(
            format!("{loaded:?}"),
            format!("{:?}", store.load().unwrap())
        );
        assert_eq!(loaded.state.runs.len(), 2);
        assert_eq!((loaded.triggers_seq, loaded.events_seq), (7, 12));
    }
}
