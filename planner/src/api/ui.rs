//! The dashboard: a page and its scripts, built into the binary and served by the API at
//! `/ui/` (and `/`, which leads there). The assets hold no data and need no token; the page
//! asks the API for everything with the caller's token (`sessionStorage`, asked for when
//! the API answers 401), and follows a run through its watch stream.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

/// The paths of the dashboard's page and assets, which need no token.
pub(super) fn is_asset_path(path: &str) -> bool {
    path == "/"
        || path == "/ui/"
        || path
            .strip_prefix("/ui/")
            .is_some_and(|file| ASSETS.iter().any(|(name, _, _)| *name == file))
}

/// One asset: its path under `/ui/`, content type and body.
macro_rules! embedded {
    ($file:literal, $type:expr) => {
        ($file, $type, include_str!(concat!("../../ui/", $file)))
    };
}

const SCRIPT: &str = "text/javascript; charset=utf-8";

/// The assets, by path under `/ui/`, with their content types.
const ASSETS: &[(&str, &str, &str)] = &[
    embedded!("index.html", "text/html; charset=utf-8"),
    embedded!("style.css", "text/css; charset=utf-8"),
    embedded!("app.js", SCRIPT),
    embedded!("api.js", SCRIPT),
    embedded!("watch.js", SCRIPT),
    embedded!("runs.js", SCRIPT),
    embedded!("run.js", SCRIPT),
    embedded!("graph/layout.js", SCRIPT),
    embedded!("graph/svg.js", SCRIPT),
    embedded!("graph/canvas.js", SCRIPT),
    embedded!("confirm.js", SCRIPT),
    embedded!("format.js", SCRIPT),
    embedded!("cells.js", SCRIPT),
    embedded!("weights-chart.js", SCRIPT),
    embedded!("groups.js", SCRIPT),
    embedded!("schedules.js", SCRIPT),
];

/// `GET /`: the dashboard.
pub(super) async fn root() -> Redirect {
    Redirect::to("/ui/")
}

/// `GET /ui/`: the page.
pub(super) async fn index() -> Response {
    asset("index.html")
}

/// `GET /ui/{*file}`.
pub(super) async fn file(Path(file): Path<String>) -> Response {
    asset(&file)
}

fn asset(name: &str) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                // A planner upgraded serves new assets at once.
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                // Only its own scripts, no frames: the tab holds an API token.
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'self'; frame-ancestors 'none'; base-uri 'none'",
                ),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
