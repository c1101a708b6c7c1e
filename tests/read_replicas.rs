//! Login reads from a real streaming replica (`pg_basebackup -R` of a private cluster on this
//! machine): served from the replica when it holds every revocation and is within the lag
//! bound, from the primary otherwise; a deleted key is refused at once while the replica lags;
//! a stopped replica hands every read to the primary.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::served::Served;
use keyportal::config::DatabaseConfig;
use keyportal::db::{Database, PrivateCluster};
use keyportal::service::{Ctx, Services};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

/// The OS account the private cluster runs as (keyportal-db as root, else this user).
fn cluster_account() -> Option<(u32, u32)> {
    if !nix::unistd::Uid::effective().is_root() {
        return None;
    }
    let user = nix::unistd::User::from_name(keyportal::db::private_cluster::DEFAULT_ACCOUNT)
        .unwrap()
        .expect("the cluster account exists once the primary runs");
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

fn as_cluster_account(cmd: &mut Command) -> &mut Command {
    if let Some((uid, gid)) = cluster_account() {
        cmd.uid(uid).gid(gid);
    }
    cmd.env_remove("PGDATA").env("LC_ALL", "C")
}

/// A streaming standby of `primary` in `root` (`pgdata/`, `run/`), started; stopped with
/// `pg_ctl stop -m immediate` when dropped, so a failing test leaves no server behind.
struct Standby {
    root: PathBuf,
    bin: PathBuf,
}

impl Standby {
    fn create(primary: &PrivateCluster, root: &Path) -> Standby {
        std::fs::create_dir(root).unwrap();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700)).unwrap();
        if let Some((uid, gid)) = cluster_account() {
            std::os::unix::fs::chown(root, Some(uid), Some(gid)).unwrap();
        }
        let bin = primary.bin_dir().to_owned();
        let out = as_cluster_account(&mut Command::new(bin.join("pg_basebackup")))
            .arg("-D")
            .arg(root.join("pgdata"))
            .args(["-R", "-X", "stream", "-c", "fast", "-U", "postgres", "-h"])
            .arg(primary.socket_dir())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_basebackup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let standby = Standby {
            root: root.to_owned(),
            bin,
        };
        standby.start();
        standby
    }

    fn socket_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    fn start(&self) {
        let run = self.socket_dir();
        if !run.exists() {
            std::fs::create_dir(&run).unwrap();
            std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
            if let Some((uid, gid)) = cluster_account() {
                std::os::unix::fs::chown(&run, Some(uid), Some(gid)).unwrap();
            }
        }
        let out = as_cluster_account(&mut Command::new(self.bin.join("pg_ctl")))
            .arg("start")
            .arg("-D")
            .arg(self.root.join("pgdata"))
            .arg("-l")
            .arg(self.root.join("postgres.log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-c listen_addresses= -c unix_socket_directories='{}' -c unix_socket_permissions=0700",
                run.display()
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "standby start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.root.join("postgres.log")).unwrap_or_default()
        );
    }

    fn stop(&self, mode: &str) {
        let _ = as_cluster_account(&mut Command::new(self.bin.join("pg_ctl")))
            .arg("stop")
            .arg("-D")
            .arg(self.root.join("pgdata"))
            .args(["-m", mode, "-w", "-t", "30"])
            .output();
    }

    fn url(&self) -> String {
        format!(
            "postgres://postgres@localhost/keyportal?host={}",
            self.socket_dir().display()
        )
    }

    async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(2)
            .connect_with(
                PgConnectOptions::new()
                    .host(&self.socket_dir().to_string_lossy())
                    .username("postgres")
                    .database("keyportal"),
            )
            .await
            .unwrap()
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        self.stop("immediate");
    }
}

/// The primary's private cluster, stopped when dropped (unless the test closed it).
struct Primary {
    db: Option<Database>,
    bin: PathBuf,
    pgdata: PathBuf,
}

impl Drop for Primary {
    fn drop(&mut self) {
        if self.db.take().is_some() {
            let _ = as_cluster_account(&mut Command::new(self.bin.join("pg_ctl")))
                .arg("stop")
                .arg("-D")
                .arg(&self.pgdata)
                .args(["-m", "immediate", "-w"])
                .output();
        }
    }
}

