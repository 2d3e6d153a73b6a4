//! The planner's window on a Kubernetes cluster: it watches `Workflow`, `Task`, `Ignitor`,
//! `Cell` and `AnalysisTemplate` objects (Baton's `baton.dev` group, Orca's `sirocco.cloud`
//! and okra's `okra.mumo.co`), registers what they say with the planner loop, and writes what
//! the planner knows back into their `status`. This is what makes `kubectl apply -f` work like
//! `baton apply -f`.
//!
//! - An object is applied when it is first seen and whenever its `metadata.generation` changes;
//!   status writes, which do not change the generation, are not read back as new documents.
//! - A `Workflow` object starts one run per generation. The run id is derived from the
//!   object's uid and generation, so a restarted planner that lists the object again starts
//!   nothing new; `status.observedGeneration` and `status.run` name that run.
//! - A `Task` without `spec.namespace` runs its pods in the object's namespace.
//! - A deleted object is forgotten: a task is started by nothing, an ignitor fires no more,
//!   a workflow starts no run; runs already going on finish. The planner's store remembers
//!   which documents came from which object ([`ClusterSource`]), so objects deleted while no
//!   planner watched are forgotten at each kind's first listing after a start (in the watched
//!   namespace); later listings (a watch made anew) compare with what this process saw.
//!   Application groups are left out of that first sweep: their finalizer holds a deleted
//!   group until the planner uninstalls it, so one missing was let go by hand, and its
//!   releases are not uninstalled for it.
//! - An invalid object is refused with the same field-path message `baton validate` prints,
//!   in `status.message`; nothing of it is registered.
//! - An `ApplicationGroup` (cluster-scoped, Baton's or Orkestra's) is applied once per
//!   generation and gets the finalizer [`GROUP_FINALIZER`]. Deleting it runs the group's delete
//!   (every release uninstalled in reverse order); the finalizer is removed when that ends
//!   with every release uninstalled. One whose uninstall failed is held, `status.leftInstalled`
//!   naming what is left and its `Ready` message how to go on: `baton delete group NAME` runs
//!   the delete again; `--force`, or the annotation [`FORCE_DELETE_ANNOTATION`] `"true"`, lets
//!   it go leaving them installed. Its status carries
//!   Orkestra's conditions and per-application status, written where they changed.
//!
//! - Every kind's status carries kstatus conditions (`Ready`, `Reconciling`, `Stalled`) and
//!   `observedGeneration` (`kstatus.rs`), and objects get Kubernetes Events as their runs,
//!   releases and rollouts move (`events.rs`).
//!
//! Names are the planner's keys: a task or ignitor of one name in two watched namespaces is
//! one task, the last applied. Watch one namespace (`--watch-namespace`) to keep them apart.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use baton_schemas::crd::{KINDS, Kind};
use baton_schemas::group::FORCE_DELETE_ANNOTATION;
use baton_schemas::views::{
    CELL_STATUS_FIELDS, GROUP_STATUS_FIELDS, IGNITOR_STATUS_FIELDS, TASK_STATUS_FIELDS,
    status_fields,
};
use baton_schemas::wire::Timestamp;
use baton_schemas::{Document, RunId, WorkflowName, document::parse_object_within};
use futures::{StreamExt, stream::select_all};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::service::Command;
use baton_core::{ClusterSource, Registered};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};

mod events;
mod kstatus;
mod status;

/// The finalizer that holds a deleted `ApplicationGroup` until its releases are uninstalled.
pub const GROUP_FINALIZER: &str = "baton.dev/uninstall";

/// What the planner watches in a cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// What one object may hold.
    pub limits: baton_schemas::Limits,
    /// The namespace watched; `None` watches every namespace.
    pub namespace: Option<String>,
    /// How often what the planner knows is written back into the objects' status.
    pub status_period: Duration,
}

/// One watched object: where it lives and what was last done with it.
#[derive(Debug, Default)]
struct Tracked {
    /// The generation last applied.
    generation: Option<i64>,
    /// For a workflow, the run its generation started.
    run: Option<RunId>,
    /// The status last written, so unchanged status is not written again.
    written: Option<Value>,
    /// For a group: where it is in its deletion.
    deletion: Deletion,
    /// For a deleted group: its force-delete annotation was handed to the planner.
    forced: bool,
    /// The object, for the events about it.
    reference: Option<ObjectReference>,
    /// For a workflow: the failed nodes an event was published for, by name and attempts.
    reported: BTreeSet<(String, u32)>,
    /// Its status was written before this process saw it (a restart): the nodes failed by
    /// then were told of already.
    seen_before: bool,
}

