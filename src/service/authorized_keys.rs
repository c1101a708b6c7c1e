//! The authorized_keys text for one server and login: what sshd reads.

use std::collections::HashSet;
use std::fmt::Write;

use super::{authorize, Action, Ctx, ServiceError, Services};
use crate::keys::Policy;
use crate::store;
use crate::store::grants::GrantedKey;

impl Services {
    /// One line per valid, unexpired key of an enabled user with an unexpired grant for this
    /// login: `options type base64 keyportal:<user>:<key id>`. Every key is validated again
    /// under today's policy; a key that fails is left out (and counted in the metrics).
    pub async fn authorized_keys(
        &self,
        ctx: &Ctx,
        server: &str,
        login: &str,
        fingerprint: Option<&str>,
    ) -> Result<String, ServiceError> {
        authorize(&ctx.caller, Action::ReadAuthorizedKeys { server })?;
        let (policy, keys) = tokio::try_join!(super::policy::current(&self.pool), async {
            Ok(store::grants::granted_keys(&self.pool, server, login, fingerprint).await?)
        },)?;
        if keys.is_empty() && store::servers::by_name(&self.pool, server).await?.is_none() {
            return Err(ServiceError::NotFound { what: "server" });
        }
        let (keys, valid) = self.revalidate_all(keys, policy).await?;
        let mut out = String::with_capacity(keys.len() * 600);
        let mut written = HashSet::new();
        for (k, valid) in keys.into_iter().zip(valid) {
            // A key granted twice for the same login (all-keys and one-key grants): the first
            // grant's line wins, as sshd would take the first matching line anyway.
            if written.contains(&k.key_id) {
                continue;
            }
            if !valid {
                continue;
            }
            written.insert(k.key_id);
            let mut options = k.options.clone();
            if let Some(expiry) = k.grant_expires_at {
                let expiry = expiry.to_offset(time::UtcOffset::UTC);
                if !options.is_empty() {
                    options.push(',');
                }
                let _ = write!(
                    options,
                    "expiry-time=\"{:04}{:02}{:02}{:02}{:02}{:02}Z\"",
                    expiry.year(),
                    u8::from(expiry.month()),
                    expiry.day(),
                    expiry.hour(),
                    expiry.minute(),
                    expiry.second()
                );
            }
            if !options.is_empty() {
                out.push_str(&options);
                out.push(' ');
            }
            out.push_str(&k.public_key);
            let _ = writeln!(out, " keyportal:{}:{}", k.username, k.key_id);
        }
        Ok(out)
    }

    /// Validates every key again, on all cores for long lists (off the async threads). Each
    /// verdict is the pure validator's; splitting the list changes only where it runs.
    async fn revalidate_all(
        &self,
        keys: Vec<GrantedKey>,
        policy: Policy,
    ) -> Result<(Vec<GrantedKey>, Vec<bool>), ServiceError> {
        let metrics = self.metrics.clone();
        let check = move |k: &GrantedKey| {
            super::keys::revalidate(
                &metrics,
                &k.public_key,
                &k.comment,
                &k.fingerprint_sha256,
                &policy,
            )
            .is_ok()
        };
        if keys.len() < 256 {
            let valid = keys.iter().map(&check).collect();
            return Ok((keys, valid));
        }
        tokio::task::spawn_blocking(move || {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let chunk = keys.len().div_ceil(threads);
            let valid = std::thread::scope(|scope| {
                let parts: Vec<_> = keys
                    .chunks(chunk)
                    .map(|part| scope.spawn(|| part.iter().map(&check).collect::<Vec<bool>>()))
                    .collect();
                parts
                    .into_iter()
                    .flat_map(|p| p.join().unwrap_or_default())
                    .collect::<Vec<bool>>()
            });
            (keys, valid)
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("key validation task failed: {e}")))
    }
}
