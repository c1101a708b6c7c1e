//! The foundation: schema and migrations, health endpoints, problem documents, request ids, and
//! `keyportal serve` with no configuration (its own PostgreSQL), shut down by SIGTERM.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::served::Served;
use common::{TestApp, TestDb};
use keyportal::db::{PrivateCluster, MIGRATOR};
use serde_json::Value;

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_are_idempotent() {
    let db = TestDb::empty().await;
    MIGRATOR.run(&db.pool).await.expect("first run");
    MIGRATOR
        .run(&db.pool)
        .await
        .expect("second run changes nothing");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations' ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        tables,
        [
            "access_requests",
            "api_tokens",
            "audit_events",
            "blocklist",
            "certificates",
            "grants",
            "group_grants",
            "key_shape_tallies",
            "krl_state",
            "notifications_sent",
            "oidc_identities",
            "oidc_sign_in_attempts",
            "policy",
            "revocation_horizon",
            "row_tallies",
            "server_group_members",
            "server_groups",
            "servers",
            "sessions",
            "sign_in_failures",
            "ssh_keys",
            "user_group_members",
            "user_group_owners",
            "user_groups",
            "user_key_counts",
            "users"
        ]
    );
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(applied as usize, MIGRATOR.iter().count());
}

async fn insert_user(db: &TestDb, name: &str) -> i64 {
    sqlx::query_scalar("INSERT INTO users (username) VALUES ($1) RETURNING id")
        .bind(name)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJWOK2GQPsZiGp3/HEG5pLnqs8n7YJqqY2f0A9cU0ROf";
const FP: &str = "SHA256:25/L5aQAQ+ZU44q2L+aJKS10+aHYendqOjkVb4BgfWY";
const MD5: &str = "MD5:4b:20:83:90:2a:87:0a:3b:07:a4:65:af:e4:71:9d:3f";

async fn insert_key(db: &TestDb, user: i64) -> Result<uuid::Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO ssh_keys (user_id, algorithm, bits, public_key, fingerprint_sha256, fingerprint_md5)
         VALUES ($1, 'ssh-ed25519', 256, $2, $3, $4) RETURNING id",
    )
    .bind(user)
    .bind(KEY)
    .bind(FP)
    .bind(MD5)
    .fetch_one(&db.pool)
    .await
}

