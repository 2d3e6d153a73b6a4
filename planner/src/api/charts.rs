//! `GET /charts/{path}/{file}`: the chart repository of an umbrella chart's subcharts
//! (`crate::charts`), as Flux's source-controller reads one: `index.yaml`, then a package.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Api, ApiError};
use crate::charts::unpack::{self, Packaged};
use crate::service::Command;

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
    let parent = api
        .ask(|reply| Command::SubchartSource {
            path: path.to_owned(),
            reply,
        })
        .await?
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                vec![format!(
                    "no registered group splits an umbrella chart served at /charts/{path}"
                )],
            )
        })?;
    api.charts.subcharts(&parent).await.map_err(|e| {
        let version = parent.version.as_deref().unwrap_or("newest");
        ApiError(
            StatusCode::BAD_GATEWAY,
            vec![format!(
                "chart {} {version} of {}: {e}",
                parent.name, parent.url
            )],
        )
    })
}
