//! `ApplicationGroup`: Orkestra's document (`orkestra.azure.microsoft.com/v1alpha1`, accepted
//! verbatim) and Baton's (`baton.dev/v1alpha1`, the same fields plus Baton's extensions): Helm
//! applications with dependencies, each optionally split into its subcharts.
//!
//! [`ApplicationGroupSpec::tasks`] turns a group into its release tasks — one per application
//! and one per listed subchart — with the dependencies between them; the planner compiles
//! those into graphs of `helm` nodes (forward, reverse, rollback). [`validate`] refuses what
//! Orkestra accepted and then failed on: unknown dependencies, cycles, duplicate names, and
//! two releases of one name in one namespace.
//!
//! Release names follow Orkestra's, so that a group Orkestra installed is adopted rather than
//! installed twice: an application's release is its chart's name made a DNS-1123 name; a
//! subchart's is the first 10 hex digits of the SHA-256 of the application's name, `-`, and
//! the subchart's name. `spec.release.releaseName` (a Baton extension) chooses another.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, ObjectReference};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::helm::{
    HelmAction, HelmChart, HelmDriver, HelmSpec, SecretRef, ValuesReference, ValuesScope,
};
use crate::ids::{cut_with_hash, sha256_hex};
use crate::{Duration, null_as_default};

/// The annotation on a deleted `ApplicationGroup` object that lets it go whatever its delete
/// left installed, as `baton delete group NAME --force` does.
pub const FORCE_DELETE_ANNOTATION: &str = "baton.dev/force-delete";

/// Orkestra's API version, accepted verbatim.
pub const ORKESTRA_API_VERSION: &str = "orkestra.azure.microsoft.com/v1alpha1";

/// The image of Orkestra's Keptn executor, used when a `keptn` executor names none.
pub const KEPTN_EXECUTOR_IMAGE: &str = "azureorkestra/keptn-executor:v0.1.0";

/// The label naming the group on everything Baton writes for it.
pub const GROUP_LABEL: &str = "baton.dev/group";
/// The label naming the application.
pub const APPLICATION_LABEL: &str = "baton.dev/application";
/// The label naming the subchart, on a subchart's objects.
pub const SUBCHART_LABEL: &str = "baton.dev/subchart";

/// An `ApplicationGroup` document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationGroup {
    /// `orkestra.azure.microsoft.com/v1alpha1` or `baton.dev/v1alpha1`.
    pub api_version: String,
    /// Always `ApplicationGroup`.
    pub kind: String,
    /// The object's name and, from a cluster, its generation.
    pub metadata: GroupMetadata,
    /// The applications.
    pub spec: ApplicationGroupSpec,
    /// What a cluster reported; ignored on input.
    #[serde(default, skip_serializing)]
    pub status: Option<Value>,
}

impl ApplicationGroup {
    /// Returns the group's name.
    pub fn name(&self) -> &str {
        &self.metadata.name
    }
}

/// The metadata Baton reads of a group. Other fields a cluster adds are ignored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupMetadata {
    /// The group's name.
    #[serde(default)]
    pub name: String,
    /// The object's generation, when it comes from a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The applications of a group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationGroupSpec {
    /// The applications, each a Helm chart, with the applications they depend on.
    pub applications: Vec<Application>,
    /// Orkestra's requeue interval; accepted and unused, as in Orkestra.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Baton: who performs the Helm operations (`cli` or `flux`); the workers' `--helm-driver`
    /// when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<HelmDriver>,
}

/// One application: a chart, its release, its subcharts, and what it depends on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Application {
    /// The application's name, unique in the group.
    pub name: String,
    /// Applications that must be released before this one.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(with = "Vec<String>")]
    pub dependencies: Vec<String>,
    /// The chart and how to release it.
    pub spec: ApplicationSpec,
}

/// What an application releases and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationSpec {
    /// Where the chart comes from.
    pub chart: ChartRef,
    /// How it is released.
    pub release: Release,
    /// Subcharts released on their own, in the order of their dependencies; subcharts not
    /// listed stay inside the application's release.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(with = "Vec<Subchart>")]
    pub subcharts: Vec<Subchart>,
    /// Executors run for the application's release and for each of its subcharts, in the
    /// order of their dependencies; one `helmrelease` executor when empty.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(with = "Vec<Executor>")]
    pub workflow: Vec<Executor>,
    /// Baton: where the application's own release goes relative to its subcharts: `last`
    /// (after them, the default, as Orkestra did), `first`, or `parallel`.
    #[serde(default, skip_serializing_if = "ParentOrder::is_last")]
    pub parent_order: ParentOrder,
}

