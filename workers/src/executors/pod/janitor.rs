//! The janitor: deletes the finished pods Baton ran once their TTL has passed.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{MANAGED_BY, PodExecutor, ServedNamespaces};

/// How long the janitor keeps quiet about a list failure it has logged at warn.
const REPEAT_WARNING_AFTER: Duration = Duration::from_secs(60);

impl PodExecutor {
    /// Deletes finished pods Baton ran once their TTL has passed (succeeded and failed pods
    /// have TTLs of their own), every `every`, until `shutdown` fires. It lists pods in each
    /// served namespace, or in the whole cluster when the worker serves every namespace, so a
    /// worker with `--pod-namespaces` needs no cluster-wide right. Any number of workers may
    /// run it; a pod another worker deleted first is skipped.
    pub async fn janitor(self, every: Duration, shutdown: CancellationToken) {
        let scopes: Vec<(String, Api<Pod>)> = match &self.config.namespaces {
            ServedNamespaces::All => vec![("*".to_owned(), Api::all(self.client.clone()))],
            ServedNamespaces::Only(names) => names
                .iter()
                .map(|ns| (ns.clone(), Api::namespaced(self.client.clone(), ns)))
                .collect(),
        };
        let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
        let mut warnings = RepeatedWarnings::new(REPEAT_WARNING_AFTER);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            for (namespace, pods) in &scopes {
                match pods.list(&ListParams::default().labels(&selector)).await {
                    Ok(list) => self.delete_expired(list.items).await,
                    // A missing permission fails every list: said once in a while at warn,
                    // so it shows without filling the log.
                    Err(e) => {
                        let error = e.to_string();
                        if warnings.first_in_a_while(&error, Instant::now()) {
                            warn!(namespace = %namespace, error, "janitor could not list pods");
                        } else {
                            debug!(namespace = %namespace, error, "janitor could not list pods");
                        }
                    }
                }
            }
        }
    }

    /// Deletes those of `pods` that finished longer ago than their phase's TTL.
    async fn delete_expired(&self, pods: Vec<Pod>) {
        let now = SystemTime::now();
        for pod in pods {
            let Some(finished) = finished_at(&pod) else {
                continue;
            };
            let ttl = match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
                Some("Succeeded") => self.config.success_ttl,
                Some("Failed") => self.config.failure_ttl,
                _ => continue,
            };
            if now.duration_since(finished).unwrap_or_default() >= ttl {
                let namespace = pod.metadata.namespace.clone().unwrap_or_default();
                let name = pod.metadata.name.clone().unwrap_or_default();
                self.delete(&Api::namespaced(self.client.clone(), &namespace), &name)
                    .await;
            }
        }
    }
}

/// Returns when the pod's last container terminated.
fn finished_at(pod: &Pod) -> Option<SystemTime> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses
        .iter()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| SystemTime::from(t.0))
        .max()
}

/// Remembers when each distinct warning was last logged, so that one repeated every few
/// seconds is logged once per `quiet` period.
#[derive(Debug)]
struct RepeatedWarnings {
    quiet: Duration,
    last_logged: HashMap<String, Instant>,
}

impl RepeatedWarnings {
    fn new(quiet: Duration) -> RepeatedWarnings {
        RepeatedWarnings {
            quiet,
            last_logged: HashMap::new(),
        }
    }

    /// Returns whether `message`, seen at `now`, is to be logged: true when it was not logged
    /// in the last `quiet` period (and then counts it as logged at `now`).
    fn first_in_a_while(&mut self, message: &str, now: Instant) -> bool {
        // Messages quiet for a whole period are forgotten, so the map holds only recent ones.
        self.last_logged
            .retain(|_, logged| now.saturating_duration_since(*logged) < self.quiet);
        if self.last_logged.contains_key(message) {
            return false;
        }
        self.last_logged.insert(message.to_owned(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_warning_is_logged_once_a_minute_and_each_distinct_one_at_once() {
        let mut warnings = RepeatedWarnings::new(Duration::from_secs(60));
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        assert!(warnings.first_in_a_while("forbidden", at(0)));
        assert!(!warnings.first_in_a_while("forbidden", at(10)));
        assert!(!warnings.first_in_a_while("forbidden", at(59)));
        assert!(
            warnings.first_in_a_while("connection refused", at(20)),
            "another message is logged at once"
        );
        assert!(warnings.first_in_a_while("forbidden", at(60)));
        assert!(!warnings.first_in_a_while("connection refused", at(79)));
        assert!(warnings.first_in_a_while("connection refused", at(80)));
        assert!(!warnings.first_in_a_while("forbidden", at(119)));
        assert!(warnings.first_in_a_while("forbidden", at(120)));
        assert_eq!(warnings.last_logged.len(), 2, "nothing else kept");
        assert!(warnings.first_in_a_while("timed out", at(500)));
        assert_eq!(
            warnings.last_logged.len(),
            1,
            "messages quiet for a period are forgotten"
        );
    }

    #[test]
    fn finished_at_is_when_the_last_container_terminated() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "status": {"phase": "Succeeded", "containerStatuses": [
                {"name": "a", "ready": false, "restartCount": 0, "image": "x", "imageID": "",
                 "state": {"terminated": {"exitCode": 0, "finishedAt": "2026-01-01T10:00:05Z"}}},
                {"name": "b", "ready": false, "restartCount": 0, "image": "x", "imageID": "",
                 "state": {"terminated": {"exitCode": 0, "finishedAt": "2026-01-01T10:00:09Z"}}},
            ]},
        }))
        .unwrap();
        // 2026-01-01T10:00:09Z
        let expected = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_261_609);
        assert_eq!(finished_at(&pod), Some(expected));
        let running: Pod =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "status": {}}))
                .unwrap();
        assert_eq!(finished_at(&running), None);
    }
}
