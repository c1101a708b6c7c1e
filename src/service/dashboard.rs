//! Whole-set views: the dashboard's counts and keys needing attention, and the preview of a
//! policy change.

use time::{Duration, OffsetDateTime};

use super::keys::{KeyStatus, KeyView};
use super::{authorize, Action, Caller, Ctx, ServiceError, Services};
use crate::keys::Policy;
use crate::store;

/// Keys expiring within this many days are flagged on the dashboard.
pub const EXPIRING_SOON_DAYS: i64 = 14;

#[derive(Debug)]
pub struct Dashboard {
    /// Totals (admins only): users, keys, servers, grants.
    pub totals: Option<(i64, i64, i64, i64)>,
    /// Keys the caller may see: how many, and how many are valid now.
    pub keys: usize,
    pub valid_keys: usize,
    /// Invalid under today's policy, expired, or expiring soon.
    pub attention: Vec<KeyView>,
}

impl Services {
    pub async fn dashboard(&self, ctx: &Ctx) -> Result<Dashboard, ServiceError> {
        let (owner, totals) = match &ctx.caller {
            c if c.is_admin() => (None, Some(store::keys::counts(&self.pool).await?)),
            Caller::User { id, .. } => {
                authorize(&ctx.caller, Action::ManageKeysOf { user_id: *id })?;
                (Some(*id), None)
            }
            Caller::Server { .. } | Caller::CommandLine => {
                return Err(ServiceError::Forbidden("the dashboard is for people"))
            }
        };
        let policy = super::policy::current(&self.pool).await?;
        let now = OffsetDateTime::now_utc();
        let soon = now + Duration::days(EXPIRING_SOON_DAYS);
        let views: Vec<KeyView> = store::keys::all(&self.pool, owner)
            .await?
            .into_iter()
            .map(|row| self.key_view(row, &policy, now))
            .collect();
        let keys = views.len();
        let valid_keys = views
            .iter()
            .filter(|k| k.status == KeyStatus::Valid)
            .count();
        let attention = views
            .into_iter()
            .filter(|k| k.status != KeyStatus::Valid || k.expires_at.is_some_and(|e| e <= soon))
            .collect();
        Ok(Dashboard {
            totals,
            keys,
            valid_keys,
            attention,
        })
    }

    /// The stored keys that are valid today and would be invalid under `proposed`: what an
    /// admin sees before saving a policy. Nothing is changed.
    pub async fn policy_preview(
        &self,
        ctx: &Ctx,
        proposed: &Policy,
    ) -> Result<Vec<KeyView>, ServiceError> {
        authorize(&ctx.caller, Action::EditPolicy)?;
        super::policy::check(proposed)?;
        let current = super::policy::current(&self.pool).await?;
        let now = OffsetDateTime::now_utc();
        Ok(store::keys::all(&self.pool, None)
            .await?
            .into_iter()
            .filter(|row| self.key_view(row.clone(), &current, now).status == KeyStatus::Valid)
            .map(|row| self.key_view(row, proposed, now))
            .filter(|k| k.status == KeyStatus::Invalid)
            .collect())
    }
}
