//! Printing runs as text tables or JSON.

use baton_schemas::status::{RunStatus, State};
use baton_schemas::views::{CellView, Condition, GroupView, IgnitorView, ReleaseView, TaskView};

use crate::args::Format;

pub(crate) fn print_status(status: &RunStatus, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string(status)?),
        Format::Text => {
            println!(
                "run {}  workflow {}  {}",
                status.run, status.workflow, status.state
            );
            if let Some(error) = &status.error {
                println!("error: {}", one_line(error));
            }
            let rows: Vec<[String; 5]> = status
                .nodes
                .iter()
                .map(|n| {
                    [
                        n.name.clone(),
                        n.state.to_string(),
                        n.attempts.to_string(),
                        n.output.as_deref().map(one_line).unwrap_or_default(),
                        n.error.as_deref().map(one_line).unwrap_or_default(),
                    ]
                })
                .collect();
            print_table(["NODE", "STATE", "ATTEMPTS", "OUTPUT", "ERROR"], &rows);
        }
    }
    Ok(())
}

pub(crate) fn print_runs(runs: &[RunStatus], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string(runs)?),
        Format::Text => {
            let rows: Vec<[String; 4]> = runs
                .iter()
                .map(|r| {
                    let done = r
                        .nodes
                        .iter()
                        .filter(|n| n.state == State::Succeeded)
                        .count();
                    [
                        r.run.clone(),
                        r.workflow.clone(),
                        r.state.to_string(),
                        format!("{done}/{}", r.nodes.len()),
                    ]
                })
                .collect();
            print_table(["RUN", "WORKFLOW", "STATE", "SUCCEEDED"], &rows);
        }
    }
    Ok(())
}

/// Prints tasks: a table of their fields, or JSON.
pub(crate) fn print_tasks(items: &[TaskView], format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string(items)?);
        return Ok(());
    }
    let names = |list: &[String]| serde_json::to_string(list).unwrap_or_default();
    let rows: Vec<[String; 8]> = items
        .iter()
        .map(|t| {
            [
                t.name.clone(),
                t.state.clone(),
                t.last_success.clone().unwrap_or_default(),
                t.last_failure.clone().unwrap_or_default(),
                t.failures_count.to_string(),
                names(&t.ignitors),
                names(&t.on_success_task),
                names(&t.on_failure_task),
            ]
        })
        .collect();
    print_table(
        [
            "NAME",
            "STATE",
            "LASTSUCCESS",
            "LASTFAILURE",
            "FAILURESCOUNT",
            "IGNITORS",
            "ONSUCCESSTASK",
            "ONFAILURETASK",
        ],
        &rows,
    );
    Ok(())
}

/// Prints ignitors: a table of their fields, or JSON.
pub(crate) fn print_ignitors(items: &[IgnitorView], format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string(items)?);
        return Ok(());
    }
    let rows: Vec<[String; 5]> = items
        .iter()
        .map(|i| {
            [
                i.name.clone(),
                i.scheduled.clone(),
                i.last_fire.clone().unwrap_or_default(),
                i.next_fire.clone().unwrap_or_default(),
                i.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(
        ["NAME", "SCHEDULED", "LASTFIRE", "NEXTFIRE", "ERROR"],
        &rows,
    );
    Ok(())
}

/// Returns a condition of `kind` among `conditions`: `(status, reason, message)`.
fn condition(conditions: &[Condition], kind: &str) -> (String, String, String) {
    match conditions.iter().find(|c| c.kind == kind) {
        Some(c) => (c.status.clone(), c.reason.clone(), c.message.clone()),
        None => Default::default(),
    }
}

/// Prints application groups: `NAME READY REASON ROLLEDBACK PHASE RUN MESSAGE`, Orkestra's
/// columns and Baton's, or JSON.
pub(crate) fn print_groups(groups: &[GroupView], format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string(groups)?);
        return Ok(());
    }
    for line in groups_lines(groups) {
        println!("{line}");
    }
    Ok(())
}

