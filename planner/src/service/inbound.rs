//! What the planner reads from the bus: events and triggers decoded into the core's inputs,
//! and what it does with a message it cannot read (reported, set aside, recorded as a failed
//! run or attempt where the message names one).

use super::*;

impl Planner {
    /// Decodes events (one per message, or a worker's batch). A message that cannot be read
    /// at all is terminated; an event that cannot be read is reported as the failure of the
    /// attempt it names (workers name the run, node and attempt of every event: a single
    /// event in its headers, an event of a batch in its body), otherwise in the log.
    pub(super) async fn event_inputs(&self, batch: &[Inbound]) -> Vec<(Input, Option<Cause>)> {
        let mut inputs = Caused::with_capacity(batch.len());
        for message in batch {
            let message_cause = cause_of(message);
            let events = match baton_bus::decode_events(message) {
                Ok(events) => events,
                Err(poison) => {
                    message.term().await.ok();
                    vec![Err(poison)]
                }
            };
            for decoded in events {
                match decoded {
                    Ok((event, traceparent)) => {
                        // A batch's events carry their own trace context.
                        inputs.cause = match traceparent {
                            Some(parent) if baton_telemetry::trace::enabled() => {
                                baton_telemetry::trace::extract(Some(&parent), None)
                            }
                            _ => message_cause.clone(),
                        };
                        inputs.push(Input::Bus(event));
                    }
                    Err(poison) => {
                        inputs.cause = message_cause.clone();
                        set_aside_event(poison, &mut inputs);
                    }
                }
            }
        }
        inputs.inputs
    }

    /// Decodes triggers into run starts and Cell commands. A trigger without a run id gets
    /// one derived from its place in the stream. A trigger that cannot start its run (poison,
    /// or a workflow not registered) is reported and recorded as a failed run with the
    /// reason; a poison Cell command or fire is reported in the log.
    pub(super) fn trigger_inputs(&self, batch: &[Inbound]) -> Vec<(Input, Option<Cause>)> {
        let mut inputs = Caused::with_capacity(batch.len());
        let cell_subject = format!("{}.triggers.cells.", self.bus.config().prefix);
        let fire_subject = format!("{}.triggers.ignitors.", self.bus.config().prefix);
        for message in batch {
            inputs.cause = cause_of(message);
            // `<p>.triggers.ignitors.<ignitor>` carries a fire the planner published.
            if message.subject().starts_with(&fire_subject) {
                match baton_bus::decode_fire(message) {
                    Ok(fire) => inputs.push(Input::Fire(fire)),
                    Err(poison) => {
                        error!(subject = %poison.subject, reason = %poison.reason, "poison ignitor fire set aside")
                    }
                }
                continue;
            }
            self.audit_trigger(message, &cell_subject);
            // `<p>.triggers.cells.<cell>` carries a Cell command in its body.
            if let Some(cell) = message.subject().strip_prefix(&cell_subject) {
                match CellTrigger::parse(message.payload()) {
                    Ok(trigger) => inputs.push(Input::CellCommand {
                        cell: cell.to_owned(),
                        command: trigger.command,
                        expect: trigger.expect(),
                        from: Some(TriggerPosition {
                            stream_created: self.triggers_created,
                            seq: message.stream_sequence(),
                        }),
                    }),
                    Err(e) => {
                        error!(subject = %message.subject(), reason = %e, "poison cell trigger set aside")
                    }
                }
                continue;
            }
            let derived_run = || {
                baton_core::ids::trigger_run_id(self.triggers_created, message.stream_sequence())
            };
            let prefix = &self.bus.config().prefix;
            match baton_bus::decode_trigger(message, prefix) {
                Ok((workflow, run, data)) => {
                    let run = run.unwrap_or_else(derived_run);
                    let name = WorkflowName::new(workflow.clone());
                    if self.core.is_registered(&Registered::Workflow(name.clone())) {
                        inputs.push(Input::StartRun {
                            run,
                            workflow: name,
                            initiator: workflow,
                            data,
                        });
                    } else {
                        warn!(%run, workflow = %name, "trigger for a workflow not registered; recorded as a failed run");
                        inputs.push(Input::RejectTrigger {
                            run,
                            reason: format!("workflow {workflow:?} is not registered"),
                            workflow: name,
                        });
                    }
                }
                Err(poison) => {
                    let run = poison.run.clone().unwrap_or_else(derived_run);
                    error!(subject = %poison.subject, reason = %poison.reason, %run, "poison trigger set aside; recorded as a failed run");
                    let subject_rest = poison
                        .subject
                        .strip_prefix(prefix.as_str())
                        .and_then(|s| s.strip_prefix(".triggers."))
                        .unwrap_or(&poison.subject);
                    inputs.push(Input::RejectTrigger {
                        run,
                        workflow: WorkflowName::new(subject_rest),
                        reason: poison.reason,
                    });
                }
            }
        }
        inputs.inputs
    }

