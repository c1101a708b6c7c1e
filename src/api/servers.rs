//! Servers, and the authorized_keys text each asks for at every login.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::extract::{ApiJson, ApiQuery, Auth, Credentials};
use super::{created, ApiResult};
use crate::http::error::{ApiError, Problem};
use crate::http::AppState;
use crate::service::servers::ServerView;
use crate::service::Listing;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/servers", get(list_servers).post(create_server))
        .route(
            "/api/v1/servers/{name}",
            get(get_server).patch(update_server).delete(delete_server),
        )
        .route(
            "/api/v1/servers/{name}/authorized_keys",
            get(authorized_keys),
        )
}

/// `GET /api/v1/servers`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ServersQuery {
    /// Page size, 1-500, default 50.
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Search in name and hostname.
    q: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/servers", tag = "servers", params(ServersQuery), responses((status = 200, description = "servers (members: those they hold grants on)", body = Listing<ServerView>)), security(("bearer" = [])))]
pub(super) async fn list_servers(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiQuery(q): ApiQuery<ServersQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        s.services
            .list_servers(&ctx, q.q.as_deref(), q.limit, q.cursor.as_deref())
            .await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateServer {
    name: String,
    hostname: Option<String>,
    description: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/servers", tag = "servers", request_body = CreateServer, responses((status = 201, description = "created", body = ServerView), (status = 409, description = "`name_taken`: a server has this name", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn create_server(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiJson(b): ApiJson<CreateServer>,
) -> ApiResult<impl IntoResponse> {
    let server = s
        .services
        .create_server(
            &ctx,
            &b.name,
            b.hostname.as_deref(),
            b.description.as_deref(),
        )
        .await?;
    Ok(created(server))
}

#[utoipa::path(get, path = "/api/v1/servers/{name}", tag = "servers", params(("name" = String, Path, description = "server name")), responses((status = 200, description = "the server", body = ServerView)), security(("bearer" = [])))]
pub(super) async fn get_server(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.services.get_server(&ctx, &name).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchServer {
    hostname: Option<String>,
    description: Option<String>,
}

#[utoipa::path(patch, path = "/api/v1/servers/{name}", tag = "servers", params(("name" = String, Path, description = "server name")), request_body = PatchServer, responses((status = 200, description = "updated", body = ServerView)), security(("bearer" = [])))]
pub(super) async fn update_server(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
    ApiJson(b): ApiJson<PatchServer>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        s.services
            .update_server(&ctx, &name, b.hostname.as_deref(), b.description.as_deref())
            .await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/servers/{name}", tag = "servers", params(("name" = String, Path, description = "server name")), responses((status = 204, description = "deleted, with its grants and tokens")), security(("bearer" = [])))]
pub(super) async fn delete_server(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.services.delete_server(&ctx, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthorizedKeysQuery {
    login: String,
    fingerprint: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/servers/{name}/authorized_keys", tag = "servers", params(("name" = String, Path, description = "server name"), AuthorizedKeysQuery), responses((status = 200, description = "authorized_keys lines for the login", body = String, content_type = "text/plain")), security(("bearer" = [])))]
pub(super) async fn authorized_keys(
    State(s): State<AppState>,
    credentials: Credentials,
    Path(name): Path<String>,
    query: Result<ApiQuery<AuthorizedKeysQuery>, ApiError>,
) -> ApiResult<impl IntoResponse> {
    let q = match query {
        Ok(ApiQuery(q)) => q,
        Err(e) => {
            // Authenticated before its input is judged, as on every other route.
            if let Credentials::Token { secret, .. } = &credentials {
                let caller = s.services.authenticate(secret).await?;
                tracing::Span::current().record("caller", caller.actor());
            }
            return Err(e);
        }
    };
    let fingerprint = q.fingerprint.as_deref();
    let text = match credentials {
        // The token is checked by the statement that reads the key (sshd's lookup by
        // fingerprint at every login).
        Credentials::Token { secret, request_id } => {
            let read = s
                .services
                .authorized_keys_with_token(&secret, request_id, &name, &q.login, fingerprint)
                .await?;
            tracing::Span::current().record("caller", read.ctx.caller.actor());
            read.outcome?
        }
        Credentials::Session(ctx) => {
            s.services
                .authorized_keys(&ctx, &name, &q.login, fingerprint)
                .await?
        }
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text))
}
