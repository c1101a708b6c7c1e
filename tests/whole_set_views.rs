//! The dashboard and the policy preview count keys in SQL, by shape, instead of re-validating
//! every key (issue 14). Their answers must be exactly what re-validating every stored key from
//! its bytes says, under any policy; and a stored shape that disagrees with the bytes is caught
//! on read.

mod common;

use std::collections::HashMap;

use common::{answer, TestApp};
use keyportal::domain::Role;
use keyportal::keys::{self, Algorithm, Policy};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

/// Every key under `policy`, judged from its bytes: status by fingerprint.
struct Judged {
    valid: i64,
    invalid: i64,
    expired: i64,
    expiring: i64,
    status: HashMap<String, &'static str>,
}

/// Every stored key (through the API, as people see them), re-validated here with the library's
/// validator under `policy`.
async fn rejudge(app: &TestApp, users: &[&str], policy: &Policy) -> Judged {
    let now = OffsetDateTime::now_utc();
    let soon = now + Duration::days(keyportal::service::dashboard::EXPIRING_SOON_DAYS);
    let mut j = Judged {
        valid: 0,
        invalid: 0,
        expired: 0,
        expiring: 0,
        status: HashMap::new(),
    };
    for user in users {
        let (code, page) =
            answer(app.get(&app.admin, &format!("/api/v1/users/{user}/keys?limit=500"))).await;
        assert_eq!(code, 200, "{page}");
        for k in page["items"].as_array().expect("items") {
            let expires = k["expires_at"].as_str().map(|t| {
                OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .expect("expires_at")
            });
            let ok = keys::validate_stored(
                k["public_key"].as_str().expect("public_key"),
                k["comment"].as_str().expect("comment"),
                policy,
                &Default::default(),
            )
            .is_ok();
            let status = match (ok, expires) {
                (false, _) => "invalid",
                (true, Some(e)) if e <= now => "expired",
                _ => "valid",
            };
            match status {
                "invalid" => j.invalid += 1,
                "expired" => j.expired += 1,
                _ => {
                    j.valid += 1;
                    if expires.is_some_and(|e| e <= soon) {
                        j.expiring += 1;
                    }
                }
            }
            j.status
                .insert(k["fingerprint_sha256"].as_str().unwrap().to_owned(), status);
        }
    }
    j
}

fn permissive() -> Policy {
    let mut p = Policy {
        min_rsa_bits: 1024,
        max_rsa_exponent_bits: 4096,
        max_comment_bytes: 4096,
        max_input_bytes: 1024 * 1024,
        max_keys_per_user: 1000,
        ..Policy::default()
    };
    p.allowed_algorithms.insert(Algorithm::Dsa);
    p
}

/// Corpus keys spread over three users, some expired and some expiring soon, one user deleted.
async fn stored_corpus(app: &TestApp) -> Vec<&'static str> {
    let (code, body) = answer(app.put(&app.admin, "/api/v1/policy", json!(permissive()))).await;
    assert_eq!(code, 200, "{body}");
    let users = ["ann", "ben", "cid", "gone"];
    for u in users {
        let (code, body) = answer(app.post(
            &app.admin,
            "/api/v1/users",
            json!({ "username": u, "role": "member" }),
        ))
        .await;
        assert_eq!(code, 201, "{body}");
    }
    // The corpus holds some keys in several forms: each key once.
    let mut seen = std::collections::HashSet::new();
    let valid: Vec<_> = common::corpus()
        .into_iter()
        .filter(|c| {
            keys::validate(&c.bytes, &permissive())
                .is_ok_and(|k| seen.insert(k.fingerprint_sha256().to_owned()))
        })
        .collect();
    assert!(valid.len() > 40);
    for (i, case) in valid.iter().enumerate() {
        let user = users[i % users.len()];
        let (code, body) = answer(app.post(
            &app.admin,
            &format!("/api/v1/users/{user}/keys"),
            json!({ "key": String::from_utf8_lossy(&case.bytes) }),
        ))
        .await;
        assert_eq!(code, 201, "{}: {body}", case.file);
    }
    // Expiry is set directly: the API refuses dates in the past.
    sqlx::query(
        "UPDATE ssh_keys SET expires_at = CASE WHEN (row_number) % 5 = 0 THEN now() - interval '1 day'
                                              ELSE now() + interval '3 days' END
         FROM (SELECT id, row_number() OVER (ORDER BY fingerprint_sha256) FROM ssh_keys) n
         WHERE n.id = ssh_keys.id AND n.row_number % 3 = 0",
    )
    .execute(&app.db.pool)
    .await
    .expect("expiry");
    let (code, _) = answer(app.delete(&app.admin, "/api/v1/users/gone")).await;
    assert_eq!(code, 204);
    vec!["ann", "ben", "cid"]
}

