//! The authorized_keys text for one server and login: what sshd reads.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::TryStreamExt;
use time::OffsetDateTime;

use super::{authorize, Action, Caller, Ctx, ServiceError, Services};
use crate::db::replicas::ReadSource;
use crate::keys::{AuthorizedKeysLine, Policy};
use crate::store;
use crate::store::grants::{GrantedKey, GrantedKeyAndPolicy};

/// A service call made with a bearer token that the service itself checks: the caller it
/// authenticated as, and the outcome. The web layer records the caller before it answers.
pub struct Authenticated<T> {
    pub ctx: Ctx,
    pub outcome: Result<T, ServiceError>,
}

impl Services {
    /// One line per valid, unexpired key of an enabled user with an unexpired grant for this
    /// login: `options type base64 keyportal:<user>:<key id>`. Every key is validated again
    /// under today's policy; a key that fails is left out (and counted in the metrics).
    #[tracing::instrument(skip_all)]
    pub async fn authorized_keys(
        &self,
        ctx: &Ctx,
        server: &str,
        login: &str,
        fingerprint: Option<&str>,
    ) -> Result<String, ServiceError> {
        authorize(&ctx.caller, Action::ReadAuthorizedKeys { server })?;
        // A replica with every revocation and within the lag bound, else the primary. A replica
        // that fails mid-read (gone, or a query cancelled by replay) hands the read to the
        // primary, which is always authoritative.
        let keys = match self.replicas.choose(&self.pool).await? {
            ReadSource::Replica(replica) => {
                match self
                    .login_read(replica.pool(), server, login, fingerprint)
                    .await
                {
                    Err(ServiceError::Database(e)) => {
                        tracing::warn!(replica = %replica.label, error = %e, "read replica failed a login read; asking the primary");
                        replica.mark_down();
                        self.login_read(&self.pool, server, login, fingerprint)
                            .await?
                    }
                    other => other?,
                }
            }
            ReadSource::Primary(_) => {
                self.login_read(&self.pool, server, login, fingerprint)
                    .await?
            }
        };
        self.authorized_keys_text(ctx, keys, fingerprint.is_some())
            .await
    }

    /// [`Self::authorized_keys`] for a bearer token not yet checked. sshd's
    /// `AuthorizedKeysCommand` asks with its server's token and the offered key's fingerprint
    /// at every login; without read replicas, the token and the key are read by one statement
    /// (one round trip instead of two, docs/performance.md), for that server's token and for
    /// an admin's. Every other request authenticates first, as any API request does. `Err`:
    /// the token authenticates no one, or the statement that checks it failed (a database
    /// error, logged with the request id and the path, before a caller is known).
    #[tracing::instrument(skip_all)]
    pub async fn authorized_keys_with_token(
        &self,
        secret: &str,
        request_id: Option<String>,
        server: &str,
        login: &str,
        fingerprint: Option<&str>,
    ) -> Result<Authenticated<String>, ServiceError> {
        let (Some(fp), true) = (fingerprint, self.replicas.is_empty()) else {
            let ctx = Ctx {
                caller: self.authenticate(secret).await?,
                request_id,
                session: None,
            };
            let outcome = self.authorized_keys(&ctx, server, login, fingerprint).await;
            return Ok(Authenticated { ctx, outcome });
        };
        let hash = super::tokens::bearer_hash(secret).ok_or(ServiceError::Unauthenticated)?;
        let read = store::grants::granted_key_for_token(&self.pool, &hash, server, login, fp)
            .await?
            .ok_or(ServiceError::Unauthenticated)?;
        let ctx = Ctx {
            caller: self.caller_of_token(read.principal).await?,
            request_id,
            session: None,
        };
        let outcome = match read.keys {
            Some(rows) => {
                async {
                    authorize(&ctx.caller, Action::ReadAuthorizedKeys { server })?;
                    if rows.is_empty() && !read.server_exists {
                        return Err(ServiceError::NotFound { what: "server" });
                    }
                    let keys = self.with_verdicts(rows)?;
                    self.authorized_keys_text(&ctx, keys, true).await
                }
                .await
            }
            None => self.authorized_keys(&ctx, server, login, fingerprint).await,
        };
        Ok(Authenticated { ctx, outcome })
    }

    /// The authorized_keys text of granted keys with their verdicts; for a lookup by
    /// fingerprint from a server, the keys written are recorded as used.
    async fn authorized_keys_text(
        &self,
        ctx: &Ctx,
        keys: Vec<(GrantedKey, bool)>,
        by_fingerprint: bool,
    ) -> Result<String, ServiceError> {
        let keys_read: Vec<(uuid::Uuid, Option<OffsetDateTime>)> = if by_fingerprint {
            keys.iter()
                .map(|(k, _)| (k.key_id, k.last_used_at))
                .collect()
        } else {
            Vec::new()
        };
        let mut out = String::with_capacity(keys.len() * 600);
        let mut written = HashSet::new();
        // A key reached by several grants for the same login (a one-key grant and an all-keys
        // grant, or grants through groups) is written once: the rows are sorted so the most
        // specific grant comes first (`GrantedKey::grant_rank`, then the oldest), and its
        // options and expiry are the ones written.
        for (k, valid) in keys {
            if !valid || !written.insert(k.key_id) {
                continue;
            }
            // Every piece is validated text without blanks or line breaks, or a UUID.
            let id = k.key_id.hyphenated();
            let mut id_text = uuid::Uuid::encode_buffer();
            AuthorizedKeysLine {
                options: &k.options,
                expiry: k.grant_expires_at,
                public_key: &k.public_key,
                comment: &[
                    "keyportal:",
                    &k.username,
                    ":",
                    id.encode_lower(&mut id_text),
                ],
            }
            .write_to(&mut out);
        }
        // A server asking by fingerprint (`AuthorizedKeysCommand ... %f`) is sshd seeing that
        // key offered: record it, so the portal learns which keys are in use.
        if by_fingerprint && matches!(ctx.caller, Caller::Server { .. }) {
            // At most one write a minute per key, decided from the row already read, so a busy
            // login path costs no extra round trip.
            let stale = OffsetDateTime::now_utc() - time::Duration::minutes(1);
            let ids: Vec<uuid::Uuid> = keys_read
                .iter()
                .filter(|(id, used)| written.contains(id) && used.is_none_or(|t| t < stale))
                .map(|(id, _)| *id)
                .collect();
            if !ids.is_empty() {
                store::keys::mark_used(&self.pool, &ids).await?;
            }
        }
        Ok(out)
    }

