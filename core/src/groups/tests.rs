//! Unit tests of the application group lifecycle in the decision core: inputs in, actions out.

use super::*;
use crate::tests::kit;
use crate::{Action, Core, Refusal, Run};
use crate::{CoreConfig, Input, Registered};
use baton_schemas::group::ApplicationGroup;
use baton_schemas::helm::HelmAction;
use baton_schemas::status::State;
use baton_schemas::wire::{Job, Outcome};
use baton_schemas::{Document, parse_documents};
use baton_schemas::{NodeKind, RunId, WorkflowName};
use serde_json::{Value, json};

const NOW: Timestamp = Timestamp(1_800_000_000_000);

/// A group `g` of applications `(name, dependencies, chart version)` in namespace `ns`.
fn group(apps: &[(&str, &str, &str)]) -> ApplicationGroup {
    let mut text = String::from(
        "apiVersion: orkestra.azure.microsoft.com/v1alpha1\nkind: ApplicationGroup\nmetadata: {name: g}\nspec:\n  applications:\n",
    );
    for (name, deps, version) in apps {
        text.push_str(&format!(
            "  - name: {name}\n    dependencies: [{deps}]\n    spec: {{chart: {{url: 'https://c.example.com', name: {name}, version: '{version}'}}, release: {{targetNamespace: ns}}}}\n"
        ));
    }
    match parse_documents("g.yaml", &text, NOW).unwrap().remove(0) {
        Document::Group(g) => *g,
        _ => unreachable!(),
    }
}

/// Returns the jobs dispatched, owned: a group's tests keep them across inputs.
fn jobs(actions: &[Action]) -> Vec<Job> {
    kit::jobs(actions).into_iter().cloned().collect()
}

fn names(jobs: &[Job]) -> Vec<String> {
    let mut names: Vec<String> = jobs.iter().map(|j| j.node.to_string()).collect();
    names.sort();
    names
}

fn finish(core: &mut Core, job: &Job, ok: bool) -> Vec<Action> {
    let outcome = if ok {
        Outcome::Succeeded {
            output: String::new(),
        }
    } else {
        Outcome::failed(format!("helm said no to {}", job.node))
    };
    core.apply(kit::finished_job(job, outcome, NOW), NOW)
}

/// Finishes every job of `first` and of what follows, failing the nodes named in `fail`;
/// returns the jobs in the order they were dispatched, in waves.
fn drive(core: &mut Core, first: Vec<Job>, fail: &[&str]) -> Vec<Vec<String>> {
    let mut waves = Vec::new();
    let mut wave = first;
    let mut rounds = 0;
    while !wave.is_empty() {
        rounds += 1;
        assert!(rounds < 50, "a graph that never ends");
        waves.push(names(&wave));
        let mut next = Vec::new();
        for job in &wave {
            let ok = !fail.contains(&job.node.as_str());
            next.extend(jobs(&finish(core, job, ok)));
        }
        wave = next;
    }
    waves
}

/// Returns a core that has installed `spec` (group `g`) to the end.
fn installed(spec: ApplicationGroup) -> Core {
    let mut core = Core::new(CoreConfig::default());
    let first = jobs(&core.apply(Input::RegisterGroup(Box::new(spec)), NOW));
    drive(&mut core, first, &[]);
    core
}

fn state(core: &Core) -> GroupState {
    core.group("g").unwrap().state.clone()
}

/// The group's view as the API serves it.
fn view(core: &Core) -> Value {
    serde_json::to_value(core.group_view(core.group("g").unwrap())).unwrap()
}

fn condition(view: &Value, kind: &str) -> (String, String) {
    let c = view["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} condition in {view:#}"));
    (
        c["status"].as_str().unwrap().to_owned(),
        c["reason"].as_str().unwrap().to_owned(),
    )
}

fn waves(list: &[&[&str]]) -> Vec<Vec<String>> {
    list.iter()
        .map(|w| w.iter().map(|s| s.to_string()).collect())
        .collect()
}

/// db; cache and api need db (and are independent of each other); web needs both.
fn diamond(web_version: &str) -> ApplicationGroup {
    group(&[
        ("db", "", "1.0.0"),
        ("cache", "db", "1.0.0"),
        ("api", "db", "1.0.0"),
        ("web", "cache, api", web_version),
    ])
}

