//! API tokens: one's own personal tokens, a user's (for admins), and each server's.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use time::OffsetDateTime;

use super::extract::{ApiJson, Auth};
use super::{created_secret, ApiResult};
use crate::http::error::ApiError;
use crate::http::error::Problem;
use crate::http::AppState;
use crate::service::tokens::{NewToken, TokenView};
use crate::service::{object_id, Listing};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{id}", delete(revoke_token))
        .route("/api/v1/users/{username}/tokens", get(list_user_tokens))
        .route(
            "/api/v1/users/{username}/tokens/{id}",
            delete(revoke_user_token),
        )
        .route(
            "/api/v1/servers/{name}/tokens",
            post(create_server_token).get(list_server_tokens),
        )
        .route(
            "/api/v1/servers/{name}/tokens/{id}",
            delete(revoke_server_token),
        )
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", responses((status = 200, description = "the caller's personal tokens", body = Listing<TokenView>)), security(("bearer" = [])))]
pub(super) async fn list_tokens(
    State(s): State<AppState>,
    Auth(ctx): Auth,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        serde_json::json!({ "items": s.services.list_tokens(&ctx).await?, "next_cursor": null }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateToken {
    name: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = CreateToken, responses((status = 201, description = "a personal token; the secret is shown once", body = NewToken), (status = 403, description = "`token_cannot_create_tokens`: only a browser session (or the CLI) may create tokens", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn create_token(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiJson(b): ApiJson<CreateToken>,
) -> ApiResult<impl IntoResponse> {
    Ok(created_secret(
        s.services.create_token(&ctx, &b.name, b.expires_at).await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path, description = "id (UUID)")), responses((status = 204, description = "revoked")), security(("bearer" = [])))]
pub(super) async fn revoke_token(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.services
        .revoke_token(&ctx, object_id(&id, "token")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/users/{username}/tokens", tag = "tokens", params(("username" = String, Path, description = "user name")), responses((status = 200, description = "the user's personal tokens that are not revoked", body = Listing<TokenView>)), security(("bearer" = [])))]
pub(super) async fn list_user_tokens(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(username): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let items = s.services.list_user_tokens(&ctx, &username).await?;
    Ok(Json(Listing {
        items,
        next_cursor: None,
    }))
}

#[utoipa::path(delete, path = "/api/v1/users/{username}/tokens/{id}", tag = "tokens", params(("username" = String, Path, description = "user name"), ("id" = String, Path, description = "token id (UUID)")), responses((status = 204, description = "revoked")), security(("bearer" = [])))]
pub(super) async fn revoke_user_token(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path((username, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.services
        .revoke_user_token(&ctx, &username, object_id(&id, "token")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateServerToken {
    name: Option<String>,
    /// When the token stops working; none: until revoked.
    #[serde(default, with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
}

/// The body is optional: `{ "name": ... }` or nothing.
#[utoipa::path(post, path = "/api/v1/servers/{name}/tokens", tag = "tokens", params(("name" = String, Path, description = "server name")), request_body = Option<CreateServerToken>, responses((status = 201, description = "a server token; the secret is shown once", body = NewToken)), security(("bearer" = [])))]
pub(super) async fn create_server_token(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let b: CreateServerToken = if body.iter().all(u8::is_ascii_whitespace) {
        CreateServerToken::default()
    } else {
        let value: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest {
                code: "invalid_json",
                detail: format!("the body is not valid JSON: {e}"),
            })?;
        crate::http::input::check_json(&value)?;
        serde_json::from_value(value).map_err(|e| ApiError::BadRequest {
            code: "invalid_body",
            detail: format!("the JSON body does not fit this request: {e}"),
        })?
    };
    Ok(created_secret(
        s.services
            .create_server_token(&ctx, &name, b.name.as_deref(), b.expires_at)
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/servers/{name}/tokens", tag = "tokens", params(("name" = String, Path, description = "server name")), responses((status = 200, description = "the server's tokens that are not revoked (never their secrets)", body = Listing<TokenView>)), security(("bearer" = [])))]
pub(super) async fn list_server_tokens(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let items = s.services.list_server_tokens(&ctx, &name).await?;
    Ok(Json(Listing {
        items,
        next_cursor: None,
    }))
}

#[utoipa::path(delete, path = "/api/v1/servers/{name}/tokens/{id}", tag = "tokens", params(("name" = String, Path, description = "server name"), ("id" = String, Path, description = "token id (UUID)")), responses((status = 204, description = "revoked: the next request made with it is refused")), security(("bearer" = [])))]
pub(super) async fn revoke_server_token(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.services
        .revoke_server_token(&ctx, &name, object_id(&id, "token")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
