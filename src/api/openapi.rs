//! The OpenAPI 3 description of the API, generated from the handlers' annotations and the
//! types they exchange, served at `GET /api/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::*;

#[derive(OpenApi)]
#[openapi(
    info(title = "keyportal", description = "SSH key management portal: users, keys, servers, grants, and authorized_keys for sshd."),
    paths(
        me, list_users, create_user, get_user, update_user, delete_user,
        list_keys, add_key, import_keys, validate_key, get_key, delete_key,
        list_servers, create_server, get_server, update_server, delete_server,
        list_grants, create_grant, delete_grant, authorized_keys, create_server_token,
        get_policy, put_policy, audit, list_tokens, create_token, revoke_token,
    ),
    components(schemas(Problem, crate::http::error::FieldError, crate::keys::KeyErrorCode)),
    modifiers(&BearerAuth),
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

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
