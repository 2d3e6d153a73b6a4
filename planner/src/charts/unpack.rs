//! Taking subcharts out of a packaged umbrella chart, and the repository index that serves
//! them: pure functions over bytes, so that what Flux is given is what the parent vendors.
//!
//! A parent chart's `charts/` holds each dependency either packaged (`<name>-<version>.tgz`,
//! as `helm dependency build` leaves it) or unpacked (`charts/<name>/`, as charts vendored
//! by hand are). A packaged one is served as it is; an unpacked one is packed again under
//! `<name>/`, as `helm package` does.

use std::collections::BTreeMap;
use std::io::Read;

use sha2::{Digest, Sha256};

/// The most a parent chart may hold once unpacked: a bomb is refused, not unpacked.
pub const UNPACKED_LIMIT: u64 = 64 << 20;

/// A subchart ready to serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packaged {
    /// Its name (from its `Chart.yaml`).
    pub name: String,
    /// Its version (from its `Chart.yaml`).
    pub version: String,
    /// Its `Chart.yaml` fields an index entry repeats (`apiVersion`, `appVersion`, ...).
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The packaged chart.
    pub tgz: Vec<u8>,
}

impl Packaged {
    /// Its file name in the repository.
    pub fn file_name(&self) -> String {
        format!("{}-{}.tgz", self.name, self.version)
    }

    /// The SHA-256 of the package, in hex.
    pub fn digest(&self) -> String {
        hex(&Sha256::digest(&self.tgz))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a parent chart's subcharts could not be taken out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnpackError {
    /// The package is not a gzipped tar, or is damaged.
    #[error("not a chart package: {0}")]
    NotAPackage(String),
    /// It unpacks to more than [`UNPACKED_LIMIT`].
    #[error("it unpacks to more than {} MiB", UNPACKED_LIMIT >> 20)]
    TooLarge,
    /// A listed subchart is not in its `charts/`.
    #[error("chart {parent} has no subchart {subchart} (no charts/{subchart} in it)")]
    Missing {
        /// The parent chart.
        parent: String,
        /// The subchart.
        subchart: String,
    },
    /// What `charts/` holds under a subchart's name is not that chart, or holds it twice.
    #[error("chart {parent}: {problem}")]
    Ambiguous {
        /// The parent chart.
        parent: String,
        /// What is wrong.
        problem: String,
    },
}

/// The files of a package by path. Every byte decompressed counts against `budget`, shared
/// by the parent and the packages nested in it: a bomb is refused, at any depth.
fn files(tgz: &[u8], budget: &mut u64) -> Result<Vec<(String, Vec<u8>)>, UnpackError> {
    let decoder = flate2::read::GzDecoder::new(tgz);
    let mut archive = tar::Archive::new(decoder.take(*budget + 1));
    let mut out = Vec::new();
    let mut read = 0u64;
    let broken = |e: std::io::Error, read: u64| match read >= *budget {
        true => UnpackError::TooLarge,
        false => UnpackError::NotAPackage(e.to_string()),
    };
    let entries = archive.entries().map_err(|e| broken(e, 0))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| broken(e, read))?;
        read += 512 + entry.header().size().unwrap_or(0);
        if read > *budget {
            return Err(UnpackError::TooLarge);
        }
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()
            .map_err(|e| broken(e, read))?
            .to_string_lossy()
            .into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|e| broken(e, read))?;
        out.push((path, bytes));
    }
    *budget -= read.min(*budget);
    Ok(out)
}

/// The name, version and index fields of a `Chart.yaml`.
fn chart_yaml(
    bytes: &[u8],
) -> Option<(String, String, serde_json::Map<String, serde_json::Value>)> {
    let value: serde_json::Value = serde_norway::from_slice(bytes).ok()?;
    let name = value.get("name")?.as_str()?.to_owned();
    let version = value.get("version")?.as_str()?.to_owned();
    let metadata = value.as_object()?.clone();
    Some((name, version, metadata))
}

