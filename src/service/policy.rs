//! The validation policy, stored in the database and applied on every read.

use serde_json::json;
use sqlx::PgExecutor;

use super::{authorize, Action, Ctx, ServiceError, Services};
use crate::keys::Policy;
use crate::store;

/// The policy in force (stored settings over the defaults).
pub async fn current(db: impl PgExecutor<'_>) -> Result<Policy, ServiceError> {
    parse(store::policy::load(db).await?)
}

/// The policy from its stored settings (read on their own, or with a login's keys).
pub(crate) fn parse(settings: serde_json::Value) -> Result<Policy, ServiceError> {
    serde_json::from_value(settings)
        .map_err(|e| ServiceError::Internal(format!("the stored policy cannot be read: {e}")))
}

/// A policy an admin proposes must be coherent (min ≤ max, a comment cap the schema can hold).
pub(crate) fn check(policy: &Policy) -> Result<(), ServiceError> {
    policy.check().map_err(|detail| ServiceError::Invalid {
        code: "policy_invalid",
        field: "policy",
        detail,
    })
}

impl Services {
    #[tracing::instrument(skip_all)]
    pub async fn policy(&self, ctx: &Ctx) -> Result<Policy, ServiceError> {
        authorize(&ctx.caller, Action::ReadPolicy)?;
        current(&self.pool).await
    }

    #[tracing::instrument(skip_all)]
    pub async fn set_policy(&self, ctx: &Ctx, new: Policy) -> Result<Policy, ServiceError> {
        authorize(&ctx.caller, Action::EditPolicy)?;
        check(&new)?;
        let mut tx = self.pool.begin().await?;
        let old = current(&mut *tx).await?;
        let settings =
            serde_json::to_value(&new).map_err(|e| ServiceError::Internal(e.to_string()))?;
        store::policy::save(&mut *tx, &settings, ctx.caller.user_id()).await?;
        super::audit::record(
            &mut *tx,
            ctx,
            "policy.update",
            "policy",
            json!({ "before": old, "after": new }),
        )
        .await?;
        tx.commit().await?;
        Ok(new)
    }
}
