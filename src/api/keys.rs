//! SSH keys: listing, adding and importing a user's keys, checking a key without storing it,
//! and reading or deleting one.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use time::OffsetDateTime;

use super::extract::{ApiJson, ApiQuery, Auth};
use super::{created, ApiResult};
use crate::http::error::Problem;
use crate::http::AppState;
use crate::service::keys::{ImportReport, KeyView};
use crate::service::{object_id, Listing};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/users/{username}/keys",
            get(list_keys).post(add_key),
        )
        .route("/api/v1/users/{username}/keys/import", post(import_keys))
        .route("/api/v1/keys/validate", post(validate_key))
        .route("/api/v1/keys/{id}", get(get_key).delete(delete_key))
}

/// `GET /api/v1/users/{username}/keys`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct KeysQuery {
    /// Page size, 1-500, default 50.
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/users/{username}/keys", tag = "keys", params(("username" = String, Path, description = "user name"), KeysQuery), responses((status = 200, description = "keys, each validated now under the current policy", body = Listing<KeyView>)), security(("bearer" = [])))]
pub(super) async fn list_keys(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(username): Path<String>,
    ApiQuery(q): ApiQuery<KeysQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        s.services
            .list_keys(&ctx, &username, q.limit, q.cursor.as_deref())
            .await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AddKey {
    key: String,
    title: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
}

#[utoipa::path(post, path = "/api/v1/users/{username}/keys", tag = "keys", params(("username" = String, Path, description = "user name")), request_body = AddKey, responses((status = 201, description = "validated and stored", body = KeyView), (status = 409, description = "conflict: duplicate key (`duplicate_key`), or the user would pass the policy's max_keys_per_user (`key_quota_exceeded`; nothing is added)", body = Problem, content_type = "application/problem+json"), (status = 422, description = "the key is rejected: `code` is the validator's (`../shared/spec/key-validation.md`), and the message says what to do", body = Problem, content_type = "application/problem+json"), (status = 413, description = "body too large", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn add_key(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(username): Path<String>,
    ApiJson(b): ApiJson<AddKey>,
) -> ApiResult<impl IntoResponse> {
    let key = s
        .services
        .add_key(
            &ctx,
            &username,
            b.key.as_bytes(),
            b.title.as_deref(),
            b.expires_at,
        )
        .await?;
    Ok(created(key))
}

#[utoipa::path(post, path = "/api/v1/users/{username}/keys/import", tag = "keys", params(("username" = String, Path, description = "user name")), request_body(content = String, content_type = "text/plain", description = "an authorized_keys file"), responses((status = 200, description = "per-line report; valid new keys added in one transaction", body = ImportReport), (status = 409, description = "conflict: duplicate key (`duplicate_key`), or the user would pass the policy's max_keys_per_user (`key_quota_exceeded`; nothing is added)", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn import_keys(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(username): Path<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.services.import_keys(&ctx, &username, &body).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ValidateKey {
    key: String,
}

/// The validator's verdict on a valid key.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct ValidationView {
    valid: bool,
    algorithm: String,
    bits: u32,
    public_key: String,
    comment: String,
    fingerprint_sha256: String,
    fingerprint_md5: String,
    format: crate::keys::InputFormat,
}

#[utoipa::path(post, path = "/api/v1/keys/validate", tag = "keys", request_body = ValidateKey, responses((status = 200, description = "the verdict; nothing stored", body = ValidationView), (status = 422, description = "the key is rejected: `code` is the validator's (`../shared/spec/key-validation.md`), and the message says what to do", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn validate_key(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiJson(b): ApiJson<ValidateKey>,
) -> ApiResult<impl IntoResponse> {
    let k = s.services.check_key(&ctx, b.key.as_bytes()).await?;
    Ok(Json(ValidationView {
        valid: true,
        algorithm: k.algorithm().as_str().to_owned(),
        bits: k.bits(),
        public_key: k.public_key().to_owned(),
        comment: k.comment().to_owned(),
        fingerprint_sha256: k.fingerprint_sha256().to_owned(),
        fingerprint_md5: k.fingerprint_md5().to_owned(),
        format: k.format(),
    }))
}

#[utoipa::path(get, path = "/api/v1/keys/{id}", tag = "keys", params(("id" = String, Path, description = "id (UUID)")), responses((status = 200, description = "the key, validated now", body = KeyView)), security(("bearer" = [])))]
pub(super) async fn get_key(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        s.services.get_key(&ctx, object_id(&id, "key")?).await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/keys/{id}", tag = "keys", params(("id" = String, Path, description = "id (UUID)")), responses((status = 204, description = "deleted")), security(("bearer" = [])))]
pub(super) async fn delete_key(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.services.delete_key(&ctx, object_id(&id, "key")?).await?;
    Ok(StatusCode::NO_CONTENT)
}