/// Takes the subcharts `names` out of the parent chart package `tgz`.
pub fn subcharts(tgz: &[u8], names: &[String]) -> Result<Vec<Packaged>, UnpackError> {
    let mut budget = UNPACKED_LIMIT;
    let all = files(tgz, &mut budget)?;
    // Paths are `<parent>/...`; the parent's own Chart.yaml names it.
    let parent = all
        .iter()
        .find(|(p, _)| p.matches('/').count() == 1 && p.ends_with("/Chart.yaml"))
        .map(|(p, _)| p.trim_end_matches("/Chart.yaml").to_owned())
        .ok_or_else(|| UnpackError::NotAPackage("no Chart.yaml at its top".to_owned()))?;
    let charts = format!("{parent}/charts/");
    let ambiguous = |problem: String| UnpackError::Ambiguous {
        parent: parent.clone(),
        problem,
    };
    // Dependencies packaged in charts/ as `<name>-<version>.tgz` (Helm's naming), for the
    // names listed only, by the name their Chart.yaml gives.
    let mut packaged: BTreeMap<String, Packaged> = BTreeMap::new();
    for (path, bytes) in &all {
        let Some(file) = path.strip_prefix(&charts) else {
            continue;
        };
        let listed = names
            .iter()
            .any(|n| file.starts_with(&format!("{n}-")) && file.ends_with(".tgz"));
        if file.contains('/') || !listed {
            continue;
        }
        let inner = files(bytes, &mut budget)?;
        let Some((name, version, metadata)) = inner
            .iter()
            .find(|(p, _)| p.matches('/').count() == 1 && p.ends_with("/Chart.yaml"))
            .and_then(|(_, b)| chart_yaml(b))
        else {
            continue;
        };
        if !names.contains(&name) {
            continue;
        }
        let chart = Packaged {
            name: name.clone(),
            version,
            metadata,
            tgz: bytes.clone(),
        };
        if let Some(before) = packaged.insert(name.clone(), chart) {
            return Err(ambiguous(format!(
                "charts/ holds {name} twice ({} and another version): Flux could not tell which the parent means",
                before.version
            )));
        }
    }
    names
        .iter()
        .map(|name| {
            let chart = match packaged.remove(name) {
                Some(p) => p,
                None => pack_unpacked(&all, &format!("{charts}{name}/"), name).ok_or_else(
                    || UnpackError::Missing {
                        parent: parent.clone(),
                        subchart: name.clone(),
                    },
                )?,
            };
            // The HelmRelease asks for the subchart by the name the group gives.
            match &chart.name == name {
                true => Ok(chart),
                false => Err(ambiguous(format!(
                    "charts/{name} holds chart {}, not {name}: the flux driver releases a subchart by its chart name",
                    chart.name
                ))),
            }
        })
        .collect()
}

/// Packs the files under `dir` (an unpacked subchart) as `<name>/...`.
fn pack_unpacked(files: &[(String, Vec<u8>)], dir: &str, name: &str) -> Option<Packaged> {
    let inside: Vec<(&str, &Vec<u8>)> = files
        .iter()
        .filter_map(|(p, b)| p.strip_prefix(dir).map(|rest| (rest, b)))
        .collect();
    let (chart_name, version, metadata) = inside
        .iter()
        .find(|(p, _)| *p == "Chart.yaml")
        .and_then(|(_, b)| chart_yaml(b))?;
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    for (path, bytes) in &inside {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        // A fixed time: packing the same files twice gives the same bytes and digest.
        header.set_mtime(0);
        header.set_cksum();
        builder
            .append_data(&mut header, format!("{name}/{path}"), bytes.as_slice())
            .ok()?;
    }
    let tgz = builder.into_inner().ok()?.finish().ok()?;
    Some(Packaged {
        name: chart_name,
        version,
        metadata,
        tgz,
    })
}

