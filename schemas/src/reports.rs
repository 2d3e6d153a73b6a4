//! What workers report in a node's output when the core acts on it: a traffic write, a rule
//! deleted, a traffic failure and its kind, an analysis and its verdict. The worker writes
//! these types as the output's JSON; the core reads them back with [`from_output`] here, in
//! one place, instead of looking into JSON. Fields are declared in name order: the JSON is
//! byte for byte what workers wrote before these types existed (`json!`, whose keys sort).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::traffic::{Generation, WeightedTargetGroup};

/// Reads a node's output as `T`; `None` when it is not one (an older worker's, or none).
pub fn from_output<T: DeserializeOwned>(output: Option<&str>) -> Option<T> {
    serde_json::from_str(output?).ok()
}

/// Writes a report as a node's output.
pub fn to_output(report: &impl Serialize) -> String {
    serde_json::to_string(report).expect("reports serialize")
}

/// A traffic job that wrote its rule: what AWS showed after the write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleWritten {
    /// The generation written with the rule.
    pub generation: Option<Generation>,
    /// The rule's ARN.
    pub rule: String,
    /// The weights the rule forwards with, as read back.
    pub target_groups: Vec<WeightedTargetGroup>,
    /// What the write did: `created`, `modified` or `unchanged`.
    pub write: String,
}

/// A traffic job that deleted its rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleDeleted {
    /// What the delete found: `deleted` or `absent`.
    pub deleted: String,
    /// The rule's priority.
    pub priority: u32,
}

/// A traffic job that failed: `{"error": {"kind", "operation", "code"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficFailure {
    /// What failed.
    pub error: TrafficError,
}

/// What failed in a traffic job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficError {
    /// AWS's error code, when it gave one.
    pub code: Option<String>,
    /// The kind of failure: `throttled`, `unavailable`, `invalid`, `notFound`, `superseded`, ...
    pub kind: String,
    /// The ELBv2 operation that failed (`none` when none was called).
    pub operation: String,
}

/// The kinds of traffic failure that trying again cannot mend: the spec names what does not
/// exist (`notFound`), asks what AWS refuses (`invalid`), or is out of date (`superseded`).
pub const FINAL_FAILURES: [&str; 3] = ["invalid", "notFound", "superseded"];

impl TrafficFailure {
    /// A failure of `kind` in `operation`, with AWS's `code`.
    pub fn new(kind: &str, operation: &str, code: Option<&str>) -> TrafficFailure {
        TrafficFailure {
            error: TrafficError {
                code: code.map(str::to_owned),
                kind: kind.to_owned(),
                operation: operation.to_owned(),
            },
        }
    }

    /// Whether trying again cannot mend it ([`FINAL_FAILURES`]).
    pub fn is_final(&self) -> bool {
        FINAL_FAILURES.contains(&self.error.kind.as_str())
    }
}

/// How a measurement, a metric or an analysis turned out; worse phases sort later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AnalysisPhase {
    /// The condition for success held.
    Successful,
    /// Neither condition held.
    Inconclusive,
    /// The measurement could not be taken or judged.
    Error,
    /// The condition for failure held (or the one for success did not).
    Failed,
}

/// An analysis job's verdict alone: what the core decides on, whatever else the report holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct AnalysisVerdict {
    /// The verdict.
    pub phase: AnalysisPhase,
}

/// An analysis job's verdict, with its metrics' results when they fit in the output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisReport {
    /// Every metric's result; left out when even the short form is too large.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<MetricReport>>,
    /// The verdict.
    pub phase: AnalysisPhase,
}

/// One metric's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricReport {
    /// How many measurements could not be taken or judged.
    pub errors: u32,
    /// How many met the condition for failure.
    pub failed: u32,
    /// How many met neither condition.
    pub inconclusive: u32,
    /// The last measurements kept.
    pub last: Vec<Measurement>,
    /// Why it did not pass, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The metric.
    pub name: String,
    /// Its verdict.
    pub phase: AnalysisPhase,
    /// How many met the condition for success.
    pub successful: u32,
}

/// One measurement of a metric.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measurement {
    /// How it turned out.
    pub phase: AnalysisPhase,
    /// The value measured, as text.
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outputs written by workers before these types existed read back the same.
    #[test]
    fn outputs_of_earlier_workers_are_read() {
        let failed = r#"{"error":{"code":null,"kind":"superseded","operation":"DescribeTags"}}"#;
        let failure: TrafficFailure = from_output(Some(failed)).unwrap();
        assert!(failure.is_final());
        assert_eq!(to_output(&failure), failed);
        let written = r#"{"generation":7,"rule":"arn:r","targetGroups":[{"arn":"arn:a","weight":90}],"write":"modified"}"#;
        let write: RuleWritten = from_output(Some(written)).unwrap();
        assert_eq!(write.target_groups[0].weight, 90);
        assert_eq!(write.generation, Some(Generation(7)));
        assert_eq!(to_output(&write), written);
        let analysis = r#"{"metrics":[{"errors":0,"failed":0,"inconclusive":2,"last":[{"phase":"Inconclusive","value":"0.5"}],"name":"rate","phase":"Inconclusive","successful":0}],"phase":"Inconclusive"}"#;
        let report: AnalysisReport = from_output(Some(analysis)).unwrap();
        assert_eq!(report.phase, AnalysisPhase::Inconclusive);
        assert_eq!(to_output(&report), analysis);
        // The verdict is read even where the rest of a report is not what this build writes.
        let odd = r#"{"metrics":"cut","phase":"Inconclusive"}"#;
        assert_eq!(
            from_output::<AnalysisVerdict>(Some(odd)).map(|v| v.phase),
            Some(AnalysisPhase::Inconclusive)
        );
        let short: AnalysisReport = from_output(Some(r#"{"phase":"Failed"}"#)).unwrap();
        assert_eq!((short.phase, short.metrics), (AnalysisPhase::Failed, None));
        assert_eq!(from_output::<AnalysisReport>(Some("plain text")), None);
        for kind in FINAL_FAILURES {
            assert!(TrafficFailure::new(kind, "ModifyRule", None).is_final());
        }
        for kind in [
            "throttled",
            "timedOut",
            "unreachable",
            "notConfirmed",
            "setup",
            "other",
        ] {
            assert!(
                !TrafficFailure::new(kind, "ModifyRule", Some("X")).is_final(),
                "{kind}"
            );
        }
        assert_eq!(from_output::<TrafficFailure>(None), None);
    }
}
