//! Counts the answers to servers' login questions by outcome, whatever layer produced them: a
//! refused token (the extractor), a timeout (503) or a panic (500). It wraps the whole app, so
//! it reads the path itself (no route is matched yet out here).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::http::AppState;
use crate::service::{LoginEndpoint, LoginOutcome};

/// `/api/v1/servers/{name}/authorized_keys` and `/api/v1/servers/{name}/principals`.
fn login_endpoint(path: &str) -> Option<LoginEndpoint> {
    let (name, what) = path.strip_prefix("/api/v1/servers/")?.split_once('/')?;
    if name.is_empty() {
        return None;
    }
    match what {
        "authorized_keys" => Some(LoginEndpoint::AuthorizedKeys),
        "principals" => Some(LoginEndpoint::Principals),
        _ => None,
    }
}

pub async fn count(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let endpoint = login_endpoint(req.uri().path());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_two_login_routes_are_counted() {
        assert!(matches!(
            login_endpoint("/api/v1/servers/web1/authorized_keys"),
            Some(LoginEndpoint::AuthorizedKeys)
        ));
        assert!(matches!(
            login_endpoint("/api/v1/servers/web1/principals"),
            Some(LoginEndpoint::Principals)
        ));
        for other in [
            "/api/v1/servers//authorized_keys",
            "/api/v1/servers/web1",
            "/api/v1/servers/web1/tokens",
            "/api/v1/servers/web1/authorized_keys/x",
            "/metrics",
        ] {
            assert!(login_endpoint(other).is_none(), "{other}");
        }
    }
}
