//! The planner's redb store: workflows, tasks, ignitors, runs, the outbox of messages not yet
//! confirmed published, and the trigger stream position.
//!
//! One write transaction holds a state change together with the messages it causes (the
//! outbox), so a crash between the commit and the publish loses nothing: at start the
//! planner sends the outbox again, with the same message ids, and the bus drops duplicates.

use std::path::Path;

use baton_bus::Outgoing;
use baton_schemas::Workflow;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;

use crate::core::{Changes, IgnitorEntry, Registered, Run, TaskEntry};

const WORKFLOWS: TableDefinition<&str, &[u8]> = TableDefinition::new("workflows");
const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
const IGNITORS: TableDefinition<&str, &[u8]> = TableDefinition::new("ignitors");
const RUNS: TableDefinition<&str, &[u8]> = TableDefinition::new("runs");
const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const TRIGGERS_SEQ: &str = "triggers-seq";

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
    /// Registered workflows.
    pub workflows: Vec<Workflow>,
    /// Registered tasks and their status.
    pub tasks: Vec<TaskEntry>,
    /// Registered ignitors and their fires.
    pub ignitors: Vec<IgnitorEntry>,
    /// Every run.
    pub runs: Vec<Run>,
    /// Messages committed but maybe not published.
    pub outbox: Vec<Outgoing>,
    /// The last trigger stream sequence applied.
    pub triggers_seq: u64,
}

/// One durable change: state written, messages to publish, the trigger position.
#[derive(Debug, Default)]
pub struct Change<'a> {
    /// What the core changed.
    pub state: Changes<'a>,
    /// Messages to add to the outbox.
    pub outbox: Vec<Outgoing>,
    /// A new trigger stream position.
    pub triggers_seq: Option<u64>,
}

/// The planner's redb database.
#[derive(Debug)]
pub struct Store {
    db: Database,
}

fn put<T: Serialize>(
    txn: &redb::WriteTransaction,
    table: TableDefinition<&str, &[u8]>,
    items: impl IntoIterator<Item = (String, T)>,
) -> Result<(), redb::Error> {
    let mut table = txn.open_table(table)?;
    for (key, item) in items {
        let json = serde_json::to_vec(&item).expect("stored records serialize");
        table.insert(key.as_str(), json.as_slice())?;
    }
    Ok(())
}

