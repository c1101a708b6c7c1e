//! Access reviews: `GET /api/v1/servers/{name}/access` and `GET /api/v1/users/{username}/access`,
//! as JSON or, with `?format=csv`, as a CSV file for a spreadsheet.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::extract::{ApiQuery, Auth};
use super::ApiResult;
use crate::http::AppState;
use crate::service::effective_access::{AccessView, CSV_HEADER};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/servers/{name}/access", get(server_access))
        .route("/api/v1/users/{username}/access", get(user_access))
}

#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum AccessFormat {
    #[default]
    Json,
    Csv,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct AccessQuery {
    /// `json` (default) or `csv`.
    format: Option<AccessFormat>,
}

fn respond(rows: Vec<AccessView>, format: Option<AccessFormat>, file: &str) -> Response {
    match format.unwrap_or_default() {
        AccessFormat::Json => Json(rows).into_response(),
        AccessFormat::Csv => {
            let mut out = String::with_capacity(128 * (rows.len() + 1));
            out.push_str(CSV_HEADER);
            out.push_str("\r\n");
            for row in &rows {
                row.csv_line(&mut out);
            }
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"access-{file}.csv\""),
                    ),
                ],
                out,
            )
                .into_response()
        }
    }
}

#[utoipa::path(get, path = "/api/v1/servers/{name}/access", tag = "groups", params(("name" = String, Path, description = "server name"), AccessQuery), responses((status = 200, description = "who can log in to the server now, as which login, with which key, and through which grant and groups (admins); `?format=csv` gives text/csv with the same columns", content((Vec<AccessView> = "application/json"), (String = "text/csv")))), security(("bearer" = [])))]
pub(super) async fn server_access(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<AccessQuery>,
) -> ApiResult<Response> {
    let rows = s.services.server_access(&ctx, &name).await?;
    Ok(respond(rows, q.format, &format!("server-{name}")))
}

#[utoipa::path(get, path = "/api/v1/users/{username}/access", tag = "groups", params(("username" = String, Path, description = "username"), AccessQuery), responses((status = 200, description = "where the user can log in now, with which key, and through which grant and groups (admins, and the user); `?format=csv` gives text/csv", content((Vec<AccessView> = "application/json"), (String = "text/csv")))), security(("bearer" = [])))]
pub(super) async fn user_access(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    Path(username): Path<String>,
    ApiQuery(q): ApiQuery<AccessQuery>,
) -> ApiResult<Response> {
    let rows = s.services.user_access(&ctx, &username).await?;
    Ok(respond(rows, q.format, &format!("user-{username}")))
}
