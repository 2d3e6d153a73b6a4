//! Checks that run before anything runs: names, references, cycles and per-kind fields.
//!
//! Every check reports the field path of what it found, so a user can go straight to it.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::algo::kosaraju_scc;
use petgraph::graph::DiGraph;

use crate::document::SpecError;
use crate::ids::is_dns_label;
use crate::workflow::{NodeKind, When, Workflow};

/// Environment variables Baton sets itself; a spec may not set names with this prefix.
pub const RESERVED_ENV_PREFIX: &str = "BATON_";

/// Returns every problem in a workflow, or `Ok` when it may run.
pub fn workflow(wf: &Workflow) -> Result<(), Vec<SpecError>> {
    let mut errors = Vec::new();
    if wf.metadata.name.is_empty() {
        errors.push(SpecError::new(
            "metadata.name",
            "missing: every workflow needs a name",
        ));
    } else if !is_dns_label(&wf.metadata.name) {
        errors.push(SpecError::new(
            "metadata.name",
            format!("invalid name {:?}: {DNS_LABEL_RULE}", wf.metadata.name),
        ));
    }
    let nodes = &wf.spec.nodes;
    if nodes.is_empty() {
        errors.push(SpecError::new(
            "spec.nodes",
            "a workflow needs at least one node",
        ));
    }

    let mut index_of: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        let name = node.name.as_str();
        if !is_dns_label(name) {
            errors.push(SpecError::new(
                format!("spec.nodes[{i}].name"),
                format!("invalid name {name:?}: {DNS_LABEL_RULE}"),
            ));
        }
        if let Some(first) = index_of.get(name) {
            errors.push(SpecError::new(
                format!("spec.nodes[{i}].name"),
                format!("duplicate node name {name:?} (first used at spec.nodes[{first}])"),
            ));
        } else {
            index_of.insert(name, i);
        }
    }

    for (i, node) in nodes.iter().enumerate() {
        let at = |field: &str| format!("spec.nodes[{i}].{field}");
        let mut seen = BTreeSet::new();
        for (j, need) in node.needs.iter().enumerate() {
            let path = format!("spec.nodes[{i}].needs[{j}]");
            if need == &node.name {
                errors.push(SpecError::new(
                    path,
                    format!("node {:?} cannot need itself", need.as_str()),
                ));
            } else if !index_of.contains_key(need.as_str()) {
                errors.push(SpecError::new(
                    path,
                    format!("unknown node {:?}", need.as_str()),
                ));
            } else if !seen.insert(need) {
                errors.push(SpecError::new(
                    path,
                    format!("{:?} is listed twice", need.as_str()),
                ));
            }
        }
        if node.when != When::Success && node.needs.is_empty() {
            errors.push(SpecError::new(
                at("when"),
                "a node that runs on failure or always must list the nodes it follows in needs",
            ));
        }
        retries_and_timeout(
            &format!("spec.nodes[{i}]"),
            node.retries.as_ref(),
            node.timeout,
            &mut errors,
        );
        let kind_fields = [
            ("command", node.command.is_some(), NodeKind::Exec),
            ("env", !node.env.is_empty(), NodeKind::Exec),
            ("workingDir", node.working_dir.is_some(), NodeKind::Exec),
            ("template", node.template.is_some(), NodeKind::Pod),
            ("namespace", node.namespace.is_some(), NodeKind::Pod),
            ("container", node.container.is_some(), NodeKind::Pod),
            ("webhook", node.webhook.is_some(), NodeKind::Webhook),
            ("publish", node.publish.is_some(), NodeKind::Publish),
            ("helm", node.helm.is_some(), NodeKind::Helm),
            ("traffic", node.traffic.is_some(), NodeKind::Traffic),
            ("analysis", node.analysis.is_some(), NodeKind::Analysis),
        ];
        for (field, set, owner) in kind_fields {
            if set && owner != node.kind {
                errors.push(SpecError::new(
                    at(field),
                    format!("only {owner} nodes take this field"),
                ));
            }
        }
        match node.kind {
            NodeKind::Exec
                if node
                    .command
                    .as_ref()
                    .is_none_or(|c| c.is_empty() || c[0].is_empty()) =>
            {
                errors.push(SpecError::new(
                    at("command"),
                    "an exec node needs a command: the program and its arguments, like [sh, -c, \"echo hi\"]",
                ));
            }
            NodeKind::Webhook | NodeKind::Publish => {
                let action = match (&node.webhook, &node.publish) {
                    (Some(w), _) => Some(crate::task::Action::Webhook((**w).clone())),
                    (_, Some(p)) => Some(crate::task::Action::Publish((**p).clone())),
                    _ => None,
                };
                match action {
                    Some(action) => {
                        errors.extend(action_errors(&at(node.kind.as_str()), Some(&action)))
                    }
                    None => errors.push(SpecError::new(
                        at(node.kind.as_str()),
                        format!("a {} node needs {}: {{...}}", node.kind, node.kind),
                    )),
                }
            }
            NodeKind::Traffic => match &node.traffic {
                Some(traffic) => errors.extend(traffic.problems(&at("traffic"))),
                None => errors.push(SpecError::new(
                    at("traffic"),
                    "a traffic node needs traffic: {listenerArn, priority, conditions, targetGroups}",
                )),
            },
            NodeKind::Analysis => match &node.analysis {
                Some(analysis) => errors.extend(crate::analysis::spec_problems(
                    &at("analysis"),
                    analysis,
                    false,
                )),
                None => errors.push(SpecError::new(
                    at("analysis"),
                    "an analysis node needs analysis: {templates, args} or {metrics}",
                )),
            },
            NodeKind::Pod => errors.extend(pod_template(
                &format!("spec.nodes[{i}]"),
                node.template.as_deref(),
                node.container.as_deref(),
                node.namespace.as_deref(),
            )),
            NodeKind::Helm => {
                errors.extend(crate::helm::validate(&at("helm"), node.helm.as_deref()))
            }
            _ => {}
        }
        errors.extend(exec_strings(i, node));
        errors.extend(job_size(&format!("spec.nodes[{i}]"), node));
        for key in node.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                errors.push(SpecError::new(
                    format!("spec.nodes[{i}].env.{key}"),
                    "invalid environment variable name",
                ));
            } else if key.starts_with(RESERVED_ENV_PREFIX) {
                errors.push(SpecError::new(
                    format!("spec.nodes[{i}].env.{key}"),
                    format!("names starting with {RESERVED_ENV_PREFIX} are set by Baton"),
                ));
            }
        }
    }

    if errors.is_empty()
        && let Some((at, cycle)) = find_cycle(wf)
    {
        errors.push(SpecError::new(
            format!("spec.nodes[{at}].needs"),
            format!("cycle: {}", shown_cycle(&cycle)),
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The longest single argument or `NAME=value` environment string `execve` takes on Linux
/// (`MAX_ARG_STRLEN`, 32 pages, with its terminating NUL).
pub const MAX_EXEC_STRING: usize = 128 * 1024 - 1;

/// The most an exec node's command and environment may hold together: half of the usual
/// `ARG_MAX` (2 MiB), leaving the rest to the `BATON_*` variables and the worker's own
/// environment.
pub const MAX_EXEC_TOTAL: usize = 1024 * 1024;

/// Checks what an exec node hands to `execve`: no NUL byte (a C string ends there), no
/// string longer than `execve` takes, and not too much in all. Found here rather than when
/// the run fails to start its process.
fn exec_strings(i: usize, node: &crate::workflow::NodeSpec) -> Vec<SpecError> {
    let mut errors = Vec::new();
    let mut total = 0usize;
    let mut check = |path: String, text: &str, extra: usize| {
        let len = text.len() + extra;
        total = total.saturating_add(len + 1);
        if text.contains('\0') {
            errors.push(SpecError::new(
                path,
                "contains a NUL byte, which no process argument or environment value can hold",
            ));
        } else if len > MAX_EXEC_STRING {
            errors.push(SpecError::new(
                path,
                format!(
                    "is {len} bytes, above the {MAX_EXEC_STRING}-byte limit of one process argument or environment entry; pass large data through a file"
                ),
            ));
        }
    };
    for (j, arg) in node.command.iter().flatten().enumerate() {
        check(format!("spec.nodes[{i}].command[{j}]"), arg, 0);
    }
    for (key, value) in &node.env {
        check(format!("spec.nodes[{i}].env.{key}"), value, key.len() + 1);
    }
    if let Some(dir) = &node.working_dir {
        check(format!("spec.nodes[{i}].workingDir"), dir, 0);
    }
    if total > MAX_EXEC_TOTAL {
        errors.push(SpecError::new(
            format!("spec.nodes[{i}]"),
            format!(
                "command and env hold {total} bytes together, above the limit of {MAX_EXEC_TOTAL}"
            ),
        ));
    }
    errors
}

/// The most a node's own settings may take as JSON: a job carries them and must fit in the
/// bus's largest message (1 MiB by default) with room for its headers; the data passed from
/// upstream travels apart when it is large.
pub const MAX_NODE_SPEC_BYTES: usize = 512 * 1024;

/// Checks that a node's settings fit in a job, so that a node the bus could never carry is
/// refused when it is applied, not when it runs. `at` is the node's path.
pub(crate) fn job_size<T: serde::Serialize>(at: &str, spec: &T) -> Option<SpecError> {
    let size = serde_json::to_vec(spec).map(|v| v.len()).unwrap_or(0);
    (size > MAX_NODE_SPEC_BYTES).then(|| {
        SpecError::new(
            at,
            format!(
                "its settings are {size} bytes as JSON, above the {MAX_NODE_SPEC_BYTES} bytes a job may carry"
            ),
        )
    })
}

/// Checks a pod template: at least one container, each with a valid unique name and an image;
/// the output `container` among them; a valid namespace. `at` is the path of the node.
pub fn pod_template(
    at: &str,
    template: Option<&crate::workflow::PodTemplateSpec>,
    container: Option<&str>,
    namespace: Option<&str>,
) -> Vec<SpecError> {
    let mut errors = Vec::new();
    if let Some(ns) = namespace
        && !is_dns_label(ns)
    {
        errors.push(SpecError::new(
            format!("{at}.namespace"),
            format!("invalid namespace {ns:?}: {DNS_LABEL_RULE}"),
        ));
    }
    let containers = template
        .and_then(|t| t.spec.as_ref())
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    if containers.is_empty() {
        errors.push(SpecError::new(
            format!("{at}.template.spec.containers"),
            "a pod needs at least one container with a name and an image",
        ));
        return errors;
    }
    let mut names = BTreeSet::new();
    for (j, c) in containers.iter().enumerate() {
        let path = format!("{at}.template.spec.containers[{j}]");
        if !is_dns_label(&c.name) {
            errors.push(SpecError::new(
                format!("{path}.name"),
                format!("invalid container name {:?}: {DNS_LABEL_RULE}", c.name),
            ));
        } else if !names.insert(c.name.as_str()) {
            errors.push(SpecError::new(
                format!("{path}.name"),
                format!("duplicate container name {:?}", c.name),
            ));
        }
        if c.image.as_deref().is_none_or(str::is_empty) {
            errors.push(SpecError::new(
                format!("{path}.image"),
                "missing: every container needs an image",
            ));
        }
    }
    if let Some(wanted) = container
        && !names.contains(wanted)
    {
        errors.push(SpecError::new(
            format!("{at}.container"),
            format!(
                "no container named {wanted:?} in the template (it has: {})",
                names.into_iter().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    errors
}

fn name(metadata: &crate::workflow::Metadata, errors: &mut Vec<SpecError>, what: &str) {
    if metadata.name.is_empty() {
        errors.push(SpecError::new(
            "metadata.name",
            format!("missing: every {what} needs a name"),
        ));
    } else if !is_dns_label(&metadata.name) {
        errors.push(SpecError::new(
            "metadata.name",
            format!("invalid name {:?}: {DNS_LABEL_RULE}", metadata.name),
        ));
    }
}

fn retries_and_timeout(
    at: &str,
    retries: Option<&crate::workflow::Retries>,
    timeout: Option<crate::Duration>,
    errors: &mut Vec<SpecError>,
) {
    if let Some(timeout) = timeout
        && timeout.0.is_zero()
    {
        errors.push(SpecError::new(
            format!("{at}.timeout"),
            "must be longer than zero",
        ));
    }
    if let Some(retries) = retries {
        if retries.limit > MAX_RETRIES {
            errors.push(SpecError::new(
                format!("{at}.retries.limit"),
                format!("{} is above the maximum of {MAX_RETRIES}", retries.limit),
            ));
        }
        if retries.backoff.initial > retries.backoff.max {
            errors.push(SpecError::new(
                format!("{at}.retries.backoff"),
                "initial must not be longer than max",
            ));
        }
    }
}

/// Returns every problem in a task, or `Ok` when it may be registered. Tasks and ignitors it
/// names need not exist yet: they may be applied later, as with Orca.
pub fn task(task: &crate::task::Task) -> Result<(), Vec<SpecError>> {
    use crate::task::{Action, ActionEntry};
    let mut errors = Vec::new();
    name(&task.metadata, &mut errors, "task");
    let spec = &task.spec;
    for (field, names) in [
        ("startOnIgnition", &spec.start_on_ignition),
        ("startOnSuccess", &spec.start_on_success),
        ("startOnFailure", &spec.start_on_failure),
    ] {
        for (j, n) in names.iter().enumerate() {
            if !is_dns_label(n) {
                errors.push(SpecError::new(
                    format!("spec.{field}[{j}]"),
                    format!("invalid name {n:?}: {DNS_LABEL_RULE}"),
                ));
            }
        }
    }
    for (j, c) in spec.start_on_all.iter().enumerate() {
        if !is_dns_label(&c.task) {
            errors.push(SpecError::new(
                format!("spec.startOnAll[{j}].task"),
                format!("invalid name {:?}: {DNS_LABEL_RULE}", c.task),
            ));
        }
    }
    if spec.start_on_all.len() == 1 {
        errors.push(SpecError::new(
            "spec.startOnAll",
            "list at least two tasks (for one, use startOnSuccess or startOnFailure)",
        ));
    }
    match spec.chain_limit {
        Some(0) => errors.push(SpecError::new("spec.chainLimit", "must be at least 1")),
        // Every instance of a task in a chain is a node of its run; a chain of millions
        // would stall the planner, whose naming of instances scans the run.
        Some(n) if n > MAX_CHAIN_LIMIT => errors.push(SpecError::new(
            "spec.chainLimit",
            format!("{n} is above the maximum of {MAX_CHAIN_LIMIT}"),
        )),
        _ => {}
    }
    for (field, actions) in [
        ("successActions", &spec.success_actions),
        ("failureActions", &spec.failure_actions),
    ] {
        for (j, entry) in actions.iter().enumerate() {
            let at = format!("spec.{field}[{j}]");
            match entry {
                // Orca dropped names it did not know: an Orca document keeps working,
                // and `warnings` says what was dropped.
                ActionEntry::Named(_) if task.is_orca() => {}
                ActionEntry::Named(n) => errors.push(SpecError::new(
                    at,
                    format!("unknown action {n:?}: Baton has no plugins; write a typed action, {{webhook: {{url: https://...}}}} or {{publish: {{subject: ...}}}}"),
                )),
                ActionEntry::Typed(action) => {
                    let field = match action {
                        Action::Webhook(_) => "webhook",
                        Action::Publish(_) => "publish",
                    };
                    errors.extend(action_errors(&format!("{at}.{field}"), Some(action)));
                }
            }
        }
    }
    errors.extend(pod_template(
        "spec",
        Some(&spec.template),
        spec.container.as_deref(),
        spec.namespace.as_deref(),
    ));
    retries_and_timeout("spec", spec.retries.as_ref(), spec.timeout, &mut errors);
    errors.extend(job_size("spec", spec));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Orca's built-in plugins (names case-insensitive), which posted `{"id", "message"}` to a
/// demo echo bot's URL written into Orca: refused with a pointer to a webhook, since no URL of
/// theirs could be meant.
const ORCA_DEMO_PLUGINS: [&str; 2] = ["SIROCCO-DEMO-ALERT-SUCCESS", "SIROCCO-DEMO-ALERT-FAILURE"];

/// Returns what a document asks for that Baton leaves out, each at its field path: a valid
/// document that does less than its author may think. `baton apply` and `baton validate`
/// print these, and a cluster object gets them as Warning events.
///
/// Today these are the plugin names of an Orca Task's `successActions` / `failureActions`,
/// which Baton drops as Orca dropped the names it did not know.
pub fn warnings(document: &crate::Document) -> Vec<SpecError> {
    use crate::task::ActionEntry;
    let crate::Document::Task(task) = document else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for (field, actions) in [
        ("successActions", &task.spec.success_actions),
        ("failureActions", &task.spec.failure_actions),
    ] {
        for (j, entry) in actions.iter().enumerate() {
            let ActionEntry::Named(n) = entry else {
                continue;
            };
            let why = if ORCA_DEMO_PLUGINS.iter().any(|p| p.eq_ignore_ascii_case(n)) {
                format!(
                    "Orca's demo plugin {n:?} posted to a demo bot's hard-coded URL; Baton drops it"
                )
            } else {
                format!(
                    "plugin {n:?} is unknown (Baton has no plugins) and is dropped, as Orca dropped names it did not know"
                )
            };
            found.push(SpecError::new(
                format!("spec.{field}[{j}]"),
                format!("{why}; for a call, write {{webhook: {{url: https://...}}}} (without a body it posts Orca's {{\"id\", \"message\"}} JSON)"),
            ));
        }
    }
    found
}

/// Checks a typed action; `at` is the path of its `webhook` or `publish` map.
fn action_errors(at: &str, action: Option<&crate::task::Action>) -> Vec<SpecError> {
    use crate::task::Action;
    let mut errors = Vec::new();
    match action {
        Some(Action::Webhook(w)) => {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                errors.push(SpecError::new(
                    format!("{at}.url"),
                    format!("{:?} is not an http or https URL", w.url),
                ));
            }
            if let Some(m) = &w.method
                && !matches!(m.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE")
            {
                errors.push(SpecError::new(
                    format!("{at}.method"),
                    format!("{m:?}: use GET, POST, PUT, PATCH or DELETE"),
                ));
            }
        }
        Some(Action::Publish(p)) => {
            let ok = !p.subject.is_empty()
                && !p.subject.contains([' ', '*', '>'])
                && p.subject.split('.').all(|t| !t.is_empty());
            if !ok {
                errors.push(SpecError::new(
                    format!("{at}.subject"),
                    format!("{:?} is not a NATS subject to publish on", p.subject),
                ));
            }
        }
        None => {}
    }
    errors
}

/// Returns every problem in an ignitor applied at `now`, or `Ok`.
pub fn ignitor(
    ignitor: &crate::task::Ignitor,
    now: crate::wire::Timestamp,
) -> Result<(), Vec<SpecError>> {
    let mut errors = Vec::new();
    name(&ignitor.metadata, &mut errors, "ignitor");
    if let Err(e) = crate::schedule::Schedule::parse(
        &ignitor.spec.scheduled,
        ignitor.spec.time_zone.as_deref(),
        now,
    ) {
        let field = if e.starts_with("unknown time zone") {
            "spec.timeZone"
        } else {
            "spec.scheduled"
        };
        errors.push(SpecError::new(field, e));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Returns every problem in an analysis template, or `Ok`.
pub fn analysis_template(
    template: &crate::analysis::AnalysisTemplate,
) -> Result<(), Vec<SpecError>> {
    let mut errors = Vec::new();
    name(&template.metadata, &mut errors, "analysis template");
    errors.extend(crate::analysis::template_problems(template));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

const MAX_RETRIES: u32 = 100;
/// The most instances of one task a chain may hold (`chainLimit`).
pub const MAX_CHAIN_LIMIT: u32 = 10_000;
const DNS_LABEL_RULE: &str =
    "use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit";

/// Returns a cycle as `a -> b -> a`; a long one shows its first nodes, how many it leaves out,
/// and its end, so that a 200 000-node cycle is a line, not megabytes.
fn shown_cycle(cycle: &[String]) -> String {
    const SHOWN: usize = 10;
    if cycle.len() <= SHOWN + 2 {
        return cycle.join(" -> ");
    }
    format!(
        "{} -> ... ({} more) ... -> {}",
        cycle[..SHOWN].join(" -> "),
        cycle.len() - SHOWN - 2,
        cycle[cycle.len() - 2..].join(" -> ")
    )
}

/// Finds one cycle in the `needs` graph, returning the index of the node it starts at and the
/// names along it, the first repeated at the end (`a -> b -> a`).
fn find_cycle(wf: &Workflow) -> Option<(usize, Vec<String>)> {
    let nodes = &wf.spec.nodes;
    let mut graph = DiGraph::<usize, ()>::new();
    let ids: Vec<_> = (0..nodes.len()).map(|i| graph.add_node(i)).collect();
    let index_of: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    for (i, node) in nodes.iter().enumerate() {
        for need in &node.needs {
            graph.add_edge(ids[i], ids[index_of[need.as_str()]], ());
        }
    }
    // Tarjan's components come out in reverse topological order; the first one with more than
    // one member holds a cycle, which a walk inside the component closes.
    let component = kosaraju_scc(&graph).into_iter().find(|c| c.len() > 1)?;
    let members: BTreeSet<usize> = component.iter().map(|n| graph[*n]).collect();
    let start = *members.first()?;
    let mut path = vec![start];
    let mut on_path = BTreeSet::from([start]);
    let mut current = start;
    loop {
        let next = nodes[current]
            .needs
            .iter()
            .map(|n| index_of[n.as_str()])
            .find(|n| members.contains(n))?;
        path.push(next);
        if !on_path.insert(next) {
            let from = path.iter().position(|n| *n == next)?;
            let names = path[from..]
                .iter()
                .map(|n| nodes[*n].name.to_string())
                .collect();
            return Some((path[from], names));
        }
        current = next;
    }
}

#[cfg(test)]
mod tests {
    use crate::parse_documents;

    fn check(nodes: &str) -> Vec<String> {
        let text = format!(
            "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: w}}\nspec:\n  nodes:\n{nodes}"
        );
        match parse_documents("f.yaml", &text, crate::wire::Timestamp(0)) {
            Ok(_) => vec![],
            Err(e) => e.errors.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn accepts_a_diamond() {
        let e = check(
            "  - {name: a, kind: noop}\n  - {name: b, kind: noop, needs: [a]}\n  - {name: c, kind: exec, command: [\"true\"], needs: [a]}\n  - {name: d, kind: noop, needs: [b, c]}\n",
        );
        assert!(e.is_empty(), "{e:?}");
    }

    #[test]
    fn unknown_need() {
        let e = check(
            "  - {name: a, kind: noop}\n  - {name: b, kind: noop}\n  - {name: c, kind: noop}\n  - {name: d, kind: noop, needs: [db]}\n",
        );
        assert_eq!(e, ["spec.nodes[3].needs[0]: unknown node \"db\""]);
    }

    #[test]
    fn cycle_is_printed() {
        let e = check(
            "  - {name: a, kind: noop, needs: [c]}\n  - {name: b, kind: noop, needs: [a]}\n  - {name: c, kind: noop, needs: [b]}\n  - {name: d, kind: noop}\n",
        );
        assert_eq!(e, ["spec.nodes[0].needs: cycle: a -> c -> b -> a"]);
    }

    #[test]
    fn self_need_and_duplicates() {
        let e = check(
            "  - {name: a, kind: noop, needs: [a]}\n  - {name: a, kind: noop}\n  - {name: Bad_Name, kind: noop}\n",
        );
        assert_eq!(e.len(), 3, "{e:?}");
        assert_eq!(
            e[0],
            "spec.nodes[1].name: duplicate node name \"a\" (first used at spec.nodes[0])"
        );
        assert!(
            e[1].starts_with("spec.nodes[2].name: invalid name \"Bad_Name\""),
            "{e:?}"
        );
        assert_eq!(
            e[2],
            "spec.nodes[0].needs[0]: node \"a\" cannot need itself"
        );
    }

    #[test]
    fn per_kind_fields() {
        let e = check("  - {name: a, kind: exec}\n  - {name: b, kind: noop, command: [x]}\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("spec.nodes[0].command: an exec node needs a command"));
        assert_eq!(
            e[1],
            "spec.nodes[1].command: only exec nodes take this field"
        );
    }

    #[test]
    fn pod_nodes() {
        let e = check(
            "  - name: a\n    kind: pod\n    container: side\n    template:\n      spec:\n        containers:\n        - {name: main, image: busybox}\n        - {name: main}\n",
        );
        assert_eq!(
            e,
            [
                "spec.nodes[0].template.spec.containers[1].name: duplicate container name \"main\"",
                "spec.nodes[0].template.spec.containers[1].image: missing: every container needs an image",
                "spec.nodes[0].container: no container named \"side\" in the template (it has: main)",
            ]
        );
        let e = check("  - {name: a, kind: pod, command: [x]}\n");
        assert_eq!(
            e[0],
            "spec.nodes[0].command: only exec nodes take this field"
        );
        assert!(e[1].starts_with(
            "spec.nodes[0].template.spec.containers: a pod needs at least one container"
        ));
        let e = check("  - {name: a, kind: exec, command: [x], container: c}\n");
        assert_eq!(
            e,
            ["spec.nodes[0].container: only pod nodes take this field"]
        );
        let ok = check(
            "  - name: a\n    kind: pod\n    namespace: jobs\n    template: {spec: {containers: [{name: main, image: busybox, command: [sh]}]}}\n",
        );
        assert!(ok.is_empty(), "{ok:?}");
    }

    #[test]
    fn failure_handler_needs_something_to_follow() {
        let e = check("  - {name: a, kind: noop, when: failure}\n");
        assert!(e[0].starts_with("spec.nodes[0].when: "), "{e:?}");
    }

    #[test]
    fn reserved_env_and_bad_backoff() {
        let e = check(
            "  - name: a\n    kind: exec\n    command: [x]\n    env: {BATON_DATA: x}\n    retries: {limit: 2, backoff: {initial: 1m, max: 1s}}\n",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(
            e[0],
            "spec.nodes[0].retries.backoff: initial must not be longer than max"
        );
        assert!(e[1].starts_with("spec.nodes[0].env.BATON_DATA: names starting with BATON_"));
    }

    #[test]
    fn bad_workflow_name_and_no_nodes() {
        let text = "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {name: My.Flow}\nspec: {nodes: []}\n";
        let e = parse_documents("f.yaml", text, crate::wire::Timestamp(0)).unwrap_err();
        let lines: Vec<_> = e.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(lines, ["metadata.name", "spec.nodes"]);
    }
}
