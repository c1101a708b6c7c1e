//! The blocklist page (admins): entries with the key and owner they stop, add one, import a
//! file of them, delete one. Every action calls the same service function as the JSON API.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;

use super::forms::{after_submit, Errors, FormView, Refusal, Shown};

use super::session::Posted;
use super::Empty;
use super::{page, redirect_with_flash, Chrome, Viewer, WebError};
use crate::http::AppState;
use crate::service::blocklist::{BlockEntryView, BlockTarget};
use crate::service::{object_id, Listing};

#[derive(Template)]
#[template(path = "blocklist.html")]
struct BlocklistPage {
    chrome: Option<Chrome>,
    entries: Listing<BlockEntryView>,
    form: EntryForm,
    errors: Errors,
}

#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct EntryForm {
    /// A fingerprint, a public key, or (import) several of them, one per line.
    #[serde(default)]
    target: String,
    #[serde(default)]
    reason: String,
    /// `add` or `import`.
    #[serde(default)]
    action: String,
}

#[derive(serde::Deserialize)]
pub struct PageQuery {
    cursor: Option<String>,
}

async fn render(
    state: &AppState,
    viewer: &Viewer,
    cursor: Option<&str>,
    shown: FormView<EntryForm>,
) -> Result<Response, WebError> {
    let entries = state
        .services
        .list_blocklist(viewer.ctx(), Some(100), cursor)
        .await?;
    let p = BlocklistPage {
        chrome: Some(viewer.chrome.clone()),
        entries,
        form: shown.form,
        errors: shown.errors,
    };
    Ok(page(shown.status, p.chrome.as_ref(), &p))
}

pub async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<PageQuery>,
) -> Result<Response, WebError> {
    render(&state, &viewer, q.cursor.as_deref(), FormView::fresh()).await
}

pub async fn add(
    State(state): State<AppState>,
    posted: Posted<EntryForm>,
) -> Result<Response, WebError> {
    let Posted { viewer, form } = posted;
    let text = form.target.trim();
    let outcome: Result<String, Refusal> = if form.action == "import" {
        match state
            .services
            .import_blocklist(viewer.ctx(), text.as_bytes(), &form.reason)
            .await
        {
            Ok(report) => {
                let rejected: Vec<String> = report
                    .lines
                    .iter()
                    .filter(|l| l.status == "rejected")
                    .map(|l| {
                        format!(
                            "line {}: {}",
                            l.line,
                            l.message.as_deref().unwrap_or("rejected")
                        )
                    })
                    .collect();
                if rejected.is_empty() || report.added > 0 {
                    Ok(format!(
                        "{} added, {} already listed, {} rejected",
                        report.added,
                        report
                            .lines
                            .iter()
                            .filter(|l| l.status == "duplicate")
                            .count(),
                        rejected.len()
                    ))
                } else {
                    Err(Refusal::Form(Errors::one("target", rejected.join("; "))))
                }
            }
            Err(e) => Err(e.into()),
        }
    } else {
        let target = if text.starts_with("SHA256:") {
            BlockTarget::Fingerprint(text.to_owned())
        } else {
            BlockTarget::Key(text.to_owned())
        };
        state
            .services
            .add_to_blocklist(viewer.ctx(), target, &form.reason)
            .await
            .map(|e| format!("{} is on the blocklist", e.fingerprint_sha256))
            .map_err(Refusal::from)
    };
    after_submit(
        outcome,
        form.clone(),
        |done| redirect_with_flash("/blocklist", "ok", &done),
        |shown| render(&state, &viewer, None, shown),
    )
    .await
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<Empty>,
) -> Result<Response, WebError> {
    let id = object_id(&id, "blocklist entry")?;
    state
        .services
        .delete_from_blocklist(posted.viewer.ctx(), id)
        .await?;
    Ok(redirect_with_flash(
        "/blocklist",
        "ok",
        "Entry deleted: the key is judged without it from the next read on",
    ))
}

pub async fn scan(
    State(state): State<AppState>,
    posted: Posted<Empty>,
) -> Result<Response, WebError> {
    let report = state
        .services
        .scan_shared_primes(posted.viewer.ctx())
        .await?;
    Ok(redirect_with_flash(
        "/blocklist",
        "ok",
        format!(
            "Scanned {} RSA keys in {:.1} s: {} share a prime, {} newly blocklisted",
            report.rsa_keys, report.seconds, report.sharing, report.added
        ),
    ))
}
