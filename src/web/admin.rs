//! The policy page (with a preview of what a change would invalidate), the audit log, and
//! personal API tokens.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::audit_detail::AuditEntry;
use super::forms::{after_submit, form_errors, parse_date, Errors, FormView, Refusal, Shown};
use super::servers::TokenCreatedPage;
use super::session::Posted;
use super::Empty;
use super::{page, redirect_with_flash, Chrome, Viewer, WebError};
use crate::http::AppState;
use crate::keys::{Algorithm, AlgorithmSet, Policy};
use crate::service::audit::AuditFilter;
use crate::service::dashboard::PolicyPreview;
use crate::service::object_id;
use crate::service::tokens::TokenView;

#[derive(Template)]
#[template(path = "policy.html")]
struct PolicyPage {
    chrome: Option<Chrome>,
    policy: Policy,
    /// Keys that the proposed policy would invalidate, after a preview.
    preview: Option<PolicyPreview>,
    errors: Errors,
}

impl PolicyPage {
    fn algorithms(&self) -> Vec<(&'static str, bool)> {
        Algorithm::ALL
            .into_iter()
            .map(|a| (a.as_str(), self.policy.allowed_algorithms.contains(a)))
            .collect()
    }
}

fn render_policy(
    viewer: &Viewer,
    preview: Option<PolicyPreview>,
    shown: FormView<Policy>,
) -> Response {
    let p = PolicyPage {
        chrome: Some(viewer.chrome.clone()),
        policy: shown.form,
        preview,
        errors: shown.errors,
    };
    page(shown.status, p.chrome.as_ref(), &p)
}

pub async fn policy(State(state): State<AppState>, viewer: Viewer) -> Result<Response, WebError> {
    let policy = state.services.policy(viewer.ctx()).await?;
    let shown = FormView {
        status: StatusCode::OK,
        form: policy,
        errors: Errors::default(),
    };
    Ok(render_policy(&viewer, None, shown))
}

/// The policy form: repeated `allowed_algorithms` checkboxes, so read as pairs.
fn policy_from_form(fields: &[(String, String)], base: &Policy) -> Result<Policy, Errors> {
    let mut policy = base.clone();
    let mut allowed = AlgorithmSet::empty();
    for (name, value) in fields {
        let number = |field: &'static str| {
            value
                .trim()
                .parse::<u32>()
                .map_err(|_| Errors::one(field, format!("{value:?} is not a whole number")))
        };
        match name.as_str() {
            "min_rsa_bits" => policy.min_rsa_bits = number("min_rsa_bits")?,
            "max_rsa_bits" => policy.max_rsa_bits = number("max_rsa_bits")?,
            "max_rsa_exponent_bits" => {
                policy.max_rsa_exponent_bits = number("max_rsa_exponent_bits")?
            }
            "max_comment_bytes" => policy.max_comment_bytes = number("max_comment_bytes")? as usize,
            "max_keys_per_user" => policy.max_keys_per_user = number("max_keys_per_user")?,
            "max_token_days" => policy.max_token_days = number("max_token_days")?,
            "max_access_request_hours" => {
                policy.max_access_request_hours = number("max_access_request_hours")?
            }
            "access_request_pending_hours" => {
                policy.access_request_pending_hours = number("access_request_pending_hours")?
            }
            "max_certificate_validity" => {
                policy.max_certificate_validity = number("max_certificate_validity")?
            }
            "notify_expiring_days" => policy.notify_expiring_days = number("notify_expiring_days")?,
            "local_password_sign_in" => policy.local_password_sign_in = value == "true",
            "break_glass_user" => policy.break_glass_user = value.trim().to_owned(),
            "allowed_algorithms" => {
                let a = Algorithm::ALL
                    .into_iter()
                    .find(|a| a.as_str() == value)
                    .ok_or_else(|| {
                        Errors::one("allowed_algorithms", format!("unknown algorithm {value:?}"))
                    })?;
                allowed.insert(a);
            }
            _ => {}
        }
    }
    policy.allowed_algorithms = allowed;
    Ok(policy)
}

