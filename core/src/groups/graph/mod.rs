//! Compiling an application group into graphs of nodes, as pure functions of its release
//! tasks ([`ApplicationGroupSpec::tasks`]):
//!
//! - [`forward`]: every release applied in dependency order;
//! - [`reverse`]: every release uninstalled in reverse dependency order;
//! - [`converge`]: from what may be installed to a spec — the releases only the first has
//!   uninstalled in reverse dependency order, then every release of the spec applied in its
//!   order, as one graph. A changed spec is released so (what it dropped goes first), and a
//!   rollback to the last successful spec is the same graph the other way round;
//! - [`delete`]: the reverse graph of the applied spec and of every release that may be
//!   installed besides.
//!
//! Each returns a [`GroupGraph`]: the nodes, and which tasks they apply and remove, so that the
//! planner can tell from a run's nodes what it may have left installed.
//!
//! A task becomes one `helm` node named after it, or, when its application lists executors,
//! one node per executor (`<task>-<executor>`) in the executors' order: `helmrelease` is the
//! `helm` node; `keptn` and `custom` run as pods of their images with the arguments Orkestra
//! gave them (`--spec <HelmRelease, base64> --action install|delete --timeout ...`). Reversing
//! a task reverses its executors and turns each into its reverse (`apply` into `uninstall`,
//! `--action install` into `--action delete`).
//!
//! Node names are unique in every graph: validation keeps one spec's apart, and where tasks
//! of two specs meet (a removal beside the applies, the releases of an older spec beside the
//! current one's) a task whose nodes would take a name already taken is renamed.
//!
//! [`ApplicationGroupSpec::tasks`]: baton_schemas::group::ApplicationGroupSpec::tasks

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use baton_schemas::group::{
    Executor, ExecutorType, KEPTN_EXECUTOR_IMAGE, REMOVAL_PREFIX, ReleaseTask, node_name,
};
use baton_schemas::helm::{HelmAction, go_duration};
use baton_schemas::workflow::{NodeSpec, PodTemplateSpec};
use baton_schemas::{Duration, NodeKind, NodeName};
use k8s_openapi::api::core::v1::PodSpec;

/// How much longer than Helm's own timeout a release node may run: reading the release,
/// pulling the chart, and a pending operation left by an earlier delivery.
const NODE_SLACK: std::time::Duration = std::time::Duration::from_secs(120);

/// A release's identity: `(namespace, release name)`.
type ReleaseKey = (String, String);

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

/// A compiled graph, and what its nodes do to which release.
#[derive(Debug, Default)]
pub struct GroupGraph {
    /// The nodes, in order.
    pub nodes: Vec<NodeSpec>,
    /// The tasks the graph applies, each with the names of its nodes.
    pub applies: Vec<(ReleaseTask, Vec<NodeName>)>,
    /// The tasks the graph uninstalls, each with the names of its nodes.
    pub removes: Vec<(ReleaseTask, Vec<NodeName>)>,
}

impl GroupGraph {
    /// Returns the names of the nodes, in order.
    pub fn names(&self) -> impl Iterator<Item = &NodeName> {
        self.nodes.iter().map(|n| &n.name)
    }
}

/// Returns the plan that applies every task, in dependency order.
pub fn forward(tasks: &[ReleaseTask]) -> GroupGraph {
    let (nodes, applies) = graph(tasks, Direction::Apply, "");
    GroupGraph {
        nodes,
        applies,
        removes: Vec::new(),
    }
}

/// Returns the plan that uninstalls every task, in reverse dependency order.
pub fn reverse(tasks: &[ReleaseTask]) -> GroupGraph {
    let (nodes, removes) = graph(tasks, Direction::Remove, "");
    GroupGraph {
        nodes,
        applies: Vec::new(),
        removes,
    }
}

