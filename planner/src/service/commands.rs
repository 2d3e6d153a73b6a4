//! The API's requests to the planner loop ([`Command`]) and how the loop answers each.

use super::*;
use baton_schemas::views::{CellView, GroupView, IgnitorView, TaskView};

/// A request from the API, answered by the loop.
#[derive(Debug)]
pub enum Command {
    /// `command`, sent for a traced request: the runs and jobs it causes join the request's
    /// trace (`traceparent`, its span's).
    Traced {
        /// The request span's `traceparent`.
        traceparent: String,
        /// The command.
        command: Box<Command>,
    },
    /// Registers a validated document and, for a workflow with `start`, starts a run of it
    /// with that data.
    Apply {
        /// The document.
        document: Box<Document>,
        /// The run's trigger data, when a run should start.
        start: Option<String>,
        /// The id of that run (default: a new one). An id already known starts nothing, so
        /// a caller that derives the id from what it applies may apply it again safely.
        run: Option<RunId>,
        /// The cluster object the document comes from; `None` for the API.
        source: Option<ClusterSource>,
        /// The new run's id, when one started.
        reply: oneshot::Sender<Result<Option<RunId>, Refusal>>,
    },
    /// Starts a run of a registered workflow.
    Start {
        /// The workflow.
        workflow: WorkflowName,
        /// The run's id, when the caller chose one (an idempotency key's); a new one
        /// otherwise. A run id already known starts nothing and is answered again.
        run: Option<RunId>,
        /// The trigger data.
        data: String,
        /// The new run's id.
        reply: oneshot::Sender<Result<RunId, Refusal>>,
    },
    /// Cancels a run.
    Cancel {
        /// The run.
        run: RunId,
        /// Done, or why not.
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// Forgets a registered document (deleted from a cluster, or by a person); an application
    /// group's releases are uninstalled in reverse order first.
    Remove {
        /// The document.
        document: Registered,
        /// Done (for a group: its delete run started or waits), or why not (a workflow, task
        /// or ignitor that is not registered).
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// Deletes a group and lets it go whatever its delete leaves installed.
    ForceDelete {
        /// The group.
        group: String,
        /// Done, or why not (a group that is not registered).
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// Reads every document applied from a cluster object, with that object.
    Sources {
        /// The documents and objects.
        reply: oneshot::Sender<Vec<(Registered, ClusterSource)>>,
    },
    /// Says whether a document is registered.
    Exists {
        /// The document.
        document: Registered,
        /// Whether it is.
        reply: oneshot::Sender<bool>,
    },
    /// Reads one run.
    Status {
        /// The run.
        run: RunId,
        /// Its status, if it exists.
        reply: oneshot::Sender<Option<RunStatus>>,
    },
    /// Reads every task's status.
    Tasks {
        /// The tasks, by name.
        reply: oneshot::Sender<Vec<TaskView>>,
    },
    /// Reads every ignitor's status.
    Ignitors {
        /// The ignitors, by name.
        reply: oneshot::Sender<Vec<IgnitorView>>,
    },
    /// Reads one page of runs, without their nodes.
    RunSummaries {
        /// Which runs.
        query: baton_core::RunQuery,
        /// The page.
        reply: oneshot::Sender<baton_schemas::status::RunPage>,
    },
    /// Reads every run, oldest first.
    List {
        /// The runs.
        reply: oneshot::Sender<Vec<RunStatus>>,
    },
    /// Finds the umbrella chart whose subcharts the chart repository serves at `path`.
    SubchartSource {
        /// [`baton_schemas::helm::HelmChart::subchart_repository_path`].
        path: String,
        /// The parent chart, if a registered group splits it.
        reply: oneshot::Sender<Option<crate::charts::ParentChart>>,
    },
    /// Reads every application group's status.
    Groups {
        /// The groups' views, by name.
        reply: oneshot::Sender<Vec<GroupView>>,
    },
    // --- Cells ---
    /// Reads every Cell's status.
    Cells {
        /// The Cells, by name.
        reply: oneshot::Sender<Vec<CellView>>,
    },
    /// Reads every Cell's spec, for the discovery.
    CellSpecs {
        /// The Cells.
        reply: oneshot::Sender<Vec<baton_schemas::cell::Cell>>,
    },
    /// Applies what a discovery saw.
    Observe {
        /// What it saw.
        observation: Box<Observation>,
        /// Done.
        reply: oneshot::Sender<()>,
    },
    /// Resumes, aborts or promotes a Cell's rollout.
    CellCommand {
        /// The Cell.
        cell: String,
        /// What to do.
        command: CellCommand,
        /// The rollout and step the command is meant for, when the caller named them.
        expect: Expect,
        /// Done, or why not.
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
}

impl Planner {
    pub(super) async fn on_command(&mut self, command: Command) -> anyhow::Result<()> {
        if let Command::Traced {
            traceparent,
            command,
        } = command
        {
            self.command_cause = baton_telemetry::trace::extract(Some(&traceparent), None);
            let answered = self.answer(*command).await;
            self.command_cause = None;
            return answered;
        }
        self.answer(command).await
    }

    /// Answers one command.
    async fn answer(&mut self, command: Command) -> anyhow::Result<()> {
        match command {
            Command::Traced { command, .. } => Box::pin(self.answer(*command)).await?,
            Command::Apply {
                document,
                start,
                run,
                source,
                reply,
            } => {
                if matches!(*document, Document::Cell(_)) {
                    self.config.discover_now.notify_one();
                }
                // A cluster's listing repeats what it holds; a person's apply is new.
                let by_person = source.is_none();
                // Committed with the registration: where the document came from.
                let sourced = Input::Source {
                    document: Registered::of(&document),
                    source,
                };
                let (mut inputs, name) = match *document {
                    Document::Workflow(w) => {
                        let name = w.name();
                        (vec![Input::Register(w)], Some(name))
                    }
                    Document::Task(t) => (vec![Input::RegisterTask(t)], None),
                    Document::Ignitor(i) => {
                        let again = by_person;
                        (vec![Input::RegisterIgnitor { ignitor: i, again }], None)
                    }
                    Document::Group(g) => {
                        let group = g.name().to_owned();
                        let actions = self
                            .turn(vec![Input::RegisterGroup(g), sourced], Origin::Local)
                            .await?;
                        // The run releasing the spec: the one it started, or the one under way.
                        let run = self
                            .core
                            .group(&group)
                            .and_then(|entry| match &entry.state {
                                baton_core::GroupState::Progressing { run } => Some(run.clone()),
                                _ => None,
                            });
                        let _ = reply.send(refused(&actions).map_or(Ok(run), Err));
                        return Ok(());
                    }
                    Document::Cell(c) => (vec![Input::RegisterCell(c)], None),
                    Document::AnalysisTemplate(t) => {
                        (vec![Input::RegisterAnalysisTemplate(t)], None)
                    }
                };
                inputs.push(sourced);
                let run = name
                    .as_ref()
                    .and(start.as_ref())
                    .map(|_| run.unwrap_or_else(new_run_id));
                if let (Some(run), Some(name), Some(data)) = (&run, name, start) {
                    inputs.push(Input::StartRun {
                        run: run.clone(),
                        workflow: name,
                        initiator: "api".to_owned(),
                        data,
                    });
                }
                let actions = self.turn(inputs, Origin::Local).await?;
                let _ = reply.send(refused(&actions).map_or(Ok(run), Err));
            }
            Command::Start {
                workflow,
                run,
                data,
                reply,
            } => {
                let run = run.unwrap_or_else(new_run_id);
                let input = Input::StartRun {
                    run: run.clone(),
                    workflow,
                    initiator: "api".to_owned(),
                    data,
                };
                let actions = self.turn(vec![input], Origin::Local).await?;
                let _ = reply.send(refused(&actions).map_or(Ok(run), Err));
            }
            Command::Remove { document, reply } => {
                let actions = self
                    .turn(vec![Input::Remove(document)], Origin::Local)
                    .await?;
                let _ = reply.send(refused(&actions).map_or(Ok(()), Err));
            }
            Command::ForceDelete { group, reply } => {
                let actions = self
                    .turn(vec![Input::ForceDelete(group)], Origin::Local)
                    .await?;
                let _ = reply.send(refused(&actions).map_or(Ok(()), Err));
            }
            Command::Sources { reply } => {
                let sources = self
                    .core
                    .cluster_sources()
                    .map(|(d, s)| (d.clone(), s.clone()))
                    .collect();
                let _ = reply.send(sources);
            }
            Command::Cancel { run, reply } => {
                let actions = self.turn(vec![Input::Cancel(run)], Origin::Local).await?;
                let _ = reply.send(refused(&actions).map_or(Ok(()), Err));
            }
            Command::Exists { document, reply } => {
                let _ = reply.send(self.core.is_registered(&document));
            }
            Command::Tasks { reply } => {
                let _ = reply.send(self.core.tasks().map(|(t, state)| t.view(state)).collect());
            }
            Command::Ignitors { reply } => {
                let _ = reply.send(self.core.ignitors().map(|i| i.view()).collect());
            }
            Command::Status { run, reply } => {
                let _ = reply.send(self.core.run(&run).map(|r| r.status()));
            }
            Command::Groups { reply } => {
                let views = self
                    .core
                    .groups()
                    .map(|g| self.core.group_view(g))
                    .collect();
                let _ = reply.send(views);
            }
            Command::SubchartSource { path, reply } => {
                let _ = reply.send(crate::charts::parent_at(self.core.groups(), &path));
            }
            Command::Cells { reply } => {
                let _ = reply.send(self.core.cell_views().collect());
            }
            Command::CellSpecs { reply } => {
                let _ = reply.send(self.core.cells().map(|c| c.cell.clone()).collect());
            }
            Command::Observe { observation, reply } => {
                self.turn(vec![Input::Observed(observation)], Origin::Local)
                    .await?;
                let _ = reply.send(());
            }
            Command::CellCommand {
                cell,
                command,
                expect,
                reply,
            } => {
                let input = Input::CellCommand {
                    cell,
                    command,
                    expect,
                    from: None,
                };
                let actions = self.turn(vec![input], Origin::Local).await?;
                let _ = reply.send(refused(&actions).map_or(Ok(()), Err));
            }
            Command::RunSummaries { query, reply } => {
                let _ = reply.send(baton_core::run_page(self.core.runs(), &query));
            }
            Command::List { reply } => {
                let mut runs: Vec<_> = self.core.runs().collect();
                runs.sort_by_key(|r| (r.created_at, r.id.clone()));
                let _ = reply.send(runs.into_iter().map(|r| r.status()).collect());
            }
        }
        Ok(())
    }
}
