//! Users: admins manage everyone; members read and edit their own profile.

use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use super::{authorize, page, Action, Ctx, Listing, ResultExt, ServiceError, Services};
use crate::domain::DisplayName;
use crate::domain::{Role, Username};
use crate::keys::Policy;
use crate::store;
use crate::store::users::UserRow;

pub const MIN_PASSWORD_CHARS: usize = 12;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub role: Role,
    pub disabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<UserRow> for UserView {
    fn from(u: UserRow) -> Self {
        UserView {
            username: u.username,
            display_name: u.display_name,
            email: u.email,
            role: u.role,
            disabled: u.disabled,
            created_at: u.created_at,
        }
    }
}

#[derive(Debug, Default)]
pub struct NewUser {
    pub username: String,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub role: Option<Role>,
    pub password: Option<String>,
}

#[derive(Debug, Default)]
pub struct UserPatch {
    pub display_name: Option<String>,
    pub email: Option<Option<String>>,
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    pub password: Option<String>,
    /// Needed to change one's own password: a stolen session or token alone cannot.
    pub current_password: Option<String>,
}

/// A fresh password for a new account: 144 random bits as 24 base64url characters.
pub fn generate_password() -> String {
    super::random_secret::<18>()
}

impl Services {
    /// The stored hash of a new password, after its length check (under the hashing bound).
    async fn hash_new_password(
        &self,
        password: Option<&str>,
    ) -> Result<Option<String>, ServiceError> {
        let Some(password) = password else {
            return Ok(None);
        };
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(ServiceError::invalid(
                "password",
                format!("the password must have at least {MIN_PASSWORD_CHARS} characters"),
            ));
        }
        self.passwords.hash(password).await.map(Some)
    }
}

fn check_profile(display_name: Option<&str>, email: Option<&str>) -> Result<(), ServiceError> {
    if let Some(d) = display_name {
        DisplayName::parse(d).map_err(|e| ServiceError::invalid("display_name", e))?;
    }
    if let Some(e) = email {
        let ok = e.len() <= 320
            && e.split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
            && !e.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            return Err(ServiceError::invalid(
                "email",
                format!("{e:?} is not an email address"),
            ));
        }
    }
    Ok(())
}

/// Refuses a change that would leave no enabled admin (the caller is about to remove one).
async fn ensure_another_admin(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
) -> Result<(), ServiceError> {
    if store::users::lock_enabled_admins(&mut **tx).await? <= 1 {
        return Err(ServiceError::Conflict {
            code: "last_admin",
            detail: "this is the only enabled admin: make another user admin first".into(),
        });
    }
    Ok(())
}

impl Services {
    /// The user named `username`, if the caller may do `action` on them; otherwise not found.
    pub(crate) async fn visible_user(
        &self,
        ctx: &Ctx,
        username: &str,
        action: impl Fn(i64) -> Action<'static>,
    ) -> Result<UserRow, ServiceError> {
        let row = store::users::by_username(&self.pool, username).await?;
        let row = row.ok_or(ServiceError::NotFound { what: "user" })?;
        authorize(&ctx.caller, action(row.id))?;
        Ok(row)
    }

    /// [`Self::visible_user`] and the policy in force, read together.
    pub(crate) async fn visible_user_and_policy(
        &self,
        ctx: &Ctx,
        username: &str,
        action: impl Fn(i64) -> Action<'static>,
    ) -> Result<(UserRow, Policy), ServiceError> {
        let row = store::users::by_username_with_policy(&self.pool, username).await?;
        let (row, settings) = row.ok_or(ServiceError::NotFound { what: "user" })?;
        authorize(&ctx.caller, action(row.id))?;
        Ok((row, super::policy::parse(settings)?))
    }

    #[tracing::instrument(skip_all)]
    pub async fn me(&self, ctx: &Ctx) -> Result<serde_json::Value, ServiceError> {
        match &ctx.caller {
            super::Caller::User { id, .. } => {
                let row = store::users::by_id(&self.pool, *id)
                    .await?
                    .ok_or(ServiceError::Unauthenticated)?;
                Ok(json!({ "kind": "user", "user": UserView::from(row) }))
            }
            super::Caller::Server { name, .. } => Ok(json!({ "kind": "server", "server": name })),
            super::Caller::CommandLine => Ok(json!({ "kind": "command_line" })),
        }
    }

    #[tracing::instrument(skip_all)]
    pub async fn list_users(
        &self,
        ctx: &Ctx,
        q: Option<&str>,
        limit: Option<i64>,
        cursor: Option<&str>,
    ) -> Result<Listing<UserView>, ServiceError> {
        authorize(&ctx.caller, Action::ManageUsers)?;
        let page = page(limit, cursor, crate::store::CursorShape::Name)?;
        let rows = store::users::list(&self.pool, q, &page).await?;
        let (rows, next_cursor) = store::split_page(rows, page.limit, |r| r.username.clone());
        Ok(Listing {
            items: rows.into_iter().map(UserView::from).collect(),
            next_cursor,
        })
    }

    #[tracing::instrument(skip_all)]
    pub async fn get_user(&self, ctx: &Ctx, username: &str) -> Result<UserView, ServiceError> {
        Ok(self
            .visible_user(ctx, username, |id| Action::ReadUser { user_id: id })
            .await?
            .into())
    }

