//! The CloudWatch provider: `GetMetricData` over the last `interval` (default 5m). `result`
//! is the list of metric data results as Argo Rollouts gives them, each `{Id, Label,
//! StatusCode, Timestamps, Values}`, so that a condition reads `result[0].Values`.

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::types::{
    Dimension, Metric, MetricDataQuery, MetricDataResult, MetricStat, StandardUnit,
};
use aws_smithy_types::DateTime;
use baton_schemas::analysis::CloudWatchProvider;
use baton_schemas::condition::Value;

/// How far back data is read without an `interval`.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// Takes one measurement.
pub(super) async fn measure(
    client: &aws_sdk_cloudwatch::Client,
    provider: &CloudWatchProvider,
) -> Result<Value, String> {
    let now = SystemTime::now();
    let interval = provider.interval.map(|d| d.0).unwrap_or(DEFAULT_INTERVAL);
    let start = now.checked_sub(interval).unwrap_or(SystemTime::UNIX_EPOCH);
    let queries: Vec<MetricDataQuery> = provider.metric_data_queries.iter().map(query).collect();
    let mut results: Vec<MetricDataResult> = Vec::new();
    let mut next_token = None;
    // Pages until CloudWatch has no more; bounded, as a broken endpoint could page forever.
    for _ in 0..100 {
        let answer = client
            .get_metric_data()
            .set_metric_data_queries(Some(queries.clone()))
            .start_time(DateTime::from(start))
            .end_time(DateTime::from(now))
            .set_next_token(next_token.take())
            .send()
            .await
            .map_err(|e| {
                format!(
                    "CloudWatch GetMetricData: {}",
                    baton_alb::sdk_error_line(&e)
                )
            })?;
        results.extend(answer.metric_data_results.unwrap_or_default());
        next_token = answer.next_token;
        if next_token.is_none() {
            break;
        }
    }
    let mut merged: Vec<MetricDataResult> = Vec::new();
    for r in results {
        // Pages repeat a query's id with more of its points: one result per id.
        match merged.iter_mut().find(|m| m.id == r.id) {
            Some(m) => {
                m.timestamps
                    .get_or_insert_default()
                    .extend(r.timestamps.unwrap_or_default());
                m.values
                    .get_or_insert_default()
                    .extend(r.values.unwrap_or_default());
            }
            None => merged.push(r),
        }
    }
    Ok(Value::List(merged.iter().map(result).collect()))
}

/// The SDK's query of one of the provider's.
fn query(q: &baton_schemas::analysis::MetricDataQuery) -> MetricDataQuery {
    let mut built = MetricDataQuery::builder()
        .id(&q.id)
        .set_expression(q.expression.clone())
        .set_label(q.label.clone())
        .set_return_data(q.return_data)
        .set_period(q.period.map(|p| p.0 as i32));
    if let Some(stat) = &q.metric_stat {
        let metric = Metric::builder()
            .set_namespace(stat.metric.namespace.clone())
            .metric_name(&stat.metric.metric_name)
            .set_dimensions(Some(
                stat.metric
                    .dimensions
                    .iter()
                    .map(|d| Dimension::builder().name(&d.name).value(&d.value).build())
                    .collect(),
            ))
            .build();
        let built_stat = MetricStat::builder()
            .metric(metric)
            .period(stat.period.0 as i32)
            .stat(&stat.stat)
            .set_unit(stat.unit.as_deref().map(StandardUnit::from))
            .build();
        built = built.metric_stat(built_stat);
    }
    built.build()
}

/// One result as Argo Rollouts shows it (the SDK's field names).
fn result(r: &MetricDataResult) -> Value {
    let text = |s: Option<&str>| s.map_or(Value::Nil, |s| Value::String(s.to_owned()));
    Value::Map(vec![
        ("Id".to_owned(), text(r.id.as_deref())),
        ("Label".to_owned(), text(r.label.as_deref())),
        (
            "StatusCode".to_owned(),
            text(r.status_code.as_ref().map(|s| s.as_str())),
        ),
        (
            "Timestamps".to_owned(),
            Value::List(
                r.timestamps()
                    .iter()
                    .map(|t| {
                        Value::String(
                            t.fmt(aws_smithy_types::date_time::Format::DateTime)
                                .unwrap_or_default(),
                        )
                    })
                    .collect(),
            ),
        ),
        (
            "Values".to_owned(),
            Value::List(r.values().iter().map(|v| Value::Number(*v)).collect()),
        ),
    ])
}
