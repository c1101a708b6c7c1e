//! Sign-in with the organisation's OpenID Provider, and keeping accounts in step with it.
//!
//! - A sign-in is an attempt row (hash of `state`, nonce, PKCE verifier) made at the redirect
//!   and deleted by its callback, which must also carry the same state in the browser's
//!   cookie. Every refusal is audited (`session.oidc_refused`) with its reason.
//! - The first sign-in of a provider account creates its user (just in time); every sign-in
//!   syncs display name, email, role (the admin group) and membership of provider-managed user
//!   groups from the claims, each change audited. Groups managed by hand are left alone.
//! - A signed-in user's account is checked again at the provider (refresh token) at most every
//!   `recheck`; when the provider refuses, every session of the user ends.
//! - `keyportal users sync` and the admin action check every linked account; those the
//!   provider no longer knows are disabled, so their keys leave every authorized_keys output.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use super::sessions::{random_token, NewSession};
use super::{Ctx, ServiceError, Services};
use crate::domain::{GroupName, Role, Username};
use crate::oidc::{OidcError, OidcProvider};
use crate::store;

/// How long the provider's sign-in page may take before the callback is refused.
const ATTEMPT_LIFETIME: Duration = Duration::minutes(10);

/// The redirect to the provider; `state` also goes into the browser's cookie.
pub struct OidcRedirect {
    pub url: String,
    pub state: String,
}

/// The provider's callback as the browser brought it.
pub struct OidcCallback<'a> {
    pub state: Option<&'a str>,
    pub state_cookie: Option<&'a str>,
    pub code: Option<&'a str>,
    pub error: Option<&'a str>,
    pub error_description: Option<&'a str>,
    pub client_addr: &'a str,
    pub request_id: Option<&'a str>,
}

/// A session made by a provider sign-in, and the page to go to.
pub struct OidcSession {
    pub session: NewSession,
    pub next: String,
}

/// What the provider says about an account, read by the configured claim names.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderAccount {
    pub subject: String,
    pub username: Option<String>,
    pub display_name: String,
    pub email: Option<String>,
    /// Every group the claim names, as sent.
    pub groups: Vec<String>,
}

impl ProviderAccount {
    pub fn from_claims(
        claims: &Map<String, Value>,
        settings: &crate::oidc::OidcSettings,
    ) -> Result<ProviderAccount, OidcError> {
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::trim);
        let subject = text("sub")
            .filter(|s| !s.is_empty() && s.len() <= 255)
            .ok_or_else(|| OidcError::Claims("the ID token has no usable sub".into()))?
            .to_owned();
        let groups = match claims.get(&settings.groups_claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(one)) => vec![one.clone()],
            // No claim: the account is in no provider group (the safe reading).
            _ => Vec::new(),
        };
        Ok(ProviderAccount {
            subject,
            username: text(&settings.username_claim).map(str::to_lowercase),
            display_name: text(&settings.name_claim)
                .map(|n| n.chars().filter(|c| !c.is_control()).take(200).collect())
                .unwrap_or_default(),
            email: text(&settings.email_claim)
                .filter(|e| {
                    e.len() <= 320
                        && e.split_once('@').is_some_and(|(a, b)| {
                            !a.is_empty() && !b.is_empty() && !e.contains(char::is_whitespace)
                        })
                })
                .map(str::to_owned),
            groups,
        })
    }
}

/// What `keyportal users sync` found.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct SyncReport {
    /// Linked accounts the provider was asked about.
    pub checked: usize,
    /// Users the provider still knows (their claims were synced).
    pub known: Vec<String>,
    /// Users the provider refused; now disabled.
    pub disabled: Vec<String>,
    /// Users with no refresh token to ask with (they must sign in again to be checked).
    pub unchecked: Vec<String>,
    /// Users the provider could not be asked about, with the cause; left as they were.
    pub failed: Vec<SyncFailure>,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SyncFailure {
    pub username: String,
    pub error: String,
}

