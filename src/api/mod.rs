//! The JSON API under `/api/v1` (contract: `shared/spec/api.md`). Each handler reads its input,
//! calls one service function, and renders the answer; the rules live in [`crate::service`].

mod extract;
mod openapi;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Deserializer};
use time::OffsetDateTime;

use crate::domain::Role;
use crate::http::error::ApiError;
use crate::http::error::Problem;
use crate::http::AppState;
use crate::keys::Policy;
use crate::service::audit::AuditEvent;
use crate::service::grants::GrantView;
use crate::service::keys::{ImportReport, KeyView};
use crate::service::servers::ServerView;
use crate::service::tokens::{NewToken, TokenView};
use crate::service::users::UserView;
use crate::service::{grants::NewGrant, users::NewUser, users::UserPatch};
use crate::service::{object_id, Listing};
use extract::{ApiJson, ApiQuery, Auth, ListQuery};

/// The OpenAPI document of this API.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    <openapi::ApiDoc as utoipa::OpenApi>::openapi()
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me", get(me))
        .route("/api/v1/users", get(list_users).post(create_user))
        .route(
            "/api/v1/users/{username}",
            get(get_user).patch(update_user).delete(delete_user),
        )
        .route(
            "/api/v1/users/{username}/keys",
            get(list_keys).post(add_key),
        )
        .route("/api/v1/users/{username}/keys/import", post(import_keys))
        .route("/api/v1/users/{username}/tokens", get(list_user_tokens))
        .route(
            "/api/v1/users/{username}/tokens/{id}",
            delete(revoke_user_token),
        )
        .route("/api/v1/keys/validate", post(validate_key))
        .route("/api/v1/keys/{id}", get(get_key).delete(delete_key))
        .route("/api/v1/servers", get(list_servers).post(create_server))
        .route(
            "/api/v1/servers/{name}",
            get(get_server).patch(update_server).delete(delete_server),
        )
        .route(
            "/api/v1/servers/{name}/grants",
            get(list_grants).post(create_grant),
        )
        .route(
            "/api/v1/servers/{name}/authorized_keys",
            get(authorized_keys),
        )
        .route(
            "/api/v1/servers/{name}/tokens",
            get(list_server_tokens).post(create_server_token),
        )
        .route(
            "/api/v1/servers/{name}/tokens/{id}",
            delete(revoke_server_token),
        )
        .route("/api/v1/grants/{id}", delete(delete_grant))
        .route("/api/v1/policy", get(get_policy).put(put_policy))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{id}", delete(revoke_token))
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

#[utoipa::path(get, path = "/api/v1/me", tag = "account", responses((status = 200, description = "the caller", body = Object)), security(("bearer" = [])))]
async fn me(State(s): State<AppState>, Auth(ctx): Auth) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.services.me(&ctx).await?))
}

// ---- users