/// Where a watched `ApplicationGroup` object is in its deletion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Deletion {
    /// Not deleted (or not a group).
    #[default]
    None,
    /// Deleted in the cluster and handed to the planner, once: its delete run uninstalls the
    /// group's releases, and Baton's finalizer holds the object until the status written
    /// says `Deleted`.
    Uninstalling,
}

/// An object's identity: the index of its kind in [`KINDS`], its namespace and its name.
type Key = (usize, String, String);

/// How long ignitors wait, at most, for every Task kind's first listing (see
/// [`Sync::on_event_in_order`]): a Task CRD that is not installed must not hold them forever.
const IGNITOR_HOLD: Duration = Duration::from_secs(10);

/// Watches the cluster until `shutdown` fires or the planner loop goes away.
pub async fn run(
    client: kube::Client,
    config: ClusterConfig,
    commands: mpsc::Sender<Command>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut events = select_all(KINDS.iter().enumerate().map(|(index, kind)| {
        let api = api(&client, kind, config.namespace.as_deref());
        watcher(api, watcher::Config::default())
            .default_backoff()
            .map(move |event| (index, event))
            .boxed()
    }));
    let reporter = Reporter {
        controller: "baton-planner".to_owned(),
        // The pod's name where the install manifests give it; the host's otherwise.
        instance: std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .ok(),
    };
    let mut sync = Sync {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        commands,
        namespace: config.namespace.clone(),
        limits: config.limits,
        objects: BTreeMap::new(),
        listing: Default::default(),
        listed: Default::default(),
        swept: Default::default(),
        held: Vec::new(),
    };
    let release = tokio::time::Instant::now() + IGNITOR_HOLD;
    let mut status = tokio::time::interval(config.status_period);
    status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!(
        namespace = config.namespace.as_deref().unwrap_or("*"),
        "watching the cluster for workflows, tasks and ignitors"
    );
    loop {
        let alive = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            Some((index, event)) = events.next() => match event {
                Ok(event) => sync.on_event_in_order(index, event).await,
                Err(e) => {
                    let kind = &KINDS[index];
                    warn!(kind = kind.kind, group = kind.group, error = %e, "watch failed; retrying (is the CRD installed? see deploy/crds)");
                    true
                }
            },
            _ = status.tick() => sync.write_status().await,
            _ = tokio::time::sleep_until(release), if !sync.held.is_empty() => {
                warn!("not every Task kind listed in time; applying the ignitors held back");
                sync.release_ignitors().await
            }
        };
        if !alive {
            return Ok(());
        }
    }
}

fn api(client: &kube::Client, kind: &Kind, namespace: Option<&str>) -> Api<DynamicObject> {
    let resource = api_resource(kind);
    match namespace {
        Some(ns) if kind.namespaced() => Api::namespaced_with(client.clone(), ns, &resource),
        _ => Api::all_with(client.clone(), &resource),
    }
}

/// The API resource of one of Baton's kinds (any of [`baton_schemas::crd::crd_kinds`]).
pub(crate) fn api_resource(kind: &Kind) -> ApiResource {
    ApiResource {
        group: kind.group.to_owned(),
        version: baton_schemas::crd::VERSION.to_owned(),
        api_version: kind.api_version(),
        kind: kind.kind.to_owned(),
        plural: kind.plural.to_owned(),
    }
}

/// Returns the run id of one generation of a workflow object: its name (cut), the start of
/// its uid and the generation, at most 40 characters.
fn workflow_run_id(name: &str, uid: &str, generation: i64) -> RunId {
    let name: String = name.chars().take(20).collect();
    let uid: String = uid
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase();
    RunId::new(format!("{}-{uid}-{generation}", name.trim_end_matches('-')))
}

struct Sync {
    client: kube::Client,
    /// Publishes the objects' events (`events.rs`).
    recorder: Recorder,
    commands: mpsc::Sender<Command>,
    /// The namespace watched; `None` for every namespace.
    namespace: Option<String>,
    /// What one object may hold.
    limits: baton_schemas::Limits,
    objects: BTreeMap<Key, Tracked>,
    /// Per kind, the objects seen in the listing under way (between `Init` and `InitDone`).
    listing: [Option<BTreeSet<Key>>; KINDS.len()],
    /// Per kind, whether its first listing is done.
    listed: [bool; KINDS.len()],
    /// Per kind, whether the documents the store says came from its objects were compared
    /// with a complete listing (once per start).
    swept: [bool; KINDS.len()],
    /// Ignitor events held back until every Task kind has listed once.
    held: Vec<(usize, watcher::Event<DynamicObject>)>,
}

