//! Live progress on a terminal, or plain lines elsewhere.
//!
//! On a terminal the screen redraws one table in place (the cursor moved up over the last
//! drawing, which is cleared), like `kubectl argo rollouts get rollout --watch`: a run's
//! nodes with state, attempt, duration and the last line of output or error; or Cells with
//! their phase, versions, step and weights. Anywhere else (a pipe, a file, CI) it appends one
//! line per change and never moves the cursor.

use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime};

use baton_schemas::status::{NodeStatus, RunStatus};
use baton_schemas::views::{CellView, GroupView};
use baton_schemas::watch::RunEvent;

use crate::output::{group_lines, table_lines};

/// Where progress goes.
pub(crate) enum Screen {
    /// Redrawn in place on a terminal (stderr when `on_stderr`, else stdout); `drawn` is how
    /// many lines the last drawing took.
    Terminal {
        drawn: usize,
        width: usize,
        on_stderr: bool,
    },
    /// Lines appended to `out` (stdout for `status --watch`, stderr for `apply --wait`).
    Plain { out: Box<dyn Write + Send> },
}

impl Screen {
    /// A screen on stdout: redrawn when stdout is a terminal, plain lines otherwise.
    pub(crate) fn stdout() -> Screen {
        match std::io::stdout().is_terminal() {
            true => Screen::terminal(false),
            false => Screen::Plain {
                out: Box::new(std::io::stdout()),
            },
        }
    }

    /// Progress beside a command whose result goes to stdout (`apply --wait`): redrawn on
    /// stderr when it is a terminal, plain lines on stderr otherwise.
    pub(crate) fn beside_result() -> Screen {
        match std::io::stderr().is_terminal() {
            true => Screen::terminal(true),
            false => Screen::Plain {
                out: Box::new(std::io::stderr()),
            },
        }
    }

    fn terminal(on_stderr: bool) -> Screen {
        // A pseudo-terminal nobody sized says 0 columns.
        let width = terminal_size::terminal_size()
            .map(|(w, _)| usize::from(w.0))
            .filter(|w| *w > 0)
            .unwrap_or(100);
        Screen::Terminal {
            drawn: 0,
            width,
            on_stderr,
        }
    }

    /// In plain mode, writes the lines `event` makes; a terminal is redrawn by
    /// [`Screen::draw_run`] instead.
    pub(crate) fn run_event(&mut self, event: &RunEvent) -> std::io::Result<()> {
        let Screen::Plain { out } = self else {
            return Ok(());
        };
        match event {
            RunEvent::Snapshot(s) => {
                writeln!(out, "run {}  workflow {}  {}", s.run, s.workflow, s.state)?;
                for node in &s.nodes {
                    writeln!(out, "{}", node_line(node))?;
                }
            }
            RunEvent::Node(node) => writeln!(out, "{}", node_line(node))?,
            // An ending says so once, with `end`.
            RunEvent::Run(h) if h.state.is_terminal() => {}
            RunEvent::Run(h) => writeln!(out, "run {}  {}", h.run, h.state)?,
            RunEvent::End(h) => writeln!(out, "run {} ended: {}", h.run, h.state)?,
        }
        out.flush()
    }

    /// On a terminal, redraws `status`.
    pub(crate) fn draw_run(&mut self, status: &RunStatus) -> std::io::Result<()> {
        let Screen::Terminal { .. } = self else {
            return Ok(());
        };
        let mut lines = vec![format!(
            "run {}  workflow {}  {}",
            status.run, status.workflow, status.state
        )];
        if let Some(error) = &status.error {
            lines.push(format!("error: {}", last_line(error)));
        }
        let rows: Vec<[String; 5]> = status
            .nodes
            .iter()
            .map(|n| {
                [
                    n.name.clone(),
                    n.state.to_string(),
                    n.attempts.to_string(),
                    duration(n).map(show_duration).unwrap_or_default(),
                    last_output(n),
                ]
            })
            .collect();
        lines.extend(table_lines(
            ["NODE", "STATE", "ATTEMPT", "DURATION", "LAST OUTPUT"],
            &rows,
        ));
        self.redraw(&lines)
    }

