//! The validation policy: read it, replace it.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use super::extract::{ApiJson, Auth};
use super::ApiResult;
use crate::http::AppState;
use crate::keys::Policy;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/api/v1/policy", get(get_policy).put(put_policy))
}

#[utoipa::path(get, path = "/api/v1/policy", tag = "policy", responses((status = 200, description = "the policy in force", body = Policy)), security(("bearer" = [])))]
pub(super) async fn get_policy(
    State(s): State<AppState>,
    Auth(ctx): Auth,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.services.policy(&ctx).await?))
}

#[utoipa::path(put, path = "/api/v1/policy", tag = "policy", request_body = Policy, responses((status = 200, description = "saved and audited", body = Policy)), security(("bearer" = [])))]
pub(super) async fn put_policy(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiJson(p): ApiJson<Policy>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.services.set_policy(&ctx, p).await?))
}