/// Returns the plan to `to` from `from` (what may be installed): the releases of `from` that
/// `to` lacks are uninstalled in reverse dependency order (nodes named `uninstall-<node>`),
/// and then every task of `to` is applied in its order. Uninstalling first frees what those
/// releases held: a subchart split out of its parent in one spec and not in the other goes
/// back inside the parent only once its own release is gone, or Helm would find its
/// resources owned twice. The other way round, a subchart split out of a parent installed
/// whole is released only after its parent was applied with it switched off
/// ([`split_parents_first`]).
///
/// A rollback is `converge(last successful, may be installed)`; a new spec is released with
/// `converge(new, may be installed)`.
pub fn converge(to: &[ReleaseTask], from: &[ReleaseTask]) -> GroupGraph {
    let kept: BTreeSet<ReleaseKey> = to.iter().map(ReleaseTask::release_key).collect();
    let installed: BTreeSet<ReleaseKey> = from.iter().map(ReleaseTask::release_key).collect();
    let to = split_parents_first(to, &installed);
    let mut plan = forward(&to);
    let mut dropped = only(from, |t| !kept.contains(&t.release_key()));
    let mut taken = Taken {
        tasks: None,
        nodes: plan.names().map(|n| n.to_string()).collect(),
    };
    rename_clashing(&mut dropped, REMOVAL_PREFIX, &mut taken, |name, n| {
        format!("{name}-{}", n + 2)
    });
    let (mut removals, removes) = graph(&dropped, Direction::Remove, REMOVAL_PREFIX);
    let removal_names: Vec<NodeName> = removals.iter().map(|n| n.name.clone()).collect();
    for node in plan.nodes.iter_mut().filter(|n| n.needs.is_empty()) {
        node.needs = removal_names.clone();
    }
    removals.append(&mut plan.nodes);
    plan.nodes = removals;
    plan.removes = removes;
    plan
}

/// Returns the plan that deletes a group: every release of `current` (the applied spec) and
/// of `installed` (what may be installed besides: the last successful spec, what failed runs
/// left), uninstalled in reverse dependency order.
pub fn delete(current: &[ReleaseTask], installed: &[ReleaseTask]) -> GroupGraph {
    reverse(&union(current, installed))
}

/// Returns `newer` and the tasks of `older` whose releases `newer` lacks, as one list whose
/// tasks and nodes have names of their own: an older task whose name (or one of its nodes'
/// names) `newer` holds is renamed `previous-<task>` (then `previous-2-<task>`, ...). An
/// older task keeps its needs on the older tasks kept, and a need on an older task whose
/// release `newer` holds becomes a need on the newer task of that release.
pub fn union(newer: &[ReleaseTask], older: &[ReleaseTask]) -> Vec<ReleaseTask> {
    let newer_by_key: BTreeMap<ReleaseKey, &str> = newer
        .iter()
        .map(|t| (t.release_key(), t.name.as_str()))
        .collect();
    let older_keys: BTreeMap<&str, ReleaseKey> = older
        .iter()
        .map(|t| (t.name.as_str(), t.release_key()))
        .collect();
    let mut kept: Vec<ReleaseTask> = older
        .iter()
        .filter(|t| !newer_by_key.contains_key(&t.release_key()))
        .cloned()
        .collect();
    let kept_names: BTreeSet<String> = kept.iter().map(|t| t.name.clone()).collect();
    // Needs on older tasks whose release the newer list holds go to the newer task first,
    // before renames can make a kept task's new name look like a newer one's.
    let mut to_newer: Vec<Vec<String>> = Vec::with_capacity(kept.len());
    for task in &mut kept {
        let (own, newer_needs): (Vec<String>, Vec<String>) =
            task.needs.drain(..).partition(|n| kept_names.contains(n));
        task.needs = own;
        to_newer.push(
            newer_needs
                .iter()
                .filter_map(|n| newer_by_key.get(older_keys.get(n.as_str())?))
                .map(|n| (*n).to_owned())
                .collect(),
        );
    }
    let mut taken = Taken {
        tasks: Some(newer.iter().map(|t| t.name.clone()).collect()),
        nodes: newer
            .iter()
            .flat_map(ReleaseTask::node_bases)
            .map(|b| node_name("", &b))
            .collect(),
    };
    rename_clashing(&mut kept, "", &mut taken, |name, n| match n {
        0 => format!("previous-{name}"),
        n => format!("previous-{}-{name}", n + 1),
    });
    let mut all = newer.to_vec();
    for (mut task, newer_needs) in kept.into_iter().zip(to_newer) {
        for need in newer_needs {
            if !task.needs.contains(&need) {
                task.needs.push(need);
            }
        }
        all.push(task);
    }
    all
}

