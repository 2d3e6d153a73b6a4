//! The `helm` node kind: one operation on one Helm release, done by a worker with the Helm 3
//! binary (`cli` driver) or through a Flux `HelmRelease` (`flux` driver).
//!
//! A `helm` node either brings a release to its spec (`apply`: install it, or upgrade it) or
//! removes it (`uninstall`). Both are idempotent: a release already at the spec applied by the
//! same attempt is adopted, and uninstalling a release that is not there succeeds.
//!
//! This module also renders the Flux objects of a release ([`HelmSpec::flux_objects`]), so the
//! `flux` driver and the executors that Orkestra passed a `HelmRelease` to (`--spec`) agree.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::Duration;

/// The API version of the Flux `HelmRelease` Baton writes.
pub const FLUX_HELM_API_VERSION: &str = "helm.toolkit.fluxcd.io/v2";
/// The API version of the Flux `HelmRepository` Baton writes.
pub const FLUX_HELM_REPOSITORY_API_VERSION: &str = "source.toolkit.fluxcd.io/v1";
/// The API version of the Flux `OCIRepository` Baton writes (served by Flux 2.3 and later).
pub const FLUX_OCI_REPOSITORY_API_VERSION: &str = "source.toolkit.fluxcd.io/v1beta2";

/// A Helm release's timeout when its spec gives none, as in Helm and Flux.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// A Flux `HelmRelease`'s interval when the spec gives none, as in Orkestra.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// One operation on one Helm release.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HelmSpec {
    /// `apply` (install or upgrade to this spec, the default) or `uninstall`.
    #[serde(default)]
    pub action: HelmAction,
    /// The release name (at most 53 characters, as Helm requires).
    pub release: String,
    /// The namespace of the release, created if missing.
    pub namespace: String,
    /// The chart to install; required for `apply`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<HelmChart>,
    /// The release's values.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schemars(schema_with = "crate::helm::any_object")]
    pub values: Map<String, Value>,
    /// Values read from Secrets and ConfigMaps in the release's namespace, merged in order
    /// before `values` (Flux's `valuesFrom`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_from: Vec<ValuesReference>,
    /// Which part of the values read from `valuesFrom` this release takes, when it is one
    /// release of an application split into subcharts (`values` is given cut already). The
    /// `flux` driver cannot cut them for a subchart's release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::helm::values_scope_schema")]
    pub values_from_scope: Option<ValuesScope>,
    /// Who performs it; the worker's `--helm-driver` when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<HelmDriver>,
    /// How long Helm may take (`--timeout`; Flux's `spec.timeout`). Default 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Flux's reconcile interval (`spec.interval`). Default 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Flux's `install` options, as Flux writes them; the `cli` driver maps them to flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::helm::any_object")]
    pub install: Option<Value>,
    /// Flux's `upgrade` options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::helm::any_object")]
    pub upgrade: Option<Value>,
    /// Flux's `rollback` options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::helm::any_object")]
    pub rollback: Option<Value>,
    /// Flux's `uninstall` options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::helm::any_object")]
    pub uninstall: Option<Value>,
    /// Labels Baton puts on the Flux objects it writes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Which part of an application's values one of its releases takes, when the application is
/// split into subcharts released apart (Orkestra's split).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum ValuesScope {
    /// A subchart's release: the values' `<name>` map, with `global`.
    Subchart {
        /// The subchart.
        name: String,
    },
    /// The parent chart's release: every value, with each of `subcharts` switched off
    /// (`<subchart>: {enabled: false}`, in place of its values).
    Parent {
        /// The subcharts released apart.
        subcharts: Vec<String>,
    },
}

