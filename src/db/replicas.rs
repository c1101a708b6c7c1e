//! Read replicas for the login path (`authorized_keys` and the `fingerprint=` lookup).
//!
//! A replica serves a login read only when both hold at that moment:
//! - its revocation counter (migration 0005) equals the primary's, so every key, grant, user or
//!   policy change that takes access away and committed before this read is already in the
//!   replica's snapshot: a revoked key is never served, however far behind the replica is;
//! - it has replayed the primary's WAL to within `max_lag_bytes`, which bounds how long a
//!   *new* key or grant can be missing from a replica's answers. WAL positions, not replay
//!   timestamps, which grow on an idle primary.
//!
//! Otherwise, or when the replica does not answer, the read goes to the primary. The price is
//! one single-row read on the primary per login; the heavy part (key bytes and their
//! validation) moves to the replicas.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::ConnectOptions;

use super::DbError;

/// The revocation counter and WAL position, in one round trip. On a standby the position is
/// what it has replayed; on a primary (or a read URL that is one) what it has written.
const POSITION: &str =
    "SELECT (coalesce(pg_last_wal_replay_lsn(), pg_current_wal_lsn()) - '0/0'::pg_lsn)::int8,
        (SELECT seq FROM revocation_horizon)";

/// How long a replica may take to answer before the read goes to the primary.
const REPLICA_TIMEOUT: Duration = Duration::from_secs(1);

/// One replica: its pool and what the login path and `/metrics` know of it.
pub struct Replica {
    /// Host, port and database, never the password: it names the replica in logs and metrics.
    pub label: String,
    pool: PgPool,
    up: AtomicBool,
    lag_bytes: AtomicU64,
    reads: AtomicU64,
}

/// Why a login read went to the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrimaryReason {
    /// No replica is configured.
    NoReplica,
    /// Every replica was down or did not answer in time.
    ReplicaDown,
    /// A revocation committed on the primary has not reached any live replica yet.
    RevocationPending,
    /// Every live replica is further behind than the bound.
    Lagging,
}

impl PrimaryReason {
    fn label(self) -> &'static str {
        match self {
            PrimaryReason::NoReplica => "no_replica",
            PrimaryReason::ReplicaDown => "replica_down",
            PrimaryReason::RevocationPending => "revocation_pending",
            PrimaryReason::Lagging => "lagging",
        }
    }
    const ALL: [PrimaryReason; 4] = [
        PrimaryReason::NoReplica,
        PrimaryReason::ReplicaDown,
        PrimaryReason::RevocationPending,
        PrimaryReason::Lagging,
    ];
}

/// Where one login read goes.
pub enum ReadSource<'a> {
    Replica(&'a Replica),
    Primary(PrimaryReason),
}

impl Replica {
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Skips this replica until the monitor hears from it again.
    pub fn mark_down(&self) {
        self.up.store(false, Ordering::Relaxed);
    }
}

/// The configured replicas (possibly none) and the lag bound.
#[derive(Default)]
pub struct ReadReplicas {
    replicas: Vec<Replica>,
    max_lag_bytes: u64,
    next: AtomicU64,
    primary_reads: [AtomicU64; 4],
}

