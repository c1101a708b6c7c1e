//! API tokens: personal tokens act as their user; server tokens may only read that server's
//! authorized_keys. The secret is shown once; only its SHA-256 is stored (it is 256 random
//! bits, so a fast hash is enough and lookups stay one index probe).
//!
//! A stolen token must not become a permanent foothold, so: a personal token cannot mint
//! tokens (that needs a browser session or the command line), every personal token expires
//! within the policy's `max_token_days`, and a password change or disabling revokes them all.
//! Server tokens may expire, and are listed and revoked per server.

use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{authorize, Action, Caller, Ctx, ServiceError, Services};
use crate::domain::{Expiry, TokenName};
use crate::store;
use crate::store::tokens::{Owner, TokenRow};

const PREFIX: &str = "kp_";

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: Uuid,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Who made it (an audit actor name); absent for tokens made before this was kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

/// A token just made: the only time its secret is shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NewToken {
    pub token: TokenView,
    pub secret: String,
}

fn view(row: TokenRow, username: Option<String>, server: Option<String>) -> TokenView {
    TokenView {
        id: row.id,
        name: row.name,
        username,
        server,
        created_at: row.created_at,
        last_used_at: row.last_used_at,
        expires_at: row.expires_at,
        created_by: row.created_by,
    }
}

/// An expiry in the future, or none.
fn check_expiry(expires_at: Option<OffsetDateTime>) -> Result<(), ServiceError> {
    Expiry::parse_optional(expires_at)
        .map(drop)
        .map_err(|e| ServiceError::invalid("expires_at", e))
}

fn secret_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// The stored hash of a bearer secret; `None` for text that cannot be one of our tokens (it is
/// not looked up).
pub(super) fn bearer_hash(secret: &str) -> Option<Vec<u8>> {
    (secret.starts_with(PREFIX) && secret.len() <= 100).then(|| secret_hash(secret))
}

fn new_secret() -> String {
    format!("{PREFIX}{}", super::random_secret::<32>())
}

fn check_name(name: &str) -> Result<(), ServiceError> {
    TokenName::parse(name.trim())
        .map(drop)
        .map_err(|e| ServiceError::invalid("name", format!("a token name is {e}")))
}

impl Services {
    /// Who a bearer secret belongs to. Unknown, revoked and expired tokens, and tokens of
    /// disabled users, are all simply "not authenticated".
    #[tracing::instrument(skip_all)]
    pub async fn authenticate(&self, secret: &str) -> Result<Caller, ServiceError> {
        let hash = bearer_hash(secret).ok_or(ServiceError::Unauthenticated)?;
        let principal = store::tokens::authenticate(&self.pool, &hash)
            .await?
            .ok_or(ServiceError::Unauthenticated)?;
        self.caller_of_token(principal).await
    }

    /// The caller a live token's principal is, recording the token's use (at most once a
    /// minute).
    pub(super) async fn caller_of_token(
        &self,
        principal: store::tokens::TokenPrincipal,
    ) -> Result<Caller, ServiceError> {
        if principal.stale {
            store::tokens::touch(&self.pool, principal.token_id).await?;
        }
        match principal {
            store::tokens::TokenPrincipal {
                user_id: Some(id),
                username: Some(username),
                role: Some(role),
                disabled: Some(false),
                ..
            } => Ok(Caller::User { id, username, role }),
            store::tokens::TokenPrincipal {
                server_id: Some(id),
                server: Some(name),
                ..
            } => Ok(Caller::Server { id, name }),
            _ => Err(ServiceError::Unauthenticated),
        }
    }

    /// The caller's own personal tokens.
    #[tracing::instrument(skip_all)]
    pub async fn list_tokens(&self, ctx: &Ctx) -> Result<Vec<TokenView>, ServiceError> {
        authorize(&ctx.caller, Action::ManageOwnTokens)?;
        let Caller::User { id, username, .. } = &ctx.caller else {
            return Err(ServiceError::Forbidden("only users have personal tokens"));
        };
        let rows = store::tokens::list(&self.pool, Owner::User(*id)).await?;
        Ok(rows
            .into_iter()
            .map(|r| view(r, Some(username.clone()), None))
            .collect())
    }

