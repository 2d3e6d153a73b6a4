//! What moto cannot show, shown through the real SDK client with canned ELBv2 answers handed
//! to it in memory (no network): moto never throttles, and it answers DescribeTargetGroups in
//! one page whatever the page size. Here the SDK's own retry loop, with Baton's
//! [`baton_alb::retry_config`], meets `Throttling` answers, and its paginator meets a
//! `NextMarker`; Baton's code on top (rule lookup, tag batches, error kinds) is what runs in
//! production. The answers are ELBv2's XML as AWS documents it; whether AWS throttles and
//! pages exactly so is taken from its documentation, not observed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use aws_sdk_elasticloadbalancingv2 as elb;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use baton_alb::{Alb, AlbErrorKind};

const NS: &str = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/";

/// Answers each request with the next canned answer, and keeps the request bodies.
#[derive(Clone, Debug, Default)]
struct Canned {
    answers: Arc<Mutex<VecDeque<(u16, String)>>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Canned {
    fn new(answers: Vec<(u16, String)>) -> Canned {
        Canned {
            answers: Arc::new(Mutex::new(answers.into())),
            requests: Arc::default(),
        }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    fn alb(&self) -> Alb {
        let conf = elb::Config::builder()
            .behavior_version(elb::config::BehaviorVersion::latest())
            .region(elb::config::Region::new("us-east-1"))
            .credentials_provider(elb::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .endpoint_url("http://canned.invalid")
            .retry_config(baton_alb::retry_config())
            .http_client(self.clone())
            .build();
        Alb::from_client(elb::Client::from_conf(conf))
    }
}

impl HttpConnector for Canned {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let body = request
            .body()
            .bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        self.requests.lock().unwrap().push(body);
        let (status, xml) = self
            .answers
            .lock()
            .unwrap()
            .pop_front()
            .expect("a canned answer for every request");
        let response = HttpResponse::new(
            StatusCode::try_from(status).expect("a status code"),
            SdkBody::from(xml),
        );
        HttpConnectorFuture::ready(Ok(response))
    }
}

impl HttpClient for Canned {
    fn http_connector(
        &self,
        _: &HttpConnectorSettings,
        _: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

fn throttled() -> (u16, String) {
    (
        400,
        format!(
            "<ErrorResponse xmlns=\"{NS}\"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>r</RequestId></ErrorResponse>"
        ),
    )
}

fn ok(action: &str, result: &str) -> (u16, String) {
    (
        200,
        format!(
            "<{action}Response xmlns=\"{NS}\"><{action}Result>{result}</{action}Result><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></{action}Response>"
        ),
    )
}

fn target_groups(names: &[&str], next: Option<&str>) -> (u16, String) {
    let members: String = names
        .iter()
        .map(|n| {
            format!(
                "<member><TargetGroupArn>arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/{n}/1</TargetGroupArn><TargetGroupName>{n}</TargetGroupName></member>"
            )
        })
        .collect();
    let marker = next
        .map(|m| format!("<NextMarker>{m}</NextMarker>"))
        .unwrap_or_default();
    ok(
        "DescribeTargetGroups",
        &format!("<TargetGroups>{members}</TargetGroups>{marker}"),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

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