impl ValuesScope {
    /// Returns the part of `values` the release takes.
    pub fn cut(&self, values: &Map<String, Value>) -> Map<String, Value> {
        match self {
            ValuesScope::Subchart { name } => {
                let mut part = values
                    .get(name)
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                if let Some(global) = values.get("global") {
                    part.insert("global".to_owned(), global.clone());
                }
                part
            }
            ValuesScope::Parent { subcharts } => {
                let mut all = values.clone();
                for name in subcharts {
                    all.insert(name.clone(), json!({"enabled": false}));
                }
                all
            }
        }
    }
}

/// One of Flux's blocks of options of a release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FluxOptions {
    /// `install`.
    Install,
    /// `upgrade`.
    Upgrade,
    /// `rollback`.
    Rollback,
    /// `uninstall`.
    Uninstall,
}

/// How a release is brought to its spec: it is installed when absent, upgraded when present.
/// Flux configures the two apart (options, remediation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deploy {
    /// `helm install` (Helm's `upgrade --install` of an absent release).
    Install,
    /// `helm upgrade`.
    Upgrade,
}

impl Deploy {
    /// Returns Flux's name of it (`install`, `upgrade`).
    pub fn as_str(self) -> &'static str {
        match self {
            Deploy::Install => "install",
            Deploy::Upgrade => "upgrade",
        }
    }
}

impl From<Deploy> for FluxOptions {
    fn from(deploy: Deploy) -> FluxOptions {
        match deploy {
            Deploy::Install => FluxOptions::Install,
            Deploy::Upgrade => FluxOptions::Upgrade,
        }
    }
}

/// What a `helm` node does to its release.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum HelmAction {
    /// Installs the release, or upgrades it to the spec (`helm upgrade --install`).
    #[default]
    Apply,
    /// Removes the release; one that is not installed counts as removed.
    Uninstall,
}

impl HelmAction {
    /// Returns the action's name as written in specs.
    pub fn as_str(self) -> &'static str {
        match self {
            HelmAction::Apply => "apply",
            HelmAction::Uninstall => "uninstall",
        }
    }
}

/// Who performs a Helm operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum HelmDriver {
    /// The worker runs the Helm 3 binary.
    Cli,
    /// The worker writes a Flux `HelmRelease` and its chart source and waits for Flux's
    /// helm-controller to report it ready.
    Flux,
}

impl HelmDriver {
    /// Returns the driver's name as written in specs and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            HelmDriver::Cli => "cli",
            HelmDriver::Flux => "flux",
        }
    }
}

impl std::fmt::Display for HelmDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for HelmDriver {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cli" => Ok(HelmDriver::Cli),
            "flux" => Ok(HelmDriver::Flux),
            other => Err(format!("unknown helm driver {other:?} (known: cli, flux)")),
        }
    }
}

/// Why an umbrella chart is not split with the flux driver: the planner serves only the
/// subcharts of an exact version of a chart in an `http(s)` repository that needs no
/// credentials.
pub const SUBCHARTS_NOT_SERVED: &str = "the flux driver reads subcharts from the planner's chart repository, which serves those of an exact chart version in an http(s) repository that needs no credentials; this chart is oci://, names authSecretRef, carries credentials in its URL, or gives no exact version: pin the version, or use the cli driver";

/// Where a chart comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HelmChart {
    /// The chart repository: an `http(s)://` Helm repository (serving `index.yaml`), or an
    /// `oci://` registry path under which the chart is `<url>/<name>`.
    pub url: String,
    /// The chart's name in the repository.
    pub name: String,
    /// The chart version or semver range; the newest when not set (or `*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// A Secret with the repository's credentials: `username`, `password`, `ca.crt`,
    /// `tls.crt`, `tls.key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret_ref: Option<SecretRef>,
    /// Deploys the chart's dependency of this name (`charts/<subchart>`) instead of the chart
    /// itself: one subchart of a decomposed umbrella chart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subchart: Option<String>,
}

impl HelmChart {
    /// Returns whether the repository is an OCI registry.
    pub fn is_oci(&self) -> bool {
        self.url.starts_with("oci://")
    }

