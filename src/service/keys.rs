//! SSH keys: validated on submission, stored canonical, validated again on every read.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{authorize, page, Action, Ctx, Listing, Metrics, ResultExt, ServiceError, Services};
use crate::domain::{Expiry, KeyTitle};
use crate::keys::{self, KeyErrorCode, KeyRejection, Policy, ValidatedKey};
use crate::store;
use crate::store::keys::{AddOutcome, KeyRow};

/// A stored key as the API shows it, with its status under today's policy.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    pub id: Uuid,
    pub username: String,
    pub title: String,
    pub algorithm: String,
    pub bits: i32,
    pub fingerprint_sha256: String,
    pub fingerprint_md5: String,
    pub public_key: String,
    pub comment: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    pub status: KeyStatus,
    pub problem: Option<KeyProblem>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Valid,
    Invalid,
    Expired,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Valid => "valid",
            KeyStatus::Invalid => "invalid",
            KeyStatus::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KeyProblem {
    pub code: KeyErrorCode,
    pub message: String,
    /// With `key_compromised`: what made the key compromised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<keys::CompromiseReason>,
}

/// Refuses `adding` more keys to a user who holds `held` when that would pass `quota`.
/// Keys per INSERT statement of an import: large enough to amortise the round trip, small
/// enough to keep each statement's arrays modest.
const IMPORT_BATCH: usize = 2000;

fn check_quota(held: i64, adding: i64, quota: u32) -> Result<(), ServiceError> {
    if held + adding > i64::from(quota) {
        return Err(quota_exceeded(held, quota));
    }
    Ok(())
}

fn quota_exceeded(held: i64, quota: u32) -> ServiceError {
    ServiceError::Conflict {
        code: "key_quota_exceeded",
        detail: format!(
            "a user may hold at most {quota} keys (the policy's max_keys_per_user) and this \
             one holds {held}; nothing was added: delete keys first, or ask an admin to raise the limit"
        ),
    }
}

/// Re-validates a stored key under `policy`: the stored canonical form and comment must still
/// pass, and still be the key whose fingerprint was registered.
pub fn revalidate(
    metrics: &Metrics,
    public_key: &str,
    comment: &str,
    fingerprint: &str,
    policy: &Policy,
    facts: &keys::StoredFacts<'_>,
) -> Result<keys::StoredKeyCheck, KeyRejection> {
    metrics.validations_read.fetch_add(1, Ordering::Relaxed);
    let result = keys::validate_stored(public_key, comment, policy, facts).and_then(|check| {
        if check.fingerprint_sha256 == fingerprint {
            Ok(check)
        } else {
            Err(KeyRejection::new(
                KeyErrorCode::EncodingInvalid,
                "the stored key does not match its registered fingerprint",
            ))
        }
    });
    if result.is_err() {
        metrics.invalid_on_read.fetch_add(1, Ordering::Relaxed);
    }
    result
}

impl Services {
    pub(crate) fn key_view(&self, row: KeyRow, policy: &Policy, now: OffsetDateTime) -> KeyView {
        let verdict = revalidate(
            &self.metrics,
            &row.public_key,
            &row.comment,
            &row.fingerprint_sha256,
            policy,
            &row.facts(),
        )
        .and_then(|check| {
            // The dashboard and the policy preview counted this key by its stored shape
            // columns. PostgreSQL computes them from the same text, so they cannot disagree
            // unless the database was altered by hand; if they ever do, this read is where it
            // shows, and the key is refused rather than trusted.
            let stored = row.stored_shape();
            let computed = check.shape();
            if computed == stored {
                return Ok(());
            }
            tracing::error!(key_id = %row.id, ?stored, ?computed,
                "a stored key's shape columns disagree with its bytes");
            self.metrics.invalid_on_read.fetch_add(1, Ordering::Relaxed);
            Err(KeyRejection::new(
                KeyErrorCode::EncodingInvalid,
                "the stored key's recorded type, size or length does not match its bytes",
            ))
        });
        let (status, problem) = match verdict {
            Err(r) => (
                KeyStatus::Invalid,
                Some(KeyProblem {
                    code: r.code,
                    message: r.message,
                    reason: r.reason,
                }),
            ),
            Ok(()) if row.expires_at.is_some_and(|e| e <= now) => (KeyStatus::Expired, None),
            Ok(()) => (KeyStatus::Valid, None),
        };
        KeyView {
            id: row.id,
            username: row.username,
            title: row.title,
            algorithm: row.algorithm,
            bits: row.bits,
            fingerprint_sha256: row.fingerprint_sha256,
            fingerprint_md5: row.fingerprint_md5,
            public_key: row.public_key,
            comment: row.comment,
            created_at: row.created_at,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
            status,
            problem,
        }
    }

