//! The planner's redb store: workflows, tasks, ignitors, application groups (with their last
//! successful specs), runs (a header each, and every node apart; a pruned run loses both),
//! the outbox of messages not yet confirmed published, and the stream positions.
//!
//! One write transaction holds a state change together with the messages it causes (the
//! outbox), so a crash between the commit and the publish loses nothing: at start the
//! planner sends the outbox again, with the same message ids, and the bus drops duplicates.
//! A change writes the nodes that changed, never a whole run, so an event costs the same in
//! a run of ten nodes and in one of a hundred thousand.

use std::path::Path;

use baton_bus::Outgoing;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use baton_core::{Changes, ClusterSource, Registered, Run, Snapshot};
use serde_json::value::RawValue;

mod mirror;
mod write_set;
pub use mirror::Mirror;
pub use write_set::{Op, Table, WriteSet};

const WORKFLOWS: TableDefinition<&str, &[u8]> = TableDefinition::new("workflows");
const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
const IGNITORS: TableDefinition<&str, &[u8]> = TableDefinition::new("ignitors");
/// Application groups by name: the applied spec, the last successful one, and where it is.
const GROUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("groups");
const RUNS: TableDefinition<&str, &[u8]> = TableDefinition::new("runs");
/// `(run, node index)` to the node's spec and state.
const NODES: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("nodes");
const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Cells with their status (versions, rollout, weights, blocked versions).
const CELLS: TableDefinition<&str, &[u8]> = TableDefinition::new("cells");
const ANALYSIS_TEMPLATES: TableDefinition<&str, &[u8]> = TableDefinition::new("analysis-templates");
/// `<kind>/<name>` of a document applied from a cluster object, to the object.
const SOURCES: TableDefinition<&str, &[u8]> = TableDefinition::new("cluster-sources");
const TRIGGERS_SEQ: &str = "triggers-seq";
const EVENTS_SEQ: &str = "events-seq";
/// The state stream's sequence up to which the store holds every commit.
const STATE_SEQ: &str = "state-seq";

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the store: another planner is active.
    #[error("another process holds the store")]
    Held,
    /// redb failed.
    #[error("redb")]
    Redb(#[from] redb::Error),
    /// A stored record does not decode (written by an incompatible build).
    #[error("stored {table} record {key:?} does not decode")]
    Decode {
        /// The table.
        table: &'static str,
        /// The record's key.
        key: String,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },
}

/// Everything the store holds, as loaded at start.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The core's state.
    pub state: Snapshot,
    /// Messages committed but maybe not published.
    pub outbox: Vec<Outgoing>,
    /// The trigger stream sequence up to which every trigger is applied in this state.
    pub triggers_seq: u64,
    /// The event stream sequence up to which every event is applied in this state.
    pub events_seq: u64,
}

/// A document's cluster source as stored.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredSource {
    document: Registered,
    source: ClusterSource,
}

/// Returns the key of a document's cluster source: `<kind>/<name>`.
fn source_key(document: &Registered) -> String {
    let kind = match document {
        Registered::Workflow(_) => "workflow",
        Registered::Task(_) => "task",
        Registered::Ignitor(_) => "ignitor",
        Registered::Group(_) => "group",
        Registered::Cell(_) => "cell",
        Registered::AnalysisTemplate(_) => "analysis-template",
    };
    format!("{kind}/{}", document.name())
}

/// One durable change: state written, messages to publish, messages known published, the
/// trigger position.
#[derive(Debug, Default)]
pub struct Change<'a> {
    /// What the core changed.
    pub state: Changes<'a>,
    /// Messages to add to the outbox.
    pub outbox: Vec<Outgoing>,
    /// Messages of earlier changes that the bus has stored: removed from the outbox.
    pub published: Vec<String>,
    /// A new trigger stream position.
    pub triggers_seq: Option<u64>,
    /// A new event stream position.
    pub events_seq: Option<u64>,
}

impl Change<'_> {
    /// Returns whether the change writes nothing.
    pub fn is_empty(&self) -> bool {
        self.state.is_empty()
            && self.outbox.is_empty()
            && self.published.is_empty()
            && self.triggers_seq.is_none()
            && self.events_seq.is_none()
    }
}

