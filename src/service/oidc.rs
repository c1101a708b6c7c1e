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
use tracing::Instrument;

use super::sessions::{random_token, NewSession};
use super::{Ctx, ResultExt, ServiceError, Services};
use crate::domain::{GroupName, Role, Username};
use crate::oidc::{OidcError, OidcProvider};
use crate::store;

/// How long the provider's sign-in page may take before the callback is refused.
const ATTEMPT_LIFETIME: Duration = Duration::minutes(10);

/// Sign-ins in flight at once, across every process; more wait (503) until some finish or
/// expire. Far above what people do in 10 minutes, far below what fills a disk.
const MAX_LIVE_ATTEMPTS: i64 = 10_000;

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
    /// Every group the claim names, as sent; `None` when the claim is absent (then neither
    /// groups nor role are synced: an absent claim is a provider's setting or its overage
    /// rule, not a statement that the person is in no group).
    pub groups: Option<Vec<String>>,
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
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
            ),
            Some(Value::String(one)) => Some(vec![one.clone()]),
            _ => None,
        };
        Ok(ProviderAccount {
            subject,
            // ASCII only: Unicode case folding would make `\u{212A}` (Kelvin) an ASCII `k`.
            username: text(&settings.username_claim).map(str::to_ascii_lowercase),
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
        // Anyone may start a sign-in, and each start stores a row for 10 minutes: bounded.
        if store::oidc::live_attempts(&mut *tx).await? >= MAX_LIVE_ATTEMPTS {
            return Err(ServiceError::Busy {
                retry_after_secs: 60,
            });
        }
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
        // The state first: nothing of a callback that did not start in this browser is shown
        // or acted on (not even the provider's error text).
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
        if let Some(error) = cb.error {
            return Err(refuse(
                "provider_error",
                format!(
                    "the provider answered {}{}",
                    printable(error, 64),
                    cb.error_description
                        .map(|d| format!(": {}", printable(d, 200)))
                        .unwrap_or_default()
                ),
            ));
        }
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
        let found = store::oidc::identity_by_subject(&mut *tx, issuer, &account.subject).await?;
        let mut user = match found {
            Some(identity) => store::users::by_id(&mut *tx, identity.user_id)
                .await?
                .ok_or(ServiceError::NotFound { what: "user" })?,
            None => {
                self.first_sign_in(&mut tx, provider, &account, cb.request_id)
                    .await?
            }
        };
        if user.disabled {
            // Disabled by `users sync` because the provider refused its refresh token: the
            // provider vouching for a fresh sign-in is the answer that was missing.
            if !store::oidc::disabled_by_sync(&mut *tx, user.id).await? {
                return Err(refuse(
                    "disabled",
                    format!(
                        "the keyportal account {} is disabled; ask an admin",
                        user.username
                    ),
                ));
            }
            user = store::users::update(&mut *tx, user.id, &enabled(true)).await?;
            store::oidc::set_disabled_by_sync(&mut *tx, user.id, false).await?;
            super::audit::record_by(
                &mut *tx,
                PROVIDER_ACTOR,
                cb.request_id,
                "user.enabled_by_provider",
                &format!("user:{}", user.username),
                json!({ "why": "the provider vouched for a new sign-in after a sync had disabled the account" }),
            )
            .await?;
        }
        store::oidc::link(
            &mut *tx,
            user.id,
            issuer,
            &account.subject,
            signed_in.refresh_token.as_deref(),
        )
        .await
        .on_constraint(&["oidc_identities_subject_key"], concurrent_sign_in)?;
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
        // Kept for the logout hint; a token too large to keep only loses the hint.
        if signed_in.id_token.len() <= MAX_KEPT_ID_TOKEN {
            store::sessions::set_id_token(&mut *tx, &id, &signed_in.id_token).await?;
        }
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
    /// existing local one when linking is allowed (never an admin or the break-glass account:
    /// whoever controls a username at the provider must not get those).
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
                    "the provider's {} claim {:?} cannot be a keyportal username: {}",
                    settings.username_claim,
                    printable(claimed, 64),
                    e.detail
                ),
            })?;
        if let Some(existing) = store::users::by_username(&mut *tx, username.as_str()).await? {
            let policy = super::policy::current(&mut *tx).await?;
            let protected =
                existing.role == Role::Admin || existing.username == policy.break_glass_user;
            if !settings.link_existing
                || protected
                || store::oidc::is_linked(&mut *tx, existing.id).await?
            {
                return Err(ServiceError::ProviderSignInFailed {
                    reason: "username_taken",
                    detail: if protected && settings.link_existing {
                        format!("{username} is a local admin account; it is never linked to a provider account by name")
                    } else {
                        format!("a keyportal account named {username} exists and is not linked to this provider account; an admin can allow linking (KEYPORTAL_OIDC_LINK_EXISTING)")
                    },
                });
            }
            super::audit::record_by(
                &mut *tx,
                PROVIDER_ACTOR,
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
        .await
        .on_constraint(&["users_username_key"], concurrent_sign_in)?;
        super::audit::record_by(
            &mut *tx,
            PROVIDER_ACTOR,
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
        let Some(provider) = self.oidc.clone() else {
            return Ok(true);
        };
        let due = provider.settings.recheck.whole_seconds();
        let Some(claimed) =
            store::oidc::claim_due(&self.pool, user_id, &provider.settings.issuer, due).await?
        else {
            return Ok(true);
        };
        let outcome = self
            .check_in_own_task(provider, claimed, request_id)
            .await?;
        Ok(!matches!(outcome, Checked::Refused))
    }

    /// Runs one check to its end in a task of its own: a request cancelled meanwhile (timeout,
    /// client gone) must not lose a refresh token the provider has already rotated.
    async fn check_in_own_task(
        &self,
        provider: Arc<OidcProvider>,
        claimed: store::oidc::IdentityRow,
        request_id: Option<&str>,
    ) -> Result<Checked, ServiceError> {
        let services = self.clone();
        let request_id = request_id.map(str::to_owned);
        to_completion("the provider check", async move {
            services
                .finish_check(&provider, claimed, request_id.as_deref(), Check::Session)
                .await
        })
        .await
    }

    /// Asks the provider with a claimed identity's refresh token, records the answer and ends
    /// the claim's lease.
    async fn finish_check(
        &self,
        provider: &OidcProvider,
        claimed: store::oidc::IdentityRow,
        request_id: Option<&str>,
        check: Check<'_>,
    ) -> Result<Checked, ServiceError> {
        let user_id = claimed.user_id;
        let outcome = self
            .ask_provider(provider, claimed, request_id, check)
            .await;
        // Released whatever the outcome (should this fail too, the lease runs out).
        store::oidc::release(&self.pool, user_id).await?;
        outcome
    }

    async fn ask_provider(
        &self,
        provider: &OidcProvider,
        claimed: store::oidc::IdentityRow,
        request_id: Option<&str>,
        check: Check<'_>,
    ) -> Result<Checked, ServiceError> {
        let Some(token) = claimed.refresh_token.clone() else {
            return Ok(Checked::Unchecked);
        };
        let settings = &provider.settings;
        let target = format!("user:{}", claimed.username);
        match provider.refresh(&token, &claimed.subject).await {
            Ok(fresh) => {
                let mut tx = self.pool.begin().await?;
                let current = store::oidc::rotate_refresh_token(
                    &mut *tx,
                    claimed.user_id,
                    &token,
                    fresh.refresh_token.as_deref(),
                )
                .await?;
                if current {
                    if let Some(account) = ProviderAccount::from_claims(&fresh.claims, settings)
                        .ok()
                        .filter(|a| a.subject == claimed.subject)
                    {
                        apply_account(
                            &mut tx,
                            provider,
                            claimed.user_id,
                            &account,
                            &claimed.username,
                            request_id,
                        )
                        .await?;
                    }
                }
                tx.commit().await?;
                Ok(Checked::Known)
            }
            Err(e) if e.is_invalid_grant() => {
                let mut tx = self.pool.begin().await?;
                // A sign-in since the claim brought a newer grant: that one is what counts.
                if !store::oidc::rotate_refresh_token(&mut *tx, claimed.user_id, &token, None)
                    .await?
                {
                    return Ok(Checked::Known);
                }
                let ended =
                    store::sessions::delete_for_user(&mut *tx, claimed.user_id, None).await?;
                let (actor, action) = match check {
                    Check::Session => (PROVIDER_ACTOR, "session.ended_by_provider"),
                    Check::Sync { actor } => {
                        store::users::update(&mut *tx, claimed.user_id, &enabled(false)).await?;
                        store::oidc::set_disabled_by_sync(&mut *tx, claimed.user_id, true).await?;
                        (actor, "user.disabled_by_provider")
                    }
                };
                super::audit::record_by(
                    &mut *tx,
                    actor,
                    request_id,
                    action,
                    &target,
                    json!({ "sessions": ended, "provider_said": e.to_string() }),
                )
                .await?;
                tx.commit().await?;
                Ok(Checked::Refused)
            }
            Err(e) => {
                // Not the provider saying no: nothing changes; asked again after the interval.
                tracing::warn!(user = %claimed.username, error = %e, "could not check an account at the identity provider");
                Ok(Checked::Failed(e.to_string()))
            }
        }
    }

    /// Checks every linked account at the provider: syncs those it knows, disables those it
    /// refuses. Admins and the command line only. Runs in a task of its own, so it finishes
    /// (and is audited) even if the request that started it times out.
    #[tracing::instrument(skip_all)]
    pub async fn sync_provider_users(&self, ctx: &Ctx) -> Result<SyncReport, ServiceError> {
        super::access::authorize(&ctx.caller, super::access::Action::ManageUsers)?;
        let provider = self.provider()?.clone();
        let services = self.clone();
        let request_id = ctx.request_id.clone();
        let actor = ctx.caller.actor();
        to_completion("the sync", async move {
            services
                .sync_all(provider, &actor, request_id.as_deref())
                .await
        })
        .await
    }

    /// `actor`: who runs the sync (the disabling is theirs in the audit log).
    async fn sync_all(
        &self,
        provider: Arc<OidcProvider>,
        actor: &str,
        request_id: Option<&str>,
    ) -> Result<SyncReport, ServiceError> {
        let issuer = provider.settings.issuer.clone();
        let mut report = SyncReport::default();
        for identity in store::oidc::all_at(&self.pool, &issuer).await? {
            if identity.disabled {
                continue;
            }
            report.checked += 1;
            // Claimed whatever its last check (-1 s: always due).
            let Some(claimed) =
                store::oidc::claim_due(&self.pool, identity.user_id, &issuer, -1).await?
            else {
                continue;
            };
            let username = claimed.username.clone();
            match self
                .finish_check(&provider, claimed, request_id, Check::Sync { actor })
                .await?
            {
                Checked::Known => report.known.push(username),
                Checked::Refused => report.disabled.push(username),
                Checked::Unchecked => report.unchecked.push(username),
                Checked::Failed(error) => report.failed.push(SyncFailure { username, error }),
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

/// Runs `work` in a task of its own (in the caller's span) and waits for it: if the caller is
/// dropped (request timeout, client gone), the work still finishes and records its outcome.
async fn to_completion<T: Send + 'static>(
    what: &'static str,
    work: impl std::future::Future<Output = Result<T, ServiceError>> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::spawn(work.instrument(tracing::Span::current()))
        .await
        .map_err(|e| ServiceError::Internal(format!("{what}'s task: {e}")))?
}

/// The audit actor of changes the provider's answers make: not a possible username (`:`), so
/// no account can pose as it.
const PROVIDER_ACTOR: &str = "oidc:provider";

/// Longest ID token kept for the logout hint (the `sessions.oidc_id_token` CHECK).
const MAX_KEPT_ID_TOKEN: usize = 16384;

/// Why a provider account is being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check<'a> {
    /// A session's periodic re-check: a refusal ends the user's sessions.
    Session,
    /// `users sync`, run by `actor`: a refusal also disables the user.
    Sync { actor: &'a str },
}

/// What the provider said.
enum Checked {
    Known,
    Refused,
    /// No refresh token to ask with.
    Unchecked,
    Failed(String),
}

fn enabled(on: bool) -> store::users::UserChanges<'static> {
    store::users::UserChanges {
        display_name: None,
        email: None,
        role: None,
        disabled: Some(!on),
        password_hash: None,
    }
}

fn concurrent_sign_in() -> ServiceError {
    ServiceError::ProviderSignInFailed {
        reason: "concurrent_sign_in",
        detail:
            "another sign-in of the same account was being made at the same moment; sign in again"
                .into(),
    }
}

/// Text from outside (the provider's error, a claim) as shown on a page: printable
/// characters only, at most `max` of them.
fn printable(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
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
    let role = match (&settings.admin_group, &account.groups) {
        (Some(admins), Some(groups)) => Some(if groups.iter().any(|g| g == admins) {
            Role::Admin
        } else {
            Role::Member
        }),
        _ => None,
    };
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
            PROVIDER_ACTOR,
            request_id,
            "user.update",
            &target,
            json!({ "changed": changed, "role": updated.role.as_str(), "source": "oidc" }),
        )
        .await?;
    }

    let Some(groups) = &account.groups else {
        return Ok(());
    };
    // Group names as keyportal spells them: a path's `/` becomes `.` (Keycloak's full paths
    // keep `/eng/ops` and `/sales/ops` apart); a name that cannot be one is skipped (and said).
    let mut wanted: Vec<String> = Vec::new();
    let mut unusable: Vec<&str> = Vec::new();
    for sent in groups {
        let name = sent
            .trim()
            .trim_start_matches('/')
            .replace('/', ".")
            .to_ascii_lowercase();
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
                        PROVIDER_ACTOR,
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
                PROVIDER_ACTOR,
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
                PROVIDER_ACTOR,
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
        assert_eq!(a.groups, Some(vec!["ops".to_owned(), "/dev".to_owned()]));
        let no_sub = json!({"preferred_username": "alice"});
        assert!(ProviderAccount::from_claims(no_sub.as_object().unwrap(), &settings()).is_err());
        let one_group = json!({"sub": "s", "groups": "ops"});
        let a = ProviderAccount::from_claims(one_group.as_object().unwrap(), &settings()).unwrap();
        assert_eq!(a.groups, Some(vec!["ops".to_owned()]));
        let no_claim = json!({"sub": "s", "preferred_username": "\u{212A}im"});
        let a = ProviderAccount::from_claims(no_claim.as_object().unwrap(), &settings()).unwrap();
        assert_eq!(a.groups, None, "an absent claim is not an empty list");
        assert!(
            Username::parse(a.username.as_deref().unwrap()).is_err(),
            "no Unicode case folding into ASCII"
        );
    }
}