fn state_hash(state: &str) -> Vec<u8> {
    Sha256::digest(state.as_bytes()).to_vec()
}

impl Services {
    fn provider(&self) -> Result<&Arc<OidcProvider>, ServiceError> {
        self.oidc.as_ref().ok_or(ServiceError::NotFound {
            what: "identity provider (KEYPORTAL_OIDC_ISSUER is not set)",
        })
    }

    /// Starts a provider sign-in: the attempt is stored, the browser sent to the provider.
    #[tracing::instrument(skip_all)]
    pub async fn begin_oidc_sign_in(&self, next: &str) -> Result<OidcRedirect, ServiceError> {
        let provider = self.provider()?;
        let request = provider
            .authorization_request()
            .await
            .map_err(|e| ServiceError::ProviderUnavailable(e.to_string()))?;
        let hash = state_hash(&request.state);
        let mut tx = self.pool.begin().await?;
        store::oidc::delete_expired_attempts(&mut *tx).await?;
        store::oidc::insert_attempt(
            &mut *tx,
            &store::oidc::NewAttempt {
                state_hash: &hash,
                nonce: &request.nonce,
                pkce_verifier: &request.pkce_verifier,
                next_path: next,
                expires_at: OffsetDateTime::now_utc() + ATTEMPT_LIFETIME,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(OidcRedirect {
            url: request.url,
            state: request.state,
        })
    }

    /// Finishes a provider sign-in: checks the callback, exchanges the code, verifies the ID
    /// token, creates or syncs the user and makes a session. Every refusal is audited.
    #[tracing::instrument(skip_all)]
    pub async fn complete_oidc_sign_in(
        &self,
        cb: OidcCallback<'_>,
    ) -> Result<OidcSession, ServiceError> {
        match self.oidc_callback(&cb).await {
            Ok(done) => Ok(done),
            Err(e) => {
                let (reason, detail) = match &e {
                    ServiceError::ProviderSignInFailed { reason, detail } => {
                        (*reason, detail.clone())
                    }
                    ServiceError::ProviderUnavailable(detail) => {
                        ("provider_unreachable", detail.clone())
                    }
                    _ => return Err(e),
                };
                tracing::warn!(reason, detail = %detail, "provider sign-in refused");
                super::audit::record_by(
                    &self.pool,
                    "anonymous",
                    cb.request_id,
                    "session.oidc_refused",
                    "session",
                    json!({ "reason": reason, "detail": detail, "client_addr": cb.client_addr }),
                )
                .await?;
                Err(e)
            }
        }
    }

    async fn oidc_callback(&self, cb: &OidcCallback<'_>) -> Result<OidcSession, ServiceError> {
        let provider = self.provider()?;
        let refuse = |reason: &'static str, detail: String| ServiceError::ProviderSignInFailed {
            reason,
            detail,
        };
        if let Some(error) = cb.error {
            return Err(refuse(
                "provider_error",
                format!(
                    "the provider answered {error}{}",
                    cb.error_description
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                ),
            ));
        }
        let state = cb.state.unwrap_or("");
        let cookie = cb.state_cookie.unwrap_or("");
        if state.is_empty() || !crate::http::session::tokens_match(state, cookie) {
            return Err(refuse(
                "state_mismatch",
                "the sign-in did not start in this browser (state does not match)".into(),
            ));
        }
        let attempt = store::oidc::take_attempt(&self.pool, &state_hash(state))
            .await?
            .filter(|a| a.live)
            .ok_or_else(|| {
                refuse(
                    "state_unknown",
                    "this sign-in was already used or took longer than 10 minutes".into(),
                )
            })?;
        let code = cb
            .code
            .filter(|c| !c.is_empty())
            .ok_or_else(|| refuse("no_code", "the provider sent no authorization code".into()))?;
        let signed_in = provider
            .exchange_code(code, &attempt.pkce_verifier, &attempt.nonce)
            .await
            .map_err(oidc_refusal)?;
        let account = ProviderAccount::from_claims(&signed_in.claims, &provider.settings)
            .map_err(oidc_refusal)?;
        let issuer = provider.settings.issuer.as_str();

        let mut tx = self.pool.begin().await?;
        let user =
            match store::oidc::identity_by_subject(&mut *tx, issuer, &account.subject).await? {
                Some(identity) => store::users::by_id(&mut *tx, identity.user_id)
                    .await?
                    .ok_or(ServiceError::NotFound { what: "user" })?,
                None => {
                    self.first_sign_in(&mut tx, provider, &account, cb.request_id)
                        .await?
                }
            };
        if user.disabled {
            return Err(refuse(
                "disabled",
                format!(
                    "the keyportal account {} is disabled; ask an admin",
                    user.username
                ),
            ));
        }
        store::oidc::link(
            &mut *tx,
            user.id,
            issuer,
            &account.subject,
            signed_in.refresh_token.as_deref(),
        )
        .await?;
        apply_account(
            &mut tx,
            provider,
            user.id,
            &account,
            &user.username,
            cb.request_id,
        )
        .await?;

        let secret = random_token();
        let expires_at = OffsetDateTime::now_utc() + self.sessions.absolute;
        let id = Sha256::digest(secret.as_bytes()).to_vec();
        store::sessions::delete_expired(&mut *tx).await?;
        store::sessions::insert(&mut *tx, &id, user.id, &random_token(), expires_at).await?;
        store::sessions::set_id_token(&mut *tx, &id, &signed_in.id_token).await?;
        super::audit::record_by(
            &mut *tx,
            &user.username,
            cb.request_id,
            "session.sign_in",
            &format!("user:{}", user.username),
            json!({ "client_addr": cb.client_addr, "method": "oidc", "issuer": issuer }),
        )
        .await?;
        tx.commit().await?;
        Ok(OidcSession {
            session: NewSession {
                secret,
                username: user.username,
            },
            next: attempt.next_path,
        })
    }

    /// The user for a provider account signing in for the first time: a new one, or an
    /// existing local one when linking is allowed.
    async fn first_sign_in(
        &self,
        tx: &mut sqlx::PgConnection,
        provider: &OidcProvider,
        account: &ProviderAccount,
        request_id: Option<&str>,
    ) -> Result<store::users::UserRow, ServiceError> {
        let settings = &provider.settings;
        let claimed = account.username.as_deref().unwrap_or("");
        let username =
            Username::parse(claimed).map_err(|e| ServiceError::ProviderSignInFailed {
                reason: "username_unusable",
                detail: format!(
                    "the provider's {} claim {claimed:?} cannot be a keyportal username: {}",
                    settings.username_claim, e.detail
                ),
            })?;
        if let Some(existing) = store::users::by_username(&mut *tx, username.as_str()).await? {
            if !settings.link_existing || store::oidc::is_linked(&mut *tx, existing.id).await? {
                return Err(ServiceError::ProviderSignInFailed {
                    reason: "username_taken",
                    detail: format!(
                        "a keyportal account named {username} exists and is not linked to this provider account; an admin can allow linking (KEYPORTAL_OIDC_LINK_EXISTING)"
                    ),
                });
            }
            super::audit::record_by(
                &mut *tx,
                username.as_str(),
                request_id,
                "user.oidc_link",
                &format!("user:{username}"),
                json!({ "issuer": settings.issuer, "subject": account.subject }),
            )
            .await?;
            return Ok(existing);
        }
        let row = store::users::insert(
            &mut *tx,
            &store::users::NewUser {
                username: &username,
                display_name: &account.display_name,
                email: account.email.as_deref(),
                role: Role::Member,
                password_hash: None,
            },
        )
        .await?;
        super::audit::record_by(
            &mut *tx,
            username.as_str(),
            request_id,
            "user.create",
            &format!("user:{username}"),
            json!({ "role": "member", "source": "oidc", "issuer": settings.issuer, "subject": account.subject }),
        )
        .await?;
        Ok(row)
    }

    /// Asks the provider again about a session's user when the last check is older than the
    /// re-check interval. `Ok(false)`: the provider refused, and every session of the user has
    /// ended. A provider that cannot be reached leaves the session as it is (logged).
    pub(super) async fn recheck_at_provider(
        &self,
        user_id: i64,
        request_id: Option<&str>,
    ) -> Result<bool, ServiceError> {
        let Some(provider) = self.oidc.as_ref() else {
            return Ok(true);
        };
        let settings = &provider.settings;
        let mut tx = self.pool.begin().await?;
        let Some(identity) = store::oidc::lock_due(
            &mut *tx,
            user_id,
            &settings.issuer,
            settings.recheck.whole_seconds(),
            true,
        )
        .await?
        else {
            return Ok(true);
        };
        let Some(refresh_token) = identity.refresh_token.clone() else {
            store::oidc::checked(&mut *tx, user_id, None).await?;
            tx.commit().await?;
            return Ok(true);
        };
        match provider.refresh(&refresh_token, &identity.subject).await {
            Ok(fresh) => {
                let account = ProviderAccount::from_claims(&fresh.claims, settings).ok();
                if let Some(account) = account.filter(|a| a.subject == identity.subject) {
                    apply_account(
                        &mut tx,
                        provider,
                        user_id,
                        &account,
                        &identity.username,
                        request_id,
                    )
                    .await?;
                }
                store::oidc::checked(&mut *tx, user_id, fresh.refresh_token.as_deref()).await?;
                tx.commit().await?;
                Ok(true)
            }
            Err(e) if e.is_invalid_grant() => {
                let ended = store::sessions::delete_for_user(&mut *tx, user_id, None).await?;
                store::oidc::checked(&mut *tx, user_id, None).await?;
                super::audit::record_by(
                    &mut *tx,
                    "oidc",
                    request_id,
                    "session.ended_by_provider",
                    &format!("user:{}", identity.username),
                    json!({ "sessions": ended, "provider_said": e.to_string() }),
                )
                .await?;
                tx.commit().await?;
                Ok(false)
            }
            Err(e) => {
                // Not the provider saying no: keep the session, ask again after the interval.
                tracing::warn!(user = %identity.username, error = %e, "could not re-check a session's account at the provider");
                store::oidc::checked(&mut *tx, user_id, None).await?;
                tx.commit().await?;
                Ok(true)
            }
        }
    }

    /// Checks every linked account at the provider: syncs those it knows, disables those it
    /// refuses. Admins and the command line only.
    #[tracing::instrument(skip_all)]
    pub async fn sync_provider_users(&self, ctx: &Ctx) -> Result<SyncReport, ServiceError> {
        super::access::authorize(&ctx.caller, super::access::Action::ManageUsers)?;
        let provider = self.provider()?;
        let settings = &provider.settings;
        let mut report = SyncReport::default();
        for identity in store::oidc::all_at(&self.pool, &settings.issuer).await? {
            if identity.disabled {
                continue;
            }
            report.checked += 1;
            let mut tx = self.pool.begin().await?;
            // Locked and re-read: a session re-check may have rotated the token meanwhile.
            let Some(identity) =
                store::oidc::lock_due(&mut *tx, identity.user_id, &settings.issuer, 0, false)
                    .await?
            else {
                continue;
            };
            let Some(refresh_token) = identity.refresh_token.clone() else {
                report.unchecked.push(identity.username.clone());
                continue;
            };
            match provider.refresh(&refresh_token, &identity.subject).await {
                Ok(fresh) => {
                    match ProviderAccount::from_claims(&fresh.claims, settings) {
                        Ok(account) if account.subject == identity.subject => {
                            apply_account(
                                &mut tx,
                                provider,
                                identity.user_id,
                                &account,
                                &identity.username,
                                ctx.request_id.as_deref(),
                            )
                            .await?;
                        }
                        // No new ID token (or no usable claims): known, claims unchanged.
                        _ => {}
                    }
                    store::oidc::checked(
                        &mut *tx,
                        identity.user_id,
                        fresh.refresh_token.as_deref(),
                    )
                    .await?;
                    tx.commit().await?;
                    report.known.push(identity.username);
                }
                Err(e) if e.is_invalid_grant() => {
                    store::users::update(
                        &mut *tx,
                        identity.user_id,
                        &store::users::UserChanges {
                            display_name: None,
                            email: None,
                            role: None,
                            disabled: Some(true),
                            password_hash: None,
                        },
                    )
                    .await?;
                    store::sessions::delete_for_user(&mut *tx, identity.user_id, None).await?;
                    store::oidc::checked(&mut *tx, identity.user_id, None).await?;
                    super::audit::record(
                        &mut *tx,
                        ctx,
                        "user.disabled_by_provider",
                        &format!("user:{}", identity.username),
                        json!({ "provider_said": e.to_string() }),
                    )
                    .await?;
                    tx.commit().await?;
                    report.disabled.push(identity.username);
                }
                Err(e) => {
                    tracing::warn!(user = %identity.username, error = %e, "could not check an account at the provider");
                    report.failed.push(SyncFailure {
                        username: identity.username,
                        error: e.to_string(),
                    });
                }
            }
        }
        Ok(report)
    }

    /// The ID token to send as `id_token_hint` at sign-out, if the session came from the
    /// provider, and the provider's logout address for it.
    pub async fn provider_logout_url(&self, ctx: &Ctx) -> Result<Option<String>, ServiceError> {
        let (Some(provider), Some(session)) = (self.oidc.as_ref(), ctx.session.as_ref()) else {
            return Ok(None);
        };
        let Some(id_token) = store::sessions::id_token(&self.pool, &session.0).await? else {
            return Ok(None);
        };
        Ok(provider.logout_url(&id_token).await)
    }
}

fn oidc_refusal(e: OidcError) -> ServiceError {
    match e {
        OidcError::Unreachable(detail) => ServiceError::ProviderUnavailable(detail),
        other => ServiceError::ProviderSignInFailed {
            reason: other.reason(),
            detail: other.to_string(),
        },
    }
}

/// Brings a user in step with the provider's account: display name, email, role (when an
/// admin group is configured) and membership of provider-managed groups. Each change is
/// audited with actor `oidc`.
async fn apply_account(
    tx: &mut sqlx::PgConnection,
    provider: &OidcProvider,
    user_id: i64,
    account: &ProviderAccount,
    username: &str,
    request_id: Option<&str>,
) -> Result<(), ServiceError> {
    let settings = &provider.settings;
    let target = format!("user:{username}");
    let user = store::users::by_id(&mut *tx, user_id)
        .await?
        .ok_or(ServiceError::NotFound { what: "user" })?;
    let role = settings.admin_group.as_ref().map(|admins| {
        if account.groups.iter().any(|g| g == admins) {
            Role::Admin
        } else {
            Role::Member
        }
    });
    let mut changed = Vec::new();
    if !account.display_name.is_empty() && account.display_name != user.display_name {
        changed.push("display_name");
    }
    if account.email.is_some() && account.email != user.email {
        changed.push("email");
    }
    if role.is_some_and(|r| r != user.role) {
        changed.push("role");
    }
    if !changed.is_empty() {
        let updated = store::users::update(
            &mut *tx,
            user_id,
            &store::users::UserChanges {
                display_name: changed
                    .contains(&"display_name")
                    .then_some(account.display_name.as_str()),
                email: changed
                    .contains(&"email")
                    .then_some(account.email.as_deref()),
                role: role.filter(|_| changed.contains(&"role")),
                disabled: None,
                password_hash: None,
            },
        )
        .await?;
        super::audit::record_by(
            &mut *tx,
            "oidc",
            request_id,
            "user.update",
            &target,
            json!({ "changed": changed, "role": updated.role.as_str(), "source": "oidc" }),
        )
        .await?;
    }

    // Group names as keyportal spells them; a name that cannot be one is skipped (and said).
    let mut wanted: Vec<String> = Vec::new();
    let mut unusable: Vec<&str> = Vec::new();
    for sent in &account.groups {
        let name = sent.trim().trim_start_matches('/').to_lowercase();
        match GroupName::parse(&name) {
            Ok(n) if !wanted.contains(&n.as_str().to_owned()) => wanted.push(n.into()),
            Ok(_) => {}
            Err(_) => unusable.push(sent),
        }
    }
    let existing = store::oidc::groups_named(&mut *tx, &wanted).await?;
    let mut member_of: Vec<(i64, String)> = Vec::new();
    for name in &wanted {
        match existing.iter().find(|g| &g.name == name) {
            Some(g) if g.managed_by == "provider" => member_of.push((g.id, g.name.clone())),
            // Managed by hand: the provider's group of the same name does not touch it.
            Some(_) => {}
            None => {
                if let Some(id) = store::oidc::insert_provider_group(&mut *tx, name).await? {
                    super::audit::record_by(
                        &mut *tx,
                        "oidc",
                        request_id,
                        "group.create",
                        &format!("user-group:{name}"),
                        json!({ "managed_by": "provider", "source": "oidc" }),
                    )
                    .await?;
                    member_of.push((id, name.clone()));
                }
            }
        }
    }
    let current = store::oidc::provider_groups_of(&mut *tx, user_id).await?;
    for (id, name) in &member_of {
        if store::groups::add_member(&mut *tx, store::groups::Kind::Users, *id, user_id).await? {
            super::audit::record_by(
                &mut *tx,
                "oidc",
                request_id,
                "group.member_add",
                &format!("user-group:{name}"),
                json!({ "member": username, "source": "oidc" }),
            )
            .await?;
        }
    }
    for g in current
        .iter()
        .filter(|g| !member_of.iter().any(|(id, _)| *id == g.id))
    {
        if store::groups::remove_member(&mut *tx, store::groups::Kind::Users, g.id, user_id).await?
        {
            super::audit::record_by(
                &mut *tx,
                "oidc",
                request_id,
                "group.member_remove",
                &format!("user-group:{}", g.name),
                json!({ "member": username, "source": "oidc" }),
            )
            .await?;
        }
    }
    if !unusable.is_empty() {
        tracing::info!(user = username, groups = ?unusable, "provider groups whose names cannot be keyportal group names were skipped");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> crate::oidc::OidcSettings {
        crate::oidc::OidcSettings {
            issuer: "http://127.0.0.1:1".into(),
            client_id: "c".into(),
            client_secret: None,
            redirect_url: "http://127.0.0.1:2/auth/oidc/callback".into(),
            post_logout_url: "http://127.0.0.1:2/login".into(),
            scopes: vec![],
            label: "IdP".into(),
            username_claim: "preferred_username".into(),
            name_claim: "name".into(),
            email_claim: "email".into(),
            groups_claim: "groups".into(),
            admin_group: None,
            recheck: Duration::minutes(5),
            link_existing: false,
        }
    }

    #[test]
    fn claims_are_read_by_the_configured_names() {
        let claims = json!({"sub": "s1", "preferred_username": "Alice", "name": "A\u{7}lice",
            "email": "not an email", "groups": ["ops", "/dev"]});
        let a = ProviderAccount::from_claims(claims.as_object().unwrap(), &settings()).unwrap();
        assert_eq!(a.username.as_deref(), Some("alice"));
        assert_eq!(a.display_name, "Alice");
        assert_eq!(a.email, None);
        assert_eq!(a.groups, vec!["ops", "/dev"]);
        let no_sub = json!({"preferred_username": "alice"});
        assert!(ProviderAccount::from_claims(no_sub.as_object().unwrap(), &settings()).is_err());
        let one_group = json!({"sub": "s", "groups": "ops"});
        let a = ProviderAccount::from_claims(one_group.as_object().unwrap(), &settings()).unwrap();
        assert_eq!(a.groups, vec!["ops"]);
    }
}