impl Sync {
    /// Handles one watch event, holding ignitors back until every Task kind has listed once.
    /// Each kind has its own watch, so their first listings arrive in any order; an ignitor
    /// that fires `NOW` fires as it is registered, and the tasks it starts must be known by
    /// then, or its one fire starts nothing. Returns false when the planner loop is gone.
    async fn on_event_in_order(
        &mut self,
        index: usize,
        event: watcher::Event<DynamicObject>,
    ) -> bool {
        if KINDS[index].kind == "Ignitor" && !self.tasks_listed() {
            self.held.push((index, event));
            return true;
        }
        let done = matches!(event, watcher::Event::InitDone);
        if !self.on_event(index, event).await {
            return false;
        }
        if done {
            self.listed[index] = true;
            if self.tasks_listed() {
                return self.release_ignitors().await;
            }
        }
        true
    }

    fn tasks_listed(&self) -> bool {
        KINDS
            .iter()
            .enumerate()
            .filter(|(_, k)| k.kind == "Task")
            .all(|(i, _)| self.listed[i])
    }

    /// Applies the ignitor events held back, in the order they came.
    async fn release_ignitors(&mut self) -> bool {
        for (index, event) in std::mem::take(&mut self.held) {
            if !self.on_event(index, event).await {
                return false;
            }
        }
        true
    }

    /// Handles one watch event. Returns false when the planner loop is gone.
    async fn on_event(&mut self, index: usize, event: watcher::Event<DynamicObject>) -> bool {
        match event {
            watcher::Event::Init => {
                self.listing[index] = Some(BTreeSet::new());
                true
            }
            watcher::Event::InitApply(object) => {
                if let Some(listing) = &mut self.listing[index] {
                    listing.insert(key(index, &object));
                }
                self.apply(index, object).await
            }
            watcher::Event::Apply(object) => self.apply(index, object).await,
            watcher::Event::InitDone => {
                let listed = self.listing[index].take().unwrap_or_default();
                let gone: Vec<Key> = self
                    .objects
                    .keys()
                    .filter(|k| k.0 == index && !listed.contains(*k))
                    .cloned()
                    .collect();
                for key in gone {
                    if !self.remove(key).await {
                        return false;
                    }
                }
                if !self.swept[index] {
                    self.swept[index] = true;
                    return self.sweep(index, &listed).await;
                }
                true
            }
            watcher::Event::Delete(object) => self.remove(key(index, &object)).await,
        }
    }

    /// Forgets the documents the store says came from objects of kind `index` (in the
    /// watched namespace) that its first complete listing after a start does not hold:
    /// objects deleted while no planner watched. Returns false when the planner loop is gone.
    async fn sweep(&mut self, index: usize, listed: &BTreeSet<Key>) -> bool {
        let kind = &KINDS[index];
        if kind.kind == "ApplicationGroup" {
            return true;
        }
        let Some(sources) = self.ask(|reply| Command::Sources { reply }).await else {
            return false;
        };
        for (document, source) in sources {
            let watched = match &self.namespace {
                Some(ns) if kind.namespaced() => &source.namespace == ns,
                _ => true,
            };
            let key = (index, source.namespace.clone(), document.name().to_owned());
            if source.group != kind.group
                || source.kind != kind.kind
                || !watched
                || listed.contains(&key)
            {
                continue;
            }
            info!(kind = kind.kind, group = kind.group, namespace = %source.namespace, name = %document.name(), "object deleted while no planner watched; forgetting it");
            let answer = self
                .ask(|reply| Command::Remove {
                    document: document.clone(),
                    reply,
                })
                .await;
            match answer {
                None => return false,
                Some(Ok(())) => {}
                Some(Err(refusal)) => debug!(%refusal, "already forgotten"),
            }
        }
        true
    }

