//! The API's part of the audit trail: every request that asks for a change is recorded with
//! its caller, its client's address and the answer, refused ones (401, 403, 413) included.

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use baton_schemas::api::AuditRecord;
use baton_schemas::wire::Timestamp;

use super::auth::{Actor, Caller};
use crate::audit::Audit;

/// Records a request that changes something, once its answer is known.
pub(super) async fn record(State(audit): State<Audit>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let Some(action) = AuditRecord::action_of(&method, &path) else {
        return next.run(request).await;
    };
    let from = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "-".to_owned(), |peer| peer.0.to_string());
    let at = Timestamp::now();
    let response = next.run(request).await;
    // The caller is known once the request got past authentication (`authorize` leaves it
    // on the answer).
    let caller = response.extensions().get::<Caller>();
    let actor = caller
        .map(|c| c.name.clone())
        .or_else(|| response.extensions().get::<Actor>().map(|a| a.0.clone()));
    let record = AuditRecord {
        v: AuditRecord::VERSION,
        at,
        action: action.to_owned(),
        actor,
        role: caller.map(|c| c.role.to_string()),
        via: "api".to_owned(),
        from,
        request: format!("{method} {path}"),
        status: Some(response.status().as_u16()),
    };
    audit.record(&record, None);
    response
}
