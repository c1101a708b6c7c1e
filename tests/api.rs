//! The JSON API over real HTTP and a real PostgreSQL: each route's success and error paths, the
//! validator on every write and every read, and authorized_keys as sshd will read it.

mod common;

use std::collections::BTreeSet;

use common::{answer, corpus_key, TestApp};
use keyportal::domain::Role;
use serde_json::{json, Value};

async fn add_key(app: &TestApp, token: &str, user: &str, file: &str) -> (u16, Value) {
    answer(app.post(
        token,
        &format!("/api/v1/users/{user}/keys"),
        json!({ "key": corpus_key(file) }),
    ))
    .await
}

async fn make_user(app: &TestApp, name: &str) {
    let (status, body) =
        answer(app.post(&app.admin, "/api/v1/users", json!({ "username": name }))).await;
    assert_eq!(status, 201, "{body}");
}

async fn make_server(app: &TestApp, name: &str) {
    let (status, body) =
        answer(app.post(&app.admin, "/api/v1/servers", json!({ "name": name }))).await;
    assert_eq!(status, 201, "{body}");
}

async fn grant(app: &TestApp, server: &str, body: Value) -> (u16, Value) {
    answer(app.post(
        &app.admin,
        &format!("/api/v1/servers/{server}/grants"),
        body,
    ))
    .await
}

async fn authorized_keys(app: &TestApp, token: &str, server: &str, login: &str) -> (u16, String) {
    let res = app
        .get(
            token,
            &format!("/api/v1/servers/{server}/authorized_keys?login={login}"),
        )
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    if status == 200 {
        assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
    }
    (status, res.text().await.unwrap())
}

/// The SHA256 fingerprints of an authorized_keys text, read back with keyportal's own parser.
fn fingerprints(text: &str) -> BTreeSet<String> {
    keyportal::keys::validate_authorized_keys(text.as_bytes(), &keyportal::keys::Policy::default())
        .expect("no private key")
        .into_iter()
        .map(|v| {
            v.result
                .expect("every line is a valid key line")
                .fingerprint_sha256()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn requests_without_a_valid_token_are_401_problem_documents() {
    let app = TestApp::spawn().await;
    let (status, _) = answer(app.client.get(app.url("/api/v1/me"))).await;
    assert_eq!(status, 401);
    let (status, _) = answer(app.get("kp_not-a-real-token", "/api/v1/me")).await;
    assert_eq!(status, 401);
    let (status, _) = answer(
        app.client
            .get(app.url("/api/v1/me"))
            .header("authorization", "Basic cm9vdDpyb290"),
    )
    .await;
    assert_eq!(status, 401);
    let (status, me) = answer(app.get(&app.admin, "/api/v1/me")).await;
    assert_eq!(status, 200);
    assert_eq!(me["user"]["username"], "root");
}

#[tokio::test]
async fn users_are_created_listed_updated_and_deleted_by_admins_only() {
    let app = TestApp::spawn().await;
    let (status, body) = answer(app.post(
        &app.admin,
        "/api/v1/users",
        json!({ "username": "alice", "email": "alice@example.com" }),
    ))
    .await;
    assert_eq!((status, body["role"].as_str()), (201, Some("member")));
    let (status, body) =
        answer(app.post(&app.admin, "/api/v1/users", json!({ "username": "alice" }))).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("name_taken")));
    let (status, body) =
        answer(app.post(&app.admin, "/api/v1/users", json!({ "username": "Alice!" }))).await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"][0]["field"], "username");
    let (status, body) = answer(app.post(
        &app.admin,
        "/api/v1/users",
        json!({ "username": "bob", "password": "short" }),
    ))
    .await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (422, Some("password"))
    );
    let (status, body) = answer(app.post(
        &app.admin,
        "/api/v1/users",
        json!({ "username": "bob", "surprise": 1 }),
    ))
    .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_body")));
    let (status, _) = answer(
        app.client
            .post(app.url("/api/v1/users"))
            .bearer_auth(&app.admin)
            .body("{not json"),
    )
    .await;
    assert_eq!(status, 400);

    // Pagination: limit and the opaque cursor walk the whole list once.
    for name in ["carol", "dave", "erin"] {
        make_user(&app, name).await;
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = answer(app.get(
            &app.admin,
            &format!("/api/v1/users?limit=2&cursor={cursor}"),
        ))
        .await;
        assert_eq!(status, 200);
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["username"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, ["alice", "carol", "dave", "erin", "root"]);
    let (status, _) = answer(app.get(&app.admin, "/api/v1/users?limit=501")).await;
    assert_eq!(status, 422);
    let (status, _) = answer(app.get(&app.admin, "/api/v1/users?cursor=%%%")).await;
    assert_eq!(status, 400);
    let (status, page) = answer(app.get(&app.admin, "/api/v1/users?q=ali")).await;
    assert_eq!((status, page["items"].as_array().unwrap().len()), (200, 1));

    let member = app.user_with_token("mallory", Role::Member).await;
    assert_eq!(answer(app.get(&member, "/api/v1/users")).await.0, 403);
    assert_eq!(answer(app.get(&member, "/api/v1/users/alice")).await.0, 404);
    assert_eq!(
        answer(app.get(&member, "/api/v1/users/mallory")).await.0,
        200
    );
    let (status, body) = answer(app.patch(
        &member,
        "/api/v1/users/mallory",
        json!({ "display_name": "Mal" }),
    ))
    .await;
    assert_eq!((status, body["display_name"].as_str()), (200, Some("Mal")));
    assert_eq!(
        answer(app.patch(&member, "/api/v1/users/mallory", json!({ "role": "admin" })))
            .await
            .0,
        403
    );
    assert_eq!(
        answer(app.patch(
            &member,
            "/api/v1/users/alice",
            json!({ "display_name": "x" })
        ))
        .await
        .0,
        404
    );
    let (status, body) =
        answer(app.patch(&app.admin, "/api/v1/users/alice", json!({ "email": null }))).await;
    assert_eq!((status, body["email"].is_null()), (200, true));

    assert_eq!(
        answer(app.delete(&member, "/api/v1/users/alice")).await.0,
        403
    );
    assert_eq!(
        answer(app.delete(&app.admin, "/api/v1/users/alice"))
            .await
            .0,
        204
    );
    assert_eq!(
        answer(app.get(&app.admin, "/api/v1/users/alice")).await.0,
        404
    );
    assert_eq!(
        answer(app.delete(&app.admin, "/api/v1/users/root")).await.0,
        409
    );
}

#[tokio::test]
async fn every_invalid_corpus_key_is_refused_over_http_with_the_validators_code() {
    let app = TestApp::spawn().await;
    make_user(&app, "alice").await;
    for case in common::corpus().iter().filter(|c| !c.expect_valid) {
        let Ok(text) = String::from_utf8(case.bytes.clone()) else {
            continue; // JSON strings are UTF-8; such inputs are covered by the validator tests.
        };
        let (status, body) = answer(app.post(
            &app.admin,
            "/api/v1/users/alice/keys",
            json!({ "key": text }),
        ))
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some(case.code.as_str())),
            "{}: {body}",
            case.file
        );
        let (status, body) =
            answer(app.post(&app.admin, "/api/v1/keys/validate", json!({ "key": text }))).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some(case.code.as_str())),
            "{}",
            case.file
        );
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM ssh_keys")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "a refused key changes nothing");
    // A private key leaves no trace in the database.
    let private = corpus_key("invalid/private-openssh-ed25519.pub");
    let secret_line = private.lines().nth(2).unwrap();
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE detail::text LIKE '%' || $1 || '%'",
    )
    .bind(&secret_line[..20])
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(leaked, 0);
}