#[test]
fn a_first_install_releases_in_dependency_order_and_independent_ones_together() {
    let mut core = Core::new(CoreConfig::default());
    let actions = core.apply(Input::RegisterGroup(Box::new(diamond("1.0.0"))), NOW);
    let first = jobs(&actions);
    assert!(first.iter().all(|j| j.kind() == NodeKind::Helm));
    assert_eq!(first[0].run.as_str(), "g-1f");
    assert!(matches!(state(&core), GroupState::Progressing { .. }));
    assert_eq!(
        condition(&view(&core), "Ready"),
        ("Unknown".into(), "Progressing".into())
    );
    let waves_seen = drive(&mut core, first, &[]);
    assert_eq!(waves_seen, waves(&[&["db"], &["api", "cache"], &["web"]]));
    assert_eq!(state(&core), GroupState::Succeeded);
    let entry = core.group("g").unwrap();
    assert_eq!(entry.last_successful.as_ref().unwrap().revision, 1);
    let v = view(&core);
    assert_eq!(condition(&v, "Ready"), ("True".into(), "Succeeded".into()));
    assert_eq!(
        condition(&v, "ForwardWorkflowSucceeded"),
        ("True".into(), "Succeeded".into())
    );
    assert_eq!(v["applications"][3]["conditions"][0]["reason"], "Succeeded");
    assert_eq!(v["applications"][3]["version"], "1.0.0");
    assert_eq!(v["settled"], true);

    // The same spec again changes nothing.
    let again = core.apply(Input::RegisterGroup(Box::new(diamond("1.0.0"))), NOW);
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn fail_fast_starts_nothing_after_a_failure_and_a_first_install_is_uninstalled_in_reverse() {
    let mut core = Core::new(CoreConfig::default());
    let first = jobs(&core.apply(Input::RegisterGroup(Box::new(diamond("1.0.0"))), NOW));
    let db = &first[0];
    let second = jobs(&finish(&mut core, db, true));
    assert_eq!(names(&second), ["api", "cache"]);
    let by_name = |n: &str| second.iter().find(|j| j.node.as_str() == n).unwrap();
    // api fails while cache still runs: nothing new starts, cache finishes.
    let after_fail = jobs(&finish(&mut core, by_name("api"), false));
    assert!(after_fail.is_empty(), "{after_fail:?}");
    // cache ends: the forward run is over (web skipped), and with no successful spec yet
    // every release it may have installed is uninstalled in reverse dependency order — not
    // web, which it never started (a release of that name may be someone else's).
    let removal = jobs(&finish(&mut core, by_name("cache"), true));
    let forward = core.run(&RunId::new("g-1f")).unwrap().status();
    assert_eq!(forward.nodes[3].state, State::Skipped);
    assert!(matches!(
        state(&core),
        GroupState::Remediating {
            remediation: Remediation::Uninstalled,
            ..
        }
    ));
    assert!(
        removal
            .iter()
            .all(|j| j.helm().unwrap().action == HelmAction::Uninstall)
    );
    assert_eq!(removal[0].run.as_str(), "g-2u");
    let v = view(&core);
    assert_eq!(v["phase"], "Uninstalling");
    assert_eq!(v["remediation"], "uninstalled");
    let waves_seen = drive(&mut core, removal, &[]);
    assert_eq!(waves_seen, waves(&[&["api", "cache"], &["db"]]));
    let GroupState::Failed {
        remediation,
        outcome,
        failure,
    } = state(&core)
    else {
        panic!("{:?}", state(&core))
    };
    assert_eq!(
        (remediation, outcome),
        (Remediation::Uninstalled, RemediationOutcome::Succeeded)
    );
    assert_eq!(failure, "api failed: helm said no to api");
    let v = view(&core);
    assert_eq!(
        condition(&v, "Ready"),
        ("False".into(), "WorkflowFailed".into())
    );
    assert_eq!(
        condition(&v, "ReverseWorkflowSucceeded"),
        ("True".into(), "Succeeded".into())
    );
    assert!(
        v["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["type"] != "RollbackWorkflowSucceeded")
    );
    assert_eq!(
        v["applications"][0]["conditions"][0]["reason"],
        "Uninstalled"
    );
}

#[test]
fn a_failed_upgrade_rolls_back_to_the_last_successful_spec() {
    let mut core = Core::new(CoreConfig::default());
    let first = jobs(&core.apply(
        Input::RegisterGroup(Box::new(group(&[
            ("db", "", "1.0.0"),
            ("api", "db", "1.0.0"),
        ]))),
        NOW,
    ));
    drive(&mut core, first, &[]);
    // Revision 2 upgrades api and adds cache (needs db) and web (needs api and cache); web
    // fails.
    let upgrade = group(&[
        ("db", "", "1.0.0"),
        ("api", "db", "2.0.0"),
        ("cache", "db", "1.0.0"),
        ("web", "api, cache", "1.0.0"),
    ]);
    let second = jobs(&core.apply(Input::RegisterGroup(Box::new(upgrade)), NOW));
    assert_eq!(second[0].run.as_str(), "g-2f");
    let db = jobs(&finish(&mut core, &second[0], true));
    assert_eq!(names(&db), ["api", "cache"]);
    let mut web = jobs(&finish(&mut core, &db[0], true));
    web.extend(jobs(&finish(&mut core, &db[1], true)));
    assert!(db.iter().any(|j| j.node.as_str() == "api"));
    assert_eq!(names(&web), ["web"]);
    // web fails: the rollback run starts at once, as one graph — the added releases
    // uninstalled in reverse dependency order, then the last successful spec applied again.
    let rollback = jobs(&finish(&mut core, &web[0], false));
    let GroupState::Remediating {
        run, remediation, ..
    } = state(&core)
    else {
        panic!("{:?}", state(&core))
    };
    assert_eq!(
        (run.as_str(), remediation),
        ("g-3r", Remediation::RolledBack)
    );
    assert_eq!(view(&core)["phase"], "RollingBack");
    assert_eq!(
        condition(&view(&core), "RollbackWorkflowSucceeded"),
        ("Unknown".into(), "Progressing".into())
    );
    let steps = drive(&mut core, rollback, &[]);
    assert_eq!(
        steps,
        waves(&[&["uninstall-web"], &["uninstall-cache"], &["db"], &["api"]])
    );
    assert!(matches!(
        state(&core),
        GroupState::Failed {
            outcome: RemediationOutcome::Succeeded,
            ..
        }
    ));
    let rollback = core.run(&RunId::new("g-3r")).unwrap();
    let api = rollback
        .spec
        .nodes
        .iter()
        .find(|n| n.name.as_str() == "api")
        .unwrap();
    assert_eq!(
        api.helm
            .as_ref()
            .unwrap()
            .chart
            .as_ref()
            .unwrap()
            .version
            .as_deref(),
        Some("1.0.0")
    );
    let v = view(&core);
    assert_eq!(v["remediation"], "rolledBack");
    assert_eq!(v["lastSucceededRevision"], 1);
    assert_eq!(
        condition(&v, "RollbackWorkflowSucceeded"),
        ("True".into(), "Succeeded".into())
    );
    assert_eq!(
        condition(&v, "ForwardWorkflowSucceeded"),
        ("False".into(), "Failed".into())
    );
    let ready = &v["conditions"][0];
    assert_eq!(ready["status"], "False");
    assert!(
        ready["message"].as_str().unwrap().contains(
            "web failed: helm said no to web; rolled back to the last successful spec (revision 1)"
        ),
        "{ready}"
    );
    let apps = v["applications"].as_array().unwrap();
    let reason = |i: usize| {
        apps[i]["conditions"][0]["reason"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        (reason(0), reason(1), reason(2), reason(3)),
        (
            "RolledBack".into(),
            "RolledBack".into(),
            "Uninstalled".into(),
            "Uninstalled".into()
        )
    );
    assert_eq!(apps[1]["version"], "1.0.0");
}

#[test]
fn a_new_spec_first_uninstalls_the_applications_it_dropped() {
    let mut core = installed(diamond("1.0.0"));
    // Revision 2 drops web and cache: they are uninstalled (web first), then db and api are
    // applied.
    let smaller = group(&[("db", "", "1.0.0"), ("api", "db", "1.1.0")]);
    let second = jobs(&core.apply(Input::RegisterGroup(Box::new(smaller)), NOW));
    assert!(
        second
            .iter()
            .all(|j| j.helm().unwrap().action == HelmAction::Uninstall)
    );
    let steps = drive(&mut core, second, &[]);
    assert_eq!(
        steps,
        waves(&[&["uninstall-web"], &["uninstall-cache"], &["db"], &["api"]])
    );
    assert_eq!(state(&core), GroupState::Succeeded);
    let v = view(&core);
    assert_eq!(v["applications"].as_array().unwrap().len(), 2);
    assert_eq!(v["applications"][1]["version"], "1.1.0");
}

#[test]
fn delete_runs_the_reverse_graph_and_names_what_a_failed_uninstall_left() {
    let mut core = installed(diamond("1.0.0"));
    let actions = core.apply(Input::Remove(Registered::Group("g".into())), NOW);
    let removal = jobs(&actions);
    assert_eq!(removal[0].run.as_str(), "g-2d");
    assert_eq!(view(&core)["phase"], "Deleting");
    assert_eq!(
        condition(&view(&core), "Ready"),
        ("False".into(), "Terminating".into())
    );
    // api's uninstall fails: db, which it needs, is left too (fail-fast).
    let steps = drive(&mut core, removal, &["api"]);
    assert_eq!(steps, waves(&[&["web"], &["api", "cache"]]));
    assert_eq!(
        state(&core),
        GroupState::Deleted {
            left_installed: vec!["ns/api".into(), "ns/db".into()]
        }
    );
    let v = view(&core);
    assert_eq!(v["leftInstalled"], json!(["ns/api", "ns/db"]));
    assert_eq!(
        condition(&v, "Ready"),
        ("False".into(), "DeleteFailed".into())
    );
    assert_eq!(
        condition(&v, "ReverseWorkflowSucceeded"),
        ("False".into(), "Failed".into())
    );
    // Held, saying how to go on.
    assert_eq!(v["released"], false);
    let ready = v["conditions"][0]["message"].as_str().unwrap().to_owned();
    assert!(
        ready.contains("baton delete group g --force, or the annotation baton.dev/force-delete"),
        "{ready}"
    );
    // A second delete runs the delete again (its cause fixed, say); api fails again.
    let retry = jobs(&core.apply(Input::Remove(Registered::Group("g".into())), NOW));
    assert_eq!(retry[0].run.as_str(), "g-3d");
    drive(&mut core, retry, &["api"]);
    assert_eq!(view(&core)["leftInstalled"], json!(["ns/api", "ns/db"]));
    assert_eq!(view(&core)["released"], false);
    // Forced, it is let go at once, nothing run again; a delete of an unknown group is
    // refused.
    assert!(core.apply(Input::ForceDelete("g".into()), NOW).is_empty());
    let v = view(&core);
    assert_eq!(
        (&v["released"], &v["phase"]),
        (&json!(true), &json!("Deleted"))
    );
    assert!(
        v["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("let go as asked (--force), leaving installed: ns/api, ns/db")
    );
    assert!(
        core.apply(Input::Remove(Registered::Group("g".into())), NOW)
            .is_empty()
    );
    assert_eq!(
        core.apply(Input::Remove(Registered::Group("nope".into())), NOW),
        [Action::Refused(Refusal::UnknownGroup("nope".into()))]
    );
    assert_eq!(
        core.apply(Input::ForceDelete("nope".into()), NOW),
        [Action::Refused(Refusal::UnknownGroup("nope".into()))]
    );
    // Applying it again installs it afresh, and holds it again after a failed delete.
    let again = jobs(&core.apply(Input::RegisterGroup(Box::new(diamond("1.0.0"))), NOW));
    assert_eq!(again[0].run.as_str(), "g-4f");
    assert_eq!(core.group("g").unwrap().revision, 2);
    assert!(!core.group("g").unwrap().force_delete);
}

#[test]
fn a_forced_delete_of_an_installed_group_lets_it_go_whatever_it_leaves() {
    let mut core = installed(diamond("1.0.0"));
    let removal = jobs(&core.apply(Input::ForceDelete("g".into()), NOW));
    assert_eq!(removal[0].run.as_str(), "g-2d");
    assert_eq!(view(&core)["released"], false, "not while it runs");
    drive(&mut core, removal, &["api"]);
    let v = view(&core);
    assert_eq!(v["leftInstalled"], json!(["ns/api", "ns/db"]));
    assert_eq!(v["released"], true);
}

#[test]
fn a_spec_applied_during_a_run_waits_for_it_and_its_remediation() {
    let mut core = Core::new(CoreConfig::default());
    let first = jobs(&core.apply(Input::RegisterGroup(Box::new(diamond("1.0.0"))), NOW));
    // While the first install runs, revision 2 arrives: nothing new is dispatched for it.
    let queued = core.apply(Input::RegisterGroup(Box::new(diamond("2.0.0"))), NOW);
    assert!(queued.is_empty(), "{queued:?}");
    assert_eq!(view(&core)["pending"], "apply");
    // The first install fails at db: it is uninstalled (nothing else started); then
    // revision 2 starts.
    let removal = jobs(&finish(&mut core, &first[0], false));
    assert_eq!(removal[0].run.as_str(), "g-2u");
    let steps = drive(&mut core, removal, &[]);
    assert_eq!(
        steps,
        waves(&[&["db"], &["db"], &["api", "cache"], &["web"]])
    );
    let entry = core.group("g").unwrap();
    assert_eq!(entry.state, GroupState::Succeeded);
    assert_eq!(entry.forward_run.as_ref().unwrap().as_str(), "g-3f");
    assert_eq!(entry.revision, 2);
}

#[test]
fn a_delete_during_a_failing_install_replaces_its_remediation() {
    let mut core = Core::new(CoreConfig::default());
    let first = jobs(&core.apply(Input::RegisterGroup(Box::new(diamond("1.0.0"))), NOW));
    assert!(
        core.apply(Input::Remove(Registered::Group("g".into())), NOW)
            .is_empty()
    );
    assert_eq!(view(&core)["pending"], "delete");
    let removal = jobs(&finish(&mut core, &first[0], false));
    assert_eq!(removal[0].run.as_str(), "g-2d");
    drive(&mut core, removal, &[]);
    assert_eq!(
        state(&core),
        GroupState::Deleted {
            left_installed: vec![]
        }
    );
}

#[test]
fn a_group_survives_a_store_round_trip() {
    let core = installed(diamond("1.0.0"));
    let entry = core.group("g").unwrap().clone();
    let json = serde_json::to_string(&entry).unwrap();
    let back: GroupEntry = serde_json::from_str(&json).unwrap();
    assert_eq!(back, entry);
    let runs: Vec<Run> = core.runs().cloned().collect();
    let snapshot = crate::Snapshot {
        runs,
        groups: vec![back],
        ..Default::default()
    };
    let restored = Core::restore(CoreConfig::default(), snapshot);
    assert_eq!(
        serde_json::to_value(restored.group_view(restored.group("g").unwrap())).unwrap(),
        view(&core)
    );
}

#[test]
fn run_ids_fit_and_stay_apart() {
    assert_eq!(
        group_run_id("bookinfo", 12, Purpose::Rollback).as_str(),
        "bookinfo-12r"
    );
    let long = group_run_id("a-very-long-application-group-name", 3, Purpose::Forward);
    assert!(
        long.as_str().len() <= 40 && RunId::is_valid(long.as_str()),
        "{long}"
    );
    let other = group_run_id("a-very-long-application-group-nam2", 3, Purpose::Forward);
    assert_ne!(long, other);
    // Ids made before are the ids made now.
    assert_eq!(long.as_str(), "a-very-long-application-group-name-3f");
    let longer = group_run_id(&"g".repeat(50), 3, Purpose::Forward);
    assert_eq!(
        longer.as_str(),
        format!(
            "{}-{:06x}-3f",
            "g".repeat(30),
            crate::ids::fnv1a("g".repeat(50).bytes()) & 0xff_ffff
        )
    );
    assert_eq!(
        crate::chains::fire_run_id("nightly", Timestamp(1_800_000_000_000)).as_str(),
        "fj635743r5vb8"
    );
    assert_eq!(
        crate::ids::trigger_run_id(1_700_000_000_123_456_789, 42).as_str(),
        "tntzsquj2536f"
    );
}

#[test]
fn what_a_failed_rollback_left_is_named_and_the_next_spec_uninstalls_it() {
    let mut core = installed(group(&[("db", "", "1.0.0"), ("api", "db", "1.0.0")]));
    // Revision 2 adds web, which fails; the rollback cannot uninstall it.
    let v2 = group(&[
        ("db", "", "1.0.0"),
        ("api", "db", "1.0.0"),
        ("web", "api", "1.0.0"),
    ]);
    let second = jobs(&core.apply(Input::RegisterGroup(Box::new(v2)), NOW));
    let steps = drive(&mut core, second, &["web", "uninstall-web"]);
    assert_eq!(
        steps,
        waves(&[&["db"], &["api"], &["web"], &["uninstall-web"]])
    );
    let GroupState::Failed { outcome, .. } = state(&core) else {
        panic!("{:?}", state(&core))
    };
    assert!(matches!(outcome, RemediationOutcome::Failed { .. }));
    let v = view(&core);
    assert_eq!(v["leftInstalled"], json!(["ns/web"]));
    let message = v["conditions"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("the rollback failed") && message.ends_with("left installed: ns/web"),
        "{message}"
    );
    // Revision 3 has no web: it is uninstalled first, though no successful spec had it.
    let v3 = group(&[("db", "", "1.0.0"), ("api", "db", "1.1.0")]);
    let third = jobs(&core.apply(Input::RegisterGroup(Box::new(v3)), NOW));
    let steps = drive(&mut core, third, &[]);
    assert_eq!(steps, waves(&[&["uninstall-web"], &["db"], &["api"]]));
    assert_eq!(state(&core), GroupState::Succeeded);
    let entry = core.group("g").unwrap();
    assert!(entry.maybe_installed.is_empty());
    assert_eq!(view(&core)["leftInstalled"], json!([]));
}

#[test]
fn what_a_failed_delete_left_is_uninstalled_by_the_next_spec_and_its_delete() {
    let mut core = installed(group(&[("db", "", "1.0.0"), ("web", "db", "1.0.0")]));
    let removal = jobs(&core.apply(Input::Remove(Registered::Group("g".into())), NOW));
    drive(&mut core, removal, &["web"]);
    assert_eq!(
        state(&core),
        GroupState::Deleted {
            left_installed: vec!["ns/db".into(), "ns/web".into()]
        }
    );
    // Applied again without web: what the delete left goes first.
    let db_only = group(&[("db", "", "1.0.0")]);
    let again = jobs(&core.apply(Input::RegisterGroup(Box::new(db_only)), NOW));
    let steps = drive(&mut core, again, &[]);
    assert_eq!(steps, waves(&[&["uninstall-web"], &["db"]]));
    // And the next delete leaves nothing, truly.
    let removal = jobs(&core.apply(Input::Remove(Registered::Group("g".into())), NOW));
    assert_eq!(drive(&mut core, removal, &[]), waves(&[&["db"]]));
    assert_eq!(
        state(&core),
        GroupState::Deleted {
            left_installed: vec![]
        }
    );
}

#[test]
fn a_delete_during_a_delete_drops_a_spec_that_waited() {
    let mut core = installed(diamond("1.0.0"));
    let removal = jobs(&core.apply(Input::Remove(Registered::Group("g".into())), NOW));
    // A spec, then a delete again, while the delete runs: the delete is the last word.
    assert!(
        core.apply(Input::RegisterGroup(Box::new(diamond("2.0.0"))), NOW)
            .is_empty()
    );
    assert_eq!(view(&core)["pending"], "apply");
    assert!(
        core.apply(Input::Remove(Registered::Group("g".into())), NOW)
            .is_empty()
    );
    assert_eq!(view(&core)["pending"], Value::Null);
    drive(&mut core, removal, &[]);
    assert_eq!(
        state(&core),
        GroupState::Deleted {
            left_installed: vec![]
        }
    );
    assert_eq!(
        core.group("g")
            .unwrap()
            .forward_run
            .as_ref()
            .unwrap()
            .as_str(),
        "g-1f"
    );
}

#[test]
fn the_spec_under_way_applied_again_drops_a_delete_that_waited() {
    let mut core = Core::new(CoreConfig::default());
    let first = jobs(&core.apply(Input::RegisterGroup(Box::new(diamond("1.0.0"))), NOW));
    assert!(
        core.apply(Input::Remove(Registered::Group("g".into())), NOW)
            .is_empty()
    );
    assert_eq!(view(&core)["pending"], "delete");
    // The spec under way, applied again after the delete: the spec is the last word.
    assert!(
        core.apply(Input::RegisterGroup(Box::new(diamond("1.0.0"))), NOW)
            .is_empty()
    );
    assert_eq!(view(&core)["pending"], Value::Null);
    drive(&mut core, first, &[]);
    assert_eq!(state(&core), GroupState::Succeeded);
    assert!(core.group("g").unwrap().delete_run.is_none());
}

#[test]
fn a_run_id_taken_before_a_group_chose_it_is_skipped_not_replaced() {
    // A trigger may name its run anything, `g-1f` too: the group's forward run takes the next
    // free id, and the run that held it is left alone.
    let mut core = Core::new(CoreConfig::default());
    core.apply(
        Input::RejectTrigger {
            run: RunId::new("g-1f"),
            workflow: WorkflowName::new("squatter"),
            reason: "test".into(),
        },
        NOW,
    );
    let actions = core.apply(
        Input::RegisterGroup(Box::new(group(&[("a", "", "1.0.0")]))),
        NOW,
    );
    let dispatched = jobs(&actions);
    assert_eq!(dispatched.len(), 1);
    assert_eq!(dispatched[0].run.as_str(), "g-2f");
    let squatter = core.run(&RunId::new("g-1f")).unwrap();
    assert_eq!(squatter.workflow.as_str(), "squatter");
    assert!(squatter.nodes.is_empty());
}
