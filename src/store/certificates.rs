//! Certificates the CAs signed (`certificates`) and the KRL's version (`krl_state`). The
//! triggers of migrations/0011_certificates.sql revoke certificates when their key, its owner
//! or the key's innocence goes away.

use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CertificateRow {
    pub serial: i64,
    pub kind: String,
    pub ca_fingerprint: String,
    pub key_id: Option<Uuid>,
    pub username: Option<String>,
    pub server_name: Option<String>,
    pub fingerprint_sha256: String,
    pub cert_key_id: String,
    pub principals: Vec<String>,
    pub valid_after: OffsetDateTime,
    pub valid_before: OffsetDateTime,
    pub issued_at: OffsetDateTime,
    pub issued_by: String,
    pub revoked_at: Option<OffsetDateTime>,
    pub revoked_reason: Option<String>,
}

const COLUMNS: &str = "serial, kind, ca_fingerprint, key_id, username, server_name,
    fingerprint_sha256, cert_key_id, principals, valid_after, valid_before, issued_at,
    issued_by, revoked_at, revoked_reason";

pub struct NewCertificate<'a> {
    pub serial: i64,
    pub kind: &'a str,
    pub ca_fingerprint: &'a str,
    pub key_id: Option<Uuid>,
    pub user_id: Option<i64>,
    pub username: Option<&'a str>,
    pub server_name: Option<&'a str>,
    pub fingerprint_sha256: &'a str,
    pub cert_key_id: &'a str,
    pub principals: &'a [String],
    pub valid_after: OffsetDateTime,
    pub valid_before: OffsetDateTime,
    pub issued_by: &'a str,
}

/// The serial the next certificate gets (it goes inside the certificate, so it is taken
/// before signing; a serial taken by a transaction that then fails is simply never used).
pub async fn next_serial(db: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT nextval(pg_get_serial_sequence('certificates', 'serial'))")
        .fetch_one(db)
        .await
}

pub async fn insert(db: impl PgExecutor<'_>, c: &NewCertificate<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO certificates (serial, kind, ca_fingerprint, key_id, user_id, username,
             server_name, fingerprint_sha256, cert_key_id, principals, valid_after, valid_before,
             issued_by)
         OVERRIDING SYSTEM VALUE
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(c.serial)
    .bind(c.kind)
    .bind(c.ca_fingerprint)
    .bind(c.key_id)
    .bind(c.user_id)
    .bind(c.username)
    .bind(c.server_name)
    .bind(c.fingerprint_sha256)
    .bind(c.cert_key_id)
    .bind(c.principals)
    .bind(c.valid_after)
    .bind(c.valid_before)
    .bind(c.issued_by)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn by_serial(
    db: impl PgExecutor<'_>,
    serial: i64,
) -> Result<Option<CertificateRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM certificates WHERE serial = $1"
    ))
    .bind(serial)
    .fetch_optional(db)
    .await
}

/// Whether the key still exists, unflagged, with an enabled owner; both rows are then locked
/// until the transaction ends, so a delete or a disable waits for the certificate's row (and
/// its trigger then revokes it) rather than slipping in between.
pub async fn lock_certifiable_key(
    tx: &mut sqlx::PgConnection,
    key_id: Uuid,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query_scalar::<_, i32>(
        "SELECT 1 FROM ssh_keys k JOIN users u ON u.id = k.user_id
          WHERE k.id = $1 AND NOT u.disabled AND k.compromise IS NULL
          FOR SHARE OF k, u",
    )
    .bind(key_id)
    .fetch_optional(&mut *tx)
    .await?
    .is_some())
}

/// Whether another server already goes by `hostname`, as its name or its hostname.
pub async fn hostname_taken(
    db: impl PgExecutor<'_>,
    server_id: i64,
    hostname: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM servers WHERE id <> $1 AND (name = lower($2) OR lower(hostname) = lower($2)))",
    )
    .bind(server_id)
    .bind(hostname)
    .fetch_one(db)
    .await
}

/// A key's certificates, newest first (at most 100).
pub async fn of_key(
    db: impl PgExecutor<'_>,
    key_id: Uuid,
) -> Result<Vec<CertificateRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM certificates WHERE key_id = $1 ORDER BY serial DESC LIMIT 100"
    ))
    .bind(key_id)
    .fetch_all(db)
    .await
}

/// Revokes one unexpired certificate; the number of rows changed (0: unknown, expired or
/// already revoked).
pub async fn revoke(db: impl PgExecutor<'_>, serial: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE certificates SET revoked_at = now(), revoked_reason = 'revoked'
          WHERE serial = $1 AND revoked_at IS NULL AND valid_before > now()",
    )
    .bind(serial)
    .execute(db)
    .await?
    .rows_affected())
}

/// What the KRL holds, as of one snapshot.
pub struct KrlContents {
    pub version: i64,
    /// (serial, certificate key id, CA fingerprint) of revoked, unexpired user certificates.
    pub certificates: Vec<(i64, String, String)>,
    /// SHA256 fingerprints of plain keys revoked outright: the blocklist and stored keys the
    /// computed checks found compromised.
    pub key_fingerprints: Vec<String>,
}

/// The KRL's version and the rows it covers, read in one REPEATABLE READ snapshot.
pub async fn krl_contents(db: &sqlx::PgPool) -> Result<KrlContents, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let version: i64 = sqlx::query_scalar("SELECT version FROM krl_state")
        .fetch_one(&mut *tx)
        .await?;
    let certificates = sqlx::query_as(
        "SELECT serial, cert_key_id, ca_fingerprint FROM certificates
          WHERE revoked_at IS NOT NULL AND valid_before > now() AND kind = 'user'
          ORDER BY serial",
    )
    .fetch_all(&mut *tx)
    .await?;
    let key_fingerprints = sqlx::query_scalar(
        "SELECT fingerprint_sha256 FROM blocklist
         UNION
         SELECT fingerprint_sha256 FROM ssh_keys WHERE compromise IS NOT NULL",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(KrlContents {
        version,
        certificates,
        key_fingerprints,
    })
}
