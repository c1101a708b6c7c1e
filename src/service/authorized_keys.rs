//! The authorized_keys text for one server and login: what sshd reads.

use std::ops::Range;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::TryStreamExt;
use time::OffsetDateTime;

use super::{authorize, Action, Caller, Ctx, ServiceError, Services};
use crate::db::replicas::ReadSource;
use crate::keys::{AuthorizedKeysLine, Policy};
use crate::store;
use crate::store::grants::{
    GrantedKey, GrantedKeyAndPolicy, GrantedKeyOrder, GrantedKeyRef, GrantedKeyRow,
};

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
        match fingerprint {
            Some(fp) => {
                let keys = self
                    .on_login_source(|read| {
                        Box::pin(async move { self.key_read(&read, server, login, fp).await })
                    })
                    .await?;
                self.lookup_text(ctx, keys).await
            }
            None => {
                self.on_login_source(|read| {
                    Box::pin(async move { self.whole_list(&read, server, login).await })
                })
                .await
            }
        }
    }

    /// `read` on a replica with every revocation and within the lag bound, else on the
    /// primary. A replica that fails mid-read (gone, or a query cancelled by replay) hands the
    /// read to the primary, which is always authoritative.
    async fn on_login_source<'a, T>(
        &'a self,
        read: impl Fn(sqlx::PgPool) -> BoxFuture<'a, Result<T, ServiceError>>,
    ) -> Result<T, ServiceError> {
        match self.replicas.choose(&self.pool).await? {
            ReadSource::Replica(replica) => match read(replica.pool().clone()).await {
                Err(ServiceError::Database(e)) => {
                    tracing::warn!(replica = %replica.label, error = %e, "read replica failed a login read; asking the primary");
                    replica.mark_down();
                    read(self.pool.clone()).await
                }
                other => other,
            },
            ReadSource::Primary(_) => read(self.pool.clone()).await,
        }
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
                    self.lookup_text(&ctx, keys).await
                }
                .await
            }
            None => self.authorized_keys(&ctx, server, login, fingerprint).await,
        };
        Ok(Authenticated { ctx, outcome })
    }

    /// The authorized_keys text of a lookup by fingerprint: the rows of one key with their
    /// verdicts, in authorized_keys order. When a server asks, the key written is recorded as
    /// used.
    async fn lookup_text(
        &self,
        ctx: &Ctx,
        keys: Vec<(GrantedKey, bool)>,
    ) -> Result<String, ServiceError> {
        let mut out = String::new();
        let mut written: Vec<(uuid::Uuid, Option<OffsetDateTime>)> = Vec::new();
        // A key reached by several grants for the same login (a one-key grant and an all-keys
        // grant, or grants through groups) is written once, with the options and expiry of its
        // first row in authorized_keys order: the most specific grant, then the oldest.
        for (k, valid) in &keys {
            if !valid || written.iter().any(|(id, _)| *id == k.key_id) {
                continue;
            }
            write_line(&mut out, &k.view());
            written.push((k.key_id, k.last_used_at));
        }
        // A server asking by fingerprint (`AuthorizedKeysCommand ... %f`) is sshd seeing that
        // key offered: record it, so the portal learns which keys are in use.
        if matches!(ctx.caller, Caller::Server { .. }) {
            // At most one write a minute per key, decided from the row already read, so a busy
            // login path costs no extra round trip.
            let stale = OffsetDateTime::now_utc() - time::Duration::minutes(1);
            let ids: Vec<uuid::Uuid> = written
                .iter()
                .filter(|(_, used)| used.is_none_or(|t| t < stale))
                .map(|(id, _)| *id)
                .collect();
            if !ids.is_empty() {
                store::keys::mark_used(&self.pool, &ids).await?;
            }
        }
        Ok(out)
    }

    /// The rows of the granted key with this fingerprint (one per grant that reaches it) with
    /// their verdicts, read from `read`; a server with no such key must exist.
    pub(super) async fn key_read(
        &self,
        read: &sqlx::PgPool,
        server: &str,
        login: &str,
        fingerprint: &str,
    ) -> Result<Vec<(GrantedKey, bool)>, ServiceError> {
        let rows = store::grants::granted_key(read, server, login, fingerprint).await?;
        let keys = self.with_verdicts(rows)?;
        if keys.is_empty() && store::servers::by_name(read, server).await?.is_none() {
            return Err(ServiceError::NotFound { what: "server" });
        }
        Ok(keys)
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
                let ok = granted_key_is_valid(&self.metrics, &r.key.view(), &policy);
                (r.key, ok)
            })
            .collect();
        sort_granted(&mut out);
        Ok(out)
    }

    /// The whole authorized_keys text of (server, login), read from `read`. The rows are
    /// validated and their lines written in batches on the blocking pool while later rows
    /// still arrive from the database, each from the row it arrived in
    /// ([`RenderedBatch::of`]); then the lines are put in order. Each verdict is the pure
    /// validator's, wherever it runs.
    async fn whole_list(
        &self,
        read: &sqlx::PgPool,
        server: &str,
        login: &str,
    ) -> Result<String, ServiceError> {
        const BATCH: usize = 256;
        let policy = Arc::new(super::policy::current(read).await?);
        let render = |rows: Vec<GrantedKeyRow>| {
            let policy = policy.clone();
            let metrics = self.metrics.clone();
            tokio::task::spawn_blocking(move || RenderedBatch::of(&metrics, &rows, &policy))
        };
        let mut rows = store::grants::granted_keys(read, server, login);
        let mut batch = Vec::with_capacity(BATCH);
        let mut pending = Vec::new();
        while let Some(row) = rows.try_next().await? {
            batch.push(row);
            if batch.len() == BATCH {
                pending.push(render(std::mem::replace(
                    &mut batch,
                    Vec::with_capacity(BATCH),
                )));
            }
        }
        drop(rows);
        if !batch.is_empty() {
            pending.push(render(batch));
        }
        let mut batches = Vec::with_capacity(pending.len());
        for task in pending {
            batches.push(task.await.map_err(|e| {
                ServiceError::Internal(format!("authorized_keys batch task failed: {e}"))
            })??);
        }
        if batches.is_empty() && store::servers::by_name(read, server).await?.is_none() {
            return Err(ServiceError::NotFound { what: "server" });
        }
        Ok(RenderedBatch::assemble(&batches))
    }
}