pub async fn save_policy(
    State(state): State<AppState>,
    posted: Posted<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    let Posted { viewer, form } = posted;
    let current = state.services.policy(viewer.ctx()).await?;
    let proposed = match policy_from_form(&form, &current) {
        Ok(p) => p,
        Err(errors) => {
            return Ok(render_policy(
                &viewer,
                None,
                FormView::rejected(current, errors),
            ))
        }
    };
    if form.iter().any(|(k, v)| k == "action" && v == "preview") {
        let shown = match state.services.policy_preview(viewer.ctx(), &proposed).await {
            Ok(affected) => {
                let shown = FormView {
                    status: StatusCode::OK,
                    form: proposed,
                    errors: Errors::default(),
                };
                return Ok(render_policy(&viewer, Some(affected), shown));
            }
            Err(e) => FormView::rejected(proposed, form_errors(e)?),
        };
        return Ok(render_policy(&viewer, None, shown));
    }
    let outcome = state
        .services
        .set_policy(viewer.ctx(), proposed.clone())
        .await
        .map_err(Refusal::from);
    after_submit(
        outcome,
        proposed,
        |_| redirect_with_flash("/policy", "ok", "Policy saved"),
        |shown| async { Ok(render_policy(&viewer, None, shown)) },
    )
    .await
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Option<Chrome>,
    entries: Vec<AuditEntry>,
    next_cursor: Option<String>,
    actor: String,
    action: String,
    target: String,
}

#[derive(serde::Deserialize)]
pub struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    cursor: Option<String>,
}

fn filled(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

pub async fn audit(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<AuditQuery>,
) -> Result<Response, WebError> {
    let filter = AuditFilter {
        actor: filled(&q.actor),
        action: filled(&q.action),
        target: filled(&q.target),
        limit: Some(50),
        cursor: q.cursor.clone(),
    };
    let events = state.services.audit(viewer.ctx(), &filter).await?;
    let p = AuditPage {
        chrome: Some(viewer.chrome.clone()),
        entries: events.items.into_iter().map(AuditEntry::from).collect(),
        next_cursor: events.next_cursor,
        actor: filter.actor.unwrap_or_default(),
        action: filter.action.unwrap_or_default(),
        target: filter.target.unwrap_or_default(),
    };
    Ok(page(StatusCode::OK, p.chrome.as_ref(), &p))
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    chrome: Option<Chrome>,
    tokens: Vec<TokenView>,
    errors: Errors,
}

async fn render_tokens(
    state: &AppState,
    viewer: &Viewer,
    shown: FormView<()>,
) -> Result<Response, WebError> {
    let tokens = state.services.list_tokens(viewer.ctx()).await?;
    let p = TokensPage {
        chrome: Some(viewer.chrome.clone()),
        tokens,
        errors: shown.errors,
    };
    Ok(page(shown.status, p.chrome.as_ref(), &p))
}

pub async fn tokens(State(state): State<AppState>, viewer: Viewer) -> Result<Response, WebError> {
    render_tokens(&state, &viewer, FormView::fresh()).await
}

#[derive(serde::Deserialize)]
pub struct NewTokenForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    expires_on: String,
}

pub async fn create_token(
    State(state): State<AppState>,
    posted: Posted<NewTokenForm>,
) -> Result<Response, WebError> {
    let Posted { viewer, form } = posted;
    let outcome = async {
        let expires_at = parse_date("expires_on", &form.expires_on)?;
        Ok::<_, Refusal>(
            state
                .services
                .create_token(viewer.ctx(), &form.name, expires_at)
                .await?,
        )
    }
    .await;
    after_submit(
        outcome,
        (),
        |token| TokenCreatedPage::show(&viewer, token, "/tokens".into(), false),
        |shown| render_tokens(&state, &viewer, shown),
    )
    .await
}

pub async fn revoke_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<Empty>,
) -> Result<Response, WebError> {
    let id = object_id(&id, "token")?;
    state.services.revoke_token(posted.viewer.ctx(), id).await?;
    Ok(redirect_with_flash("/tokens", "ok", "Token revoked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_form_reads_numbers_and_checkboxes() {
        let fields: Vec<(String, String)> = [
            ("min_rsa_bits", "3072"),
            ("allowed_algorithms", "ssh-ed25519"),
            ("allowed_algorithms", "ssh-rsa"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let p = policy_from_form(&fields, &Policy::default()).unwrap();
        assert_eq!(p.min_rsa_bits, 3072);
        assert_eq!(p.allowed_algorithms.iter().count(), 2);
        let bad = vec![("min_rsa_bits".to_string(), "lots".to_string())];
        assert_eq!(
            policy_from_form(&bad, &Policy::default())
                .unwrap_err()
                .get("min_rsa_bits"),
            Some("\"lots\" is not a whole number")
        );
    }
}
