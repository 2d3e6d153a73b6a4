//! The chart repository the planner serves at `/charts/<path>/`, for the `flux` driver: the
//! subcharts an umbrella chart vendors, taken out of the parent at the version the group
//! pins. Flux's source-controller cannot unpack a chart, and reading a subchart from the
//! parent's repository under its own name would give its newest version, not the parent's
//! (Orkestra staged them in a repository of its own for the same reason).
//!
//! `<path>` is [`HelmChart::subchart_repository_path`] of the parent (its repository, name and
//! version), so each parent has an index of its own holding its listed subcharts only. Only
//! parents of registered groups are served, from `http(s)` repositories that need no
//! credentials: the planner fetches nothing a group does not name, and serves nothing
//! private without a token. Each parent is fetched once and kept (the last
//! [`CACHED_PARENTS`]); a pinned version's package does not change.

pub mod unpack;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_core::GroupEntry;
use sha2::{Digest, Sha256};

use unpack::Packaged;

/// How many parents' subcharts are kept.
pub const CACHED_PARENTS: usize = 32;
/// The largest repository index or chart package fetched.
const DOWNLOAD_LIMIT: usize = 32 << 20;
/// How long a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// An umbrella chart whose subcharts are served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentChart {
    /// Its repository.
    pub url: String,
    /// Its name.
    pub name: String,
    /// The version or range the group gives.
    pub version: Option<String>,
    /// The subcharts the groups split out of it.
    pub subcharts: Vec<String>,
}

/// Finds, among `groups`, the parent whose subcharts are served at `path`.
pub fn parent_at<'a>(
    groups: impl Iterator<Item = &'a GroupEntry>,
    path: &str,
) -> Option<ParentChart> {
    let mut found: Option<ParentChart> = None;
    for entry in groups {
        // The spec applied, and the last that succeeded, which a rollback applies again.
        let specs = std::iter::once(&entry.group.spec)
            .chain(entry.last_successful.as_ref().map(|s| &s.spec));
        let tasks = specs.flat_map(|spec| spec.tasks(entry.group.name()));
        for task in tasks {
            let Some(chart) = task.helm.chart.as_ref() else {
                continue;
            };
            let Some(subchart) = &chart.subchart else {
                continue;
            };
            if !chart.subcharts_servable() || chart.subchart_repository_path() != path {
                continue;
            }
            let parent = found.get_or_insert_with(|| ParentChart {
                url: chart.url.clone(),
                name: chart.name.clone(),
                version: chart.version.clone(),
                subcharts: Vec::new(),
            });
            if !parent.subcharts.contains(subchart) {
                parent.subcharts.push(subchart.clone());
            }
        }
    }
    found
}

/// Why a parent's subcharts could not be served.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The repository or its package could not be read.
    #[error("{0}")]
    Unreachable(String),
    /// The repository has no such chart or version.
    #[error("{0}")]
    NotFound(String),
    /// The package is not what the index says.
    #[error("the package's SHA-256 is {got}, not the {expected} the index gives")]
    Digest {
        /// What the index gives.
        expected: String,
        /// What was downloaded.
        got: String,
    },
}

/// Parents and their subcharts, the oldest first.
type Kept = VecDeque<(ParentChart, Arc<Vec<Packaged>>)>;

/// How long a parent that could not be served is not fetched again.
const FAILURE_KEPT: Duration = Duration::from_secs(30);

/// Parents' subcharts, fetched once and kept.
#[derive(Clone)]
pub struct ChartCache {
    http: reqwest::Client,
    kept: Arc<Mutex<Kept>>,
    /// Parents that could not be served lately, with when and why.
    failed: Arc<Mutex<Vec<(ParentChart, tokio::time::Instant, String)>>>,
    /// One fetch at a time: requests for a parent being fetched wait for it, not fetch it
    /// again.
    fetching: Arc<tokio::sync::Mutex<()>>,
}

impl Default for ChartCache {
    /// A cache fetching without following redirects: a repository's packages are read from
    /// where its index says.
    fn default() -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            http,
            kept: Arc::default(),
            failed: Arc::default(),
            fetching: Arc::default(),
        }
    }
}