/// Where an application's chart comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChartRef {
    /// The Helm repository URL (serving `index.yaml`), or an `oci://` registry path.
    pub url: String,
    /// The chart's name in the repository.
    pub name: String,
    /// The version or semver range; the newest when not set or `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// A Secret with the repository's credentials (`username`, `password`, `ca.crt`,
    /// `tls.crt`, `tls.key`); its namespace defaults to `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::helm::any_object")]
    pub auth_secret_ref: Option<ObjectReference>,
}

/// How an application is released.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Release {
    /// Flux's reconcile interval (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// The namespace the release goes to, created if missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_namespace: Option<String>,
    /// How long one Helm operation may take (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// The values; `<subchart>` keys go to the subcharts listed, with `global`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::helm::any_object")]
    pub values: Option<Value>,
    /// Values from Secrets and ConfigMaps in the target namespace, merged before `values`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_from: Vec<ValuesReference>,
    /// Flux's install options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::helm::any_object")]
    pub install: Option<Value>,
    /// Flux's upgrade options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::helm::any_object")]
    pub upgrade: Option<Value>,
    /// Flux's rollback options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::helm::any_object")]
    pub rollback: Option<Value>,
    /// Flux's uninstall options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::helm::any_object")]
    pub uninstall: Option<Value>,
    /// Baton: the release's name, instead of Orkestra's (the chart's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_name: Option<String>,
}

/// A subchart released on its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subchart {
    /// The subchart's name (its dependency name in the chart).
    pub name: String,
    /// Subcharts of the same application released before this one.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(with = "Vec<String>")]
    pub dependencies: Vec<String>,
}

/// Where an application's own release goes relative to its subcharts.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum ParentOrder {
    /// Before every subchart.
    First,
    /// After every subchart (the default).
    #[default]
    Last,
    /// Beside them, with no order.
    Parallel,
}

impl ParentOrder {
    fn is_last(&self) -> bool {
        *self == ParentOrder::Last
    }
}

/// One executor of an application's `workflow`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Executor {
    /// The executor's name, unique in the list.
    pub name: String,
    /// Executors of the list that run before this one.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(with = "Vec<String>")]
    pub dependencies: Vec<String>,
    /// `helmrelease` (the release itself), `keptn` or `custom`; `custom` when only an image
    /// is given.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub executor_type: Option<ExecutorType>,
    /// The image of a `custom` or `keptn` executor: an image name, or a container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::helm::any_value")]
    pub image: Option<ExecutorImage>,
    /// Executor parameters: `keptn` reads `configMapRef` (or `configmapRef`), `custom`
    /// passes `data` to its image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::helm::any_value")]
    pub params: Option<Value>,
}

impl Executor {
    /// Returns the executor's type: the one written, else `custom` when an image is given.
    pub fn kind(&self) -> Option<ExecutorType> {
        self.executor_type
            .or(self.image.as_ref().map(|_| ExecutorType::Custom))
    }

    /// Returns the ConfigMap a `keptn` executor reads, from `configMapRef` or Orkestra's
    /// examples' `configmapRef`: `(name, namespace)`.
    pub fn config_map_ref(&self) -> Option<(String, String)> {
        let params = self.params.as_ref()?;
        let reference = params
            .get("configMapRef")
            .or_else(|| params.get("configmapRef"))?;
        Some((
            reference.get("name")?.as_str()?.to_owned(),
            reference.get("namespace")?.as_str()?.to_owned(),
        ))
    }
}

/// The types of executor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorType {
    /// Releases the chart (Orkestra applied a Flux `HelmRelease`; Baton runs a `helm` node).
    Helmrelease,
    /// Orkestra's Keptn quality gate, run as a pod of its image.
    Keptn,
    /// A pod of the user's image.
    Custom,
}

/// An executor's image: a name, or a whole container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExecutorImage {
    /// An image name.
    Name(String),
    /// A container (Orkestra reads its `name` and `image`; Baton uses all of it).
    Container(Box<Container>),
}

impl ExecutorImage {
    /// Returns the container the executor runs, named `default_name` when the spec gave only
    /// an image.
    pub fn container(&self, default_name: &str) -> Container {
        match self {
            ExecutorImage::Name(image) => Container {
                name: default_name.to_owned(),
                image: Some(image.clone()),
                ..Container::default()
            },
            ExecutorImage::Container(container) => {
                let mut container = (**container).clone();
                if container.name.is_empty() {
                    container.name = default_name.to_owned();
                }
                container
            }
        }
    }
}

