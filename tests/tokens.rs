//! Token lifecycle and account takeover (issue 11): server tokens listed, expiring and revoked
//! (also for `keyportal fetch-keys` against two `serve` processes), personal tokens capped by
//! the policy and not minted by tokens, a password change that needs the current password and
//! revokes tokens, and the per-user key quota.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::served::Served;
use common::{answer, corpus_key, TestApp, TestDb};
use keyportal::domain::Role;
use keyportal::service::{Ctx, Services};
use reqwest::Method;
use serde_json::{json, Value};
use time::OffsetDateTime;

const PASSWORD: &str = "correct horse battery";

async fn audit_actions(app: &TestApp, action: &str) -> Vec<Value> {
    let (status, events) =
        answer(app.get(&app.admin, &format!("/api/v1/audit?action={action}"))).await;
    assert_eq!(status, 200);
    events["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn server_tokens_are_listed_without_secrets_expire_and_are_revoked_with_audit() {
    let app = TestApp::spawn().await;
    let (status, _) =
        answer(app.post(&app.admin, "/api/v1/servers", json!({ "name": "web1" }))).await;
    assert_eq!(status, 201);
    let expires = (OffsetDateTime::now_utc() + time::Duration::days(30))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    // Enrollment by script: an admin's bearer token may still make server tokens.
    let (status, made) = answer(app.post(
        &app.admin,
        "/api/v1/servers/web1/tokens",
        json!({ "name": "sshd", "expires_at": expires }),
    ))
    .await;
    assert_eq!(status, 201, "{made}");
    let secret = made["secret"].as_str().unwrap().to_owned();
    let id = made["token"]["id"].as_str().unwrap().to_owned();
    let (status, list) = answer(app.get(&app.admin, "/api/v1/servers/web1/tokens")).await;
    assert_eq!(status, 200);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], id.as_str());
    assert_eq!(items[0]["created_by"], "root");
    assert!(items[0]["expires_at"]
        .as_str()
        .unwrap()
        .starts_with(&expires[..10]));
    assert!(!list.to_string().contains(&secret), "no secret in the list");

    let keys = "/api/v1/servers/web1/authorized_keys?login=deploy";
    assert_eq!(answer(app.get(&secret, keys)).await.0, 200);
    let (status, body) = answer(app.post(
        &app.admin,
        "/api/v1/servers/web1/tokens",
        json!({ "expires_at": "2001-01-01T00:00:00Z" }),
    ))
    .await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (422, Some("expires_at"))
    );

    assert_eq!(
        answer(app.delete(&app.admin, &format!("/api/v1/servers/web1/tokens/{id}")))
            .await
            .0,
        204
    );
    assert_eq!(
        answer(app.get(&secret, keys)).await.0,
        401,
        "revoked at once"
    );
    let (_, list) = answer(app.get(&app.admin, "/api/v1/servers/web1/tokens")).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    assert_eq!(
        answer(app.delete(&app.admin, &format!("/api/v1/servers/web1/tokens/{id}")))
            .await
            .0,
        404,
        "already revoked"
    );
    let events = audit_actions(&app, "token.revoke").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["target"], "server:web1");
    let created = audit_actions(&app, "token.create").await;
    assert!(created
        .iter()
        .any(|e| e["target"] == "server:web1" && e["detail"]["token_id"] == id.as_str()));
}