/// The `index.yaml` of a repository holding `charts`, each at a URL relative to it.
pub fn index(charts: &[Packaged]) -> String {
    let mut entries = serde_json::Map::new();
    for chart in charts {
        let mut entry = chart.metadata.clone();
        entry.insert("urls".to_owned(), serde_json::json!([chart.file_name()]));
        entry.insert("digest".to_owned(), serde_json::json!(chart.digest()));
        entries.insert(chart.name.clone(), serde_json::json!([entry]));
    }
    let index = serde_json::json!({"apiVersion": "v1", "entries": entries});
    serde_norway::to_string(&index).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gzipped tar of `files` (path, text).
    fn package(files: &[(&str, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::default(),
        ));
        for (path, text) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, path, text.as_bytes())
                .unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn packaged_and_unpacked_subcharts_are_taken_out_at_the_versions_vendored() {
        let reviews = package(&[
            (
                "reviews/Chart.yaml",
                "apiVersion: v2\nname: reviews\nversion: 1.2.0\n",
            ),
            ("reviews/templates/cm.yaml", "kind: ConfigMap\n"),
        ]);
        let mut parent = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::default(),
        ));
        for (path, bytes) in [
            (
                "bookinfo/Chart.yaml",
                b"apiVersion: v2\nname: bookinfo\nversion: v1\n".to_vec(),
            ),
            ("bookinfo/charts/reviews-1.2.0.tgz", reviews.clone()),
            (
                "bookinfo/charts/details/Chart.yaml",
                b"apiVersion: v2\nname: details\nversion: v1\nappVersion: \"1.16\"\n".to_vec(),
            ),
            (
                "bookinfo/charts/details/templates/d.yaml",
                b"kind: Service\n".to_vec(),
            ),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            parent
                .append_data(&mut header, path, bytes.as_slice())
                .unwrap();
        }
        let parent = parent.into_inner().unwrap().finish().unwrap();
        let names = ["reviews".to_owned(), "details".to_owned()];
        let got = subcharts(&parent, &names).unwrap();
        assert_eq!(got[0].tgz, reviews, "a packaged one is served as it is");
        assert_eq!(
            (got[1].name.as_str(), got[1].version.as_str()),
            ("details", "v1")
        );
        let repacked = files(&got[1].tgz, &mut UNPACKED_LIMIT.clone()).unwrap();
        let paths: Vec<&str> = repacked.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["details/Chart.yaml", "details/templates/d.yaml"]);
        // Packing again gives the same bytes, so the digest in the index holds.
        assert_eq!(subcharts(&parent, &names).unwrap()[1].tgz, got[1].tgz);
        let index = index(&got);
        assert!(index.contains("- reviews-1.2.0.tgz"), "{index}");
        assert!(
            index.contains(&format!("digest: {}", got[1].digest())),
            "{index}"
        );
        assert!(
            index.contains("appVersion: '1.16'") || index.contains("appVersion: \"1.16\""),
            "{index}"
        );
        assert_eq!(
            subcharts(&parent, &["ratings".to_owned()]),
            Err(UnpackError::Missing {
                parent: "bookinfo".into(),
                subchart: "ratings".into()
            })
        );
        assert!(matches!(
            subcharts(b"not a package", &names),
            Err(UnpackError::NotAPackage(_))
        ));
    }

    #[test]
    fn a_bomb_and_a_subchart_under_another_name_are_refused() {
        let big = "0".repeat(UNPACKED_LIMIT as usize + 1);
        let bomb = package(&[
            (
                "bookinfo/Chart.yaml",
                "apiVersion: v2\nname: bookinfo\nversion: v1\n",
            ),
            (
                "bookinfo/charts/reviews/Chart.yaml",
                "apiVersion: v2\nname: reviews\nversion: v1\n",
            ),
            ("bookinfo/charts/reviews/big.txt", &big),
        ]);
        assert_eq!(
            subcharts(&bomb, &["reviews".to_owned()]),
            Err(UnpackError::TooLarge)
        );
        let renamed = package(&[
            (
                "bookinfo/Chart.yaml",
                "apiVersion: v2\nname: bookinfo\nversion: v1\n",
            ),
            (
                "bookinfo/charts/reviews/Chart.yaml",
                "apiVersion: v2\nname: critic\nversion: v1\n",
            ),
        ]);
        assert_eq!(
            subcharts(&renamed, &["reviews".to_owned()])
                .unwrap_err()
                .to_string(),
            "chart bookinfo: charts/reviews holds chart critic, not reviews: the flux driver releases a subchart by its chart name"
        );
    }
}