/// One release of a group: an application's chart, or one subchart of it.
///
/// Its serde form is how the planner keeps the releases a failed run may have left installed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseTask {
    /// The task's name, the base of its nodes' names: `<app>` or `<app>-<subchart>`.
    pub name: String,
    /// The application.
    pub app: String,
    /// The subchart, for a subchart's task.
    pub subchart: Option<String>,
    /// The field path of what defines the task, for errors.
    pub path: String,
    /// The release as a `helm` apply.
    pub helm: HelmSpec,
    /// Tasks released before this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    /// The application's executors (empty: one implicit `helmrelease`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub executors: Vec<Executor>,
}

impl ReleaseTask {
    /// Returns the release's identity: `(namespace, release name)`.
    pub fn release_key(&self) -> (String, String) {
        (self.helm.namespace.clone(), self.helm.release.clone())
    }

    /// Returns the bases of the names of the task's nodes: the task's name, or
    /// `<task>-<executor>` for each executor of a `workflow`, in the executors' order. A
    /// graph's node is [`node_name`] of a prefix and a base.
    pub fn node_bases(&self) -> Vec<String> {
        if self.executors.is_empty() {
            return vec![self.name.clone()];
        }
        self.executors
            .iter()
            .map(|e| format!("{}-{}", self.name, e.name))
            .collect()
    }
}

/// Returns the name of a node of a group's graph: `prefix` (`uninstall-` for a release a
/// changed spec dropped) and `base` ([`ReleaseTask::node_bases`]), cut to the 63 characters of
/// a DNS label with a hash of the whole when longer, so that two long names stay apart.
pub fn node_name(prefix: &str, base: &str) -> String {
    cut_with_hash(&format!("{prefix}{base}"), 63)
}

/// The prefix of the nodes that uninstall a release a new spec dropped.
pub const REMOVAL_PREFIX: &str = "uninstall-";

/// Makes `name` a DNS-1123 name as Orkestra does: lowercase, characters other than
/// `[-a-z0-9]` replaced by `-`, leading characters other than letters and digits removed,
/// the SHA-256 of the name if nothing is left, at most 63 characters.
pub fn dns1123(name: &str) -> String {
    let lowered: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = lowered.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    let converted = if trimmed.is_empty() {
        sha256_hex(name)
    } else {
        trimmed.to_owned()
    };
    converted.chars().take(63).collect()
}

/// Returns Orkestra's release name of subchart `subchart` of application `app`.
pub fn subchart_release_name(app: &str, subchart: &str) -> String {
    let hash: String = sha256_hex(app).chars().take(10).collect();
    dns1123(&format!("{hash}-{subchart}"))
}

impl Application {
    /// Returns the release name of the application's own chart.
    pub fn release_name(&self) -> String {
        self.spec
            .release
            .release_name
            .clone()
            .unwrap_or_else(|| dns1123(&self.spec.chart.name))
    }

    /// Returns the release name of one of its subcharts.
    pub fn subchart_release_name(&self, subchart: &str) -> String {
        match &self.spec.release.release_name {
            Some(name) => format!("{name}-{subchart}"),
            None => subchart_release_name(&self.name, subchart),
        }
    }
}

