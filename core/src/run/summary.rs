//! Runs as a list shows them: filtered, newest first, a page at a time, without their
//! nodes (a run of 100,000 nodes is megabytes as a status, a hundred bytes as a summary).

use std::collections::BTreeMap;

use baton_schemas::status::{RunPage, RunSummary, State};
use baton_schemas::wire::Timestamp;

use super::Run;

/// Which runs a page holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunQuery {
    /// Runs of workflows whose name contains this.
    pub workflow: Option<String>,
    /// Runs in this state.
    pub state: Option<State>,
    /// Runs started at or after this instant.
    pub since: Option<Timestamp>,
    /// Runs started before this instant.
    pub until: Option<Timestamp>,
    /// The most runs on the page.
    pub limit: usize,
    /// Where the page starts: after this run ([`RunPage::next`] of the page before).
    pub after: Option<PageCursor>,
}

/// A place in the newest-first order: a run's start and id. It names no run that must
/// still exist, so a page goes on where it was when runs before it are removed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PageCursor {
    created_at: Timestamp,
    run: String,
}

impl PageCursor {
    /// Reads a cursor as [`PageCursor::to_string`] writes it: `<millis>-<run id>`.
    pub fn parse(text: &str) -> Option<PageCursor> {
        let (millis, run) = text.split_once('-')?;
        Some(PageCursor {
            created_at: Timestamp(millis.parse().ok()?),
            run: run.to_owned(),
        })
    }

    fn of(run: &Run) -> PageCursor {
        PageCursor {
            created_at: run.created_at,
            run: run.id.to_string(),
        }
    }
}

impl std::fmt::Display for PageCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.created_at.0, self.run)
    }
}

impl Run {
    /// Returns the run as one line of a list.
    pub fn summary(&self) -> RunSummary {
        let mut counts = BTreeMap::new();
        for node in &self.nodes {
            *counts.entry(node.state.shown()).or_insert(0) += 1;
        }
        RunSummary {
            run: self.id.to_string(),
            workflow: self.workflow.to_string(),
            state: self.phase.state(),
            error: self.error.clone(),
            created_at: self.created_at.to_string(),
            finished_at: self.finished_at.map(|t| t.to_string()),
            nodes: self.nodes.len(),
            counts,
        }
    }
}

/// Returns the page of `runs` that `query` asks for, newest first.
pub fn page<'a>(runs: impl Iterator<Item = &'a Run>, query: &RunQuery) -> RunPage {
    let mut chosen: Vec<(PageCursor, &Run)> = runs
        .filter(|run| {
            query
                .workflow
                .as_ref()
                .is_none_or(|w| run.workflow.as_str().contains(w.as_str()))
                && query.state.is_none_or(|s| run.phase.state() == s)
                && query.since.is_none_or(|t| run.created_at >= t)
                && query.until.is_none_or(|t| run.created_at < t)
        })
        .map(|run| (PageCursor::of(run), run))
        .filter(|(at, _)| query.after.as_ref().is_none_or(|after| at < after))
        .collect();
    // Newest first; runs started in the same millisecond by id, so the order is total and
    // a cursor never skips or repeats one.
    chosen.sort_unstable_by(|a, b| b.0.cmp(&a.0));
    let more = chosen.len() > query.limit;
    chosen.truncate(query.limit);
    RunPage {
        next: more
            .then(|| chosen.last().map(|(at, _)| at.to_string()))
            .flatten(),
        runs: chosen.into_iter().map(|(_, run)| run.summary()).collect(),
    }
}
