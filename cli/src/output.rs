//! Printing runs as text tables or JSON.

use baton_schemas::status::{RunStatus, State};

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

/// Prints tasks or ignitors: a table of their fields, or JSON.
pub(crate) fn print_objects(
    what: &str,
    items: &[serde_json::Value],
    format: Format,
) -> anyhow::Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string(items)?);
        return Ok(());
    }
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if what == "tasks" {
        let fields = [
            "name",
            "state",
            "lastSuccess",
            "lastFailure",
            "failuresCount",
            "ignitors",
            "onSuccessTask",
            "onFailureTask",
        ];
        let rows: Vec<[String; 8]> = items.iter().map(|i| fields.map(|f| cell(&i[f]))).collect();
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
    } else {
        let fields = ["name", "scheduled", "lastFire", "nextFire", "error"];
        let rows: Vec<[String; 5]> = items.iter().map(|i| fields.map(|f| cell(&i[f]))).collect();
        print_table(
            ["NAME", "SCHEDULED", "LASTFIRE", "NEXTFIRE", "ERROR"],
            &rows,
        );
    }
    Ok(())
}

/// Returns a group's condition of `kind`: `(status, reason, message)`.
fn condition(group: &serde_json::Value, kind: &str) -> (String, String, String) {
    let found = group["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind);
    let text = |key: &str| {
        found
            .and_then(|c| c[key].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    (text("status"), text("reason"), text("message"))
}

/// Prints application groups: `NAME READY REASON ROLLEDBACK PHASE RUN MESSAGE`, Orkestra's
/// columns and Baton's, or JSON.
pub(crate) fn print_groups(groups: &[serde_json::Value], format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string(groups)?);
        return Ok(());
    }
    let rows: Vec<[String; 7]> = groups
        .iter()
        .map(|g| {
            let (ready, reason, message) = condition(g, "Ready");
            let (rolled_back, _, _) = condition(g, "RollbackWorkflowSucceeded");
            [
                g["name"].as_str().unwrap_or_default().to_owned(),
                ready,
                reason,
                rolled_back,
                g["phase"].as_str().unwrap_or_default().to_owned(),
                g["run"].as_str().unwrap_or_default().to_owned(),
                one_line(&message),
            ]
        })
        .collect();
    print_table(
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
    );
    Ok(())
}

/// Prints one application group and its applications and subcharts, or JSON.
pub(crate) fn print_group(group: &serde_json::Value, format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string(group)?);
        return Ok(());
    }
    print_groups(std::slice::from_ref(group), format)?;
    if let Some(left) = group["leftInstalled"].as_array().filter(|l| !l.is_empty()) {
        let left: Vec<&str> = left.iter().filter_map(|l| l.as_str()).collect();
        println!("left installed: {}", left.join(", "));
    }
    println!();
    let mut rows: Vec<[String; 7]> = Vec::new();
    let row = |app: &str, sub: &str, chart: &serde_json::Value| {
        let (ready, reason, message) = condition(chart, "Ready");
        [
            app.to_owned(),
            sub.to_owned(),
            format!(
                "{}/{}",
                chart["namespace"].as_str().unwrap_or_default(),
                chart["release"].as_str().unwrap_or_default()
            ),
            chart["version"].as_str().unwrap_or_default().to_owned(),
            ready,
            reason,
            one_line(&message),
        ]
    };
    for app in group["applications"].as_array().into_iter().flatten() {
        let name = app["name"].as_str().unwrap_or_default();
        rows.push(row(name, "", app));
        for (sub, chart) in app["subcharts"].as_object().into_iter().flatten() {
            rows.push(row(name, sub, chart));
        }
    }
    print_table(
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
    );
    Ok(())
}

/// Prints Cells: a table of their phase, versions, step and weights, or JSON.
pub(crate) fn print_cells(items: &[serde_json::Value], format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string(items)?);
        return Ok(());
    }
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let rows: Vec<[String; 7]> = items
        .iter()
        .map(|c| {
            let weights: Vec<String> = c["weights"]
                .as_array()
                .map(|ws| {
                    ws.iter()
                        .map(|w| {
                            let name = w["name"]
                                .as_str()
                                .unwrap_or_else(|| w["arn"].as_str().unwrap_or_default());
                            format!("{name}={}", w["weight"])
                        })
                        .collect()
                })
                .unwrap_or_default();
            [
                text(&c["name"]),
                text(&c["phase"]),
                text(&c["servingVersion"]),
                text(&c["desiredVersion"]),
                text(&c["step"]),
                weights.join(","),
                c["message"].as_str().map(one_line).unwrap_or_default(),
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
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
