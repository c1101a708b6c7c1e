//! Extractors: the authenticated caller, and JSON/query input whose rejections are problem
//! documents like every other error.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use crate::http::error::ApiError;
use crate::http::session::{cookie_value, tokens_match};
use crate::http::AppState;
use crate::service::{Ctx, ServiceError};

/// The authenticated caller and the request id: every API handler starts from this.
pub struct Auth(pub Ctx);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Credentials::from_request_parts(parts, state).await? {
            Credentials::Token { secret, request_id } => {
                let caller = state.services.authenticate(&secret).await?;
                tracing::Span::current().record("caller", caller.actor());
                Ok(Auth(Ctx {
                    caller,
                    request_id,
                    session: None,
                }))
            }
            Credentials::Session(ctx) => Ok(Auth(ctx)),
        }
    }
}

/// A bearer token NOT yet checked, or the caller of a live browser session. Only for a
/// handler whose service call checks the token itself (the login path: see
/// `Services::authorized_keys_with_token`); every other handler takes [`Auth`].
pub(super) enum Credentials {
    Token {
        secret: String,
        request_id: Option<String>,
    },
    Session(Ctx),
}

impl FromRequestParts<AppState> for Credentials {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let request_id = crate::http::request_id(parts);
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        if let Some(secret) = bearer {
            return Ok(Credentials::Token {
                secret: secret.to_owned(),
                request_id,
            });
        }
        // Without a bearer token, the browser session; its writes need the CSRF header.
        let secret = cookie_value(&parts.headers, state.web.cookies().session())
            .ok_or(ApiError::Service(ServiceError::Unauthenticated))?;
        let live = state.services.session(secret, request_id).await?;
        if !parts.method.is_safe() {
            let sent = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !tokens_match(sent, &live.csrf_token) {
                return Err(ApiError::CsrfRejected);
            }
        }
        tracing::Span::current().record("caller", live.ctx.caller.actor());
        Ok(Credentials::Session(live.ctx))
    }
}

/// A JSON body; malformed JSON, wrong fields and NUL in any string are 400 problem documents.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<serde_json::Value>::from_request(req, state)
            .await
            .map_err(json_rejection)?;
        crate::http::input::check_json(&value)?;
        // Typed from the same value, so the field path still names what did not fit.
        serde_path_to_error::deserialize(value)
            .map(ApiJson)
            .map_err(|e| ApiError::BadRequest {
                code: "invalid_body",
                detail: format!("the JSON body does not fit this request: {e}"),
            })
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge;
    }
    let (code, detail) = match &r {
        JsonRejection::JsonDataError(e) => (
            "invalid_body",
            format!("the JSON body does not fit this request: {}", e.body_text()),
        ),
        JsonRejection::JsonSyntaxError(e) => (
            "invalid_json",
            format!("the body is not valid JSON: {}", e.body_text()),
        ),
        JsonRejection::MissingJsonContentType(_) => (
            "invalid_body",
            "send the body as JSON with Content-Type: application/json".to_owned(),
        ),
        other => ("invalid_body", other.body_text()),
    };
    ApiError::BadRequest { code, detail }
}

/// Query parameters; malformed ones are 400 problem documents.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::BadRequest {
                code: "invalid_query",
                detail: format!(
                    "the query string does not fit this request: {}",
                    e.body_text()
                ),
            }),
            Err(e) => Err(ApiError::BadRequest {
                code: "invalid_query",
                detail: e.body_text(),
            }),
        }
    }
}
