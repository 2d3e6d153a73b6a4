//! The audit trail: every change asked of Baton through the API or a trigger, with who asked,
//! when, from where and what came of it, as a structured log line (target `baton::audit`) and
//! a message on `<p>.audit.<action>`, which the `<P>_AUDIT` stream keeps as long as events.
//!
//! The message is published without waiting for the stream's ack: a slow or absent bus must
//! not hold up the API's answer or the planner's loop. The log line is written first, so a
//! record the bus loses is still in the log.

use baton_bus::Bus;
use baton_schemas::api::AuditRecord;
use tracing::{info, warn};

/// Writes audit records.
#[derive(Clone, Debug)]
pub struct Audit {
    bus: Bus,
}

impl Audit {
    /// Returns an audit trail on `bus`.
    pub fn new(bus: Bus) -> Self {
        Self { bus }
    }

    /// Records `record`; `id` deduplicates it in the stream (a trigger read again after a
    /// restart is recorded once).
    pub fn record(&self, record: &AuditRecord, id: Option<String>) {
        info!(
            target: "baton::audit",
            action = %record.action,
            actor = %record.actor.as_deref().unwrap_or("-"),
            role = %record.role.as_deref().unwrap_or("-"),
            via = %record.via,
            from = %record.from,
            request = %record.request,
            status = %record.status.map_or_else(|| "-".to_owned(), |s| s.to_string()),
            "audit"
        );
        let subject = self.bus.audit_subject(&record.action);
        let body = serde_json::to_vec(record).expect("an audit record always serializes");
        let mut headers = async_nats::HeaderMap::new();
        if let Some(id) = id {
            headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
        }
        let client = self.bus.client().clone();
        tokio::spawn(async move {
            if let Err(e) = client
                .publish_with_headers(subject.clone(), headers, body.into())
                .await
            {
                warn!(%subject, error = %e, "audit record not sent to the bus (it is in the log)");
            }
        });
    }
}