    /// The policy, then the granted keys with their verdicts, read from `read`; a server with
    /// no such keys must exist.
    pub(super) async fn login_read(
        &self,
        read: &sqlx::PgPool,
        server: &str,
        login: &str,
        fingerprint: Option<&str>,
    ) -> Result<Vec<(GrantedKey, bool)>, ServiceError> {
        let keys = match fingerprint {
            Some(fp) => self.granted_key_validated(read, server, login, fp).await?,
            None => {
                let policy = super::policy::current(read).await?;
                self.granted_and_validated(read, server, login, policy)
                    .await?
            }
        };
        if keys.is_empty() && store::servers::by_name(read, server).await?.is_none() {
            return Err(ServiceError::NotFound { what: "server" });
        }
        Ok(keys)
    }

    /// The one granted key with this fingerprint (one row per grant that names it), with its
    /// verdict under the policy read by the same statement.
    async fn granted_key_validated(
        &self,
        read: &sqlx::PgPool,
        server: &str,
        login: &str,
        fingerprint: &str,
    ) -> Result<Vec<(GrantedKey, bool)>, ServiceError> {
        let rows = store::grants::granted_key(read, server, login, fingerprint).await?;
        self.with_verdicts(rows)
    }

    /// Rows of one key with their verdicts, in authorized_keys order. Validated in place: it
    /// is one key.
    fn with_verdicts(
        &self,
        rows: Vec<GrantedKeyAndPolicy>,
    ) -> Result<Vec<(GrantedKey, bool)>, ServiceError> {
        let Some(first) = rows.first() else {
            return Ok(Vec::new());
        };
        let policy = super::policy::parse(first.policy.clone())?;
        let mut out: Vec<(GrantedKey, bool)> = rows
            .into_iter()
            .map(|r| {
                let ok = granted_key_is_valid(&self.metrics, &r.key, &policy);
                (r.key, ok)
            })
            .collect();
        sort_granted(&mut out);
        Ok(out)
    }

    /// The granted keys, each with its verdict under `policy`, in authorized_keys order. Long
    /// lists are validated in batches on the blocking pool while later rows still arrive from
    /// the database; each verdict is the pure validator's, wherever it runs.
    async fn granted_and_validated(
        &self,
        read: &sqlx::PgPool,
        server: &str,
        login: &str,
        policy: Policy,
    ) -> Result<Vec<(GrantedKey, bool)>, ServiceError> {
        const BATCH: usize = 256;
        let policy = Arc::new(policy);
        let check = {
            let metrics = self.metrics.clone();
            move |k: &GrantedKey, policy: &Policy| granted_key_is_valid(&metrics, k, policy)
        };
        let validate_batch = |batch: Vec<GrantedKey>| {
            let policy = policy.clone();
            let check = check.clone();
            tokio::task::spawn_blocking(move || {
                batch
                    .into_iter()
                    .map(|k| {
                        let ok = check(&k, &policy);
                        (k, ok)
                    })
                    .collect::<Vec<_>>()
            })
        };
        let mut rows = store::grants::granted_keys(read, server, login);
        let mut batch = Vec::with_capacity(BATCH);
        let mut pending = Vec::new();
        while let Some(row) = rows.try_next().await? {
            batch.push(row);
            if batch.len() == BATCH {
                pending.push(validate_batch(std::mem::replace(
                    &mut batch,
                    Vec::with_capacity(BATCH),
                )));
            }
        }
        drop(rows);
        let mut out = Vec::new();
        if !batch.is_empty() {
            pending.push(validate_batch(batch));
        }
        for task in pending {
            out.extend(
                task.await.map_err(|e| {
                    ServiceError::Internal(format!("key validation task failed: {e}"))
                })?,
            );
        }
        sort_granted(&mut out);
        Ok(out)
    }
}

fn granted_key_is_valid(metrics: &super::Metrics, k: &GrantedKey, policy: &Policy) -> bool {
    super::keys::revalidate(
        metrics,
        &k.public_key,
        &k.comment,
        &k.fingerprint_sha256,
        policy,
        &k.facts(),
    )
    .is_ok()
}

/// authorized_keys order: by user, then the key's age and id, then the grant's specificity and
/// age, so the same grants give the same text in every process and on every read.
fn sort_granted<T>(rows: &mut [(GrantedKey, T)]) {
    rows.sort_unstable_by(|(a, _), (b, _)| {
        (
            &a.username,
            a.key_created_at,
            a.key_id,
            a.grant_rank,
            a.grant_created_at,
        )
            .cmp(&(
                &b.username,
                b.key_created_at,
                b.key_id,
                b.grant_rank,
                b.grant_created_at,
            ))
    });
}
