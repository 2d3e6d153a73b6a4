//! Writing YAML that every reader takes the same way.
//!
//! Baton reads YAML 1.2, but kubectl (go-yaml) and PyYAML read YAML 1.1, where a plain `on`,
//! `yes`, `n` or `off` is a boolean and `010` is an octal number. A CRD whose schema lists
//! `required: [on]` was rejected by a real API server (`cannot unmarshal bool into ...
//! JSONSchemaProps.required of type string`). This writer quotes every string that is not
//! plainly a word to both versions, so what Baton writes means one thing to every reader.

use serde_json::Value;

/// Returns `value` as a YAML block document (no leading `---`), every ambiguous string
/// double-quoted.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_seq(&mut out, items, 0),
        scalar => {
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
    out
}

fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&string(key));
        out.push(':');
        write_value(out, value, indent);
    }
}

fn write_seq(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match item {
            Value::Object(map) if !map.is_empty() => {
                // The first entry sits after the dash, the others under it.
                let mut nested = String::new();
                write_map(&mut nested, map, indent + 2);
                out.push(' ');
                out.push_str(&nested[indent + 2..]);
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                write_seq(out, inner, indent + 2);
            }
            scalar => {
                out.push(' ');
                out.push_str(&inline(scalar));
                out.push('\n');
            }
        }
    }
}

/// Writes what follows `key:` on its line and below it.
fn write_value(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_map(out, map, indent + 2);
        }
        // As Kubernetes writes them: a sequence's dashes under its key, not indented.
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_seq(out, items, indent);
        }
        scalar => {
            out.push(' ');
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
}

/// Returns a scalar, or an empty collection, on one line.
fn inline(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
    }
}

/// Returns `s` plain when both YAML versions read it as that string, double-quoted (JSON's
/// escapes are YAML's) otherwise.
fn string(s: &str) -> String {
    if is_plain(s) {
        s.to_owned()
    } else {
        serde_json::to_string(s).expect("a string serializes")
    }
}

/// Words YAML 1.1 reads as booleans or null, in any case.
const YAML11_WORDS: [&str; 12] = [
    "y", "yes", "n", "no", "true", "false", "on", "off", "null", "~", "nan", "inf",
];

fn is_plain(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    // A letter first rules out numbers, indicators (`-`, `&`, `*`, `!`, `|`, `>`, quotes,
    // `%`, `@`, `` ` ``) and YAML 1.1's `.inf`, octals and sexagesimals; the rest keeps
    // `: ` and ` #` out.
    first.is_ascii_alphabetic()
        && !s.ends_with(' ')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '.' | '/' | '-'))
        && !YAML11_WORDS.contains(&s.to_ascii_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml11_booleans_and_null_are_quoted() {
        let value =
            json!({"required": ["on", "task", "Yes", "OFF", "n", "null", "~"], "on": {"y": 1}});
        let text = to_string(&value);
        assert_eq!(
            text,
            "\"on\":\n  \"y\": 1\nrequired:\n- \"on\"\n- task\n- \"Yes\"\n- \"OFF\"\n- \"n\"\n- \"null\"\n- \"~\"\n"
        );
    }

    #[test]
    fn what_is_written_reads_back_the_same() {
        let value = json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "spec": {
                "versions": [{"name": "v1alpha1", "served": true, "schema": {"type": "object", "properties": {}}},
                             {"name": "v1", "served": false, "additionalPrinterColumns": [], "deprecated": null}],
                "text": "a: b # c\nline two",
                "numbers": ["010", "1:20", "0x1F", "1_000", ".inf", "1e3", 7, -2.5],
                "empty": "",
                "nested": [[1, 2], [{"a": [true]}]],
                "x-kubernetes-preserve-unknown-fields": true,
            }
        });
        let text = to_string(&value);
        let back: Value = serde_norway::from_str(&text).unwrap();
        assert_eq!(back, value, "{text}");
    }
}
