//! The validation policy: read it, preview a change, replace it; and the dashboard's counts.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::extract::{ApiJson, Auth};
use super::ApiResult;
use crate::http::AppState;
use crate::keys::Policy;
use crate::service::dashboard::{Dashboard, PolicyPreview};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/policy", get(get_policy).put(put_policy))
        .route("/api/v1/policy/preview", post(preview_policy))
        .route("/api/v1/dashboard", get(dashboard))
}

#[utoipa::path(post, path = "/api/v1/policy/preview", tag = "policy", request_body = Policy, responses((status = 200, description = "how many keys valid today the proposed policy would invalidate, and the first of them; nothing is saved", body = PolicyPreview)), security(("bearer" = [])))]
pub(super) async fn preview_policy(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiJson(p): ApiJson<Policy>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.services.policy_preview(&ctx, &p).await?))
}

#[utoipa::path(get, path = "/api/v1/dashboard", tag = "policy", responses((status = 200, description = "counts of the keys the caller may see by verdict (and, for admins, totals), with the first keys needing attention", body = Dashboard)), security(("bearer" = [])))]
pub(super) async fn dashboard(
    State(s): State<AppState>,
    Auth(ctx): Auth,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.services.dashboard(&ctx).await?))
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
