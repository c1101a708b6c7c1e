//! Bringing the stored verdicts of the computed compromised-key checks up to date: keys stored
//! before this version of the checks (`keys::compromised::CHECKS_VERSION`) are judged again in
//! the background. Until a key is, every read runs the checks itself, so the verdict never
//! waits for this pass; it only makes reads cheap again.

use std::time::Duration;

use crate::keys;
use crate::keys::compromised::CHECKS_VERSION;
use crate::store;

/// Keys judged per round trip.
const BATCH: i64 = 500;

/// Judges every key the current checks have not judged; returns how many it judged.
pub async fn refresh_computed_checks(pool: &sqlx::PgPool) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    // Forward by id: each key is read once per pass.
    let mut after = None;
    loop {
        let rows = store::keys::unchecked(pool, CHECKS_VERSION, after, BATCH).await?;
        let Some((last, _)) = rows.last() else {
            return Ok(total);
        };
        after = Some(*last);
        let verdicts = tokio::task::spawn_blocking(move || {
            rows.into_iter()
                .map(|(id, public_key)| {
                    // A key that does not decode keeps no verdict here; its every read refuses
                    // it with the decoding error. It is still marked as judged.
                    let found = keys::computed_checks(&public_key).ok().flatten();
                    (id, found)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| sqlx::Error::Protocol(format!("computed-checks task failed: {e}")))?;
        let found: Vec<(uuid::Uuid, Option<&str>)> = verdicts
            .iter()
            .map(|(id, f)| (*id, f.map(|r| r.as_str())))
            .collect();
        for (id, reason) in verdicts.iter().filter_map(|(id, f)| f.map(|r| (id, r))) {
            tracing::warn!(key_id = %id, reason = reason.as_str(), "a stored key is compromised");
        }
        total += store::keys::record_computed_checks(pool, &found, CHECKS_VERSION).await?;
    }
}

/// Runs [`refresh_computed_checks`] once at start; a database error is logged and retried a
/// minute later (reads are correct meanwhile, only slower).
pub fn spawn_refresh(pool: sqlx::PgPool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match refresh_computed_checks(&pool).await {
                Ok(0) => return,
                Ok(n) => {
                    tracing::info!(
                        keys = n,
                        "stored keys judged by the current compromised-key checks"
                    );
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not bring the compromised-key checks of stored keys up to date; retrying in a minute");
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
            }
        }
    })
}

/// The advisory lock that lets one shared-prime scan run at a time across every process on
/// the database ("kp" "sp" in ASCII).
const SCAN_LOCK: i64 = 0x6b70_7370;

/// What a shared-prime scan found.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ScanReport {
    /// RSA keys scanned.
    pub rsa_keys: usize,
    /// Keys whose modulus shares a prime with another stored modulus.
    pub sharing: usize,
    /// Blocklist entries this run added (keys found by an earlier run are listed already).
    pub added: usize,
    /// Seconds the batch GCD took.
    pub seconds: f64,
    /// Each key found, with one other key it shares a prime with.
    pub found: Vec<SharedPrimeFinding>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SharedPrimeFinding {
    pub fingerprint_sha256: String,
    pub other_fingerprint: String,
}

impl super::Services {
    /// Batch GCD over every stored RSA modulus: each one that shares a prime with another goes
    /// on the blocklist as `shared_prime`, naming the other. Running it again adds nothing new.
    /// One scan at a time across all processes; another caller gets `scan_running`.
    #[tracing::instrument(skip_all)]
    pub async fn scan_shared_primes(
        &self,
        ctx: &super::Ctx,
    ) -> Result<ScanReport, super::ServiceError> {
        super::authorize(&ctx.caller, super::Action::ManageBlocklist)?;
        // A connection of its own, never handed back to the pool: the advisory lock belongs to
        // the session, so if this request is dropped midway (timeout, client gone) the
        // connection closes and the lock goes with it, instead of staying held in the pool.
        let mut lock = self.pool.acquire().await?.detach();
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(SCAN_LOCK)
            .fetch_one(&mut lock)
            .await?;
        if !locked {
            return Err(super::ServiceError::Conflict {
                code: "scan_running",
                detail: "a shared-prime scan is running already; try again when it has finished"
                    .into(),
            });
        }
        let result = self.scan_shared_primes_locked(ctx).await;
        // Closing the session releases the lock.
        if let Err(e) = sqlx::Connection::close(lock).await {
            tracing::warn!(error = %e, "closing the shared-prime scan's lock connection failed; the server ends the session and its lock");
        }
        result
    }

