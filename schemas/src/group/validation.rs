//! Validation of an application group: names, dependencies, charts, executors, and what two
//! releases or nodes would collide on; every problem with its field path.

use std::collections::{BTreeMap, BTreeSet};

use crate::document::SpecError;
use crate::helm::HelmDriver;
use crate::ids::is_dns_label;

use super::*;

/// Returns every problem in a group, or `Ok` when it may be applied.
pub fn validate(group: &ApplicationGroup) -> Result<(), Vec<SpecError>> {
    let mut errors = Vec::new();
    let name = &group.metadata.name;
    if name.is_empty() {
        errors.push(SpecError::new(
            "metadata.name",
            "missing: every application group needs a name",
        ));
    } else if !is_dns_label(name) {
        errors.push(SpecError::new(
            "metadata.name",
            format!("invalid name {name:?}: {DNS_LABEL_RULE}"),
        ));
    }
    let apps = &group.spec.applications;
    if apps.is_empty() {
        errors.push(SpecError::new(
            "spec.applications",
            "a group needs at least one application",
        ));
    }
    // Each application's release (its chart, values and subcharts) travels in jobs.
    for (i, app) in apps.iter().enumerate() {
        errors.extend(crate::validate::job_size(
            &format!("spec.applications[{i}]"),
            app,
        ));
    }
    let names = unique_names(
        apps.iter().map(|a| a.name.as_str()),
        "spec.applications",
        "application",
        &mut errors,
    );
    for (i, app) in apps.iter().enumerate() {
        let at = format!("spec.applications[{i}]");
        dependencies(
            &at,
            &app.name,
            &app.dependencies,
            &names,
            "application",
            &mut errors,
        );
        application(&at, app, group.spec.driver, &mut errors);
    }
    if errors.is_empty()
        && let Some((i, cycle)) = find_cycle(
            apps.iter()
                .map(|a| (a.name.as_str(), a.dependencies.as_slice())),
        )
    {
        errors.push(SpecError::new(
            format!("spec.applications[{i}].dependencies"),
            format!("cycle: {}", cycle.join(" -> ")),
        ));
    }
    if errors.is_empty() {
        collisions(group, &mut errors);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

pub(super) const DNS_LABEL_RULE: &str =
    "use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit";

/// Checks that names are DNS labels and unique; returns them by index.
pub(super) fn unique_names<'a>(
    names: impl Iterator<Item = &'a str>,
    list: &str,
    what: &str,
    errors: &mut Vec<SpecError>,
) -> BTreeMap<&'a str, usize> {
    let mut index = BTreeMap::new();
    for (i, name) in names.enumerate() {
        let at = format!("{list}[{i}].name");
        if !is_dns_label(name) {
            errors.push(SpecError::new(
                at,
                format!("invalid {what} name {name:?}: {DNS_LABEL_RULE}"),
            ));
        } else if let Some(first) = index.get(name) {
            errors.push(SpecError::new(
                at,
                format!("duplicate {what} name {name:?} (first used at {list}[{first}])"),
            ));
        } else {
            index.insert(name, i);
        }
    }
    index
}

/// Checks one list of dependencies against the names it may name.
pub(super) fn dependencies(
    at: &str,
    name: &str,
    deps: &[String],
    known: &BTreeMap<&str, usize>,
    what: &str,
    errors: &mut Vec<SpecError>,
) {
    let mut seen = BTreeSet::new();
    for (j, dep) in deps.iter().enumerate() {
        let path = format!("{at}.dependencies[{j}]");
        if dep == name {
            errors.push(SpecError::new(
                path,
                format!("{what} {dep:?} cannot depend on itself"),
            ));
        } else if !known.contains_key(dep.as_str()) {
            errors.push(SpecError::new(path, format!("unknown {what} {dep:?}")));
        } else if !seen.insert(dep) {
            errors.push(SpecError::new(path, format!("{dep:?} is listed twice")));
        }
    }
}

