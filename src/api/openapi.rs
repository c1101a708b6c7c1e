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
        list_grants, create_grant, delete_grant, authorized_keys, create_server_token, list_server_tokens, revoke_server_token, list_user_tokens, revoke_user_token,
        get_policy, put_policy, audit, list_tokens, create_token, revoke_token,
    ),
    components(schemas(Problem, crate::http::error::FieldError, crate::keys::KeyErrorCode)),
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
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                for (status, description) in common {
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
