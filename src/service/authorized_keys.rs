//! The authorized_keys text for one server and login: what sshd reads.

use std::collections::HashSet;
use std::fmt::Write;

use super::{authorize, Action, Ctx, ServiceError, Services};
use crate::store;

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
        let row = store::servers::by_name(&self.pool, server)
            .await?
            .ok_or(ServiceError::NotFound { what: "server" })?
            .id;
        authorize(&ctx.caller, Action::ReadAuthorizedKeys { server_id: row })?;
        let policy = super::policy::current(&self.pool).await?;
        let keys = store::grants::granted_keys(&self.pool, row, login, fingerprint).await?;
        let mut out = String::with_capacity(keys.len() * 600);
        let mut written = HashSet::new();
        for k in keys {
            // A key granted twice for the same login (all-keys and one-key grants): the first
            // grant's line wins, as sshd would take the first matching line anyway.
            if written.contains(&k.key_id) {
                continue;
            }
            if super::keys::revalidate(
                self,
                &k.public_key,
                &k.comment,
                &k.fingerprint_sha256,
                &policy,
            )
            .is_err()
            {
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
}