    async fn scan_shared_primes_locked(
        &self,
        ctx: &super::Ctx,
    ) -> Result<ScanReport, super::ServiceError> {
        let keys = store::keys::rsa_keys(&self.pool).await?;
        let started = std::time::Instant::now();
        let (keys, found) = tokio::task::spawn_blocking(move || {
            let (fps, moduli): (Vec<String>, Vec<Vec<u8>>) = keys
                .into_iter()
                .filter_map(|(fp, public_key)| keys::rsa_modulus(&public_key).map(|n| (fp, n)))
                .unzip();
            let found = keys::shared_primes::shared_primes(&moduli);
            (fps, found)
        })
        .await
        .map_err(|e| {
            super::ServiceError::Internal(format!("shared-prime scan task failed: {e}"))
        })?;
        let seconds = started.elapsed().as_secs_f64();
        let found: Vec<SharedPrimeFinding> = found
            .iter()
            .map(|f| SharedPrimeFinding {
                fingerprint_sha256: keys[f.index].clone(),
                other_fingerprint: keys[f.other].clone(),
            })
            .collect();
        let reasons: Vec<String> = found
            .iter()
            .map(|f| {
                format!(
                    "its RSA modulus shares a prime factor with that of {} (shared-prime scan)",
                    f.other_fingerprint
                )
            })
            .collect();
        let entries: Vec<store::blocklist::NewEntry<'_>> = found
            .iter()
            .zip(&reasons)
            .map(|(f, reason)| store::blocklist::NewEntry {
                fingerprint_sha256: &f.fingerprint_sha256,
                public_key: None,
                kind: keys::CompromiseReason::SharedPrime.as_str(),
                reason,
                related_fingerprint: Some(&f.other_fingerprint),
                added_by: ctx.caller.user_id(),
            })
            .collect();
        let mut tx = self.pool.begin().await?;
        let mut added = 0;
        for batch in entries.chunks(2000) {
            added += store::blocklist::insert_many(&mut *tx, batch).await?.len();
        }
        super::audit::record(
            &mut *tx,
            ctx,
            "blocklist.scan",
            "blocklist",
            serde_json::json!({ "rsa_keys": keys.len(), "sharing": found.len(), "added": added, "seconds": seconds }),
        )
        .await?;
        tx.commit().await?;
        if !found.is_empty() {
            tracing::warn!(
                rsa_keys = keys.len(),
                sharing = found.len(),
                added,
                "the shared-prime scan found RSA keys that share a prime"
            );
        }
        Ok(ScanReport {
            rsa_keys: keys.len(),
            sharing: found.len(),
            added,
            seconds,
            found,
        })
    }
}

/// Runs the scan every `hours` (the first one `hours` after start); 0 turns it off. Only one
/// process scans at a time (the advisory lock); the others skip that round.
pub fn spawn_scheduled_scan(
    services: super::Services,
    hours: u32,
) -> Option<tokio::task::JoinHandle<()>> {
    if hours == 0 {
        return None;
    }
    Some(tokio::spawn(async move {
        let every = Duration::from_secs(u64::from(hours) * 3600);
        loop {
            tokio::time::sleep(every).await;
            match services
                .scan_shared_primes(&super::Ctx::command_line())
                .await
            {
                Ok(r) => tracing::info!(
                    rsa_keys = r.rsa_keys,
                    sharing = r.sharing,
                    added = r.added,
                    seconds = r.seconds,
                    "scheduled shared-prime scan done"
                ),
                Err(super::ServiceError::Conflict { .. }) => {
                    tracing::info!("another process is running the shared-prime scan; skipped")
                }
                Err(e) => {
                    tracing::error!(error = %e, "the scheduled shared-prime scan failed; next try at the next interval")
                }
            }
        }
    }))
}
