//! Keys pages: a user's keys (list, add by paste or upload, delete) and bulk import.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::forms::{form_errors, parse_date, Errors, Shown};
use super::session::Posted;
use super::Empty;
use super::{page, redirect_with_flash, see_other, Chrome, Viewer, WebError};
use crate::http::AppState;
use crate::keys::KeyErrorCode;
use crate::service::keys::{ImportReport, KeyView};
use crate::service::object_id;
use crate::service::{Caller, Listing, ServiceError};

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    chrome: Option<Chrome>,
    username: String,
    own: bool,
    keys: Listing<KeyView>,
    form: AddKeyForm,
    errors: Errors,
    /// Shown when a private key was pasted: the field was cleared.
    private_key_warning: bool,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct AddKeyForm {
    #[serde(default)]
    pub key: String,
    /// The contents of an uploaded .pub file (multipart); wins over the pasted text.
    #[serde(default)]
    pub file: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub expires_on: String,
}

#[derive(serde::Deserialize)]
pub struct ListParams {
    cursor: Option<String>,
}

/// "My keys": the signed-in user's keys page.
pub async fn my_keys(viewer: Viewer) -> Response {
    match &viewer.ctx().caller {
        Caller::User { username, .. } => see_other(&format!("/users/{username}/keys")),
        _ => see_other("/"),
    }
}

/// The add-key form as it is shown again: what was typed, and what is wrong with it.
struct FormAgain {
    status: StatusCode,
    form: AddKeyForm,
    errors: Errors,
    private_key_warning: bool,
}

async fn render(
    state: &AppState,
    viewer: &Viewer,
    username: &str,
    cursor: Option<&str>,
    shown: FormAgain,
) -> Result<Response, WebError> {
    let FormAgain {
        status,
        form,
        errors,
        private_key_warning,
    } = shown;
    let keys = state
        .services
        .list_keys(viewer.ctx(), username, Some(50), cursor)
        .await?;
    let own = viewer.chrome.username == username;
    let p = KeysPage {
        chrome: Some(viewer.chrome.clone()),
        username: username.to_owned(),
        own,
        keys,
        form,
        errors,
        private_key_warning,
    };
    Ok(page(status, p.chrome.as_ref(), &p))
}

pub async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(username): Path<String>,
    Query(q): Query<ListParams>,
) -> Result<Response, WebError> {
    render(
        &state,
        &viewer,
        &username,
        q.cursor.as_deref(),
        FormAgain {
            status: StatusCode::OK,
            form: AddKeyForm::default(),
            errors: Errors::default(),
            private_key_warning: false,
        },
    )
    .await
}

pub async fn add(
    State(state): State<AppState>,
    Path(username): Path<String>,
    posted: Posted<AddKeyForm>,
) -> Result<Response, WebError> {
    let Posted { viewer, mut form } = posted;
    let input = if form.file.trim().is_empty() {
        form.key.clone()
    } else {
        std::mem::take(&mut form.file)
    };
    let mut private_key_warning = false;
    let outcome: Result<(), Errors> = match parse_date("expires_on", &form.expires_on) {
        Err(errors) => Err(errors),
        Ok(expires_at) => {
            let title = Some(form.title.as_str()).filter(|t| !t.trim().is_empty());
            let added = state
                .services
                .add_key(viewer.ctx(), &username, input.as_bytes(), title, expires_at)
                .await;
            match added {
                Ok(key) => {
                    return Ok(redirect_with_flash(
                        &format!("/users/{username}/keys"),
                        "ok",
                        format!("Key added: {} {}", key.algorithm, key.fingerprint_sha256),
                    ))
                }
                Err(e) => {
                    // Never echo a private key back into the page.
                    private_key_warning = matches!(&e,
                        ServiceError::KeyRejected(r) if r.code == KeyErrorCode::PrivateKey);
                    if private_key_warning {
                        form.key.clear();
                    }
                    Err(form_errors(e)?)
                }
            }
        }
    };
    let errors = outcome.err().unwrap_or_default();
    let again = FormAgain {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        form,
        errors,
        private_key_warning,
    };
    render(&state, &viewer, &username, None, again).await
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<Empty>,
) -> Result<Response, WebError> {
    let id = object_id(&id, "key")?;
    let viewer = posted.viewer;
    let key = state.services.get_key(viewer.ctx(), id).await?;
    state.services.delete_key(viewer.ctx(), id).await?;
    Ok(redirect_with_flash(
        &format!("/users/{}/keys", key.username),
        "ok",
        format!("Key {} deleted", key.fingerprint_sha256),
    ))
}

#[derive(Template)]
#[template(path = "import_report.html")]
struct ImportPage {
    chrome: Option<Chrome>,
    username: String,
    report: ImportReport,
}

#[derive(serde::Deserialize)]
pub struct ImportForm {
    #[serde(default)]
    text: String,
    #[serde(default)]
    file: String,
}

pub async fn import(
    State(state): State<AppState>,
    Path(username): Path<String>,
    posted: Posted<ImportForm>,
) -> Result<Response, WebError> {
    let Posted { viewer, form } = posted;
    let input = if form.file.trim().is_empty() {
        &form.text
    } else {
        &form.file
    };
    match state
        .services
        .import_keys(viewer.ctx(), &username, input.as_bytes())
        .await
    {
        Ok(report) => {
            let p = ImportPage {
                chrome: Some(viewer.chrome.clone()),
                username,
                report,
            };
            Ok(page(StatusCode::OK, p.chrome.as_ref(), &p))
        }
        Err(e) => {
            let mut errors = form_errors(e)?;
            for m in &mut errors.0 {
                m.field = "import";
            }
            render(
                &state,
                &viewer,
                &username,
                None,
                FormAgain {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    form: AddKeyForm::default(),
                    errors,
                    private_key_warning: false,
                },
            )
            .await
        }
    }
}
