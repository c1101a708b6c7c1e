//! The blocklist of compromised keys (admins): list, add, import, delete.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::extract::{ApiJson, ApiQuery, Auth};
use super::{created, ApiResult};
use crate::http::error::Problem;
use crate::http::AppState;
use crate::service::blocklist::{BlockEntryView, BlockImportReport, BlockTarget};
use crate::service::compromised::ScanReport;
use crate::service::{object_id, Listing, ServiceError};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/blocklist",
            get(list_blocklist).post(add_to_blocklist),
        )
        .route("/api/v1/blocklist/import", post(import_blocklist))
        .route("/api/v1/blocklist/scan", post(scan_shared_primes))
        .route("/api/v1/blocklist/{id}", delete(delete_from_blocklist))
}

/// `GET /api/v1/blocklist`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct BlocklistQuery {
    /// Page size, 1-500, default 50.
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/blocklist", tag = "blocklist", params(BlocklistQuery), responses((status = 200, description = "blocklist entries, oldest first", body = Listing<BlockEntryView>)), security(("bearer" = [])))]
pub(super) async fn list_blocklist(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiQuery(q): ApiQuery<BlocklistQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        s.services
            .list_blocklist(&ctx, q.limit, q.cursor.as_deref())
            .await?,
    ))
}

/// Exactly one of `fingerprint` and `key`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AddEntry {
    /// `SHA256:` and 43 base64 characters, as `ssh-keygen -l -E sha256` prints it.
    fingerprint: Option<String>,
    /// A whole public key, `type base64 [comment]`.
    key: Option<String>,
    /// Why the key is compromised (1-1024 characters).
    reason: String,
}

#[utoipa::path(post, path = "/api/v1/blocklist", tag = "blocklist", request_body = AddEntry, responses((status = 201, description = "added: the key is refused from the next read on", body = BlockEntryView), (status = 409, description = "`already_blocklisted`", body = Problem, content_type = "application/problem+json"), (status = 422, description = "`invalid_field`: not a fingerprint or key, or no reason", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn add_to_blocklist(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiJson(b): ApiJson<AddEntry>,
) -> ApiResult<impl IntoResponse> {
    let target = match (b.fingerprint, b.key) {
        (Some(fp), None) => BlockTarget::Fingerprint(fp),
        (None, Some(key)) => BlockTarget::Key(key),
        _ => {
            return Err(ServiceError::invalid(
                "fingerprint",
                "give exactly one of fingerprint and key",
            )
            .into())
        }
    };
    Ok(created(
        s.services.add_to_blocklist(&ctx, target, &b.reason).await?,
    ))
}

/// `POST /api/v1/blocklist/import`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ImportQuery {
    /// The reason recorded with every entry of the file.
    reason: String,
}

#[utoipa::path(post, path = "/api/v1/blocklist/import", tag = "blocklist", params(ImportQuery), request_body(content = String, content_type = "text/plain", description = "one SHA256 fingerprint or public key per line; blank lines and # comments skipped"), responses((status = 200, description = "per-line report; new entries added in one transaction", body = BlockImportReport)), security(("bearer" = [])))]
pub(super) async fn import_blocklist(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiQuery(q): ApiQuery<ImportQuery>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        s.services.import_blocklist(&ctx, &body, &q.reason).await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/blocklist/{id}", tag = "blocklist", params(("id" = String, Path, description = "entry id (UUID)")), responses((status = 204, description = "deleted: the key is judged without the entry from the next read on")), security(("bearer" = [])))]
pub(super) async fn delete_from_blocklist(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.services
        .delete_from_blocklist(&ctx, object_id(&id, "blocklist entry")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/blocklist/scan", tag = "blocklist", responses((status = 200, description = "batch GCD over every stored RSA modulus done: each that shares a prime is on the blocklist (`shared_prime`); running it again adds nothing new", body = ScanReport), (status = 409, description = "`scan_running`: another process is scanning", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn scan_shared_primes(
    State(s): State<AppState>,
    Auth(ctx): Auth,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.services.scan_shared_primes(&ctx).await?))
}
