//! What moto cannot show, shown through the real SDK client with canned ELBv2 answers handed
//! to it in memory (no network): moto never throttles, and it answers DescribeTargetGroups in
//! one page whatever the page size. Here the SDK's own retry loop, with Baton's
//! [`baton_alb::retry_config`], meets `Throttling` answers, and its paginator meets a
//! `NextMarker`; Baton's code on top (rule lookup, tag batches, error kinds) is what runs in
//! production. The answers are ELBv2's XML as AWS documents it; whether AWS throttles and
//! pages exactly so is taken from its documentation, not observed.

mod canned;

use baton_alb::AlbErrorKind;
use canned::{Canned, ok, runtime, target_groups, throttled};

#[test]
fn throttled_calls_are_retried_with_backoff_until_one_passes() {
    let rule = "<member><RuleArn>arn:rule/1</RuleArn><Priority>10</Priority><Conditions/><Actions/><IsDefault>false</IsDefault></member>";
    let canned = Canned::new(vec![
        throttled(),
        throttled(),
        ok("DescribeRules", &format!("<Rules>{rule}</Rules>")),
    ]);
    let found = runtime()
        .block_on(canned.alb().find_rule(
            "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/lb/1/2",
            10,
        ))
        .unwrap();
    assert_eq!(found.map(|r| r.arn).as_deref(), Some("arn:rule/1"));
    let requests = canned.requests();
    assert_eq!(
        requests.len(),
        3,
        "two throttled attempts, then the one that passed"
    );
    assert!(requests.iter().all(|r| r.contains("Action=DescribeRules")));
}

#[test]
fn a_call_throttled_through_every_attempt_fails_as_throttled() {
    // Eight attempts (retry_config), each throttled: the last error is kept, by kind.
    let canned = Canned::new((0..8).map(|_| throttled()).collect());
    let started = std::time::Instant::now();
    let error = runtime()
        .block_on(canned.alb().tagged_target_groups())
        .unwrap_err();
    assert_eq!(error.kind, AlbErrorKind::Throttled, "{error}");
    assert_eq!(error.code.as_deref(), Some("Throttling"));
    assert!(!error.kind.is_final(), "worth another try later");
    assert_eq!(canned.requests().len(), 8);
    // Exponential backoff from 200 ms, with jitter, between the attempts.
    assert!(started.elapsed() >= std::time::Duration::from_millis(100));
}

#[test]
fn target_groups_are_read_page_by_page_following_next_marker() {
    let arn = |n: &str| format!("arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/{n}/1");
    let tags: String = ["a", "b", "c"]
        .iter()
        .map(|n| {
            format!(
                "<member><ResourceArn>{}</ResourceArn><Tags><member><Key>role</Key><Value>web-{n}</Value></member></Tags></member>",
                arn(n)
            )
        })
        .collect();
    let canned = Canned::new(vec![
        target_groups(&["a", "b"], Some("page-2")),
        target_groups(&["c"], None),
        ok(
            "DescribeTags",
            &format!("<TagDescriptions>{tags}</TagDescriptions>"),
        ),
    ]);
    let groups = runtime()
        .block_on(canned.alb().with_page_size(2).tagged_target_groups())
        .unwrap();
    let names: Vec<(&str, &str)> = groups
        .iter()
        .map(|g| (g.name.as_str(), g.tags["role"].as_str()))
        .collect();
    assert_eq!(names, [("a", "web-a"), ("b", "web-b"), ("c", "web-c")]);
    let requests = canned.requests();
    assert!(requests[0].contains("PageSize=2"), "{}", requests[0]);
    assert!(!requests[0].contains("Marker="), "{}", requests[0]);
    assert!(requests[1].contains("Marker=page-2"), "{}", requests[1]);
    assert!(
        requests[2].contains("Action=DescribeTags"),
        "{}",
        requests[2]
    );
}
