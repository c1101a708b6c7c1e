//! Whole-set views: the dashboard's counts and keys needing attention, and the preview of a
//! policy change.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use super::keys::{KeyStatus, KeyView};
use super::{authorize, Action, Caller, Ctx, ServiceError, Services};
use crate::keys::Policy;
use crate::store;
use crate::store::keys::KeyRow;

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
    #[tracing::instrument(skip_all)]
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
        let rows = store::keys::all(&self.pool, owner).await?;
        let services = self.clone();
        let views: Vec<KeyView> =
            off_runtime(rows, move |row| Some(services.key_view(row, &policy, now))).await?;
        let keys = views.len();
        let valid_keys = views
            .iter()
            .filter(|k| k.status == KeyStatus::Valid)
            .count();
        let mut attention: Vec<KeyView> = views
            .into_iter()
            .filter(|k| k.status != KeyStatus::Valid || k.expires_at.is_some_and(|e| e <= soon))
            .collect();
        sort_for_people(&mut attention);
        Ok(Dashboard {
            totals,
            keys,
            valid_keys,
            attention,
        })
    }

    /// The stored keys that are valid today and would be invalid under `proposed`: what an
    /// admin sees before saving a policy. Nothing is changed.
    #[tracing::instrument(skip_all)]
    pub async fn policy_preview(
        &self,
        ctx: &Ctx,
        proposed: &Policy,
    ) -> Result<Vec<KeyView>, ServiceError> {
        authorize(&ctx.caller, Action::EditPolicy)?;
        super::policy::check(proposed)?;
        let current = super::policy::current(&self.pool).await?;
        let now = OffsetDateTime::now_utc();
        let rows = store::keys::all(&self.pool, None).await?;
        let services = self.clone();
        let proposed = proposed.clone();
        let mut affected = off_runtime(rows, move |row| {
            let today = services.key_view(row.clone(), &current, now).status;
            let then = services.key_view(row, &proposed, now);
            (today == KeyStatus::Valid && then.status == KeyStatus::Invalid).then_some(then)
        })
        .await?;
        sort_for_people(&mut affected);
        Ok(affected)
    }
}

/// By user, then oldest key first.
fn sort_for_people(keys: &mut [KeyView]) {
    keys.sort_by(|a, b| (&a.username, a.created_at, a.id).cmp(&(&b.username, b.created_at, b.id)));
}

/// Runs `judge` over every row on the blocking pool, in chunks spread over the cores, keeping
/// the order: validating tens of thousands of keys must not stall the async workers.
async fn off_runtime<T: Send + 'static>(
    rows: Vec<KeyRow>,
    judge: impl Fn(KeyRow) -> Option<T> + Send + Sync + 'static,
) -> Result<Vec<T>, ServiceError> {
    const CHUNK: usize = 2048;
    let judge = Arc::new(judge);
    let mut rows = rows.into_iter();
    let mut tasks = Vec::new();
    loop {
        let chunk: Vec<KeyRow> = rows.by_ref().take(CHUNK).collect();
        if chunk.is_empty() {
            break;
        }
        let judge = judge.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            chunk
                .into_iter()
                .filter_map(|r| judge(r))
                .collect::<Vec<T>>()
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        out.extend(
            task.await
                .map_err(|e| ServiceError::Internal(format!("key validation task failed: {e}")))?,
        );
    }
    Ok(out)
}
