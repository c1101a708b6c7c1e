//! Whole-set views: the dashboard's counts and keys needing attention, and the preview of a
//! policy change.
//!
//! At a million keys neither may re-validate every key on every view. The policy judges a
//! valid key only by its shape ([`KeyShape`]), which triggers count per shape in SQL; each shape
//! is judged once here by [`KeyShape::policy_verdict`], and the counts follow. The few keys a
//! view shows are validated from their bytes as on every read (`key_view`), which also checks
//! the stored shape against the bytes.

use std::collections::HashSet;

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use super::keys::{KeyStatus, KeyView};
use super::{authorize, Action, Caller, Ctx, ServiceError, Services};
use crate::keys::{KeyShape, Policy};
use crate::store;
use crate::store::keys::KeyRow;
use crate::store::tallies::ShapeCount;

/// Keys expiring within this many days are flagged on the dashboard.
pub const EXPIRING_SOON_DAYS: i64 = 14;
/// Keys listed under "needs attention" and in a policy preview; the counts cover all of them.
pub const SHOWN: i64 = 50;

#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct Totals {
    pub users: i64,
    pub keys: i64,
    pub servers: i64,
    pub grants: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Dashboard {
    /// Totals (admins only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub totals: Option<Totals>,
    /// Keys the caller may see, and how many of them are valid, invalid under today's policy,
    /// expired, and valid but expiring within [`EXPIRING_SOON_DAYS`].
    pub keys: i64,
    pub valid_keys: i64,
    pub invalid_keys: i64,
    pub expired_keys: i64,
    pub expiring_soon: i64,
    /// Up to [`SHOWN`] of the keys needing attention, validated from their bytes.
    pub attention: Vec<KeyView>,
    /// Up to [`SHOWN`] compromised keys (blocklisted, or flagged by the computed checks), with
    /// owner and reason: shown before anything else.
    pub compromised: Vec<KeyView>,
}

impl Dashboard {
    /// How many keys need attention in all (the list shows at most [`SHOWN`]).
    pub fn attention_total(&self) -> i64 {
        self.invalid_keys + self.expired_keys + self.expiring_soon
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PolicyPreview {
    /// Keys valid today that the proposed policy would make invalid.
    pub would_invalidate: i64,
    /// Up to [`SHOWN`] of them, with the reason the proposed policy gives.
    pub keys: Vec<KeyView>,
}

/// Counts by verdict over a set of shape counts.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Verdicts {
    pub(crate) keys: i64,
    pub(crate) valid: i64,
    pub(crate) invalid: i64,
    pub(crate) expired: i64,
    pub(crate) expiring: i64,
    pub(crate) invalid_shapes: Vec<KeyShape>,
}

fn judge(shapes: &[ShapeCount], policy: &Policy) -> Verdicts {
    let mut v = Verdicts::default();
    for s in shapes {
        v.keys += s.keys;
        let shape = s.shape();
        if shape.policy_verdict(policy).is_some() {
            // Invalid wins over expired, as on every read.
            v.invalid += s.keys;
            v.invalid_shapes.push(shape);
        } else {
            v.valid += s.keys - s.expired;
            v.expired += s.expired;
            v.expiring += s.expiring;
        }
    }
    v
}

impl Services {
    #[tracing::instrument(skip_all)]
    pub async fn dashboard(&self, ctx: &Ctx) -> Result<Dashboard, ServiceError> {
        let owner = match &ctx.caller {
            c if c.is_admin() => None,
            Caller::User { id, .. } => {
                authorize(&ctx.caller, Action::ManageKeysOf { user_id: *id })?;
                Some(*id)
            }
            Caller::Server { .. } | Caller::CommandLine => {
                return Err(ServiceError::Forbidden("the dashboard is for people"))
            }
        };
        let policy = super::policy::current(&self.pool).await?;
        let now = OffsetDateTime::now_utc();
        let soon = now + Duration::days(EXPIRING_SOON_DAYS);
        let (shapes, totals) = match owner {
            Some(user) => (
                store::tallies::shapes_of_user(&self.pool, user, now, soon).await?,
                None,
            ),
            None => {
                let mut conn = self.pool.acquire().await?;
                store::tallies::fold(&mut conn).await?;
                let shapes = store::tallies::shapes(&mut *conn, now, soon).await?;
                let (users, servers, grants) = store::tallies::rows(&mut *conn).await?;
                let keys = shapes.iter().map(|s| s.keys).sum();
                let totals = Totals {
                    users,
                    keys,
                    servers,
                    grants,
                };
                (shapes, Some(totals))
            }
        };
        let v = judge(&shapes, &policy);
        let mut rows =
            store::keys::of_shapes(&self.pool, &v.invalid_shapes, owner, None, SHOWN).await?;
        rows.extend(store::keys::expiring(&self.pool, soon, owner, SHOWN).await?);
        let attention = self
            .shown(rows, &policy, now, move |_, k| {
                k.status != KeyStatus::Valid || k.expires_at.is_some_and(|e| e <= soon)
            })
            .await?;
        let compromised_rows = store::keys::compromised(&self.pool, owner, SHOWN).await?;
        let compromised = self
            .shown(compromised_rows, &policy, now, |_, k| {
                k.problem
                    .as_ref()
                    .is_some_and(|p| p.code == crate::keys::KeyErrorCode::KeyCompromised)
            })
            .await?;
        Ok(Dashboard {
            totals,
            keys: v.keys,
            valid_keys: v.valid,
            invalid_keys: v.invalid,
            expired_keys: v.expired,
            expiring_soon: v.expiring,
            attention,
            compromised,
        })
    }