/// A node as stored: its spec and its state.
#[derive(serde::Serialize)]
struct NodeRecord<'a> {
    spec: &'a baton_schemas::NodeSpec,
    node: &'a baton_core::Node,
}

#[derive(serde::Deserialize)]
struct StoredNode {
    spec: baton_schemas::NodeSpec,
    node: baton_core::Node,
}

/// The planner's redb database.
#[derive(Debug)]
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Held,
            other => StoreError::Redb(other.into()),
        })?;
        let txn = db.begin_write().map_err(redb::Error::from)?;
        for table in [
            WORKFLOWS,
            TASKS,
            IGNITORS,
            GROUPS,
            RUNS,
            OUTBOX,
            CELLS,
            ANALYSIS_TEMPLATES,
            SOURCES,
        ] {
            txn.open_table(table).map_err(redb::Error::from)?;
        }
        txn.open_table(NODES).map_err(redb::Error::from)?;
        txn.open_table(META).map_err(redb::Error::from)?;
        txn.commit().map_err(redb::Error::from)?;
        Ok(Store { db })
    }

    /// Reads everything.
    pub fn load(&self) -> Result<Loaded, StoreError> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let meta = txn.open_table(META).map_err(redb::Error::from)?;
        let seq = |key: &str| -> Result<u64, StoreError> {
            Ok(meta
                .get(key)
                .map_err(redb::Error::from)?
                .map_or(0, |v| v.value()))
        };
        let state = Snapshot {
            workflows: read_all(&txn, WORKFLOWS, "workflows")?,
            tasks: read_all(&txn, TASKS, "tasks")?,
            ignitors: read_all(&txn, IGNITORS, "ignitors")?,
            groups: read_all(&txn, GROUPS, "groups")?,
            runs: read_runs(&txn)?,
            cells: read_all(&txn, CELLS, "cells")?,
            templates: read_all(&txn, ANALYSIS_TEMPLATES, "analysis-templates")?,
            sources: read_all::<StoredSource>(&txn, SOURCES, "cluster-sources")?
                .into_iter()
                .map(|s| (s.document, s.source))
                .collect(),
        };
        Ok(Loaded {
            state,
            outbox: read_all(&txn, OUTBOX, "outbox")?,
            triggers_seq: seq(TRIGGERS_SEQ)?,
            events_seq: seq(EVENTS_SEQ)?,
        })
    }

    /// Returns the store's contents decoded in memory, to be kept up to date with the same
    /// commits as the store (see [`Mirror`]).
    pub fn mirror(&self) -> Result<Mirror, StoreError> {
        let mut mirror = Mirror::default();
        mirror.apply_all(&[self.dump()?])?;
        Ok(mirror)
    }

    /// Writes one change durably: when this returns, it survives a crash.
    pub fn commit(&self, change: &Change<'_>) -> Result<(), StoreError> {
        self.apply(&WriteSet::of(change), None)
    }

    /// Applies one commit in one transaction; with `state_seq`, also notes that the store now
    /// holds every commit of the bus's state stream up to that sequence.
    pub fn apply(&self, writes: &WriteSet, state_seq: Option<u64>) -> Result<(), StoreError> {
        self.apply_each(std::slice::from_ref(writes), state_seq)
    }

    /// Applies commits read back from the state stream, in order, in one transaction: the
    /// store then holds every commit up to `state_seq`.
    pub fn apply_all(&self, commits: &[WriteSet], state_seq: u64) -> Result<(), StoreError> {
        self.apply_each(commits, Some(state_seq))
    }

    fn apply_each(&self, commits: &[WriteSet], state_seq: Option<u64>) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(redb::Error::from)?;
        for op in commits.iter().flat_map(|c| &c.ops) {
            apply_op(&txn, op)?;
        }
        if let Some(seq) = state_seq {
            let mut meta = txn.open_table(META).map_err(redb::Error::from)?;
            meta.insert(STATE_SEQ, seq).map_err(redb::Error::from)?;
        }
        txn.commit().map_err(redb::Error::from)?;
        Ok(())
    }

    /// Returns the state stream's sequence up to which the store holds every commit (0: it
    /// never applied one from the bus).
    pub fn state_seq(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let meta = txn.open_table(META).map_err(redb::Error::from)?;
        Ok(meta
            .get(STATE_SEQ)
            .map_err(redb::Error::from)?
            .map_or(0, |v| v.value()))
    }

    /// Returns everything the store holds as one commit that begins by clearing the store:
    /// applied to any store, it leaves this one's contents.
    pub fn dump(&self) -> Result<WriteSet, StoreError> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let mut ops = vec![Op::Clear];
        let raw = |bytes: &[u8], table: &'static str, key: String| {
            let text = std::str::from_utf8(bytes).map_err(|e| StoreError::Decode {
                table,
                key: key.clone(),
                source: serde::de::Error::custom(e),
            })?;
            RawValue::from_string(text.to_owned()).map_err(|source| StoreError::Decode {
                table,
                key,
                source,
            })
        };
        for table in Table::ALL {
            let opened = txn
                .open_table(definition(table))
                .map_err(redb::Error::from)?;
            for entry in opened.iter().map_err(redb::Error::from)? {
                let (key, value) = entry.map_err(redb::Error::from)?;
                let key = key.value().to_owned();
                let value = raw(value.value(), name_static(table), key.clone())?;
                ops.push(Op::Put { table, key, value });
            }
        }
        let nodes = txn.open_table(NODES).map_err(redb::Error::from)?;
        for entry in nodes.iter().map_err(redb::Error::from)? {
            let (key, value) = entry.map_err(redb::Error::from)?;
            let (run, index) = key.value();
            let value = raw(value.value(), "nodes", format!("{run}/{index}"))?;
            ops.push(Op::PutNode {
                run: run.to_owned(),
                index,
                value,
            });
        }
        let meta = txn.open_table(META).map_err(redb::Error::from)?;
        for key in [TRIGGERS_SEQ, EVENTS_SEQ] {
            if let Some(seq) = meta.get(key).map_err(redb::Error::from)? {
                ops.push(Op::Position {
                    key: key.to_owned(),
                    seq: seq.value(),
                });
            }
        }
        Ok(WriteSet { ops })
    }
}