    /// Returns the version to ask for, `None` for the newest.
    pub fn pinned_version(&self) -> Option<&str> {
        self.version
            .as_deref()
            .filter(|v| !v.is_empty() && *v != "*")
    }

    /// Returns the path under the planner's chart repository (`/charts`) at which it serves
    /// this umbrella chart's subcharts: the first 16 hex digits of the SHA-256 of its
    /// repository, name and version, so that two parents never share an index.
    pub fn subchart_repository_path(&self) -> String {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(
            format!(
                "{}\n{}\n{}",
                self.url.trim_end_matches('/'),
                self.name,
                self.version.as_deref().unwrap_or_default()
            )
            .as_bytes(),
        );
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// Whether the planner's chart repository serves this umbrella chart's subcharts: it
    /// reads `http(s)` repositories that need no credentials.
    /// Its version must be exact (the subcharts served are the ones that version vendors,
    /// whatever a range would later pick), and its URL must carry no credentials (no
    /// `user@`, no query): what the planner fetches it serves to anyone.
    pub fn subcharts_servable(&self) -> bool {
        let authority = self
            .url
            .split_once("://")
            .map_or("", |(_, rest)| rest.split('/').next().unwrap_or_default());
        !self.is_oci()
            && self.auth_secret_ref.is_none()
            && !authority.contains('@')
            && !self.url.contains('?')
            && self
                .pinned_version()
                .is_some_and(validation::is_exact_version)
    }

    /// Returns the OCI reference of the chart (`oci://registry/path/name`).
    pub fn oci_ref(&self) -> String {
        format!("{}/{}", self.url.trim_end_matches('/'), self.name)
    }
}

/// A Secret by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    /// The Secret's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
}

/// Values taken from a Secret or ConfigMap (Flux's `ValuesReference`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValuesReference {
    /// `Secret` or `ConfigMap`.
    pub kind: ValuesKind,
    /// The object's name, in the release's namespace.
    pub name: String,
    /// The key holding the values (default `values.yaml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_key: Option<String>,
    /// When set, the key holds one value, put at this dotted path of the values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_path: Option<String>,
    /// Whether a missing object or key is skipped instead of failing the release.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

impl ValuesReference {
    /// Returns the key holding the values.
    pub fn key(&self) -> &str {
        self.values_key.as_deref().unwrap_or("values.yaml")
    }
}

/// The kinds of object values may come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ValuesKind {
    /// A Secret (its data is base64 on the wire).
    Secret,
    /// A ConfigMap.
    ConfigMap,
}

