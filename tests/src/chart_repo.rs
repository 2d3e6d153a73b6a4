//! A Helm chart repository for tests on a loopback port: charts written at test time,
//! packaged and indexed by the real `helm` (`helm package`, `helm repo index`), and served
//! as files, as any static chart repository serves them; optionally only to a client with a
//! username and password (HTTP basic authentication, as private repositories ask).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;

/// A served chart repository; stops when dropped.
pub struct ChartRepo {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    dir: PathBuf,
    helm: PathBuf,
    _runtime: tokio::runtime::Runtime,
}

impl ChartRepo {
    /// Serves an empty repository kept in `dir`, indexed with `helm`.
    pub fn start(dir: &Path, helm: &Path) -> anyhow::Result<ChartRepo> {
        ChartRepo::start_with(dir, helm, None)
    }

    /// Serves an empty repository that answers only to `username` and `password`.
    pub fn start_private(
        dir: &Path,
        helm: &Path,
        username: &str,
        password: &str,
    ) -> anyhow::Result<ChartRepo> {
        use base64::Engine;
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        ChartRepo::start_with(dir, helm, Some(format!("Basic {token}")))
    }

    fn start_with(
        dir: &Path,
        helm: &Path,
        authorization: Option<String>,
    ) -> anyhow::Result<ChartRepo> {
        std::fs::create_dir_all(dir)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .route("/{file}", axum::routing::get(file))
            .with_state(Served {
                dir: dir.to_owned(),
                authorization,
            });
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(ChartRepo {
            url,
            dir: dir.to_owned(),
            helm: helm.to_owned(),
            _runtime: runtime,
        })
    }

    /// Adds chart `name` at `version`, with `templates` (file name, text) and default
    /// `values` (YAML), and indexes the repository again.
    pub fn add_chart(
        &self,
        name: &str,
        version: &str,
        templates: &[(&str, &str)],
        values: &str,
    ) -> anyhow::Result<()> {
        self.add_umbrella(name, version, templates, values, &[])
    }

    /// Adds an umbrella chart: chart `name` as [`ChartRepo::add_chart`] does, with
    /// `subcharts` (name, templates) vendored under `charts/` at the same version, each a
    /// dependency that `<subchart>.enabled: false` switches off.
    pub fn add_umbrella(
        &self,
        name: &str,
        version: &str,
        templates: &[(&str, &str)],
        values: &str,
        subcharts: &[(&str, &[(&str, &str)])],
    ) -> anyhow::Result<()> {
        let source = tempfile::tempdir()?;
        let chart = source.path().join(name);
        let mut chart_yaml =
            format!("apiVersion: v2\nname: {name}\nversion: {version}\ntype: application\n");
        if !subcharts.is_empty() {
            chart_yaml.push_str("dependencies:\n");
        }
        for (sub, sub_templates) in subcharts {
            chart_yaml.push_str(&format!(
                "- name: {sub}\n  version: {version}\n  condition: {sub}.enabled\n"
            ));
            write_chart(
                &chart.join("charts").join(sub),
                sub,
                version,
                sub_templates,
                "",
            )?;
        }
        write_chart(&chart, name, version, templates, values)?;
        std::fs::write(chart.join("Chart.yaml"), chart_yaml)?;
        self.helm(&[
            "package",
            &chart.display().to_string(),
            "--destination",
            &self.dir.display().to_string(),
        ])?;
        self.helm(&[
            "repo",
            "index",
            &self.dir.display().to_string(),
            "--url",
            &self.url,
        ])
    }

    fn helm(&self, args: &[&str]) -> anyhow::Result<()> {
        let out = Command::new(&self.helm)
            .args(args)
            .output()
            .with_context(|| format!("running {}", self.helm.display()))?;
        if !out.status.success() {
            bail!("helm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}

/// Writes a chart's folder: `Chart.yaml`, `values.yaml` and `templates/`.
fn write_chart(
    dir: &Path,
    name: &str,
    version: &str,
    templates: &[(&str, &str)],
    values: &str,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("templates"))?;
    std::fs::write(
        dir.join("Chart.yaml"),
        format!("apiVersion: v2\nname: {name}\nversion: {version}\ntype: application\n"),
    )?;
    std::fs::write(dir.join("values.yaml"), values)?;
    for (file, text) in templates {
        std::fs::write(dir.join("templates").join(file), text)?;
    }
    Ok(())
}

/// What the server serves, and to whom.
#[derive(Clone)]
struct Served {
    dir: PathBuf,
    /// The `Authorization` header a request must carry, if any.
    authorization: Option<String>,
}

/// Serves one file of the repository folder (no paths: a repository is flat).
async fn file(
    State(served): State<Served>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
) -> impl IntoResponse {
    if let Some(wanted) = &served.authorization {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given != Some(wanted.as_str()) {
            return Err(StatusCode::UNAUTHORIZED);
        }
    }
    if name.contains('/') || name.starts_with('.') {
        return Err(StatusCode::NOT_FOUND);
    }
    tokio::fs::read(served.dir.join(&name))
        .await
        .map_err(|_| StatusCode::NOT_FOUND)
}