fn constraint_of(e: sqlx::Error) -> (String, String) {
    let db = e.as_database_error().expect("a database error");
    (
        db.code().unwrap_or_default().into_owned(),
        db.constraint().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn the_database_refuses_a_fingerprint_registered_twice_even_for_another_user() {
    let db = TestDb::new().await;
    let alice = insert_user(&db, "alice").await;
    let bob = insert_user(&db, "bob").await;
    insert_key(&db, alice).await.expect("first registration");
    let (code, constraint) = constraint_of(insert_key(&db, bob).await.unwrap_err());
    assert_eq!(
        (code.as_str(), constraint.as_str()),
        ("23505", "ssh_keys_fingerprint_sha256_key")
    );
}

#[tokio::test]
async fn the_database_refuses_dangling_references_and_malformed_names() {
    let db = TestDb::new().await;
    // A grant for a server that does not exist.
    let alice = insert_user(&db, "alice").await;
    let err =
        sqlx::query("INSERT INTO grants (server_id, user_id, login) VALUES (4242, $1, 'deploy')")
            .bind(alice)
            .execute(&db.pool)
            .await
            .unwrap_err();
    assert_eq!(
        constraint_of(err),
        ("23503".into(), "grants_server_id_fkey".into())
    );
    // A grant naming a key that belongs to someone else.
    let bob = insert_user(&db, "bob").await;
    let key = insert_key(&db, alice).await.unwrap();
    let server: i64 = sqlx::query_scalar("INSERT INTO servers (name) VALUES ('web1') RETURNING id")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let err = sqlx::query(
        "INSERT INTO grants (server_id, user_id, key_id, login) VALUES ($1, $2, $3, 'deploy')",
    )
    .bind(server)
    .bind(bob)
    .bind(key)
    .execute(&db.pool)
    .await
    .unwrap_err();
    assert_eq!(
        constraint_of(err),
        ("23503".into(), "grants_key_owner_fkey".into())
    );
    // Names the contract forbids.
    let err = sqlx::query("INSERT INTO users (username) VALUES ('Robert); DROP')")
        .execute(&db.pool)
        .await
        .unwrap_err();
    assert_eq!(
        constraint_of(err),
        ("23514".into(), "users_username_format".into())
    );
    // Deleting a user takes their keys with them.
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(alice)
        .execute(&db.pool)
        .await
        .unwrap();
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM ssh_keys")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(keys, 0);
}

/// The format checks as first written, with bounded repetitions (migrations 0001-0011), which
/// migration 0015 rewrote for speed: (table, constraint, column, the old pattern).
const FORMAT_CHECKS_AS_FIRST_WRITTEN: &[(&str, &str, &str, &str)] = &[
    (
        "users",
        "users_username_format",
        "username",
        "^[a-z_][a-z0-9_.-]{0,31}$",
    ),
    (
        "ssh_keys",
        "ssh_keys_algorithm_check",
        "algorithm",
        "^[a-z0-9@.-]{1,64}$",
    ),
    (
        "ssh_keys",
        "ssh_keys_public_key_check",
        "public_key",
        "^[a-z0-9@.-]+ [A-Za-z0-9+/]+={0,2}$",
    ),
    (
        "ssh_keys",
        "ssh_keys_fingerprint_sha256_check",
        "fingerprint_sha256",
        "^SHA256:[A-Za-z0-9+/]{43}$",
    ),
    (
        "ssh_keys",
        "ssh_keys_fingerprint_md5_check",
        "fingerprint_md5",
        "^MD5:([0-9a-f]{2}:){15}[0-9a-f]{2}$",
    ),
    (
        "grants",
        "grants_login_check",
        "login",
        "^[a-z_][a-z0-9_.-]{0,31}$",
    ),
    (
        "group_grants",
        "group_grants_login_check",
        "login",
        "^[a-z_][a-z0-9_.-]{0,31}$",
    ),
    (
        "access_requests",
        "access_requests_login_check",
        "login",
        "^[a-z_][a-z0-9_.-]{0,31}$",
    ),
    (
        "blocklist",
        "blocklist_fingerprint_sha256_check",
        "fingerprint_sha256",
        "^SHA256:[A-Za-z0-9+/]{43}$",
    ),
    (
        "blocklist",
        "blocklist_public_key_check",
        "public_key",
        "^[a-z0-9@.-]+ [A-Za-z0-9+/]+={0,2}$",
    ),
    (
        "blocklist",
        "blocklist_related_fingerprint_check",
        "related_fingerprint",
        "^SHA256:[A-Za-z0-9+/]{43}$",
    ),
    (
        "user_groups",
        "user_groups_name_format",
        "name",
        "^[a-z0-9][a-z0-9_.-]{0,63}$",
    ),
    (
        "server_groups",
        "server_groups_name_format",
        "name",
        "^[a-z0-9][a-z0-9_.-]{0,63}$",
    ),
    (
        "certificates",
        "certificates_ca_fingerprint_check",
        "ca_fingerprint",
        "^SHA256:[A-Za-z0-9+/]{43}$",
    ),
    (
        "certificates",
        "certificates_fingerprint_sha256_check",
        "fingerprint_sha256",
        "^SHA256:[A-Za-z0-9+/]{43}$",
    ),
];

/// Strings at and around each format's edges: every length from 0 to 70 over each pattern's own
/// characters and a few it refuses, the valid shapes with one character or one length off, and
/// a fixed pseudo-random sample (the same on every run).
fn format_check_candidates() -> Vec<String> {
    let sha = "SHA256:".to_owned() + &"aZ09+/".repeat(8)[..43];
    let md5 = "MD5:".to_owned() + &["0f"; 16].join(":");
    let mut out = vec![
        String::new(),
        sha.clone(),
        sha[..49].to_owned(),
        format!("{sha}A"),
        sha.replace("SHA256", "sha256"),
        sha.replacen('a', "-", 1),
        sha.replacen('a', "=", 1),
        sha.replacen('a', "é", 1),
        format!("{}\n", &sha[..49]),
        md5.clone(),
        md5.replacen(':', "", 1),
        md5.replacen("0f:", "0f0", 1),
        format!("{md5}:"),
        format!("{md5}:0f"),
        md5[..48].to_owned(),
        md5.replace('f', "F"),
        md5.replacen("0f:0f", "0f::f", 1),
        "ssh-ed25519 AAAA".into(),
        "ssh-ed25519 AAAA=".into(),
        "ssh-ed25519 AAAA==".into(),
        "ssh-ed25519 AAAA===".into(),
        "ssh-ed25519 =".into(),
        "ssh-ed25519  AAAA".into(),
        "ssh-ed25519 AAAA ".into(),
        "Ssh-ed25519 AAAA".into(),
        "sk-ssh-ed25519@openssh.com AAAA".into(),
        "ssh-ed25519 AA=A".into(),
    ];
    for alphabet in [
        "a", "z0._-", "_a", "0a", ".a", "-a", "Aa", "a@", "aé", "a ", "a\n",
    ] {
        let chars: Vec<char> = alphabet.chars().collect();
        for len in 0..=70 {
            out.push((0..len).map(|i| chars[i % chars.len()]).collect());
            out.push((0..len).map(|i| chars[(i + 1) % chars.len()]).collect());
        }
    }
    let pool: Vec<char> = "aAzZ09_.-@+/=:é \nSHAMD5f".chars().collect();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..2000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 72) as usize;
        let prefix = ["", "SHA256:", "MD5:", "ssh-ed25519 "][(state >> 8) as usize % 4];
        let body: String = (0..len)
            .map(|i| pool[((state >> (i % 50)) as usize + i * 7) % pool.len()])
            .collect();
        out.push(format!("{prefix}{body}"));
    }
    out
}