/// The names a graph has taken: of its tasks (when they share one graph) and of its nodes.
struct Taken {
    tasks: Option<BTreeSet<String>>,
    nodes: BTreeSet<String>,
}

/// Renames, in order, each task whose name or whose nodes' names (with `prefix`) are taken:
/// `candidate(original, n)` for n = 0, 1, ... until one is free. Needs between the tasks
/// follow their renames. Every name a task ends with is taken for the tasks after it.
fn rename_clashing(
    tasks: &mut [ReleaseTask],
    prefix: &str,
    taken: &mut Taken,
    candidate: impl Fn(&str, usize) -> String,
) {
    let mut renamed: BTreeMap<String, String> = BTreeMap::new();
    for task in tasks.iter_mut() {
        let original = task.name.clone();
        for n in 0.. {
            let nodes: Vec<String> = task
                .node_bases()
                .iter()
                .map(|b| node_name(prefix, b))
                .collect();
            let clash = nodes.iter().any(|node| taken.nodes.contains(node))
                || taken.tasks.as_ref().is_some_and(|t| t.contains(&task.name));
            if !clash {
                taken.nodes.extend(nodes);
                if let Some(tasks) = &mut taken.tasks {
                    tasks.insert(task.name.clone());
                }
                break;
            }
            task.name = candidate(&original, n);
        }
        if task.name != original {
            renamed.insert(original, task.name.clone());
        }
    }
    for task in tasks.iter_mut() {
        for need in &mut task.needs {
            if let Some(new) = renamed.get(need) {
                need.clone_from(new);
            }
        }
    }
}

/// Returns the tasks that `keep` selects, each needing the selected tasks it needed, directly
/// or through tasks left out: with `a` needing `b` needing `c`, and `b` left out, `a` still
/// needs `c`.
pub(crate) fn only(tasks: &[ReleaseTask], keep: impl Fn(&ReleaseTask) -> bool) -> Vec<ReleaseTask> {
    let by_name: BTreeMap<&str, &ReleaseTask> =
        tasks.iter().map(|t| (t.name.as_str(), t)).collect();
    let selected: BTreeSet<&str> = tasks
        .iter()
        .filter(|t| keep(t))
        .map(|t| t.name.as_str())
        .collect();
    // Per task left out: the selected tasks it leads to, nearest first.
    let mut through: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    /// Returns the selected tasks `name` (left out) leads to, computing what it needs of
    /// `through` with an explicit stack: a chain of tasks left out is as long as the group
    /// is, and a recursion that deep would overflow the planner's stack.
    fn reach<'a>(
        name: &'a str,
        by_name: &BTreeMap<&'a str, &'a ReleaseTask>,
        selected: &BTreeSet<&str>,
        through: &mut BTreeMap<&'a str, Vec<String>>,
    ) -> Vec<String> {
        let needs_of = |n: &str| -> &'a [String] {
            by_name
                .get(n)
                .map(|t: &&'a ReleaseTask| t.needs.as_slice())
                .unwrap_or_default()
        };
        // (task, whether its left-out needs are done): each task is entered, then left once
        // what it needs is known.
        let mut stack: Vec<(&'a str, bool)> = vec![(name, false)];
        let mut entered: BTreeSet<&str> = BTreeSet::new();
        while let Some((task, ready)) = stack.pop() {
            if through.contains_key(task) {
                continue;
            }
            if !ready {
                // Tasks form a DAG (validated); a task entered twice on one path is not
                // followed again.
                if !entered.insert(task) {
                    continue;
                }
                stack.push((task, true));
                for need in needs_of(task).iter().rev() {
                    if !selected.contains(need.as_str()) && !through.contains_key(need.as_str()) {
                        stack.push((need.as_str(), false));
                    }
                }
                continue;
            }
            let mut found: Vec<String> = Vec::new();
            for need in needs_of(task) {
                let more = match selected.contains(need.as_str()) {
                    true => std::slice::from_ref(need),
                    false => through
                        .get(need.as_str())
                        .map(Vec::as_slice)
                        .unwrap_or_default(),
                };
                for n in more {
                    if !found.contains(n) {
                        found.push(n.clone());
                    }
                }
            }
            through.insert(task, found);
        }
        through.get(name).cloned().unwrap_or_default()
    }
    tasks
        .iter()
        .filter(|t| selected.contains(t.name.as_str()))
        .map(|t| {
            let mut task = t.clone();
            let mut needs: Vec<String> = Vec::new();
            for need in &t.needs {
                let more = if selected.contains(need.as_str()) {
                    vec![need.clone()]
                } else {
                    reach(need, &by_name, &selected, &mut through)
                };
                for n in more {
                    if !needs.contains(&n) {
                        needs.push(n);
                    }
                }
            }
            task.needs = needs;
            task
        })
        .collect()
}

