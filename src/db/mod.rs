//! Storage: the PostgreSQL pool, the embedded migrations, and where the database comes from
//! (a configured `DATABASE_URL`, or keyportal's private cluster).

pub mod backup;
pub mod private_cluster;
pub mod replicas;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::ConnectOptions;

pub use private_cluster::{ClusterError, PrivateCluster};

use crate::config::DatabaseConfig;

/// Every migration in `migrations/`, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    BadUrl(#[source] sqlx::Error),
    #[error("KEYPORTAL_DATABASE_READ_URL holds a URL that is not a valid PostgreSQL URL: {0}")]
    BadReadUrl(#[source] sqlx::Error),
    #[error("private PostgreSQL cluster: {0}")]
    Cluster(#[from] ClusterError),
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("cannot apply migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the database's schema is at migration {database}, newer than this keyportal knows (up to {binary}): run the keyportal that migrated it (or a newer one); this one refuses to serve it")]
    NewerSchema { database: i64, binary: i64 },
    #[error("cannot read the database's migration history: {0}")]
    History(#[source] sqlx::Error),
}

/// Where the database's schema stands against this binary's migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaState {
    /// Every migration this binary has is applied, and no other.
    UpToDate { version: i64 },
    /// These of this binary's migrations are not applied yet (`keyportal migrate` applies them).
    Pending { versions: Vec<i64> },
    /// A later keyportal migrated this database: this binary must not serve it.
    Newer { database: i64, binary: i64 },
}

/// Reads the migration history `sqlx` keeps in `_sqlx_migrations` (none: a fresh database).
pub async fn schema_state(pool: &PgPool) -> Result<SchemaState, DbError> {
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(pool)
            .await
            .or_else(|e| match &e {
                // 42P01: undefined table, a database no keyportal has migrated yet.
                sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => {
                    Ok(Vec::new())
                }
                _ => Err(DbError::History(e)),
            })?;
    let known: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    let binary = known.iter().copied().max().unwrap_or(0);
    if let Some(&database) = applied.iter().max().filter(|&&v| v > binary) {
        return Ok(SchemaState::Newer { database, binary });
    }
    let versions: Vec<i64> = known.into_iter().filter(|v| !applied.contains(v)).collect();
    Ok(if versions.is_empty() {
        SchemaState::UpToDate { version: binary }
    } else {
        SchemaState::Pending { versions }
    })
}

/// An open database: the pool, and the private cluster behind it if keyportal runs one.
pub struct Database {
    pub pool: PgPool,
    pub cluster: Option<std::sync::Arc<PrivateCluster>>,
}

impl Database {
    /// Opens the configured database, starting the private cluster if none is configured,
    /// and applies pending migrations. A database a later keyportal migrated is refused.
    pub async fn open(cfg: &DatabaseConfig) -> Result<Database, DbError> {
        let db = Database::connect(cfg).await?;
        let migrated = match schema_state(&db.pool).await {
            Ok(SchemaState::Newer { database, binary }) => {
                Err(DbError::NewerSchema { database, binary })
            }
            Ok(_) => MIGRATOR.run(&db.pool).await.map_err(DbError::from),
            Err(e) => Err(e),
        };
        match migrated {
            Ok(()) => Ok(db),
            Err(e) => {
                db.close().await;
                Err(e)
            }
        }
    }

