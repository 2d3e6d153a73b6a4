//! The AWS side of the Cell tests: a real ELBv2 emulator (`moto_server`, pinned, installed into
//! `.tools/` by `scripts/tools.sh`) on a free loopback port, killed on drop, with a load
//! balancer, a listener and target groups created through its API; and a real Prometheus
//! (Debian's `prometheus`) scraping a metrics endpoint the test serves and changes.
//!
//! moto records every request it serves in a log file, so a test can count the writes Baton
//! made ([`Moto::actions_since`]).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_sdk_elasticloadbalancingv2 as elb;
use baton_alb::Alb;
use elb::types::{Action, ActionTypeEnum, FixedResponseActionConfig, ProtocolEnum, Tag};

use crate::prometheus::{PrometheusServer, ScrapeJob};
use crate::{Proc, free_port, wait_for_port};

/// The region every test uses.
pub const REGION: &str = "us-east-1";

/// Returns the moto_server program: `$MOTO_SERVER`, then the repository's `.tools`.
pub fn moto_program() -> PathBuf {
    if let Some(path) = std::env::var_os("MOTO_SERVER") {
        return PathBuf::from(path);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin/moto_server")
}

/// A running moto server and clients of it.
pub struct Moto {
    _proc: Proc,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    requests: PathBuf,
    runtime: Arc<tokio::runtime::Runtime>,
    alb: Alb,
}

/// A load balancer's listener to hang rules on, in a VPC to make target groups in.
pub struct Listener {
    /// The listener's ARN.
    pub arn: String,
    /// The VPC of the target groups.
    pub vpc_id: String,
}

impl Moto {
    /// Starts moto in `dir` (its log and request log go there).
    pub fn start(dir: &Path) -> anyhow::Result<Moto> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = free_port();
        let requests = dir.join("moto-requests.jsonl");
        let mut command = Command::new(moto_program());
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ENABLE_RECORDING", "true")
            .env("MOTO_RECORDER_FILEPATH", &requests)
            .current_dir(dir);
        let proc = Proc::spawn("moto", command, dir.join("moto.log"))
            .context("starting moto_server (scripts/tools.sh installs it)")?;
        wait_for_port(port, Duration::from_secs(30))?;
        let url = format!("http://127.0.0.1:{port}");
        let runtime = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?,
        );
        let conf = elb::Config::builder()
            .behavior_version(elb::config::BehaviorVersion::latest())
            .region(elb::config::Region::new(REGION))
            .credentials_provider(elb::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .endpoint_url(&url)
            .http_client(baton_alb::http_client())
            .build();
        let alb = Alb::from_client(elb::Client::from_conf(conf));
        Ok(Moto {
            _proc: proc,
            url,
            requests,
            runtime,
            alb,
        })
    }

    /// The environment that points an AWS client at this emulator through the standard chain.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.url.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Runs a future on the emulator's runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Returns Baton's ELBv2 client of this emulator.
    pub fn alb(&self) -> &Alb {
        &self.alb
    }

    /// Returns the SDK client.
    pub fn elb(&self) -> &elb::Client {
        self.alb.client()
    }

    /// Puts one value a minute, the last one a minute ago, of CloudWatch metric
    /// `namespace`/`name` with the dimension `dimension` (name, value).
    pub fn put_metric_data(
        &self,
        namespace: &str,
        name: &str,
        dimension: (&str, &str),
        values: &[f64],
    ) -> anyhow::Result<()> {
        use aws_sdk_cloudwatch as cw;
        let conf = cw::Config::builder()
            .behavior_version(cw::config::BehaviorVersion::latest())
            .region(cw::config::Region::new(REGION))
            .credentials_provider(cw::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .endpoint_url(&self.url)
            .http_client(baton_alb::http_client())
            .build();
        let client = cw::Client::from_conf(conf);
        let now = std::time::SystemTime::now();
        for (i, value) in values.iter().rev().enumerate() {
            let at = now - Duration::from_secs(60 * (i as u64 + 1));
            let datum = cw::types::MetricDatum::builder()
                .metric_name(name)
                .dimensions(
                    cw::types::Dimension::builder()
                        .name(dimension.0)
                        .value(dimension.1)
                        .build(),
                )
                .timestamp(aws_smithy_types::DateTime::from(at))
                .value(*value)
                .build();
            self.block_on(
                client
                    .put_metric_data()
                    .namespace(namespace)
                    .metric_data(datum)
                    .send(),
            )
            .context("PutMetricData")?;
        }
        Ok(())
    }

    /// Calls the EC2 query API (moto needs a VPC and subnets; the test does not build the
    /// EC2 SDK for two calls) and returns the XML answer.
    fn ec2(&self, params: &[(&str, &str)]) -> anyhow::Result<String> {
        let body: Vec<(&str, &str)> = params
            .iter()
            .chain(&[("Version", "2016-11-15")])
            .map(|(k, v)| (*k, *v))
            .collect();
        let answer = self.block_on(async {
            reqwest::Client::new()
                .post(&self.url)
                .form(&body)
                .header(
                    "authorization",
                    format!("AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/ec2/aws4_request, SignedHeaders=host, Signature=0"),
                )
                .send()
                .await?
                .text()
                .await
        })?;
        Ok(answer)
    }

    /// Calls moto's EKS REST API (the test does not build the EKS SDK for two calls) and
    /// returns the JSON answer.
    fn eks(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let answer = self.block_on(async {
            let mut request = reqwest::Client::new()
                .request(method, format!("{}{path}", self.url))
                .header(
                    "authorization",
                    format!("AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/eks/aws4_request, SignedHeaders=host, Signature=0"),
                );
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await?;
            let status = response.status();
            let text = response.text().await?;
            anyhow::ensure!(status.is_success(), "EKS {path}: {status}: {text}");
            Ok(serde_json::from_str(&text)?)
        })?;
        Ok(answer)
    }

    /// Creates an EKS cluster with `tags`; returns its endpoint.
    pub fn eks_cluster(&self, name: &str, tags: &[(&str, &str)]) -> anyhow::Result<String> {
        let tags: serde_json::Map<String, serde_json::Value> = tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).into()))
            .collect();
        let created = self.eks(
            reqwest::Method::POST,
            "/clusters",
            Some(serde_json::json!({
                "name": name,
                "roleArn": "arn:aws:iam::123456789012:role/eks",
                "resourcesVpcConfig": {"subnetIds": []},
                "tags": tags,
            })),
        )?;
        created["cluster"]["endpoint"]
            .as_str()
            .map(str::to_owned)
            .context("moto's cluster without an endpoint")
    }

    /// Deletes an EKS cluster.
    pub fn delete_eks_cluster(&self, name: &str) -> anyhow::Result<()> {
        self.eks(reqwest::Method::DELETE, &format!("/clusters/{name}"), None)
            .map(|_| ())
    }

    /// Creates a VPC, two subnets, an internal application load balancer and an HTTP
    /// listener whose default action answers 404.
    pub fn listener(&self) -> anyhow::Result<Listener> {
        let vpc = self.ec2(&[("Action", "CreateVpc"), ("CidrBlock", "10.0.0.0/16")])?;
        let vpc_id = xml_value(&vpc, "vpcId").context("CreateVpc")?;
        let mut subnets = Vec::new();
        for (cidr, zone) in [("10.0.1.0/24", "us-east-1a"), ("10.0.2.0/24", "us-east-1b")] {
            let subnet = self.ec2(&[
                ("Action", "CreateSubnet"),
                ("VpcId", &vpc_id),
                ("CidrBlock", cidr),
                ("AvailabilityZone", zone),
            ])?;
            subnets.push(xml_value(&subnet, "subnetId").context("CreateSubnet")?);
        }
        let name = format!("lb-{}", crate::next_id());
        let arn = self.block_on(async {
            let lb = self
                .elb()
                .create_load_balancer()
                .name(&name)
                .set_subnets(Some(subnets))
                .scheme(elb::types::LoadBalancerSchemeEnum::Internal)
                .send()
                .await?;
            let lb_arn = lb.load_balancers()[0]
                .load_balancer_arn()
                .unwrap_or_default()
                .to_owned();
            let listener = self
                .elb()
                .create_listener()
                .load_balancer_arn(lb_arn)
                .protocol(ProtocolEnum::Http)
                .port(80)
                .default_actions(
                    Action::builder()
                        .r#type(ActionTypeEnum::FixedResponse)
                        .fixed_response_config(
                            FixedResponseActionConfig::builder()
                                .status_code("404")
                                .build(),
                        )
                        .build(),
                )
                .send()
                .await?;
            Ok::<_, anyhow::Error>(
                listener.listeners()[0]
                    .listener_arn()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })?;
        Ok(Listener { arn, vpc_id })
    }

    /// Creates a target group named `name` in `vpc_id` with `tags`; returns its ARN.
    pub fn target_group(
        &self,
        vpc_id: &str,
        name: &str,
        tags: &[(&str, &str)],
    ) -> anyhow::Result<String> {
        self.block_on(async {
            let out = self
                .elb()
                .create_target_group()
                .name(name)
                .protocol(ProtocolEnum::Http)
                .port(8080)
                .vpc_id(vpc_id)
                .target_type(elb::types::TargetTypeEnum::Ip)
                .send()
                .await?;
            let arn = out.target_groups()[0]
                .target_group_arn()
                .unwrap_or_default()
                .to_owned();
            Ok::<_, anyhow::Error>(arn)
        })
        .and_then(|arn| {
            self.tag(&arn, tags)?;
            Ok(arn)
        })
    }

    /// Adds tags to a resource.
    pub fn tag(&self, arn: &str, tags: &[(&str, &str)]) -> anyhow::Result<()> {
        if tags.is_empty() {
            return Ok(());
        }
        self.block_on(async {
            let tags: Vec<Tag> = tags
                .iter()
                .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                .collect();
            self.elb()
                .add_tags()
                .resource_arns(arn)
                .set_tags(Some(tags))
                .send()
                .await?;
            Ok(())
        })
    }

    /// Returns the weights of the rule at `priority`, by target group name (from the ARN),
    /// sorted by name; `None` when there is no such rule.
    pub fn weights(&self, listener_arn: &str, priority: u32) -> anyhow::Result<Option<Weights>> {
        let rule = self.block_on(self.alb.find_rule(listener_arn, priority))?;
        Ok(rule.map(|r| {
            let mut named: Vec<(String, u32)> = r
                .weights
                .into_iter()
                .map(|(arn, w)| (target_group_name(&arn), w))
                .collect();
            named.sort();
            named
        }))
    }

    /// Returns how many rules of the listener have `priority`.
    pub fn rules_at(&self, listener_arn: &str, priority: u32) -> anyhow::Result<usize> {
        self.block_on(async {
            let out = self
                .elb()
                .describe_rules()
                .listener_arn(listener_arn)
                .send()
                .await?;
            let p = priority.to_string();
            Ok(out
                .rules()
                .iter()
                .filter(|r| r.priority() == Some(p.as_str()))
                .count())
        })
    }

    /// Returns how many requests moto has logged so far: a mark for [`Moto::actions_since`].
    pub fn mark(&self) -> usize {
        std::fs::read_to_string(&self.requests)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// Returns the ELBv2/EC2 `Action` of every request moto logged after `mark`, in order.
    pub fn actions_since(&self, mark: usize) -> Vec<String> {
        use base64::Engine as _;
        let text = std::fs::read_to_string(&self.requests).unwrap_or_default();
        text.lines()
            .skip(mark)
            .filter_map(|line| {
                let entry: serde_json::Value = serde_json::from_str(line).ok()?;
                let body = entry["body"].as_str().unwrap_or_default();
                let body = if entry["body_encoded"] == true {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(body)
                        .ok()?;
                    String::from_utf8_lossy(&bytes).into_owned()
                } else {
                    body.to_owned()
                };
                body.split('&')
                    .find_map(|p| p.strip_prefix("Action="))
                    .map(str::to_owned)
            })
            .collect()
    }
}

/// Returns the name inside a target group ARN (`...:targetgroup/<name>/<id>`).
pub fn target_group_name(arn: &str) -> String {
    arn.rsplit(":targetgroup/")
        .next()
        .and_then(|rest| rest.split('/').next())
        .unwrap_or(arn)
        .to_owned()
}

fn xml_value(xml: &str, tag: &str) -> anyhow::Result<String> {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .with_context(|| format!("no <{tag}> in {xml}"))?
        + open.len();
    let end = xml[start..].find('<').context("unterminated element")? + start;
    Ok(xml[start..end].to_owned())
}

/// A rule's weights by target group name, sorted by name.
pub type Weights = Vec<(String, u32)>;

/// Records the weights of a rule as they change, polling the emulator every 50 ms in a
/// thread of its own until dropped.
pub struct WeightLog {
    seen: Arc<Mutex<Vec<Weights>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WeightLog {
    /// Starts recording the rule at `priority` of `listener_arn`, and returns once the first
    /// sample is in (at most 10 s), so that the weights at the start are always the first seen.
    pub fn start(moto: &Moto, listener_arn: &str, priority: u32) -> WeightLog {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let runtime = moto.runtime.clone();
        let alb = moto.alb.clone();
        let listener = listener_arn.to_owned();
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                // Bounded: a test's rollout ends well within ten minutes.
                let deadline = Instant::now() + Duration::from_secs(600);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if let Ok(Some(rule)) = runtime.block_on(alb.find_rule(&listener, priority)) {
                        let mut named: Weights = rule
                            .weights
                            .into_iter()
                            .map(|(arn, w)| (target_group_name(&arn), w))
                            .collect();
                        named.sort();
                        let mut seen = seen.lock().expect("weight log lock");
                        if seen.last() != Some(&named) {
                            seen.push(named);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let log = WeightLog {
            seen,
            stop,
            thread: Some(thread),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while log.seen.lock().expect("weight log lock").is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        log
    }

    /// Returns every distinct weight list seen, in order, once the newest is `last` or
    /// `within` has passed. The log samples the emulator every 50 ms, so a write the caller
    /// has just seen elsewhere can still be on its way here.
    pub fn seen_through(&self, last: &Weights, within: Duration) -> Vec<Weights> {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.seen.lock().expect("weight log lock").clone();
            if seen.last() == Some(last) || Instant::now() >= deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for WeightLog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A real Prometheus scraping the test's metrics endpoint every second.
pub struct Prometheus {
    server: PrometheusServer,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    metrics: Arc<Mutex<String>>,
    endpoint: MetricsServer,
}

impl Prometheus {
    /// Starts a metrics endpoint serving `metrics` and a Prometheus that scrapes it as job
    /// `exampleapp`; waits until Prometheus is ready.
    pub fn start(dir: &Path, metrics: &str) -> anyhow::Result<Prometheus> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let text = Arc::new(Mutex::new(metrics.to_owned()));
        let endpoint = MetricsServer::start(text.clone())?;
        let server = PrometheusServer::start(dir, &[ScrapeJob::new("exampleapp", endpoint.port)])?;
        Ok(Prometheus {
            url: server.url.clone(),
            server,
            metrics: text,
            endpoint,
        })
    }

    /// Replaces what the metrics endpoint serves.
    pub fn set(&self, metrics: &str) {
        *self.metrics.lock().expect("metrics lock") = metrics.to_owned();
    }

    /// Waits until the instant query `query` gives a first value for which `done` holds,
    /// at most `within`.
    pub fn wait_for(
        &self,
        query: &str,
        within: Duration,
        done: impl Fn(f64) -> bool,
    ) -> anyhow::Result<()> {
        self.server.wait_for(query, within, done).map(|_| ())
    }

    /// The port of the metrics endpoint.
    pub fn metrics_port(&self) -> u16 {
        self.endpoint.port
    }
}

/// A plain HTTP server answering every request with the current metrics text, in a thread
/// that ends when the server is dropped.
struct MetricsServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsServer {
    fn start(text: Arc<Mutex<String>>) -> anyhow::Result<MetricsServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(mut stream) = stream else { continue };
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut request = [0u8; 4096];
                    let _ = stream.read(&mut request);
                    let body = text.lock().map(|t| t.clone()).unwrap_or_default();
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            })
        };
        Ok(MetricsServer {
            port,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so that it sees the flag.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
