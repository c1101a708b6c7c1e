//! kill -9 of `serve` in the middle of a write: what was answered is stored, and a write cut
//! off half-way leaves nothing, with the audit log agreeing with the data.

mod common;

use std::time::{Duration, Instant};

use common::served::Served;
use common::{answer, TestDb};
use keyportal::service::Services;

/// Waits until one of `serve`'s connections is inside a transaction that has written, i.e. the
/// import is half-way; panics after `limit`.
async fn until_a_write_is_open(db: &TestDb, limit: Duration) {
    let since = Instant::now();
    loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'keyportal'
               AND backend_xid IS NOT NULL",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        if open > 0 {
            return;
        }
        assert!(
            since.elapsed() < limit,
            "no write transaction seen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_large_import_leaves_all_or_nothing_and_the_audit_agrees() {
    let db = TestDb::new().await;
    let s = Services::new(db.pool.clone());
    let token = common::user_with_room_for(&s, "bulk", 10_000).await;
    let file = common::generated_ed25519_keys(3500).join("\n");
    let dir = tempfile::tempdir().unwrap();

    // Cut off half-way, while its transaction is open.
    let (served, addr) = Served::start(dir.path(), &[("DATABASE_URL", db.url.as_str())]);
    let import = tokio::spawn({
        let (file, token) = (file.clone(), token.clone());
        async move {
            common::client()
                .post(format!("http://{addr}/api/v1/users/bulk/keys/import"))
                .bearer_auth(token)
                .body(file)
                .send()
                .await
        }
    });
    until_a_write_is_open(&db, Duration::from_secs(60)).await;
    served.kill_hard();
    assert!(import.await.unwrap().is_err(), "the client saw the crash");
    // PostgreSQL notices the dead connection and rolls its transaction back.
    let since = Instant::now();
    while count(&db, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'keyportal'").await > 0 {
        assert!(since.elapsed() < Duration::from_secs(30), "the dead serve's sessions linger");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // All or nothing, and the audit agrees. (Killed while the transaction was open it is
    // nothing, unless it committed in the instant between seeing it and the kill.)
    let keys = count(&db, "SELECT count(*) FROM ssh_keys").await;
    let events = count(
        &db,
        "SELECT count(*) FROM audit_events WHERE action = 'key.import'",
    )
    .await;
    assert!(
        (keys, events) == (0, 0) || (keys, events) == (3500, 1),
        "{keys} keys and {events} import events after the crash"
    );
    eprintln!("after kill -9 mid-import: {keys} keys, {events} import events");
    sqlx::query("DELETE FROM ssh_keys")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_events WHERE action = 'key.import'")
        .execute(&db.pool)
        .await
        .unwrap();

    // After a restart the same import goes through whole, and the audit says so.
    let (served, addr) = Served::start(dir.path(), &[("DATABASE_URL", db.url.as_str())]);
    let (status, report) = answer(
        common::client()
            .post(format!("http://{addr}/api/v1/users/bulk/keys/import"))
            .bearer_auth(&token)
            .body(file),
    )
    .await;
    assert_eq!((status, report["added"].as_u64()), (200, Some(3500)));
    assert_eq!(count(&db, "SELECT count(*) FROM ssh_keys").await, 3500);
    let added: Vec<i64> = sqlx::query_scalar(
        "SELECT (detail->>'added')::bigint FROM audit_events WHERE action = 'key.import'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(added, vec![3500]);
    let _ = served.terminate(Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_while_eight_clients_submit_keys_finishes_every_accepted_request() {
    let db = TestDb::new().await;
    let s = Services::new(db.pool.clone());
    let token = common::user_with_room_for(&s, "busy", 10_000).await;
    let keys = common::generated_ed25519_keys(8 * 400);
    let dir = tempfile::tempdir().unwrap();
    let (served, addr) = Served::start(dir.path(), &[("DATABASE_URL", db.url.as_str())]);

    // Eight clients, each submitting its own keys until the portal stops taking connections.
    let clients: Vec<_> = keys
        .chunks(400)
        .map(|mine| {
            let (mine, token, addr) = (mine.to_vec(), token.clone(), addr.clone());
            tokio::spawn(async move {
                let client = common::client();
                let mut created = 0u64;
                let mut other = Vec::new();
                for key in mine {
                    match client
                        .post(format!("http://{addr}/api/v1/users/busy/keys"))
                        .bearer_auth(&token)
                        .json(&serde_json::json!({ "key": key }))
                        .send()
                        .await
                    {
                        Ok(res) if res.status() == 201 => created += 1,
                        Ok(res) => other.push(res.status().as_u16()),
                        // Refused or closed: the portal has stopped taking requests.
                        Err(_) => break,
                    }
                }
                (created, other)
            })
        })
        .collect();
    // SIGTERM once the load is well under way.
    let since = Instant::now();
    while count(&db, "SELECT count(*) FROM ssh_keys").await < 200 {
        assert!(since.elapsed() < Duration::from_secs(60), "no load");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, log) = served.terminate(Duration::from_secs(30));
    assert!(status.success(), "{}", log.join("\n"));

    let mut answered_201 = 0;
    for c in clients {
        let (created, other) = c.await.unwrap();
        assert!(
            other.is_empty(),
            "answers other than 201 during shutdown: {other:?}"
        );
        answered_201 += created;
    }
    let stored = count(&db, "SELECT count(*) FROM ssh_keys").await;
    assert_eq!(
        stored as u64, answered_201,
        "every key answered 201 is stored, and none is stored unanswered"
    );
    eprintln!("{answered_201} keys answered 201 and stored before and during the shutdown");
}

/// kill -9 of `serve` while four clients create and delete grants: afterwards the grants are
/// exactly those the audit log says were created and not deleted, every grant answered 201 is
/// there unless its deletion committed, and every grant answered 204 is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_grant_changes_leaves_the_audit_agreeing_with_the_grants() {
    use std::collections::HashSet;
    let db = TestDb::new().await;
    let s = Services::new(db.pool.clone());
    let cli = keyportal::service::Ctx::command_line();
    s.create_server(&cli, "web1", None, None).await.unwrap();
    for i in 0..4 {
        let user = keyportal::service::users::NewUser {
            username: format!("u{i}"),
            ..Default::default()
        };
        s.create_user(&cli, user).await.unwrap();
    }
    let boss = keyportal::service::users::NewUser {
        username: "boss".into(),
        role: Some(keyportal::domain::Role::Admin),
        ..Default::default()
    };
    s.create_user(&cli, boss).await.unwrap();
    let token = s
        .create_token_for(&cli, "boss", "t", None)
        .await
        .unwrap()
        .secret;
    let dir = tempfile::tempdir().unwrap();
    let (served, addr) = Served::start(dir.path(), &[("DATABASE_URL", db.url.as_str())]);

    // Each client creates grants and deletes every second one, until the portal is gone.
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (token, addr) = (token.clone(), addr.clone());
            tokio::spawn(async move {
                let client = common::client();
                let (mut created, mut deleted) = (Vec::new(), Vec::new());
                for j in 0.. {
                    let res = client
                        .post(format!("http://{addr}/api/v1/servers/web1/grants"))
                        .bearer_auth(&token)
                        .json(&serde_json::json!({ "username": format!("u{i}"), "login": format!("l{j}") }))
                        .send()
                        .await;
                    let Ok(res) = res else { break };
                    assert_eq!(res.status(), 201, "creating a grant");
                    let Ok(body) = res.json::<serde_json::Value>().await else { break };
                    let id = body["id"].as_str().unwrap().to_owned();
                    created.push(id.clone());
                    if j % 2 == 1 {
                        match client
                            .delete(format!("http://{addr}/api/v1/grants/{id}"))
                            .bearer_auth(&token)
                            .send()
                            .await
                        {
                            Ok(res) => {
                                assert_eq!(res.status(), 204, "deleting a grant");
                                deleted.push(id);
                            }
                            Err(_) => break,
                        }
                    }
                }
                (created, deleted)
            })
        })
        .collect();
    let since = Instant::now();
    while count(
        &db,
        "SELECT count(*) FROM audit_events WHERE action LIKE 'grant.%'",
    )
    .await
        < 100
    {
        assert!(since.elapsed() < Duration::from_secs(60), "no load");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    until_a_write_is_open(&db, Duration::from_secs(30)).await;
    served.kill_hard();
    let (mut answered_201, mut answered_204) = (HashSet::new(), HashSet::new());
    for c in clients {
        let (created, deleted) = c.await.unwrap();
        answered_201.extend(created);
        answered_204.extend(deleted);
    }
    let since = Instant::now();
    while count(&db, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'keyportal'").await > 0 {
        assert!(since.elapsed() < Duration::from_secs(30), "the dead serve's sessions linger");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let ids = |sql: &'static str| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(sql)
                .fetch_all(&pool)
                .await
                .unwrap()
                .into_iter()
                .collect::<HashSet<String>>()
        }
    };
    let rows = ids("SELECT id::text FROM grants").await;
    let created =
        ids("SELECT detail->>'grant_id' FROM audit_events WHERE action = 'grant.create'").await;
    let deleted =
        ids("SELECT detail->>'grant_id' FROM audit_events WHERE action = 'grant.delete'").await;
    assert!(deleted.is_subset(&created));
    let expected: HashSet<String> = created.difference(&deleted).cloned().collect();
    assert_eq!(rows, expected, "the grants are what the audit log says");
    for id in &answered_201 {
        assert!(
            rows.contains(id) || deleted.contains(id),
            "grant {id} answered 201 is lost"
        );
    }
    for id in &answered_204 {
        assert!(!rows.contains(id), "grant {id} answered 204 is still there");
    }
    // After a restart the portal lists exactly those grants.
    let (served, addr) = Served::start(dir.path(), &[("DATABASE_URL", db.url.as_str())]);
    let (status, list) = answer(
        common::client()
            .get(format!(
                "http://{addr}/api/v1/servers/web1/grants?limit=500"
            ))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 200);
    let listed: HashSet<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, rows);
    let _ = served.terminate(Duration::from_secs(20));
    eprintln!(
        "after kill -9 amid grant changes: {} grants, {} created and {} deleted in the audit log, {} answered 201, {} answered 204",
        rows.len(),
        created.len(),
        deleted.len(),
        answered_201.len(),
        answered_204.len()
    );
}