/// Returns the redb table of a record table.
fn definition(table: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    match table {
        Table::Workflows => WORKFLOWS,
        Table::Tasks => TASKS,
        Table::Ignitors => IGNITORS,
        Table::Groups => GROUPS,
        Table::Runs => RUNS,
        Table::Outbox => OUTBOX,
        Table::Cells => CELLS,
        Table::AnalysisTemplates => ANALYSIS_TEMPLATES,
        Table::ClusterSources => SOURCES,
    }
}

/// Returns a table's name as decode errors give it.
fn name_static(table: Table) -> &'static str {
    match table {
        Table::Workflows => "workflows",
        Table::Tasks => "tasks",
        Table::Ignitors => "ignitors",
        Table::Groups => "groups",
        Table::Runs => "runs",
        Table::Outbox => "outbox",
        Table::Cells => "cells",
        Table::AnalysisTemplates => "analysis-templates",
        Table::ClusterSources => "cluster-sources",
    }
}

/// Makes one write of a commit.
fn apply_op(txn: &redb::WriteTransaction, op: &Op) -> Result<(), redb::Error> {
    match op {
        Op::Clear => {
            for table in Table::ALL {
                txn.delete_table(definition(table))?;
                txn.open_table(definition(table))?;
            }
            txn.delete_table(NODES)?;
            txn.open_table(NODES)?;
            let mut meta = txn.open_table(META)?;
            for key in [TRIGGERS_SEQ, EVENTS_SEQ] {
                meta.remove(key)?;
            }
        }
        Op::Put { table, key, value } => {
            let mut opened = txn.open_table(definition(*table))?;
            opened.insert(key.as_str(), value.get().as_bytes())?;
        }
        Op::PutNode { run, index, value } => {
            let mut nodes = txn.open_table(NODES)?;
            nodes.insert((run.as_str(), *index), value.get().as_bytes())?;
        }
        Op::Remove { table, key } => {
            let mut opened = txn.open_table(definition(*table))?;
            opened.remove(key.as_str())?;
        }
        Op::RemoveRun { run, nodes: count } => {
            txn.open_table(RUNS)?.remove(run.as_str())?;
            let mut nodes = txn.open_table(NODES)?;
            for i in 0..*count {
                nodes.remove((run.as_str(), i))?;
            }
        }
        Op::Position { key, seq } => {
            txn.open_table(META)?.insert(key.as_str(), *seq)?;
        }
    }
    Ok(())
}