    /// Opens the configured database (starting the private cluster if it is the one) without
    /// touching its schema.
    pub async fn connect(cfg: &DatabaseConfig) -> Result<Database, DbError> {
        let (options, cluster) = match &cfg.database_url {
            Some(url) => {
                let opts: PgConnectOptions = url.parse().map_err(DbError::BadUrl)?;
                (opts.application_name("keyportal"), None)
            }
            None => {
                let cluster = PrivateCluster::ensure(
                    &cfg.data_dir,
                    cfg.pg_bin.as_deref(),
                    &cfg.cluster_account,
                    &[],
                )
                .await?;
                ensure_database(&cluster, "keyportal").await?;
                (
                    cluster.connect_options("keyportal"),
                    Some(std::sync::Arc::new(cluster)),
                )
            }
        };
        let pool = pool_options(cfg.max_connections)
            .connect_with(
                options
                    .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1)),
            )
            .await
            .map_err(DbError::Connect)?;
        Ok(Database { pool, cluster })
    }

    /// Watches the private cluster (if keyportal runs one) and starts it again when its
    /// postmaster dies: every `serve` on the cluster does this, so whichever survives takes
    /// over, and the cluster's lock lets only one restart it. Abort the task before
    /// [`Database::close`], which may stop the cluster on purpose.
    pub fn supervise_cluster(&self) -> Option<tokio::task::JoinHandle<()>> {
        let cluster = self.cluster.clone()?;
        Some(tokio::spawn(async move {
            const CHECK_EVERY: std::time::Duration = std::time::Duration::from_millis(500);
            let mut attempt: u32 = 0;
            loop {
                tokio::time::sleep(CHECK_EVERY).await;
                if cluster.postmaster_alive() {
                    attempt = 0;
                    continue;
                }
                attempt += 1;
                tracing::warn!(
                    attempt,
                    "the private PostgreSQL cluster is not running; starting it again"
                );
                // A success ends the series: the next crash starts again without back-off.
                match cluster.recover(&[]).await {
                    Ok(true) => {
                        tracing::info!(attempt, "the private PostgreSQL cluster is back");
                        attempt = 0;
                    }
                    Ok(false) => {
                        tracing::info!("another keyportal started the private PostgreSQL cluster");
                        attempt = 0;
                    }
                    Err(e) => {
                        // Old backends may still hold its shared memory for a moment: back off.
                        let wait = std::time::Duration::from_millis(250 << attempt.min(4));
                        tracing::error!(attempt, error = %e, retry_in_ms = wait.as_millis() as u64, "could not restart the private PostgreSQL cluster");
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }))
    }

    /// Closes the pool, then stops the private cluster if no other keyportal still uses it.
    pub async fn close(self) {
        self.pool.close().await;
        if let Some(cluster) = self.cluster {
            if let Err(e) = cluster.stop_if_last().await {
                tracing::error!(error = %e, "could not stop the private PostgreSQL cluster");
            }
        }
    }
}

/// Pool settings: short acquire timeout so a database outage answers 503 quickly instead of
/// holding requests.
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    ping_when_idle(
        PgPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(3))
            .idle_timeout(Duration::from_secs(300)),
    )
}

/// A connection idle for longer than this is pinged before it is handed out.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// When a statement last found its connection lost, in nanoseconds after [`clock_origin`]
/// (0: never). Shared by every pool of the process: a loss on one makes the others check
/// their older connections once, which costs a ping each and nothing else.
static CONNECTION_LOST_AT: AtomicU64 = AtomicU64::new(0);

fn clock_origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn nanos_since_origin(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(clock_origin()).as_nanos()).unwrap_or(u64::MAX)
}

/// Records an error that means the connection is gone (the socket, the protocol, or the server
/// ending the session: SQLSTATE classes 08 and 57P), so the pools ping every connection that
/// went idle before it.
pub(crate) fn note_error(e: &sqlx::Error) {
    let lost = match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    };
    if lost {
        CONNECTION_LOST_AT.store(nanos_since_origin(Instant::now()).max(1), Ordering::Relaxed);
    }
}

/// Pings a pooled connection before use only when it may be stale: idle for over a second, or
/// idle since before a statement last found its connection lost. sqlx already pings every
/// connection as it goes back to the pool and closes it if that fails, so a restart or a
/// terminated session costs the statements in flight and at most one more per process (the
/// one that notes the loss), as pinging on every acquire did (test in tests/foundation.rs).
/// That ping on every acquire (sqlx's `test_before_acquire`) cost a round trip per statement:
/// the fingerprint lookup, two statements, served 14-17% fewer requests with it
/// (docs/performance.md).
pub(crate) fn ping_when_idle(options: PgPoolOptions) -> PgPoolOptions {
    options
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                let idle_since = Instant::now().checked_sub(meta.idle_for);
                let lost_at = CONNECTION_LOST_AT.load(Ordering::Relaxed);
                let maybe_lost =
                    lost_at != 0 && idle_since.is_none_or(|t| nanos_since_origin(t) <= lost_at);
                if meta.idle_for > PING_AFTER_IDLE || maybe_lost {
                    // A failed ping closes the connection and the pool hands out another.
                    return Ok(sqlx::Connection::ping(conn).await.is_ok());
                }
                Ok(true)
            })
        })
}

async fn ensure_database(cluster: &PrivateCluster, name: &str) -> Result<(), DbError> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect_with(&cluster.connect_options("postgres"))
        .await
        .map_err(DbError::Connect)?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await
            .map_err(DbError::Connect)?;
    if !exists {
        // Identifiers cannot be bound; `name` is a fixed string of ours.
        let created = sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await;
        match created {
            // 42P04: another process created it a moment ago.
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P04") => {}
            other => {
                other.map_err(DbError::Connect)?;
            }
        }
    }
    let _ = conn.close().await;
    Ok(())
}

/// Whether a database error means "the database is not there right now" (503), as opposed to
/// a fault in the query (a bug).
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            // 08: connection exception; 57P01-57P03: admin shutdown, crash shutdown, cannot connect now.
            c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}
