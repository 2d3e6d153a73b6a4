//! `GET /charts/{path}/{file}`: the chart repository of an umbrella chart's subcharts
//! (`crate::charts`), as Flux's source-controller reads one: `index.yaml`, then a package.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Api, ApiError};
use crate::charts::unpack::{self, Packaged};
use crate::service::Command;
use tracing::warn;

pub(super) async fn file(
    State(api): State<Api>,
    Path((path, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let charts = served(&api, &path).await?;
    if file == "index.yaml" {
        let index = unpack::index(&charts);
        return Ok(([(header::CONTENT_TYPE, "application/x-yaml")], index).into_response());
    }
    let chart = charts
        .iter()
        .find(|c| c.file_name() == file)
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                vec![format!("/charts/{path} has no {file} (see its index.yaml)")],
            )
        })?;
    Ok((
        [(header::CONTENT_TYPE, "application/gzip")],
        chart.tgz.clone(),
    )
        .into_response())
}

/// The subcharts served at `path`: 404 when no registered group splits a chart served
/// there, 502 when the parent's repository could not give them.
async fn served(api: &Api, path: &str) -> Result<Arc<Vec<Packaged>>, ApiError> {
    let unknown = || {
        ApiError(
            StatusCode::NOT_FOUND,
            vec![format!(
                "no registered group splits an umbrella chart served at /charts/{path}"
            )],
        )
    };
    if !crate::charts::is_repository_path(path) {
        return Err(unknown());
    }
    let parent = api
        .ask(|reply| Command::SubchartSource {
            path: path.to_owned(),
            reply,
        })
        .await?
        .ok_or_else(unknown)?;
    api.charts.subcharts(&parent).await.map_err(|why| {
        // The caller has no token: where the parent lives and what it answered stay in the
        // planner's log.
        warn!(path, chart = %parent.name, url = %parent.url, %why, "subcharts could not be served");
        ApiError(
            StatusCode::BAD_GATEWAY,
            vec![format!(
                "the parent chart of /charts/{path} could not be read; the planner's log says why"
            )],
        )
    })
}
