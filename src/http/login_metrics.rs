//! Counts the answers to servers' login questions by outcome, whatever layer produced them
//! (a refused token is answered by the extractor, before any handler runs).

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::http::AppState;
use crate::service::{LoginEndpoint, LoginOutcome};

pub async fn count(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let endpoint = match matched.as_ref().map(MatchedPath::as_str) {
        Some("/api/v1/servers/{name}/authorized_keys") => Some(LoginEndpoint::AuthorizedKeys),
        Some("/api/v1/servers/{name}/principals") => Some(LoginEndpoint::Principals),
        _ => None,
    };
    let response = next.run(req).await;
    if let Some(endpoint) = endpoint {
        let status = response.status();
        let outcome = if status.is_server_error() {
            LoginOutcome::Failed
        } else if status.is_client_error() {
            LoginOutcome::Refused
        } else {
            LoginOutcome::Answered
        };
        state.services.metrics.count_login_answer(endpoint, outcome);
    }
    response
}