    /// A user's personal tokens: the user, or an admin.
    #[tracing::instrument(skip_all)]
    pub async fn list_user_tokens(
        &self,
        ctx: &Ctx,
        username: &str,
    ) -> Result<Vec<TokenView>, ServiceError> {
        let user = self
            .visible_user(ctx, username, |id| Action::ReadUser { user_id: id })
            .await?;
        let rows = store::tokens::list(&self.pool, Owner::User(user.id)).await?;
        Ok(rows
            .into_iter()
            .map(|r| view(r, Some(user.username.clone()), None))
            .collect())
    }

    /// A personal token for the caller. Only from a browser session: a token that could mint
    /// tokens would let whoever steals one keep access after it is revoked.
    #[tracing::instrument(skip_all)]
    pub async fn create_token(
        &self,
        ctx: &Ctx,
        name: &str,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<NewToken, ServiceError> {
        authorize(&ctx.caller, Action::ManageOwnTokens)?;
        let Caller::User { id, username, .. } = &ctx.caller else {
            return Err(ServiceError::Forbidden("only users have personal tokens"));
        };
        if ctx.session.is_none() {
            return Err(ServiceError::Refused {
                code: "token_cannot_create_tokens",
                field: None,
                detail: "an API token cannot create tokens: create them signed in to the web \
                         interface, or with `keyportal token create` on the portal host",
            });
        }
        self.insert_user_token(ctx, *id, username, name, expires_at)
            .await
    }

    /// A personal token for another user (`keyportal token create --username`): admins and
    /// the command line only.
    #[tracing::instrument(skip_all)]
    pub async fn create_token_for(
        &self,
        ctx: &Ctx,
        username: &str,
        name: &str,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<NewToken, ServiceError> {
        authorize(&ctx.caller, Action::ManageUsers)?;
        let user = store::users::by_username(&self.pool, username)
            .await?
            .ok_or_else(|| {
                ServiceError::invalid("username", format!("there is no user {username:?}"))
            })?;
        self.insert_user_token(ctx, user.id, &user.username, name, expires_at)
            .await
    }

    async fn insert_user_token(
        &self,
        ctx: &Ctx,
        user_id: i64,
        username: &str,
        name: &str,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<NewToken, ServiceError> {
        check_name(name)?;
        check_expiry(expires_at)?;
        let days = super::policy::current(&self.pool).await?.max_token_days;
        let cap = OffsetDateTime::now_utc() + time::Duration::days(i64::from(days));
        let expires_at = match expires_at {
            None => cap,
            Some(e) if e <= cap => e,
            Some(_) => {
                return Err(ServiceError::Invalid {
                    code: "token_expiry_too_far",
                    field: "expires_at",
                    detail: format!(
                    "a personal token may live at most {days} days (the policy's max_token_days); \
                         choose an earlier expires_at, or leave it out to get the longest"
                ),
                })
            }
        };
        let (row, secret) = self
            .issue(
                ctx,
                name,
                Owner::User(user_id),
                &format!("user:{username}"),
                Some(expires_at),
            )
            .await?;
        Ok(NewToken {
            token: view(row, Some(username.to_owned()), None),
            secret,
        })
    }

    /// A new token for `owner`, stored as the hash of its secret, with its audit event, in
    /// one transaction; the row and the secret (shown once).
    async fn issue(
        &self,
        ctx: &Ctx,
        name: &str,
        owner: Owner,
        target: &str,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<(store::tokens::TokenRow, String), ServiceError> {
        let secret = new_secret();
        let mut tx = self.pool.begin().await?;
        let row = store::tokens::insert(
            &mut *tx,
            name.trim(),
            owner,
            &secret_hash(&secret),
            expires_at,
            &ctx.caller.actor(),
        )
        .await?;
        super::audit::record(
            &mut *tx,
            ctx,
            "token.create",
            target,
            json!({ "token_id": row.id, "name": row.name, "expires_at": expires_at.map(|e| e.unix_timestamp()) }),
        )
        .await?;
        tx.commit().await?;
        Ok((row, secret))
    }

    /// Revokes one of the caller's own tokens.
    #[tracing::instrument(skip_all)]
    pub async fn revoke_token(&self, ctx: &Ctx, id: Uuid) -> Result<(), ServiceError> {
        authorize(&ctx.caller, Action::ManageOwnTokens)?;
        let Caller::User { username, .. } = &ctx.caller else {
            return Err(ServiceError::Forbidden("only users have personal tokens"));
        };
        let username = username.clone();
        self.revoke_user_token(ctx, &username, id).await
    }

    /// Revokes one of a user's tokens: the user, or an admin.
    #[tracing::instrument(skip_all)]
    pub async fn revoke_user_token(
        &self,
        ctx: &Ctx,
        username: &str,
        id: Uuid,
    ) -> Result<(), ServiceError> {
        let user = self
            .visible_user(ctx, username, |id| Action::ReadUser { user_id: id })
            .await?;
        if !ctx.caller.is_admin() && ctx.caller.user_id() != Some(user.id) {
            return Err(ServiceError::NotFound { what: "token" });
        }
        self.revoke_owned(
            ctx,
            id,
            Owner::User(user.id),
            &format!("user:{}", user.username),
        )
        .await
    }

    /// A server's tokens (never their secrets).
    #[tracing::instrument(skip_all)]
    pub async fn list_server_tokens(
        &self,
        ctx: &Ctx,
        server: &str,
    ) -> Result<Vec<TokenView>, ServiceError> {
        authorize(&ctx.caller, Action::ManageServers)?;
        let row = store::servers::by_name(&self.pool, server)
            .await?
            .ok_or(ServiceError::NotFound { what: "server" })?;
        let rows = store::tokens::list(&self.pool, Owner::Server(row.id)).await?;
        Ok(rows
            .into_iter()
            .map(|r| view(r, None, Some(row.name.clone())))
            .collect())
    }

    /// A server token: it may read only that server's authorized_keys, until `expires_at`
    /// (none: until revoked).
    #[tracing::instrument(skip_all)]
    pub async fn create_server_token(
        &self,
        ctx: &Ctx,
        server: &str,
        name: Option<&str>,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<NewToken, ServiceError> {
        authorize(&ctx.caller, Action::ManageServers)?;
        let row = store::servers::by_name(&self.pool, server)
            .await?
            .ok_or(ServiceError::NotFound { what: "server" })?;
        let name = name.unwrap_or("sshd");
        check_name(name)?;
        check_expiry(expires_at)?;
        let (token, secret) = self
            .issue(
                ctx,
                name,
                Owner::Server(row.id),
                &format!("server:{}", row.name),
                expires_at,
            )
            .await?;
        Ok(NewToken {
            token: view(token, None, Some(row.name)),
            secret,
        })
    }

    /// Revokes a server token: the next request made with it, on any process, is refused.
    #[tracing::instrument(skip_all)]
    pub async fn revoke_server_token(
        &self,
        ctx: &Ctx,
        server: &str,
        id: Uuid,
    ) -> Result<(), ServiceError> {
        authorize(&ctx.caller, Action::ManageServers)?;
        let row = store::servers::by_name(&self.pool, server)
            .await?
            .ok_or(ServiceError::NotFound { what: "server" })?;
        self.revoke_owned(
            ctx,
            id,
            Owner::Server(row.id),
            &format!("server:{}", row.name),
        )
        .await
    }

    /// Revokes token `id` if `owner` holds it, with its audit event, in one transaction.
    async fn revoke_owned(
        &self,
        ctx: &Ctx,
        id: Uuid,
        owner: Owner,
        target: &str,
    ) -> Result<(), ServiceError> {
        let mut tx = self.pool.begin().await?;
        if store::tokens::revoke(&mut *tx, id, owner).await? == 0 {
            return Err(ServiceError::NotFound { what: "token" });
        }
        super::audit::record(
            &mut *tx,
            ctx,
            "token.revoke",
            target,
            json!({ "token_id": id }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
