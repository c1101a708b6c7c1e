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
    loop {
        let rows = store::keys::unchecked(pool, CHECKS_VERSION, BATCH).await?;
        if rows.is_empty() {
            return Ok(total);
        }
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
