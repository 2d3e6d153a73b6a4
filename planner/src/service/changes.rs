//! What the planner tells the API's watch streams after each turn: which runs changed.
//! Cells and groups are small; a watcher of one reads its view again after any turn.

use std::sync::Arc;

use baton_schemas::RunId;
use tokio::sync::broadcast;

/// How many turns a slow watcher may fall behind before it is told it lagged (and reads
/// everything it watches again).
const BACKLOG: usize = 1024;

/// What one turn changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changed {
    /// The runs whose state changed, each once.
    pub runs: Vec<RunId>,
}

/// The planner's change notices. Cloning shares the channel.
#[derive(Clone, Debug)]
pub struct Changes(broadcast::Sender<Arc<Changed>>);

impl Default for Changes {
    fn default() -> Self {
        Self(broadcast::channel(BACKLOG).0)
    }
}

impl Changes {
    /// Subscribes to the notices of every later turn.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Changed>> {
        self.0.subscribe()
    }

    /// Whether anyone listens: the core records changed runs only then.
    pub(crate) fn watched(&self) -> bool {
        self.0.receiver_count() > 0
    }

    /// Tells the watchers what a turn changed.
    pub(crate) fn send(&self, changed: Changed) {
        // No receiver left since the turn began: nobody to tell.
        let _ = self.0.send(Arc::new(changed));
    }
}
