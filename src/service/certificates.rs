//! SSH certificates: user certificates for stored keys, tied to the grants that allow each
//! login; the live principals check sshd asks at every certificate login; the KRL; host
//! certificates for servers' host keys.
//!
//! Revocation lives in the database (migrations/0011_certificates.sql): deleting, blocklisting
//! or finding a key compromised, and disabling its owner, revoke its certificates in the same
//! transaction, whichever door the change came through.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{authorize, Action, Ctx, ServiceError, Services};
use crate::ca::{krl, restrictions_from_options, Authorities, CaError, CertificateRequest};
use crate::keys::{self, Algorithm};
use crate::store;
use crate::store::keys::KeyRow;

/// Clocks on servers run a little behind or ahead: a certificate is valid from a minute ago.
const CLOCK_SKEW_SECS: i64 = 60;
/// Longest validity of a host certificate (they are renewed by the server's own cron).
const MAX_HOST_CERTIFICATE_SECS: u32 = 366 * 24 * 3600;
const DEFAULT_HOST_CERTIFICATE_SECS: u32 = 90 * 24 * 3600;
/// Most `login@server` principals in one certificate (the schema's bound too).
const MAX_PRINCIPALS: usize = 256;

/// A grant's `expiry-time` option as an instant. Without `Z` sshd reads it in the server's
/// local time, unknown here: the earliest instant it can mean (UTC+14) is taken.
fn option_expiry(options: &keys::KeyOptions) -> Option<OffsetDateTime> {
    let value = options
        .0
        .iter()
        .find(|o| o.name == "expiry-time")?
        .value
        .as_deref()
        .unwrap_or("");
    // A value that is no time at all (sshd would refuse the line) counts as expired.
    Some(parse_expiry_time(value).unwrap_or(OffsetDateTime::UNIX_EPOCH))
}

fn parse_expiry_time(value: &str) -> Option<OffsetDateTime> {
    let (digits, utc) = match value.strip_suffix(['Z', 'z']) {
        Some(d) => (d, true),
        None => (value, false),
    };
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        digits.get(range).map_or(Some(0), |d| d.parse().ok())
    };
    let date = time::Date::from_calendar_date(
        num(0..4)? as i32,
        time::Month::try_from(num(4..6)? as u8).ok()?,
        num(6..8)? as u8,
    )
    .ok()?;
    let at = date
        .with_hms(num(8..10)? as u8, num(10..12)? as u8, num(12..14)? as u8)
        .ok()?
        .assume_utc();
    Some(if utc {
        at
    } else {
        at - time::Duration::hours(14)
    })
}

/// What a user certificate is asked for.
#[derive(Debug, Clone, Default)]
pub struct CertificateAsk {
    /// Only for this server: its grants' options go into the certificate.
    pub server: Option<String>,
    /// Only these logins (each must be allowed by a grant).
    pub logins: Option<Vec<String>>,
    /// Seconds, at most the policy's `max_certificate_validity` (the default).
    pub validity: Option<u32>,
}

/// A server login the grants allow that the certificate leaves out, and why.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LeftOut {
    /// `login@server`.
    pub principal: String,
    pub reason: String,
}

/// A signed certificate.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IssuedCertificate {
    pub serial: i64,
    /// The `*-cert.pub` line.
    pub certificate: String,
    pub key_id: String,
    pub principals: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub valid_after: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub valid_before: OffsetDateTime,
    pub critical_options: BTreeMap<String, String>,
    pub extensions: Vec<String>,
    /// Logins the grants allow that this certificate does not carry.
    pub left_out: Vec<LeftOut>,
}

/// A certificate as listed on its key.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CertificateView {
    pub serial: i64,
    pub key_id: String,
    pub server: Option<String>,
    pub principals: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub valid_after: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub valid_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    pub issued_by: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    pub revoked_reason: Option<String>,
}

