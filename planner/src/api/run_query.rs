//! The query of `GET /v1/run-summaries`: `workflow` (part of the name), `state`, `since`
//! and `until` (RFC 3339, `since` included), `limit` (1 to 500, 50 by default) and
//! `continue` (the `continue` of the page before). A value that cannot be read is a 400
//! that names the parameter.

use baton_core::{PageCursor, RunQuery};
use baton_schemas::status::State;
use baton_schemas::wire::Timestamp;

/// The most runs one page holds.
const MOST_PER_PAGE: usize = 500;
const DEFAULT_PER_PAGE: usize = 50;

/// The query as sent.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunSummaryQuery {
    workflow: Option<String>,
    state: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    #[serde(rename = "continue")]
    after: Option<String>,
}

impl RunSummaryQuery {
    /// Checks each parameter; the error names the first one that is wrong.
    pub(super) fn parse(self) -> Result<RunQuery, String> {
        let limit = self.limit.unwrap_or(DEFAULT_PER_PAGE);
        if !(1..=MOST_PER_PAGE).contains(&limit) {
            return Err(format!(
                "limit: {limit} is not between 1 and {MOST_PER_PAGE}"
            ));
        }
        Ok(RunQuery {
            workflow: self.workflow.filter(|w| !w.is_empty()),
            state: self
                .state
                .filter(|s| !s.is_empty())
                .map(|s| {
                    serde_json::from_value::<State>(serde_json::Value::String(s.clone())).map_err(
                        |_| {
                            format!(
                                "state: {s:?} is not one of pending, running, succeeded, failed, skipped, cancelled"
                            )
                        },
                    )
                })
                .transpose()?,
            since: instant("since", self.since)?,
            until: instant("until", self.until)?,
            limit,
            after: self
                .after
                .filter(|c| !c.is_empty())
                .map(|c| {
                    PageCursor::parse(&c)
                        .ok_or_else(|| format!("continue: {c:?} is not a page's `continue`"))
                })
                .transpose()?,
        })
    }
}

fn instant(name: &str, value: Option<String>) -> Result<Option<Timestamp>, String> {
    let Some(text) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let at = humantime::parse_rfc3339_weak(&text)
        .map_err(|e| format!("{name}: {text:?} is not an RFC 3339 time ({e})"))?;
    let millis = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("{name}: {text:?} is before 1970"))?
        .as_millis();
    Ok(Some(Timestamp(u64::try_from(millis).unwrap_or(u64::MAX))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &str) -> Result<RunQuery, String> {
        let uri: axum::http::Uri = format!("/v1/run-summaries?{pairs}").parse().unwrap();
        let q = axum::extract::Query::<RunSummaryQuery>::try_from_uri(&uri)
            .map_err(|e| e.body_text())?;
        q.0.parse()
    }

    #[test]
    fn each_parameter_is_read_and_a_wrong_one_is_named() {
        let q = query("workflow=deploy&state=failed&since=2026-12-07T00:00:00Z&limit=20").unwrap();
        assert_eq!(q.workflow.as_deref(), Some("deploy"));
        assert_eq!(q.state, Some(State::Failed));
        assert_eq!(q.since, Some(Timestamp(1_796_601_600_000)));
        assert_eq!(q.limit, 20);
        assert_eq!(query("").unwrap().limit, DEFAULT_PER_PAGE);
        assert!(query("state=done").unwrap_err().starts_with("state:"));
        assert!(query("since=yesterday").unwrap_err().starts_with("since:"));
        assert!(query("limit=0").unwrap_err().starts_with("limit:"));
        assert!(query("limit=501").unwrap_err().starts_with("limit:"));
        assert!(query("continue=x").unwrap_err().starts_with("continue:"));
    }
}