/// Orders an application whose subcharts are split out since its parent was installed whole
/// (the parent's release may be installed, a subchart's release is new): the parent's
/// release owns the subchart's resources until it is applied with the subchart switched off,
/// and Helm refuses to install a release over resources another one owns. So the parent
/// goes first, needing only what the application needs from outside; each new subchart
/// needs the parent; and what needed the parent needs the application's last subcharts too,
/// so it still comes after the whole application.
fn split_parents_first(to: &[ReleaseTask], installed: &BTreeSet<ReleaseKey>) -> Vec<ReleaseTask> {
    let mut to = to.to_vec();
    let parents: Vec<usize> = (0..to.len())
        .filter(|&i| to[i].subchart.is_none() && installed.contains(&to[i].release_key()))
        .collect();
    for p in parents {
        let app = to[p].app.clone();
        let parent = to[p].name.clone();
        let new_subcharts: BTreeSet<String> = to
            .iter()
            .filter(|t| t.app == app && t.subchart.is_some())
            .filter(|t| !installed.contains(&t.release_key()))
            .map(|t| t.name.clone())
            .collect();
        if new_subcharts.is_empty() {
            continue;
        }
        let own: BTreeSet<String> = to
            .iter()
            .filter(|t| t.app == app)
            .map(|t| t.name.clone())
            .collect();
        let mut outside: Vec<String> = Vec::new();
        for need in to.iter().filter(|t| t.app == app).flat_map(|t| &t.needs) {
            if !own.contains(need) && !outside.contains(need) {
                outside.push(need.clone());
            }
        }
        let subcharts: Vec<&ReleaseTask> = to
            .iter()
            .filter(|t| t.app == app && t.subchart.is_some())
            .collect();
        let needed: BTreeSet<&String> = subcharts.iter().flat_map(|t| &t.needs).collect();
        let last_subcharts: Vec<String> = subcharts
            .iter()
            .filter(|t| !needed.contains(&t.name))
            .map(|t| t.name.clone())
            .collect();
        to[p].needs = outside;
        for task in &mut to {
            if new_subcharts.contains(&task.name) && !task.needs.contains(&parent) {
                task.needs.push(parent.clone());
            }
            if task.app != app && task.needs.contains(&parent) {
                for last in &last_subcharts {
                    if !task.needs.contains(last) {
                        task.needs.push(last.clone());
                    }
                }
            }
        }
    }
    to
}

/// Expands every task and links them: applied in dependency order, or removed in reverse.
/// `prefix` goes before every node name. Returns the nodes, and each task with its nodes'
/// names.
fn graph(
    tasks: &[ReleaseTask],
    direction: Direction,
    prefix: &str,
) -> (Vec<NodeSpec>, Vec<(ReleaseTask, Vec<NodeName>)>) {
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
    let mut of_task = Vec::with_capacity(tasks.len());
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
        of_task.push((
            task.clone(),
            this.nodes.iter().map(|n| n.name.clone()).collect(),
        ));
    }
    (nodes, of_task)
}

/// Returns the nodes of one task.
fn expand(task: &ReleaseTask, direction: Direction, prefix: &str) -> Expanded {
    let name = |base: &str| NodeName::new(node_name(prefix, base));
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

fn blank(name: NodeName, kind: NodeKind, timeout: Duration) -> NodeSpec {
    NodeSpec {
        timeout: Some(timeout),
        ..NodeSpec::new(name, kind)
    }
}

fn helm_node(task: &ReleaseTask, name: NodeName, direction: Direction) -> NodeSpec {
    let mut helm = task.helm.clone();
    if direction == Direction::Remove {
        helm.action = HelmAction::Uninstall;
    }
    let timeout = Duration(helm.timeout().0.saturating_add(NODE_SLACK));
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
    let (_, release) = task.helm.flux_objects(&Default::default(), None);
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
mod tests;
