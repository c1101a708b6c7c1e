//! API tokens: personal tokens act as their user; server tokens may only read that server's
//! authorized_keys. The secret is shown once; only its SHA-256 is stored (it is 256 random
//! bits, so a fast hash is enough and lookups stay one index probe).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{authorize, Action, Caller, Ctx, ServiceError, Services};
use crate::store;
use crate::store::tokens::TokenRow;

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
    }
}

fn secret_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn check_name(name: &str) -> Result<(), ServiceError> {
    if name.trim().is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            "name",
            "a token name is 1-100 characters, without control characters",
        ));
    }
    Ok(())
}

impl Services {
    /// Who a bearer secret belongs to. Unknown, revoked and expired tokens, and tokens of
    /// disabled users, are all simply "not authenticated".
    pub async fn authenticate(&self, secret: &str) -> Result<Caller, ServiceError> {
        if !secret.starts_with(PREFIX) || secret.len() > 100 {
            return Err(ServiceError::Unauthenticated);
        }
        let principal = store::tokens::authenticate(&self.pool, &secret_hash(secret))
            .await?
            .ok_or(ServiceError::Unauthenticated)?;
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

    pub async fn list_tokens(&self, ctx: &Ctx) -> Result<Vec<TokenView>, ServiceError> {
        authorize(&ctx.caller, Action::ManageOwnTokens)?;
        let Caller::User { id, username, .. } = &ctx.caller else {
            return Err(ServiceError::Forbidden("only users have personal tokens"));
        };
        let rows = store::tokens::list_for_user(&self.pool, *id).await?;
        Ok(rows
            .into_iter()
            .map(|r| view(r, Some(username.clone()), None))
            .collect())
    }

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
        self.insert_user_token(ctx, *id, username, name, expires_at)
            .await
    }

    /// A personal token for another user (`keyportal token create --username`): admins and
    /// the command line only.
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
        if expires_at.is_some_and(|e| e <= OffsetDateTime::now_utc()) {
            return Err(ServiceError::invalid(
                "expires_at",
                "expires_at must be in the future",
            ));
        }
        let secret = new_secret();
        let mut tx = self.pool.begin().await?;
        let row = store::tokens::insert(
            &mut *tx,
            name.trim(),
            Some(user_id),
            None,
            &secret_hash(&secret),
            expires_at,
        )
        .await?;
        super::audit::record(
            &mut *tx,
            ctx,
            "token.create",
            &format!("user:{username}"),
            json!({ "token_id": row.id, "name": row.name }),
        )
        .await?;
        tx.commit().await?;
        Ok(NewToken {
            token: view(row, Some(username.to_owned()), None),
            secret,
        })
    }

    pub async fn revoke_token(&self, ctx: &Ctx, id: Uuid) -> Result<(), ServiceError> {
        authorize(&ctx.caller, Action::ManageOwnTokens)?;
        let Caller::User {
            id: user_id,
            username,
            ..
        } = &ctx.caller
        else {
            return Err(ServiceError::Forbidden("only users have personal tokens"));
        };
        let mut tx = self.pool.begin().await?;
        if store::tokens::revoke(&mut *tx, id, *user_id).await? == 0 {
            return Err(ServiceError::NotFound { what: "token" });
        }
        super::audit::record(
            &mut *tx,
            ctx,
            "token.revoke",
            &format!("user:{username}"),
            json!({ "token_id": id }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A server token: it may read only that server's authorized_keys.
    pub async fn create_server_token(
        &self,
        ctx: &Ctx,
        server: &str,
        name: Option<&str>,
    ) -> Result<NewToken, ServiceError> {
        authorize(&ctx.caller, Action::ManageServers)?;
        let row = store::servers::by_name(&self.pool, server)
            .await?
            .ok_or(ServiceError::NotFound { what: "server" })?;
        let name = name.unwrap_or("sshd");
        check_name(name)?;
        let secret = new_secret();
        let mut tx = self.pool.begin().await?;
        let token = store::tokens::insert(
            &mut *tx,
            name.trim(),
            None,
            Some(row.id),
            &secret_hash(&secret),
            None,
        )
        .await?;
        super::audit::record(
            &mut *tx,
            ctx,
            "token.create",
            &format!("server:{}", row.name),
            json!({ "token_id": token.id, "name": token.name }),
        )
        .await?;
        tx.commit().await?;
        Ok(NewToken {
            token: view(token, None, Some(row.name)),
            secret,
        })
    }
}