impl From<store::certificates::CertificateRow> for CertificateView {
    fn from(r: store::certificates::CertificateRow) -> Self {
        CertificateView {
            serial: r.serial,
            key_id: r.cert_key_id,
            server: r.server_name,
            principals: r.principals,
            valid_after: r.valid_after,
            valid_before: r.valid_before,
            issued_at: r.issued_at,
            issued_by: r.issued_by,
            revoked_at: r.revoked_at,
            revoked_reason: r.revoked_reason,
        }
    }
}

/// A host key certified for a server.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HostCertificate {
    pub serial: i64,
    pub certificate: String,
    pub principals: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub valid_before: OffsetDateTime,
}

/// A DNS name or an IP address: no pattern characters (`*`, `?`, `!`, `,`), nothing else.
fn is_plain_host(h: &str) -> bool {
    h.parse::<std::net::IpAddr>().is_ok()
        || (h.len() <= 253
            && h.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            }))
}

/// The subject key types OpenSSH has certificate types for.
fn certifiable(algorithm: Algorithm) -> bool {
    !matches!(algorithm, Algorithm::Dsa | Algorithm::MlDsa44Ed25519)
}

fn ca_error(e: CaError, field: &'static str) -> ServiceError {
    match e {
        CaError::Request(detail) => ServiceError::Invalid {
            code: "certificate_invalid",
            field,
            detail,
        },
        other => ServiceError::Internal(other.to_string()),
    }
}

/// `t` cut to whole seconds, as a certificate holds it.
fn whole_seconds(t: OffsetDateTime) -> Result<OffsetDateTime, ServiceError> {
    OffsetDateTime::from_unix_timestamp(t.unix_timestamp())
        .map_err(|e| ServiceError::Internal(e.to_string()))
}

fn unix(t: OffsetDateTime) -> Result<u64, ServiceError> {
    u64::try_from(t.unix_timestamp())
        .map_err(|_| ServiceError::Internal("a time before 1970".into()))
}

impl Services {
    fn authorities(&self) -> Result<&Authorities, ServiceError> {
        self.ca.as_deref().ok_or(ServiceError::NotConfigured(
            "this portal was started without its certificate authorities",
        ))
    }

    /// The `TrustedUserCAKeys` file.
    pub fn user_ca_keys(&self) -> Result<String, ServiceError> {
        Ok(self.authorities()?.trusted_user_ca_keys())
    }

    /// The known_hosts line that trusts every host certificate of the host CA.
    pub fn known_hosts(&self) -> Result<String, ServiceError> {
        Ok(format!(
            "@cert-authority * {}\n",
            self.authorities()?.host.public_line()
        ))
    }

    /// A user certificate for the stored key `key_id`.
    #[tracing::instrument(skip_all)]
    pub async fn issue_certificate(
        &self,
        ctx: &Ctx,
        key_id: Uuid,
        ask: CertificateAsk,
    ) -> Result<IssuedCertificate, ServiceError> {
        let row = self.visible_key(ctx, key_id).await?;
        self.issue_for(ctx, row, ask).await
    }

    /// A user certificate for the caller's stored key with this SHA256 fingerprint.
    #[tracing::instrument(skip_all)]
    pub async fn issue_certificate_by_fingerprint(
        &self,
        ctx: &Ctx,
        fingerprint: &str,
        ask: CertificateAsk,
    ) -> Result<IssuedCertificate, ServiceError> {
        let row = store::keys::by_fingerprint(&self.pool, fingerprint)
            .await?
            .ok_or(ServiceError::NotFound { what: "key" })?;
        let row = self.visible_key(ctx, row.id).await?;
        self.issue_for(ctx, row, ask).await
    }