async fn lsn(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// Waits until the standby has replayed everything the primary has written.
async fn caught_up(primary: &PgPool, standby: &PgPool) {
    let target = lsn(
        primary,
        "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8",
    )
    .await;
    let since = Instant::now();
    while lsn(
        standby,
        "SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::int8",
    )
    .await
        < target
    {
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "the standby did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One counter or gauge from `/metrics` of the portal at `addr`.
async fn metric(addr: &str, series: &str) -> f64 {
    common::metric(&format!("http://{addr}"), series).await
}

fn replica_series(standby: &Standby, name: &str, extra: &str) -> String {
    format!(
        "{name}{{{extra}replica=\"{}:5432/keyportal\"}}",
        standby.socket_dir().display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_reads_use_a_caught_up_replica_and_never_serve_a_revoked_key() {
    let dir = tempfile::Builder::new()
        .prefix("kp-replica-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = DatabaseConfig {
        database_url: None,
        data_dir: dir.path().join("primary"),
        cluster_account: keyportal::db::private_cluster::DEFAULT_ACCOUNT.into(),
        pg_bin: None,
        max_connections: 4,
    };
    let db = Database::open(&cfg).await.expect("primary");
    let cluster = db.cluster.clone().unwrap();
    let mut primary = Primary {
        bin: cluster.bin_dir().to_owned(),
        pgdata: cluster.root().join("pgdata"),
        db: Some(db),
    };
    let pool = primary.db.as_ref().unwrap().pool.clone();
    let s = Services::new(pool.clone());
    common::alice_granted_on_web1(&s).await;
    let cli = Ctx::command_line();
    let token = s
        .create_server_token(&cli, "web1", None, None)
        .await
        .unwrap()
        .secret;

    let standby = Standby::create(&cluster, &dir.path().join("standby"));
    let replica = standby.pool().await;
    caught_up(&pool, &replica).await;

    let (served, addr) = Served::start(
        &cfg.data_dir,
        &[
            ("KEYPORTAL_DATABASE_READ_URL", standby.url().as_str()),
            ("KEYPORTAL_REPLICA_MAX_LAG_BYTES", "65536"),
        ],
    );
    let lookup = |fingerprint: String| {
        let (addr, token) = (addr.clone(), token.clone());
        async move {
            let res = common::client()
                .get(format!(
                    "http://{addr}/api/v1/servers/web1/authorized_keys?login=deploy&fingerprint={}",
                    urlencoding(&fingerprint)
                ))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            res.text().await.unwrap()
        }
    };
    let from_replica = replica_series(
        &standby,
        "keyportal_login_reads_total",
        "source=\"replica\",",
    );
    let from_primary = |reason: &str| {
        format!("keyportal_login_reads_total{{source=\"primary\",reason=\"{reason}\"}}")
    };

    // A key added on the primary is answered from the replica once it has replayed it.
    let keys = common::generated_ed25519_keys(2);
    let first = s
        .add_key(&cli, "alice", keys[0].as_bytes(), None, None)
        .await
        .unwrap();
    caught_up(&pool, &replica).await;
    let before = metric(&addr, &from_replica).await;
    let text = lookup(first.fingerprint_sha256.clone()).await;
    assert!(text.contains(&first.public_key), "{text}");
    assert_eq!(metric(&addr, &from_replica).await, before + 1.0);

    // Replay paused and the primary a WAL segment ahead: past the lag bound, a new key is read
    // from the primary, and /metrics shows the lag.
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&replica)
        .await
        .unwrap();
    let second = s
        .add_key(&cli, "alice", keys[1].as_bytes(), None, None)
        .await
        .unwrap();
    // Two switches with a write between: the primary is at least a whole segment ahead.
    for sql in [
        "SELECT pg_switch_wal()",
        "SELECT pg_logical_emit_message(false, 'keyportal-test', 'x')",
        "SELECT pg_switch_wal()",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    let lagging = metric(&addr, &from_primary("lagging")).await;
    let text = lookup(second.fingerprint_sha256.clone()).await;
    assert!(text.contains(&second.public_key), "{text}");
    assert_eq!(metric(&addr, &from_primary("lagging")).await, lagging + 1.0);
    let lag_gauge = replica_series(&standby, "keyportal_replica_lag_bytes", "");
    assert!(
        metric(&addr, &lag_gauge).await > 65536.0,
        "the lag gauge shows the replica behind"
    );

    // Replay resumes and catches up: the new key is answered from the replica.
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&replica)
        .await
        .unwrap();
    caught_up(&pool, &replica).await;
    let before = metric(&addr, &from_replica).await;
    assert!(lookup(second.fingerprint_sha256.clone())
        .await
        .contains(&second.public_key));
    assert_eq!(metric(&addr, &from_replica).await, before + 1.0);

    // Paused again, well within the lag bound: the first key is deleted on the primary. The
    // replica still holds it, and the very next lookup refuses it.
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&replica)
        .await
        .unwrap();
    s.delete_key(&cli, first.id).await.unwrap();
    let still_there: i64 = sqlx::query_scalar("SELECT count(*) FROM ssh_keys WHERE id = $1")
        .bind(first.id)
        .fetch_one(&replica)
        .await
        .unwrap();
    assert_eq!(still_there, 1, "the replica lags behind the deletion");
    let pending = metric(&addr, &from_primary("revocation_pending")).await;
    assert_eq!(lookup(first.fingerprint_sha256.clone()).await, "");
    assert_eq!(
        metric(&addr, &from_primary("revocation_pending")).await,
        pending + 1.0
    );

    // Replay resumes: both answers come from the replica again, the deletion included.
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&replica)
        .await
        .unwrap();
    caught_up(&pool, &replica).await;
    let before = metric(&addr, &from_replica).await;
    assert_eq!(lookup(first.fingerprint_sha256.clone()).await, "");
    assert!(lookup(second.fingerprint_sha256.clone())
        .await
        .contains(&second.public_key));
    assert_eq!(metric(&addr, &from_replica).await, before + 2.0);

    // The replica stops: answers come from the primary, and /metrics says it is down.
    replica.close().await;
    standby.stop("fast");
    assert!(lookup(second.fingerprint_sha256.clone())
        .await
        .contains(&second.public_key));
    let up = replica_series(&standby, "keyportal_replica_up", "");
    let since = Instant::now();
    while metric(&addr, &up).await != 0.0 {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "replica_up stays 1"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metric(&addr, &from_primary("replica_down")).await >= 1.0);

    let (status, _) = served.terminate(Duration::from_secs(20));
    assert!(status.success());
    drop(standby);
    primary.db.take().unwrap().close().await;
}

fn urlencoding(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn horizon(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT seq FROM revocation_horizon")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// What moves the revocation counter: everything that can take access away, once per
/// transaction; never an addition or sshd's own lookups (they would hold every replica back).
#[tokio::test]
async fn every_change_that_takes_access_away_moves_the_revocation_counter_and_nothing_else_does() {
    let db = common::TestDb::new().await;
    let s = Services::new(db.pool.clone());
    let cli = Ctx::command_line();
    let start = horizon(&db.pool).await;
    common::alice_granted_on_web1(&s).await;
    let extra = s
        .add_key(
            &cli,
            "alice",
            common::generated_ed25519_keys(1)[0].as_bytes(),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(horizon(&db.pool).await, start, "additions move nothing");
    let server = Ctx {
        caller: keyportal::service::Caller::Server {
            id: sqlx::query_scalar("SELECT id FROM servers WHERE name = 'web1'")
                .fetch_one(&db.pool)
                .await
                .unwrap(),
            name: "web1".into(),
        },
        request_id: None,
        session: None,
    };
    let text = s
        .authorized_keys(&server, "web1", "deploy", Some(&extra.fingerprint_sha256))
        .await
        .unwrap();
    assert!(text.contains(&extra.public_key));
    let used: bool =
        sqlx::query_scalar("SELECT last_used_at IS NOT NULL FROM ssh_keys WHERE id = $1")
            .bind(extra.id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(used, "the lookup was recorded");
    let patch = keyportal::service::users::UserPatch {
        display_name: Some("Alice A.".into()),
        ..Default::default()
    };
    s.update_user(&cli, "alice", patch).await.unwrap();
    assert_eq!(
        horizon(&db.pool).await,
        start,
        "last_used_at and a display name move nothing"
    );

    let mut expected = start;
    fn moved(expected: &mut i64, what: &str, now: i64) {
        *expected += 1;
        assert_eq!(now, *expected, "{what} moves the counter once");
    }
    s.delete_key(&cli, extra.id).await.unwrap();
    moved(&mut expected, "a deleted key", horizon(&db.pool).await);
    let grant = s
        .list_grants(&cli, "web1", None, None, None)
        .await
        .unwrap()
        .items
        .remove(0);
    s.delete_grant(&cli, grant.id).await.unwrap();
    moved(&mut expected, "a deleted grant", horizon(&db.pool).await);
    let patch = keyportal::service::users::UserPatch {
        disabled: Some(true),
        ..Default::default()
    };
    s.update_user(&cli, "alice", patch).await.unwrap();
    moved(
        &mut expected,
        "a disabled user (and her revoked tokens)",
        horizon(&db.pool).await,
    );
    let mut policy = s.policy(&cli).await.unwrap();
    policy.max_keys_per_user += 1;
    s.set_policy(&cli, policy).await.unwrap();
    moved(&mut expected, "a policy change", horizon(&db.pool).await);
    let entry = s
        .add_to_blocklist(
            &cli,
            keyportal::service::blocklist::BlockTarget::Key(common::corpus_key(
                "valid/ed25519.pub",
            )),
            "laptop stolen",
        )
        .await
        .unwrap();
    moved(&mut expected, "a blocklist entry", horizon(&db.pool).await);
    s.delete_from_blocklist(&cli, entry.id).await.unwrap();
    assert_eq!(
        horizon(&db.pool).await,
        expected,
        "a deleted blocklist entry gives access back: it moves nothing"
    );
    s.delete_server(&cli, "web1").await.unwrap();
    moved(&mut expected, "a deleted server", horizon(&db.pool).await);
    s.delete_user(&cli, "alice").await.unwrap();
    moved(
        &mut expected,
        "a deleted user (and her keys)",
        horizon(&db.pool).await,
    );
}