/// `keyportal fetch-keys` (the real binary) with `token_file` against `portal`.
fn fetch_keys(portal: &str, token_file: &Path) -> (Option<i32>, String, String) {
    common::fetch_keys(&[portal], token_file, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_or_expired_server_token_gets_nothing_on_every_serve_process() {
    let db = TestDb::new().await;
    let s = Services::new(db.pool.clone());
    let cli = Ctx::command_line();
    common::alice_granted_on_web1(&s).await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let env = [("DATABASE_URL", db.url.as_str())];
    let (_one, addr1) = Served::start(dirs[0].path(), &env);
    let (_two, addr2) = Served::start(dirs[1].path(), &env);
    let portals = [format!("http://{addr1}"), format!("http://{addr2}")];
    let token_file = |secret: &str, name: &str| {
        let path = dirs[0].path().join(name);
        std::fs::write(&path, format!("{secret}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    };

    // Revoked: refused on the very next call, on both processes.
    let revoked = s
        .create_server_token(&cli, "web1", None, None)
        .await
        .unwrap();
    let file = token_file(&revoked.secret, "revoked");
    for portal in &portals {
        let (code, out, err) = fetch_keys(portal, &file);
        assert_eq!(code, Some(0), "{err}");
        assert!(out.starts_with("ssh-ed25519 "), "{out}");
    }
    s.revoke_server_token(&cli, "web1", revoked.token.id)
        .await
        .unwrap();
    for portal in &portals {
        let (code, out, err) = fetch_keys(portal, &file);
        assert_eq!((code, out.as_str()), (Some(1), ""), "{portal}");
        assert!(err.contains("401"), "{err}");
    }

    // Expired (aged in the database, no waiting): likewise.
    let aging = s
        .create_server_token(&cli, "web1", None, None)
        .await
        .unwrap();
    let file = token_file(&aging.secret, "aging");
    assert_eq!(fetch_keys(&portals[1], &file).0, Some(0));
    sqlx::query("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(aging.token.id)
        .execute(&db.pool)
        .await
        .unwrap();
    for portal in &portals {
        let (code, out, _) = fetch_keys(portal, &file);
        assert_eq!((code, out.as_str()), (Some(1), ""), "{portal}");
    }
}

#[tokio::test]
async fn changing_ones_own_password_needs_the_current_one_and_revokes_tokens() {
    let app = TestApp::spawn().await;
    app.user_with_password("alice", Role::Member, PASSWORD)
        .await;
    let token = app
        .services
        .create_token_for(&Ctx::command_line(), "alice", "ci", None)
        .await
        .unwrap()
        .secret;
    let new = "a brand new passphrase";
    for (body, status, code) in [
        (json!({ "password": new }), 400, "current_password_required"),
        (
            json!({ "password": new, "current_password": "not the password" }),
            403,
            "current_password_wrong",
        ),
    ] {
        let (got, problem) = answer(app.patch(&token, "/api/v1/users/alice", body)).await;
        assert_eq!((got, problem["code"].as_str()), (status, Some(code)));
    }
    assert_eq!(
        app.browser().sign_in("alice", PASSWORD).await.status,
        303,
        "unchanged"
    );
    assert_eq!(answer(app.get(&token, "/api/v1/me")).await.0, 200);

    let (status, _) = answer(app.patch(
        &token,
        "/api/v1/users/alice",
        json!({ "password": new, "current_password": PASSWORD }),
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        answer(app.get(&token, "/api/v1/me")).await.0,
        401,
        "tokens revoked"
    );
    assert_eq!(app.browser().sign_in("alice", new).await.status, 303);

    // An admin resetting someone else's password needs no current password.
    let (status, _) = answer(app.patch(
        &app.admin,
        "/api/v1/users/alice",
        json!({ "password": "set by the admin!!" }),
    ))
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_token_cannot_make_tokens_and_disabling_revokes_them_and_admins_revoke_them() {
    let app = TestApp::spawn().await;
    let alice = app.user_with_token("alice", Role::Member).await;
    let (status, body) =
        answer(app.post(&alice, "/api/v1/tokens", json!({ "name": "more" }))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("token_cannot_create_tokens"))
    );
    let (status, body) =
        answer(app.post(&app.admin, "/api/v1/tokens", json!({ "name": "more" }))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("token_cannot_create_tokens"))
    );
    let (_, list) = answer(app.get(&alice, "/api/v1/tokens")).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "nothing made");

    // Admins list and revoke a user's tokens.
    let second = app
        .services
        .create_token_for(&Ctx::command_line(), "alice", "second", None)
        .await
        .unwrap();
    let (status, list) = answer(app.get(&app.admin, "/api/v1/users/alice/tokens")).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains(&second.secret));
    // Her own list, as under /api/v1/tokens; another member's is not found.
    assert_eq!(
        answer(app.get(&alice, "/api/v1/users/alice/tokens"))
            .await
            .0,
        200
    );
    let bob = app.user_with_token("bob", Role::Member).await;
    assert_eq!(
        answer(app.get(&bob, "/api/v1/users/alice/tokens")).await.0,
        404
    );
    assert_eq!(
        answer(app.delete(
            &app.admin,
            &format!("/api/v1/users/alice/tokens/{}", second.token.id)
        ))
        .await
        .0,
        204
    );
    assert_eq!(answer(app.get(&second.secret, "/api/v1/me")).await.0, 401);
    assert_eq!(audit_actions(&app, "token.revoke").await.len(), 1);

    // Disabling revokes the rest: re-enabling does not bring them back.
    for disabled in [true, false] {
        let (status, _) = answer(app.patch(
            &app.admin,
            "/api/v1/users/alice",
            json!({ "disabled": disabled }),
        ))
        .await;
        assert_eq!(status, 200);
    }
    assert_eq!(answer(app.get(&alice, "/api/v1/me")).await.0, 401);
}

#[tokio::test]
async fn personal_token_expiry_defaults_to_the_policy_cap_and_cannot_exceed_it() {
    let app = TestApp::spawn().await;
    app.user_with_password("alice", Role::Member, PASSWORD)
        .await;
    let mut b = app.browser();
    let csrf = b.signed_in("alice", PASSWORD).await;
    let mut create = async |body: Value| {
        let res = b
            .api(Method::POST, "/api/v1/tokens", Some(body), Some(&csrf))
            .await;
        (
            res.status,
            serde_json::from_str::<Value>(&res.body).unwrap(),
        )
    };
    let expiry = |v: &Value| {
        OffsetDateTime::parse(
            v["token"]["expires_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    let (status, made) = create(json!({ "name": "laptop" })).await;
    assert_eq!(status, 201);
    let cap = OffsetDateTime::now_utc() + time::Duration::days(90);
    assert!((expiry(&made) - cap).abs() < time::Duration::minutes(1));
    let far = (OffsetDateTime::now_utc() + time::Duration::days(91))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (status, body) = create(json!({ "name": "forever", "expires_at": far })).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("token_expiry_too_far"))
    );

    // The cap is the admin's to change, audited.
    let (status, _) =
        answer(app.put(&app.admin, "/api/v1/policy", json!({ "max_token_days": 7 }))).await;
    assert_eq!(status, 200);
    for bad in [0, 3651] {
        let (status, _) = answer(app.put(
            &app.admin,
            "/api/v1/policy",
            json!({ "max_token_days": bad }),
        ))
        .await;
        assert_eq!(status, 422, "{bad}");
    }
    let events = audit_actions(&app, "policy.update").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["detail"]["after"]["max_token_days"], 7);
    let (status, made) = create(json!({ "name": "week" })).await;
    assert_eq!(status, 201);
    let cap = OffsetDateTime::now_utc() + time::Duration::days(7);
    assert!((expiry(&made) - cap).abs() < time::Duration::minutes(1));
}

/// Deletes the first key of the user's list through the API.
async fn set_key_quota(app: &TestApp, max_keys_per_user: u32) {
    let (status, body) = answer(app.put(
        &app.admin,
        "/api/v1/policy",
        json!({ "max_keys_per_user": max_keys_per_user }),
    ))
    .await;
    assert_eq!(status, 200, "{body}");
}

/// The key count the quota reads (migrations/0017), as stored.
async fn stored_key_count(app: &TestApp, username: &str) -> i32 {
    sqlx::query_scalar(
        "SELECT c.keys FROM user_key_counts c JOIN users u ON u.id = c.user_id WHERE u.username = $1",
    )
    .bind(username)
    .fetch_one(&app.db.pool)
    .await
    .unwrap()
}

async fn delete_first_key(app: &TestApp, token: &str, username: &str) {
    let (_, list) = answer(app.get(token, &format!("/api/v1/users/{username}/keys"))).await;
    let id = list["items"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = answer(app.delete(token, &format!("/api/v1/keys/{id}"))).await;
    assert_eq!(status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_key_quota_holds_for_adds_imports_and_concurrent_adds() {
    let app = TestApp::spawn().await;
    let alice = app.user_with_token("alice", Role::Member).await;
    set_key_quota(&app, 3).await;
    let add = |file: &'static str| {
        app.post(
            &alice,
            "/api/v1/users/alice/keys",
            json!({ "key": corpus_key(file) }),
        )
    };
    for file in [
        "valid/ed25519.pub",
        "valid/ecdsa-256.pub",
        "valid/ecdsa-384.pub",
    ] {
        assert_eq!(answer(add(file)).await.0, 201, "{file}");
    }
    let (status, body) = answer(add("valid/rsa-2048.pub")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("key_quota_exceeded"))
    );

    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM ssh_keys")
            .fetch_one(&app.db.pool)
            .await
            .unwrap()
    };
    // An import that would pass the quota adds nothing.
    let file = format!(
        "{}\n{}\n",
        corpus_key("valid/rsa-2048.pub"),
        corpus_key("valid/sk-ecdsa-256.pub")
    );
    let res = app
        .client
        .post(app.url("/api/v1/users/alice/keys/import"))
        .bearer_auth(&alice)
        .body(file.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "key_quota_exceeded"
    );
    assert_eq!(count().await, 3);

    // At quota - 1, concurrent adds: exactly one wins.
    delete_first_key(&app, &alice, "alice").await;
    let racers = common::generated_ed25519_keys(12);
    let answers =
        futures_util::future::join_all(racers.iter().map(|key| {
            answer(app.post(&alice, "/api/v1/users/alice/keys", json!({ "key": key })))
        }))
        .await;
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(answers
        .iter()
        .all(|(s, b)| *s == 201 || b["code"] == "key_quota_exceeded"));
    assert_eq!(count().await, 3);
}

/// The quota reads a count the database keeps (migrations/0017): it must follow every way
/// keys and users come and go, not only the API's.
#[tokio::test]
async fn the_key_count_the_quota_reads_follows_every_write() {
    let app = TestApp::spawn().await;
    let alice = app.user_with_token("alice", Role::Member).await;
    app.user_with_token("bob", Role::Member).await;
    let db = &app.db.pool;
    let drift = || async {
        sqlx::query_as::<_, (String, Option<i32>, i64)>(
            "SELECT u.username, c.keys, (SELECT count(*) FROM ssh_keys k WHERE k.user_id = u.id)
               FROM users u LEFT JOIN user_key_counts c ON c.user_id = u.id
              WHERE c.keys IS DISTINCT FROM (SELECT count(*) FROM ssh_keys k WHERE k.user_id = u.id)",
        )
        .fetch_all(db)
        .await
        .unwrap()
    };
    let keys = common::generated_ed25519_keys(9);
    let add =
        |key: &str| answer(app.post(&alice, "/api/v1/users/alice/keys", json!({ "key": key })));
    assert_eq!(add(&keys[0]).await.0, 201);
    let res = app
        .client
        .post(app.url("/api/v1/users/alice/keys/import"))
        .bearer_auth(&alice)
        .body(keys[1..4].join("\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(stored_key_count(&app, "alice").await, 4);
    // A failed add (a duplicate) changes nothing.
    assert_eq!(add(&keys[0]).await.0, 409);
    assert_eq!(stored_key_count(&app, "alice").await, 4);
    delete_first_key(&app, &alice, "alice").await;
    assert_eq!(stored_key_count(&app, "alice").await, 3);
    // Plain SQL: one statement adding keys for two users, one taking a key from each.
    let mut rows: [Vec<String>; 4] = Default::default();
    for (i, who) in [(4, "alice"), (5, "bob"), (6, "bob")] {
        let (_, checked) =
            answer(app.post(&alice, "/api/v1/keys/validate", json!({ "key": keys[i] }))).await;
        rows[0].push(who.to_owned());
        for (column, field) in [
            (1, "public_key"),
            (2, "fingerprint_sha256"),
            (3, "fingerprint_md5"),
        ] {
            rows[column].push(checked[field].as_str().unwrap().to_owned());
        }
    }
    sqlx::query(
        "INSERT INTO ssh_keys (user_id, algorithm, bits, public_key, fingerprint_sha256, fingerprint_md5)
         SELECT u.id, 'ssh-ed25519', 256, v.public_key, v.sha256, v.md5
           FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS v(username, public_key, sha256, md5)
           JOIN users u USING (username)",
    )
    .bind(&rows[0])
    .bind(&rows[1])
    .bind(&rows[2])
    .bind(&rows[3])
    .execute(db)
    .await
    .unwrap();
    assert_eq!(
        (
            stored_key_count(&app, "alice").await,
            stored_key_count(&app, "bob").await
        ),
        (4, 2)
    );
    sqlx::query("DELETE FROM ssh_keys WHERE public_key = ANY($1)")
        .bind(&rows[1][..2])
        .execute(db)
        .await
        .unwrap();
    assert_eq!(
        (
            stored_key_count(&app, "alice").await,
            stored_key_count(&app, "bob").await
        ),
        (3, 1)
    );
    assert!(drift().await.is_empty(), "{:?}", drift().await);
    // A count row removed by hand is made again from the keys at the next add, which still
    // meets the blocklist.
    sqlx::query("DELETE FROM user_key_counts WHERE user_id = (SELECT id FROM users WHERE username = 'alice')")
        .execute(db)
        .await
        .unwrap();
    let (status, _) = answer(app.post(
        &app.admin,
        "/api/v1/blocklist",
        json!({ "key": keys[7], "reason": "laptop stolen" }),
    ))
    .await;
    assert_eq!(status, 201);
    let (status, refused) = add(&keys[7]).await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (422, Some("key_compromised")),
        "{refused}"
    );
    assert_eq!(add(&keys[8]).await.0, 201);
    assert_eq!(stored_key_count(&app, "alice").await, 4);
    assert!(drift().await.is_empty(), "{:?}", drift().await);
    let (status, _) = answer(app.delete(&app.admin, "/api/v1/users/bob")).await;
    assert_eq!(status, 204);
    // A user made by plain SQL gets a count too.
    sqlx::query("INSERT INTO users (username) VALUES ('carol'), ('dave')")
        .execute(db)
        .await
        .unwrap();
    assert!(drift().await.is_empty(), "{:?}", drift().await);
    assert_eq!(stored_key_count(&app, "carol").await, 0);
    sqlx::raw_sql("TRUNCATE ssh_keys CASCADE")
        .execute(db)
        .await
        .unwrap();
    assert_eq!(stored_key_count(&app, "alice").await, 0);
    assert!(drift().await.is_empty(), "{:?}", drift().await);
}

/// A refused add (a listed key, one over the quota) inserts no row, and answers while a
/// blocklist write holds the blocklist lock: only added keys wait for it (they may need
/// linking), and a refusal must not queue behind that write holding its owner's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_add_does_not_wait_for_a_blocklist_write() {
    let app = TestApp::spawn().await;
    let alice = app.user_with_token("alice", Role::Member).await;
    set_key_quota(&app, 1).await;
    let listed = corpus_key("valid/ed25519.pub");
    let (status, entry) = answer(app.post(
        &app.admin,
        "/api/v1/blocklist",
        json!({ "key": listed, "reason": "laptop stolen" }),
    ))
    .await;
    assert_eq!(status, 201, "{entry}");
    let add =
        |key: String| answer(app.post(&alice, "/api/v1/users/alice/keys", json!({ "key": key })));
    assert_eq!(add(corpus_key("valid/ecdsa-256.pub")).await.0, 201);

    // A blocklist write in progress: it holds the lock of migrations/0014 until it commits.
    let mut writer = app.db.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(x'6b70626c'::int8)")
        .execute(&mut *writer)
        .await
        .unwrap();
    let limit = std::time::Duration::from_secs(20);
    for (key, status, code) in [
        (listed, 422, "key_compromised"),
        (corpus_key("valid/ecdsa-384.pub"), 409, "key_quota_exceeded"),
    ] {
        let (got, body) = tokio::time::timeout(limit, add(key))
            .await
            .unwrap_or_else(|_| panic!("a refused add ({code}) waited for the blocklist write"));
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{body}");
    }
    writer.rollback().await.unwrap();
    assert_eq!(stored_key_count(&app, "alice").await, 1);
}

/// A user deleted while a key of theirs is being added or imported: the add waits on the
/// owner's row, then answers 404 (the user is gone), not a 500 from the foreign key, and leaves
/// nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_added_or_imported_while_its_owner_is_deleted_is_refused_as_not_found() {
    let app = TestApp::spawn().await;
    let db = app.db.pool.clone();
    let keys = common::generated_ed25519_keys(3);
    for (username, path, content_type, body) in [
        (
            "carol",
            "keys",
            "application/json",
            json!({ "key": keys[0] }).to_string(),
        ),
        ("dave", "keys/import", "text/plain", keys[1..].join("\n")),
    ] {
        app.user_with_token(username, Role::Member).await;
        let mut deletion = db.begin().await.unwrap();
        sqlx::query("DELETE FROM users WHERE username = $1")
            .bind(username)
            .execute(&mut *deletion)
            .await
            .unwrap();
        let request = app
            .client
            .post(app.url(&format!("/api/v1/users/{username}/{path}")))
            .bearer_auth(&app.admin)
            .header("content-type", content_type)
            .body(body)
            .send();
        let request = tokio::spawn(request);
        // The request found the user (the deletion is not committed) and now waits on the
        // row the deletion holds.
        common::until_a_lock_wait(&db, None, &request, username).await;
        deletion.commit().await.unwrap();
        let res = request.await.unwrap().unwrap();
        assert_eq!(res.status(), 404, "{username}");
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["code"], "not_found", "{problem}");
    }
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM ssh_keys")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(left, 0);
    assert!(audit_actions(&app, "key.add").await.is_empty());
    assert!(audit_actions(&app, "key.import").await.is_empty());
}

#[tokio::test]
async fn the_server_page_shows_setup_lines_only_with_a_public_url_and_revokes_tokens() {
    for public in [None, Some("https://keys.example.com/")] {
        let app = TestApp::spawn_with(|s| s.web.public_url = public.map(str::to_owned)).await;
        app.user_with_password("boss", Role::Admin, PASSWORD).await;
        app.services
            .create_server(&Ctx::command_line(), "web1", None, None)
            .await
            .unwrap();
        let made = app
            .services
            .create_server_token(&Ctx::command_line(), "web1", Some("old-sshd"), None)
            .await
            .unwrap();
        let mut b = app.browser();
        let csrf = b.signed_in("boss", PASSWORD).await;
        let page = b.get("/servers/web1").await;
        assert_eq!(page.status, 200);
        match public {
            None => {
                assert!(page.body.contains("id=\"no-public-url\""));
                assert!(page.body.contains("KEYPORTAL_PUBLIC_URL"));
                assert!(!page.body.contains("--portal http://"), "{}", page.body);
                assert!(!page.body.contains("--portal "));
            }
            Some(_) => {
                assert!(page
                    .body
                    .contains("--portal https://keys.example.com --server web1"));
                assert!(!page.body.contains("no-public-url"));
            }
        }
        assert!(page.body.contains("old-sshd"));
        assert!(!page.body.contains(&made.secret));
        let res = b
            .post_form(
                &format!("/servers/web1/tokens/{}/revoke", made.token.id),
                &[("csrf_token", "forged")],
            )
            .await;
        assert_eq!(res.status, 403);
        assert_eq!(answer(app.get(&made.secret, "/api/v1/me")).await.0, 200);
        let res = b
            .post_form(
                &format!("/servers/web1/tokens/{}/revoke", made.token.id),
                &[("csrf_token", &csrf)],
            )
            .await;
        assert_eq!(res.status, 303);
        assert_eq!(answer(app.get(&made.secret, "/api/v1/me")).await.0, 401);
        assert!(!b.get("/servers/web1").await.body.contains("old-sshd"));
    }
}

#[tokio::test]
async fn an_admin_sees_and_revokes_a_users_tokens_on_their_page() {
    let app = TestApp::spawn().await;
    app.user_with_password("boss", Role::Admin, PASSWORD).await;
    let alice = app.user_with_token("alice", Role::Member).await;
    let id: uuid::Uuid = sqlx::query_scalar(
        "SELECT t.id FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE u.username = 'alice'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    let mut b = app.browser();
    let csrf = b.signed_in("boss", PASSWORD).await;
    let page = b.get("/users/alice").await;
    assert!(page
        .body
        .contains(&format!("/users/alice/tokens/{id}/revoke")));
    assert!(!page.body.contains(&alice));
    let revoke = format!("/users/alice/tokens/{id}/revoke");
    assert_eq!(
        b.post_form(&revoke, &[("csrf_token", "forged")])
            .await
            .status,
        403
    );
    assert_eq!(answer(app.get(&alice, "/api/v1/me")).await.0, 200);
    assert_eq!(
        b.post_form(&revoke, &[("csrf_token", &csrf)]).await.status,
        303
    );
    assert_eq!(answer(app.get(&alice, "/api/v1/me")).await.0, 401);
    assert!(!b.get("/users/alice").await.body.contains(&revoke));
}
