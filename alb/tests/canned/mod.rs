//! Canned ELBv2 answers handed to the real SDK client in memory (no network), shared by the
//! tests of what moto cannot show.

#![allow(dead_code)]

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
use baton_alb::Alb;

pub const NS: &str = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/";

/// Answers each request with the next canned answer, and keeps the request bodies.
#[derive(Clone, Debug, Default)]
pub struct Canned {
    answers: Arc<Mutex<VecDeque<(u16, String)>>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Canned {
    pub fn new(answers: Vec<(u16, String)>) -> Canned {
        Canned {
            answers: Arc::new(Mutex::new(answers.into())),
            requests: Arc::default(),
        }
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    pub fn alb(&self) -> Alb {
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

pub fn throttled() -> (u16, String) {
    (
        400,
        format!(
            "<ErrorResponse xmlns=\"{NS}\"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>r</RequestId></ErrorResponse>"
        ),
    )
}

pub fn ok(action: &str, result: &str) -> (u16, String) {
    (
        200,
        format!(
            "<{action}Response xmlns=\"{NS}\"><{action}Result>{result}</{action}Result><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></{action}Response>"
        ),
    )
}

pub fn target_groups(names: &[&str], next: Option<&str>) -> (u16, String) {
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

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
