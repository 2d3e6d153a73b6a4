//! Following the API's watch streams (server-sent events): a run's until it ends, a Cell's
//! or every Cell's until interrupted. A stream cut (a planner restarting, a takeover) is
//! opened again, for up to a minute of failures; its new snapshot brings the watcher up to
//! date.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use baton_schemas::status::RunStatus;
use baton_schemas::views::{CellView, GroupView};
use baton_schemas::watch::{RunEvent, apply_run_event, run_events};

use crate::client::Api;
use crate::live::Screen;

/// How long a watch tries to open its stream again before it gives up.
const RECONNECT_FOR: Duration = Duration::from_secs(60);

/// Events read from a server-sent event stream.
pub(crate) struct SseEvents {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl SseEvents {
    /// Returns the next event's name and data; `None` when the stream ended.
    pub(crate) async fn next(&mut self) -> anyhow::Result<Option<(String, String)>> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let block = String::from_utf8_lossy(&block);
                let (mut kind, mut data) = (String::from("message"), Vec::new());
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        kind = value.trim_start().to_owned();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push(value.strip_prefix(' ').unwrap_or(value));
                    }
                    // Comments (the keep-alives) and ids are not used.
                }
                if !data.is_empty() {
                    return Ok(Some((kind, data.join("\n"))));
                }
                continue;
            }
            match self
                .response
                .chunk()
                .await
                .context("reading the watch stream")?
            {
                Some(bytes) => self.buffer.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
    }
}

impl Api {
    /// Opens the watch stream at `path` (`/v1/runs/<id>/watch`, ...).
    pub(crate) async fn open_stream(&self, path: &str) -> anyhow::Result<SseEvents> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await;
        let response =
            response.with_context(|| format!("cannot reach the Baton API at {}", self.base))?;
        if !response.status().is_success() {
            // The API's refusal, in its words (404 for a run that does not exist, ...).
            let _: serde_json::Value = self.answer(Ok(response)).await?;
            bail!("the Baton API refused the watch");
        }
        Ok(SseEvents {
            response,
            buffer: Vec::new(),
        })
    }

    /// Follows `run` on `screen` until it ends; returns its final status.
    pub(crate) async fn watch_run(
        &self,
        run: &str,
        screen: &mut Screen,
    ) -> anyhow::Result<RunStatus> {
        let path = format!("/v1/runs/{run}/watch");
        let mut status: Option<RunStatus> = None;
        let mut failing_since: Option<Instant> = None;
        loop {
            let mut progressed = false;
            let followed = self
                .follow_run(&path, &mut status, screen, &mut progressed)
                .await;
            // A stream that delivered events was working: the next failure starts a new
            // minute of tries.
            if progressed {
                failing_since = None;
            }
            match followed {
                Ok(true) => return Ok(status.expect("an ended run was seen")),
                Ok(false) => failing_since = None,
                Err(e) if status.is_none() => return Err(e),
                Err(e) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > RECONNECT_FOR {
                        return Err(e.context(format!("watching run {run}")));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Reads one opening of a run's stream into `status`; returns whether the run ended.
    async fn follow_run(
        &self,
        path: &str,
        status: &mut Option<RunStatus>,
        screen: &mut Screen,
        progressed: &mut bool,
    ) -> anyhow::Result<bool> {
        let mut events = self.open_stream(path).await?;
        while let Some((kind, data)) = events.next().await? {
            *progressed = true;
            let Some(event) = RunEvent::parse(&kind, &data) else {
                continue;
            };
            let event = event.with_context(|| format!("a {kind} event the CLI cannot read"))?;
            match (&event, status.as_mut()) {
                // A stream opened again: what changed while it was closed, as events.
                (RunEvent::Snapshot(fresh), Some(seen)) => {
                    for change in run_events(seen, fresh) {
                        screen.run_event(&change)?;
                        apply_run_event(seen, &change);
                    }
                    *seen = fresh.clone();
                    screen.draw_run(seen)?;
                }
                (RunEvent::Snapshot(fresh), None) => {
                    screen.run_event(&event)?;
                    *status = Some(fresh.clone());
                    screen.draw_run(fresh)?;
                }
                (_, Some(seen)) => {
                    screen.run_event(&event)?;
                    apply_run_event(seen, &event);
                    screen.draw_run(seen)?;
                }
                (_, None) => bail!("the watch stream did not open with a snapshot"),
            }
            if matches!(event, RunEvent::End(_)) {
                return Ok(true);
            }
        }
        Ok(status.as_ref().is_some_and(|s| s.state.is_terminal()))
    }

    /// Follows group `name` on `screen` until it settles (nothing runs or waits for it);
    /// returns its view then.
    pub(crate) async fn watch_group(
        &self,
        name: &str,
        screen: &mut Screen,
    ) -> anyhow::Result<GroupView> {
        let path = format!("/v1/groups/{name}/watch");
        let mut last: Option<GroupView> = None;
        let mut failing_since: Option<Instant> = None;
        loop {
            let opened = async {
                let mut events = self.open_stream(&path).await?;
                while let Some((kind, data)) = events.next().await? {
                    failing_since = None;
                    match kind.as_str() {
                        "group" => {
                            let view: GroupView = serde_json::from_str(&data)?;
                            screen.group(last.as_ref(), &view)?;
                            let settled = view.settled;
                            last = Some(view);
                            if settled {
                                return Ok(true);
                            }
                        }
                        "deleted" => bail!("application group {name} was deleted"),
                        _ => {}
                    }
                }
                anyhow::Ok(false)
            };
            match opened.await {
                Ok(true) => return Ok(last.expect("a settled group was seen")),
                Ok(false) => {}
                Err(e) if last.is_none() => return Err(e),
                Err(e) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > RECONNECT_FOR {
                        return Err(e.context(format!("watching application group {name}")));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Follows one Cell (`name`) or every Cell on `screen` until the stream ends for good
    /// (the Cell deleted) or the process is interrupted.
    pub(crate) async fn watch_cells(
        &self,
        name: Option<&str>,
        screen: &mut Screen,
    ) -> anyhow::Result<()> {
        let path = match name {
            Some(name) => format!("/v1/cells/{name}/watch"),
            None => "/v1/watch/cells".to_owned(),
        };
        let mut failing_since: Option<Instant> = None;
        let mut seen_any = false;
        loop {
            let opened = async {
                let mut events = self.open_stream(&path).await?;
                while let Some((kind, data)) = events.next().await? {
                    seen_any = true;
                    failing_since = None;
                    let cells: Vec<CellView> = match kind.as_str() {
                        "cell" => vec![serde_json::from_str(&data)?],
                        "cells" => serde_json::from_str(&data)?,
                        "deleted" => return Ok(true),
                        _ => continue,
                    };
                    screen.cells(&cells)?;
                }
                anyhow::Ok(false)
            };
            match opened.await {
                Ok(true) => {
                    screen.note("deleted")?;
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) if !seen_any => return Err(e),
                Err(e) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > RECONNECT_FOR {
                        return Err(e.context("watching Cells"));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