    /// The validator on its own: nothing stored.
    pub fn validate_key(
        &self,
        input: &[u8],
        policy: &Policy,
    ) -> Result<ValidatedKey, KeyRejection> {
        self.metrics
            .validations_write
            .fetch_add(1, Ordering::Relaxed);
        keys::validate(input, policy)
    }

    #[tracing::instrument(skip_all)]
    pub async fn check_key(&self, ctx: &Ctx, input: &[u8]) -> Result<ValidatedKey, ServiceError> {
        let policy = self.policy(ctx).await?;
        self.validate_key(input, &policy)
            .map_err(ServiceError::KeyRejected)
    }

    #[tracing::instrument(skip_all)]
    pub async fn list_keys(
        &self,
        ctx: &Ctx,
        username: &str,
        limit: Option<i64>,
        cursor: Option<&str>,
    ) -> Result<Listing<KeyView>, ServiceError> {
        let user = self
            .visible_user(ctx, username, |id| Action::ManageKeysOf { user_id: id })
            .await?;
        let page = page(limit, cursor, crate::store::CursorShape::TimeId)?;
        let policy = super::policy::current(&self.pool).await?;
        let rows = store::keys::list(&self.pool, Some(user.id), &page).await?;
        let (rows, next_cursor) = store::split_page(rows, page.limit, |r| {
            store::keys::time_id_key(r.created_at, r.id)
        });
        let now = OffsetDateTime::now_utc();
        Ok(Listing {
            items: rows
                .into_iter()
                .map(|r| self.key_view(r, &policy, now))
                .collect(),
            next_cursor,
        })
    }

    #[tracing::instrument(skip_all)]
    pub async fn get_key(&self, ctx: &Ctx, id: Uuid) -> Result<KeyView, ServiceError> {
        let row = self.visible_key(ctx, id).await?;
        let policy = super::policy::current(&self.pool).await?;
        Ok(self.key_view(row, &policy, OffsetDateTime::now_utc()))
    }