    /// Records a trigger or Cell command read from the bus in the audit trail; read again
    /// after a restart within the stream's duplicate window (10 minutes), it is the same
    /// record (its id is its stream position).
    fn audit_trigger(&self, message: &Inbound, cell_subject: &str) {
        let action = match message.subject().starts_with(cell_subject) {
            true => "cell",
            false => "trigger",
        };
        let seq = message.stream_sequence();
        let record = baton_schemas::api::AuditRecord {
            v: baton_schemas::api::AuditRecord::VERSION,
            at: Timestamp::now(),
            action: action.to_owned(),
            actor: None,
            role: None,
            via: "bus".to_owned(),
            from: format!("{} #{seq}", message.subject()),
            request: message.subject().to_owned(),
            status: None,
        };
        self.audit.record(
            &record,
            Some(format!("audit-trigger-{}-{seq}", self.triggers_created)),
        );
    }
}

type Cause = baton_telemetry::trace::Context;

/// Inputs, each with the trace context of the message it was decoded from.
struct Caused {
    inputs: Vec<(Input, Option<Cause>)>,
    /// The context of the message being decoded.
    cause: Option<Cause>,
}

impl Caused {
    fn with_capacity(n: usize) -> Caused {
        Caused {
            inputs: Vec::with_capacity(n),
            cause: None,
        }
    }

    fn push(&mut self, input: Input) {
        self.inputs.push((input, self.cause.clone()));
    }
}

/// The trace context a message carries, when spans are exported. The `traceparent` every
/// message has by default (derived from its run and id: a sender that exports no spans) is
/// no cause: its parent span exists nowhere.
/// Reports an event that cannot be taken: as the failure of the attempt it names, so that the
/// node does not wait for an end that will never be read; otherwise in the log.
fn set_aside_event(poison: baton_bus::Poison, inputs: &mut Caused) {
    let baton_bus::Poison {
        subject,
        reason,
        run,
        node,
        attempt,
    } = poison;
    let (Some(run), Some(node), Some(attempt)) = (run.clone(), node, attempt) else {
        error!(%subject, %reason, run = ?run, "poison event set aside");
        return;
    };
    error!(%subject, %reason, %run, %node, %attempt, "poison event set aside; reported as the attempt's failure");
    let now = Timestamp::now();
    inputs.push(Input::Bus(baton_schemas::wire::Event::NodeFinished {
        run,
        node,
        attempt,
        started_at: now,
        finished_at: now,
        outcome: baton_schemas::wire::Outcome::failed(format!("event set aside: {reason}")),
    }));
}

fn cause_of(message: &Inbound) -> Option<Cause> {
    if !baton_telemetry::trace::enabled() {
        return None;
    }
    if baton_bus::has_default_traceparent(message) {
        return None;
    }
    baton_telemetry::trace::extract(message.header("traceparent"), message.header("tracestate"))
}
