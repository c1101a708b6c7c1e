//! SSH certificates: issuing user certificates for stored keys, the CAs' public keys, the
//! live principals check sshd runs at each certificate login, the KRL, and host certificates.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::extract::{ApiJson, ApiQuery, Auth};
use super::{created, ApiResult};
use crate::http::error::Problem;
use crate::http::AppState;
use crate::service::certificates::{
    CertificateAsk, CertificateView, HostCertificate, IssuedCertificate,
};
use crate::service::object_id;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/keys/{id}/certificate", post(issue_for_key))
        .route("/api/v1/keys/{id}/certificates", get(key_certificates))
        .route("/api/v1/certificates", post(issue_by_fingerprint))
        .route("/api/v1/certificates/{serial}/revoke", post(revoke))
        .route("/api/v1/servers/{name}/principals", get(principals))
        .route(
            "/api/v1/servers/{name}/host-certificate",
            post(host_certificate),
        )
        .route("/api/v1/ca/user", get(user_ca))
        .route("/api/v1/ca/known_hosts", get(known_hosts))
        .route("/api/v1/ca/krl", get(krl))
}

const TEXT: &str = "text/plain; charset=utf-8";

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CertificateRequest {
    /// Only for this server; its grants' `command` and `from` become `force-command` and
    /// `source-address`. Without it, only logins whose grants carry no options are certified.
    server: Option<String>,
    /// Only these logins (each must be granted); default: every granted login.
    logins: Option<Vec<String>>,
    /// Seconds; default and most: the policy's `max_certificate_validity`.
    validity: Option<u32>,
}

impl From<CertificateRequest> for CertificateAsk {
    fn from(r: CertificateRequest) -> Self {
        CertificateAsk {
            server: r.server,
            logins: r.logins,
            validity: r.validity,
        }
    }
}

#[utoipa::path(post, path = "/api/v1/keys/{id}/certificate", tag = "certificates", params(("id" = String, Path, description = "key id")), request_body = CertificateRequest, responses((status = 201, description = "an OpenSSH user certificate for the key, signed by the user CA", body = IssuedCertificate), (status = 422, description = "the key fails validation (the validator's `code`), `login_not_granted`, `no_grantable_login`, `certificate_key_type_unsupported`", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn issue_for_key(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<CertificateRequest>,
) -> ApiResult<impl IntoResponse> {
    let cert = s
        .services
        .issue_certificate(&ctx, object_id(&id, "key")?, b.into())
        .await?;
    Ok(created(cert))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CertificateByFingerprint {
    /// The SHA256 fingerprint of one of the caller's stored keys (`keyportal cert` sends it).
    fingerprint: String,
    server: Option<String>,
    logins: Option<Vec<String>>,
    validity: Option<u32>,
}

#[utoipa::path(post, path = "/api/v1/certificates", tag = "certificates", request_body = CertificateByFingerprint, responses((status = 201, description = "an OpenSSH user certificate for the caller's key with this fingerprint", body = IssuedCertificate)), security(("bearer" = [])))]
pub(super) async fn issue_by_fingerprint(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiJson(b): ApiJson<CertificateByFingerprint>,
) -> ApiResult<impl IntoResponse> {
    let ask = CertificateAsk {
        server: b.server,
        logins: b.logins,
        validity: b.validity,
    };
    let cert = s
        .services
        .issue_certificate_by_fingerprint(&ctx, &b.fingerprint, ask)
        .await?;
    Ok(created(cert))
}

#[utoipa::path(get, path = "/api/v1/keys/{id}/certificates", tag = "certificates", params(("id" = String, Path, description = "key id")), responses((status = 200, description = "the key's certificates, newest first (at most 100)", body = Vec<CertificateView>)), security(("bearer" = [])))]
pub(super) async fn key_certificates(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        s.services
            .key_certificates(&ctx, object_id(&id, "key")?)
            .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/certificates/{serial}/revoke", tag = "certificates", params(("serial" = i64, Path, description = "certificate serial")), responses((status = 204, description = "revoked: refused at the next login, and in the KRL until it expires"), (status = 409, description = "already revoked or expired (`certificate_not_revocable`)", body = Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn revoke(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(serial): Path<String>,
) -> ApiResult<StatusCode> {
    let serial = serial.parse::<i64>().ok().filter(|n| *n > 0).ok_or(
        crate::service::ServiceError::NotFound {
            what: "certificate",
        },
    )?;
    s.services.revoke_certificate(&ctx, serial).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/servers/{name}/principals`: sshd's `%u %i %s`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct PrincipalsQuery {
    /// The login (`%u`).
    login: String,
    /// The certificate's key id (`%i`).
    key_id: String,
    /// The certificate's serial (`%s`).
    serial: i64,
}

#[utoipa::path(get, path = "/api/v1/servers/{name}/principals", tag = "certificates", params(("name" = String, Path, description = "server name"), PrincipalsQuery), responses((status = 200, description = "`[options ]login` if the certificate is live and a grant still allows the login; empty otherwise", body = String, content_type = "text/plain")), security(("bearer" = [])))]
pub(super) async fn principals(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<PrincipalsQuery>,
) -> ApiResult<impl IntoResponse> {
    let text = s
        .services
        .principals(&ctx, &name, &q.login, &q.key_id, q.serial)
        .await?;
    Ok(([(header::CONTENT_TYPE, TEXT)], text))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct HostCertificateRequest {
    /// The server's host public keys (`/etc/ssh/ssh_host_*_key.pub` lines).
    host_keys: Vec<String>,
    /// Seconds; default 90 days, at most 366 days.
    validity: Option<u32>,
}

#[utoipa::path(post, path = "/api/v1/servers/{name}/host-certificate", tag = "certificates", params(("name" = String, Path, description = "server name")), request_body = HostCertificateRequest, responses((status = 201, description = "one host certificate per host key, for the server's name and hostname", body = Vec<HostCertificate>)), security(("bearer" = [])))]
pub(super) async fn host_certificate(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
    ApiJson(b): ApiJson<HostCertificateRequest>,
) -> ApiResult<impl IntoResponse> {
    let certs = s
        .services
        .host_certificates(&ctx, &name, &b.host_keys, b.validity)
        .await?;
    Ok(created(certs))
}

#[utoipa::path(get, path = "/api/v1/ca/user", tag = "certificates", responses((status = 200, description = "the TrustedUserCAKeys file: the signing user CA, then older CAs still trusted", body = String, content_type = "text/plain")))]
pub(super) async fn user_ca(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok(([(header::CONTENT_TYPE, TEXT)], s.services.user_ca_keys()?))
}

#[utoipa::path(get, path = "/api/v1/ca/known_hosts", tag = "certificates", responses((status = 200, description = "the `@cert-authority` known_hosts line of the host CA", body = String, content_type = "text/plain")))]
pub(super) async fn known_hosts(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok(([(header::CONTENT_TYPE, TEXT)], s.services.known_hosts()?))
}

#[utoipa::path(get, path = "/api/v1/ca/krl", tag = "certificates", responses((status = 200, description = "the KRL (PROTOCOL.krl), signed by the user CA; `keyportal fetch-krl` checks and installs it", body = Vec<u8>, content_type = "application/octet-stream")), security(("bearer" = [])))]
pub(super) async fn krl(
    State(s): State<AppState>,
    Auth(ctx): Auth,
) -> ApiResult<impl IntoResponse> {
    let bytes = s.services.krl(&ctx).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        bytes,
    ))
}