fn policies() -> Vec<(&'static str, Policy)> {
    let everything = permissive();
    let mut no_ed25519 = everything.clone();
    no_ed25519.allowed_algorithms.remove(Algorithm::Ed25519);
    let mut only_modern = Policy::default();
    only_modern.allowed_algorithms.remove(Algorithm::Rsa);
    vec![
        ("permissive", everything.clone()),
        ("default", Policy::default()),
        (
            "rsa 3072-4096, short comments",
            Policy {
                min_rsa_bits: 3072,
                max_rsa_bits: 4096,
                max_comment_bytes: 12,
                ..everything.clone()
            },
        ),
        (
            "exponent 17 bits, 700-byte lines",
            Policy {
                max_rsa_exponent_bits: 17,
                max_input_bytes: 700,
                max_comment_bytes: 100,
                ..everything.clone()
            },
        ),
        ("no ed25519", no_ed25519),
        ("no rsa", only_modern),
    ]
}

#[tokio::test]
async fn dashboard_counts_equal_revalidating_every_key_under_each_policy() {
    let app = TestApp::spawn().await;
    let users = stored_corpus(&app).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM ssh_keys")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let mut saw_each = [false; 3];
    for (name, policy) in policies() {
        let (code, body) = answer(app.put(&app.admin, "/api/v1/policy", json!(policy))).await;
        assert_eq!(code, 200, "{name}: {body}");
        let (code, board) = answer(app.get(&app.admin, "/api/v1/dashboard")).await;
        assert_eq!(code, 200, "{name}: {board}");
        let truth = rejudge(&app, &users, &policy).await;
        assert_eq!(board["keys"], n, "{name}");
        assert_eq!(board["totals"]["keys"], n, "{name}");
        assert_eq!(
            board["totals"]["users"], 4,
            "{name}: root and three members"
        );
        assert_eq!(board["valid_keys"], truth.valid, "{name}");
        assert_eq!(board["invalid_keys"], truth.invalid, "{name}");
        assert_eq!(board["expired_keys"], truth.expired, "{name}");
        assert_eq!(board["expiring_soon"], truth.expiring, "{name}");
        // Each listed key is there for a reason its bytes give.
        for k in board["attention"].as_array().unwrap() {
            let fp = k["fingerprint_sha256"].as_str().unwrap();
            let status = k["status"].as_str().unwrap();
            assert_eq!(status, truth.status[fp], "{name}: {fp}");
            if status == "invalid" {
                saw_each[0] = true;
            } else if status == "expired" {
                saw_each[1] = true;
            } else {
                saw_each[2] = true;
                assert!(k["expires_at"].is_string(), "{name}: {k}");
            }
        }
        let listed = board["attention"].as_array().unwrap().len() as i64;
        let attention = truth.invalid + truth.expired + truth.expiring;
        assert_eq!(listed, attention.min(50), "{name}");
    }
    assert_eq!(
        saw_each, [true; 3],
        "the policies must produce every kind of attention"
    );
}

#[tokio::test]
async fn a_members_dashboard_counts_only_their_keys() {
    let app = TestApp::spawn().await;
    let users = stored_corpus(&app).await;
    let (code, body) =
        answer(app.put(&app.admin, "/api/v1/policy", json!(Policy::default()))).await;
    assert_eq!(code, 200, "{body}");
    let cli = keyportal::service::Ctx::command_line();
    let ann = app
        .services
        .create_token_for(&cli, "ann", "t", None)
        .await
        .expect("token")
        .secret;
    let (code, board) = answer(app.get(&ann, "/api/v1/dashboard")).await;
    assert_eq!(code, 200, "{board}");
    assert!(board.get("totals").is_none(), "{board}");
    let truth = rejudge(&app, &users[..1], &Policy::default()).await;
    assert_eq!(board["valid_keys"], truth.valid);
    assert_eq!(board["invalid_keys"], truth.invalid);
    assert_eq!(board["expired_keys"], truth.expired);
    assert_eq!(board["expiring_soon"], truth.expiring);
    assert_eq!(board["keys"], truth.status.len() as i64);
    for k in board["attention"].as_array().unwrap() {
        assert_eq!(k["username"], "ann", "{k}");
    }
}