pub(super) fn application(
    at: &str,
    app: &Application,
    driver: Option<HelmDriver>,
    errors: &mut Vec<SpecError>,
) {
    let chart = &app.spec.chart;
    if let Some(problem) = crate::helm::chart_url_problem(&chart.url) {
        errors.push(SpecError::new(format!("{at}.spec.chart.url"), problem));
    }
    if chart.name.trim().is_empty() {
        errors.push(SpecError::new(
            format!("{at}.spec.chart.name"),
            "missing: the chart's name in the repository",
        ));
    }
    if let Some(secret) = &chart.auth_secret_ref
        && secret.name.as_deref().is_none_or(str::is_empty)
    {
        errors.push(SpecError::new(
            format!("{at}.spec.chart.authSecretRef.name"),
            "missing: the name of the Secret holding the repository's credentials",
        ));
    }
    let release = &app.spec.release;
    match release.target_namespace.as_deref() {
        None | Some("") => errors.push(SpecError::new(
            format!("{at}.spec.release.targetNamespace"),
            "missing: the namespace the release goes to",
        )),
        Some(ns) if !is_dns_label(ns) => errors.push(SpecError::new(
            format!("{at}.spec.release.targetNamespace"),
            format!("invalid namespace {ns:?}: {DNS_LABEL_RULE}"),
        )),
        Some(_) => {}
    }
    if release.values.as_ref().is_some_and(|v| !v.is_object()) {
        errors.push(SpecError::new(
            format!("{at}.spec.release.values"),
            "values must be a map",
        ));
    }
    crate::helm::check_release_settings(
        &format!("{at}.spec.release"),
        crate::helm::ReleaseSettings {
            timeout: release.timeout,
            interval: release.interval,
            install: &release.install,
            upgrade: &release.upgrade,
            rollback: &release.rollback,
            uninstall: &release.uninstall,
        },
        errors,
    );
    if driver == Some(HelmDriver::Flux) && !app.spec.subcharts.is_empty() {
        let chart = &app.spec.chart;
        let helm_chart = crate::helm::HelmChart {
            url: chart.url.clone(),
            name: chart.name.clone(),
            version: chart.version.clone(),
            auth_secret_ref: None,
            subchart: None,
        };
        if !helm_chart.subcharts_servable() || chart.auth_secret_ref.is_some() {
            errors.push(SpecError::new(
                format!("{at}.spec.chart"),
                crate::helm::SUBCHARTS_NOT_SERVED,
            ));
        }
    }
    if driver == Some(HelmDriver::Flux)
        && !app.spec.subcharts.is_empty()
        && !release.values_from.is_empty()
    {
        errors.push(SpecError::new(
            format!("{at}.spec.release.valuesFrom"),
            "valuesFrom cannot be given to an application split into subcharts with the flux driver (a HelmRelease merges valuesFrom into the whole values, a subchart's release needs only its part): use the cli driver, or move those values into values",
        ));
    }
    for (j, reference) in release.values_from.iter().enumerate() {
        if reference.name.is_empty() {
            errors.push(SpecError::new(
                format!("{at}.spec.release.valuesFrom[{j}].name"),
                "missing: the name of the Secret or ConfigMap",
            ));
        }
    }
    let subcharts = unique_names(
        app.spec.subcharts.iter().map(|s| s.name.as_str()),
        &format!("{at}.spec.subcharts"),
        "subchart",
        errors,
    );
    for (k, sub) in app.spec.subcharts.iter().enumerate() {
        dependencies(
            &format!("{at}.spec.subcharts[{k}]"),
            &sub.name,
            &sub.dependencies,
            &subcharts,
            "subchart",
            errors,
        );
    }
    if let Some((k, cycle)) = find_cycle(
        app.spec
            .subcharts
            .iter()
            .map(|s| (s.name.as_str(), s.dependencies.as_slice())),
    ) {
        errors.push(SpecError::new(
            format!("{at}.spec.subcharts[{k}].dependencies"),
            format!("cycle: {}", cycle.join(" -> ")),
        ));
    }
    let executors = unique_names(
        app.spec.workflow.iter().map(|e| e.name.as_str()),
        &format!("{at}.spec.workflow"),
        "executor",
        errors,
    );
    let mut releases = 0;
    for (k, executor) in app.spec.workflow.iter().enumerate() {
        let path = format!("{at}.spec.workflow[{k}]");
        dependencies(
            &path,
            &executor.name,
            &executor.dependencies,
            &executors,
            "executor",
            errors,
        );
        match executor.kind() {
            None => errors.push(SpecError::new(
                format!("{path}.type"),
                "missing: helmrelease, keptn or custom (custom needs an image)",
            )),
            Some(ExecutorType::Helmrelease) => {
                releases += 1;
                if releases > 1 {
                    errors.push(SpecError::new(
                        format!("{path}.type"),
                        "a workflow releases its chart once: only one executor may be of type helmrelease",
                    ));
                }
            }
            Some(ExecutorType::Keptn) => {
                if executor.config_map_ref().is_none() {
                    errors.push(SpecError::new(
                        format!("{path}.params.configMapRef"),
                        "a keptn executor needs params.configMapRef (or configmapRef) with the name and namespace of its ConfigMap",
                    ));
                }
            }
            Some(ExecutorType::Custom) => {
                let image = executor
                    .image
                    .as_ref()
                    .and_then(|i| i.container("executor").image);
                if image.as_deref().is_none_or(str::is_empty) {
                    errors.push(SpecError::new(
                        format!("{path}.image"),
                        "a custom executor needs an image",
                    ));
                }
            }
        }
    }
    if let Some((k, cycle)) = find_cycle(
        app.spec
            .workflow
            .iter()
            .map(|e| (e.name.as_str(), e.dependencies.as_slice())),
    ) {
        errors.push(SpecError::new(
            format!("{at}.spec.workflow[{k}].dependencies"),
            format!("cycle: {}", cycle.join(" -> ")),
        ));
    }
}