    async fn apply(&mut self, index: usize, object: DynamicObject) -> bool {
        let kind = &KINDS[index];
        let key = key(index, &object);
        let generation = object.metadata.generation;
        let group = kind.kind == "ApplicationGroup";
        if group && object.metadata.deletion_timestamp.is_some() {
            return self.delete_group(key, &object).await;
        }
        if group && !has_finalizer(&object) {
            self.set_finalizer(&key, &object, true).await;
        }
        // An ignitor deleted and created again while the watch was away (a re-list after a
        // lost connection shows only the new one) is forgotten and applied anew, as its delete
        // would have made it: a fired `NOW` one fires again.
        let replaced = self.objects.get(&key).is_some_and(|t| {
            t.reference.as_ref().and_then(|r| r.uid.as_ref()) != object.metadata.uid.as_ref()
                && t.reference.as_ref().is_some_and(|r| r.uid.is_some())
        });
        if replaced && kind.kind == "Ignitor" && !self.remove(key.clone()).await {
            return false;
        }
        let tracked = self.objects.entry(key.clone()).or_default();
        tracked.reference = Some(ObjectReference {
            api_version: Some(kind.api_version()),
            kind: Some(kind.kind.to_owned()),
            name: object.metadata.name.clone(),
            namespace: object.metadata.namespace.clone(),
            uid: object.metadata.uid.clone(),
            ..Default::default()
        });
        if generation.is_some() && tracked.generation == generation {
            return true;
        }
        let created = object
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| Timestamp(t.0.as_millisecond().max(0) as u64))
            .unwrap_or_else(Timestamp::now);
        let value = match serde_json::to_value(&object) {
            Ok(value) => value,
            Err(e) => {
                warn!(error = %e, "unreadable object");
                return true;
            }
        };
        // First seen by this process: what its status says is what was written, so that a
        // restarted planner neither writes it again nor repeats its events.
        let tracked = self.objects.entry(key.clone()).or_default();
        if tracked.written.is_none() && value["status"].is_object() {
            tracked.written = Some(value["status"].clone());
            tracked.seen_before = true;
        }
        let source = format!("{}.{}/{}/{}", kind.plural, kind.group, key.1, key.2);
        let document = match parse_object_within(&source, &value, created, self.limits) {
            Ok(document) => document,
            Err(errors) => {
                warn!(object = %source, errors = %errors, "object refused");
                tracked.generation = generation;
                self.write(&key, json!({"message": errors.to_string()}))
                    .await;
                return true;
            }
        };
        // What Baton leaves out of a valid object (an Orca plugin name), told once per
        // generation as `baton apply` prints it; not again by a restarted planner.
        let dropped = baton_schemas::validate::warnings(&document);
        if !dropped.is_empty() && !tracked.seen_before {
            let notes = dropped
                .iter()
                .map(|w| events::Note {
                    warning: true,
                    reason: "Ignored",
                    action: "Apply",
                    message: w.to_string(),
                })
                .collect();
            self.publish(&key, notes).await;
        }
        // A workflow object runs once per generation.
        let observed = value["status"]["observedGeneration"].as_i64();
        let run = match (&document, generation) {
            (Document::Workflow(_), Some(generation)) if observed != Some(generation) => {
                let uid = object.metadata.uid.as_deref().unwrap_or_default();
                Some(workflow_run_id(&key.2, uid, generation))
            }
            _ => None,
        };
        let (reply, answer) = oneshot::channel();
        let command = Command::Apply {
            document: Box::new(document),
            start: run.as_ref().map(|_| String::new()),
            run: run.clone(),
            source: Some(ClusterSource {
                group: kind.group.to_owned(),
                kind: kind.kind.to_owned(),
                namespace: key.1.clone(),
            }),
            reply,
        };
        if self.commands.send(command).await.is_err() {
            return false;
        }
        let Ok(answer) = answer.await else {
            return false;
        };
        let tracked = self.objects.entry(key.clone()).or_default();
        tracked.generation = generation;
        if let Some(known) = value["status"]["run"]
            .as_str()
            .filter(|r| RunId::is_valid(r))
        {
            tracked.run = Some(RunId::new(known));
        }
        match answer {
            Ok(started) => {
                debug!(object = %source, run = ?started, "object applied");
                if let (Some(run), Some(generation)) = (started, generation) {
                    tracked.run = Some(run.clone());
                    tracked.reported.clear();
                    self.write(
                        &key,
                        json!({"observedGeneration": generation, "run": run.as_str(), "state": "pending", "message": null}),
                    )
                    .await;
                } else if value["status"]["message"].is_string() {
                    self.patch_status(&key, json!({"message": null})).await;
                }
            }
            Err(refusal) => {
                warn!(object = %source, %refusal, "object refused by the planner");
                self.write(&key, json!({"message": refusal.to_string()}))
                    .await;
            }
        }
        true
    }

    async fn remove(&mut self, key: Key) -> bool {
        if self.objects.remove(&key).is_none() {
            return true;
        }
        let name = key.2.clone();
        let document = match KINDS[key.0].kind {
            "Workflow" => Registered::Workflow(WorkflowName::new(name)),
            "Task" => Registered::Task(name),
            "ApplicationGroup" => Registered::Group(name),
            "Cell" => Registered::Cell(name),
            "AnalysisTemplate" => Registered::AnalysisTemplate(name),
            _ => Registered::Ignitor(name),
        };
        info!(kind = KINDS[key.0].kind, namespace = %key.1, name = %key.2, "object deleted; forgetting it");
        let (reply, answer) = oneshot::channel();
        if self
            .commands
            .send(Command::Remove { document, reply })
            .await
            .is_err()
        {
            return false;
        }
        // A refusal says it was forgotten already.
        answer.await.is_ok()
    }

    /// Hands a deleted group to the planner, once: its delete run uninstalls every release.
    /// With the force-delete annotation (then or later), the group is let go whatever its
    /// delete leaves installed.
    async fn delete_group(&mut self, key: Key, object: &DynamicObject) -> bool {
        let force = object
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(FORCE_DELETE_ANNOTATION))
            .is_some_and(|v| v == "true");
        let tracked = self.objects.entry(key.clone()).or_default();
        let told = tracked.deletion == Deletion::Uninstalling;
        if !has_finalizer(object) || (told && (tracked.forced || !force)) {
            // Not held by Baton (nothing to wait for), or handed over already.
            return true;
        }
        tracked.deletion = Deletion::Uninstalling;
        tracked.forced = force;
        // Seen again by a restarted planner after its delete ended: asked again, a delete
        // that left releases would run again; that is for a person to ask (`baton delete
        // group`), not for a restart.
        if !force && object.data["status"]["phase"] == "Deleted" {
            return true;
        }
        let name = key.2.clone();
        let answer = if force {
            info!(name = %key.2, "application group deleted with {FORCE_DELETE_ANNOTATION}; letting it go whatever its delete leaves");
            self.ask(|reply| Command::ForceDelete { group: name, reply })
                .await
        } else {
            info!(kind = KINDS[key.0].kind, name = %key.2, "application group deleted; uninstalling its releases");
            let document = Registered::Group(name);
            self.ask(|reply| Command::Remove { document, reply }).await
        };
        match answer {
            None => false,
            Some(Ok(())) => true,
            Some(Err(refusal)) => {
                // The planner never registered it (it was refused): nothing is installed.
                debug!(name = %key.2, %refusal, "deleted group unknown to the planner; letting it go");
                self.release_group(&key).await;
                true
            }
        }
    }

    /// Removes Baton's finalizer from a deleted group.
    async fn release_group(&mut self, key: &Key) {
        let api = api(&self.client, &KINDS[key.0], None);
        match api.get_opt(&key.2).await {
            Ok(Some(object)) => self.set_finalizer(key, &object, false).await,
            Ok(None) => {}
            Err(e) => {
                warn!(name = %key.2, error = %e, "reading a deleted group failed; trying again")
            }
        }
    }

    /// Adds (`on`) or removes Baton's finalizer.
    async fn set_finalizer(&mut self, key: &Key, object: &DynamicObject, on: bool) {
        let mut finalizers: Vec<String> = object
            .metadata
            .finalizers
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f != GROUP_FINALIZER)
            .collect();
        if on {
            finalizers.push(GROUP_FINALIZER.to_owned());
        }
        let api = api(&self.client, &KINDS[key.0], None);
        let patch = Patch::Merge(
            json!({"metadata": {"finalizers": finalizers, "resourceVersion": object.metadata.resource_version}}),
        );
        match api.patch(&key.2, &PatchParams::default(), &patch).await {
            Ok(_) => {
                debug!(name = %key.2, on, "group finalizer written");
                if !on {
                    info!(name = %key.2, "application group released");
                }
            }
            Err(e) => warn!(name = %key.2, error = %e, "group finalizer not written; trying again"),
        }
    }

    async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(command(reply)).await.ok()?;
        answer.await.ok()
    }
}

/// Returns whether a group holds Baton's finalizer.
fn has_finalizer(object: &DynamicObject) -> bool {
    object
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == GROUP_FINALIZER))
}

fn key(index: usize, object: &DynamicObject) -> Key {
    (
        index,
        object.metadata.namespace.clone().unwrap_or_default(),
        object.metadata.name.clone().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_run_ids_are_labels_of_at_most_forty_characters() {
        let id = workflow_run_id(
            "a-very-long-workflow-name-indeed",
            "0F3A9C2E-1111-2222-3333-444455556666",
            12345,
        );
        assert_eq!(id.as_str(), "a-very-long-workflow-0f3a9c2e-12345");
        assert!(RunId::is_valid(id.as_str()));
        let id = workflow_run_id("release-", "abc", 1);
        assert_eq!(id.as_str(), "release-abc-1");
    }
}