#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(("limit" = Option<i64>, Query, description = "page size, 1-500, default 50"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"), ("q" = Option<String>, Query, description = "search in name, display name, email")), responses((status = 200, description = "users by name", body = Listing<UserView>), (status = 422, description = "well-formed but invalid (a rejected key carries the validator's code)", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
async fn list_users(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        s.services
            .list_users(&ctx, q.q.as_deref(), q.limit, q.cursor.as_deref())
            .await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    username: String,
    display_name: Option<String>,
    email: Option<String>,
    role: Option<Role>,
    password: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUser, responses((status = 201, description = "created", body = UserView), (status = 409, description = "conflict: name taken, duplicate key", body = Problem, content_type = "application/problem+json"), (status = 422, description = "well-formed but invalid (a rejected key carries the validator's code)", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
async fn create_user(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiJson(b): ApiJson<CreateUser>,
) -> ApiResult<impl IntoResponse> {
    let new = NewUser {
        username: b.username,
        display_name: b.display_name,
        email: b.email,
        role: b.role,
        password: b.password,
    };
    Ok(created(s.services.create_user(&ctx, new).await?))
}

#[utoipa::path(get, path = "/api/v1/users/{username}", tag = "users", params(("username" = String, Path, description = "user name")), responses((status = 200, description = "the user", body = UserView)), security(("bearer" = [])))]
async fn get_user(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(username): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.services.get_user(&ctx, &username).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PatchUser {
    display_name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    email: Option<Option<String>>,
    role: Option<Role>,
    disabled: Option<bool>,
    password: Option<String>,
    /// Required with `password` when changing one's own password.
    current_password: Option<String>,
}

#[utoipa::path(patch, path = "/api/v1/users/{username}", tag = "users", params(("username" = String, Path, description = "user name")), request_body = PatchUser, responses((status = 200, description = "updated", body = UserView), (status = 400, description = "malformed; `current_password_required` when changing one's own password without current_password", body = Problem, content_type = "application/problem+json"), (status = 403, description = "not allowed; `current_password_wrong` when changing one's own password with a wrong current_password", body = Problem, content_type = "application/problem+json"), (status = 409, description = "conflict: the last enabled admin cannot be demoted or disabled (`last_admin`)", body = Problem, content_type = "application/problem+json"), (status = 422, description = "well-formed but invalid (a rejected key carries the validator's code)", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
async fn update_user(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(username): Path<String>,
    ApiJson(b): ApiJson<PatchUser>,
) -> ApiResult<impl IntoResponse> {
    let patch = UserPatch {
        display_name: b.display_name,
        email: b.email,
        role: b.role,
        disabled: b.disabled,
        password: b.password,
        current_password: b.current_password,
    };
    Ok(Json(s.services.update_user(&ctx, &username, patch).await?))
}

#[utoipa::path(delete, path = "/api/v1/users/{username}", tag = "users", params(("username" = String, Path, description = "user name")), responses((status = 204, description = "deleted"), (status = 409, description = "conflict: name taken, duplicate key", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
async fn delete_user(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(username): Path<String>,
) -> ApiResult<StatusCode> {
    s.services.delete_user(&ctx, &username).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- keys

#[utoipa::path(get, path = "/api/v1/users/{username}/keys", tag = "keys", params(("username" = String, Path, description = "user name"), ("limit" = Option<i64>, Query, description = "page size, 1-500, default 50"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")), responses((status = 200, description = "keys, each validated now under the current policy", body = Listing<KeyView>), (status = 422, description = "well-formed but invalid (a rejected key carries the validator's code)", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
async fn list_keys(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(username): Path<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        s.services
            .list_keys(&ctx, &username, q.limit, q.cursor.as_deref())
            .await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AddKey {
    key: String,
    title: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
}

#[utoipa::path(post, path = "/api/v1/users/{username}/keys", tag = "keys", params(("username" = String, Path, description = "user name")), request_body = AddKey, responses((status = 201, description = "validated and stored", body = KeyView), (status = 409, description = "conflict: duplicate key (`duplicate_key`), or the user would pass the policy's max_keys_per_user (`key_quota_exceeded`; nothing is added)", body = Problem, content_type = "application/problem+json"), (status = 422, description = "well-formed but invalid (a rejected key carries the validator's code)", body = Problem, content_type = "application/problem+json"), (status = 413, description = "body too large", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
async fn add_key(
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

#[utoipa::path(post, path = "/api/v1/users/{username}/keys/import", tag = "keys", params(("username" = String, Path, description = "user name")), request_body(content = String, content_type = "text/plain", description = "an authorized_keys file"), responses((status = 200, description = "per-line report; valid new keys added in one transaction", body = ImportReport), (status = 409, description = "conflict: duplicate key (`duplicate_key`), or the user would pass the policy's max_keys_per_user (`key_quota_exceeded`; nothing is added)", body = Problem, content_type = "application/problem+json"), (status = 422, description = "well-formed but invalid (a rejected key carries the validator's code)", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
async fn import_keys(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(username): Path<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.services.import_keys(&ctx, &username, &body).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ValidateKey {
    key: String,
}

/// The validator's verdict on a valid key.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct ValidationView {
    valid: bool,
    algorithm: String,
    bits: u32,
    public_key: String,
    comment: String,
    fingerprint_sha256: String,
    fingerprint_md5: String,
    format: crate::keys::InputFormat,
}

#[utoipa::path(post, path = "/api/v1/keys/validate", tag = "keys", request_body = ValidateKey, responses((status = 200, description = "the verdict; nothing stored", body = ValidationView), (status = 422, description = "well-formed but invalid (a rejected key carries the validator's code)", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
async fn validate_key(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiJson(b): ApiJson<ValidateKey>,
) -> ApiResult<impl IntoResponse> {
    let k = s.services.check_key(&ctx, b.key.as_bytes()).await?;
    Ok(Json(ValidationView {
        valid: true,
        algorithm: k.algorithm.as_str().to_owned(),
        bits: k.bits,
        public_key: k.public_key,
        comment: k.comment,
        fingerprint_sha256: k.fingerprint_sha256,
        fingerprint_md5: k.fingerprint_md5,
        format: k.format,
    }))
}

#[utoipa::path(get, path = "/api/v1/keys/{id}", tag = "keys", params(("id" = String, Path, description = "id (UUID)")), responses((status = 200, description = "the key, validated now", body = KeyView)), security(("bearer" = [])))]
async fn get_key(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        s.services.get_key(&ctx, object_id(&id, "key")?).await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/keys/{id}", tag = "keys", params(("id" = String, Path, description = "id (UUID)")), responses((status = 204, description = "deleted")), security(("bearer" = [])))]
async fn delete_key(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.services.delete_key(&ctx, object_id(&id, "key")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- servers and grants

#[utoipa::path(get, path = "/api/v1/servers", tag = "servers", params(("limit" = Option<i64>, Query, description = "page size, 1-500, default 50"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"), ("q" = Option<String>, Query, description = "search in name and hostname")), responses((status = 200, description = "servers (members: those they hold grants on)", body = Listing<ServerView>), (status = 422, description = "well-formed but invalid (a rejected key carries the validator's code)", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
async fn list_servers(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        s.services
            .list_servers(&ctx, q.q.as_deref(), q.limit, q.cursor.as_deref())
            .await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateServer {
    name: String,
    hostname: Option<String>,
    description: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/servers", tag = "servers", request_body = CreateServer, responses((status = 201, description = "created", body = ServerView), (status = 409, description = "conflict: name taken, duplicate key", body = Problem, content_type = "application/problem+json"), (status = 422, description = "well-formed but invalid (a rejected key carries the validator's code)", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
async fn create_server(
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
async fn get_server(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.services.get_server(&ctx, &name).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PatchServer {
    hostname: Option<String>,
    description: Option<String>,
}

#[utoipa::path(patch, path = "/api/v1/servers/{name}", tag = "servers", params(("name" = String, Path, description = "server name")), request_body = PatchServer, responses((status = 200, description = "updated", body = ServerView), (status = 422, description = "well-formed but invalid (a rejected key carries the validator's code)", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
async fn update_server(
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
async fn delete_server(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.services.delete_server(&ctx, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/servers/{name}/grants", tag = "grants", params(("name" = String, Path, description = "server name"), ("limit" = Option<i64>, Query, description = "page size, 1-500, default 50"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"), ("username" = Option<String>, Query, description = "only this user's grants")), responses((status = 200, description = "grants on the server", body = Listing<GrantView>), (status = 422, description = "well-formed but invalid (a rejected key carries the validator's code)", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
async fn list_grants(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        s.services
            .list_grants(
                &ctx,
                &name,
                q.username.as_deref(),
                q.limit,
                q.cursor.as_deref(),
            )
            .await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateGrant {
    username: String,
    login: String,
    key_id: Option<uuid::Uuid>,
    options: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
}

#[utoipa::path(post, path = "/api/v1/servers/{name}/grants", tag = "grants", params(("name" = String, Path, description = "server name")), request_body = CreateGrant, responses((status = 201, description = "created", body = GrantView), (status = 409, description = "conflict: name taken, duplicate key", body = Problem, content_type = "application/problem+json"), (status = 422, description = "well-formed but invalid (a rejected key carries the validator's code)", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
async fn create_grant(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
    ApiJson(b): ApiJson<CreateGrant>,
) -> ApiResult<impl IntoResponse> {
    let new = NewGrant {
        username: b.username,
        login: b.login,
        key_id: b.key_id,
        options: b.options,
        expires_at: b.expires_at,
    };
    Ok(created(s.services.create_grant(&ctx, &name, new).await?))
}

#[utoipa::path(delete, path = "/api/v1/grants/{id}", tag = "grants", params(("id" = String, Path, description = "id (UUID)")), responses((status = 204, description = "deleted")), security(("bearer" = [])))]
async fn delete_grant(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.services
        .delete_grant(&ctx, object_id(&id, "grant")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AuthorizedKeysQuery {
    login: String,
    fingerprint: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/servers/{name}/authorized_keys", tag = "servers", params(("name" = String, Path, description = "server name"), AuthorizedKeysQuery), responses((status = 200, description = "authorized_keys lines for the login", body = String, content_type = "text/plain")), security(("bearer" = [])))]
async fn authorized_keys(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<AuthorizedKeysQuery>,
) -> ApiResult<impl IntoResponse> {
    let text = s
        .services
        .authorized_keys(&ctx, &name, &q.login, q.fingerprint.as_deref())
        .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateServerToken {
    name: Option<String>,
    /// When the token stops working; none: until revoked.
    #[serde(default, with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
}

/// The body is optional: `{ "name": ... }` or nothing.
#[utoipa::path(post, path = "/api/v1/servers/{name}/tokens", tag = "tokens", params(("name" = String, Path, description = "server name")), request_body = Option<CreateServerToken>, responses((status = 201, description = "a server token; the secret is shown once", body = NewToken), (status = 422, description = "well-formed but invalid (a rejected key carries the validator's code)", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
async fn create_server_token(
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
async fn list_server_tokens(
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
async fn revoke_server_token(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.services
        .revoke_server_token(&ctx, &name, object_id(&id, "token")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/users/{username}/tokens", tag = "tokens", params(("username" = String, Path, description = "user name")), responses((status = 200, description = "the user's personal tokens that are not revoked", body = Listing<TokenView>)), security(("bearer" = [])))]
async fn list_user_tokens(
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
async fn revoke_user_token(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path((username, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.services
        .revoke_user_token(&ctx, &username, object_id(&id, "token")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- policy, audit, tokens, metrics

#[utoipa::path(get, path = "/api/v1/policy", tag = "policy", responses((status = 200, description = "the policy in force", body = Policy)), security(("bearer" = [])))]
async fn get_policy(State(s): State<AppState>, Auth(ctx): Auth) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.services.policy(&ctx).await?))
}

#[utoipa::path(put, path = "/api/v1/policy", tag = "policy", request_body = Policy, responses((status = 200, description = "saved and audited", body = Policy), (status = 422, description = "well-formed but invalid (a rejected key carries the validator's code)", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
async fn put_policy(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiJson(p): ApiJson<Policy>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.services.set_policy(&ctx, p).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery), responses((status = 200, description = "events, newest first", body = Listing<AuditEvent>), (status = 422, description = "well-formed but invalid (a rejected key carries the validator's code)", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
async fn audit(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<impl IntoResponse> {
    let f = crate::service::audit::AuditFilter {
        actor: q.actor,
        action: q.action,
        target: q.target,
        limit: q.limit,
        cursor: q.cursor,
    };
    Ok(Json(s.services.audit(&ctx, &f).await?))
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", responses((status = 200, description = "the caller's personal tokens", body = Listing<TokenView>)), security(("bearer" = [])))]
async fn list_tokens(State(s): State<AppState>, Auth(ctx): Auth) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        serde_json::json!({ "items": s.services.list_tokens(&ctx).await?, "next_cursor": null }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    name: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = CreateToken, responses((status = 201, description = "a personal token; the secret is shown once", body = NewToken), (status = 403, description = "`token_cannot_create_tokens`: only a browser session (or the CLI) may create tokens", body = Problem, content_type = "application/problem+json"), (status = 422, description = "well-formed but invalid (a rejected key carries the validator's code)", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
async fn create_token(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiJson(b): ApiJson<CreateToken>,
) -> ApiResult<impl IntoResponse> {
    Ok(created_secret(
        s.services.create_token(&ctx, &b.name, b.expires_at).await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path, description = "id (UUID)")), responses((status = 204, description = "revoked")), security(("bearer" = [])))]
async fn revoke_token(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.services
        .revoke_token(&ctx, object_id(&id, "token")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.services.metrics.render()
            + &s.services.passwords.render_metrics()
            + &s.services.replicas.render(),
    )
}
