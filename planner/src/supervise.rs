//! The planner's tasks live and die together. The loop around the core is the planner; its
//! API, discovery and cluster watch serve it. If one of them ends while the loop runs (an
//! error, a panic, or a return nobody asked for), a planner without it would go on deciding
//! with a part of its world gone: no API to answer, no target groups seen, no objects
//! watched. So the planner stops instead, with a log and an error naming the task, and its
//! supervisor (Kubernetes, systemd, `baton up`) starts it again whole.

use std::future::Future;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::error;

/// A task beside the loop, and what it is called in logs and errors.
pub struct SideTask {
    /// What the task is (`api`, `discovery`, `cluster watch`).
    pub name: &'static str,
    /// The task.
    pub handle: JoinHandle<anyhow::Result<()>>,
}

/// Why the planner stopped when one of its side tasks ended first.
#[derive(Debug, thiserror::Error)]
#[error("the planner's {task} task {how}: the planner stops without it")]
pub struct SideTaskEnded {
    /// The task.
    pub task: &'static str,
    /// How it ended.
    pub how: String,
}

/// Runs `main` (the planner's loop) while `tasks` run; cancels `shutdown` when either ends
/// and waits for all of them. Returns `main`'s result, or the error of a side task that ended
/// before a shutdown was asked for.
pub async fn supervise(
    main: impl Future<Output = anyhow::Result<()>>,
    tasks: Vec<SideTask>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut side: FuturesUnordered<_> = tasks
        .into_iter()
        .map(|t| async move { (t.name, t.handle.await) })
        .collect();
    tokio::pin!(main);
    // The first side task to end badly: before a shutdown was asked for, any end is bad;
    // after, an error or a panic still is (the process must not exit 0 on it).
    let mut failure: Option<SideTaskEnded> = None;
    let mut note = |task: &'static str, ended: Ended, asked: bool| {
        let how = match ended {
            Ok(Ok(())) if asked => return,
            Ok(Ok(())) => "ended".to_owned(),
            Ok(Err(e)) => format!("failed: {e:#}"),
            Err(e) if e.is_panic() => "panicked".to_owned(),
            Err(e) => format!("was cancelled: {e}"),
        };
        error!(task, how, "a planner task stopped; the planner stops");
        failure.get_or_insert(SideTaskEnded { task, how });
    };
    let result = loop {
        tokio::select! {
            result = &mut main => break result,
            Some((task, ended)) = side.next() => {
                note(task, ended, shutdown.is_cancelled());
                shutdown.cancel();
            }
        }
    };
    shutdown.cancel();
    while let Some((task, ended)) = side.next().await {
        note(task, ended, true);
    }
    // The loop's own error says most: a side task often ends because the loop stopped
    // answering it.
    match (result, failure) {
        (Err(e), Some(f)) => Err(e.context(f.to_string())),
        (Err(e), None) => Err(e),
        (Ok(()), Some(f)) => Err(f.into()),
        (Ok(()), None) => Ok(()),
    }
}

/// How a side task ended.
type Ended = Result<anyhow::Result<()>, tokio::task::JoinError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn task(
        name: &'static str,
        f: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) -> SideTask {
        SideTask {
            name,
            handle: tokio::spawn(f),
        }
    }

    /// The loop of a test planner: runs until shutdown.
    async fn until(shutdown: CancellationToken) -> anyhow::Result<()> {
        shutdown.cancelled().await;
        Ok(())
    }

    #[tokio::test]
    async fn a_side_task_that_fails_stops_the_planner_with_its_name() {
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        let watcher = task("discovery", async move {
            s.cancelled().await;
            Ok(())
        });
        let failing = task("api", async { anyhow::bail!("listener closed") });
        let result = supervise(
            until(shutdown.clone()),
            vec![watcher, failing],
            shutdown.clone(),
        )
        .await;
        let e = result.unwrap_err();
        assert_eq!(
            e.to_string(),
            "the planner's api task failed: listener closed: the planner stops without it"
        );
        assert!(shutdown.is_cancelled());
    }

    #[tokio::test]
    async fn a_side_task_that_panics_or_returns_stops_the_planner() {
        for (name, body) in [("cluster watch", true), ("discovery", false)] {
            let shutdown = CancellationToken::new();
            let t = task(name, async move {
                if body {
                    panic!("a bug");
                }
                Ok(())
            });
            let e = supervise(until(shutdown.clone()), vec![t], shutdown.clone())
                .await
                .unwrap_err();
            let ended = e.downcast_ref::<SideTaskEnded>().unwrap();
            assert_eq!(ended.task, name);
            assert_eq!(ended.how, if body { "panicked" } else { "ended" });
        }
    }

    #[tokio::test]
    async fn a_shutdown_asked_for_is_no_failure() {
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        let side = task("api", async move {
            s.cancelled().await;
            Ok(())
        });
        let main = {
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancel();
                Ok(())
            }
        };
        supervise(main, vec![side], shutdown).await.unwrap();
    }

    #[tokio::test]
    async fn a_side_task_failing_while_the_planner_stops_fails_the_planner() {
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        let side = task("cluster watch", async move {
            s.cancelled().await;
            anyhow::bail!("status write lost")
        });
        let main = {
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancel();
                Ok(())
            }
        };
        let e = supervise(main, vec![side], shutdown).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "the planner's cluster watch task failed: status write lost: the planner stops without it"
        );
    }

    #[tokio::test]
    async fn the_loops_error_comes_first_whatever_ended_because_of_it() {
        let shutdown = CancellationToken::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // Discovery ends when the loop stops answering it; the loop fails a moment later.
        let side = task("discovery", async move {
            let _ = rx.await;
            Ok(())
        });
        let main = async move {
            drop(tx);
            tokio::task::yield_now().await;
            anyhow::bail!("store lost")
        };
        // Whichever the supervisor saw first, the loop's error is what it returns (with the
        // task's end as context when it saw that first).
        let e = supervise(main, vec![side], shutdown).await.unwrap_err();
        assert_eq!(format!("{e:#}").split(": ").last(), Some("store lost"));
    }

    #[tokio::test]
    async fn the_loops_error_is_the_planners() {
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        let side = task("api", async move {
            s.cancelled().await;
            Ok(())
        });
        let e = supervise(async { anyhow::bail!("store lost") }, vec![side], shutdown)
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "store lost");
    }
}