/// The groups' table, a line each.
fn groups_lines(groups: &[GroupView]) -> Vec<String> {
    let rows: Vec<[String; 7]> = groups
        .iter()
        .map(|g| {
            let (ready, reason, message) = condition(&g.conditions, "Ready");
            let (rolled_back, _, _) = condition(&g.conditions, "RollbackWorkflowSucceeded");
            [
                g.name.clone(),
                ready,
                reason,
                rolled_back,
                g.phase.clone(),
                g.run.as_ref().map(|r| r.to_string()).unwrap_or_default(),
                one_line(&message),
            ]
        })
        .collect();
    table_lines(
        [
            "NAME",
            "READY",
            "REASON",
            "ROLLEDBACK",
            "PHASE",
            "RUN",
            "MESSAGE",
        ],
        &rows,
    )
}

/// Prints one application group and its applications and subcharts, or JSON.
pub(crate) fn print_group(group: &GroupView, format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string(group)?);
        return Ok(());
    }
    for line in group_lines(group) {
        println!("{line}");
    }
    Ok(())
}

/// One group, its applications and subcharts, a line each.
pub(crate) fn group_lines(group: &GroupView) -> Vec<String> {
    let mut lines = groups_lines(std::slice::from_ref(group));
    if !group.left_installed.is_empty() {
        lines.push(format!(
            "left installed: {}",
            group.left_installed.join(", ")
        ));
    }
    lines.push(String::new());
    let mut rows: Vec<[String; 7]> = Vec::new();
    let row = |app: &str, sub: &str, release: Option<&ReleaseView>| {
        let (ready, reason, message) =
            condition(release.map_or(&[][..], |r| &r.conditions), "Ready");
        [
            app.to_owned(),
            sub.to_owned(),
            release.map_or_else(
                || "/".to_owned(),
                |r| format!("{}/{}", r.namespace, r.release),
            ),
            release.and_then(|r| r.version.clone()).unwrap_or_default(),
            ready,
            reason,
            one_line(&message),
        ]
    };
    for app in &group.applications {
        rows.push(row(&app.name, "", app.release.as_ref()));
        for (sub, release) in &app.subcharts {
            rows.push(row(&app.name, sub, Some(release)));
        }
    }
    lines.extend(table_lines(
        [
            "APPLICATION",
            "SUBCHART",
            "RELEASE",
            "VERSION",
            "READY",
            "REASON",
            "MESSAGE",
        ],
        &rows,
    ));
    lines
}

/// Prints Cells: a table of their phase, versions, step and weights, or JSON.
pub(crate) fn print_cells(items: &[CellView], format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string(items)?);
        return Ok(());
    }
    let rows: Vec<[String; 7]> = items
        .iter()
        .map(|c| {
            let weights: Vec<String> = c
                .weights
                .iter()
                .map(|w| format!("{}={}", w.name.as_deref().unwrap_or(&w.arn), w.weight))
                .collect();
            [
                c.name.clone(),
                c.phase.clone(),
                c.serving_version.clone().unwrap_or_default(),
                c.desired_version.clone().unwrap_or_default(),
                c.step.map(|s| s.to_string()).unwrap_or_default(),
                weights.join(","),
                c.message.as_deref().map(one_line).unwrap_or_default(),
            ]
        })
        .collect();
    print_table(
        [
            "NAME", "PHASE", "SERVING", "DESIRED", "STEP", "WEIGHTS", "MESSAGE",
        ],
        &rows,
    );
    Ok(())
}

/// Returns the first line of `text`, cut to 60 characters, for a table cell.
fn one_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    let mut cell: String = line.chars().take(60).collect();
    if cell.len() < line.len() || text.lines().nth(1).is_some() {
        cell.push('…');
    }
    cell
}

fn print_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    for line in table_lines(header, rows) {
        println!("{line}");
    }
}

/// Lays out `rows` under `header` in columns, a line each.
pub(crate) fn table_lines<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> Vec<String> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut lines = vec![line(header.to_vec())];
    lines.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    lines
}
