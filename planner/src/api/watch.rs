//! The watch streams: a run's, a Cell's and a group's changes as server-sent events (see
//! [`baton_schemas::watch`]), pushed as the planner makes them.
//!
//! A stream subscribes to the planner's change notices before it reads its first state, so
//! that no change falls between the two. After a notice naming its run (a Cell's or a group's
//! stream: after any turn), it reads the state again through the planner's command channel,
//! at most every [`COALESCE`], and sends what differs. A watcher that falls behind the
//! notices reads everything again. Streams end with the planner (shutdown) or the client.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use baton_schemas::RunId;
use baton_schemas::status::RunStatus;
use baton_schemas::views::CellView;
use baton_schemas::watch::{RunEvent, run_events};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

use super::{Api, ApiError, find_group};
use crate::service::{Changed, Command};
use baton_core::Refusal;

/// How often one stream reads its state at most: a run whose nodes finish by the thousand
/// each second is sent in batches, not a read per node.
pub(super) const COALESCE: Duration = Duration::from_millis(100);

/// How many events wait for a slow client before its stream stops reading new states.
const BUFFER: usize = 64;

/// `GET /v1/runs/{run}/watch`.
pub(super) async fn run(
    State(api): State<Api>,
    Path(run): Path<String>,
) -> Result<Response, ApiError> {
    let id = RunId::new(run.clone());
    let notices = api.changes.subscribe();
    let first = read_run(&api, &id)
        .await?
        .ok_or_else(|| ApiError::from(Refusal::UnknownRun(run)))?;
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(follow_run(api, id, first, notices, tx));
    Ok(stream(rx))
}

async fn read_run(api: &Api, run: &RunId) -> Result<Option<RunStatus>, ApiError> {
    api.ask(|reply| Command::Status {
        run: run.clone(),
        reply,
    })
    .await
}

/// Sends the snapshot, then what changes, until the run ends.
async fn follow_run(
    api: Api,
    run: RunId,
    first: RunStatus,
    mut notices: broadcast::Receiver<Arc<Changed>>,
    tx: mpsc::Sender<Event>,
) {
    let ended = first.state.is_terminal();
    let mut last = first.clone();
    if tx
        .send(run_event(&RunEvent::Snapshot(first)))
        .await
        .is_err()
    {
        return;
    }
    if ended {
        send(&api, &tx, run_event(&RunEvent::End(last.header()))).await;
        return;
    }
    loop {
        if !wait_for(&api, &mut notices, |c| c.runs.contains(&run), &tx).await {
            return;
        }
        let Ok(Some(now)) = read_run(&api, &run).await else {
            // Gone (pruned) or the planner stopping: the stream ends.
            return;
        };
        for event in run_events(&last, &now) {
            let end = matches!(event, RunEvent::End(_));
            if !send(&api, &tx, run_event(&event)).await || end {
                return;
            }
        }
        last = now;
    }
}

/// `GET /v1/cells/{name}/watch`.
pub(super) async fn cell(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let notices = api.changes.subscribe();
    let read = {
        let name = name.clone();
        move |api: Api| {
            let name = name.clone();
            async move {
                let cells = api.ask(|reply| Command::Cells { reply }).await?;
                Ok(cells.into_iter().find(|c| c.name == name))
            }
        }
    };
    let first = read(api.clone())
        .await?
        .ok_or_else(|| ApiError::from(Refusal::UnknownCell(name)))?;
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(follow_view(api, "cell", first, read, notices, tx));
    Ok(stream(rx))
}

/// `GET /v1/watch/cells`: every Cell, sent whole (`cells`) whenever any changed.
pub(super) async fn cells(State(api): State<Api>) -> Result<Response, ApiError> {
    let notices = api.changes.subscribe();
    let read = |api: Api| async move {
        let cells = api.ask(|reply| Command::Cells { reply }).await?;
        Ok(Some(
            cells.into_iter().map(CellView::listed).collect::<Vec<_>>(),
        ))
    };
    let first = read(api.clone()).await?.unwrap_or_default();
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(follow_view(api, "cells", first, read, notices, tx));
    Ok(stream(rx))
}

/// `GET /v1/groups/{name}/watch`.
pub(super) async fn group(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let notices = api.changes.subscribe();
    let first = find_group(&api, &name).await?;
    let read = move |api: Api| {
        let name = name.clone();
        async move {
            match find_group(&api, &name).await {
                Ok(group) => Ok(Some(group)),
                Err(ApiError(axum::http::StatusCode::NOT_FOUND, _)) => Ok(None),
                Err(e) => Err(e),
            }
        }
    };
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(follow_view(api, "group", first, read, notices, tx));
    Ok(stream(rx))
}

/// Sends `first` as `kind`, then the view again whenever a turn changed it, and `deleted`
/// once it is gone.
async fn follow_view<V, F, Fut>(
    api: Api,
    kind: &'static str,
    first: V,
    read: F,
    mut notices: broadcast::Receiver<Arc<Changed>>,
    tx: mpsc::Sender<Event>,
) where
    V: Serialize + PartialEq,
    F: Fn(Api) -> Fut,
    Fut: std::future::Future<Output = Result<Option<V>, ApiError>>,
{
    if !send(&api, &tx, json_event(kind, &first)).await {
        return;
    }
    let mut last = first;
    loop {
        if !wait_for(&api, &mut notices, |_| true, &tx).await {
            return;
        }
        match read(api.clone()).await {
            Ok(Some(now)) if now == last => {}
            Ok(Some(now)) => {
                if !send(&api, &tx, json_event(kind, &now)).await {
                    return;
                }
                last = now;
            }
            Ok(None) => {
                send(&api, &tx, Event::default().event("deleted").data("{}")).await;
                return;
            }
            Err(_) => return,
        }
    }
}

/// Waits for a notice `concerns` says is about the watched thing (a lag counts: the watcher
/// reads again), then for [`COALESCE`] so that later notices join it. Returns `false` when
/// the stream is to end: the planner stopping, or the client gone.
async fn wait_for(
    api: &Api,
    notices: &mut broadcast::Receiver<Arc<Changed>>,
    concerns: impl Fn(&Changed) -> bool,
    tx: &mpsc::Sender<Event>,
) -> bool {
    loop {
        tokio::select! {
            _ = api.shutdown.cancelled() => return false,
            _ = tx.closed() => return false,
            notice = notices.recv() => match notice {
                Ok(changed) if concerns(&changed) => break,
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => return false,
            },
        }
    }
    tokio::select! {
        _ = api.shutdown.cancelled() => false,
        _ = tokio::time::sleep(COALESCE) => {
            // What came meanwhile is read with this state.
            while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = notices.try_recv() {}
            true
        }
    }
}

/// Queues `event` for the client; `false` when the stream is to end (the client gone, or
/// the planner stopping while a client that reads nothing holds the queue full).
async fn send(api: &Api, tx: &mpsc::Sender<Event>, event: Event) -> bool {
    tokio::select! {
        sent = tx.send(event) => sent.is_ok(),
        _ = api.shutdown.cancelled() => false,
    }
}

fn run_event(event: &RunEvent) -> Event {
    Event::default().event(event.kind()).data(event.data())
}

fn json_event(kind: &str, value: &impl Serialize) -> Event {
    Event::default()
        .event(kind)
        .data(serde_json::to_string(value).expect("views serialize"))
}

/// The events of `rx` as the response, with a comment every 15 s so that proxies keep an
/// idle stream open.
fn stream(rx: mpsc::Receiver<Event>) -> Response {
    let events: futures::stream::BoxStream<'static, Result<Event, Infallible>> =
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|event| (Ok(event), rx))
        }));
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
