//! A store for the core's tests: it keeps what [`Changes`] report as the planner's redb store
//! does (each record serialized on its own, runs as a header and one record per node,
//! removals and prunes deleting theirs), in memory, so that a restore from it shows whether
//! the core reported every change it made. The redb store itself is tested in the planner.

use std::collections::BTreeMap;

use baton_schemas::NodeSpec;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Changes, ClusterSource, Node, Registered, Run, Snapshot};

/// Records by table and key, as JSON.
#[derive(Default)]
pub(crate) struct MemoryStore {
    tables: BTreeMap<&'static str, BTreeMap<String, Vec<u8>>>,
    nodes: BTreeMap<(String, u32), Vec<u8>>,
}

fn json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

fn table_of(document: &Registered) -> &'static str {
    match document {
        Registered::Workflow(_) => "workflows",
        Registered::Task(_) => "tasks",
        Registered::Ignitor(_) => "ignitors",
        Registered::Group(_) => "groups",
        Registered::Cell(_) => "cells",
        Registered::AnalysisTemplate(_) => "templates",
    }
}

impl MemoryStore {
    fn put(&mut self, table: &'static str, key: &str, value: Vec<u8>) {
        self.tables
            .entry(table)
            .or_default()
            .insert(key.to_owned(), value);
    }

    /// Keeps one change.
    pub(crate) fn commit(&mut self, changes: &Changes<'_>) {
        for (run, changed) in &changes.runs {
            self.put("runs", run.id.as_str(), json(run));
            for &i in changed {
                let (spec, node) = run.node_record(i);
                self.nodes
                    .insert((run.id.to_string(), i), json(&(spec, node)));
            }
        }
        for w in &changes.workflows {
            self.put("workflows", &w.metadata.name, json(w));
        }
        for t in &changes.tasks {
            self.put("tasks", &t.task.metadata.name, json(t));
        }
        for i in &changes.ignitors {
            self.put("ignitors", &i.ignitor.metadata.name, json(i));
        }
        for g in &changes.groups {
            self.put("groups", g.group.name(), json(g));
        }
        for c in &changes.cells {
            self.put("cells", &c.cell.metadata.name, json(c));
        }
        for t in &changes.templates {
            self.put("templates", &t.metadata.name, json(t));
        }
        for (document, source) in &changes.sources {
            let key = format!("{document:?}");
            match source {
                Some(source) => self.put("sources", &key, json(&(document, source))),
                None => {
                    self.tables.entry("sources").or_default().remove(&key);
                }
            }
        }
        for (run, count) in &changes.pruned {
            self.tables.entry("runs").or_default().remove(run.as_str());
            for i in 0..*count {
                self.nodes.remove(&(run.to_string(), i));
            }
        }
        for document in &changes.removed {
            self.tables
                .entry(table_of(document))
                .or_default()
                .remove(document.name());
        }
    }

    fn all<T: DeserializeOwned>(&self, table: &str) -> Vec<T> {
        self.tables
            .get(table)
            .into_iter()
            .flat_map(|t| t.values())
            .map(|v| serde_json::from_slice(v).expect("records deserialize"))
            .collect()
    }

    /// What a restarted planner would read.
    pub(crate) fn load(&self) -> Snapshot {
        let runs = self
            .all::<Run>("runs")
            .into_iter()
            .map(|header| {
                let id = header.id.to_string();
                let nodes = self
                    .nodes
                    .range((id.clone(), 0)..=(id, u32::MAX))
                    .map(|(_, v)| {
                        serde_json::from_slice::<(NodeSpec, Node)>(v).expect("nodes deserialize")
                    })
                    .collect();
                Run::from_parts(header, nodes)
            })
            .collect();
        Snapshot {
            workflows: self.all("workflows"),
            tasks: self.all("tasks"),
            ignitors: self.all("ignitors"),
            groups: self.all("groups"),
            runs,
            cells: self.all("cells"),
            templates: self.all("templates"),
            sources: self
                .all::<(Registered, ClusterSource)>("sources")
                .into_iter()
                .collect(),
        }
    }
}
