//! Compiling an application group into graphs of nodes, as pure functions of its release
//! tasks ([`ApplicationGroupSpec::tasks`]):
//!
//! - [`forward`]: every release applied in dependency order;
//! - [`reverse`]: every release uninstalled in reverse dependency order;
//! - [`converge`]: from what one spec installed to another — the releases only the first has
//!   uninstalled in reverse dependency order, then every release of the second applied in its
//!   order, as one graph. A changed spec is released so (what it dropped goes first), and a
//!   rollback to the last successful spec is the same graph the other way round;
//! - [`delete`]: the reverse graph of the applied spec and of the releases only the last
//!   successful spec had.
//!
//! A task becomes one `helm` node named after it, or, when its application lists executors,
//! one node per executor (`<task>-<executor>`) in the executors' order: `helmrelease` is the
//! `helm` node; `keptn` and `custom` run as pods of their images with the arguments Orkestra
//! gave them (`--spec <HelmRelease, base64> --action install|delete --timeout ...`). Reversing
//! a task reverses its executors and turns each into its reverse (`apply` into `uninstall`,
//! `--action install` into `--action delete`).
//!
//! [`ApplicationGroupSpec::tasks`]: baton_schemas::group::ApplicationGroupSpec::tasks

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use baton_schemas::group::{Executor, ExecutorType, KEPTN_EXECUTOR_IMAGE, ReleaseTask};
use baton_schemas::helm::{HelmAction, go_duration};
use baton_schemas::workflow::{NodeSpec, PodTemplateSpec};
use baton_schemas::{Duration, NodeKind, NodeName, When};
use k8s_openapi::api::core::v1::PodSpec;

/// How much longer than Helm's own timeout a release node may run: reading the release,
/// pulling the chart, and a pending operation left by an earlier delivery.
const NODE_SLACK: std::time::Duration = std::time::Duration::from_secs(120);

/// Whether a graph installs or removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Apply,
    Remove,
}

/// The nodes of one task, with the nodes that start it and the nodes that end it.
struct Expanded {
    nodes: Vec<NodeSpec>,
    firsts: Vec<NodeName>,
    lasts: Vec<NodeName>,
}

/// Returns the nodes that apply every task, in dependency order.
pub fn forward(tasks: &[ReleaseTask]) -> Vec<NodeSpec> {
    graph(tasks, Direction::Apply, "")
}

/// Returns the nodes that uninstall every task, in reverse dependency order.
pub fn reverse(tasks: &[ReleaseTask]) -> Vec<NodeSpec> {
    graph(tasks, Direction::Remove, "")
}

/// Returns the graph to `to` from `from`: the releases of `from` that `to` lacks are
/// uninstalled in reverse dependency order (nodes named `uninstall-<node>`), and then every
/// task of `to` is applied in its order. Uninstalling first frees what those releases held:
/// a subchart split out of its parent in one spec and not in the other goes back inside the
/// parent only once its own release is gone, or Helm would find its resources owned twice.
///
/// A rollback is `converge(last successful, failed)`; a new spec is released with
/// `converge(new, last successful)`.
pub fn converge(to: &[ReleaseTask], from: &[ReleaseTask]) -> Vec<NodeSpec> {
    let kept: BTreeSet<(String, String)> = to.iter().map(ReleaseTask::release_key).collect();
    let dropped = only(from, |t| !kept.contains(&t.release_key()));
    let mut removals = graph(&dropped, Direction::Remove, "uninstall-");
    let removal_names: Vec<NodeName> = removals.iter().map(|n| n.name.clone()).collect();
    let mut applies = forward(to);
    for node in applies.iter_mut().filter(|n| n.needs.is_empty()) {
        node.needs = removal_names.clone();
    }
    removals.append(&mut applies);
    removals
}