impl HelmSpec {
    /// Returns the timeout Helm gets.
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }

    /// Returns the Flux options of block `which`, or an empty object.
    pub fn options(&self, which: FluxOptions) -> &Map<String, Value> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        let value = match which {
            FluxOptions::Install => &self.install,
            FluxOptions::Upgrade => &self.upgrade,
            FluxOptions::Rollback => &self.rollback,
            FluxOptions::Uninstall => &self.uninstall,
        };
        value
            .as_ref()
            .and_then(Value::as_object)
            .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
    }

    /// Returns the number of remediation retries Flux's options give `deploy`: 0 by
    /// default, `None` for unlimited (a negative number).
    pub fn remediation_retries(&self, deploy: Deploy) -> Option<u32> {
        let retries = self
            .options(deploy.into())
            .get("remediation")
            .and_then(|r| r.get("retries"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        u32::try_from(retries).ok()
    }

    /// Returns why Flux cannot release this spec as written, if it cannot: a subchart's
    /// release takes only its part of the values, and a `HelmRelease` merges `valuesFrom`
    /// over the whole of them.
    pub fn flux_values_problem(&self) -> Option<&'static str> {
        let subchart = matches!(self.values_from_scope, Some(ValuesScope::Subchart { .. }));
        (subchart && !self.values_from.is_empty()).then_some(
            "valuesFrom cannot be given to the release of a subchart split out of its application with the flux driver (a HelmRelease merges valuesFrom into the whole values, the subchart's release needs only its part): use the cli driver, or move those values into values",
        )
    }

    /// Returns the namespace of the chart source Flux reads the chart from: that of the
    /// credentials Secret when there is one (Flux reads it from the source's namespace),
    /// else the release's.
    pub fn source_namespace(&self) -> &str {
        self.chart
            .as_ref()
            .and_then(|c| c.auth_secret_ref.as_ref())
            .map_or(&self.namespace, |s| &s.namespace)
    }

    /// Returns the name of the release's chart source: `<namespace>-<release>`, cut to 63
    /// characters with a hash when longer. Sources of releases of one name in two namespaces
    /// live apart even when both sit in the namespace of one credentials Secret.
    pub fn source_name(&self) -> String {
        crate::ids::cut_with_hash(&format!("{}-{}", self.namespace, self.release), 63)
    }

    /// Renders the Flux objects of the release: its chart source (a `HelmRepository`, or an
    /// `OCIRepository` for `oci://` charts, named by [`HelmSpec::source_name`]), then the
    /// `HelmRelease`, named after the release. `annotations` go on the `HelmRelease`.
    ///
    /// Flux cannot unpack a chart. With `subcharts` (the base URL of the chart repository the
    /// planner serves, [`HelmChart::subchart_repository_path`]), a subchart is read from there:
    /// the planner takes it out of the parent chart, so it is the version the parent pins.
    /// Without it, a subchart is read from the parent's repository under its own name, at its
    /// newest version (what an executor pod is given).
    pub fn flux_objects(
        &self,
        annotations: &BTreeMap<String, String>,
        subcharts: Option<&str>,
    ) -> (Value, Value) {
        let chart = self.chart.clone().unwrap_or_else(|| HelmChart {
            url: String::new(),
            name: String::new(),
            version: None,
            auth_secret_ref: None,
            subchart: None,
        });
        let chart_name = chart.subchart.clone().unwrap_or_else(|| chart.name.clone());
        let served = chart.subchart.is_some().then_some(subcharts).flatten();
        let chart = match served {
            Some(base) => HelmChart {
                url: format!(
                    "{}/{}",
                    base.trim_end_matches('/'),
                    chart.subchart_repository_path()
                ),
                // The planner serves this parent's subcharts only, one version of each.
                version: None,
                auth_secret_ref: None,
                ..chart
            },
            None => chart,
        };
        let version = match (&chart.subchart, served) {
            // The planner serves one version of each subchart; a range that takes
            // prereleases too, which Flux's `*` would not.
            (Some(_), Some(_)) => Some(">=0.0.0-0"),
            (Some(_), None) => None,
            (None, _) => chart.pinned_version(),
        };
        let source_name = self.source_name();
        let interval = go_duration(self.interval.unwrap_or(DEFAULT_INTERVAL));
        let labels = json!(self.labels);
        let source_namespace = self.source_namespace().to_owned();
        let secret_ref = chart
            .auth_secret_ref
            .as_ref()
            .map(|s| json!({"name": s.name}));
        let (source, chart_field) = if chart.is_oci() {
            let url = format!("{}/{chart_name}", chart.url.trim_end_matches('/'));
            // `helm push` tags a chart with its version only: the newest is a semver range.
            let reference = match version {
                Some(v) if is_exact_version(v) => json!({"tag": v}),
                Some(range) => json!({"semver": range}),
                None => json!({"semver": "*"}),
            };
            let mut spec = json!({"url": url, "interval": interval, "ref": reference,
                "layerSelector": {"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip", "operation": "copy"}});
            if let Some(secret) = &secret_ref {
                spec["secretRef"] = secret.clone();
            }
            let source = json!({
                "apiVersion": FLUX_OCI_REPOSITORY_API_VERSION, "kind": "OCIRepository",
                "metadata": {"name": source_name, "namespace": source_namespace, "labels": labels},
                "spec": spec,
            });
            let chart_ref = json!({"chartRef": {"kind": "OCIRepository", "name": source_name, "namespace": source_namespace}});
            (source, chart_ref)
        } else {
            let mut spec = json!({"url": chart.url, "interval": interval});
            if let Some(secret) = &secret_ref {
                spec["secretRef"] = secret.clone();
            }
            let source = json!({
                "apiVersion": FLUX_HELM_REPOSITORY_API_VERSION, "kind": "HelmRepository",
                "metadata": {"name": source_name, "namespace": source_namespace, "labels": labels},
                "spec": spec,
            });
            let chart_spec = json!({"chart": {"spec": {
                "chart": chart_name,
                "version": version.unwrap_or("*"),
                "sourceRef": {"kind": "HelmRepository", "name": source_name, "namespace": source_namespace},
                "interval": interval,
            }}});
            (source, chart_spec)
        };
        let mut spec = json!({
            "releaseName": self.release,
            "targetNamespace": self.namespace,
            "interval": interval,
            "timeout": go_duration(self.timeout()),
        });
        for (key, value) in chart_field.as_object().into_iter().flatten() {
            spec[key] = value.clone();
        }
        if !self.values.is_empty() {
            spec["values"] = Value::Object(self.values.clone());
        }
        if !self.values_from.is_empty() {
            spec["valuesFrom"] = json!(self.values_from);
        }
        for (key, value) in [
            ("install", &self.install),
            ("upgrade", &self.upgrade),
            ("rollback", &self.rollback),
            ("uninstall", &self.uninstall),
        ] {
            if let Some(value) = value.as_ref().filter(|v| v.is_object()) {
                spec[key] = value.clone();
            }
        }
        let release = json!({
            "apiVersion": FLUX_HELM_API_VERSION, "kind": "HelmRelease",
            "metadata": {"name": self.release, "namespace": self.namespace, "labels": labels, "annotations": annotations},
            "spec": spec,
        });
        (source, release)
    }
}