/// Checks what only the whole group shows: two releases of one name in one namespace, names
/// Helm refuses, two tasks of one name, and two nodes of one name in a graph the planner
/// compiles (forward and reverse, and the removal of the group's releases by a later spec).
pub(super) fn collisions(group: &ApplicationGroup, errors: &mut Vec<SpecError>) {
    let tasks = group.spec.tasks(&group.metadata.name);
    let mut releases: BTreeMap<(String, String), &ReleaseTask> = BTreeMap::new();
    let mut task_names: BTreeMap<&str, &ReleaseTask> = BTreeMap::new();
    for task in &tasks {
        let named_by_spec = group
            .spec
            .applications
            .iter()
            .any(|a| a.name == task.app && a.spec.release.release_name.is_some());
        // The field that made the release's name.
        let field = match (&task.subchart, named_by_spec) {
            (Some(_), _) => format!("{}.name", task.path),
            (None, true) => format!("{}.spec.release.releaseName", task.path),
            (None, false) => format!("{}.spec.chart.name", task.path),
        };
        let release = &task.helm.release;
        if !crate::helm::is_release_name(release) {
            errors.push(SpecError::new(
                field.clone(),
                format!(
                    "release name {release:?} is not one Helm accepts ({}); set spec.release.releaseName",
                    crate::helm::RELEASE_NAME_RULE
                ),
            ));
        }
        if let Some(first) = releases.get(&task.release_key()) {
            errors.push(SpecError::new(
                field,
                format!(
                    "release {release:?} in namespace {:?} is also the release of {}; set spec.release.releaseName to tell them apart",
                    task.helm.namespace, first.path
                ),
            ));
        } else {
            releases.insert(task.release_key(), task);
        }
        for base in task.node_bases() {
            if !is_dns_label(&base) {
                errors.push(SpecError::new(
                    task.path.clone(),
                    format!(
                        "the node name {base:?} is longer than 63 characters; use shorter names"
                    ),
                ));
            }
        }
        if let Some(first) = task_names.get(task.name.as_str()) {
            errors.push(SpecError::new(
                format!("{}.name", task.path),
                format!(
                    "{:?} is also the name of {}: rename one of them",
                    task.name, first.path
                ),
            ));
        } else {
            task_names.insert(&task.name, task);
        }
    }
    // Forward and reverse graphs name their nodes alike; a removal prefixes them. One
    // clash is told once, in the first graph that shows it.
    for prefix in ["", REMOVAL_PREFIX] {
        if errors.is_empty() {
            node_collisions(&tasks, prefix, errors);
        }
    }
}

/// Checks that the nodes of a graph of `tasks` (node names prefixed by `prefix`) have names of
/// their own. The planner merges nodes of one name, and waits forever for the second: an
/// executor's node (`<task>-<executor>`) may have the name of another task, and names cut to
/// 63 characters may meet.
pub(super) fn node_collisions(tasks: &[ReleaseTask], prefix: &str, errors: &mut Vec<SpecError>) {
    let mut nodes: BTreeMap<String, (&ReleaseTask, String)> = BTreeMap::new();
    for task in tasks {
        for base in task.node_bases() {
            let node = node_name(prefix, &base);
            match nodes.get(&node) {
                Some((first, first_base)) => errors.push(SpecError::new(
                    format!("{}.name", task.path),
                    format!(
                        "the node {node:?} (of {base:?}) is also the node of {first_base:?} at {}: rename one of them",
                        first.path
                    ),
                )),
                None => {
                    nodes.insert(node, (task, base));
                }
            }
        }
    }
}

/// Finds one cycle among named items with dependencies; returns the index of the item it
/// starts at and the names along it, the first repeated at the end.
pub(super) fn find_cycle<'a>(
    items: impl Iterator<Item = (&'a str, &'a [String])>,
) -> Option<(usize, Vec<String>)> {
    let items: Vec<(&str, &[String])> = items.collect();
    let index: BTreeMap<&str, usize> = items
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (*n, i))
        .collect();
    // Depth-first search from each item in order; the first back edge closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks = vec![Mark::New; items.len()];
    for start in 0..items.len() {
        if marks[start] != Mark::New {
            continue;
        }
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::OnPath;
        while let Some(&(node, next)) = path.last() {
            let deps = items[node].1;
            if next < deps.len() {
                let dep = deps[next].as_str();
                if let Some(top) = path.last_mut() {
                    top.1 += 1;
                }
                let Some(&d) = index.get(dep) else { continue };
                match marks[d] {
                    Mark::OnPath => {
                        let from = path.iter().position(|(n, _)| *n == d)?;
                        let mut names: Vec<String> = path[from..]
                            .iter()
                            .map(|(n, _)| items[*n].0.to_owned())
                            .collect();
                        names.push(items[d].0.to_owned());
                        return Some((d, names));
                    }
                    Mark::New => {
                        marks[d] = Mark::OnPath;
                        path.push((d, 0));
                    }
                    Mark::Done => {}
                }
            } else {
                marks[node] = Mark::Done;
                path.pop();
            }
        }
    }
    None
}
