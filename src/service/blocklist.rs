//! The blocklist: keys known to be compromised, refused at submission and on every read.
//!
//! An entry names a SHA256 fingerprint. Key reads join the table, so an entry takes effect at
//! the next login on every process, with nothing cached anywhere; the validator gets the entry
//! as an input with the key (see `keys::StoredFacts`).

use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{authorize, page, Action, Ctx, Listing, ServiceError, Services};
use crate::keys::{self, CompromiseReason, KeyRejection};
use crate::store;
use crate::store::blocklist::{BlockRow, NewEntry};

/// Longest reason text an entry keeps.
pub const MAX_REASON_CHARS: usize = 1024;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BlockEntryView {
    pub id: Uuid,
    pub fingerprint_sha256: String,
    /// The whole public key, when the entry was made from one.
    pub public_key: Option<String>,
    /// `blocklisted` (added by a person) or `shared_prime` (found by the shared-prime scan).
    pub kind: String,
    pub reason: String,
    /// `shared_prime`: the fingerprint of a key whose modulus shares the prime.
    pub related_fingerprint: Option<String>,
    pub added_by: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The stored key with this fingerprint, if any (it is refused while the entry exists).
    pub key_id: Option<Uuid>,
    pub key_owner: Option<String>,
}

impl From<BlockRow> for BlockEntryView {
    fn from(r: BlockRow) -> Self {
        BlockEntryView {
            id: r.id,
            fingerprint_sha256: r.fingerprint_sha256,
            public_key: r.public_key,
            kind: r.kind,
            reason: r.reason,
            related_fingerprint: r.related_fingerprint,
            added_by: r.added_by,
            created_at: r.created_at,
            key_id: r.key_id,
            key_owner: r.key_owner,
        }
    }
}

/// What a person asks to blocklist: a fingerprint or a whole public key, and why.
#[derive(Debug, Clone)]
pub enum BlockTarget {
    Fingerprint(String),
    Key(String),
}

/// One line of a blocklist import.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BlockImportLine {
    pub line: usize,
    /// `added`, `duplicate` (already on the list) or `rejected`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint_sha256: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BlockImportReport {
    pub added: usize,
    pub lines: Vec<BlockImportLine>,
}

/// The fingerprint (and the canonical key, if one was given) of a target.
fn identify(target: &BlockTarget) -> Result<(String, Option<String>), KeyRejection> {
    match target {
        BlockTarget::Fingerprint(fp) => {
            let fp = fp.trim();
            if keys::is_sha256_fingerprint(fp) {
                Ok((fp.to_owned(), None))
            } else {
                Err(KeyRejection::new(
                    keys::KeyErrorCode::UnrecognizedFormat,
                    "not a SHA256 fingerprint: expected SHA256: and 43 base64 characters, as \
                     ssh-keygen -l -E sha256 prints it",
                ))
            }
        }
        BlockTarget::Key(k) => {
            let id = keys::identify(k.as_bytes())?;
            Ok((id.fingerprint_sha256, Some(id.public_key)))
        }
    }
}

fn check_reason(reason: &str) -> Result<&str, ServiceError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ServiceError::invalid(
            "reason",
            "say why the key is blocklisted (at most 1024 characters)",
        ));
    }
    if reason.chars().count() > MAX_REASON_CHARS || reason.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            "reason",
            "the reason is at most 1024 characters, without control characters",
        ));
    }
    Ok(reason)
}

impl Services {
    #[tracing::instrument(skip_all)]
    pub async fn list_blocklist(
        &self,
        ctx: &Ctx,
        limit: Option<i64>,
        cursor: Option<&str>,
    ) -> Result<Listing<BlockEntryView>, ServiceError> {
        authorize(&ctx.caller, Action::ManageBlocklist)?;
        let page = page(limit, cursor, crate::store::CursorShape::TimeId)?;
        let rows = store::blocklist::list(&self.pool, &page).await?;
        let (rows, next_cursor) = store::split_page(rows, page.limit, |r| {
            store::keys::time_id_key(r.created_at, r.id)
        });
        Ok(Listing {
            items: rows.into_iter().map(BlockEntryView::from).collect(),
            next_cursor,
        })
    }

    /// Adds one entry; the key with that fingerprint is refused from the next read on.
    #[tracing::instrument(skip_all)]
    pub async fn add_to_blocklist(
        &self,
        ctx: &Ctx,
        target: BlockTarget,
        reason: &str,
    ) -> Result<BlockEntryView, ServiceError> {
        authorize(&ctx.caller, Action::ManageBlocklist)?;
        let field = match target {
            BlockTarget::Fingerprint(_) => "fingerprint",
            BlockTarget::Key(_) => "key",
        };
        let (fingerprint, public_key) =
            identify(&target).map_err(|r| ServiceError::invalid(field, r.message))?;
        let reason = check_reason(reason)?;
        let mut tx = self.pool.begin().await?;
        let added = store::blocklist::insert_many(
            &mut *tx,
            &[NewEntry {
                fingerprint_sha256: &fingerprint,
                public_key: public_key.as_deref(),
                kind: CompromiseReason::Blocklisted.as_str(),
                reason,
                related_fingerprint: None,
                added_by: ctx.caller.user_id(),
            }],
        )
        .await?;
        let Some((_, id)) = added.into_iter().next() else {
            return Err(ServiceError::Conflict {
                code: "already_blocklisted",
                detail: format!("{fingerprint} is already on the blocklist"),
            });
        };
        super::audit::record(
            &mut *tx,
            ctx,
            "blocklist.add",
            &format!("blocklist:{fingerprint}"),
            json!({ "entry_id": id, "fingerprint": fingerprint, "reason": reason }),
        )
        .await?;
        tx.commit().await?;
        let row = store::blocklist::by_id(&self.pool, id)
            .await?
            .ok_or(ServiceError::NotFound {
                what: "blocklist entry",
            })?;
        Ok(row.into())
    }