/// Rows of the whole list, validated and written where they were read: the lines of the valid
/// keys in one text, and each row's place in authorized_keys order.
struct RenderedBatch {
    text: String,
    rows: Vec<RenderedRow>,
}

struct RenderedRow {
    /// Shared by consecutive rows of one user.
    username: Arc<str>,
    key_created_at: OffsetDateTime,
    key_id: uuid::Uuid,
    grant_rank: i32,
    grant_created_at: OffsetDateTime,
    /// Its line in the batch's text; `None`: the key failed validation.
    line: Option<Range<usize>>,
}

impl RenderedRow {
    fn order(&self) -> GrantedKeyOrder<'_> {
        (
            &self.username,
            self.key_created_at,
            self.key_id,
            self.grant_rank,
            self.grant_created_at,
        )
    }
}

impl RenderedBatch {
    fn of(
        metrics: &super::Metrics,
        rows: &[GrantedKeyRow],
        policy: &Policy,
    ) -> Result<Self, sqlx::Error> {
        // An Ed25519 line with a UUID comment is ~140 bytes; RSA 4096 lines are ~780.
        let mut text = String::with_capacity(rows.len() * 160);
        let mut rendered = Vec::with_capacity(rows.len());
        let mut user: Option<Arc<str>> = None;
        for row in rows {
            let k = row.view()?;
            let username = match &user {
                Some(u) if **u == *k.username => u.clone(),
                _ => user.insert(Arc::from(k.username)).clone(),
            };
            let line = granted_key_is_valid(metrics, &k, policy).then(|| {
                let start = text.len();
                write_line(&mut text, &k);
                start..text.len()
            });
            rendered.push(RenderedRow {
                username,
                key_created_at: k.key_created_at,
                key_id: k.key_id,
                grant_rank: k.grant_rank,
                grant_created_at: k.grant_created_at,
                line,
            });
        }
        Ok(RenderedBatch {
            text,
            rows: rendered,
        })
    }