#[tokio::test]
async fn keys_are_added_read_listed_and_deleted_by_their_owner_and_admins() {
    let app = TestApp::spawn().await;
    let alice = app.user_with_token("alice", Role::Member).await;
    let bob = app.user_with_token("bob", Role::Member).await;
    let (status, key) = add_key(&app, &alice, "alice", "valid/rfc4716-rsa-3072.pub").await;
    assert_eq!(status, 201, "{key}");
    assert_eq!(
        (key["algorithm"].as_str(), key["bits"].as_u64()),
        (Some("ssh-rsa"), Some(3072))
    );
    assert_eq!(
        (key["status"].as_str(), key["problem"].is_null()),
        (Some("valid"), true)
    );
    assert!(key["public_key"]
        .as_str()
        .unwrap()
        .starts_with("ssh-rsa AAAA"));
    let id = key["id"].as_str().unwrap().to_owned();

    // The same key again, by anyone: 409.
    assert_eq!(
        add_key(&app, &alice, "alice", "valid/rfc4716-rsa-3072.pub")
            .await
            .1["code"],
        "duplicate_key"
    );
    let (status, body) = add_key(&app, &bob, "bob", "valid/rfc4716-rsa-3072.pub").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("duplicate_key"))
    );
    // Someone else's keys are invisible.
    assert_eq!(
        add_key(&app, &bob, "alice", "valid/ed25519.pub").await.0,
        404
    );
    assert_eq!(
        answer(app.get(&bob, &format!("/api/v1/keys/{id}"))).await.0,
        404
    );
    assert_eq!(
        answer(app.get(&bob, "/api/v1/users/alice/keys")).await.0,
        404
    );
    assert_eq!(
        answer(app.get(&alice, "/api/v1/keys/not-a-uuid")).await.0,
        404
    );

    add_key(&app, &alice, "alice", "valid/ed25519.pub").await;
    add_key(&app, &alice, "alice", "valid/ecdsa-384.pub").await;
    let (status, page) = answer(app.get(&alice, "/api/v1/users/alice/keys?limit=2")).await;
    assert_eq!((status, page["items"].as_array().unwrap().len()), (200, 2));
    let next = page["next_cursor"].as_str().unwrap();
    let (_, rest) = answer(app.get(
        &alice,
        &format!("/api/v1/users/alice/keys?limit=2&cursor={next}"),
    ))
    .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert!(rest["next_cursor"].is_null());

    assert_eq!(
        answer(app.delete(&bob, &format!("/api/v1/keys/{id}")))
            .await
            .0,
        404
    );
    assert_eq!(
        answer(app.delete(&alice, &format!("/api/v1/keys/{id}")))
            .await
            .0,
        204
    );
    assert_eq!(
        answer(app.get(&app.admin, &format!("/api/v1/keys/{id}")))
            .await
            .0,
        404
    );
    let (status, body) = answer(app.post(
        &alice,
        "/api/v1/users/alice/keys",
        json!({ "key": corpus_key("valid/ecdsa-521.pub"), "expires_at": "2001-01-01T00:00:00Z" }),
    ))
    .await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (422, Some("expires_at"))
    );
}

#[tokio::test]
async fn concurrent_submissions_of_one_key_give_exactly_one_201() {
    let app = TestApp::spawn().await;
    for n in 0..8 {
        make_user(&app, &format!("racer{n}")).await;
    }
    let key = corpus_key("valid/ecdsa-256.pub");
    let requests = (0..16).map(|n| {
        let req = app.post(
            &app.admin,
            &format!("/api/v1/users/racer{}/keys", n % 8),
            json!({ "key": key }),
        );
        async move { req.send().await.unwrap().status().as_u16() }
    });
    let mut statuses = futures_join_all(requests).await;
    statuses.sort();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
}

/// Runs futures concurrently on the test's runtime.
async fn futures_join_all<F: std::future::Future<Output = u16> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<u16> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// A rolling upgrade: a newer instance saved a policy field this version does not know. The
/// stored policy is still read (logins keep working), an admin's PUT with an unknown field is
/// still refused, and an edit here keeps the newer field.
#[tokio::test]
async fn a_stored_policy_with_a_field_from_a_newer_version_is_read() {
    let app = TestApp::spawn().await;
    let alice = app.user_with_token("alice", Role::Member).await;
    make_server(&app, "web1").await;
    let (_, key) = add_key(&app, &alice, "alice", "valid/ed25519.pub").await;
    let (status, g) = grant(
        &app,
        "web1",
        json!({ "username": "alice", "login": "deploy" }),
    )
    .await;
    assert_eq!(status, 201, "{g}");
    sqlx::query(
        "UPDATE policy SET settings = settings || '{\"from_a_newer_version\": {\"days\": 3}}'::jsonb",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();

    let (status, text) = authorized_keys(&app, &app.admin, "web1", "deploy").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        fingerprints(&text),
        BTreeSet::from([key["fingerprint_sha256"].as_str().unwrap().to_owned()])
    );
    let (status, policy) = answer(app.get(&app.admin, "/api/v1/policy")).await;
    assert_eq!(status, 200, "{policy}");
    assert!(policy.get("from_a_newer_version").is_none(), "{policy}");

    let (status, body) = answer(app.put(
        &app.admin,
        "/api/v1/policy",
        json!({ "min_rsa_bits": 3072, "min_rsa_bitz": 4096 }),
    ))
    .await;
    assert!((400..500).contains(&status), "{status} {body}");

    let (status, _) = answer(app.put(
        &app.admin,
        "/api/v1/policy",
        json!({ "min_rsa_bits": 3072 }),
    ))
    .await;
    assert_eq!(status, 200);
    let stored: Value = sqlx::query_scalar("SELECT settings FROM policy")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(stored["from_a_newer_version"], json!({ "days": 3 }));
    assert_eq!(stored["min_rsa_bits"], 3072);
}

