//! Writing back what the planner knows: each watched object's status (its view's fields and
//! kstatus conditions, `kstatus.rs`) where it changed, and the events the change makes
//! (`events.rs`).

use super::*;

impl Sync {
    /// Writes what the planner knows of each watched object into its status, where it
    /// changed. Returns false when the planner loop is gone.
    pub(super) async fn write_status(&mut self) -> bool {
        let Some(tasks) = self.ask(|reply| Command::Tasks { reply }).await else {
            return false;
        };
        let Some(ignitors) = self.ask(|reply| Command::Ignitors { reply }).await else {
            return false;
        };
        // Status is written as JSON: the subset of each view a kind's status holds.
        fn by_name<T: serde::Serialize>(views: Vec<T>) -> BTreeMap<String, Value> {
            views
                .into_iter()
                .filter_map(|v| serde_json::to_value(v).ok())
                .filter_map(|v| Some((v["name"].as_str()?.to_owned(), v)))
                .collect()
        }
        let Some(groups) = self.ask(|reply| Command::Groups { reply }).await else {
            return false;
        };
        let Some(cells) = self.ask(|reply| Command::Cells { reply }).await else {
            return false;
        };
        let (tasks, ignitors, groups, cells) = (
            by_name(tasks),
            by_name(ignitors),
            by_name(groups),
            by_name(cells),
        );
        let keys: Vec<Key> = self.objects.keys().cloned().collect();
        // Which object each Orca ignitor was registered from: only that object is retired.
        // Asked only when an Orca ignitor is spent: not every status round.
        let orca_ignitors = keys.iter().any(|k| {
            KINDS[k.0].kind == "Ignitor"
                && KINDS[k.0].group == baton_schemas::crd::ORCA_GROUP
                && ignitors.get(&k.2).is_some_and(|i| i["spent"] == true)
        });
        let sources: BTreeMap<Registered, ClusterSource> = match orca_ignitors {
            true => match self.ask(|reply| Command::Sources { reply }).await {
                Some(sources) => sources.into_iter().collect(),
                None => return false,
            },
            false => BTreeMap::new(),
        };
        for key in keys {
            // A workflow's failed nodes, told with its status.
            let mut failed = Vec::new();
            let status = match KINDS[key.0].kind {
                "ApplicationGroup" => groups.get(&key.2).map(|g| {
                    // A spec applied since clears a refusal's message.
                    let mut status = status_fields(g, GROUP_STATUS_FIELDS);
                    status["message"] = Value::Null;
                    status
                }),
                "Task" => tasks
                    .get(&key.2)
                    .map(|t| status_fields(t, TASK_STATUS_FIELDS)),
                "Ignitor" => ignitors.get(&key.2).map(|i| {
                    let mut status = status_fields(i, IGNITOR_STATUS_FIELDS);
                    status["message"] = i["error"].clone();
                    status
                }),
                "Cell" => cells
                    .get(&key.2)
                    .map(|c| status_fields(c, CELL_STATUS_FIELDS)),
                "AnalysisTemplate" => Some(json!({"message": null})),
                _ => match self.objects[&key].run.clone() {
                    Some(_) if self.objects[&key].written.as_ref().is_some_and(run_ended) => None,
                    Some(run) => {
                        let Some(found) = self.ask(|reply| Command::Status { run, reply }).await
                        else {
                            return false;
                        };
                        found.map(|s| {
                            let first = s.nodes.iter().filter_map(|n| n.started_at.clone()).min();
                            let last = s.nodes.iter().filter_map(|n| n.finished_at.clone()).max();
                            let tracked = self.objects.get_mut(&key).expect("tracked");
                            failed = events::failed_nodes(&s, &mut tracked.reported);
                            if std::mem::take(&mut tracked.seen_before) {
                                failed.clear();
                            }
                            json!({
                                "run": s.run,
                                "state": s.state.as_str(),
                                "startedAt": first,
                                "finishedAt": if s.state.is_terminal() { last } else { None },
                                "failure": failure(&s),
                            })
                        })
                    }
                    None => None,
                },
            };
            if let Some(status) = status {
                self.write_with(&key, status, std::mem::take(&mut failed))
                    .await;
            }
            let kind = &KINDS[key.0];
            let registered_from_here = sources
                .get(&Registered::Ignitor(key.2.clone()))
                .is_some_and(|s| {
                    s.group == kind.group && s.kind == kind.kind && s.namespace == key.1
                });
            if kind.kind == "Ignitor"
                && kind.group == baton_schemas::crd::ORCA_GROUP
                && registered_from_here
                && ignitors.get(&key.2).is_some_and(|i| i["spent"] == true)
            {
                self.retire_ignitor(&key).await;
            }
            // A deleted group is let go once its delete ended and its status says so, with
            // every release uninstalled or a person's word to let it go anyway: one whose
            // uninstall failed stays, its status saying how to let it go.
            //
            // `Deleted` may be the planner's state in memory only: a delete run ends with
            // bus events, which the planner checkpoints every 100 ms. Letting the object go
            // before that checkpoint is safe: a planner that crashes now applies the same
            // events again from the streams and comes to the same `Deleted` state, and the
            // releases are uninstalled already; the finalizer holds nothing a replay could
            // undo or that the planner would need the object for.
            let tracked = &self.objects[&key];
            let released = groups.get(&key.2).is_some_and(|g| g["released"] == true);
            if tracked.deletion == Deletion::Uninstalling
                && released
                && tracked
                    .written
                    .as_ref()
                    .is_some_and(|s| s["phase"] == "Deleted")
            {
                self.release_group(&key).await;
            }
        }
        true
    }

