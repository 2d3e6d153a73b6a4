//! The store as a copy of the bus's state stream (`<P>_STATE`, replicated like the other
//! streams): the planner appends every commit there before its store applies it, and at start
//! it applies to its store what the stream holds past the store's last commit. So a planner
//! whose disk was lost, or one started on another machine with an empty data directory,
//! rebuilds the store the last planner had, and nothing the API acknowledged is lost with a
//! disk.

use anyhow::Context as _;
use baton_bus::{Bus, StateTail};
use tracing::{info, warn};

use crate::store::{Mirror, Op, Store, WriteSet};

/// How many commits read back at start one store transaction applies: a transaction is one
/// disk flush, and a long history is thousands of small commits.
const COMMITS_PER_TRANSACTION: usize = 512;

/// The planner's place in the state stream: the writer it is, the last sequence it saw, and
/// how much it wrote since the last snapshot.
#[derive(Debug)]
pub(super) struct Replica {
    /// Names this process's writes, so that a retried part is dropped as a duplicate.
    writer: String,
    /// The stream's last sequence as this planner knows it: its next commit expects it.
    last: u64,
    /// Bytes appended since the last snapshot (or since this planner started).
    since_snapshot: u64,
    /// The size of the last snapshot this planner wrote.
    snapshot_size: u64,
    /// The growth that makes a snapshot due, at least `snapshot_size`.
    snapshot_after: u64,
}

impl Replica {
    /// Brings `store` (and `mirror`, when the planner keeps one) up to the end of the state
    /// stream and returns the planner's place in it. A bus that holds no state yet (a new
    /// one, or one older than the state stream, or one that lost it) gets the store's whole
    /// contents as its first commit.
    pub(super) async fn catch_up(
        bus: &Bus,
        store: &Store,
        mirror: &mut Option<Mirror>,
        snapshot_after: u64,
    ) -> anyhow::Result<Replica> {
        let writer = format!(
            "{}-{}",
            std::process::id(),
            baton_schemas::wire::Timestamp::now().0
        );
        let tail = bus.state_tail().await.context("reading the state stream")?;
        let mut replica = Replica {
            writer,
            last: tail.last,
            since_snapshot: 0,
            snapshot_size: 0,
            snapshot_after,
        };
        if tail.last == 0 || store.state_seq()? > tail.last {
            replica.snapshot(bus, store).await?;
            info!(
                seq = replica.last,
                "the bus held no planner state; the store's contents are its first commit"
            );
            return Ok(replica);
        }
        let applied = apply_commits(bus, store, mirror, tail).await?;
        if applied > 0 {
            info!(
                applied,
                to = tail.last,
                "store caught up with the bus's planner state"
            );
        }
        Ok(replica)
    }

    /// Applies to `store` and `mirror` the commits the state stream holds past the store,
    /// writing nothing to the bus: a standby does this while it waits for the lease, so that
    /// it takes over with a store, and a decoded copy of it, that lack only the last moments.
    /// Returns how many commits it applied.
    pub(super) async fn follow(
        bus: &Bus,
        store: &Store,
        mirror: &mut Option<Mirror>,
    ) -> anyhow::Result<usize> {
        let tail = bus.state_tail().await.context("reading the state stream")?;
        // An empty stream, or one behind the store (another bus), is the active planner's
        // to fill.
        if tail.last == 0 || store.state_seq()? >= tail.last {
            return Ok(0);
        }
        apply_commits(bus, store, mirror, tail).await
    }

    /// Appends one commit to the stream; fails when another planner wrote after this one's
    /// last sight of it.
    pub(super) async fn append(&mut self, bus: &Bus, writes: &WriteSet) -> anyhow::Result<u64> {
        let bytes = serde_json::to_vec(writes).expect("write sets serialize");
        self.last = bus
            .append_state(self.last, &bytes, &self.writer)
            .await
            .context("writing the planner's state to the bus")?;
        self.since_snapshot += bytes.len() as u64;
        Ok(self.last)
    }

    /// Returns whether the stream grew enough since the last snapshot that the next one is
    /// worth its cost.
    pub(super) fn snapshot_due(&self) -> bool {
        self.since_snapshot >= self.snapshot_after.max(self.snapshot_size)
    }

    /// Appends the store's whole contents as one commit and drops every commit before it:
    /// a planner that rebuilds its store reads the snapshot and what came after, not the
    /// whole history. A purge that fails is left to the next snapshot.
    pub(super) async fn snapshot(&mut self, bus: &Bus, store: &Store) -> anyhow::Result<()> {
        let dump = store.dump()?;
        let first = self.last + 1;
        self.append(bus, &dump).await?;
        store.apply(&WriteSet::default(), Some(self.last))?;
        self.snapshot_size = std::mem::take(&mut self.since_snapshot);
        match bus.purge_state_before(first).await {
            Ok(purged) => info!(
                records = dump.ops.len(),
                bytes = self.snapshot_size,
                from = first,
                to = self.last,
                purged,
                "planner state snapshot written to the bus"
            ),
            Err(e) => warn!(error = %e, "the state stream kept the commits before a snapshot"),
        }
        Ok(())
    }
}

/// Applies the commits after the store's last one up to `tail.last`, a batch per transaction,
/// to the store and then to `mirror`. A store that never read the stream, or one so far
/// behind that the commits it lacks are gone, is rebuilt from the stream alone (its first
/// commit is then a snapshot). A mirror that fails to apply a commit is dropped: the planner
/// then loads its store when it takes over.
async fn apply_commits(
    bus: &Bus,
    store: &Store,
    mirror: &mut Option<Mirror>,
    tail: StateTail,
) -> anyhow::Result<usize> {
    let mine = store.state_seq()?;
    let from = if mine == 0 || mine + 1 < tail.first {
        let clear = WriteSet {
            ops: vec![Op::Clear],
        };
        store.apply(&clear, Some(0))?;
        mirror_all(mirror, std::slice::from_ref(&clear));
        tail.first.saturating_sub(1)
    } else {
        mine
    };
    let mut reader = bus.read_state(from, tail.last).await?;
    let (mut applied, mut batch, mut batch_seq) = (0usize, Vec::new(), from);
    loop {
        let next = reader.next().await?;
        if let Some(commit) = &next {
            let writes: WriteSet = serde_json::from_slice(&commit.bytes).with_context(|| {
                format!(
                    "state stream commit ending at {} does not decode",
                    commit.seq
                )
            })?;
            batch.push(writes);
            batch_seq = commit.seq;
            applied += 1;
        }
        if !batch.is_empty() && (next.is_none() || batch.len() >= COMMITS_PER_TRANSACTION) {
            store.apply_all(&batch, batch_seq)?;
            mirror_all(mirror, &batch);
            batch.clear();
        }
        if next.is_none() {
            return Ok(applied);
        }
    }
}

/// Applies `commits`, which the store has just applied, to `mirror`; drops it when one does
/// not apply.
fn mirror_all(mirror: &mut Option<Mirror>, commits: &[WriteSet]) {
    if let Some(copy) = mirror
        && let Err(e) = copy.apply_all(commits)
    {
        warn!(error = %e, "the planner's in-memory copy of its store is dropped; it will load the store");
        *mirror = None;
    }
}