impl Store {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Held,
            other => StoreError::Redb(other.into()),
        })?;
        let txn = db.begin_write().map_err(redb::Error::from)?;
        for table in [WORKFLOWS, TASKS, IGNITORS, RUNS, OUTBOX] {
            txn.open_table(table).map_err(redb::Error::from)?;
        }
        txn.open_table(META).map_err(redb::Error::from)?;
        txn.commit().map_err(redb::Error::from)?;
        Ok(Store { db })
    }

    /// Reads everything.
    pub fn load(&self) -> Result<Loaded, StoreError> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let meta = txn.open_table(META).map_err(redb::Error::from)?;
        let triggers_seq = meta
            .get(TRIGGERS_SEQ)
            .map_err(redb::Error::from)?
            .map(|v| v.value());
        Ok(Loaded {
            workflows: read_all(&txn, WORKFLOWS, "workflows")?,
            tasks: read_all(&txn, TASKS, "tasks")?,
            ignitors: read_all(&txn, IGNITORS, "ignitors")?,
            runs: read_all(&txn, RUNS, "runs")?,
            outbox: read_all(&txn, OUTBOX, "outbox")?,
            triggers_seq: triggers_seq.unwrap_or(0),
        })
    }

    /// Writes one change durably: when this returns, it survives a crash.
    pub fn commit(&self, change: &Change<'_>) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(redb::Error::from)?;
        let state = &change.state;
        put(&txn, RUNS, state.runs.iter().map(|r| (r.id.to_string(), r)))?;
        put(
            &txn,
            WORKFLOWS,
            state.workflows.iter().map(|w| (w.metadata.name.clone(), w)),
        )?;
        put(
            &txn,
            TASKS,
            state
                .tasks
                .iter()
                .map(|t| (t.task.metadata.name.clone(), t)),
        )?;
        put(
            &txn,
            IGNITORS,
            state
                .ignitors
                .iter()
                .map(|i| (i.ignitor.metadata.name.clone(), i)),
        )?;
        put(
            &txn,
            OUTBOX,
            change.outbox.iter().map(|m| (m.msg_id.clone(), m)),
        )?;
        for removed in &state.removed {
            let (table, key) = match removed {
                Registered::Workflow(name) => (WORKFLOWS, name.as_str()),
                Registered::Task(name) => (TASKS, name.as_str()),
                Registered::Ignitor(name) => (IGNITORS, name.as_str()),
            };
            let mut table = txn.open_table(table).map_err(redb::Error::from)?;
            table.remove(key).map_err(redb::Error::from)?;
        }
        if let Some(seq) = change.triggers_seq {
            let mut meta = txn.open_table(META).map_err(redb::Error::from)?;
            meta.insert(TRIGGERS_SEQ, seq).map_err(redb::Error::from)?;
        }
        txn.commit().map_err(redb::Error::from)?;
        Ok(())
    }

    /// Removes published messages from the outbox. Not made durable on its own: if it is
    /// lost in a crash the messages are sent again, and the bus drops them as duplicates.
    pub fn clear_outbox<'a>(
        &self,
        msg_ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(redb::Error::from)?;
        txn.set_durability(Durability::None)
            .map_err(redb::Error::from)?;
        {
            let mut outbox = txn.open_table(OUTBOX).map_err(redb::Error::from)?;
            for id in msg_ids {
                outbox.remove(id).map_err(redb::Error::from)?;
            }
        }
        txn.commit().map_err(redb::Error::from)?;
        Ok(())
    }
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
    use crate::core::{Core, CoreConfig, Input, Registered};
    use baton_schemas::wire::Timestamp;
    use baton_schemas::{Document, RunId, WorkflowName, parse_documents};

    #[test]
    fn a_change_survives_reopening_and_the_outbox_clears() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("planner.redb");
        let text = "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {name: wf}\nspec: {nodes: [{name: a, kind: noop}]}\n---\napiVersion: sirocco.cloud/v1alpha1\nkind: Task\nmetadata: {name: t}\nspec: {startOnIgnition: [i], template: {spec: {containers: [{name: c, image: busybox}]}}}\n---\napiVersion: sirocco.cloud/v1alpha1\nkind: Ignitor\nmetadata: {name: i}\nspec: {scheduled: '@hourly'}\n";
        let mut core = Core::new(CoreConfig::default());
        for doc in parse_documents("t", text, Timestamp(1)).unwrap() {
            let input = match doc {
                Document::Workflow(w) => Input::Register(w),
                Document::Task(t) => Input::RegisterTask(t),
                Document::Ignitor(i) => Input::RegisterIgnitor(i),
            };
            core.apply(input, Timestamp(1));
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
                triggers_seq: Some(7),
            };
            store.commit(&change).unwrap();
        }
        let store = Store::open(&path).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.workflows.len(), 1);
        assert_eq!((loaded.tasks.len(), loaded.ignitors.len()), (1, 1));
        assert_eq!(loaded.ignitors[0].next_fire, Some(Timestamp(3_600_000)));
        assert_eq!(
            loaded.runs,
            vec![core.run(&RunId::new("r1")).unwrap().clone()]
        );
        assert_eq!(loaded.outbox, vec![message]);
        assert_eq!(loaded.triggers_seq, 7);
        store.clear_outbox(["r1.a.1"]).unwrap();
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
                outbox: vec![],
                triggers_seq: None,
            })
            .unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(
            (
                loaded.workflows.len(),
                loaded.tasks.len(),
                loaded.ignitors.len(),
                loaded.runs.len()
            ),
            (0, 1, 0, 1)
        );
    }
}