    /// Deletes an Orca one-shot ignitor whose chain started, as Orca did: applying the same
    /// document again creates it anew, and it fires again. Only the object this process saw
    /// is deleted (its uid), not one applied again since; a failure is tried next round.
    async fn retire_ignitor(&mut self, key: &Key) {
        let Some(uid) = self.objects[key]
            .reference
            .as_ref()
            .and_then(|r| r.uid.clone())
        else {
            return;
        };
        let api = api(&self.client, &KINDS[key.0], Some(&key.1));
        let params = kube::api::DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&key.2, &params).await {
            Ok(_) => {
                info!(namespace = %key.1, name = %key.2, "Orca one-shot ignitor fired; deleted, as Orca did")
            }
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => {
                warn!(namespace = %key.1, name = %key.2, error = %e, "fired ignitor not deleted; trying again")
            }
        }
    }

    /// Writes `status` with its kstatus conditions where it changed, and publishes the events
    /// the change makes.
    pub(super) async fn write(&mut self, key: &Key, status: Value) {
        self.write_with(key, status, Vec::new()).await;
    }

    /// [`Sync::write`], with `told` published too.
    async fn write_with(&mut self, key: &Key, status: Value, mut told: Vec<events::Note>) {
        let kind = KINDS[key.0].kind;
        let tracked = &self.objects[key];
        let before = tracked.written.clone();
        // A status written in parts (the run a generation started) keeps the rest.
        let whole = merged(before.clone(), &status);
        let now = Timestamp::now().to_string();
        let whole =
            kstatus::with_conditions(kind, whole, tracked.generation, before.as_ref(), &now);
        // Events of a change are told once it is written: a write that fails is tried again
        // next round, and its events with it, not twice.
        if before.as_ref() != Some(&whole) {
            let notes = events::notes(kind, before.as_ref(), &whole);
            if self.patch_status(key, whole).await {
                told.extend(notes);
            }
        }
        self.publish(key, told).await;
    }

    /// Publishes `notes` about `key`; one that fails is logged, not tried again.
    pub(super) async fn publish(&self, key: &Key, notes: Vec<events::Note>) {
        let Some(reference) = self.objects.get(key).and_then(|t| t.reference.clone()) else {
            return;
        };
        for n in notes {
            let event = KubeEvent {
                type_: if n.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: n.reason.to_owned(),
                note: Some(n.message),
                action: n.action.to_owned(),
                secondary: None,
            };
            if let Err(e) = self.recorder.publish(&event, &reference).await {
                warn!(kind = KINDS[key.0].kind, name = %key.2, reason = n.reason, error = %e, "event not published");
            }
        }
    }

    /// Merges `status` into the object's status subresource; a failure is logged and the
    /// write is tried again on the next round.
    pub(super) async fn patch_status(&mut self, key: &Key, status: Value) -> bool {
        let (index, namespace, name) = key;
        let api: Api<DynamicObject> = if KINDS[*index].namespaced() {
            Api::namespaced_with(
                self.client.clone(),
                namespace,
                &api_resource(&KINDS[*index]),
            )
        } else {
            Api::all_with(self.client.clone(), &api_resource(&KINDS[*index]))
        };
        let patch = Patch::Merge(json!({"status": status}));
        match api
            .patch_status(name, &PatchParams::default(), &patch)
            .await
        {
            Ok(_) => {
                // A merge patch: what it did not name stays as written before.
                if let Some(tracked) = self.objects.get_mut(key) {
                    tracked.written = Some(merged(tracked.written.take(), &status));
                }
                true
            }
            Err(e) => {
                warn!(kind = KINDS[*index].kind, %namespace, %name, error = %e, "status not written; trying again");
                false
            }
        }
    }
}

/// `part` merged into `whole` field by field, as a merge patch of the status does.
fn merged(whole: Option<Value>, part: &Value) -> Value {
    let mut whole = whole.unwrap_or_else(|| json!({}));
    if let (Value::Object(whole), Value::Object(part)) = (&mut whole, part) {
        for (field, value) in part {
            whole.insert(field.clone(), value.clone());
        }
    }
    whole
}

/// What a failed run's status says went wrong: the first failed node and the last line of
/// its error, or the run's own error.
fn failure(run: &baton_schemas::status::RunStatus) -> Option<String> {
    if run.state != baton_schemas::status::State::Failed {
        return None;
    }
    let node = run
        .nodes
        .iter()
        .find(|n| n.state == baton_schemas::status::State::Failed);
    match node {
        Some(n) => {
            let error = n.error.as_deref().unwrap_or_default();
            let last = error
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or_default();
            Some(format!("node {}: {last}", n.name))
        }
        None => run.error.clone(),
    }
}

/// Returns whether a workflow status written earlier shows its run ended.
fn run_ended(status: &Value) -> bool {
    matches!(
        status["state"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}