impl ChartCache {
    fn kept(&self, parent: &ParentChart) -> Option<Result<Arc<Vec<Packaged>>, String>> {
        let mut kept = self.kept.lock().expect("not poisoned");
        if let Some(i) = kept.iter().position(|(p, _)| p == parent) {
            // The most recently used last: the least recently used goes first.
            let entry = kept.remove(i).expect("found");
            let subcharts = entry.1.clone();
            kept.push_back(entry);
            return Some(Ok(subcharts));
        }
        let mut failed = self.failed.lock().expect("not poisoned");
        failed.retain(|(_, at, _)| at.elapsed() < FAILURE_KEPT);
        failed
            .iter()
            .find(|(p, _, _)| p == parent)
            .map(|(_, _, why)| Err(why.clone()))
    }

    /// The subcharts of `parent`, fetched on first use; why not, when they cannot be had.
    pub async fn subcharts(&self, parent: &ParentChart) -> Result<Arc<Vec<Packaged>>, String> {
        if let Some(known) = self.kept(parent) {
            return known;
        }
        let _one_at_a_time = self.fetching.lock().await;
        if let Some(known) = self.kept(parent) {
            return known;
        }
        let fetched = match tokio::time::timeout(FETCH_TIMEOUT, self.fetch_parent(parent)).await {
            Err(_) => Err(format!("timed out after {FETCH_TIMEOUT:?}")),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(package)) => {
                let names = parent.subcharts.clone();
                // Unpacking is CPU work: off the runtime's threads.
                tokio::task::spawn_blocking(move || unpack::subcharts(&package, &names))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
            }
        };
        match fetched {
            Ok(subcharts) => {
                let subcharts = Arc::new(subcharts);
                let mut kept = self.kept.lock().expect("not poisoned");
                kept.push_back((parent.clone(), subcharts.clone()));
                while kept.len() > CACHED_PARENTS {
                    kept.pop_front();
                }
                Ok(subcharts)
            }
            Err(why) => {
                self.failed.lock().expect("not poisoned").push((
                    parent.clone(),
                    tokio::time::Instant::now(),
                    why.clone(),
                ));
                Err(why)
            }
        }
    }

    /// Downloads the parent's package: the version its repository's index lists for the
    /// group's version or range (the newest without one).
    async fn fetch_parent(&self, parent: &ParentChart) -> Result<Vec<u8>, FetchError> {
        let base = parent.url.trim_end_matches('/');
        let index = self.download(&format!("{base}/index.yaml")).await?;
        let index: serde_json::Value = serde_norway::from_slice(&index).map_err(|e| {
            FetchError::Unreachable(format!("{base}/index.yaml is not a repository index: {e}"))
        })?;
        let entry = choose(&index, &parent.name, parent.version.as_deref())?;
        let Some(url) = entry["urls"][0].as_str() else {
            return Err(FetchError::NotFound(format!(
                "{base}/index.yaml lists no URL for {}",
                parent.name
            )));
        };
        let url = match url.contains("://") {
            true => url.to_owned(),
            false => format!("{base}/{}", url.trim_start_matches('/')),
        };
        // Packages come from the repository's own host: an index cannot send the planner
        // elsewhere.
        if origin(&url) != origin(base) {
            return Err(FetchError::NotFound(format!(
                "{base}/index.yaml lists {} at another host",
                parent.name
            )));
        }
        let package = self.download(&url).await?;
        if let Some(expected) = entry["digest"].as_str() {
            let got: String = Sha256::digest(&package)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            if got != expected {
                return Err(FetchError::Digest {
                    expected: expected.to_owned(),
                    got,
                });
            }
        }
        Ok(package)
    }

    /// Reads `url` whole, within [`DOWNLOAD_LIMIT`].
    async fn download(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let unreachable = |e: String| FetchError::Unreachable(format!("GET {url}: {e}"));
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unreachable(response.status().to_string()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| unreachable(e.to_string()))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > DOWNLOAD_LIMIT {
                return Err(unreachable(format!(
                    "larger than {} MiB",
                    DOWNLOAD_LIMIT >> 20
                )));
            }
        }
        Ok(body)
    }
}