#[tokio::test]
async fn authorized_keys_holds_exactly_the_granted_valid_keys_with_their_options() {
    let app = TestApp::spawn().await;
    let alice = app.user_with_token("alice", Role::Member).await;
    let bob = app.user_with_token("bob", Role::Member).await;
    make_server(&app, "web1").await;
    make_server(&app, "db1").await;
    let (_, a1) = add_key(&app, &alice, "alice", "valid/ed25519.pub").await;
    let (_, a2) = add_key(&app, &alice, "alice", "valid/rsa-4096.pub").await;
    let (_, b1) = add_key(&app, &bob, "bob", "valid/sk-ecdsa-256.pub").await;
    let (_, b2) = add_key(&app, &bob, "bob", "valid/pem-pkcs8-ecdsa-384.pub").await;
    let fp = |k: &Value| k["fingerprint_sha256"].as_str().unwrap().to_owned();

    // alice: all keys as deploy, with options; bob: one key as deploy, expiring.
    let (status, g) = grant(&app, "web1", json!({ "username": "alice", "login": "deploy", "options": "no-pty,command=\"echo \\\"hi, there\\\"\"" })).await;
    assert_eq!(status, 201, "{g}");
    let (status, _) = grant(&app, "web1", json!({ "username": "bob", "login": "deploy", "key_id": b1["id"], "expires_at": "2099-12-31T23:59:59Z" })).await;
    assert_eq!(status, 201);
    let (status, body) = grant(
        &app,
        "web1",
        json!({ "username": "bob", "login": "backup" }),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let (status, text) = authorized_keys(&app, &app.admin, "web1", "deploy").await;
    assert_eq!(status, 200);
    assert_eq!(
        fingerprints(&text),
        BTreeSet::from([fp(&a1), fp(&a2), fp(&b1)])
    );
    // b2 has no grant: neither its key text nor its id is in any line.
    assert!(!text.contains(b2["public_key"].as_str().unwrap()));
    assert!(!text.contains(b2["id"].as_str().unwrap()));
    for line in text.lines() {
        let parsed = keyportal::keys::validate_authorized_keys(
            line.as_bytes(),
            &keyportal::keys::Policy::default(),
        )
        .unwrap();
        let key = parsed[0].result.as_ref().unwrap();
        if line.contains("keyportal:alice:") {
            assert_eq!(
                key.options().to_string(),
                "no-pty,command=\"echo \\\"hi, there\\\"\""
            );
        } else {
            assert_eq!(key.options().to_string(), "expiry-time=\"20991231235959Z\"");
        }
        assert!(key.comment().starts_with("keyportal:"), "{line}");
    }
    // Narrowed to one fingerprint, as AuthorizedKeysCommand %f asks.
    let res = app
        .get(&app.admin, "/api/v1/servers/web1/authorized_keys")
        .query(&[("login", "deploy"), ("fingerprint", fp(&a2).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        fingerprints(&res.text().await.unwrap()),
        BTreeSet::from([fp(&a2)])
    );
    assert_eq!(
        authorized_keys(&app, &app.admin, "web1", "nobody").await,
        (200, String::new())
    );
    assert_eq!(
        authorized_keys(&app, &app.admin, "db1", "deploy").await,
        (200, String::new())
    );

    // Server tokens read only their own server; members read none.
    let (status, t1) = answer(app.post(&app.admin, "/api/v1/servers/web1/tokens", json!({}))).await;
    assert_eq!(status, 201);
    let web1 = t1["secret"].as_str().unwrap().to_owned();
    let (_, t2) = answer(
        app.client
            .post(app.url("/api/v1/servers/db1/tokens"))
            .bearer_auth(&app.admin),
    )
    .await;
    let db1 = t2["secret"].as_str().unwrap().to_owned();
    assert_eq!(authorized_keys(&app, &web1, "web1", "deploy").await.0, 200);
    assert_eq!(authorized_keys(&app, &db1, "web1", "deploy").await.0, 404);
    assert_eq!(authorized_keys(&app, &alice, "web1", "deploy").await.0, 404);
    assert_eq!(answer(app.get(&web1, "/api/v1/users")).await.0, 403);
    assert_eq!(answer(app.get(&web1, "/api/v1/policy")).await.0, 403);
    // Members see the servers they hold grants on, and only those.
    let (_, servers) = answer(app.get(&alice, "/api/v1/servers")).await;
    assert_eq!(servers["items"].as_array().unwrap().len(), 1);
    assert_eq!(answer(app.get(&alice, "/api/v1/servers/db1")).await.0, 404);
    assert_eq!(answer(app.get(&alice, "/api/v1/servers/web1")).await.0, 200);
}

#[tokio::test]
async fn raising_min_rsa_bits_hides_2048_bit_keys_until_it_is_lowered_again() {
    let app = TestApp::spawn().await;
    let alice = app.user_with_token("alice", Role::Member).await;
    make_server(&app, "web1").await;
    let (_, rsa) = add_key(&app, &alice, "alice", "valid/rsa-2048.pub").await;
    let (_, ed) = add_key(&app, &alice, "alice", "valid/ed25519.pub").await;
    let (status, body) = grant(
        &app,
        "web1",
        json!({ "username": "alice", "login": "deploy" }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let rsa_fp = rsa["fingerprint_sha256"].as_str().unwrap().to_owned();
    assert!(authorized_keys(&app, &app.admin, "web1", "deploy")
        .await
        .1
        .contains("ssh-rsa "));

    assert_eq!(
        answer(app.put(&alice, "/api/v1/policy", json!({ "min_rsa_bits": 3072 })))
            .await
            .0,
        403
    );
    let (status, body) = answer(app.put(
        &app.admin,
        "/api/v1/policy",
        json!({ "min_rsa_bits": 9000, "max_rsa_bits": 4096 }),
    ))
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("policy_invalid"))
    );
    let (status, policy) = answer(app.put(
        &app.admin,
        "/api/v1/policy",
        json!({ "min_rsa_bits": 3072 }),
    ))
    .await;
    assert_eq!((status, policy["min_rsa_bits"].as_u64()), (200, Some(3072)));
    assert_eq!(
        answer(app.get(&alice, "/api/v1/policy")).await.1["min_rsa_bits"],
        3072
    );

    let (_, now) = answer(app.get(
        &alice,
        &format!("/api/v1/keys/{}", rsa["id"].as_str().unwrap()),
    ))
    .await;
    assert_eq!(
        (now["status"].as_str(), now["problem"]["code"].as_str()),
        (Some("invalid"), Some("key_too_small"))
    );
    let (_, list) = answer(app.get(&alice, "/api/v1/users/alice/keys")).await;
    let statuses: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["invalid", "valid"]);
    let text = authorized_keys(&app, &app.admin, "web1", "deploy").await.1;
    assert_eq!(
        fingerprints(&text),
        BTreeSet::from([ed["fingerprint_sha256"].as_str().unwrap().to_owned()])
    );

    let (status, body) = answer(app.put(
        &app.admin,
        "/api/v1/policy",
        json!({ "min_rsa_bits": 2048 }),
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    let text = authorized_keys(&app, &app.admin, "web1", "deploy").await.1;
    assert!(fingerprints(&text).contains(&rsa_fp));
    // Every change of the policy is in the audit log.
    let (_, events) = answer(app.get(&app.admin, "/api/v1/audit?action=policy.update")).await;
    assert_eq!(events["items"].as_array().unwrap().len(), 2);
    // The 2048-bit key failed re-validation while the policy wanted more: counted.
    let invalid_on_read =
        common::metric(&app.url(""), "keyportal_keys_invalid_on_read_total").await;
    assert!(invalid_on_read >= 1.0);
}

#[tokio::test]
async fn expired_keys_expired_grants_and_disabled_users_leave_authorized_keys() {
    let app = TestApp::spawn().await;
    let alice = app.user_with_token("alice", Role::Member).await;
    let bob = app.user_with_token("bob", Role::Member).await;
    let carol = app.user_with_token("carol", Role::Member).await;
    make_server(&app, "web1").await;
    let (_, a) = add_key(&app, &alice, "alice", "valid/ed25519.pub").await;
    add_key(&app, &bob, "bob", "valid/ecdsa-256.pub").await;
    let (_, c) = add_key(&app, &carol, "carol", "valid/ecdsa-521.pub").await;
    for u in ["alice", "bob", "carol"] {
        grant(&app, "web1", json!({ "username": u, "login": "deploy" })).await;
    }
    assert_eq!(
        authorized_keys(&app, &app.admin, "web1", "deploy")
            .await
            .1
            .lines()
            .count(),
        3
    );

    // Time passes (moved in the database rather than waited for).
    sqlx::query("UPDATE ssh_keys SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(uuid::Uuid::parse_str(a["id"].as_str().unwrap()).unwrap())
        .execute(&app.db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE grants SET expires_at = now() - interval '1 second' WHERE user_id = (SELECT id FROM users WHERE username = 'bob')")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let (_, key) = answer(app.get(
        &alice,
        &format!("/api/v1/keys/{}", a["id"].as_str().unwrap()),
    ))
    .await;
    assert_eq!(key["status"], "expired");
    let text = authorized_keys(&app, &app.admin, "web1", "deploy").await.1;
    assert_eq!(
        fingerprints(&text),
        BTreeSet::from([c["fingerprint_sha256"].as_str().unwrap().to_owned()])
    );

    assert_eq!(
        answer(app.patch(
            &app.admin,
            "/api/v1/users/carol",
            json!({ "disabled": true })
        ))
        .await
        .0,
        200
    );
    assert_eq!(
        authorized_keys(&app, &app.admin, "web1", "deploy").await.1,
        ""
    );
    assert_eq!(
        answer(app.get(&carol, "/api/v1/me")).await.0,
        401,
        "a disabled user's tokens stop working"
    );
}

#[tokio::test]
async fn grants_validate_their_options_owner_and_uniqueness() {
    let app = TestApp::spawn().await;
    let alice = app.user_with_token("alice", Role::Member).await;
    let bob = app.user_with_token("bob", Role::Member).await;
    make_server(&app, "web1").await;
    let (_, bobs) = add_key(&app, &bob, "bob", "valid/ed25519.pub").await;
    // Each refused grant: its status, and its code or the field the problem names.
    let refused = [
        (
            json!({ "username": "alice", "login": "deploy", "options": "command=\"unterminated" }),
            422,
            "options_invalid",
        ),
        (
            json!({ "username": "alice", "login": "deploy", "options": "no-pty\nssh-ed25519 AAAA" }),
            422,
            "options_invalid",
        ),
        (
            json!({ "username": "alice", "login": "deploy", "key_id": bobs["id"] }),
            422,
            "key_id",
        ),
        (
            json!({ "username": "alice", "login": "Root Login" }),
            422,
            "login",
        ),
        (
            json!({ "username": "nobody", "login": "deploy" }),
            422,
            "username",
        ),
    ];
    for (body, status, what) in refused {
        let (got, problem) = grant(&app, "web1", body.clone()).await;
        let named = [
            problem["code"].as_str(),
            problem["errors"][0]["field"].as_str(),
        ];
        assert_eq!(got, status, "{body}: {problem}");
        assert!(named.contains(&Some(what)), "{body}: {problem}");
    }
    let (status, g) = grant(
        &app,
        "web1",
        json!({ "username": "alice", "login": "deploy", "options": "RESTRICT,pty" }),
    )
    .await;
    assert_eq!((status, g["options"].as_str()), (201, Some("restrict,pty")));
    assert_eq!(
        grant(
            &app,
            "web1",
            json!({ "username": "alice", "login": "deploy" })
        )
        .await
        .0,
        409
    );
    assert_eq!(
        grant(
            &app,
            "nosuch",
            json!({ "username": "alice", "login": "deploy" })
        )
        .await
        .0,
        404
    );
    assert_eq!(
        answer(app.post(
            &alice,
            "/api/v1/servers/web1/grants",
            json!({ "username": "alice", "login": "root" })
        ))
        .await
        .0,
        403
    );
    let (_, list) = answer(app.get(&app.admin, "/api/v1/servers/web1/grants")).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let id = g["id"].as_str().unwrap();
    assert_eq!(
        answer(app.delete(&alice, &format!("/api/v1/grants/{id}")))
            .await
            .0,
        403
    );
    assert_eq!(
        answer(app.delete(&app.admin, &format!("/api/v1/grants/{id}")))
            .await
            .0,
        204
    );
    assert_eq!(
        answer(app.delete(&app.admin, &format!("/api/v1/grants/{id}")))
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn servers_are_managed_by_admins_with_unique_valid_names() {
    let app = TestApp::spawn().await;
    let member = app.user_with_token("alice", Role::Member).await;
    make_server(&app, "web1.example.com").await;
    let (status, body) = answer(app.post(
        &app.admin,
        "/api/v1/servers",
        json!({ "name": "web1.example.com" }),
    ))
    .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("name_taken")));
    assert_eq!(
        answer(app.post(&app.admin, "/api/v1/servers", json!({ "name": "Web_1" })))
            .await
            .0,
        422
    );
    assert_eq!(
        answer(app.post(&member, "/api/v1/servers", json!({ "name": "mine" })))
            .await
            .0,
        403
    );
    let (status, body) = answer(app.patch(
        &app.admin,
        "/api/v1/servers/web1.example.com",
        json!({ "hostname": "10.1.2.3" }),
    ))
    .await;
    assert_eq!((status, body["hostname"].as_str()), (200, Some("10.1.2.3")));
    assert_eq!(
        answer(app.delete(&app.admin, "/api/v1/servers/web1.example.com"))
            .await
            .0,
        204
    );
    assert_eq!(
        answer(app.get(&app.admin, "/api/v1/servers/web1.example.com"))
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn importing_an_authorized_keys_file_reports_every_line_and_adds_the_valid_ones() {
    let app = TestApp::spawn().await;
    let alice = app.user_with_token("alice", Role::Member).await;
    let bob = app.user_with_token("bob", Role::Member).await;
    add_key(&app, &bob, "bob", "valid/ecdsa-256.pub").await;
    let file = format!(
        "# alice's keys\n{}\nno-pty {}\n{}\n{}\n{}\n",
        corpus_key("valid/ed25519.pub").trim(),
        corpus_key("valid/rsa-3072.pub").trim(),
        corpus_key("invalid/rsa-1024.pub").trim(),
        corpus_key("valid/ecdsa-256.pub").trim(),
        corpus_key("valid/ed25519.pub").trim(),
    );
    let res = app
        .client
        .post(app.url("/api/v1/users/alice/keys/import"))
        .bearer_auth(&alice)
        .body(file)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let report: Value = res.json().await.unwrap();
    assert_eq!(report["added"], 2);
    let lines: Vec<(u64, &str, Option<&str>)> = report["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["line"].as_u64().unwrap(),
                l["status"].as_str().unwrap(),
                l["code"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            (2, "added", None),
            (3, "added", None),
            (4, "rejected", Some("key_too_small")),
            (5, "duplicate", Some("duplicate_key")),
            (6, "duplicate", Some("duplicate_key")),
        ]
    );
    let (_, keys) = answer(app.get(&alice, "/api/v1/users/alice/keys")).await;
    assert_eq!(keys["items"].as_array().unwrap().len(), 2);
    // Each added line names the stored key it became.
    for line in report["lines"].as_array().unwrap() {
        if line["status"] == "added" {
            let id = line["key_id"]
                .as_str()
                .expect("an added line has its key id");
            let (status, key) = answer(app.get(&alice, &format!("/api/v1/keys/{id}"))).await;
            assert_eq!(
                (status, &key["fingerprint_sha256"]),
                (200, &line["fingerprint_sha256"])
            );
        }
    }
    // A private key pasted into the import is refused whole.
    let res = app
        .client
        .post(app.url("/api/v1/users/alice/keys/import"))
        .bearer_auth(&alice)
        .body(corpus_key("invalid/private-pem-rsa.pub"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "private_key");
}

#[tokio::test]
async fn personal_tokens_are_shown_once_listed_and_revoked() {
    let app = TestApp::spawn().await;
    let alice = app.user_with_token("alice", Role::Member).await;
    // A token cannot mint tokens; a browser session can.
    let (status, refused) =
        answer(app.post(&alice, "/api/v1/tokens", json!({ "name": "laptop" }))).await;
    assert_eq!(status, 403);
    assert_eq!(refused["code"], "token_cannot_create_tokens");
    app.services
        .update_user(
            &keyportal::service::Ctx::command_line(),
            "alice",
            keyportal::service::users::UserPatch {
                password: Some("correct horse battery staple".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Setting her password revoked her old token: make a new one for the rest of the test.
    let alice = app
        .services
        .create_token_for(
            &keyportal::service::Ctx::command_line(),
            "alice",
            "cli",
            None,
        )
        .await
        .unwrap()
        .secret;
    let mut browser = app.browser();
    let csrf = browser
        .signed_in("alice", "correct horse battery staple")
        .await;
    let made = browser
        .api(
            reqwest::Method::POST,
            "/api/v1/tokens",
            Some(json!({ "name": "laptop" })),
            Some(&csrf),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let made: Value = serde_json::from_str(&made.body).unwrap();
    let secret = made["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("kp_"));
    assert_eq!(answer(app.get(&secret, "/api/v1/me")).await.0, 200);
    let (_, list) = answer(app.get(&alice, "/api/v1/tokens")).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert!(
        !list.to_string().contains(&secret),
        "the secret is never shown again"
    );
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM api_tokens WHERE secret_hash = convert_to($1, 'UTF8')",
    )
    .bind(&secret)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(stored, 0, "only a hash is stored");
    let id = made["token"]["id"].as_str().unwrap();
    let bob = app.user_with_token("bob", Role::Member).await;
    assert_eq!(
        answer(app.delete(&bob, &format!("/api/v1/tokens/{id}")))
            .await
            .0,
        404
    );
    assert_eq!(
        answer(app.delete(&alice, &format!("/api/v1/tokens/{id}")))
            .await
            .0,
        204
    );
    assert_eq!(answer(app.get(&secret, "/api/v1/me")).await.0, 401);
    let res = browser
        .api(
            reqwest::Method::POST,
            "/api/v1/tokens",
            Some(json!({ "name": "" })),
            Some(&csrf),
        )
        .await;
    assert_eq!(res.status, 422, "{}", res.body);
    assert!(res.body.contains(r#""field":"name""#), "{}", res.body);
}

#[tokio::test]
async fn every_change_is_audited_with_actor_and_request_id() {
    let app = TestApp::spawn().await;
    let res = app
        .post(&app.admin, "/api/v1/servers", json!({ "name": "audited" }))
        .header("x-request-id", "req-audit-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let (status, events) = answer(app.get(&app.admin, "/api/v1/audit?action=server.create")).await;
    assert_eq!(status, 200);
    let e = &events["items"][0];
    assert_eq!(
        (
            e["actor"].as_str(),
            e["target"].as_str(),
            e["request_id"].as_str()
        ),
        (Some("root"), Some("server:audited"), Some("req-audit-42"))
    );
    let member = app.user_with_token("alice", Role::Member).await;
    assert_eq!(answer(app.get(&member, "/api/v1/audit")).await.0, 403);
}

#[tokio::test]
async fn an_oversized_body_is_a_413_problem_document() {
    let app = TestApp::spawn().await;
    let big = "x".repeat(2 * 1024 * 1024);
    let (status, body) =
        answer(app.post(&app.admin, "/api/v1/keys/validate", json!({ "key": big }))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("payload_too_large"))
    );
}

/// More than the default quota of 100 keys per user.
async fn raise_key_quota(app: &TestApp) {
    let mut policy = answer(app.get(&app.admin, "/api/v1/policy")).await.1;
    policy["max_keys_per_user"] = json!(1000);
    assert_eq!(
        answer(app.put(&app.admin, "/api/v1/policy", policy))
            .await
            .0,
        200
    );
}

/// The import report of `lines` as one file.
async fn import_keys(app: &TestApp, token: &str, user: &str, lines: &[String]) -> Value {
    let res = app
        .client
        .post(app.url(&format!("/api/v1/users/{user}/keys/import")))
        .bearer_auth(token)
        .body(lines.join("\n"))
        .send()
        .await
        .unwrap();
    res.json().await.unwrap()
}

#[tokio::test]
async fn long_authorized_keys_lists_keep_each_verdict_with_its_own_key() {
    let app = TestApp::spawn().await;
    let bulk = app.user_with_token("bulk", Role::Member).await;
    let other = app.user_with_token("other", Role::Member).await;
    make_server(&app, "web1").await;
    raise_key_quota(&app).await;
    let report = import_keys(&app, &bulk, "bulk", &common::generated_ed25519_keys(300)).await;
    assert_eq!(report["added"], 300);
    let mut others = BTreeSet::new();
    for file in [
        "valid/rsa-2048.pub",
        "valid/ecdsa-256.pub",
        "valid/ecdsa-384.pub",
        "valid/sk-ecdsa-256.pub",
    ] {
        let (status, k) = add_key(&app, &other, "other", file).await;
        assert_eq!(status, 201);
        others.insert(k["fingerprint_sha256"].as_str().unwrap().to_owned());
    }
    let (status, body) = grant(
        &app,
        "web1",
        json!({ "username": "bulk", "login": "deploy" }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = grant(
        &app,
        "web1",
        json!({ "username": "other", "login": "deploy" }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let text = authorized_keys(&app, &app.admin, "web1", "deploy").await.1;
    assert_eq!(text.lines().count(), 304);

    let no_ed25519 = json!({ "allowed_algorithms": ["ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "sk-ecdsa-sha2-nistp256@openssh.com", "ssh-rsa"] });
    assert_eq!(
        answer(app.put(&app.admin, "/api/v1/policy", no_ed25519))
            .await
            .0,
        200
    );
    let text = authorized_keys(&app, &app.admin, "web1", "deploy").await.1;
    assert_eq!(fingerprints(&text), others);
}

/// The whole list is validated and written in batches of 256 rows as they arrive, then put in
/// order. Here amy's keys are reached by two group grants (the same rank: the older one's
/// options win) and one of them by a one-key grant too; bob's by his own grant and a group
/// grant; one of bob's keys is blocklisted. 1,201 rows, which PostgreSQL returns a grant at a
/// time, so a key's rows land in different batches (all 600 keys' did, in 5 batches, when
/// this test was written; the service's unit test splits them by hand). Each valid key is
/// written once, with the most specific grant's options; users by name, each user's keys by
/// age, then id (amy's ages run against her ids).
#[tokio::test]
async fn a_long_list_writes_each_key_once_in_order_across_batches() {
    let app = TestApp::spawn().await;
    let amy = app.user_with_token("amy", Role::Member).await;
    let bob = app.user_with_token("bob", Role::Member).await;
    make_server(&app, "web1").await;
    raise_key_quota(&app).await;
    let keys = common::generated_ed25519_keys(600);
    // bob imports first: the order written is by name, not by when keys arrived.
    let mut key_ids: std::collections::HashMap<String, (String, String)> = Default::default();
    for (user, token, part) in [("bob", &bob, &keys[300..]), ("amy", &amy, &keys[..300])] {
        let report = import_keys(&app, token, user, part).await;
        assert_eq!(report["added"], 300, "{report}");
        for (line, key) in report["lines"].as_array().unwrap().iter().zip(part) {
            let id = line["key_id"].as_str().unwrap().to_owned();
            let public_key = key.rsplit_once(' ').unwrap().0.to_owned();
            key_ids.insert(id, (user.to_owned(), public_key));
        }
    }
    // One import shares one age; amy's keys get ages that run against their ids.
    sqlx::query(
        "UPDATE ssh_keys k SET created_at = k.created_at - make_interval(secs => o.n)
           FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM ssh_keys
                  WHERE user_id = (SELECT id FROM users WHERE username = 'amy')) o
          WHERE k.id = o.id",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    let (status, entry) = answer(app.post(
        &app.admin,
        "/api/v1/blocklist",
        json!({ "key": keys[300], "reason": "laptop stolen" }),
    ))
    .await;
    assert_eq!(status, 201, "{entry}");

    let post = |path: &str, body: Value| app.post(&app.admin, path, body);
    for (group, members) in [("ops", &["amy", "bob"][..]), ("ops2", &["amy"][..])] {
        assert_eq!(
            answer(post("/api/v1/groups", json!({ "name": group })))
                .await
                .0,
            201
        );
        for user in members {
            let path = format!("/api/v1/groups/{group}/members/{user}");
            assert_eq!(answer(app.put(&app.admin, &path, json!(null))).await.0, 200);
        }
    }
    let (_, amy_keys) = answer(app.get(&amy, "/api/v1/users/amy/keys?limit=1")).await;
    let amys_first = amy_keys["items"][0]["id"].as_str().unwrap().to_owned();
    for body in [
        json!({ "group": "ops", "login": "deploy", "options": "no-agent-forwarding" }),
        json!({ "group": "ops2", "login": "deploy", "options": "no-X11-forwarding" }),
        json!({ "username": "bob", "login": "deploy", "options": "no-pty" }),
        json!({ "username": "amy", "login": "deploy", "key_id": amys_first, "options": "no-port-forwarding" }),
    ] {
        let (status, body) = grant(&app, "web1", body).await;
        assert_eq!(status, 201, "{body}");
    }

    let (status, text) = authorized_keys(&app, &app.admin, "web1", "deploy").await;
    assert_eq!(status, 200);
    let mut written = Vec::new();
    for line in text.lines() {
        let (options, rest) = line.split_once(' ').unwrap();
        let (public_key, comment) = rest.rsplit_once(' ').unwrap();
        let (user, id) = comment
            .strip_prefix("keyportal:")
            .and_then(|c| c.split_once(':'))
            .unwrap_or_else(|| panic!("comment of {line}"));
        let (owner, key) = &key_ids[id];
        assert_eq!((user, public_key), (owner.as_str(), key.as_str()), "{line}");
        let expected = match user {
            "bob" => "no-pty",
            _ if id == amys_first => "no-port-forwarding",
            _ => "no-agent-forwarding",
        };
        assert_eq!(options, expected, "{line}");
        written.push(uuid::Uuid::parse_str(id).unwrap());
    }
    let stored: Vec<(String, time::OffsetDateTime, uuid::Uuid, bool)> = sqlx::query_as(
        "SELECT u.username, k.created_at, k.id, k.blocklist_id IS NOT NULL
           FROM ssh_keys k JOIN users u ON u.id = k.user_id",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    let mut expected: Vec<_> = stored.into_iter().filter(|k| !k.3).collect();
    expected.sort();
    let expected: Vec<uuid::Uuid> = expected.into_iter().map(|k| k.2).collect();
    assert_eq!(expected.len(), 599, "one key blocklisted");
    assert_eq!(
        written, expected,
        "users by name, their keys by age, then id"
    );
    let mut amys_by_id: Vec<uuid::Uuid> = expected[..300].to_vec();
    amys_by_id.sort();
    assert_ne!(
        amys_by_id,
        expected[..300],
        "amy's ages run against her ids"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_with_its_errors() {
    let app = TestApp::spawn().await;
    let (status, doc) = answer(app.client.get(app.url("/api/openapi.json"))).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let routes = [
        ("get", "/api/v1/me"),
        ("get", "/api/v1/users"),
        ("post", "/api/v1/users"),
        ("get", "/api/v1/users/{username}"),
        ("patch", "/api/v1/users/{username}"),
        ("delete", "/api/v1/users/{username}"),
        ("get", "/api/v1/users/{username}/keys"),
        ("post", "/api/v1/users/{username}/keys"),
        ("post", "/api/v1/users/{username}/keys/import"),
        ("get", "/api/v1/keys/{id}"),
        ("delete", "/api/v1/keys/{id}"),
        ("post", "/api/v1/keys/validate"),
        ("get", "/api/v1/servers"),
        ("post", "/api/v1/servers"),
        ("get", "/api/v1/servers/{name}"),
        ("patch", "/api/v1/servers/{name}"),
        ("delete", "/api/v1/servers/{name}"),
        ("get", "/api/v1/servers/{name}/grants"),
        ("post", "/api/v1/servers/{name}/grants"),
        ("delete", "/api/v1/grants/{id}"),
        ("get", "/api/v1/servers/{name}/authorized_keys"),
        ("post", "/api/v1/servers/{name}/tokens"),
        ("get", "/api/v1/policy"),
        ("put", "/api/v1/policy"),
        ("get", "/api/v1/audit"),
        ("get", "/api/v1/tokens"),
        ("post", "/api/v1/tokens"),
        ("delete", "/api/v1/tokens/{id}"),
    ];
    for (method, path) in routes {
        let op = &doc["paths"][path][method];
        assert!(
            op.is_object(),
            "{method} {path} is missing from the OpenAPI document"
        );
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|k| k.starts_with('2')),
            "{method} {path}: no success response"
        );
        for code in ["401", "404"] {
            let problem = &responses[code]["content"]["application/problem+json"]["schema"]["$ref"];
            assert_eq!(
                problem, "#/components/schemas/Problem",
                "{method} {path}: {code}"
            );
        }
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "KeyView",
        "UserView",
        "ServerView",
        "GrantView",
        "Policy",
        "Problem",
        "KeyErrorCode",
        "ImportReport",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // The stable key codes are all listed.
    let codes = schemas["KeyErrorCode"]["enum"].as_array().unwrap();
    assert_eq!(codes.len(), keyportal::keys::KeyErrorCode::ALL.len());
}

/// OpenSSH 10.5's hybrid keys through the API: imported with a per-line report (its
/// certificate refused), listed with their algorithm and size, served in authorized_keys and
/// found by the fingerprint lookup.
#[tokio::test]
async fn openssh_10_5_hybrid_keys_go_through_import_list_and_authorized_keys() {
    let app = TestApp::spawn().await;
    let quinn = app.user_with_token("quinn", Role::Member).await;
    make_server(&app, "web1").await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/openssh-10.5");
    let file: String = [
        "sshkey-mldsa44_ed25519_1.pub",
        "sshkey-mldsa44_ed25519_1-cert.pub",
        "sshkey-mldsa44_ed25519_2.pub",
    ]
    .iter()
    .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
    .collect();
    let res = app
        .client
        .post(app.url("/api/v1/users/quinn/keys/import"))
        .bearer_auth(&quinn)
        .body(file)
        .send()
        .await
        .unwrap();
    let report: Value = res.json().await.unwrap();
    assert_eq!(report["added"], 2, "{report}");
    let statuses: Vec<(&str, Option<&str>)> = report["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["status"].as_str().unwrap(), l["code"].as_str()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("added", None),
            ("rejected", Some("certificate_not_allowed")),
            ("added", None)
        ]
    );
    let (_, list) = answer(app.get(&quinn, "/api/v1/users/quinn/keys")).await;
    for k in list["items"].as_array().unwrap() {
        assert_eq!(
            (
                k["algorithm"].as_str(),
                k["bits"].as_i64(),
                k["status"].as_str()
            ),
            (
                Some("ssh-mldsa44-ed25519@openssh.com"),
                Some(256),
                Some("valid")
            )
        );
    }
    let (status, body) = grant(
        &app,
        "web1",
        json!({ "username": "quinn", "login": "deploy" }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (_, text) = authorized_keys(&app, &app.admin, "web1", "deploy").await;
    assert_eq!(text.lines().count(), 2);
    assert!(text
        .lines()
        .all(|l| l.starts_with("ssh-mldsa44-ed25519@openssh.com AAAA")));
    let fp = std::fs::read_to_string(dir.join("sshkey-mldsa44_ed25519_2.fp")).unwrap();
    let res = app
        .get(
            &app.admin,
            &format!(
                "/api/v1/servers/web1/authorized_keys?login=deploy&fingerprint={}",
                fp.trim().replace('+', "%2B").replace('/', "%2F")
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let one = res.text().await.unwrap();
    let want = std::fs::read_to_string(dir.join("sshkey-mldsa44_ed25519_2.pub")).unwrap();
    let blob = |text: &str| text.split_whitespace().nth(1).map(str::to_owned);
    assert_eq!(one.lines().count(), 1, "{one}");
    assert_eq!(blob(&one), blob(&want));
}

/// Two imports of the same keys for two users at once: each key is registered exactly once,
/// and each report calls every other line a duplicate, whichever request got there first.
#[tokio::test]
async fn concurrent_imports_of_the_same_keys_register_each_key_once() {
    let app = TestApp::spawn().await;
    let cli = keyportal::service::Ctx::command_line();
    let mut policy = app.services.policy(&cli).await.unwrap();
    policy.max_keys_per_user = 5000;
    app.services.set_policy(&cli, policy).await.unwrap();
    let ann = app.user_with_token("ann", Role::Member).await;
    let ben = app.user_with_token("ben", Role::Member).await;
    let file = common::generated_ed25519_keys(3000).join("\n");
    let import = |token: String, user: &'static str| {
        let req = app
            .client
            .post(app.url(&format!("/api/v1/users/{user}/keys/import")))
            .bearer_auth(token)
            .body(file.clone());
        async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 200);
            res.json::<Value>().await.unwrap()
        }
    };
    let (a, b) = tokio::join!(import(ann, "ann"), import(ben, "ben"));
    let added = |r: &Value| r["added"].as_u64().unwrap();
    assert_eq!(added(&a) + added(&b), 3000, "{} + {}", added(&a), added(&b));
    for report in [&a, &b] {
        let duplicates = report["lines"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["status"] == "duplicate" && l["code"] == "duplicate_key")
            .count() as u64;
        assert_eq!(added(report) + duplicates, 3000);
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM ssh_keys")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(stored, 3000);
}

/// sshd's `%f` lookup records the key as used, but writes at most once a minute per key: the
/// login path reads `last_used_at` with the key and skips the write when it is recent.
#[tokio::test]
async fn a_fingerprint_lookup_records_use_at_most_once_a_minute() {
    let app = TestApp::spawn().await;
    common::alice_granted_on_web1(&app.services).await;
    let (code, made) = answer(app.post(&app.admin, "/api/v1/servers/web1/tokens", json!({}))).await;
    assert_eq!(code, 201, "{made}");
    let server = made["secret"].as_str().unwrap().to_owned();
    let fingerprint: String = sqlx::query_scalar("SELECT fingerprint_sha256 FROM ssh_keys")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let lookup = || async {
        let res = app
            .client
            .get(app.url("/api/v1/servers/web1/authorized_keys"))
            .query(&[("login", "deploy"), ("fingerprint", fingerprint.as_str())])
            .bearer_auth(&server)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.text().await.unwrap().lines().count(), 1);
    };
    let used = || async {
        sqlx::query_scalar::<_, Option<time::OffsetDateTime>>("SELECT last_used_at FROM ssh_keys")
            .fetch_one(&app.db.pool)
            .await
            .unwrap()
    };
    assert_eq!(used().await, None);
    lookup().await;
    let first = used().await.expect("the lookup recorded the key as used");
    lookup().await;
    assert_eq!(
        used().await,
        Some(first),
        "a second lookup within the minute writes nothing"
    );
    sqlx::query("UPDATE ssh_keys SET last_used_at = now() - interval '2 minutes'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let stale = used().await.unwrap();
    lookup().await;
    assert!(used().await.unwrap() > stale, "an old mark is renewed");
}

/// A server's own token or an admin's, with a fingerprint, is checked by the statement that
/// reads the key (`Services::authorized_keys_with_token`). Both must give the answer of the
/// two-statement path, byte for byte, for every kind of key and grant.
#[tokio::test]
async fn the_one_statement_lookup_answers_as_the_two_statement_path_and_the_whole_list() {
    let app = TestApp::spawn().await;
    app.services
        .create_server(&keyportal::service::Ctx::command_line(), "web1", None, None)
        .await
        .unwrap();
    let mut keys = Vec::new();
    for (user, file) in [
        ("alice", "valid/ed25519.pub"),
        ("alice", "valid/rsa-4096.pub"),
        ("alice", "valid/rsa-2048.pub"),
        ("alice", "valid/ecdsa-521.pub"),
        ("bob", "valid/sk-ecdsa-256.pub"),
        ("carol", "valid/ecdsa-384.pub"),
        ("dave", "valid/rsa-3072.pub"),
    ] {
        if !keys.iter().any(|(u, _): &(&str, Value)| *u == user) {
            make_user(&app, user).await;
        }
        let (status, key) = add_key(&app, &app.admin, user, file).await;
        assert_eq!(status, 201, "{file}: {key}");
        keys.push((user, key));
    }
    let id = |i: usize| keys[i].1["id"].clone();
    let fp = |i: usize| keys[i].1["fingerprint_sha256"].as_str().unwrap().to_owned();
    for body in [
        // alice: every key as deploy, and her ed25519 key alone with a command (the more
        // specific grant's options are the ones written).
        json!({ "username": "alice", "login": "deploy", "options": "no-pty" }),
        json!({ "username": "alice", "login": "deploy", "key_id": id(0), "options": "command=\"uptime\"" }),
        json!({ "username": "bob", "login": "deploy" }),
        json!({ "username": "carol", "login": "deploy" }),
        json!({ "username": "alice", "login": "backup", "expires_at": "2099-12-31T23:59:59Z" }),
    ] {
        let (status, made) = grant(&app, "web1", body).await;
        assert_eq!(status, 201, "{made}");
    }
    let db = &app.db.pool;
    // alice's ecdsa-521 key has expired; bob's grant has; carol is disabled; the policy no
    // longer admits 2048-bit RSA; dave has no grant.
    let run = |sql: &'static str| async move { sqlx::query(sql).execute(db).await.unwrap() };
    run("UPDATE ssh_keys SET expires_at = now() - interval '1 hour' WHERE algorithm = 'ecdsa-sha2-nistp521'").await;
    run("UPDATE grants SET expires_at = now() - interval '1 hour' WHERE user_id = (SELECT id FROM users WHERE username = 'bob')").await;
    run("UPDATE users SET disabled = true WHERE username = 'carol'").await;
    let (status, _) = answer(app.put(
        &app.admin,
        "/api/v1/policy",
        json!({ "min_rsa_bits": 3072 }),
    ))
    .await;
    assert_eq!(status, 200);
    let server = app
        .services
        .create_server_token(&keyportal::service::Ctx::command_line(), "web1", None, None)
        .await
        .unwrap()
        .secret;

    let lookup = |token: String, login: &'static str, fingerprint: String| {
        let req = app
            .client
            .get(app.url("/api/v1/servers/web1/authorized_keys"))
            .query(&[("login", login), ("fingerprint", fingerprint.as_str())])
            .bearer_auth(token);
        async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
        }
    };
    let unknown = format!("SHA256:{}", "A".repeat(43));
    let mut answered = Vec::new();
    for login in ["deploy", "backup", "nobody"] {
        // The whole list, read by a statement of its own: the lines a lookup must agree with.
        let whole = app
            .services
            .authorized_keys(
                &keyportal::service::Ctx::command_line(),
                "web1",
                login,
                None,
            )
            .await
            .unwrap();
        for (i, key) in keys.iter().enumerate() {
            let id = key.1["id"].as_str().unwrap();
            let in_list: String = whole
                .lines()
                .filter(|l| l.ends_with(id))
                .map(|l| format!("{l}\n"))
                .collect();
            let (status, text) = lookup(server.clone(), login, fp(i)).await;
            assert_eq!((status, text), (200, in_list), "{login} key {i}");
        }
        for fingerprint in (0..keys.len()).map(fp).chain([unknown.clone()]) {
            // The service's own answer to the command line: the two-statement path.
            let two_statements = app
                .services
                .authorized_keys(
                    &keyportal::service::Ctx::command_line(),
                    "web1",
                    login,
                    Some(&fingerprint),
                )
                .await
                .unwrap();
            let admins = lookup(app.admin.clone(), login, fingerprint.clone()).await;
            let servers = lookup(server.clone(), login, fingerprint.clone()).await;
            assert_eq!(servers, (200, two_statements), "{login} {fingerprint}");
            assert_eq!(admins, servers, "{login} {fingerprint}");
            if !servers.1.is_empty() {
                answered.push((login, fingerprint, servers.1));
            }
        }
    }
    // What was written: alice's ed25519 key with its own grant's command, her RSA-4096 key
    // with the all-keys grant's no-pty, and both as backup until the grant's expiry.
    let line = |i: usize, options: &str| {
        let key = &keys[i].1;
        format!(
            "{options} {} keyportal:alice:{}\n",
            key["public_key"].as_str().unwrap(),
            key["id"].as_str().unwrap()
        )
    };
    let expiry = "expiry-time=\"20991231235959Z\"";
    assert_eq!(
        answered,
        [
            ("deploy", fp(0), line(0, "command=\"uptime\"")),
            ("deploy", fp(1), line(1, "no-pty")),
            ("backup", fp(0), line(0, expiry)),
            ("backup", fp(1), line(1, expiry)),
        ]
    );
    // The server's lookups recorded the keys they wrote as used; the admin's did not.
    let used: Vec<String> = sqlx::query_scalar(
        "SELECT fingerprint_sha256 FROM ssh_keys WHERE last_used_at IS NOT NULL ORDER BY created_at",
    )
    .fetch_all(db)
    .await
    .unwrap();
    assert_eq!(used, [fp(0), fp(1)]);
}

/// The login path checks its token in the statement that reads the key; every token that
/// must not read it still gets exactly the answer any other route gives.
#[tokio::test]
async fn the_login_lookup_refuses_every_token_that_may_not_read_it() {
    let app = TestApp::spawn().await;
    let cli = keyportal::service::Ctx::command_line();
    let s = &app.services;
    common::alice_granted_on_web1(s).await;
    s.create_server(&cli, "db1", None, None).await.unwrap();
    let db = &app.db.pool;
    let fingerprint: String = sqlx::query_scalar("SELECT fingerprint_sha256 FROM ssh_keys")
        .fetch_one(db)
        .await
        .unwrap();
    let web1 = s
        .create_server_token(&cli, "web1", None, None)
        .await
        .unwrap();
    let db1 = s
        .create_server_token(&cli, "db1", None, None)
        .await
        .unwrap()
        .secret;
    let revoked = s
        .create_server_token(&cli, "web1", None, None)
        .await
        .unwrap();
    s.revoke_server_token(&cli, "web1", revoked.token.id)
        .await
        .unwrap();
    let expired = s
        .create_server_token(&cli, "web1", None, None)
        .await
        .unwrap();
    sqlx::query("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(expired.token.id)
        .execute(db)
        .await
        .unwrap();
    let member = app.user_with_token("mallory", Role::Member).await;
    let other_admin = app.user_with_token("root2", Role::Admin).await;

    let lookup = |token: &str, server: &str, query: &str| {
        let req = app
            .client
            .get(app.url(&format!("/api/v1/servers/{server}/authorized_keys?{query}")))
            .bearer_auth(token);
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.text().await.unwrap())
        }
    };
    let q = format!(
        "login=deploy&fingerprint={}",
        fingerprint.replace('+', "%2B").replace('/', "%2F")
    );
    let code = |(status, body): (u16, String)| {
        let code = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_owned));
        (status, code)
    };
    let refused = |what: &str| (401, Some(what.to_owned()));
    assert_eq!(lookup(&web1.secret, "web1", &q).await.1.lines().count(), 1);
    assert_eq!(lookup(&other_admin, "web1", &q).await.1.lines().count(), 1);
    // Both tokens were recorded as used by the statement that checked them.
    let used: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM api_tokens WHERE last_used_at IS NOT NULL
            AND (id = $1 OR user_id = (SELECT id FROM users WHERE username = 'root2'))",
    )
    .bind(web1.token.id)
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!(used, 2);
    for (token, server, want) in [
        ("kp_not_a_token", "web1", refused("unauthenticated")),
        (
            "not even shaped like one",
            "web1",
            refused("unauthenticated"),
        ),
        (revoked.secret.as_str(), "web1", refused("unauthenticated")),
        (expired.secret.as_str(), "web1", refused("unauthenticated")),
        (db1.as_str(), "web1", (404, Some("not_found".to_owned()))),
        (
            web1.secret.as_str(),
            "nosuch",
            (404, Some("not_found".to_owned())),
        ),
        (
            other_admin.as_str(),
            "nosuch",
            (404, Some("not_found".to_owned())),
        ),
        (member.as_str(), "web1", (404, Some("not_found".to_owned()))),
        (
            member.as_str(),
            "nosuch",
            (404, Some("not_found".to_owned())),
        ),
        (db1.as_str(), "nosuch", (404, Some("not_found".to_owned()))),
    ] {
        assert_eq!(
            code(lookup(token, server, &q).await),
            want,
            "{token} on {server}"
        );
    }
    // An admin disabled in the database (not through the API, which would also revoke the
    // token) is refused by the same statement.
    sqlx::query("UPDATE users SET disabled = true WHERE username = 'root2'")
        .execute(db)
        .await
        .unwrap();
    assert_eq!(
        code(lookup(&other_admin, "web1", &q).await),
        refused("unauthenticated")
    );
    // A request is authenticated before its query is judged.
    let bad_query = format!("{q}&color=blue");
    assert_eq!(
        code(lookup("kp_not_a_token", "web1", &bad_query).await),
        refused("unauthenticated")
    );
    assert_eq!(
        code(lookup(&web1.secret, "web1", &bad_query).await),
        (400, Some("invalid_query".to_owned()))
    );
}

/// The lookup by fingerprint is a few index probes whatever the statistics say. With keys held
/// only by the oldest users, PostgreSQL merge-joined the key with `users` and walked the users'
/// primary key up to the owner, so a newer user's key cost a scan of every user (13-25 ms at
/// 100,000 users). Each statement's plan, generic (what a statement prepared by the pool runs
/// once PostgreSQL settles on it) and custom, must read a handful of rows for the newest user.
#[tokio::test]
async fn the_lookup_by_fingerprint_reads_a_handful_of_rows_for_a_key_of_the_newest_user() {
    use keyportal::store::grants::{GRANTED_KEY, GRANTED_KEY_FOR_TOKEN};
    use sha2::Digest;
    let app = TestApp::spawn().await;
    let db = &app.db.pool;
    let cli = keyportal::service::Ctx::command_line();
    app.services
        .create_server(&cli, "web1", None, None)
        .await
        .unwrap();
    // 100,000 users; the oldest 20 hold 50 keys each, and a newer one holds one.
    sqlx::query("INSERT INTO users (username) SELECT 'u' || lpad(i::text, 5, '0') FROM generate_series(0, 99999) i")
        .execute(db)
        .await
        .unwrap();
    let keys = common::generated_ed25519_keys(1001);
    for (n, batch) in keys[..1000].chunks(50).enumerate() {
        let res = app
            .client
            .post(app.url(&format!("/api/v1/users/u{n:05}/keys/import")))
            .bearer_auth(&app.admin)
            .body(batch.join("\n"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    // Statistics from before the newest user came: the keys' owners are all among the oldest.
    sqlx::query("ANALYZE").execute(db).await.unwrap();
    make_user(&app, "newest").await;
    let (status, key) = answer(app.post(
        &app.admin,
        "/api/v1/users/newest/keys",
        json!({ "key": keys[1000] }),
    ))
    .await;
    assert_eq!(status, 201, "{key}");
    let (status, _) = grant(
        &app,
        "web1",
        json!({ "username": "newest", "login": "deploy" }),
    )
    .await;
    assert_eq!(status, 201);
    let token = app
        .services
        .create_server_token(&cli, "web1", None, None)
        .await
        .unwrap()
        .secret;

    let fingerprint = key["fingerprint_sha256"].as_str().unwrap();
    let hash = sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    let mut conn = db.acquire().await.unwrap();
    for (name, types, statement, args) in [
        (
            "by_fingerprint",
            "text, text, text",
            GRANTED_KEY,
            String::new(),
        ),
        (
            "with_token",
            "text, text, text, bytea",
            GRANTED_KEY_FOR_TOKEN,
            format!(", '\\x{hash}'"),
        ),
    ] {
        sqlx::raw_sql(&format!("PREPARE {name}({types}) AS {statement}"))
            .execute(&mut *conn)
            .await
            .unwrap();
        for mode in ["force_generic_plan", "force_custom_plan"] {
            sqlx::raw_sql(&format!("SET plan_cache_mode = {mode}"))
                .execute(&mut *conn)
                .await
                .unwrap();
            let plan: Value = sqlx::query_scalar(&format!(
                "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {name}('web1', 'deploy', '{fingerprint}'{args})"
            ))
            .fetch_one(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{name} {mode}: {e}"));
            let plan = &plan[0]["Plan"];
            // The newest user's key is found, once.
            assert_eq!(plan["Actual Rows"], 1, "{name} {mode}: {plan:#}");
            let mut widest = (0, String::new());
            let mut nodes = vec![plan];
            while let Some(node) = nodes.pop() {
                let read = node["Actual Rows"].as_u64().unwrap_or(0)
                    * node["Actual Loops"].as_u64().unwrap_or(1)
                    + node["Rows Removed by Filter"].as_u64().unwrap_or(0);
                if read > widest.0 {
                    widest = (
                        read,
                        format!("{} {}", node["Node Type"], node["Relation Name"]),
                    );
                }
                nodes.extend(node["Plans"].as_array().into_iter().flatten());
            }
            assert!(
                widest.0 <= 20,
                "{name} {mode}: {widest:?} rows in one node: {plan:#}"
            );
        }
    }
}

/// `/metrics` as a person reading it would: the value of each series by its full name.
#[tokio::test]
async fn metrics_show_the_build_the_database_and_how_servers_login_questions_were_answered() {
    let app = TestApp::spawn().await;
    let s = &app.services;
    common::alice_granted_on_web1(s).await;
    let server_token = s
        .create_server_token(&keyportal::service::Ctx::command_line(), "web1", None, None)
        .await
        .unwrap()
        .secret;
    let before = common::metrics(&app.url("")).await;
    let build = format!(
        "keyportal_build_info{{version=\"{}\",revision=\"{}\"}}",
        env!("CARGO_PKG_VERSION"),
        keyportal::GIT_REVISION
    );
    assert_eq!(before.get(&build), Some(&1.0), "{before:?}");
    assert_eq!(before.get("keyportal_database_up"), Some(&1.0));

    // Two answers, one refused token, one unknown server.
    for _ in 0..2 {
        let (status, _) = authorized_keys(&app, &server_token, "web1", "deploy").await;
        assert_eq!(status, 200);
    }
    let (status, _) = authorized_keys(&app, "kp_not_a_token", "web1", "deploy").await;
    assert_eq!(status, 401);
    let (status, _) = authorized_keys(&app, &app.admin, "nosuch", "deploy").await;
    assert_eq!(status, 404);
    let after = common::metrics(&app.url("")).await;
    let delta = |outcome: &str| {
        let name = format!(
            "keyportal_login_answers_total{{endpoint=\"authorized_keys\",outcome=\"{outcome}\"}}"
        );
        after[&name] - before[&name]
    };
    assert_eq!(
        (delta("answered"), delta("refused"), delta("failed")),
        (2.0, 2.0, 0.0)
    );

    // The database gone: the gauge says so.
    app.db.pool.close().await;
    let down = common::metrics(&app.url("")).await;
    assert_eq!(down.get("keyportal_database_up"), Some(&0.0));
}

#[tokio::test]
async fn every_metric_the_readmes_sample_alerts_use_exists() {
    let app = TestApp::spawn().await;
    let text = common::metrics_text(&app.url("")).await;
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let rules = readme
        .split("```yaml\ngroups:\n  - name: keyportal")
        .nth(1)
        .and_then(|r| r.split("```").next())
        .expect("the sample alert rules in the README");
    let mut used = 0;
    for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("keyportal_") {
            used += 1;
            assert!(
                text.contains(&format!("# TYPE {word} ")),
                "the README's alert uses {word}, which /metrics does not have"
            );
        }
    }
    assert!(used >= 2, "{rules}");
}
