//! Keys pages: a user's keys (list, add by paste or upload, delete) and bulk import.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::forms::{after_submit, form_errors, parse_date, Errors, FormView, Refusal, Shown};
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

async fn render(
    state: &AppState,
    viewer: &Viewer,
    username: &str,
    cursor: Option<&str>,
    shown: FormView<AddKeyForm>,
    private_key_warning: bool,
) -> Result<Response, WebError> {
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
        form: shown.form,
        errors: shown.errors,
        private_key_warning,
    };
    Ok(page(shown.status, p.chrome.as_ref(), &p))
}

pub async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(username): Path<String>,
    Query(q): Query<ListParams>,
) -> Result<Response, WebError> {
    let shown = FormView::fresh();
    render(
        &state,
        &viewer,
        &username,
        q.cursor.as_deref(),
        shown,
        false,
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
    let outcome = async {
        let expires_at = parse_date("expires_on", &form.expires_on)?;
        let title = Some(form.title.as_str()).filter(|t| !t.trim().is_empty());
        Ok::<_, Refusal>(
            state
                .services
                .add_key(viewer.ctx(), &username, input.as_bytes(), title, expires_at)
                .await?,
        )
    }
    .await;
    // Never echo a private key back into the page.
    let private_key_warning = matches!(&outcome,
        Err(Refusal::Service(ServiceError::KeyRejected(r))) if r.code == KeyErrorCode::PrivateKey);
    if private_key_warning {
        form.key.clear();
    }
    after_submit(
        outcome,
        form,
        |key| {
            redirect_with_flash(
                &format!("/users/{username}/keys"),
                "ok",
                format!("Key added: {} {}", key.algorithm, key.fingerprint_sha256),
            )
        },
        |shown| render(&state, &viewer, &username, None, shown, private_key_warning),
    )
    .await
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
            let shown = FormView::rejected(AddKeyForm::default(), errors);
            render(&state, &viewer, &username, None, shown, false).await
        }
    }
}