#[tokio::test]
async fn format_checks_admit_exactly_what_their_first_patterns_admitted() {
    let db = TestDb::new().await;
    // NULL too: it passes a CHECK (the nullable columns rely on that).
    let candidates: Vec<Option<String>> = format_check_candidates()
        .into_iter()
        .map(Some)
        .chain([None])
        .collect();
    for (table, name, column, old) in FORMAT_CHECKS_AS_FIRST_WRITTEN {
        let def: String = sqlx::query_scalar(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = $1::regclass AND conname = $2",
        )
        .bind(table)
        .bind(name)
        .fetch_one(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let expr = def.strip_prefix("CHECK ").expect("a CHECK constraint");
        // The constraint's own expression over each candidate as its column; NULL passes a
        // CHECK, as false does not.
        let disagreements: Vec<(Option<String>, bool, bool)> = sqlx::query_as(&format!(
            "SELECT {column}, COALESCE({column} ~ $2, true), COALESCE({expr}, true)
               FROM unnest($1::text[]) AS v ({column})
              WHERE COALESCE({column} ~ $2, true) IS DISTINCT FROM COALESCE({expr}, true)"
        ))
        .bind(&candidates)
        .bind(old)
        .fetch_all(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            disagreements.is_empty(),
            "{name} ({def}) disagrees with {old:?} on (input, old, new): {disagreements:?}"
        );
        let admitted: i64 =
            sqlx::query_scalar("SELECT count(*) FROM unnest($1::text[]) AS v (c) WHERE c ~ $2")
                .bind(&candidates)
                .bind(old)
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert!(
            admitted > 0,
            "no candidate is a valid {column}: the comparison proves nothing"
        );
    }
}

#[tokio::test]
async fn no_check_constraint_uses_a_bounded_repetition() {
    // PostgreSQL's regex engine expands {n} and {m,n} into copies of their states: the
    // fingerprint checks written that way were a third of a bulk import's database time.
    let db = TestDb::new().await;
    let bounded: Vec<(String, String)> = sqlx::query_as(
        "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
          WHERE contype = 'c' AND connamespace = 'public'::regnamespace
            AND pg_get_constraintdef(oid) ~ '~\\*? ''[^'']*\\{[0-9]'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        bounded,
        [],
        "write these as an unbounded pattern and a length"
    );
}

#[tokio::test]
async fn health_endpoints_answer_and_unknown_paths_get_problem_documents() {
    let app = TestApp::spawn().await;
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ready");

    let res = app
        .client
        .get(app.url("/no/such/thing"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (body["status"].as_u64(), body["code"].as_str()),
        (Some(404), Some("not_found"))
    );
    assert!(body["type"].is_string() && body["title"].is_string() && body["detail"].is_string());

    let res = app.client.delete(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = TestApp::spawn().await;
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "given-id-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "given-id-123");
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    let generated = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
}

/// A cluster of the test's own (in a temporary directory) so it can be stopped and started.
async fn own_cluster() -> (tempfile::TempDir, PrivateCluster) {
    let dir = world_searchable_tempdir();
    let cluster = PrivateCluster::ensure(
        &dir.path().join("pg"),
        None,
        keyportal::db::private_cluster::DEFAULT_ACCOUNT,
        keyportal::db::private_cluster::TEST_SERVER_SETTINGS,
    )
    .await
    .expect("start a cluster");
    (dir, cluster)
}

#[tokio::test]
async fn readyz_answers_503_while_the_database_is_down_and_recovers_by_itself() {
    let (_dir, cluster) = own_cluster().await;
    let pool = keyportal::db::pool_options(4)
        .connect_with(cluster.connect_options("postgres"))
        .await
        .unwrap();
    let addr = common::serve_app(pool).await;
    let client = common::client();
    let readyz = format!("http://{addr}/readyz");
    assert_eq!(client.get(&readyz).send().await.unwrap().status(), 200);

    cluster.stop().await.expect("stop the database");
    let started = Instant::now();
    let res = client.get(&readyz).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a down database must not hang requests"
    );
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "database_unavailable");
    // Other routes still answer.
    assert_eq!(
        client
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    cluster
        .restart(keyportal::db::private_cluster::TEST_SERVER_SETTINGS)
        .await
        .expect("restart");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = client.get(&readyz).send().await.unwrap().status();
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readyz still {status} 30 s after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.stop().await.expect("stop");
}

#[tokio::test]
async fn sessions_the_database_ends_fail_at_most_one_request_after_those_in_flight() {
    // The pool pings a connection before use only when it has been idle a while or went idle
    // before a statement found its connection lost (db::ping_when_idle). Here the database ends
    // every pooled session at once, under a second after their last use: the first request
    // may meet a dead connection and fail, and it makes the pool check the rest.
    let (_dir, cluster) = own_cluster().await;
    const CONNECTIONS: usize = 4;
    let pool = keyportal::db::pool_options(CONNECTIONS as u32)
        .connect_with(cluster.connect_options("postgres"))
        .await
        .unwrap();
    let addr = common::serve_app(pool.clone()).await;
    let client = common::client();
    let readyz = format!("http://{addr}/readyz");
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect_with(
        &cluster.connect_options("postgres"),
    )
    .await
    .unwrap();
    for round in 0..3 {
        // Every pooled connection open and idle.
        let held: Vec<_> = futures_util::future::join_all((0..CONNECTIONS).map(|_| pool.acquire()))
            .await
            .into_iter()
            .map(|c| c.unwrap())
            .collect();
        drop(held);
        // Connections go back to the pool in spawned tasks (each with a ping): wait for them.
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.num_idle() < CONNECTIONS {
            assert!(
                Instant::now() < deadline,
                "round {round}: connections not returned"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let ended: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = 'postgres' AND backend_type = 'client backend'
                AND pid <> pg_backend_pid()) t",
        )
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert_eq!(ended, CONNECTIONS as i64, "round {round}");
        let mut failed = 0;
        for _ in 0..2 * CONNECTIONS {
            if client.get(&readyz).send().await.unwrap().status() != 200 {
                failed += 1;
            }
        }
        assert!(
            failed <= 1,
            "round {round}: {failed} of {} requests failed after the sessions ended",
            2 * CONNECTIONS
        );
    }
    cluster.stop().await.expect("stop");
}

fn world_searchable_tempdir() -> tempfile::TempDir {
    // As root the cluster runs as `postgres`, which must be able to reach the directory.
    let dir = tempfile::Builder::new()
        .prefix("kp-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

async fn readyz_status(client: &reqwest::Client, addr: &str) -> u16 {
    client
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn postmaster_running(data_dir: &Path) -> bool {
    data_dir.join("pgdata/postmaster.pid").exists()
}

#[tokio::test]
async fn serve_with_no_configuration_runs_its_own_database_and_stops_it_on_sigterm() {
    let dir = world_searchable_tempdir();
    let data_dir = dir.path().join("keyportal-data");
    let client = common::client();

    // First start: creates the cluster.
    let (served, addr) = Served::start(&data_dir, &[]);
    let res = client
        .get(format!("http://{addr}/readyz"))
        .header("x-request-id", "first-start-req-7")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "first-start-req-7");
    // Leave a mark in the database to find after the restart.
    let socket_dir = data_dir.join("run");
    let opts = sqlx::postgres::PgConnectOptions::new()
        .host(socket_dir.to_str().unwrap())
        .username("postgres")
        .database("keyportal");
    let pool = sqlx::PgPool::connect_with(opts.clone()).await.unwrap();
    sqlx::query("INSERT INTO servers (name) VALUES ('survives-restart')")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (status, log) = served.terminate(Duration::from_secs(10));
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        log.join("\n")
    );
    assert!(log
        .iter()
        .any(|l| l.contains("creating the private PostgreSQL cluster")));
    assert!(
        !log.iter().any(|l| l.contains('\x1b')),
        "no terminal colour codes in logs written to a pipe"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("first-start-req-7") && l.contains("finished processing request")),
        "the request's log line must carry its id; log:\n{}",
        log.join("\n")
    );
    assert!(
        !postmaster_running(&data_dir),
        "the private cluster must be stopped with keyportal"
    );

    // Second start: the same data, no new cluster.
    let (served, addr) = Served::start(&data_dir, &[]);
    assert_eq!(readyz_status(&client, &addr).await, 200);
    let pool = sqlx::PgPool::connect_with(opts).await.unwrap();
    let kept: i64 =
        sqlx::query_scalar("SELECT count(*) FROM servers WHERE name = 'survives-restart'")
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    assert_eq!(kept, 1);
    let (status, log) = served.terminate(Duration::from_secs(10));
    assert!(status.success());
    assert!(
        !log.iter()
            .any(|l| l.contains("creating the private PostgreSQL cluster")),
        "the cluster must be reused"
    );
    assert!(!postmaster_running(&data_dir));
}

#[tokio::test]
async fn a_second_serve_on_the_same_data_reuses_the_running_cluster() {
    let dir = world_searchable_tempdir();
    let data_dir = dir.path().join("keyportal-data");
    let client = common::client();
    let (first, addr1) = Served::start(&data_dir, &[]);
    let (second, addr2) = Served::start(&data_dir, &[]);
    for addr in [&addr1, &addr2] {
        assert_eq!(readyz_status(&client, addr).await, 200);
    }
    // The first started the cluster but must leave it running while the second is connected.
    let (status, _) = first.terminate(Duration::from_secs(10));
    assert!(status.success());
    assert!(postmaster_running(&data_dir));
    assert_eq!(readyz_status(&client, &addr2).await, 200);
    // The last one to leave stops it.
    let (status, log) = second.terminate(Duration::from_secs(10));
    assert!(status.success());
    assert!(
        !postmaster_running(&data_dir),
        "the last keyportal must stop the private cluster; its log:\n{}",
        log.join("\n")
    );
}

#[test]
fn without_postgresql_programs_serve_fails_with_one_clear_line() {
    let dir = world_searchable_tempdir();
    let out = Command::new(env!("CARGO_BIN_EXE_keyportal"))
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env("KEYPORTAL_DATA_DIR", dir.path().join("data"))
        .env("KEYPORTAL_PG_BIN", dir.path().join("no-postgres-here"))
        .env("KEYPORTAL_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("keyportal: "))
        .expect(&stderr);
    assert!(
        line.contains("apt-get install postgresql") && line.contains("DATABASE_URL"),
        "{line}"
    );
}