impl ReadReplicas {
    /// Pools for each read URL. Connections are made lazily, so a replica that is down at start
    /// only sends reads to the primary until it comes up.
    pub fn connect(urls: &[String], max_lag_bytes: u64) -> Result<ReadReplicas, DbError> {
        let mut replicas = Vec::with_capacity(urls.len());
        for url in urls {
            let options: PgConnectOptions = url.parse().map_err(DbError::BadReadUrl)?;
            let label = label(&options);
            let pool = super::ping_when_idle(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(8)
                    .min_connections(0)
                    .acquire_timeout(REPLICA_TIMEOUT)
                    .idle_timeout(Duration::from_secs(300)),
            )
            .connect_lazy_with(
                options
                    .application_name("keyportal-read")
                    .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1)),
            );
            replicas.push(Replica {
                label,
                pool,
                up: AtomicBool::new(true),
                lag_bytes: AtomicU64::new(0),
                reads: AtomicU64::new(0),
            });
        }
        Ok(ReadReplicas {
            replicas,
            max_lag_bytes,
            ..ReadReplicas::default()
        })
    }

    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }

    /// Picks where a login read goes, asking the primary for its revocation counter and WAL
    /// position and then live replicas in turn (starting with the next in rotation). The
    /// caller's reads that follow on the chosen replica see at least that replica's snapshot.
    pub async fn choose(&self, primary: &PgPool) -> Result<ReadSource<'_>, sqlx::Error> {
        if self.replicas.is_empty() {
            return Ok(self.primary(PrimaryReason::NoReplica));
        }
        let (primary_lsn, primary_seq): (i64, i64) =
            sqlx::query_as(POSITION).fetch_one(primary).await?;
        let start = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        let mut reason = PrimaryReason::ReplicaDown;
        for i in 0..self.replicas.len() {
            let replica = &self.replicas[(start + i) % self.replicas.len()];
            if !replica.up.load(Ordering::Relaxed) {
                continue;
            }
            let Some((lsn, seq)) = replica.position().await else {
                continue;
            };
            let lag = primary_lsn.saturating_sub(lsn).max(0) as u64;
            replica.lag_bytes.store(lag, Ordering::Relaxed);
            if seq < primary_seq {
                reason = PrimaryReason::RevocationPending;
            } else if lag > self.max_lag_bytes {
                if reason != PrimaryReason::RevocationPending {
                    reason = PrimaryReason::Lagging;
                }
            } else {
                replica.reads.fetch_add(1, Ordering::Relaxed);
                return Ok(ReadSource::Replica(replica));
            }
        }
        Ok(self.primary(reason))
    }

    fn primary(&self, reason: PrimaryReason) -> ReadSource<'_> {
        self.primary_reads[reason as usize].fetch_add(1, Ordering::Relaxed);
        ReadSource::Primary(reason)
    }

    /// Probes every replica once a second for `/metrics` and so that a dead one is skipped
    /// (and a recovered one used again) without each login waiting for its timeout.
    pub fn monitor(self: &Arc<Self>, primary: PgPool) -> Option<tokio::task::JoinHandle<()>> {
        if self.replicas.is_empty() {
            return None;
        }
        let replicas = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let primary_lsn: Option<(i64, i64)> = tokio::time::timeout(
                    REPLICA_TIMEOUT,
                    sqlx::query_as(POSITION).fetch_one(&primary),
                )
                .await
                .ok()
                .and_then(Result::ok);
                for replica in &replicas.replicas {
                    let was_up = replica.up.load(Ordering::Relaxed);
                    let position = replica.position().await;
                    let up = position.is_some();
                    replica.up.store(up, Ordering::Relaxed);
                    if let (Some((lsn, _)), Some((p, _))) = (position, primary_lsn) {
                        replica
                            .lag_bytes
                            .store(p.saturating_sub(lsn).max(0) as u64, Ordering::Relaxed);
                    }
                    if was_up && !up {
                        tracing::warn!(replica = %replica.label, "read replica is not answering; login reads go to the primary");
                    } else if !was_up && up {
                        tracing::info!(replica = %replica.label, "read replica answers again");
                    }
                }
            }
        }))
    }

    /// Gauges and counters for `/metrics`.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# HELP keyportal_replica_up Whether the read replica answered its last probe.\n\
             # TYPE keyportal_replica_up gauge\n",
        );
        for r in &self.replicas {
            out.push_str(&format!(
                "keyportal_replica_up{{replica=\"{}\"}} {}\n",
                r.label,
                u8::from(r.up.load(Ordering::Relaxed))
            ));
        }
        out.push_str(
            "# HELP keyportal_replica_lag_bytes WAL the replica has yet to replay, in bytes, as last measured.\n\
             # TYPE keyportal_replica_lag_bytes gauge\n",
        );
        for r in &self.replicas {
            out.push_str(&format!(
                "keyportal_replica_lag_bytes{{replica=\"{}\"}} {}\n",
                r.label,
                r.lag_bytes.load(Ordering::Relaxed)
            ));
        }
        out.push_str(
            "# HELP keyportal_login_reads_total Login-path reads (authorized_keys, fingerprint lookups) by where they were served.\n\
             # TYPE keyportal_login_reads_total counter\n",
        );
        for r in &self.replicas {
            out.push_str(&format!(
                "keyportal_login_reads_total{{source=\"replica\",replica=\"{}\"}} {}\n",
                r.label,
                r.reads.load(Ordering::Relaxed)
            ));
        }
        for reason in PrimaryReason::ALL {
            out.push_str(&format!(
                "keyportal_login_reads_total{{source=\"primary\",reason=\"{}\"}} {}\n",
                reason.label(),
                self.primary_reads[reason as usize].load(Ordering::Relaxed)
            ));
        }
        out
    }

    /// Closes every replica pool.
    pub async fn close(&self) {
        for r in &self.replicas {
            r.pool.close().await;
        }
    }
}

impl Replica {
    async fn position(&self) -> Option<(i64, i64)> {
        let asked = tokio::time::timeout(
            REPLICA_TIMEOUT,
            sqlx::query_as::<_, (i64, i64)>(POSITION).fetch_one(&self.pool),
        )
        .await;
        match asked {
            Ok(Ok(position)) => Some(position),
            Ok(Err(e)) => {
                tracing::debug!(replica = %self.label, error = %e, "read replica did not answer");
                self.up.store(false, Ordering::Relaxed);
                None
            }
            Err(_) => {
                tracing::debug!(replica = %self.label, "read replica timed out");
                self.up.store(false, Ordering::Relaxed);
                None
            }
        }
    }
}

/// `host:port/database` (or the socket directory), safe for logs and a metrics label.
fn label(options: &PgConnectOptions) -> String {
    let host = match options.get_socket() {
        Some(dir) => dir.to_string_lossy().into_owned(),
        None => options.get_host().to_owned(),
    };
    let text = format!(
        "{}:{}/{}",
        host,
        options.get_port(),
        options.get_database().unwrap_or("")
    );
    text.chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
        .collect()
}
