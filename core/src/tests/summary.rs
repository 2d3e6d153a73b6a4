//! Runs listed a page at a time: filters, newest first, and a cursor that neither skips
//! nor repeats a run.

use super::*;

/// A core with runs `r0`..`r{n}` of `wf`, started a second apart; `r1` has finished well.
fn core_with_runs(n: u64) -> Core {
    let mut core = core_with(workflow("  - {name: a, kind: noop}\n"));
    for i in 0..n {
        let at = Timestamp(T0.0 + i * 1000);
        core.apply(
            Input::StartRun {
                run: RunId::new(format!("r{i}")),
                workflow: WorkflowName::new("wf"),
                initiator: "api".into(),
                data: String::new(),
            },
            at,
        );
    }
    core.apply(finished("r1", "a", 1, ok("done")), T0);
    core
}

fn ids(page: &baton_schemas::status::RunPage) -> Vec<&str> {
    page.runs.iter().map(|r| r.run.as_str()).collect()
}

#[test]
fn pages_go_newest_first_and_a_cursor_continues_where_the_last_page_ended() {
    let core = core_with_runs(5);
    let mut query = RunQuery {
        limit: 2,
        ..RunQuery::default()
    };
    let first = run_page(core.runs(), &query);
    assert_eq!(ids(&first), ["r4", "r3"]);
    query.after = Some(PageCursor::parse(first.next.as_deref().unwrap()).unwrap());
    let second = run_page(core.runs(), &query);
    assert_eq!(ids(&second), ["r2", "r1"]);
    query.after = Some(PageCursor::parse(second.next.as_deref().unwrap()).unwrap());
    let last = run_page(core.runs(), &query);
    assert_eq!(ids(&last), ["r0"]);
    assert_eq!(last.next, None, "the last page says there is no more");
}

#[test]
fn summaries_count_nodes_by_state_and_filters_narrow_the_list() {
    let core = core_with_runs(3);
    let query = RunQuery {
        state: Some(State::Succeeded),
        limit: 10,
        ..RunQuery::default()
    };
    let done = run_page(core.runs(), &query);
    assert_eq!(ids(&done), ["r1"]);
    assert_eq!(done.runs[0].nodes, 1);
    assert_eq!(done.runs[0].counts.get(&State::Succeeded), Some(&1));
    assert!(done.runs[0].finished_at.is_some());
    let window = RunQuery {
        since: Some(Timestamp(T0.0 + 1000)),
        until: Some(Timestamp(T0.0 + 2000)),
        limit: 10,
        ..RunQuery::default()
    };
    assert_eq!(ids(&run_page(core.runs(), &window)), ["r1"]);
    let other = RunQuery {
        workflow: Some("other".into()),
        limit: 10,
        ..RunQuery::default()
    };
    assert!(run_page(core.runs(), &other).runs.is_empty());
    assert_eq!(PageCursor::parse("not-a-cursor"), None);
}
