//! Crash recovery of the private cluster: when its postmaster is killed, `serve` starts it
//! again and `/readyz` answers 200 within 10 s; when several `serve` share the cluster and the
//! one that started it dies too, a survivor does it.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::served::Served;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn world_searchable_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("kp-super-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn postmaster_pid(data: &Path) -> i32 {
    running_postmaster(data).expect("postmaster.pid names a postmaster")
}

/// The pid in `postmaster.pid`, if the file is there and complete (a starting postmaster
/// writes it in steps).
fn running_postmaster(data: &Path) -> Option<i32> {
    std::fs::read_to_string(data.join("pgdata/postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Polls until a postmaster other than `old` runs and `/readyz` answers 200; the time that
/// took, or a panic after `limit`. Both, because in the first milliseconds after the kill the
/// old postmaster's backends still answer until they notice it is gone: a 200 alone may come
/// from the dead cluster.
async fn ready_again(
    addr: &str,
    data: &Path,
    old: i32,
    since: Instant,
    limit: Duration,
) -> Duration {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    loop {
        if let Ok(res) = client.get(format!("http://{addr}/readyz")).send().await {
            assert!(
                res.status() == 200 || res.status() == 503,
                "while the database is down the answer is 503, got {}",
                res.status()
            );
            let restarted = running_postmaster(data).is_some_and(|pid| pid != old);
            if res.status() == 200 && restarted {
                return since.elapsed();
            }
        }
        assert!(
            since.elapsed() < limit,
            "/readyz not 200 within {limit:?} of the crash"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_restarts_its_cluster_after_the_postmaster_is_killed() {
    let dir = world_searchable_tempdir();
    let data = dir.path().join("data");
    let (mut served, addr) = Served::start(&data, &[]);
    let old = postmaster_pid(&data);
    let killed = Instant::now();
    kill(Pid::from_raw(old), Signal::SIGKILL).unwrap();
    let took = ready_again(&addr, &data, old, killed, Duration::from_secs(10)).await;
    eprintln!("ready again {took:?} after SIGKILL of the postmaster");
    served.wait_for("starting it again", Duration::from_secs(5));
    let (status, _) = served.terminate(Duration::from_secs(20));
    assert!(status.success());
    assert!(
        !data.join("pgdata/postmaster.pid").exists(),
        "stopped with serve, not restarted behind its back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_surviving_serve_takes_over_when_the_one_that_started_the_cluster_dies() {
    let dir = world_searchable_tempdir();
    let data = dir.path().join("data");
    let (first, _) = Served::start(&data, &[]);
    let (second, addr) = Served::start(&data, &[]);
    first.kill_hard();
    let old = postmaster_pid(&data);
    let killed = Instant::now();
    kill(Pid::from_raw(old), Signal::SIGKILL).unwrap();
    let took = ready_again(&addr, &data, old, killed, Duration::from_secs(10)).await;
    eprintln!("ready again {took:?} after SIGKILL of the starter and the postmaster");
    let (status, _) = second.terminate(Duration::from_secs(20));
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_postmaster_under_write_load_loses_no_answered_key() {
    let dir = world_searchable_tempdir();
    let data = dir.path().join("data");
    let (served, addr) = Served::start(&data, &[]);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyportal"))
            .args(args)
            .env_remove("DATABASE_URL")
            .env("KEYPORTAL_DATA_DIR", &data)
            .env("KEYPORTAL_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    cli(&["admin", "create", "--username", "ops"]);
    let token = cli(&["token", "create", "--username", "ops", "--name", "load"]);
    let client = common::client();
    let policy: serde_json::Value = client
        .get(format!("http://{addr}/api/v1/policy"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut policy = policy;
    policy["max_keys_per_user"] = serde_json::json!(10_000);
    let res = client
        .put(format!("http://{addr}/api/v1/policy"))
        .bearer_auth(&token)
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Four clients submitting keys, the postmaster killed in the middle.
    let keys = common::generated_ed25519_keys(4 * 150);
    let clients: Vec<_> = keys
        .chunks(150)
        .map(|mine| {
            let (mine, token, addr) = (mine.to_vec(), token.clone(), addr.clone());
            tokio::spawn(async move {
                let client = common::client();
                let mut answered = Vec::new();
                for key in mine {
                    let status = client
                        .post(format!("http://{addr}/api/v1/users/ops/keys"))
                        .bearer_auth(&token)
                        .json(&serde_json::json!({ "key": key }))
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0);
                    answered.push((key, status));
                }
                answered
            })
        })
        .collect();
    let pool = sqlx::PgPool::connect_with(
        sqlx::postgres::PgConnectOptions::new()
            .host(data.join("run").to_str().unwrap())
            .username("postgres")
            .database("keyportal"),
    )
    .await
    .unwrap();
    let since = Instant::now();
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM ssh_keys")
        .fetch_one(&pool)
        .await
        .unwrap()
        < 100
    {
        assert!(since.elapsed() < Duration::from_secs(60), "no load");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    pool.close().await;
    let old = postmaster_pid(&data);
    let killed = Instant::now();
    kill(Pid::from_raw(old), Signal::SIGKILL).unwrap();
    let took = ready_again(&addr, &data, old, killed, Duration::from_secs(10)).await;

    let mut ok = Vec::new();
    let mut unavailable = 0;
    for c in clients {
        for (key, status) in c.await.unwrap() {
            match status {
                201 => ok.push(key),
                503 => unavailable += 1,
                other => panic!("only 201 or 503 may be answered, got {other}"),
            }
        }
    }
    let pool = sqlx::PgPool::connect_with(
        sqlx::postgres::PgConnectOptions::new()
            .host(data.join("run").to_str().unwrap())
            .username("postgres")
            .database("keyportal"),
    )
    .await
    .unwrap();
    let stored: Vec<String> = sqlx::query_scalar("SELECT public_key FROM ssh_keys")
        .fetch_all(&pool)
        .await
        .unwrap();
    for key in &ok {
        let blob = key.split_whitespace().nth(1).unwrap();
        assert!(
            stored.iter().any(|s| s.ends_with(blob)),
            "a key answered 201 is missing"
        );
    }
    // A key is one row, written with its audit event in one transaction: never half-stored.
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action = 'key.add'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        events as usize,
        stored.len(),
        "every stored key has its audit event"
    );
    pool.close().await;
    eprintln!(
        "{} answered 201 (all stored), {unavailable} answered 503, {} stored; ready again {took:?} after the kill",
        ok.len(),
        stored.len()
    );
    let (status, _) = served.terminate(Duration::from_secs(20));
    assert!(status.success());
}