    async fn issue_for(
        &self,
        ctx: &Ctx,
        row: KeyRow,
        ask: CertificateAsk,
    ) -> Result<IssuedCertificate, ServiceError> {
        let ca = self.authorities()?;
        let policy = super::policy::current(&self.pool).await?;
        // The key is judged as on every read, compromised-key checks and blocklist included.
        let check = super::keys::revalidate(
            &self.metrics,
            &row.public_key,
            &row.comment,
            &row.fingerprint_sha256,
            &policy,
            &row.facts(),
        )
        .map_err(ServiceError::KeyRejected)?;
        let now = OffsetDateTime::now_utc();
        if row.expires_at.is_some_and(|e| e <= now) {
            return Err(ServiceError::Refused {
                code: "key_expired",
                field: None,
                detail: "this key has expired; add a new key",
            });
        }
        if !certifiable(check.algorithm()) {
            return Err(ServiceError::Invalid {
                code: "certificate_key_type_unsupported",
                field: "key",
                detail: format!(
                    "OpenSSH has no certificate type for {} keys; use an Ed25519, ECDSA or RSA key",
                    check.algorithm().as_str()
                ),
            });
        }
        let max = policy.max_certificate_validity;
        let validity = ask.validity.unwrap_or(max);
        if validity == 0 || validity > max {
            return Err(ServiceError::invalid(
                "validity",
                format!(
                    "validity must be 1 to {max} seconds (the policy's max_certificate_validity)"
                ),
            ));
        }
        let server = match &ask.server {
            Some(name) => Some(
                store::servers::by_name(&self.pool, name)
                    .await?
                    .ok_or(ServiceError::NotFound { what: "server" })?,
            ),
            None => None,
        };
        let access = store::effective_access::effective_access(
            &self.pool,
            server.as_ref().map(|s| s.id),
            Some(row.user_id),
        )
        .await?;
        // One principal per (server, login) the grants allow, `login@server`, with the most
        // specific grant's options (the effective-access order). A bare login would open that
        // login on every server that trusts the CA without asking the portal (the KRL mode).
        let mut pairs: Vec<store::effective_access::AccessRow> =
            access.into_iter().filter(|a| a.key_id == row.id).collect();
        if let Some(wanted) = &ask.logins {
            if wanted.is_empty() {
                return Err(ServiceError::invalid(
                    "logins",
                    "name at least one login, or leave logins out",
                ));
            }
            if let Some(l) = wanted
                .iter()
                .find(|l| !pairs.iter().any(|a| a.login == **l))
            {
                return Err(ServiceError::Invalid {
                    code: "login_not_granted",
                    field: "logins",
                    detail: format!(
                        "no grant lets this key log in as {l:?}{}",
                        server
                            .as_ref()
                            .map(|s| format!(" on {}", s.name))
                            .unwrap_or_default()
                    ),
                });
            }
            pairs.retain(|a| wanted.contains(&a.login));
        }
        if pairs.len() > MAX_PRINCIPALS {
            return Err(ServiceError::invalid(
                "logins",
                format!(
                    "the grants allow {} server logins, more than one certificate carries ({MAX_PRINCIPALS}); ask for one server or fewer logins",
                    pairs.len()
                ),
            ));
        }
        let mut left_out = Vec::new();
        let mut principals = Vec::new();
        let mut restrictions = None;
        let mut valid_before = now + time::Duration::seconds(i64::from(validity));
        if let Some(e) = row.expires_at {
            valid_before = valid_before.min(e);
        }
        for pair in pairs {
            let principal = format!("{}@{}", pair.login, pair.server);
            let parsed = if pair.options.is_empty() {
                keys::KeyOptions::default()
            } else {
                keys::options::parse(pair.options.as_bytes()).map_err(|e| {
                    ServiceError::Internal(format!("stored grant options of {principal}: {e}"))
                })?
            };
            // For every server: only grants without options, since one certificate cannot
            // carry different servers' restrictions.
            if server.is_none() && !parsed.is_empty() {
                left_out.push(LeftOut {
                    principal,
                    reason: "its grant carries options; ask for a certificate for that server"
                        .into(),
                });
                continue;
            }
            let restriction = match restrictions_from_options(&parsed) {
                Ok(r) => r,
                Err(reason) => {
                    left_out.push(LeftOut { principal, reason });
                    continue;
                }
            };
            match &restrictions {
                None => restrictions = Some(restriction),
                Some(r) if *r == restriction => {}
                Some(_) => {
                    left_out.push(LeftOut {
                        principal,
                        reason: "its grant's options differ from the other logins'; ask for this login alone".into(),
                    });
                    continue;
                }
            }
            for e in [pair.expires_at, option_expiry(&parsed)]
                .into_iter()
                .flatten()
            {
                valid_before = valid_before.min(e);
            }
            principals.push(principal);
        }
        let Some(restrictions) = restrictions.filter(|_| !principals.is_empty()) else {
            return Err(ServiceError::Invalid {
                code: "no_grantable_login",
                field: "logins",
                detail: if left_out.is_empty() {
                    "no grant lets this key log in anywhere yet; ask an admin for access".into()
                } else {
                    format!(
                        "no login can go into a certificate: {}",
                        left_out
                            .iter()
                            .map(|l| format!("{}: {}", l.principal, l.reason))
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                },
            });
        };
        let valid_after = now - time::Duration::seconds(CLOCK_SKEW_SECS);
        if valid_before <= now {
            return Err(ServiceError::Refused {
                code: "grant_expired",
                field: None,
                detail: "the grant or key expires now; nothing is left to certify",
            });
        }
        let subject = ssh_key::PublicKey::from_openssh(&row.public_key)
            .map_err(|e| ServiceError::Internal(format!("stored key {}: {e}", row.id)))?;
        let mut tx = self.pool.begin().await?;
        if !store::certificates::lock_certifiable_key(&mut tx, row.id).await? {
            return Err(ServiceError::Conflict {
                code: "key_changed",
                detail: "the key was deleted, flagged or its owner disabled meanwhile; nothing was issued".into(),
            });
        }
        let serial = store::certificates::next_serial(&mut *tx).await?;
        let cert_key_id = format!("keyportal:{}:{}:{serial}", row.username, row.id);
        let cert = ca
            .user
            .sign(&CertificateRequest {
                subject: &subject,
                host: false,
                serial: serial as u64,
                key_id: &cert_key_id,
                principals: &principals,
                valid_after: unix(valid_after)?,
                valid_before: unix(valid_before)?,
                critical_options: restrictions.critical_options.clone(),
                extensions: restrictions.extensions.clone(),
            })
            .map_err(|e| ca_error(e, "logins"))?;
        let line = cert
            .to_openssh()
            .map_err(|e| ServiceError::Internal(format!("encoding a certificate: {e}")))?;
        let (valid_after, valid_before) =
            (whole_seconds(valid_after)?, whole_seconds(valid_before)?);
        store::certificates::insert(
            &mut *tx,
            &store::certificates::NewCertificate {
                serial,
                kind: "user",
                ca_fingerprint: ca.user.fingerprint(),
                key_id: Some(row.id),
                user_id: Some(row.user_id),
                username: Some(&row.username),
                server_name: server.as_ref().map(|s| s.name.as_str()),
                fingerprint_sha256: &row.fingerprint_sha256,
                cert_key_id: &cert_key_id,
                principals: &principals,
                valid_after,
                valid_before,
                issued_by: &ctx.caller.actor(),
            },
        )
        .await?;
        super::audit::record(
            &mut *tx,
            ctx,
            "certificate.issue",
            &format!("user:{}", row.username),
            json!({
                "serial": serial, "key_id": row.id, "fingerprint": row.fingerprint_sha256,
                "principals": principals, "server": ask.server,
                "valid_before": valid_before.unix_timestamp(),
                "critical_options": restrictions.critical_options.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            }),
        )
        .await?;
        tx.commit().await?;
        Ok(IssuedCertificate {
            serial,
            certificate: line,
            key_id: cert_key_id,
            principals,
            valid_after,
            valid_before,
            critical_options: restrictions
                .critical_options
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v))
                .collect(),
            extensions: restrictions
                .extensions
                .into_iter()
                .map(str::to_owned)
                .collect(),
            left_out,
        })
    }

    /// The certificates issued for a key (owner or admin).
    #[tracing::instrument(skip_all)]
    pub async fn key_certificates(
        &self,
        ctx: &Ctx,
        key_id: Uuid,
    ) -> Result<Vec<CertificateView>, ServiceError> {
        let row = self.visible_key(ctx, key_id).await?;
        Ok(store::certificates::of_key(&self.pool, row.id)
            .await?
            .into_iter()
            .map(CertificateView::from)
            .collect())
    }

    /// Revokes one user certificate (its key's owner, or an admin): refused at the next login
    /// by the principals check, and listed in the KRL until it expires.
    #[tracing::instrument(skip_all)]
    pub async fn revoke_certificate(&self, ctx: &Ctx, serial: i64) -> Result<(), ServiceError> {
        let cert = store::certificates::by_serial(&self.pool, serial)
            .await?
            .filter(|c| c.kind == "user")
            .ok_or(ServiceError::NotFound {
                what: "certificate",
            })?;
        match cert.key_id {
            Some(key) if !ctx.caller.is_admin() => {
                self.visible_key(ctx, key).await.map_err(|e| match e {
                    ServiceError::NotFound { .. } => ServiceError::NotFound {
                        what: "certificate",
                    },
                    other => other,
                })?;
            }
            _ => authorize(&ctx.caller, Action::ManageUsers)?,
        }
        let mut tx = self.pool.begin().await?;
        if store::certificates::revoke(&mut *tx, serial).await? == 0 {
            return Err(ServiceError::Conflict {
                code: "certificate_not_revocable",
                detail: "this certificate is already revoked or has expired".into(),
            });
        }
        super::audit::record(
            &mut *tx,
            ctx,
            "certificate.revoke",
            &format!("user:{}", cert.username.unwrap_or_default()),
            json!({ "serial": serial, "key_id": cert.key_id }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// sshd's AuthorizedPrincipalsCommand for a certificate presented to `server` for `login`:
    /// one AuthorizedPrincipalsFile line (`[options ]login@server`, the principal the
    /// certificate carries for this server) if the certificate is one this portal issued and
    /// did not revoke, and a grant still lets its key log in as `login` there (that grant's options and expiry are on the line, so sshd enforces today's
    /// grant, not the one at issuance). Otherwise nothing.
    #[tracing::instrument(skip_all)]
    pub async fn principals(
        &self,
        ctx: &Ctx,
        server: &str,
        login: &str,
        cert_key_id: &str,
        serial: i64,
    ) -> Result<String, ServiceError> {
        authorize(&ctx.caller, Action::ReadAuthorizedKeys { server })?;
        let now = OffsetDateTime::now_utc();
        let principal = format!("{login}@{server}");
        let cert = store::certificates::by_serial(&self.pool, serial).await?;
        let live = cert.filter(|c| {
            c.kind == "user"
                && c.cert_key_id == cert_key_id
                && c.revoked_at.is_none()
                && c.valid_before > now
                && c.principals.contains(&principal)
                && c.server_name.as_deref().is_none_or(|s| s == server)
        });
        let Some(cert) = live else {
            if store::servers::by_name(&self.pool, server).await?.is_none() {
                return Err(ServiceError::NotFound { what: "server" });
            }
            return Ok(String::new());
        };
        // The same read as authorized_keys by fingerprint: today's grants, the key validated
        // again, the most specific grant first.
        let rows = self
            .key_read(&self.pool, server, login, &cert.fingerprint_sha256)
            .await?;
        let mut out = String::new();
        if let Some((k, _)) = rows.iter().find(|(_, valid)| *valid) {
            if keys::write_options(&k.options, k.grant_expires_at, &mut out) {
                out.push(' ');
            }
            out.push_str(&principal);
            out.push('\n');
        }
        Ok(out)
    }

    /// The KRL, signed by the user CA: revoked unexpired certificates by serial (by key id
    /// when their CA is no longer configured),
    /// and revoked plain keys (blocklisted, or found compromised) by SHA256 fingerprint.
    #[tracing::instrument(skip_all)]
    pub async fn krl(&self, ctx: &Ctx) -> Result<Vec<u8>, ServiceError> {
        authorize(&ctx.caller, Action::ReadRevocations)?;
        let ca = self.authorities()?;
        let contents = store::certificates::krl_contents(&self.pool).await?;
        let mut sections: BTreeMap<Vec<u8>, krl::CertificateSection> = BTreeMap::new();
        let known: Vec<(String, Vec<u8>)> = std::iter::once(ca.user.public_key())
            .chain(ca.user_published.iter())
            .filter_map(|k| {
                Some((
                    k.fingerprint(ssh_key::HashAlg::Sha256).to_string(),
                    k.to_bytes().ok()?,
                ))
            })
            .collect();
        for (serial, key_id, ca_fp) in contents.certificates {
            // A CA no longer configured: its certificates by key id, in the wildcard section
            // (which applies to every CA, so a serial there could hit another CA's).
            let blob = known
                .iter()
                .find(|(fp, _)| *fp == ca_fp)
                .map(|(_, b)| b.clone())
                .unwrap_or_default();
            let section = sections
                .entry(blob.clone())
                .or_insert_with(|| krl::CertificateSection {
                    ca_key: blob.clone(),
                    serials: Vec::new(),
                    key_ids: Vec::new(),
                });
            // By serial under its CA; the key id only where the serial cannot be used. sshd
            // reads the whole file at every login, and a key id costs it far more than a
            // serial (docs/certificates.md: 100,000 key ids added 2.2 s to each login).
            if blob.is_empty() {
                section.key_ids.push(key_id);
            } else {
                let serial = serial as u64;
                section.serials.push((serial, serial));
            }
        }
        let sha256_fingerprints = contents
            .key_fingerprints
            .iter()
            .filter_map(|fp| crate::keys::decode_sha256_fingerprint(fp))
            .collect();
        let list = krl::Krl {
            version: contents.version as u64,
            generated_at: unix(OffsetDateTime::now_utc())?,
            comment: "keyportal".into(),
            certificates: sections.into_values().collect(),
            explicit_keys: Vec::new(),
            sha256_fingerprints,
            sha1_fingerprints: Vec::new(),
        };
        let unsigned = list
            .to_bytes()
            .map_err(|e| ServiceError::Internal(format!("building the KRL: {e}")))?;
        ca.user
            .sign_krl(&unsigned)
            .map_err(|e| ServiceError::Internal(format!("signing the KRL: {e}")))
    }

    /// Host certificates for a server's host keys (`type base64` lines), signed by the host
    /// CA for the server's name and hostname.
    #[tracing::instrument(skip_all)]
    pub async fn host_certificates(
        &self,
        ctx: &Ctx,
        server: &str,
        host_keys: &[String],
        validity: Option<u32>,
    ) -> Result<Vec<HostCertificate>, ServiceError> {
        authorize(&ctx.caller, Action::SignHostKeys { server })?;
        let ca = self.authorities()?;
        let srv = store::servers::by_name(&self.pool, server)
            .await?
            .ok_or(ServiceError::NotFound { what: "server" })?;
        if host_keys.is_empty() || host_keys.len() > 16 {
            return Err(ServiceError::invalid(
                "host_keys",
                "send 1 to 16 host public keys",
            ));
        }
        let validity = validity.unwrap_or(DEFAULT_HOST_CERTIFICATE_SECS);
        if validity == 0 || validity > MAX_HOST_CERTIFICATE_SECS {
            return Err(ServiceError::invalid(
                "validity",
                format!("validity must be 1 to {MAX_HOST_CERTIFICATE_SECS} seconds"),
            ));
        }
        let policy = super::policy::current(&self.pool).await?;
        let mut subjects = Vec::new();
        for (i, line) in host_keys.iter().enumerate() {
            let key =
                self.validate_key(line.as_bytes(), &policy)
                    .map_err(|r| ServiceError::Invalid {
                        code: r.code.as_str(),
                        field: "host_keys",
                        detail: format!("host key {}: {}", i + 1, r.message),
                    })?;
            if !certifiable(key.algorithm()) {
                return Err(ServiceError::Invalid {
                    code: "certificate_key_type_unsupported",
                    field: "host_keys",
                    detail: format!(
                        "host key {}: OpenSSH has no certificate type for {}",
                        i + 1,
                        key.algorithm().as_str()
                    ),
                });
            }
            let parsed = ssh_key::PublicKey::from_openssh(key.public_key())
                .map_err(|e| ServiceError::Internal(format!("re-reading a validated key: {e}")))?;
            subjects.push((parsed, key.fingerprint_sha256().to_owned()));
        }
        // ssh matches host certificate principals as patterns (OpenSSH 10.3 and later): only
        // a plain DNS name or address, which no other server goes by, is certified.
        let mut principals = vec![srv.name.clone()];
        let hostname = srv.hostname.trim();
        if !hostname.is_empty()
            && hostname != srv.name
            && is_plain_host(hostname)
            && !store::certificates::hostname_taken(&self.pool, srv.id, hostname).await?
        {
            principals.push(hostname.to_owned());
        }
        let now = OffsetDateTime::now_utc();
        let valid_after = now - time::Duration::seconds(CLOCK_SKEW_SECS);
        let valid_before = whole_seconds(now + time::Duration::seconds(i64::from(validity)))?;
        let mut tx = self.pool.begin().await?;
        let mut out = Vec::new();
        for (subject, fingerprint) in &subjects {
            let serial = store::certificates::next_serial(&mut *tx).await?;
            let cert_key_id = format!("keyportal-host:{}:{serial}", srv.name);
            let cert = ca
                .host
                .sign(&CertificateRequest {
                    subject,
                    host: true,
                    serial: serial as u64,
                    key_id: &cert_key_id,
                    principals: &principals,
                    valid_after: unix(valid_after)?,
                    valid_before: unix(valid_before)?,
                    critical_options: Vec::new(),
                    extensions: Vec::new(),
                })
                .map_err(|e| ca_error(e, "host_keys"))?;
            store::certificates::insert(
                &mut *tx,
                &store::certificates::NewCertificate {
                    serial,
                    kind: "host",
                    ca_fingerprint: ca.host.fingerprint(),
                    key_id: None,
                    user_id: None,
                    username: None,
                    server_name: Some(&srv.name),
                    fingerprint_sha256: fingerprint,
                    cert_key_id: &cert_key_id,
                    principals: &principals,
                    valid_after: whole_seconds(valid_after)?,
                    valid_before,
                    issued_by: &ctx.caller.actor(),
                },
            )
            .await?;
            out.push(HostCertificate {
                serial,
                certificate: cert
                    .to_openssh()
                    .map_err(|e| ServiceError::Internal(format!("encoding a certificate: {e}")))?,
                principals: principals.clone(),
                valid_before,
            });
        }
        super::audit::record(
            &mut *tx,
            ctx,
            "certificate.host_issue",
            &format!("server:{}", srv.name),
            json!({ "serials": out.iter().map(|c| c.serial).collect::<Vec<_>>(), "principals": principals }),
        )
        .await?;
        tx.commit().await?;
        Ok(out)
    }
}
