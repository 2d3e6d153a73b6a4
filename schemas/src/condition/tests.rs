//! Unit tests of the condition language.

use super::*;

fn holds(condition: &str, result: Value) -> Result<bool, String> {
    Condition::parse(condition)?.holds(&result)
}

#[test]
fn argo_style_conditions() {
    let vector = Value::List(vec![Value::Number(0.97), Value::Number(0.5)]);
    assert_eq!(holds("result[0] >= 0.95", vector.clone()), Ok(true));
    assert_eq!(holds("result[1] >= 0.95", vector.clone()), Ok(false));
    assert_eq!(
        holds(
            "len(result) == 2 && (result[0] + result[1]) / 2 > 0.7",
            vector.clone()
        ),
        Ok(true)
    );
    assert_eq!(
        holds("result >= 0.95 or result < 0", Value::Number(-1.0)),
        Ok(true)
    );
    assert_eq!(holds("!isNaN(result)", Value::Number(f64::NAN)), Ok(false));
    assert_eq!(holds("result < 1", Value::Number(f64::NAN)), Ok(false));
    let json = Value::from_json(&serde_json::json!({"ok": true, "rate": {"p99": 120}, "a-b": "x"}));
    assert_eq!(
        holds("result.ok == true && result.rate.p99 < 200", json.clone()),
        Ok(true)
    );
    assert_eq!(holds("result[\"a-b\"] == 'x'", json), Ok(true));
    assert_eq!(holds("-result < -1e-3", Value::Number(0.5)), Ok(true));
}

#[test]
fn default_stands_in_for_nil() {
    let holds = |text: &str, result: Value| Condition::parse(text).unwrap().holds(&result);
    assert_eq!(holds("default(result, 0) < 0.05", Value::Nil), Ok(true));
    assert_eq!(
        holds("default(result, 0) < 0.05", Value::Number(0.5)),
        Ok(false)
    );
    assert!(Condition::parse("default(result)").is_err());
}

#[test]
fn predicates_over_lists() {
    let cloudwatch = |values: serde_json::Value| {
        Value::from_json(&serde_json::json!([{"Id": "rate", "Values": values}]))
    };
    let argo = "len(result[0].Values) >= 5 and all(result[0].Values, {# <= 0.01})";
    let ok = cloudwatch(serde_json::json!([0.001, 0.002, 0.0, 0.005, 0.009]));
    assert_eq!(holds(argo, ok), Ok(true));
    let bad = cloudwatch(serde_json::json!([0.001, 0.02, 0.0, 0.005, 0.009]));
    assert_eq!(holds(argo, bad), Ok(false));
    let ns = Value::from_json(&serde_json::json!([1, 4, 2, 5]));
    for (text, want) in [
        ("any(result, {# > 3})", true),
        ("any(result, {# > 5})", false),
        ("none(result, {# > 5})", true),
        ("none(result, { # == 4 })", false),
        ("one(result, {# == 4})", true),
        ("one(result, {# > 3})", false),
        ("len(filter(result, {# > 1})) == 3", true),
        ("filter(result, {# > 3})[1] == 5", true),
        ("map(result, {# * 2})[3] == 10", true),
        ("count(result, {# >= 2 && # < 5}) == 2", true),
        ("len(filter(map(result, {-#}), {abs(#) > 3})) == 2", true),
    ] {
        assert_eq!(holds(text, ns.clone()), Ok(want), "{text}");
    }
    let empty = "all(result, {false}) && !any(result, {true}) && count(result, {true}) == 0";
    assert_eq!(holds(empty, Value::List(vec![])), Ok(true));
    let rows = Value::from_json(&serde_json::json!([{"v": [1, 2]}, {"v": [3, 9]}]));
    let nested = "any(result, {all(#.v, {# > 2})}) && count(result, {#[\"v\"][0] > 0}) == 2";
    assert_eq!(holds(nested, rows.clone()), Ok(true));
    assert_eq!(holds("all(result, {any(#.v, {# > 2})})", rows), Ok(false));
}

#[test]
fn predicate_errors_say_what_went_wrong() {
    for (text, want) in [
        ("# > 1", "`#` outside a closure"),
        ("all(result, {# > 1}) && # > 1", "`#` outside a closure"),
        ("all(result, {# > 1)", "expected \"}\", found \")\""),
        ("all(result, {# > 1", "expected \"}\" at the end"),
        ("all(result, # > 1)", "expected \"{\", found \"#\""),
    ] {
        let e = Condition::parse(text).unwrap_err();
        assert!(e.contains(want), "{text}: {e}");
    }
    assert_eq!(
        holds("any(result, {# > 1})", Value::Number(3.0)),
        Err("any over a number: the first argument must be a list".to_owned())
    );
    assert_eq!(
        holds("all(result.Values, {#})", Value::Map(vec![])),
        Err("all over a nil: the first argument must be a list".to_owned())
    );
    assert_eq!(
        holds(
            "count(result, {# + 1}) > 0",
            Value::List(vec![Value::Number(2.0)])
        ),
        Err("the predicate of count gave 3 for 2, not true or false".to_owned())
    );
}

#[test]
fn a_condition_nested_or_chained_without_end_is_refused_not_a_stack_overflow() {
    for text in [
        format!("{}result{}", "(".repeat(100_000), ")".repeat(100_000)),
        format!("{}true", "!".repeat(100_000)),
        vec!["true"; 50_000].join(" || "),
    ] {
        let e = Condition::parse(&text).unwrap_err();
        assert!(e.contains("above the limit of 256"), "{e}");
    }
    let deep = format!("{}result{} >= 1", "(".repeat(60), ")".repeat(60));
    assert!(
        Condition::parse(&deep)
            .unwrap()
            .holds(&Value::Number(1.0))
            .unwrap()
    );
}

#[test]
fn errors_say_what_went_wrong() {
    let empty = Value::List(vec![]);
    assert_eq!(
        holds("result[0] > 1", empty),
        Err("index 0 out of range of a list of 0 values".to_owned())
    );
    assert!(
        holds("result > 'a'", Value::Number(1.0))
            .unwrap_err()
            .contains("compare")
    );
    assert!(
        holds("result + 1", Value::Number(1.0))
            .unwrap_err()
            .contains("not true or false")
    );
    assert!(
        Condition::parse("result[0 >= 1")
            .unwrap_err()
            .contains("expected \"]\"")
    );
    assert!(
        Condition::parse("value > 1")
            .unwrap_err()
            .contains("unknown name \"value\"")
    );
    assert!(
        Condition::parse("result >= ")
            .unwrap_err()
            .contains("ends too early")
    );
    assert!(
        Condition::parse("result ~ 1")
            .unwrap_err()
            .contains("unexpected '~'")
    );
    assert!(
        Condition::parse("result > 1 1")
            .unwrap_err()
            .contains("unexpected number 1")
    );
}
