//! Durations written as `30s`, `5m`, `1h30m` or `250ms` in documents.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration that reads and writes the human form (`1m30s`), at most
/// [`Duration::MAX`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// The longest duration a document may give: 366 days. Longer ones are refused where they
    /// are read, so that no deadline the planner computes from them (a timeout plus its grace,
    /// a backoff, a pause) can overflow, and none is meaningless ("never") in disguise.
    pub const MAX: Duration = Duration::from_secs(366 * 24 * 3600);

    /// Builds a duration from whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    /// Builds a duration from milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Self(std::time::Duration::from_millis(millis))
    }

    /// Returns the duration in whole milliseconds, saturating.
    pub fn as_millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parsed = humantime::parse_duration(s.trim())
            .map(Duration)
            .map_err(|e| format!("invalid duration {s:?} ({e}); write it like 30s, 5m or 1h30m"))?;
        if parsed > Duration::MAX {
            return Err(format!(
                "duration {s:?} is longer than the maximum of {} (366 days)",
                Duration::MAX
            ));
        }
        Ok(parsed)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl schemars::JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration such as 30s, 5m, 1h30m or 250ms.",
        })
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!("30s".parse::<Duration>().unwrap(), Duration::from_secs(30));
        assert_eq!(
            "1h30m".parse::<Duration>().unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            "250ms".parse::<Duration>().unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(Duration::from_secs(90).to_string(), "1m 30s");
        assert!("soon".parse::<Duration>().is_err());
        assert!("10".parse::<Duration>().is_err());
    }

    #[test]
    fn longer_than_the_maximum_is_refused() {
        assert_eq!("366d".parse::<Duration>().unwrap(), Duration::MAX);
        let e = "18446744073709551615s".parse::<Duration>().unwrap_err();
        assert!(e.contains("longer than the maximum"), "{e}");
        assert!("367d".parse::<Duration>().is_err());
    }
}
