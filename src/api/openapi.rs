//! The OpenAPI 3 description of the API, generated from the handlers' annotations and the
//! types they exchange, served at `GET /api/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    __path_metrics, access_requests, audit, blocklist, certificates, effective_access, grants,
    groups, keys, policy, servers, tokens, users,
};
use crate::http::error::Problem;

#[derive(OpenApi)]
#[openapi(
    info(title = "keyportal", description = "SSH key management portal: users, keys, servers, grants, and authorized_keys for sshd."),
    paths(
        users::me, users::list_users, users::create_user, users::get_user, users::update_user, users::delete_user,
        keys::list_keys, keys::add_key, keys::import_keys, keys::validate_key, keys::get_key, keys::delete_key,
        servers::list_servers, servers::create_server, servers::get_server, servers::update_server, servers::delete_server, servers::authorized_keys,
        grants::list_grants, grants::create_grant, grants::delete_grant,
        groups::list_groups, groups::create_group, groups::get_group, groups::update_group, groups::delete_group, groups::add_group_member, groups::remove_group_member,
        groups::list_server_groups, groups::create_server_group, groups::get_server_group, groups::update_server_group, groups::delete_server_group,
        groups::add_server_group_member, groups::remove_server_group_member, groups::create_server_group_grant,
        effective_access::server_access, effective_access::user_access,
        access_requests::list_access_requests, access_requests::create_access_request, access_requests::approve_access_request, access_requests::deny_access_request,
        tokens::list_tokens, tokens::create_token, tokens::revoke_token, tokens::list_user_tokens, tokens::revoke_user_token,
        tokens::create_server_token, tokens::list_server_tokens, tokens::revoke_server_token,
        policy::get_policy, policy::put_policy, policy::preview_policy, policy::dashboard, audit::audit, metrics,
        blocklist::list_blocklist, blocklist::add_to_blocklist, blocklist::import_blocklist, blocklist::delete_from_blocklist, blocklist::scan_shared_primes,
        users::sync_provider_users,
        certificates::issue_for_key, certificates::issue_by_fingerprint, certificates::key_certificates, certificates::revoke,
        certificates::principals, certificates::host_certificate, certificates::user_ca, certificates::known_hosts, certificates::krl,
    ),
    components(schemas(Problem, crate::http::error::FieldError, crate::keys::KeyErrorCode, crate::keys::CompromiseReason, effective_access::AccessFormat)),
    modifiers(&BearerAuth, &CommonErrors),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("an API token: personal (keyportal token create) or server (keyportal server token)")).build()),
        );
    }
}

/// The problem responses every operation can give, added once here rather than in each
/// handler's annotation (which lists only its own success and specific errors).
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let common = [
            ("400", "malformed request"),
            ("401", "not authenticated"),
            ("403", "not allowed"),
            ("404", "not found, or not visible to the caller"),
            ("503", "database unavailable"),
        ];
        // Operations that take input (a body or query parameters) may find it invalid.
        let invalid = ("422", "well-formed but invalid: `errors` names the field");
        for (path, item) in openapi.paths.paths.iter_mut() {
            if path == "/metrics" {
                continue;
            }
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let takes_input = operation.request_body.is_some()
                    || operation.parameters.iter().flatten().any(|p| {
                        matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query)
                    });
                let extra = takes_input.then_some(invalid);
                for (status, description) in common.into_iter().chain(extra) {
                    let problem = ResponseBuilder::new()
                        .description(description)
                        .content(
                            "application/problem+json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("Problem")))
                                .build(),
                        )
                        .build();
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert(problem.into());
                }
            }
        }
    }
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
