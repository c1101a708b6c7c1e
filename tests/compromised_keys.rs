//! Compromised keys (issue 15): the computed RSA checks against the `badkeys` package as an
//! independent oracle, and the blocklist through the JSON API, the submission paths and reads.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use common::{answer, corpus_key, TestApp};
use keyportal::keys::{self, CompromiseReason, KeyErrorCode, Policy};
use malachite_nz::natural::Natural;
use serde_json::{json, Value};

/// A Python environment with badkeys 0.0.21 (from PyPI), made once under target/. Tests run
/// on parallel threads, so one of them makes it and the others wait for it.
fn badkeys_python() -> PathBuf {
    static MADE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    MADE.get_or_init(|| {
        common::python_venv(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("target/badkeys-venv"),
            "import badkeys, gmpy2, cryptography",
            &["badkeys==0.0.21"],
        )
    })
    .clone()
}

fn rsa_line(n: &Natural, e: u32) -> String {
    let mut n_be: Vec<u8> = n
        .to_limbs_asc()
        .iter()
        .rev()
        .flat_map(|l| l.to_be_bytes())
        .skip_while(|b| *b == 0)
        .collect();
    if n_be[0] & 0x80 != 0 {
        n_be.insert(0, 0);
    }
    let e_be: Vec<u8> = e
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    let mut blob = Vec::new();
    for field in [&b"ssh-rsa"[..], &e_be, &n_be] {
        blob.extend((field.len() as u32).to_be_bytes());
        blob.extend(field);
    }
    format!(
        "ssh-rsa {} made-by-test",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

/// n = a^2 - 1 = (a - 1)(a + 1): Fermat's method factors it in its first step.
fn fermat_key() -> String {
    // 1.5 * 2^1023, even, so n is odd and has 2048 bits.
    let a = (Natural::from(3u32) << 1022u64) + (Natural::from(1u32) << 500u64);
    rsa_line(&(&a * &a - Natural::from(1u32)), 65537)
}

/// n = 3 q: a prime factor far below 65537.
fn small_factor_key() -> String {
    let q =
        (Natural::from(1u32) << 2046u64) + (Natural::from(1u32) << 1500u64) + Natural::from(1u32);
    rsa_line(&(Natural::from(3u32) * q), 65537)
}

#[test]
fn keyportal_flags_exactly_the_keys_badkeys_flags_with_the_same_reason() {
    let python = badkeys_python();
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/badkeys_corpus.py");
    let made = Command::new(&python)
        .arg(&script)
        .arg(dir.path())
        .arg("10000")
        .output()
        .expect("run the badkeys corpus script");
    assert!(
        made.status.success(),
        "badkeys_corpus.py: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let keys = std::fs::read_to_string(dir.path().join("keys.txt")).unwrap();
    let expected = std::fs::read_to_string(dir.path().join("expected.jsonl")).unwrap();
    let policy = Policy::default();
    let (mut flagged, mut ordinary) = (0, 0);
    for (n, (line, want)) in keys.lines().zip(expected.lines()).enumerate() {
        let want: Value = serde_json::from_str(want).unwrap();
        let want: Vec<&str> = want["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        let got = keys::validate(line.as_bytes(), &policy);
        if want.is_empty() {
            ordinary += 1;
            assert!(
                got.is_ok(),
                "line {}: badkeys finds nothing, keyportal says {got:?}",
                n + 1
            );
        } else {
            flagged += 1;
            let r = got.expect_err("badkeys flags this key");
            assert_eq!(
                r.code,
                KeyErrorCode::KeyCompromised,
                "line {}: {r:?}",
                n + 1
            );
            let reason = r.reason.expect("a reason").as_str();
            assert!(
                want.contains(&reason),
                "line {}: badkeys says {want:?}, keyportal {reason}",
                n + 1
            );
        }
    }
    assert_eq!(keys.lines().count(), expected.lines().count());
    assert!(ordinary >= 10_000, "{ordinary} ordinary keys");
    assert!(flagged >= 30, "{flagged} broken keys");
}

#[test]
fn the_built_broken_keys_are_refused_with_their_reason_and_advice() {
    let policy = Policy::default();
    for (line, reason, advice) in [
        (fermat_key(), CompromiseReason::Fermat, "Fermat"),
        (small_factor_key(), CompromiseReason::SmallFactor, "65537"),
    ] {
        let r = keys::validate(line.as_bytes(), &policy).unwrap_err();
        assert_eq!(
            (r.code, r.reason),
            (KeyErrorCode::KeyCompromised, Some(reason))
        );
        assert!(
            r.message.contains(advice) && r.message.contains("new key"),
            "{}",
            r.message
        );
        // A key that also fails a policy check gets that code: compromise is judged last.
        let strict = Policy {
            min_rsa_bits: 3072,
            ..Policy::default()
        };
        assert_eq!(
            keys::validate(line.as_bytes(), &strict).unwrap_err().code,
            KeyErrorCode::KeyTooSmall
        );
    }
}

#[test]
fn verdicts_with_the_blocklist_as_input_do_not_depend_on_order_or_thread() {
    let policy = Policy::default();
    let stored: Vec<keys::ValidatedKey> = common::generated_ed25519_keys(200)
        .iter()
        .map(|k| keys::validate(k.as_bytes(), &policy).unwrap())
        .collect();
    let facts = |i: usize| keys::StoredFacts {
        computed: None,
        blocklisted: (i % 3 == 0).then_some(keys::BlockEntry {
            kind: CompromiseReason::Blocklisted,
            reason: "test",
        }),
    };
    let judge = |i: usize| {
        let k = &stored[i];
        keys::validate_stored(k.public_key(), k.comment(), &policy, &facts(i))
            .map_err(|r| (r.code, r.reason))
            .map(|c| c.fingerprint_sha256)
    };
    let forward: Vec<_> = (0..stored.len()).map(judge).collect();
    let (stored, judge) = (&stored, &judge);
    let results: Vec<Vec<_>> = std::thread::scope(|s| {
        (0..4)
            .map(|t| {
                s.spawn(move || {
                    let mut order: Vec<usize> = (0..stored.len()).collect();
                    order.rotate_left(t * 37);
                    if t % 2 == 1 {
                        order.reverse();
                    }
                    let mut out = vec![None; stored.len()];
                    for i in order {
                        out[i] = Some(judge(i));
                    }
                    out.into_iter().map(Option::unwrap).collect()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect()
    });
    for r in results {
        assert_eq!(r, forward);
    }
    assert_eq!(
        forward.iter().filter(|v| v.is_err()).count(),
        (0..stored.len()).filter(|i| i % 3 == 0).count()
    );
}

async fn fingerprint_of(app: &TestApp, id: &str) -> String {
    let (_, key) = answer(app.get(&app.admin, &format!("/api/v1/keys/{id}"))).await;
    key["fingerprint_sha256"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_blocklist_api_adds_lists_imports_and_deletes_with_audit() {
    let app = TestApp::spawn().await;
    let alice = app
        .user_with_token("alice", keyportal::domain::Role::Member)
        .await;
    let (status, key) = answer(app.post(
        &alice,
        "/api/v1/users/alice/keys",
        json!({ "key": corpus_key("valid/ed25519.pub") }),
    ))
    .await;
    assert_eq!(status, 201, "{key}");
    let id = key["id"].as_str().unwrap().to_owned();
    let fingerprint = fingerprint_of(&app, &id).await;

    // Members may not touch it; bad input changes nothing.
    let (status, _) = answer(app.get(&alice, "/api/v1/blocklist")).await;
    assert_eq!(status, 403);
    for body in [
        json!({ "fingerprint": "SHA256:short", "reason": "x" }),
        json!({ "fingerprint": fingerprint, "reason": "  " }),
        json!({ "fingerprint": fingerprint, "key": corpus_key("valid/ed25519.pub"), "reason": "x" }),
        json!({ "key": "ssh-ed25519 AAAA!!", "reason": "x" }),
    ] {
        let (status, p) = answer(app.post(&app.admin, "/api/v1/blocklist", body)).await;
        assert_eq!(status, 422, "{p}");
    }
    let (_, list) = answer(app.get(&app.admin, "/api/v1/blocklist")).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);

    // By whole key: stored by its fingerprint, with the owner of the stored key.
    let (status, entry) = answer(app.post(
        &app.admin,
        "/api/v1/blocklist",
        json!({ "key": corpus_key("valid/ed25519.pub"), "reason": "laptop stolen" }),
    ))
    .await;
    assert_eq!(status, 201, "{entry}");
    assert_eq!(entry["fingerprint_sha256"], fingerprint.as_str());
    assert_eq!(entry["key_owner"], "alice");
    assert_eq!(entry["kind"], "blocklisted");
    assert_eq!(entry["added_by"], "root");
    let (status, p) = answer(app.post(
        &app.admin,
        "/api/v1/blocklist",
        json!({ "fingerprint": fingerprint, "reason": "again" }),
    ))
    .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (409, Some("already_blocklisted"))
    );

    // Every read says why; the owner cannot add it again, alone or in an import.
    let (_, key) = answer(app.get(&alice, &format!("/api/v1/keys/{id}"))).await;
    assert_eq!(key["status"], "invalid");
    assert_eq!(key["problem"]["code"], "key_compromised");
    assert_eq!(key["problem"]["reason"], "blocklisted");
    let entry_id = entry["id"].as_str().unwrap().to_owned();
    // The first thing an admin sees, with owner and reason; the owner sees it too.
    for token in [&app.admin, &alice] {
        let (_, board) = answer(app.get(token, "/api/v1/dashboard")).await;
        assert_eq!(board["compromised"][0]["username"], "alice", "{board}");
        assert_eq!(
            board["compromised"][0]["problem"]["reason"], "blocklisted",
            "{board}"
        );
    }

    // Import: a fingerprint, a key, a duplicate, a bad line.
    let other = common::generated_ed25519_keys(2);
    let other_fp = keys::identify(other[1].as_bytes())
        .unwrap()
        .fingerprint_sha256;
    let file = format!(
        "# compromised in the incident\n{other_fp}\n{}\n{fingerprint}\nnot a key\n",
        other[0]
    );
    let res = app
        .client
        .post(app.url("/api/v1/blocklist/import?reason=incident%2042"))
        .bearer_auth(&app.admin)
        .body(file)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let report: Value = res.json().await.unwrap();
    assert_eq!(report["added"], 2, "{report}");
    let statuses: Vec<&str> = report["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["added", "added", "duplicate", "rejected"],
        "{report}"
    );

    let bob = app
        .user_with_token("bob", keyportal::domain::Role::Member)
        .await;
    let (status, p) =
        answer(app.post(&bob, "/api/v1/users/bob/keys", json!({ "key": other[0] }))).await;
    assert_eq!(
        (status, p["code"].as_str(), p["reason"].as_str()),
        (422, Some("key_compromised"), Some("blocklisted")),
        "{p}"
    );
    assert!(p["detail"].as_str().unwrap().contains("incident 42"), "{p}");
    let res = app
        .client
        .post(app.url("/api/v1/users/bob/keys/import"))
        .bearer_auth(&bob)
        .body(format!(
            "{}\n{}\n",
            other[1],
            common::generated_ed25519_keys(3)[2]
        ))
        .send()
        .await
        .unwrap();
    let report: Value = res.json().await.unwrap();
    assert_eq!(report["added"], 1, "{report}");
    assert_eq!(report["lines"][0]["code"], "key_compromised", "{report}");
    assert_eq!(report["lines"][0]["reason"], "blocklisted", "{report}");

    // Paging, then delete: the key is valid again at the next read.
    let (_, page) = answer(app.get(&app.admin, "/api/v1/blocklist?limit=2")).await;
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let (_, rest) = answer(app.get(
        &app.admin,
        &format!("/api/v1/blocklist?limit=2&cursor={cursor}"),
    ))
    .await;
    assert_eq!(
        page["items"].as_array().unwrap().len() + rest["items"].as_array().unwrap().len(),
        3
    );
    let res = app
        .delete(&app.admin, &format!("/api/v1/blocklist/{entry_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let (_, key) = answer(app.get(&alice, &format!("/api/v1/keys/{id}"))).await;
    assert_eq!(key["status"], "valid", "{key}");

    for action in ["blocklist.add", "blocklist.import", "blocklist.delete"] {
        let (_, events) =
            answer(app.get(&app.admin, &format!("/api/v1/audit?action={action}"))).await;
        let event = &events["items"][0];
        assert_eq!(event["actor"], "root", "{action}: {events}");
    }
}

#[tokio::test]
async fn a_compromised_key_is_refused_on_submission_and_a_stored_one_on_every_read() {
    let app = TestApp::spawn().await;
    app.user_with_token("carol", keyportal::domain::Role::Member)
        .await;
    let (status, p) = answer(app.post(
        &app.admin,
        "/api/v1/users/carol/keys",
        json!({ "key": fermat_key() }),
    ))
    .await;
    assert_eq!(
        (status, p["code"].as_str(), p["reason"].as_str()),
        (422, Some("key_compromised"), Some("fermat")),
        "{p}"
    );

    // A key stored before these checks existed (as an older version would have stored it):
    // its reads run the checks, and the background pass records the verdict.
    let line = small_factor_key();
    let id = keys::identify(line.as_bytes()).unwrap();
    let key_id: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO ssh_keys (user_id, algorithm, bits, public_key, fingerprint_sha256, fingerprint_md5)
         SELECT id, 'ssh-rsa', 2048, $1, $2, 'MD5:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00'
         FROM users WHERE username = 'carol' RETURNING id",
    )
    .bind(&id.public_key)
    .bind(&id.fingerprint_sha256)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    let (_, key) = answer(app.get(&app.admin, &format!("/api/v1/keys/{key_id}"))).await;
    assert_eq!(key["problem"]["code"], "key_compromised", "{key}");
    assert_eq!(key["problem"]["reason"], "small_factor", "{key}");

    // And one a newer version of the checks judged (a newer instance, mid rolling upgrade):
    // this version's pass leaves its verdict alone.
    let newer = keys::identify(common::generated_ed25519_keys(1)[0].as_bytes()).unwrap();
    let newer_id: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO ssh_keys (user_id, algorithm, bits, public_key, fingerprint_sha256, fingerprint_md5, compromise_checks)
         SELECT id, 'ssh-ed25519', 256, $1, $2, 'MD5:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00', $3
         FROM users WHERE username = 'carol' RETURNING id",
    )
    .bind(&newer.public_key)
    .bind(&newer.fingerprint_sha256)
    .bind(keyportal::keys::compromised::CHECKS_VERSION + 1)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();

    let judged = keyportal::service::compromised::refresh_computed_checks(&app.db.pool)
        .await
        .unwrap();
    assert!(judged >= 1);
    let newer_checks: i16 =
        sqlx::query_scalar("SELECT compromise_checks FROM ssh_keys WHERE id = $1")
            .bind(newer_id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(
        newer_checks,
        keyportal::keys::compromised::CHECKS_VERSION + 1
    );
    let (found, checks): (Option<String>, i16) =
        sqlx::query_as("SELECT compromise, compromise_checks FROM ssh_keys WHERE id = $1")
            .bind(key_id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(found.as_deref(), Some("small_factor"));
    assert_eq!(checks, keyportal::keys::compromised::CHECKS_VERSION);
    let (_, key) = answer(app.get(&app.admin, &format!("/api/v1/keys/{key_id}"))).await;
    assert_eq!(key["problem"]["reason"], "small_factor", "{key}");
    let (_, board) = answer(app.get(&app.admin, "/api/v1/dashboard")).await;
    assert_eq!(board["compromised"][0]["username"], "carol", "{board}");
    assert_eq!(
        board["compromised"][0]["problem"]["reason"], "small_factor",
        "{board}"
    );
    assert_eq!(
        keyportal::service::compromised::refresh_computed_checks(&app.db.pool)
            .await
            .unwrap(),
        0,
        "nothing left to judge"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_prime_scan_finds_every_sharing_key_of_a_gen_bulk_set_and_nothing_else() {
    let python = badkeys_python();
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/shared_primes_oracle.py");
    let made = Command::new(&python)
        .arg(&script)
        .arg(dir.path())
        .arg("10000")
        .output()
        .expect("run the shared-prime oracle");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    let (bulk, independent) = (read("bulk.txt"), read("independent.txt"));
    let bulk_lines: Vec<&str> = bulk.lines().collect();
    let expected: std::collections::BTreeSet<String> = read("bulk_sharing.txt")
        .lines()
        .map(|n| {
            let line = bulk_lines[n.parse::<usize>().unwrap() - 1];
            keys::identify(line.as_bytes()).unwrap().fingerprint_sha256
        })
        .collect();
    assert!(expected.len() > 1000, "gen_bulk's RSA moduli share primes");

    let app = TestApp::spawn().await;
    let cli = keyportal::service::Ctx::command_line();
    let mut policy = app.services.policy(&cli).await.unwrap();
    policy.max_keys_per_user = 20_000;
    app.services.set_policy(&cli, policy).await.unwrap();
    for (user, file) in [("bulk", &bulk), ("independent", &independent)] {
        app.user_with_token(user, keyportal::domain::Role::Member)
            .await;
        let report = app
            .services
            .import_keys(&cli, user, file.as_bytes())
            .await
            .unwrap();
        assert_eq!(report.added, file.lines().count(), "{user}");
    }
    let rsa_keys = bulk_lines
        .iter()
        .filter(|l| l.starts_with("ssh-rsa "))
        .count()
        + 200;

    // Another process holding the scan lock: this one says so and changes nothing.
    let mut holder = app.db.pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(1802531696)")
        .execute(&mut *holder)
        .await
        .unwrap();
    let (status, p) = answer(app.post(&app.admin, "/api/v1/blocklist/scan", json!({}))).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (409, Some("scan_running")),
        "{p}"
    );
    sqlx::query("SELECT pg_advisory_unlock(1802531696)")
        .execute(&mut *holder)
        .await
        .unwrap();
    drop(holder);

    let (status, report) = answer(app.post(&app.admin, "/api/v1/blocklist/scan", json!({}))).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["rsa_keys"], rsa_keys);
    assert_eq!(report["sharing"], expected.len());
    assert_eq!(report["added"], expected.len());
    let listed: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT fingerprint_sha256, kind, related_fingerprint FROM blocklist")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    let found: std::collections::BTreeSet<String> = listed.iter().map(|r| r.0.clone()).collect();
    assert_eq!(found, expected, "exactly the keys the pairwise gcd finds");
    for (fp, kind, other) in &listed {
        assert_eq!(kind, "shared_prime");
        let other = other.as_deref().expect("names the other key");
        assert!(expected.contains(other) && other != fp);
    }

    // The keys are refused from now on, with the reason; the independent ones are untouched.
    let (_, keys_page) = answer(app.get(&app.admin, "/api/v1/users/bulk/keys?limit=500")).await;
    let refused = keys_page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["problem"]["reason"] == "shared_prime")
        .count();
    let rsa_on_page = keys_page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["algorithm"] == "ssh-rsa")
        .count();
    assert_eq!(refused, rsa_on_page);
    let (_, indep) = answer(app.get(&app.admin, "/api/v1/users/independent/keys?limit=500")).await;
    assert!(indep["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["status"] == "valid"));

    // Idempotent: the CLI's run finds the same and adds nothing.
    let out = common::run_keyportal(
        &["scan", "shared-primes"],
        &[("DATABASE_URL", &app.db.url)],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["sharing"], expected.len());
    assert_eq!(again["added"], 0);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM blocklist")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(count as usize, expected.len());
}

#[tokio::test]
async fn the_index_of_keys_still_to_judge_names_the_current_checks_version() {
    // A new CHECKS_VERSION needs a migration moving this partial index's predicate, or the
    // background pass reads the whole table to find the keys it must judge.
    let db = common::TestDb::new().await;
    let def: String = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'ssh_keys_unjudged_idx'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let version = keyportal::keys::compromised::CHECKS_VERSION;
    assert!(
        def.ends_with(&format!("WHERE (compromise_checks < {version})")),
        "{def}"
    );
    // And the pass's query can use it (on an empty table only if a scan of it is ruled out).
    let mut conn = db.pool.acquire().await.unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN SELECT id, public_key FROM ssh_keys
         WHERE compromise_checks < {version} AND id > coalesce($1, '00000000-0000-0000-0000-000000000000'::uuid) ORDER BY id LIMIT 500"
    ))
    .bind(None::<uuid::Uuid>)
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert!(
        plan.iter().any(|l| l.contains("ssh_keys_unjudged_idx")),
        "{plan:#?}"
    );
}

/// The authorized_keys text of web1's `deploy`, as the admin reads it.
async fn deploy_on_web1(app: &TestApp) -> String {
    let res = app
        .get(
            &app.admin,
            "/api/v1/servers/web1/authorized_keys?login=deploy",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

/// A key submitted while an entry for it is being added, past the submission's own blocklist
/// check, still ends up refused: the two writes are ordered by the database (the advisory lock
/// in migrations/0014), and whichever commits second links the key to its entry.
#[tokio::test]
async fn a_key_stored_while_its_blocklist_entry_commits_is_refused_at_every_read() {
    let app = TestApp::spawn().await;
    common::alice_granted_on_web1(&app.services).await;
    let line = common::generated_ed25519_keys(1)[0].clone();
    let fingerprint = keys::identify(line.as_bytes()).unwrap().fingerprint_sha256;

    // The entry is written but not committed: the submission's check does not see it.
    let mut entry = app.db.pool.begin().await.unwrap();
    sqlx::query("INSERT INTO blocklist (fingerprint_sha256, reason) VALUES ($1, 'incident 7')")
        .bind(&fingerprint)
        .execute(&mut *entry)
        .await
        .unwrap();
    let submit = tokio::spawn({
        let (client, url, token) = (
            app.client.clone(),
            app.url("/api/v1/users/alice/keys"),
            app.admin.clone(),
        );
        async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&json!({ "key": line }))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    // It gets as far as the lock the entry's transaction holds.
    common::until_a_lock_wait(&app.db.pool, Some("advisory"), &submit, "the submission").await;
    entry.commit().await.unwrap();
    assert_eq!(submit.await.unwrap(), 201);

    let (_, list) = answer(app.get(&app.admin, "/api/v1/users/alice/keys")).await;
    let stored = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["fingerprint_sha256"] == fingerprint.as_str())
        .expect("the key was stored")
        .clone();
    assert_eq!(stored["status"], "invalid", "{stored}");
    assert_eq!(stored["problem"]["reason"], "blocklisted", "{stored}");
    let text = deploy_on_web1(&app).await;
    assert_eq!(text.lines().count(), 1, "only her corpus key:\n{text}");
    assert!(!text.contains(fingerprint.as_str()));
    let lookup = app
        .get(
            &app.admin,
            &format!(
                "/api/v1/servers/web1/authorized_keys?login=deploy&fingerprint={}",
                fingerprint.replace('+', "%2B").replace('/', "%2F")
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(lookup.text().await.unwrap(), "");

    // Deleting the entry lets it in again, on every read.
    let id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM blocklist WHERE fingerprint_sha256 = $1")
            .bind(&fingerprint)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    let res = app
        .delete(&app.admin, &format!("/api/v1/blocklist/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(deploy_on_web1(&app).await.lines().count(), 2);
}

/// Stored keys of any path (here, one written by hand, as an older version would have) are
/// linked to an entry added later, and to one that was there before them.
#[tokio::test]
async fn blocklist_entries_reach_keys_stored_before_and_after_them() {
    let app = TestApp::spawn().await;
    common::alice_granted_on_web1(&app.services).await;
    let lines = common::generated_ed25519_keys(2);
    let ids: Vec<_> = lines
        .iter()
        .map(|l| keys::identify(l.as_bytes()).unwrap())
        .collect();
    let store = |k: &keys::KeyIdentity| {
        sqlx::query(
            "INSERT INTO ssh_keys (user_id, algorithm, bits, public_key, fingerprint_sha256, fingerprint_md5, compromise_checks)
             SELECT id, 'ssh-ed25519', 256, $1, $2, 'MD5:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00', 1
             FROM users WHERE username = 'alice'",
        )
        .bind(k.public_key.clone())
        .bind(k.fingerprint_sha256.clone())
        .execute(&app.db.pool)
    };
    store(&ids[0]).await.unwrap();
    assert_eq!(deploy_on_web1(&app).await.lines().count(), 2);
    for k in &ids {
        let (status, p) = answer(app.post(
            &app.admin,
            "/api/v1/blocklist",
            json!({ "fingerprint": k.fingerprint_sha256, "reason": "leaked" }),
        ))
        .await;
        assert_eq!(status, 201, "{p}");
    }
    store(&ids[1]).await.unwrap();
    let text = deploy_on_web1(&app).await;
    assert_eq!(text.lines().count(), 1, "only her corpus key:\n{text}");
    let linked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ssh_keys k JOIN blocklist b ON b.id = k.blocklist_id
          WHERE b.fingerprint_sha256 = k.fingerprint_sha256",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(linked, 2);
    // A key cannot name another fingerprint's entry.
    let err = sqlx::query(
        "UPDATE ssh_keys SET blocklist_id = (SELECT id FROM blocklist WHERE fingerprint_sha256 = $1)
          WHERE fingerprint_sha256 = $2",
    )
    .bind(&ids[0].fingerprint_sha256)
    .bind(&ids[1].fingerprint_sha256)
    .execute(&app.db.pool)
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("ssh_keys_blocklist_entry_fkey"),
        "{err}"
    );
    // Nor can an entry change its fingerprint (links are made when entries are added).
    let err =
        sqlx::query("UPDATE blocklist SET fingerprint_sha256 = $1 WHERE fingerprint_sha256 = $2")
            .bind("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
            .bind(&ids[0].fingerprint_sha256)
            .execute(&app.db.pool)
            .await
            .unwrap_err();
    assert!(
        err.to_string().contains("fingerprint cannot change"),
        "{err}"
    );
}

/// sshd's lookup records the key it was offered, but never waits for a write that holds the
/// key's row (a blocklist import linking it, a deletion): the login is answered, and a later
/// lookup records the use.
#[tokio::test]
async fn a_lookup_does_not_wait_for_a_write_holding_the_key_row() {
    let app = TestApp::spawn().await;
    common::alice_granted_on_web1(&app.services).await;
    let server_token = app
        .services
        .create_server_token(&keyportal::service::Ctx::command_line(), "web1", None, None)
        .await
        .unwrap()
        .secret;
    let (key_id, fingerprint): (uuid::Uuid, String) =
        sqlx::query_as("SELECT id, fingerprint_sha256 FROM ssh_keys")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    let lookup = || {
        app.get(
            &server_token,
            &format!(
                "/api/v1/servers/web1/authorized_keys?login=deploy&fingerprint={}",
                fingerprint.replace('+', "%2B").replace('/', "%2F")
            ),
        )
        .send()
    };
    let used = || {
        sqlx::query_scalar::<_, bool>("SELECT last_used_at IS NOT NULL FROM ssh_keys WHERE id = $1")
            .bind(key_id)
            .fetch_one(&app.db.pool)
    };
    let mut writer = app.db.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM ssh_keys WHERE id = $1 FOR NO KEY UPDATE")
        .bind(key_id)
        .execute(&mut *writer)
        .await
        .unwrap();
    let res = tokio::time::timeout(std::time::Duration::from_secs(30), lookup())
        .await
        .expect("the lookup waited for the row's writer")
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap().lines().count(), 1);
    assert!(
        !used().await.unwrap(),
        "a held row is skipped, not waited for"
    );
    writer.rollback().await.unwrap();
    assert_eq!(lookup().await.unwrap().status(), 200);
    assert!(used().await.unwrap(), "the next lookup records it");
}

/// A key being added to an admin's account while that admin adds an entry: the key insert
/// holds its owner's row and waits for the blocklist's lock; the entry's check of `added_by`
/// must not wait for that row, or each would wait for the other.
#[tokio::test]
async fn adding_a_key_and_a_blocklist_entry_by_the_same_admin_do_not_wait_on_each_other() {
    let app = TestApp::spawn().await;
    let admin_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = 'root'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let mut adding_key = app.db.pool.begin().await.unwrap();
    keyportal::store::keys::lock_owner_and_count(&mut adding_key, admin_id)
        .await
        .unwrap();
    let mut adding_entry = app.db.pool.begin().await.unwrap();
    let fingerprint = keys::identify(common::generated_ed25519_keys(1)[0].as_bytes())
        .unwrap()
        .fingerprint_sha256;
    let insert = sqlx::query(
        "INSERT INTO blocklist (fingerprint_sha256, reason, added_by) VALUES ($1, 'x', $2)",
    )
    .bind(&fingerprint)
    .bind(admin_id)
    .execute(&mut *adding_entry);
    tokio::time::timeout(std::time::Duration::from_secs(30), insert)
        .await
        .expect("the entry waited for the row the key insert holds")
        .unwrap();
    adding_entry.commit().await.unwrap();
    adding_key.rollback().await.unwrap();
}
