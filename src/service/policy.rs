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
///
/// Read tolerantly: a field this version does not know is ignored, not an error. During a
/// rolling upgrade a newer instance may save a field (as `notify_expiring_days` once was new);
/// refusing it would make every older instance answer 500 to every authorized_keys request,
/// failing logins fleet-wide. [`Policy`] itself keeps `deny_unknown_fields` for what an admin
/// sends (PUT /api/v1/policy, `keyportal key check --policy`), where a typo must be refused.
pub(crate) fn parse(settings: serde_json::Value) -> Result<Policy, ServiceError> {
    // Every login reads the policy: the usual case (no unknown field) is one pass over the
    // stored value, with no copy of it and no list of field names built.
    if let Ok(policy) = <Policy as serde::Deserialize>::deserialize(&settings) {
        return Ok(policy);
    }
    let (known, unknown) = split_known(settings);
    if !unknown.is_empty() {
        tracing::debug!(fields = ?unknown.keys().collect::<Vec<_>>(),
            "the stored policy has fields this version does not know (a newer instance saved them); ignored");
    }
    serde_json::from_value(known)
        .map_err(|e| ServiceError::Internal(format!("the stored policy cannot be read: {e}")))
}

/// The stored settings split into the fields [`Policy`] has and the others.
fn split_known(
    settings: serde_json::Value,
) -> (
    serde_json::Value,
    serde_json::Map<String, serde_json::Value>,
) {
    let serde_json::Value::Object(fields) = settings else {
        return (settings, serde_json::Map::new());
    };
    let names = match serde_json::to_value(Policy::default()) {
        Ok(serde_json::Value::Object(o)) => o,
        _ => serde_json::Map::new(),
    };
    let (known, unknown): (serde_json::Map<_, _>, serde_json::Map<_, _>) =
        fields.into_iter().partition(|(k, _)| names.contains_key(k));
    (serde_json::Value::Object(known), unknown)
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
        let stored = store::policy::load(&mut *tx).await?;
        let (_, newer_fields) = split_known(stored.clone());
        let old = parse(stored)?;
        let mut settings =
            serde_json::to_value(&new).map_err(|e| ServiceError::Internal(e.to_string()))?;
        // Fields a newer instance saved stay as they are: an older instance editing the
        // policy mid-upgrade must not drop them.
        if let serde_json::Value::Object(o) = &mut settings {
            o.extend(newer_fields);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_policy_with_a_field_from_a_newer_version_is_read() {
        let p = parse(json!({ "min_rsa_bits": 3072, "from_a_newer_version": 7 })).unwrap();
        assert_eq!(p.min_rsa_bits, 3072);
        assert_eq!(p.max_rsa_bits, Policy::default().max_rsa_bits);
    }

    #[test]
    fn an_admins_policy_with_an_unknown_field_is_still_refused() {
        assert!(serde_json::from_value::<Policy>(
            json!({ "min_rsa_bits": 3072, "min_rsa_bitz": 1 })
        )
        .is_err());
    }
}