    /// The batches' lines in authorized_keys order. A key reached by several grants for the
    /// same login (a one-key grant and an all-keys grant, or grants through groups) has its
    /// rows next to each other, the most specific grant's first (`GrantedKey::grant_rank`,
    /// then the oldest): the first of them that passed validation is written, with its options
    /// and expiry, as [`Services::lookup_text`] does. (Today a verdict depends on the key
    /// alone, so a key's rows pass or fail together.)
    fn assemble(batches: &[RenderedBatch]) -> String {
        let mut rows: Vec<(&RenderedRow, &str)> = batches
            .iter()
            .flat_map(|b| b.rows.iter().map(move |r| (r, b.text.as_str())))
            .collect();
        rows.sort_unstable_by(|(a, _), (b, _)| a.order().cmp(&b.order()));
        let mut out = String::with_capacity(batches.iter().map(|b| b.text.len()).sum());
        let mut previous = None;
        for (row, text) in rows {
            let Some(line) = &row.line else {
                continue;
            };
            if previous == Some(row.key_id) {
                continue;
            }
            previous = Some(row.key_id);
            out.push_str(&text[line.clone()]);
        }
        out
    }
}

/// Appends the key's line: the grant's options and expiry, the key, and
/// `keyportal:<user>:<key id>` as its comment. Every piece is validated text without blanks
/// or line breaks, or a UUID.
fn write_line(out: &mut String, k: &GrantedKeyRef<'_>) {
    let mut id_text = uuid::Uuid::encode_buffer();
    AuthorizedKeysLine {
        options: k.options,
        expiry: k.grant_expires_at,
        public_key: k.public_key,
        comment: &[
            "keyportal:",
            k.username,
            ":",
            k.key_id.hyphenated().encode_lower(&mut id_text),
        ],
    }
    .write_to(out);
}

fn granted_key_is_valid(metrics: &super::Metrics, k: &GrantedKeyRef<'_>, policy: &Policy) -> bool {
    super::keys::revalidate(
        metrics,
        k.public_key,
        k.comment,
        k.fingerprint_sha256,
        policy,
        &k.facts(),
    )
    .is_ok()
}

/// authorized_keys order ([`GrantedKeyOrder`]), so the same grants give the same text in every
/// process and on every read.
fn sort_granted<T>(rows: &mut [(GrantedKey, T)]) {
    rows.sort_unstable_by(|(a, _), (b, _)| a.view().order().cmp(&b.view().order()));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row of `user`'s key `key` (created `age` seconds after the epoch) through a grant of
    /// `rank`, with its line, or `None` when it failed validation.
    fn row(
        batch: &mut RenderedBatch,
        user: &str,
        key: u128,
        age: i64,
        rank: i32,
        line: Option<&str>,
    ) {
        let line = line.map(|l| {
            let start = batch.text.len();
            batch.text.push_str(l);
            batch.text.push('\n');
            start..batch.text.len()
        });
        batch.rows.push(RenderedRow {
            username: Arc::from(user),
            key_created_at: OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(age),
            key_id: uuid::Uuid::from_u128(key),
            grant_rank: rank,
            grant_created_at: OffsetDateTime::UNIX_EPOCH,
            line,
        });
    }

    fn batch() -> RenderedBatch {
        RenderedBatch {
            text: String::new(),
            rows: Vec::new(),
        }
    }

    #[test]
    fn a_keys_rows_in_different_batches_give_one_line_in_order() {
        let (mut first, mut second) = (batch(), batch());
        // amy's key 1 through a group (rank 3) here, through a one-key grant (rank 0) later.
        row(&mut first, "amy", 1, 20, 3, Some("amy-1 through the group"));
        // bob's key 2: its first row failed validation, its second passed.
        row(&mut first, "bob", 2, 5, 1, None);
        row(
            &mut second,
            "amy",
            1,
            20,
            0,
            Some("amy-1 through its own grant"),
        );
        row(&mut second, "bob", 2, 5, 3, Some("bob-2 through the group"));
        // amy's key 3 is older than her key 1: age orders before id.
        row(&mut second, "amy", 3, 10, 1, Some("amy-3"));
        // bob's key 4 failed on every row.
        row(&mut second, "bob", 4, 1, 1, None);
        assert_eq!(
            RenderedBatch::assemble(&[first, second]),
            "amy-3\namy-1 through its own grant\nbob-2 through the group\n"
        );
    }
}
