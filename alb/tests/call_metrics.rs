//! Every ELBv2 call attempt is counted by operation and outcome, throttled attempts the SDK
//! retried included. A test binary of its own: the counters are the process's.

mod canned;

use canned::{Canned, ok, runtime, throttled};

#[test]
fn throttled_attempts_and_the_one_that_passed_are_counted() {
    let rule = "<member><RuleArn>arn:rule/1</RuleArn><Priority>10</Priority><Conditions/><Actions/><IsDefault>false</IsDefault></member>";
    let canned = Canned::new(vec![
        throttled(),
        throttled(),
        ok("DescribeRules", &format!("<Rules>{rule}</Rules>")),
    ]);
    runtime()
        .block_on(canned.alb().find_rule(
            "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/lb/1/2",
            10,
        ))
        .unwrap();
    let text = baton_telemetry::Exposition::new(Default::default()).encode();
    for line in [
        r#"baton_elbv2_calls_total{operation="DescribeRules",outcome="throttled"} 2"#,
        r#"baton_elbv2_calls_total{operation="DescribeRules",outcome="ok"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
}