    #[tracing::instrument(skip_all)]
    pub async fn add_key(
        &self,
        ctx: &Ctx,
        username: &str,
        input: &[u8],
        title: Option<&str>,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<KeyView, ServiceError> {
        let title = title.unwrap_or("").trim();
        KeyTitle::parse(title)
            .map_err(|e| ServiceError::invalid("title", format!("the title is {e}")))?;
        Expiry::parse_optional(expires_at).map_err(|e| ServiceError::invalid("expires_at", e))?;
        let (user, policy) = self
            .visible_user_and_policy(ctx, username, |id| Action::ManageKeysOf { user_id: id })
            .await?;
        let key = self
            .validate_key(input, &policy)
            .map_err(ServiceError::KeyRejected)?;
        let title = if title.is_empty() {
            key.comment()
        } else {
            title
        };
        let id = Uuid::now_v7();
        let actor = ctx.caller.actor();
        let target = format!("user:{}", user.username);
        let event = store::audit::NewEvent {
            actor: &actor,
            action: "key.add",
            target: &target,
            detail: json!({ "key_id": id, "fingerprint": key.fingerprint_sha256(), "algorithm": key.algorithm(), "bits": key.bits() }),
            request_id: ctx.request_id.as_deref(),
        };
        let new = new_key(user.id, title, &key, expires_at);
        let quota = policy.max_keys_per_user;
        let registered = || duplicate(key.fingerprint_sha256());
        let mut outcome = store::keys::add_within_quota(&self.pool, id, &new, &event, quota)
            .await
            .on_constraint(&["ssh_keys_fingerprint_sha256_key"], registered)?;
        if let AddOutcome::NoCount = outcome {
            let mut tx = self.pool.begin().await?;
            store::keys::lock_owner_and_count(&mut tx, user.id)
                .await?
                .ok_or(ServiceError::NotFound { what: "user" })?;
            outcome = store::keys::add_within_quota(&mut *tx, id, &new, &event, quota)
                .await
                .on_constraint(&["ssh_keys_fingerprint_sha256_key"], registered)?;
            tx.commit().await?;
        }
        let created_at = match outcome {
            AddOutcome::Added { created_at } => created_at,
            // The blocklist is the validator's other input: an entry refuses the key here as
            // on every read.
            AddOutcome::Blocklisted { kind, reason } => {
                return Err(ServiceError::KeyRejected(
                    super::blocklist::refusal(&kind, &reason)
                        .with_algorithm(key.algorithm().as_str())
                        .with_bits(key.bits()),
                ))
            }
            AddOutcome::OverQuota { held } => return Err(quota_exceeded(held, quota)),
            // Still no count row under the user's lock: the user is gone.
            AddOutcome::NoCount => return Err(ServiceError::NotFound { what: "user" }),
        };
        // Just validated under the policy in force: the view is built from it, not read back.
        Ok(KeyView {
            id,
            username: user.username,
            title: truncate(title, 200).to_owned(),
            algorithm: key.algorithm().as_str().to_owned(),
            bits: key.bits() as i32,
            fingerprint_sha256: key.fingerprint_sha256().to_owned(),
            fingerprint_md5: key.fingerprint_md5().to_owned(),
            public_key: key.public_key().to_owned(),
            comment: key.comment().to_owned(),
            created_at,
            expires_at,
            last_used_at: None,
            status: KeyStatus::Valid,
            problem: None,
        })
    }

    #[tracing::instrument(skip_all)]
    pub async fn delete_key(&self, ctx: &Ctx, id: Uuid) -> Result<(), ServiceError> {
        let row = self.visible_key(ctx, id).await?;
        let mut tx = self.pool.begin().await?;
        // The owner's rows first, as an add takes them: the delete's trigger updates the
        // owner's key count, and an add of this very key waits on the deleted row in the
        // unique index, so taking them in the other order could deadlock with that add.
        store::keys::lock_owner_and_count(&mut tx, row.user_id).await?;
        if store::keys::delete(&mut *tx, id).await? == 0 {
            return Err(ServiceError::NotFound { what: "key" });
        }
        super::audit::record(
            &mut *tx,
            ctx,
            "key.delete",
            &format!("user:{}", row.username),
            json!({ "key_id": id, "fingerprint": row.fingerprint_sha256 }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Imports an authorized_keys file: every line judged; the valid, new keys added in one
    /// transaction (all or nothing).
    #[tracing::instrument(skip_all)]
    pub async fn import_keys(
        &self,
        ctx: &Ctx,
        username: &str,
        file: &[u8],
    ) -> Result<ImportReport, ServiceError> {
        let (user, policy) = self
            .visible_user_and_policy(ctx, username, |id| Action::ManageKeysOf { user_id: id })
            .await?;
        // Ten thousand lines are a few milliseconds of validation: off the async workers.
        let verdicts = {
            let (file, policy) = (file.to_vec(), policy.clone());
            tokio::task::spawn_blocking(move || keys::validate_authorized_keys(&file, &policy))
                .await
                .map_err(|e| ServiceError::Internal(format!("key validation task failed: {e}")))?
                .map_err(ServiceError::KeyRejected)?
        };
        self.metrics
            .validations_write
            .fetch_add(verdicts.len() as u64, Ordering::Relaxed);
        let fingerprints: Vec<&str> = verdicts
            .iter()
            .filter_map(|v| v.result.as_ref().ok().map(|k| k.fingerprint_sha256()))
            .collect();
        let blocked: std::collections::HashMap<String, (String, String)> =
            store::blocklist::entries_for(&self.pool, &fingerprints)
                .await?
                .into_iter()
                .map(|(fp, kind, reason)| (fp, (kind, reason)))
                .collect();
        let mut tx = self.pool.begin().await?;
        // Deleted since it was found: their keys would fail the foreign key.
        let held = store::keys::lock_owner_and_count(&mut tx, user.id)
            .await?
            .ok_or(ServiceError::NotFound { what: "user" })?;
        // Each line's fate is decided here, except whether a new key is registered already:
        // the insert answers that (a fingerprint it skips is someone's key), so the unique
        // index is probed once per key, not twice.
        let mut seen = HashSet::new();
        let mut lines = Vec::with_capacity(verdicts.len());
        let mut new_keys = Vec::new();
        for v in &verdicts {
            let line = match &v.result {
                Err(r) => ImportLine::rejected(v.line, r.clone()),
                Ok(k) if blocked.contains_key(k.fingerprint_sha256()) => {
                    let (kind, reason) = &blocked[k.fingerprint_sha256()];
                    ImportLine::rejected(v.line, super::blocklist::refusal(kind, reason))
                }
                Ok(k) if !seen.insert(k.fingerprint_sha256()) => {
                    ImportLine::duplicate(v.line, k.fingerprint_sha256())
                }
                Ok(k) => {
                    new_keys.push(new_key(user.id, k.comment(), k, None));
                    ImportLine {
                        line: v.line,
                        status: ImportStatus::Added,
                        code: None,
                        message: (!k.options().is_empty()).then(|| {
                            "the options on this line were not stored: options belong to grants"
                                .to_owned()
                        }),
                        reason: None,
                        fingerprint_sha256: Some(k.fingerprint_sha256().to_owned()),
                        key_id: None,
                    }
                }
            };
            lines.push(line);
        }
        let mut ids = std::collections::HashMap::with_capacity(new_keys.len());
        for batch in new_keys.chunks(IMPORT_BATCH) {
            ids.extend(store::keys::insert_many(&mut *tx, batch).await?);
        }
        // Over the quota, the whole import is refused (the transaction rolls back).
        check_quota(held, ids.len() as i64, policy.max_keys_per_user)?;
        for line in &mut lines {
            if line.status == ImportStatus::Added {
                let fingerprint = line.fingerprint_sha256.clone().unwrap_or_default();
                match ids.get(&fingerprint) {
                    Some(id) => line.key_id = Some(*id),
                    None => *line = ImportLine::duplicate(line.line, &fingerprint),
                }
            }
        }
        let added = ids.len();
        super::audit::record(
            &mut *tx,
            ctx,
            "key.import",
            &format!("user:{}", user.username),
            json!({ "added": added, "lines": lines.len() }),
        )
        .await?;
        tx.commit().await?;
        Ok(ImportReport { added, lines })
    }

    pub(super) async fn visible_key(&self, ctx: &Ctx, id: Uuid) -> Result<KeyRow, ServiceError> {
        let row = store::keys::by_id(&self.pool, id)
            .await?
            .ok_or(ServiceError::NotFound { what: "key" })?;
        authorize(
            &ctx.caller,
            Action::ManageKeysOf {
                user_id: row.user_id,
            },
        )
        .map_err(|e| match e {
            // Another user's key is simply not there for this caller.
            ServiceError::NotFound { .. } => ServiceError::NotFound { what: "key" },
            other => other,
        })?;
        Ok(row)
    }
}

fn new_key<'a>(
    user_id: i64,
    title: &'a str,
    key: &'a ValidatedKey,
    expires_at: Option<OffsetDateTime>,
) -> store::keys::NewKey<'a> {
    store::keys::NewKey {
        user_id,
        title: truncate(title, 200),
        algorithm: key.algorithm().as_str(),
        bits: key.bits() as i32,
        public_key: key.public_key(),
        comment: key.comment(),
        fingerprint_sha256: key.fingerprint_sha256(),
        fingerprint_md5: key.fingerprint_md5(),
        expires_at,
    }
}

fn truncate(s: &str, chars: usize) -> &str {
    match s.char_indices().nth(chars) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The one unique-fingerprint violation, as the conflict it means.
fn duplicate(fingerprint: &str) -> ServiceError {
    ServiceError::Conflict {
        code: "duplicate_key",
        detail: format!("the key {fingerprint} is already registered"),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub added: usize,
    pub lines: Vec<ImportLine>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportLine {
    pub line: usize,
    pub status: ImportStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// With `key_compromised`: what made the key compromised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<keys::CompromiseReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<Uuid>,
}

impl ImportLine {
    fn duplicate(line: usize, fingerprint: &str) -> Self {
        ImportLine {
            line,
            status: ImportStatus::Duplicate,
            code: Some("duplicate_key".into()),
            message: Some("this key is already registered".into()),
            reason: None,
            fingerprint_sha256: Some(fingerprint.to_owned()),
            key_id: None,
        }
    }

    fn rejected(line: usize, r: KeyRejection) -> Self {
        ImportLine {
            line,
            status: ImportStatus::Rejected,
            code: Some(r.code.as_str().to_owned()),
            message: Some(r.message),
            reason: r.reason,
            fingerprint_sha256: None,
            key_id: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImportStatus {
    Added,
    Duplicate,
    Rejected,
}

impl ImportStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ImportStatus::Added => "added",
            ImportStatus::Duplicate => "duplicate",
            ImportStatus::Rejected => "rejected",
        }
    }
}