#[tokio::test]
async fn the_policy_preview_equals_revalidating_every_key_under_both_policies() {
    let app = TestApp::spawn().await;
    let users = stored_corpus(&app).await;
    let all = policies();
    let mut nonzero = 0;
    for (today_name, today) in &all {
        let (code, body) = answer(app.put(&app.admin, "/api/v1/policy", json!(today))).await;
        assert_eq!(code, 200, "{body}");
        let before = rejudge(&app, &users, today).await;
        for (then_name, then) in &all {
            let (code, preview) =
                answer(app.post(&app.admin, "/api/v1/policy/preview", json!(then))).await;
            assert_eq!(code, 200, "{today_name} -> {then_name}: {preview}");
            let after = rejudge(&app, &users, then).await;
            let lost: Vec<&String> = before
                .status
                .iter()
                .filter(|(fp, s)| **s == "valid" && after.status[*fp] == "invalid")
                .map(|(fp, _)| fp)
                .collect();
            assert_eq!(
                preview["would_invalidate"],
                lost.len(),
                "{today_name} -> {then_name}"
            );
            let shown = preview["keys"].as_array().unwrap();
            assert_eq!(
                shown.len(),
                lost.len().min(50),
                "{today_name} -> {then_name}"
            );
            for k in shown {
                assert!(lost.contains(&&k["fingerprint_sha256"].as_str().unwrap().to_owned()));
                assert_eq!(k["status"], "invalid");
            }
            nonzero += usize::from(!lost.is_empty());
        }
    }
    assert!(
        nonzero >= 10,
        "only {nonzero} policy changes invalidated anything"
    );
    // A preview saves nothing.
    let (_, policy) = answer(app.get(&app.admin, "/api/v1/policy")).await;
    assert_eq!(policy, json!(all.last().unwrap().1));
}

#[tokio::test]
async fn a_stored_shape_that_disagrees_with_the_bytes_is_refused_on_read() {
    let app = TestApp::spawn().await;
    let token = app.user_with_token("dee", Role::Member).await;
    let key = common::corpus_key("valid/rsa-3072.pub");
    let (code, added) =
        answer(app.post(&token, "/api/v1/users/dee/keys", json!({ "key": key }))).await;
    assert_eq!(code, 201, "{added}");
    let id = added["id"].as_str().unwrap().to_owned();
    let (_, fine) = answer(app.get(&token, &format!("/api/v1/keys/{id}"))).await;
    assert_eq!(fine["status"], "valid", "{fine}");
    // Someone with the database's owner rights breaks the column's definition and rewrites the
    // row: the recorded exponent size is now wrong.
    sqlx::raw_sql(
        "CREATE OR REPLACE FUNCTION keyportal_rsa_exponent_bits(public_key TEXT) RETURNS INTEGER
         LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT 1 $$;
         UPDATE ssh_keys SET public_key = public_key;",
    )
    .execute(&app.db.pool)
    .await
    .expect("tamper");
    let (code, read) = answer(app.get(&token, &format!("/api/v1/keys/{id}"))).await;
    assert_eq!(code, 200);
    assert_eq!(read["status"], "invalid", "{read}");
    assert_eq!(read["problem"]["code"], "encoding_invalid", "{read}");
}