/// Returns the graph that deletes a group: every release of `current` and those only `last`
/// (the last successful spec) had, uninstalled in reverse dependency order. When a task of
/// the second kind has the name of one of the first, the second kind's tasks are named
/// `previous-<task>`.
pub fn delete(current: &[ReleaseTask], last: Option<&[ReleaseTask]>) -> Vec<NodeSpec> {
    let Some(last) = last else {
        return reverse(current);
    };
    let present: BTreeSet<(String, String)> =
        current.iter().map(ReleaseTask::release_key).collect();
    let gone: Vec<&ReleaseTask> = last
        .iter()
        .filter(|t| !present.contains(&t.release_key()))
        .collect();
    let names: BTreeSet<&str> = current.iter().map(|t| t.name.as_str()).collect();
    let gone_names: BTreeSet<&str> = gone.iter().map(|t| t.name.as_str()).collect();
    let clash = gone_names.iter().any(|n| names.contains(n));
    let rename = |n: &str| {
        if clash && gone_names.contains(n) {
            format!("previous-{n}")
        } else {
            n.to_owned()
        }
    };
    let mut all = current.to_vec();
    for task in gone {
        let mut task = task.clone();
        task.needs = task.needs.iter().map(|n| rename(n)).collect();
        task.name = rename(&task.name);
        all.push(task);
    }
    reverse(&all)
}

/// Returns the tasks that `keep` selects, with their needs limited to one another.
fn only(tasks: &[ReleaseTask], keep: impl Fn(&ReleaseTask) -> bool) -> Vec<ReleaseTask> {
    let kept: Vec<ReleaseTask> = tasks.iter().filter(|t| keep(t)).cloned().collect();
    let names: BTreeSet<String> = kept.iter().map(|t| t.name.clone()).collect();
    kept.into_iter()
        .map(|mut t| {
            t.needs.retain(|n| names.contains(n));
            t
        })
        .collect()
}

/// Expands every task and links them: applied in dependency order, or removed in reverse.
/// `prefix` goes before every node name.
fn graph(tasks: &[ReleaseTask], direction: Direction, prefix: &str) -> Vec<NodeSpec> {
    let expanded: BTreeMap<&str, Expanded> = tasks
        .iter()
        .map(|t| (t.name.as_str(), expand(t, direction, prefix)))
        .collect();
    // Who needs whom between tasks, in the direction of the graph.
    let mut before: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for task in tasks {
        for need in &task.needs {
            let (earlier, later) = match direction {
                Direction::Apply => (need.as_str(), task.name.as_str()),
                Direction::Remove => (task.name.as_str(), need.as_str()),
            };
            if expanded.contains_key(earlier) {
                before.entry(later).or_default().push(earlier);
            }
        }
    }
    let mut nodes = Vec::new();
    for task in tasks {
        let this = &expanded[task.name.as_str()];
        let earlier: Vec<NodeName> = before
            .get(task.name.as_str())
            .into_iter()
            .flatten()
            .flat_map(|e| expanded[e].lasts.iter().cloned())
            .collect();
        for node in &this.nodes {
            let mut node = node.clone();
            if this.firsts.contains(&node.name) {
                node.needs.extend(earlier.iter().cloned());
            }
            nodes.push(node);
        }
    }
    nodes
}

/// Returns the nodes of one task.
fn expand(task: &ReleaseTask, direction: Direction, prefix: &str) -> Expanded {
    let name = |base: &str| NodeName::new(cut(&format!("{prefix}{base}")));
    if task.executors.is_empty() {
        let node = helm_node(task, name(&task.name), direction);
        let n = node.name.clone();
        return Expanded {
            nodes: vec![node],
            firsts: vec![n.clone()],
            lasts: vec![n],
        };
    }
    let node_of = |e: &Executor| name(&format!("{}-{}", task.name, e.name));
    let executors = &task.executors;
    // Executor edges, turned around for a removal.
    let mut needs: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in executors {
        for d in &e.dependencies {
            match direction {
                Direction::Apply => needs.entry(&e.name).or_default().push(d),
                Direction::Remove => needs.entry(d).or_default().push(&e.name),
            }
        }
    }
    let needed: BTreeSet<&str> = needs.values().flatten().copied().collect();
    let by_name: BTreeMap<&str, &Executor> =
        executors.iter().map(|e| (e.name.as_str(), e)).collect();
    let mut nodes = Vec::new();
    let (mut firsts, mut lasts) = (Vec::new(), Vec::new());
    let order: Vec<&Executor> = match direction {
        Direction::Apply => executors.iter().collect(),
        Direction::Remove => executors.iter().rev().collect(),
    };
    for e in order {
        let mut node = match e.kind() {
            Some(ExecutorType::Helmrelease) | None => helm_node(task, node_of(e), direction),
            Some(kind) => pod_node(task, e, kind, node_of(e), direction),
        };
        node.needs = needs
            .get(e.name.as_str())
            .into_iter()
            .flatten()
            .filter_map(|d| by_name.get(d).map(|d| node_of(d)))
            .collect();
        if node.needs.is_empty() {
            firsts.push(node.name.clone());
        }
        if !needed.contains(e.name.as_str()) {
            lasts.push(node.name.clone());
        }
        nodes.push(node);
    }
    Expanded {
        nodes,
        firsts,
        lasts,
    }
}