/// The scheme and host (with port) of `url`.
fn origin(url: &str) -> &str {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split('/').next().unwrap_or_default();
    &url[..scheme.len() + 3 + host.len()]
}

/// Whether `path` is one [`HelmChart::subchart_repository_path`] gives: 16 hex digits.
///
/// [`HelmChart::subchart_repository_path`]: baton_schemas::helm::HelmChart::subchart_repository_path
pub fn is_repository_path(path: &str) -> bool {
    path.len() == 16 && path.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The index entry of chart `name` at `version`: the entry of that exact version, else the
/// newest the range allows (the newest of all without a version or with `*`).
fn choose<'a>(
    index: &'a serde_json::Value,
    name: &str,
    version: Option<&str>,
) -> Result<&'a serde_json::Value, FetchError> {
    let entries = index["entries"][name]
        .as_array()
        .filter(|e| !e.is_empty())
        .ok_or_else(|| FetchError::NotFound(format!("the repository has no chart {name}")))?;
    let version_of = |e: &serde_json::Value| e["version"].as_str().unwrap_or_default().to_owned();
    let wanted = version.filter(|v| !v.is_empty() && *v != "*");
    if let Some(exact) = wanted.and_then(|v| entries.iter().find(|e| version_of(e) == v)) {
        return Ok(exact);
    }
    let range = match wanted {
        Some(v) => Some(semver::VersionReq::parse(v).map_err(|_| {
            FetchError::NotFound(format!("the repository has no chart {name} at version {v}"))
        })?),
        None => None,
    };
    entries
        .iter()
        .filter_map(|e| {
            let v = semver::Version::parse(version_of(e).trim_start_matches('v')).ok()?;
            range
                .as_ref()
                .is_none_or(|r| r.matches(&v))
                .then_some((v, e))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, e)| e)
        .ok_or_else(|| {
            FetchError::NotFound(format!(
                "the repository has no chart {name} at {}",
                wanted.unwrap_or("any semantic version")
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_origins_are_read_strictly() {
        assert!(is_repository_path("0123456789abcdef"));
        assert!(!is_repository_path("0123456789abcdeg"));
        assert!(!is_repository_path("../../etc/passwd"));
        assert_eq!(
            origin("http://127.0.0.1:80/charts/a.tgz"),
            "http://127.0.0.1:80"
        );
        assert_eq!(
            origin("https://charts.example.com"),
            "https://charts.example.com"
        );
        assert_ne!(
            origin("http://169.254.169.254/latest"),
            origin("https://charts.example.com/x")
        );
    }

    #[test]
    fn the_pinned_version_or_the_newest_in_range_is_chosen() {
        let index: serde_json::Value = serde_norway::from_str(
            "entries:\n  bookinfo:\n  - {version: v1, urls: [bookinfo-v1.tgz]}\n  - {version: 1.2.0, urls: [a]}\n  - {version: 1.10.0, urls: [b]}\n  - {version: 2.0.0, urls: [c]}\n",
        )
        .unwrap();
        let pick = |v: Option<&str>| {
            choose(&index, "bookinfo", v)
                .map(|e| e["version"].as_str().unwrap().to_owned())
                .map_err(|e| e.to_string())
        };
        assert_eq!(pick(Some("v1")).unwrap(), "v1");
        assert_eq!(pick(Some("^1.0")).unwrap(), "1.10.0");
        assert_eq!(pick(None).unwrap(), "2.0.0");
        assert_eq!(pick(Some("*")).unwrap(), "2.0.0");
        assert_eq!(
            pick(Some("3.0.0")).unwrap_err(),
            "the repository has no chart bookinfo at 3.0.0"
        );
        assert_eq!(
            choose(&index, "other", None).unwrap_err().to_string(),
            "the repository has no chart other"
        );
    }
}
