//! The `webhook` and `publish` executors: a task's typed actions, and nodes of their own.

use std::time::Duration;

use baton_bus::Bus;
use baton_schemas::OUTPUT_LIMIT_BYTES;
use baton_schemas::wire::{Job, Outcome};

/// Sends the job's HTTP request. A 2xx answer succeeds with the response body as output (cut
/// to the output limit); anything else fails with the status and the start of the body.
pub async fn webhook(http: &reqwest::Client, job: &Job) -> Outcome {
    let Some(hook) = &job.webhook else {
        return Outcome::failed("webhook job without webhook settings".to_owned());
    };
    let method = reqwest::Method::from_bytes(hook.method.as_deref().unwrap_or("POST").as_bytes())
        .unwrap_or(reqwest::Method::POST);
    let mut request = http
        .request(method, &hook.url)
        .timeout(
            job.timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(Duration::from_secs(30)),
        )
        .header("content-type", "application/json")
        .header("baton-run", job.run.as_str())
        .header("baton-node", job.node.as_str());
    for (name, value) in &hook.headers {
        request = request.header(name, value);
    }
    if let Some(body) = &hook.body {
        request = request.body(body.clone());
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            let mut cut: String = body.chars().collect();
            if cut.len() > OUTPUT_LIMIT_BYTES {
                let mut end = OUTPUT_LIMIT_BYTES;
                while !cut.is_char_boundary(end) {
                    end -= 1;
                }
                cut.truncate(end);
            }
            if status.is_success() {
                Outcome::Succeeded { output: cut }
            } else {
                let head: String = body.chars().take(200).collect();
                Outcome::failed(format!("{} answered {status}: {head}", hook.url))
            }
        }
        Err(e) => Outcome::failed(format!("request to {} failed: {e}", hook.url)),
    }
}

/// Publishes the job's NATS message and waits until the server has it.
pub async fn publish(bus: &Bus, job: &Job) -> Outcome {
    let Some(message) = &job.publish else {
        return Outcome::failed("publish job without publish settings".to_owned());
    };
    let data = message.data.clone().unwrap_or_default();
    let client = bus.client();
    match client.publish(message.subject.clone(), data.into()).await {
        Ok(()) => match client.flush().await {
            Ok(()) => Outcome::Succeeded {
                output: String::new(),
            },
            Err(e) => Outcome::failed(format!("flushing {}: {e}", message.subject)),
        },
        Err(e) => Outcome::failed(format!("publishing to {}: {e}", message.subject)),
    }
}