/// Reads every run: its header, then its nodes in order.
fn read_runs(txn: &redb::ReadTransaction) -> Result<Vec<Run>, StoreError> {
    let headers: Vec<Run> = read_all(txn, RUNS, "runs")?;
    let table = txn.open_table(NODES).map_err(redb::Error::from)?;
    let mut runs = Vec::with_capacity(headers.len());
    for header in headers {
        let id = header.id.to_string();
        let mut nodes = Vec::new();
        let range = table
            .range((id.as_str(), 0)..=(id.as_str(), u32::MAX))
            .map_err(redb::Error::from)?;
        for entry in range {
            let (key, value) = entry.map_err(redb::Error::from)?;
            let (_, i) = key.value();
            let stored: StoredNode =
                serde_json::from_slice(value.value()).map_err(|source| StoreError::Decode {
                    table: "nodes",
                    key: format!("{id}/{i}"),
                    source,
                })?;
            nodes.push((stored.spec, stored.node));
        }
        runs.push(Run::from_parts(header, nodes));
    }
    Ok(runs)
}

fn read_all<T: serde::de::DeserializeOwned>(
    txn: &redb::ReadTransaction,
    table: TableDefinition<&str, &[u8]>,
    name: &'static str,
) -> Result<Vec<T>, StoreError> {
    let table = txn.open_table(table).map_err(redb::Error::from)?;
    let mut out = Vec::new();
    for entry in table.iter().map_err(redb::Error::from)? {
        let (key, value) = entry.map_err(redb::Error::from)?;
        let item = serde_json::from_slice(value.value()).map_err(|source| StoreError::Decode {
            table: name,
            key: key.value().to_owned(),
            source,
        })?;
        out.push(item);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_core::{Action, Core, CoreConfig, Input, Registered};
    use baton_schemas::status::State;
    use baton_schemas::wire::Timestamp;
    use baton_schemas::{Document, RunId, WorkflowName, parse_documents};

    #[test]
    fn a_change_survives_reopening_and_the_outbox_clears() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("planner.redb");
        let text = "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {name: wf}\nspec: {nodes: [{name: a, kind: noop}]}\n---\napiVersion: sirocco.cloud/v1alpha1\nkind: Task\nmetadata: {name: t}\nspec: {startOnIgnition: [i], template: {spec: {containers: [{name: c, image: busybox}]}}}\n---\napiVersion: sirocco.cloud/v1alpha1\nkind: Ignitor\nmetadata: {name: i}\nspec: {scheduled: '@hourly'}\n";
        let mut core = Core::new(CoreConfig::default());
        for doc in parse_documents("t", text, Timestamp(1)).unwrap() {
            core.apply(Input::from(doc), Timestamp(1));
        }
        core.apply(
            Input::StartRun {
                run: RunId::new("r1"),
                workflow: WorkflowName::new("wf"),
                initiator: "api".into(),
                data: String::new(),
            },
            Timestamp(1),
        );
        let message = Outgoing {
            subject: "s".into(),
            msg_id: "r1.a.1".into(),
            payload: "{}".into(),
            headers: vec![],
        };
        {
            let store = Store::open(&path).unwrap();
            let change = Change {
                state: core.take_changes(),
                outbox: vec![message.clone()],
                published: vec![],
                triggers_seq: Some(7),
                events_seq: Some(9),
            };
            store.commit(&change).unwrap();
        }
        let store = Store::open(&path).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.state.workflows.len(), 1);
        assert_eq!(
            (loaded.state.tasks.len(), loaded.state.ignitors.len()),
            (1, 1)
        );
        assert_eq!(
            loaded.state.ignitors[0].next_fire,
            Some(Timestamp(3_600_000))
        );
        assert_eq!(
            loaded.state.runs,
            vec![core.run(&RunId::new("r1")).unwrap().clone()]
        );
        assert_eq!(loaded.outbox, vec![message]);
        assert_eq!((loaded.triggers_seq, loaded.events_seq), (7, 9));
        store
            .commit(&Change {
                published: vec!["r1.a.1".to_owned()],
                ..Change::default()
            })
            .unwrap();
        assert!(store.load().unwrap().outbox.is_empty());

        // Removed documents leave the store; runs stay.
        core.apply(Input::Remove(Registered::Ignitor("i".into())), Timestamp(2));
        core.apply(
            Input::Remove(Registered::Workflow(WorkflowName::new("wf"))),
            Timestamp(2),
        );
        let state = core.take_changes();
        assert_eq!(state.removed.len(), 2);
        store
            .commit(&Change {
                state,
                ..Change::default()
            })
            .unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(
            (
                loaded.state.workflows.len(),
                loaded.state.tasks.len(),
                loaded.state.ignitors.len(),
                loaded.state.runs.len()
            ),
            (0, 1, 0, 1)
        );
    }

    /// Where documents came from is kept with them: a cluster object's record survives a
    /// restart, goes when the document is applied through the API or removed, and is never
    /// made for a document that is not registered.
    #[test]
    fn cluster_sources_are_kept_cleared_and_restored() {
        use baton_core::ClusterSource;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("planner.redb")).unwrap();
        let text = "apiVersion: sirocco.cloud/v1alpha1\nkind: Ignitor\nmetadata: {name: i}\nspec: {scheduled: '@hourly'}\n---\napiVersion: sirocco.cloud/v1alpha1\nkind: Ignitor\nmetadata: {name: j}\nspec: {scheduled: '@daily'}\n";
        let source = ClusterSource {
            group: "sirocco.cloud".into(),
            kind: "Ignitor".into(),
            namespace: "orca".into(),
        };
        let mut core = Core::new(CoreConfig::default());
        for doc in parse_documents("t", text, Timestamp(1)).unwrap() {
            let document = Registered::of(&doc);
            core.apply(Input::from(doc), Timestamp(1));
            core.apply(
                Input::Source {
                    document,
                    source: Some(source.clone()),
                },
                Timestamp(1),
            );
        }
        // Not registered: no record.
        core.apply(
            Input::Source {
                document: Registered::Task("nobody".into()),
                source: Some(source.clone()),
            },
            Timestamp(1),
        );
        let commit = |core: &mut Core| {
            store
                .commit(&Change {
                    state: core.take_changes(),
                    ..Change::default()
                })
                .unwrap()
        };
        commit(&mut core);
        let restored = Core::restore(CoreConfig::default(), store.load().unwrap().state);
        let kept: Vec<(&Registered, &ClusterSource)> = restored.cluster_sources().collect();
        assert_eq!(
            kept,
            [
                (&Registered::Ignitor("i".into()), &source),
                (&Registered::Ignitor("j".into()), &source)
            ]
        );
        // Applied through the API (no source), and removed: both records go.
        core.apply(
            Input::Source {
                document: Registered::Ignitor("i".into()),
                source: None,
            },
            Timestamp(2),
        );
        core.apply(Input::Remove(Registered::Ignitor("j".into())), Timestamp(2));
        commit(&mut core);
        let restored = Core::restore(CoreConfig::default(), store.load().unwrap().state);
        assert_eq!(restored.cluster_sources().count(), 0);
        // Removing what is not registered is refused.
        assert_eq!(
            core.apply(Input::Remove(Registered::Ignitor("j".into())), Timestamp(3)),
            [Action::Refused(baton_core::Refusal::UnknownIgnitor(
                "j".into()
            ))]
        );
    }

    /// A finished run is kept for the run retention, then a tick prunes it from the core and
    /// its header and nodes from the store; a run still going is kept however old.
    #[test]
    fn finished_runs_are_pruned_after_their_retention_from_core_and_store() {
        use baton_schemas::wire::{Event, Outcome};
        use baton_schemas::{Attempt, NodeName};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("planner.redb")).unwrap();
        let text = "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {name: wf}\nspec: {nodes: [{name: a, kind: noop}, {name: b, kind: noop, needs: [a]}]}\n";
        let config = CoreConfig {
            run_retention: std::time::Duration::from_secs(3600),
            ..CoreConfig::default()
        };
        let mut core = Core::new(config);
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
        let commit = |core: &mut Core| {
            store
                .commit(&Change {
                    state: core.take_changes(),
                    ..Change::default()
                })
                .unwrap()
        };
        core.apply(start("old"), Timestamp(1_000));
        core.apply(start("going"), Timestamp(1_000));
        core.apply(done("old", "a", 2_000), Timestamp(2_000));
        core.apply(done("old", "b", 3_000), Timestamp(3_000));
        commit(&mut core);
        let hour = 3_600_000;
        assert_eq!(core.next_deadline(), Some(Timestamp(3_000 + hour)));
        // A restored core knows when to prune too.
        let restored = Core::restore(config, store.load().unwrap().state);
        assert_eq!(restored.next_deadline(), Some(Timestamp(3_000 + hour)));

        core.apply(Input::Tick, Timestamp(2_999 + hour));
        assert!(core.run(&RunId::new("old")).is_some(), "kept until then");
        core.apply(Input::Tick, Timestamp(3_000 + hour));
        assert!(core.run(&RunId::new("old")).is_none());
        commit(&mut core);
        let loaded = store.load().unwrap();
        let ids: Vec<&str> = loaded.state.runs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["going"], "the unfinished run is kept however old");
        let txn = store.db.begin_read().unwrap();
        let nodes = txn.open_table(NODES).unwrap();
        assert!(
            nodes
                .range(("old", 0)..=("old", u32::MAX))
                .unwrap()
                .next()
                .is_none(),
            "the pruned run's nodes are gone"
        );
        assert_eq!(core.next_deadline(), None);
    }

    /// Every change the core makes reaches the store: after each input, what the store loads
    /// equals what the core holds, and a core restored from it has the same timers.
    #[test]
    fn every_node_change_is_written() {
        use baton_schemas::wire::{Event, Outcome};
        use baton_schemas::{Attempt, NodeName};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("planner.redb")).unwrap();
        let text = "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {name: wf}\nspec:\n  nodes:\n    - {name: a, kind: exec, command: [x], timeout: 10s, retries: {limit: 1, backoff: {initial: 2s}}}\n    - {name: b, kind: noop, needs: [a]}\n    - {name: c, kind: noop, needs: [a], when: failure}\n    - {name: d, kind: noop}\n";
        let mut core = Core::new(CoreConfig::default());
        let Document::Workflow(wf) = parse_documents("t", text, Timestamp(1)).unwrap().remove(0)
        else {
            panic!("a workflow")
        };
        let (run, a) = (RunId::new("r1"), NodeName::new("a"));
        let at = |ms: u64| Timestamp(1_000 + ms);
        let inputs = vec![
            (Input::Register(wf), at(0)),
            (
                Input::StartRun {
                    run: run.clone(),
                    workflow: WorkflowName::new("wf"),
                    initiator: "api".into(),
                    data: String::new(),
                },
                at(0),
            ),
            (
                Input::Bus(Event::NodeStarted {
                    run: run.clone(),
                    node: a.clone(),
                    attempt: Attempt(1),
                    at: at(10),
                }),
                at(10),
            ),
            (
                Input::Bus(Event::NodeFinished {
                    run: run.clone(),
                    node: a.clone(),
                    attempt: Attempt(1),
                    started_at: at(10),
                    finished_at: at(20),
                    outcome: Outcome::failed("boom"),
                }),
                at(20),
            ),
            (Input::Tick, at(5_000)),
            (
                Input::Bus(Event::NodeStarted {
                    run: run.clone(),
                    node: a.clone(),
                    attempt: Attempt(2),
                    at: at(5_010),
                }),
                at(5_010),
            ),
            (Input::Tick, at(200_000)),
        ];
        for (input, now) in inputs {
            core.apply(input, now);
            store
                .commit(&Change {
                    state: core.take_changes(),
                    ..Change::default()
                })
                .unwrap();
            let loaded = store.load().unwrap();
            let runs: Vec<&Run> = core.runs().collect();
            assert_eq!(loaded.state.runs.iter().collect::<Vec<_>>(), runs);
            let restored = Core::restore(CoreConfig::default(), store.load().unwrap().state);
            assert_eq!(restored.next_deadline(), core.next_deadline());
        }
        // The timeout backstop failed attempt 2 for good: a failed, b skipped, c ran.
        let r = core.run(&run).unwrap();
        let states: Vec<State> = r.status().nodes.iter().map(|n| n.state).collect();
        assert_eq!(
            states,
            [
                State::Failed,
                State::Skipped,
                State::Running,
                State::Running
            ]
        );
    }
}