/// Writes a duration as Go does (`5m0s`, `1h30m0s`, `250ms`), the form Helm flags and Flux
/// fields read.
pub fn go_duration(d: Duration) -> String {
    let total = d.0;
    if total.as_secs() == 0 {
        return format!("{}ms", total.as_millis());
    }
    let secs = total.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let millis = total.subsec_millis();
    let seconds = if millis == 0 {
        format!("{s}s")
    } else {
        format!("{s}.{millis:03}s")
    };
    match (h, m) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

/// The schema of a free JSON object: Kubernetes keeps whatever it holds.
pub(crate) fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// The schema of a [`ValuesScope`]: one of its two forms, as an object with one key (a
/// structural schema, which `oneOf` is not).
pub(crate) fn values_scope_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "Which part of the values read from valuesFrom the release takes: {subchart: {name}} or {parent: {subcharts: [names]}}.",
        "maxProperties": 1,
        "properties": {
            "subchart": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
            "parent": {"type": "object", "required": ["subcharts"], "properties": {"subcharts": {"type": "array", "items": {"type": "string"}}}},
        },
    })
}

/// The schema of any JSON value: Kubernetes keeps whatever it holds.
pub(crate) fn any_value(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Deep-merges `overlay` into `base` as Helm merges values: objects merge key by key, any
/// other value replaces what was there.
pub fn merge_values(base: &mut Map<String, Value>, overlay: &Map<String, Value>) {
    for (key, value) in overlay {
        match (base.get_mut(key), value) {
            (Some(Value::Object(into)), Value::Object(from)) => merge_values(into, from),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

mod validation;
pub use validation::validate;
pub(crate) use validation::{
    RELEASE_NAME_RULE, ReleaseSettings, chart_url_problem, check_release_settings,
    is_exact_version, is_release_name,
};

#[cfg(test)]
mod tests;