#[tokio::test]
async fn key_material_cannot_be_changed_in_place_and_the_tallies_follow_every_write() {
    let app = TestApp::spawn().await;
    let token = app.user_with_token("eve", Role::Member).await;
    let cli = keyportal::service::Ctx::command_line();
    let mut policy = app.services.policy(&cli).await.unwrap();
    policy.max_keys_per_user = 5000;
    app.services.set_policy(&cli, policy).await.unwrap();
    let file = common::generated_ed25519_keys(4500).join("\n");
    let res = app
        .client
        .post(app.url("/api/v1/users/eve/keys/import"))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body(file)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let changed = sqlx::query("UPDATE ssh_keys SET comment = 'x' WHERE comment = 'gen-1'")
        .execute(&app.db.pool)
        .await;
    let err = changed.expect_err("key material is immutable");
    assert!(err.to_string().contains("cannot change"), "{err}");
    // Titles and expiry still change.
    sqlx::query("UPDATE ssh_keys SET title = 'renamed', expires_at = now() + interval '1 year' WHERE comment = 'gen-1'")
        .execute(&app.db.pool)
        .await
        .expect("title");
    // Servers and grants, then deletes that cascade.
    for s in ["a1", "a2"] {
        let (code, _) = answer(app.post(&app.admin, "/api/v1/servers", json!({ "name": s }))).await;
        assert_eq!(code, 201);
        let (code, _) = answer(app.post(
            &app.admin,
            &format!("/api/v1/servers/{s}/grants"),
            json!({ "username": "eve", "login": "deploy" }),
        ))
        .await;
        assert_eq!(code, 201);
    }
    let counts = |board: &Value| {
        let t = &board["totals"];
        [
            t["users"].clone(),
            t["keys"].clone(),
            t["servers"].clone(),
            t["grants"].clone(),
        ]
    };
    let truth = || async {
        common::data_counts(&app.db.pool)
            .await
            .into_iter()
            .map(Value::from)
            .collect::<Vec<_>>()
    };
    let (_, board) = answer(app.get(&app.admin, "/api/v1/dashboard")).await;
    assert_eq!(counts(&board).to_vec(), truth().await[..4].to_vec());
    assert_eq!(board["totals"]["keys"], 4500);
    let (code, _) = answer(app.delete(&app.admin, "/api/v1/servers/a1")).await;
    assert_eq!(code, 204);
    let (code, _) = answer(app.delete(&app.admin, "/api/v1/users/eve")).await;
    assert_eq!(code, 204);
    let (_, board) = answer(app.get(&app.admin, "/api/v1/dashboard")).await;
    assert_eq!(counts(&board).to_vec(), truth().await[..4].to_vec());
    assert_eq!(board["totals"]["keys"], 0);
    assert_eq!(board["totals"]["grants"], 0);
    // Many small writes pile up deltas; the next dashboard folds them into one row per group
    // and still counts right.
    sqlx::raw_sql(
        "DO $$ BEGIN FOR i IN 1..300 LOOP
             INSERT INTO servers (name) VALUES ('pile' || i);
         END LOOP; END $$",
    )
    .execute(&app.db.pool)
    .await
    .expect("servers");
    let rows = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM row_tallies")
            .fetch_one(&app.db.pool)
            .await
            .unwrap()
    };
    assert!(rows().await > 300);
    let (_, board) = answer(app.get(&app.admin, "/api/v1/dashboard")).await;
    assert_eq!(counts(&board).to_vec(), truth().await[..4].to_vec());
    assert!(rows().await <= 3, "{} rows after folding", rows().await);
    // With few deltas a view reads them and writes nothing: the rows keep their versions.
    let versions = || async {
        sqlx::query_scalar::<_, String>("SELECT xmin::text FROM row_tallies ORDER BY relation")
            .fetch_all(&app.db.pool)
            .await
            .unwrap()
    };
    let before = versions().await;
    let (code, _) = answer(app.get(&app.admin, "/api/v1/dashboard")).await;
    assert_eq!(code, 200);
    assert_eq!(
        versions().await,
        before,
        "a dashboard view rewrote the tallies"
    );
    sqlx::query("DELETE FROM servers WHERE name LIKE 'pile%'")
        .execute(&app.db.pool)
        .await
        .expect("clean up");
    // TRUNCATE (no row triggers) starts that table's tally over.
    let (code, _) = answer(app.post(
        &app.admin,
        "/api/v1/servers/a2/grants",
        json!({ "username": "root", "login": "ops" }),
    ))
    .await;
    assert_eq!(code, 201);
    sqlx::raw_sql("TRUNCATE grants")
        .execute(&app.db.pool)
        .await
        .expect("truncate");
    let (_, board) = answer(app.get(&app.admin, "/api/v1/dashboard")).await;
    assert_eq!(counts(&board).to_vec(), truth().await[..4].to_vec());
    assert_eq!(board["totals"]["grants"], 0);
    assert_eq!(board["totals"]["servers"], 1);
}
