//! Access reviews: who can log in to a server, as which login, with which key, and why (the
//! grant and the groups that gave it); and where a user can log in. Every key is validated
//! again under today's policy, as on every read.

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{authorize, Action, Ctx, ServiceError, Services};
use crate::store;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AccessView {
    pub server: String,
    pub login: String,
    pub username: String,
    pub key_id: Uuid,
    pub fingerprint_sha256: String,
    /// The options written into authorized_keys for this key (the most specific grant's).
    pub options: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Whether the key passes the validator under today's policy: an invalid key is listed
    /// (someone granted it) but sshd is never given it.
    pub valid: bool,
    /// The validator's code when it does not.
    pub problem: Option<String>,
    /// The grant that gives this access, and the groups it went through.
    pub grant_id: Uuid,
    pub group: Option<String>,
    pub server_group: Option<String>,
}

/// The columns of the CSV export, in order.
pub const CSV_HEADER: &str = "server,login,username,key_id,fingerprint_sha256,options,expires_at,valid,problem,grant_id,group,server_group";

impl AccessView {
    /// One CSV line (RFC 4180: every field quoted, quotes doubled). A field that a
    /// spreadsheet would run as a formula gets a leading apostrophe inside the quotes.
    pub fn csv_line(&self, out: &mut String) {
        let expires = self
            .expires_at
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        let fields = [
            self.server.as_str(),
            &self.login,
            &self.username,
            &self.key_id.to_string(),
            &self.fingerprint_sha256,
            &self.options,
            &expires,
            if self.valid { "true" } else { "false" },
            self.problem.as_deref().unwrap_or(""),
            &self.grant_id.to_string(),
            self.group.as_deref().unwrap_or(""),
            self.server_group.as_deref().unwrap_or(""),
        ];
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('"');
            if field.starts_with(['=', '+', '-', '@']) {
                out.push('\'');
            }
            out.push_str(&field.replace('"', "\"\""));
            out.push('"');
        }
        out.push_str("\r\n");
    }
}

impl Services {
    /// Everyone who can log in to `server` now, by login.
    #[tracing::instrument(skip_all)]
    pub async fn server_access(
        &self,
        ctx: &Ctx,
        server: &str,
    ) -> Result<Vec<AccessView>, ServiceError> {
        authorize(&ctx.caller, Action::ManageServers)?;
        let server = self.visible_server(ctx, server).await?;
        self.effective_access(Some(server.id), None).await
    }

    /// Everywhere `username` can log in now.
    #[tracing::instrument(skip_all)]
    pub async fn user_access(
        &self,
        ctx: &Ctx,
        username: &str,
    ) -> Result<Vec<AccessView>, ServiceError> {
        let user = store::users::by_username(&self.pool, username)
            .await?
            .ok_or(ServiceError::NotFound { what: "user" })?;
        authorize(&ctx.caller, Action::ReadUser { user_id: user.id })?;
        self.effective_access(None, Some(user.id)).await
    }

    async fn effective_access(
        &self,
        server_id: Option<i64>,
        user_id: Option<i64>,
    ) -> Result<Vec<AccessView>, ServiceError> {
        let policy = super::policy::current(&self.pool).await?;
        let rows =
            store::effective_access::effective_access(&self.pool, server_id, user_id).await?;
        let mut out: Vec<AccessView> = rows
            .into_iter()
            .map(|r| {
                let verdict = super::keys::revalidate(
                    &self.metrics,
                    &r.public_key,
                    &r.comment,
                    &r.fingerprint_sha256,
                    &policy,
                    &r.facts(),
                );
                AccessView {
                    valid: verdict.is_ok(),
                    problem: verdict.err().map(|e| e.code.as_str().to_owned()),
                    server: r.server,
                    login: r.login,
                    username: r.username,
                    key_id: r.key_id,
                    fingerprint_sha256: r.fingerprint_sha256,
                    options: r.options,
                    expires_at: r.expires_at,
                    grant_id: r.grant_id,
                    group: r.user_group,
                    server_group: r.server_group,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.server, &a.login, &a.username, a.key_id).cmp(&(
                &b.server,
                &b.login,
                &b.username,
                b.key_id,
            ))
        });
        Ok(out)
    }
}