    /// Every stored key counted by verdict under `policy`, "expiring" meaning valid and
    /// expiring after `now` and by `soon`; with the shapes `policy` refuses. The admin
    /// dashboard's counts, for the notifications (`notifications.rs`).
    pub(crate) async fn whole_set_verdicts(
        &self,
        policy: &Policy,
        now: OffsetDateTime,
        soon: OffsetDateTime,
    ) -> Result<Verdicts, ServiceError> {
        let mut conn = self.pool.acquire().await?;
        store::tallies::fold(&mut conn).await?;
        let shapes = store::tallies::shapes(&mut *conn, now, soon).await?;
        Ok(judge(&shapes, policy))
    }

    /// The stored keys that are valid today and would be invalid under `proposed`: what an
    /// admin sees before saving a policy. Nothing is changed.
    #[tracing::instrument(skip_all)]
    pub async fn policy_preview(
        &self,
        ctx: &Ctx,
        proposed: &Policy,
    ) -> Result<PolicyPreview, ServiceError> {
        authorize(&ctx.caller, Action::EditPolicy)?;
        super::policy::check(proposed)?;
        let current = super::policy::current(&self.pool).await?;
        let now = OffsetDateTime::now_utc();
        let mut conn = self.pool.acquire().await?;
        store::tallies::fold(&mut conn).await?;
        let shapes = store::tallies::shapes(&mut *conn, now, now).await?;
        drop(conn);
        let mut would_invalidate = 0;
        let mut affected = Vec::new();
        for s in &shapes {
            let shape = s.shape();
            if shape.policy_verdict(&current).is_none() && shape.policy_verdict(proposed).is_some()
            {
                // Expired keys are not valid today, so a policy cannot take them away.
                would_invalidate += s.keys - s.expired;
                affected.push(shape);
            }
        }
        let rows = store::keys::of_shapes(&self.pool, &affected, None, Some(now), SHOWN).await?;
        let today = current.clone();
        let services = self.clone();
        let keys = self
            .shown(rows, proposed, now, move |row, k| {
                k.status == KeyStatus::Invalid
                    && services.key_view(row.clone(), &today, now).status == KeyStatus::Valid
            })
            .await?;
        Ok(PolicyPreview {
            would_invalidate,
            keys,
        })
    }

    /// Validates the rows from their bytes (off the async workers), keeps those `keep` says,
    /// without repeats, by user and then oldest first, at most [`SHOWN`].
    async fn shown(
        &self,
        rows: Vec<KeyRow>,
        policy: &Policy,
        now: OffsetDateTime,
        keep: impl Fn(&KeyRow, &KeyView) -> bool + Send + 'static,
    ) -> Result<Vec<KeyView>, ServiceError> {
        let services = self.clone();
        let policy = policy.clone();
        let mut views = tokio::task::spawn_blocking(move || {
            let mut seen = HashSet::new();
            rows.into_iter()
                .filter(|r| seen.insert(r.id))
                .filter_map(|r| {
                    let view = services.key_view(r.clone(), &policy, now);
                    keep(&r, &view).then_some(view)
                })
                .collect::<Vec<KeyView>>()
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("key validation task failed: {e}")))?;
        views.sort_by(|a, b| {
            (&a.username, a.created_at, a.id).cmp(&(&b.username, b.created_at, b.id))
        });
        views.truncate(SHOWN as usize);
        Ok(views)
    }
}