    #[tracing::instrument(skip_all)]
    pub async fn create_user(&self, ctx: &Ctx, new: NewUser) -> Result<UserView, ServiceError> {
        authorize(&ctx.caller, Action::ManageUsers)?;
        let username = Username::parse(&new.username).map_err(|e| ServiceError::Invalid {
            code: e.code,
            field: "username",
            detail: e.detail,
        })?;
        check_profile(new.display_name.as_deref(), new.email.as_deref())?;
        let password_hash = self.hash_new_password(new.password.as_deref()).await?;
        let role = new.role.unwrap_or(Role::Member);
        let mut tx = self.pool.begin().await?;
        let row = store::users::insert(
            &mut *tx,
            &store::users::NewUser {
                username: &username,
                display_name: new.display_name.as_deref().unwrap_or(""),
                email: new.email.as_deref(),
                role,
                password_hash: password_hash.as_deref(),
            },
        )
        .await
        .on_constraint(&["users_username_key"], || ServiceError::Conflict {
            code: "name_taken",
            detail: format!("the username {username} is taken"),
        })?;
        super::audit::record(
            &mut *tx,
            ctx,
            "user.create",
            &format!("user:{username}"),
            json!({ "role": role.as_str() }),
        )
        .await?;
        tx.commit().await?;
        Ok(row.into())
    }

    #[tracing::instrument(skip_all)]
    pub async fn update_user(
        &self,
        ctx: &Ctx,
        username: &str,
        patch: UserPatch,
    ) -> Result<UserView, ServiceError> {
        let row = self
            .visible_user(ctx, username, |id| Action::EditProfile { user_id: id })
            .await?;
        if patch.role.is_some() || patch.disabled.is_some() {
            authorize(&ctx.caller, Action::ManageUsers)?;
        }
        check_profile(
            patch.display_name.as_deref(),
            patch.email.as_ref().and_then(|e| e.as_deref()),
        )?;
        if patch.password.is_some() && ctx.caller.user_id() == Some(row.id) {
            self.check_current_password(&row, patch.current_password.as_deref())
                .await?;
        }
        let password_hash = self.hash_new_password(patch.password.as_deref()).await?;
        let mut tx = self.pool.begin().await?;
        let loses_admin = row.role == Role::Admin
            && !row.disabled
            && (patch.role == Some(Role::Member) || patch.disabled == Some(true));
        if loses_admin {
            ensure_another_admin(&mut tx).await?;
        }
        let updated = store::users::update(
            &mut *tx,
            row.id,
            &store::users::UserChanges {
                display_name: patch.display_name.as_deref(),
                email: patch.email.as_ref().map(|e| e.as_deref()),
                role: patch.role,
                disabled: patch.disabled,
                password_hash: password_hash.as_deref(),
            },
        )
        .await?;
        if patch.disabled.is_some() {
            // An admin's own choice: a later provider sign-in does not undo it.
            store::oidc::set_disabled_by_sync(&mut *tx, updated.id, false).await?;
        }
        // A new password or disabling revokes the user's API tokens: whoever stole one must
        // not keep it past the owner's remedy.
        if patch.password.is_some() || patch.disabled == Some(true) {
            store::tokens::revoke_all_of_user(&mut *tx, row.id).await?;
        }
        // A new password ends the user's other sessions; a disabled user's end at once.
        if updated.disabled {
            store::sessions::delete_for_user(&mut *tx, row.id, None).await?;
        } else if patch.password.is_some() {
            let own_session = ctx
                .session
                .as_ref()
                .filter(|_| ctx.caller.user_id() == Some(row.id));
            store::sessions::delete_for_user(&mut *tx, row.id, own_session.map(|s| &s.0[..]))
                .await?;
        }
        let mut changed: Vec<&str> = Vec::new();
        for (name, set) in [
            ("display_name", patch.display_name.is_some()),
            ("email", patch.email.is_some()),
            ("role", patch.role.is_some()),
            ("disabled", patch.disabled.is_some()),
            ("password", patch.password.is_some()),
        ] {
            if set {
                changed.push(name);
            }
        }
        super::audit::record(
            &mut *tx,
            ctx,
            "user.update",
            &format!("user:{}", row.username),
            json!({ "changed": changed, "role": updated.role.as_str(), "disabled": updated.disabled }),
        )
        .await?;
        tx.commit().await?;
        Ok(updated.into())
    }

    /// The caller's own password, as they typed it now: 400 `current_password_required` without
    /// it, 403 `current_password_wrong` when it does not match (also when the account has no
    /// password yet: then an admin sets one).
    async fn check_current_password(
        &self,
        row: &UserRow,
        current: Option<&str>,
    ) -> Result<(), ServiceError> {
        let refused = ServiceError::Refused {
            code: "current_password_wrong",
            field: Some("current_password"),
            detail: "to change your password, give your current password as current_password \
                     (an account without one gets its first password from an admin)",
        };
        let Some(current) = current else {
            return Err(ServiceError::Malformed {
                code: "current_password_required",
                detail: "to change your own password, also send your current password as \
                         current_password"
                    .into(),
            });
        };
        let Some(hash) = row.password_hash.clone() else {
            return Err(refused);
        };
        if self.passwords.verify(current, Some(hash)).await? {
            Ok(())
        } else {
            Err(refused)
        }
    }

    #[tracing::instrument(skip_all)]
    pub async fn delete_user(&self, ctx: &Ctx, username: &str) -> Result<(), ServiceError> {
        authorize(&ctx.caller, Action::ManageUsers)?;
        let row = self
            .visible_user(ctx, username, |_| Action::ManageUsers)
            .await?;
        if ctx.caller.user_id() == Some(row.id) {
            return Err(ServiceError::Conflict {
                code: "cannot_delete_self",
                detail: "you cannot delete your own account".into(),
            });
        }
        let mut tx = self.pool.begin().await?;
        if row.role == Role::Admin && !row.disabled {
            ensure_another_admin(&mut tx).await?;
        }
        store::users::delete(&mut *tx, row.id).await?;
        super::audit::record(
            &mut *tx,
            ctx,
            "user.delete",
            &format!("user:{}", row.username),
            json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