    /// Imports a file of fingerprints or public keys, one per line (blank lines and `#`
    /// comments skipped), all with one reason, in one transaction.
    #[tracing::instrument(skip_all)]
    pub async fn import_blocklist(
        &self,
        ctx: &Ctx,
        file: &[u8],
        reason: &str,
    ) -> Result<BlockImportReport, ServiceError> {
        authorize(&ctx.caller, Action::ManageBlocklist)?;
        let reason = check_reason(reason)?;
        let text = std::str::from_utf8(file).map_err(|e| {
            ServiceError::invalid(
                "file",
                format!(
                    "the file is not UTF-8 text (bad byte at {})",
                    e.valid_up_to() + 1
                ),
            )
        })?;
        let mut lines = Vec::new();
        let mut targets: Vec<(usize, String, Option<String>)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let target = if line.starts_with("SHA256:") {
                BlockTarget::Fingerprint(line.to_owned())
            } else {
                BlockTarget::Key(line.to_owned())
            };
            match identify(&target) {
                Err(r) => lines.push(BlockImportLine {
                    line: i + 1,
                    status: "rejected",
                    code: Some(r.code.as_str().to_owned()),
                    message: Some(r.message),
                    fingerprint_sha256: None,
                }),
                Ok((fp, _)) if !seen.insert(fp.clone()) => lines.push(BlockImportLine {
                    line: i + 1,
                    status: "duplicate",
                    code: Some("already_blocklisted".into()),
                    message: Some("this key is named earlier in the file".into()),
                    fingerprint_sha256: Some(fp),
                }),
                Ok((fp, key)) => targets.push((i + 1, fp, key)),
            }
        }
        let entries: Vec<NewEntry<'_>> = targets
            .iter()
            .map(|(_, fp, key)| NewEntry {
                fingerprint_sha256: fp,
                public_key: key.as_deref(),
                kind: CompromiseReason::Blocklisted.as_str(),
                reason,
                related_fingerprint: None,
                added_by: ctx.caller.user_id(),
            })
            .collect();
        let mut tx = self.pool.begin().await?;
        let mut added = std::collections::HashMap::new();
        for batch in entries.chunks(2000) {
            added.extend(store::blocklist::insert_many(&mut *tx, batch).await?);
        }
        for (line, fp, _) in &targets {
            let new = added.contains_key(fp);
            lines.push(BlockImportLine {
                line: *line,
                status: if new { "added" } else { "duplicate" },
                code: (!new).then(|| "already_blocklisted".to_owned()),
                message: (!new).then(|| "already on the blocklist".to_owned()),
                fingerprint_sha256: Some(fp.clone()),
            });
        }
        lines.sort_by_key(|l| l.line);
        super::audit::record(
            &mut *tx,
            ctx,
            "blocklist.import",
            "blocklist",
            json!({ "added": added.len(), "lines": lines.len(), "reason": reason }),
        )
        .await?;
        tx.commit().await?;
        Ok(BlockImportReport {
            added: added.len(),
            lines,
        })
    }

    #[tracing::instrument(skip_all)]
    pub async fn delete_from_blocklist(&self, ctx: &Ctx, id: Uuid) -> Result<(), ServiceError> {
        authorize(&ctx.caller, Action::ManageBlocklist)?;
        let row = store::blocklist::by_id(&self.pool, id)
            .await?
            .ok_or(ServiceError::NotFound {
                what: "blocklist entry",
            })?;
        let mut tx = self.pool.begin().await?;
        if store::blocklist::delete(&mut *tx, id).await? == 0 {
            return Err(ServiceError::NotFound {
                what: "blocklist entry",
            });
        }
        super::audit::record(
            &mut *tx,
            ctx,
            "blocklist.delete",
            &format!("blocklist:{}", row.fingerprint_sha256),
            json!({ "entry_id": id, "fingerprint": row.fingerprint_sha256, "kind": row.kind, "reason": row.reason }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The refusal of a key on the blocklist, from its entry (kind, reason text).
pub(crate) fn refusal(kind: &str, reason: &str) -> KeyRejection {
    keys::BlockEntry {
        kind: CompromiseReason::parse(kind).unwrap_or(CompromiseReason::Blocklisted),
        reason,
    }
    .rejection()
}