impl ApplicationGroupSpec {
    /// Returns the release tasks of the group named `group`, applications in document order,
    /// each application's subcharts before its own task. Each task's `needs` hold:
    /// - the subcharts its subchart depends on;
    /// - for an application's task and its subcharts, by `parentOrder`: with `last`, the
    ///   application's task needs its subcharts' last tasks; with `first`, the subcharts'
    ///   first tasks need the application's; with `parallel`, nothing;
    /// - for an application's first tasks, the last tasks of the applications it depends on.
    ///
    /// The spec must be valid ([`validate`]).
    pub fn tasks(&self, group: &str) -> Vec<ReleaseTask> {
        let mut all = Vec::new();
        // Per application: its tasks' names, its first tasks and its last tasks.
        let mut firsts: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut lasts: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (i, app) in self.applications.iter().enumerate() {
            let at = format!("spec.applications[{i}]");
            let release = &app.spec.release;
            let namespace = release.target_namespace.clone().unwrap_or_default();
            let values = release
                .values
                .as_ref()
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let chart = HelmChart {
                url: app.spec.chart.url.clone(),
                name: app.spec.chart.name.clone(),
                version: app.spec.chart.version.clone(),
                auth_secret_ref: app.spec.chart.auth_secret_ref.as_ref().map(|r| SecretRef {
                    name: r.name.clone().unwrap_or_default(),
                    namespace: r.namespace.clone().unwrap_or_else(|| "default".to_owned()),
                }),
                subchart: None,
            };
            let mut labels = BTreeMap::from([
                (GROUP_LABEL.to_owned(), group.to_owned()),
                (APPLICATION_LABEL.to_owned(), app.name.clone()),
                (
                    "app.kubernetes.io/managed-by".to_owned(),
                    "baton".to_owned(),
                ),
            ]);
            let helm = |release_name: String,
                        chart: HelmChart,
                        scope: Option<ValuesScope>,
                        labels: BTreeMap<String, String>| HelmSpec {
                action: HelmAction::Apply,
                release: release_name,
                namespace: namespace.clone(),
                chart: Some(chart),
                values: scope
                    .as_ref()
                    .map_or_else(|| values.clone(), |s| s.cut(&values)),
                values_from: release.values_from.clone(),
                values_from_scope: scope,
                driver: self.driver,
                timeout: release.timeout,
                interval: release.interval,
                install: release.install.clone(),
                upgrade: release.upgrade.clone(),
                rollback: release.rollback.clone(),
                uninstall: release.uninstall.clone(),
                labels,
            };
            let parent_scope = (!app.spec.subcharts.is_empty()).then(|| ValuesScope::Parent {
                subcharts: app.spec.subcharts.iter().map(|s| s.name.clone()).collect(),
            });
            let parent = app.name.clone();
            let mut tasks = Vec::new();
            for (k, sub) in app.spec.subcharts.iter().enumerate() {
                let mut sub_labels = labels.clone();
                sub_labels.insert(SUBCHART_LABEL.to_owned(), sub.name.clone());
                tasks.push(ReleaseTask {
                    name: format!("{}-{}", app.name, sub.name),
                    app: app.name.clone(),
                    subchart: Some(sub.name.clone()),
                    path: format!("{at}.spec.subcharts[{k}]"),
                    helm: helm(
                        app.subchart_release_name(&sub.name),
                        HelmChart {
                            subchart: Some(sub.name.clone()),
                            ..chart.clone()
                        },
                        Some(ValuesScope::Subchart {
                            name: sub.name.clone(),
                        }),
                        sub_labels,
                    ),
                    needs: sub
                        .dependencies
                        .iter()
                        .map(|d| format!("{}-{d}", app.name))
                        .collect(),
                    executors: app.spec.workflow.clone(),
                });
            }
            labels.remove(SUBCHART_LABEL);
            tasks.push(ReleaseTask {
                name: parent.clone(),
                app: app.name.clone(),
                subchart: None,
                path: at.clone(),
                helm: helm(app.release_name(), chart, parent_scope, labels),
                needs: Vec::new(),
                executors: app.spec.workflow.clone(),
            });
            let needed: BTreeSet<String> = app
                .spec
                .subcharts
                .iter()
                .flat_map(|s| s.dependencies.iter().map(|d| format!("{}-{d}", app.name)))
                .collect();
            let sub_firsts: Vec<String> = app
                .spec
                .subcharts
                .iter()
                .filter(|s| s.dependencies.is_empty())
                .map(|s| format!("{}-{}", app.name, s.name))
                .collect();
            let sub_lasts: Vec<String> = app
                .spec
                .subcharts
                .iter()
                .map(|s| format!("{}-{}", app.name, s.name))
                .filter(|n| !needed.contains(n))
                .collect();
            let (app_firsts, app_lasts) =
                match (app.spec.subcharts.is_empty(), app.spec.parent_order) {
                    (true, _) => (vec![parent.clone()], vec![parent.clone()]),
                    (false, ParentOrder::Last) => {
                        tasks.last_mut().expect("the parent task").needs = sub_lasts;
                        (sub_firsts, vec![parent.clone()])
                    }
                    (false, ParentOrder::First) => {
                        for task in tasks.iter_mut().filter(|t| sub_firsts.contains(&t.name)) {
                            task.needs.push(parent.clone());
                        }
                        (vec![parent.clone()], sub_lasts)
                    }
                    (false, ParentOrder::Parallel) => {
                        let mut f = sub_firsts;
                        f.push(parent.clone());
                        let mut l = sub_lasts;
                        l.push(parent.clone());
                        (f, l)
                    }
                };
            firsts.insert(&app.name, app_firsts);
            lasts.insert(&app.name, app_lasts);
            all.push(tasks);
        }
        for (app, tasks) in self.applications.iter().zip(all.iter_mut()) {
            let before: Vec<String> = app
                .dependencies
                .iter()
                .flat_map(|d| lasts.get(d.as_str()).cloned().unwrap_or_default())
                .collect();
            let first = &firsts[app.name.as_str()];
            for task in tasks.iter_mut().filter(|t| first.contains(&t.name)) {
                task.needs.extend(before.iter().cloned());
            }
        }
        all.into_iter().flatten().collect()
    }
}

mod validation;
pub use validation::validate;

#[cfg(test)]
mod tests;
