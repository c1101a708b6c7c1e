//! The JSON API under `/api/v1` (contract: `shared/spec/api.md`), one module per resource,
//! each with its own `router()`. Each handler reads its input, calls one service function and
//! renders the answer; the rules live in [`crate::service`].

mod access_requests;
mod audit;
mod blocklist;
mod certificates;
mod effective_access;
mod extract;
mod grants;
mod groups;
mod keys;
mod openapi;
mod policy;
mod servers;
mod tokens;
mod users;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Deserializer};

use crate::http::error::ApiError;
use crate::http::AppState;

/// The OpenAPI document of this API.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    <openapi::ApiDoc as utoipa::OpenApi>::openapi()
}

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(users::router())
        .merge(keys::router())
        .merge(servers::router())
        .merge(grants::router())
        .merge(groups::router())
        .merge(access_requests::router())
        .merge(effective_access::router())
        .merge(tokens::router())
        .merge(policy::router())
        .merge(audit::router())
        .merge(blocklist::router())
        .merge(certificates::router())
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi::document))
}

type ApiResult<T> = Result<T, ApiError>;

fn created<T: serde::Serialize>(body: T) -> impl IntoResponse {
    (StatusCode::CREATED, Json(body))
}

/// 201 with a secret shown once: never stored by caches, and so never compressed either
/// (compression beside reflected input would leak it, BREACH).
fn created_secret<T: serde::Serialize>(body: T) -> impl IntoResponse {
    (
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(body),
    )
}

/// `Some(None)` for an explicit JSON null, `None` for an absent field.
fn double_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "counters and gauges in the Prometheus text format: build, database, login answers, validations, hashing slots, read replicas", body = String, content_type = "text/plain")))]
pub(super) async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    // Asked at scrape time, so the gauge is never older than the scrape.
    let database_up = u8::from(s.services.ready().await.is_ok());
    let head = format!(
        "# HELP keyportal_build_info The running build: crate version and git revision.\n\
         # TYPE keyportal_build_info gauge\n\
         keyportal_build_info{{version=\"{}\",revision=\"{}\"}} 1\n\
         # HELP keyportal_database_up Whether the primary database answered this scrape within 3 s.\n\
         # TYPE keyportal_database_up gauge\n\
         keyportal_database_up {database_up}\n",
        env!("CARGO_PKG_VERSION"),
        crate::GIT_REVISION,
    );
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        head + &s.services.metrics.render()
            + &s.services.passwords.render_metrics()
            + &s.services.replicas.render(),
    )
}