    /// Shows Cells: redrawn on a terminal, one line per Cell otherwise.
    pub(crate) fn cells(&mut self, cells: &[CellView]) -> std::io::Result<()> {
        let rows: Vec<[String; 6]> = cells
            .iter()
            .map(|c| {
                let weights: Vec<String> = c
                    .weights
                    .iter()
                    .map(|w| {
                        let who = w.version.as_deref().or(w.name.as_deref()).unwrap_or(&w.arn);
                        format!("{who}={}", w.weight)
                    })
                    .collect();
                [
                    c.name.clone(),
                    c.phase.clone(),
                    c.serving_version.clone().unwrap_or_default(),
                    c.desired_version.clone().unwrap_or_default(),
                    c.step.map(|s| s.to_string()).unwrap_or_default(),
                    weights.join(","),
                ]
            })
            .collect();
        match self {
            Screen::Terminal { .. } => {
                let lines = table_lines(
                    ["NAME", "PHASE", "SERVING", "DESIRED", "STEP", "WEIGHTS"],
                    &rows,
                );
                self.redraw(&lines)
            }
            Screen::Plain { out } => {
                for row in rows {
                    writeln!(
                        out,
                        "cell {}  {}  serving {}  desired {}  step {}  weights {}",
                        row[0], row[1], row[2], row[3], row[4], row[5]
                    )?;
                }
                out.flush()
            }
        }
    }

    /// Shows a group: its tree redrawn on a terminal; otherwise a line for each of its
    /// lines (group, applications, subcharts) that differs from `before`.
    pub(crate) fn group(
        &mut self,
        before: Option<&GroupView>,
        after: &GroupView,
    ) -> std::io::Result<()> {
        let lines = group_lines(after);
        match self {
            Screen::Terminal { .. } => self.redraw(&lines),
            Screen::Plain { out } => {
                let old = before.map(group_lines).unwrap_or_default();
                for line in lines.iter().filter(|l| !l.trim().is_empty()) {
                    // Rows are laid out anew each time: compare them without the padding.
                    let squeezed = squeeze(line);
                    if !old.iter().any(|o| squeeze(o) == squeezed) {
                        writeln!(out, "group {}  {squeezed}", after.name)?;
                    }
                }
                out.flush()
            }
        }
    }

    /// A line below the drawing (or appended).
    pub(crate) fn note(&mut self, text: &str) -> std::io::Result<()> {
        match self {
            Screen::Terminal {
                drawn, on_stderr, ..
            } => {
                *drawn = 0;
                match on_stderr {
                    true => writeln!(std::io::stderr(), "{text}"),
                    false => writeln!(std::io::stdout(), "{text}"),
                }
            }
            Screen::Plain { out } => writeln!(out, "{text}"),
        }
    }

    /// Moves the cursor up over the last drawing, clears it, and draws `lines`, each cut to
    /// the terminal's width (a wrapped line would throw the count off).
    fn redraw(&mut self, lines: &[String]) -> std::io::Result<()> {
        let Screen::Terminal {
            drawn,
            width,
            on_stderr,
        } = self
        else {
            return Ok(());
        };
        let mut out: Box<dyn Write> = match on_stderr {
            true => Box::new(std::io::stderr().lock()),
            false => Box::new(std::io::stdout().lock()),
        };
        let mut frame = String::new();
        if *drawn > 0 {
            frame.push_str(&format!("\x1b[{}A\r\x1b[J", *drawn));
        }
        for line in lines {
            let cut: String = line.chars().take(width.saturating_sub(1).max(20)).collect();
            frame.push_str(&cut);
            frame.push('\n');
        }
        out.write_all(frame.as_bytes())?;
        out.flush()?;
        *drawn = lines.len();
        Ok(())
    }
}

/// One node as a plain line: name, state, attempt, duration, last output line.
fn node_line(node: &NodeStatus) -> String {
    let mut line = format!(
        "node {}  {}  attempt {}",
        node.name, node.state, node.attempts
    );
    if let Some(took) = duration(node) {
        line.push_str(&format!("  {}", show_duration(took)));
    }
    let last = last_output(node);
    if !last.is_empty() {
        line.push_str(&format!("  {last}"));
    }
    line
}

/// How long a node ran: to its end, or until now while it runs.
fn duration(node: &NodeStatus) -> Option<Duration> {
    let started = humantime::parse_rfc3339_weak(node.started_at.as_deref()?).ok()?;
    let ended = match node.finished_at.as_deref() {
        Some(at) => humantime::parse_rfc3339_weak(at).ok()?,
        None => SystemTime::now(),
    };
    Some(ended.duration_since(started).unwrap_or_default())
}

fn show_duration(took: Duration) -> String {
    match took.as_secs() {
        0..60 => format!("{:.1}s", took.as_secs_f64()),
        s => format!("{}m{:02}s", s / 60, s % 60),
    }
}

/// The last line of the node's error (a failure) or output.
fn last_output(node: &NodeStatus) -> String {
    let text = node
        .error
        .as_deref()
        .or(node.output.as_deref())
        .unwrap_or_default();
    last_line(text)
}

fn last_line(text: &str) -> String {
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    line.chars().take(80).collect()
}

/// A table row with its columns' padding cut to two spaces.
fn squeeze(line: &str) -> String {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect::<Vec<_>>()
        .join("  ")
}