/// Cuts a node name to the 63 characters a DNS label holds.
fn cut(name: &str) -> String {
    name.chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches('-')
        .to_owned()
}

fn blank(name: NodeName, kind: NodeKind, timeout: Duration) -> NodeSpec {
    NodeSpec {
        name,
        kind,
        needs: Vec::new(),
        when: When::Success,
        retries: None,
        timeout: Some(timeout),
        command: None,
        env: Default::default(),
        working_dir: None,
        template: None,
        namespace: None,
        container: None,
        webhook: None,
        publish: None,
        helm: None,
        traffic: None,
        analysis: None,
    }
}

fn helm_node(task: &ReleaseTask, name: NodeName, direction: Direction) -> NodeSpec {
    let mut helm = task.helm.clone();
    if direction == Direction::Remove {
        helm.action = HelmAction::Uninstall;
    }
    let timeout = Duration(helm.timeout().0 + NODE_SLACK);
    NodeSpec {
        helm: Some(Box::new(helm)),
        ..blank(name, NodeKind::Helm, timeout)
    }
}

/// A `keptn` or `custom` executor: a pod of its image given Orkestra's arguments.
fn pod_node(
    task: &ReleaseTask,
    executor: &Executor,
    kind: ExecutorType,
    name: NodeName,
    direction: Direction,
) -> NodeSpec {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let (_, release) = task.helm.flux_objects(&Default::default());
    let timeout = task.helm.timeout();
    let mut args = vec![
        "--spec".to_owned(),
        b64(release.to_string().as_bytes()),
        "--action".to_owned(),
        match direction {
            Direction::Apply => "install",
            Direction::Remove => "delete",
        }
        .to_owned(),
        "--timeout".to_owned(),
        go_duration(timeout),
        "--interval".to_owned(),
        "1s".to_owned(),
    ];
    let image = executor.image.clone();
    let mut container = match (kind, image) {
        (_, Some(image)) => image.container(&executor.name),
        (_, None) => baton_schemas::group::ExecutorImage::Name(KEPTN_EXECUTOR_IMAGE.to_owned())
            .container(&executor.name),
    };
    match kind {
        ExecutorType::Keptn => {
            let (map, namespace) = executor.config_map_ref().unwrap_or_default();
            args.extend([
                "--configmap-name".to_owned(),
                map,
                "--configmap-namespace".to_owned(),
                namespace,
            ]);
        }
        ExecutorType::Custom => {
            let data = executor
                .params
                .as_ref()
                .and_then(|p| p.get("data"))
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            args.extend(["--data".to_owned(), b64(data.to_string().as_bytes())]);
        }
        ExecutorType::Helmrelease => {}
    }
    container.args.get_or_insert_with(Vec::new).extend(args);
    let template = PodTemplateSpec {
        metadata: None,
        spec: Some(PodSpec {
            containers: vec![container],
            ..PodSpec::default()
        }),
    };
    NodeSpec {
        template: Some(Box::new(template)),
        namespace: Some(task.helm.namespace.clone()),
        ..blank(
            name,
            NodeKind::Pod,
            Duration(timeout.0 + std::time::Duration::from_secs(60)),
        )
    }
}

#[cfg(test)]
#[path = "group_graph_tests.rs"]
mod tests;
