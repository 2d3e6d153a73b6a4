//! What the core changed since the store last wrote ([`Changes`]), and what a store gives
//! back at start ([`Snapshot`]).

use crate::*;
use baton_schemas::{RunId, Workflow};

/// Everything a store keeps of the core's state, as [`Changes`] wrote it: what
/// [`Core::restore`] starts from.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Registered workflows.
    pub workflows: Vec<Workflow>,
    /// Registered tasks and their status.
    pub tasks: Vec<TaskEntry>,
    /// Registered ignitors and their fires.
    pub ignitors: Vec<IgnitorEntry>,
    /// Application groups.
    pub groups: Vec<GroupEntry>,
    /// Every run.
    pub runs: Vec<Run>,
    /// Registered Cells and their status.
    pub cells: Vec<CellEntry>,
    /// Registered analysis templates.
    pub templates: Vec<baton_schemas::analysis::AnalysisTemplate>,
    /// The cluster objects documents were applied from.
    pub sources: Vec<(Registered, ClusterSource)>,
}

/// What the store must write after a turn.
#[derive(Debug, Default)]
pub struct Changes<'a> {
    /// Changed runs, each with the indices of its changed nodes.
    pub runs: Vec<(&'a Run, Vec<u32>)>,
    /// Changed workflows.
    pub workflows: Vec<&'a Workflow>,
    /// Changed tasks (spec or status).
    pub tasks: Vec<&'a TaskEntry>,
    /// Changed ignitors (spec or fire times).
    pub ignitors: Vec<&'a IgnitorEntry>,
    /// Removed documents.
    pub removed: Vec<Registered>,
    /// Changed application groups.
    pub groups: Vec<&'a GroupEntry>,
    /// Changed Cells (spec or status).
    pub cells: Vec<&'a CellEntry>,
    /// Changed analysis templates.
    pub templates: Vec<&'a baton_schemas::analysis::AnalysisTemplate>,
    /// Runs pruned, with their number of nodes: their header and node records go.
    pub pruned: Vec<(RunId, u32)>,
    /// Changed cluster sources (`None`: the record goes).
    pub sources: Vec<(Registered, Option<&'a ClusterSource>)>,
}

impl Changes<'_> {
    /// Returns whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
            && self.workflows.is_empty()
            && self.tasks.is_empty()
            && self.ignitors.is_empty()
            && self.removed.is_empty()
            && self.groups.is_empty()
            && self.cells.is_empty()
            && self.templates.is_empty()
            && self.pruned.is_empty()
            && self.sources.is_empty()
    }
}

impl Core {
    /// Returns, and forgets, what changed since the last call: what the service must write
    /// to its store.
    pub fn take_changes(&mut self) -> Changes<'_> {
        let runs = std::mem::take(&mut self.changed_runs);
        let workflows = std::mem::take(&mut self.changed_workflows);
        let tasks = std::mem::take(&mut self.changed_tasks);
        let ignitors = std::mem::take(&mut self.changed_ignitors);
        let groups = std::mem::take(&mut self.changed_groups);
        let cells = std::mem::take(&mut self.changed_cells);
        let templates = std::mem::take(&mut self.changed_templates);
        // A changed name with no entry left was removed.
        let removed = workflows
            .iter()
            .filter(|w| !self.workflows.contains_key(*w))
            .map(|w| Registered::Workflow(w.clone()))
            .chain(
                tasks
                    .iter()
                    .filter(|t| !self.tasks.contains_key(*t))
                    .map(|t| Registered::Task(t.clone())),
            )
            .chain(
                ignitors
                    .iter()
                    .filter(|i| !self.ignitors.contains_key(*i))
                    .map(|i| Registered::Ignitor(i.clone())),
            )
            .chain(
                cells
                    .iter()
                    .filter(|c| !self.cells.contains_key(*c))
                    .map(|c| Registered::Cell(c.clone())),
            )
            .chain(
                templates
                    .iter()
                    .filter(|t| !self.templates.contains_key(*t))
                    .map(|t| Registered::AnalysisTemplate(t.clone())),
            )
            .collect();
        let pruned = std::mem::take(&mut self.pruned);
        let sources = std::mem::take(&mut self.changed_sources);
        let mut unsaved = Vec::with_capacity(runs.len());
        for id in &runs {
            if let Some(r) = self.runs.get_mut(id) {
                unsaved.push(r.take_unsaved());
            }
        }
        Changes {
            runs: runs
                .iter()
                .filter_map(|r| self.runs.get(r))
                .zip(unsaved)
                .collect(),
            workflows: workflows
                .iter()
                .filter_map(|w| self.workflows.get(w))
                .collect(),
            tasks: tasks.iter().filter_map(|t| self.tasks.get(t)).collect(),
            ignitors: ignitors
                .iter()
                .filter_map(|i| self.ignitors.get(i))
                .collect(),
            removed,
            groups: groups.iter().filter_map(|g| self.groups.get(g)).collect(),
            cells: cells.iter().filter_map(|c| self.cells.get(c)).collect(),
            templates: templates
                .iter()
                .filter_map(|t| self.templates.get(t))
                .collect(),
            pruned,
            sources: sources
                .into_iter()
                .map(|d| {
                    let source = self.sources.get(&d);
                    (d, source)
                })
                .collect(),
        }
    }
}
