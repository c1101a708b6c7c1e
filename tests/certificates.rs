//! SSH certificates over real HTTP: issuing user certificates for stored keys (read back by the
//! real `ssh-keygen -L`), the live principals answer, the KRL (judged by `ssh-keygen -Q`), the
//! `fetch-krl` and `cert` commands, and host certificates. Logins through a real sshd are in
//! tests/sshd_delivery.rs.

mod common;

use std::path::Path;
use std::process::Command;

use common::{answer, corpus_key, data_counts, TestApp};
use keyportal::ca::krl::{self, Krl};
use keyportal::domain::Role;
use keyportal::service::grants::NewGrant;
use keyportal::service::Ctx;
use serde_json::{json, Value};

struct World {
    app: TestApp,
    dir: tempfile::TempDir,
    /// web1's server token.
    server_token: String,
    alice: String,
    cli: Ctx,
}

impl World {
    async fn new() -> World {
        let app = TestApp::spawn().await;
        let cli = Ctx::command_line();
        let alice = app.user_with_token("alice", Role::Member).await;
        app.services
            .create_server(&cli, "web1", Some("web1.example.com"), None)
            .await
            .unwrap();
        app.services
            .create_server(&cli, "db1", None, None)
            .await
            .unwrap();
        let server_token = app
            .services
            .create_server_token(&cli, "web1", None, None)
            .await
            .unwrap()
            .secret;
        World {
            app,
            dir: tempfile::tempdir().unwrap(),
            server_token,
            alice,
            cli,
        }
    }

    async fn key(&self, user: &str, corpus: &str) -> String {
        self.app
            .services
            .add_key(&self.cli, user, corpus_key(corpus).as_bytes(), None, None)
            .await
            .unwrap()
            .id
            .to_string()
    }

    async fn grant(&self, server: &str, user: &str, login: &str, options: Option<&str>) -> String {
        self.app
            .services
            .create_grant(
                &self.cli,
                server,
                NewGrant {
                    username: user.into(),
                    login: login.into(),
                    key_id: None,
                    options: options.map(str::to_owned),
                    expires_at: None,
                },
            )
            .await
            .unwrap()
            .id
            .to_string()
    }

    async fn issue(&self, token: &str, key: &str, body: Value) -> (u16, Value) {
        answer(
            self.app
                .post(token, &format!("/api/v1/keys/{key}/certificate"), body),
        )
        .await
    }

    /// A certificate written to a file, as `keyportal cert` would.
    fn cert_file(&self, name: &str, issued: &Value) -> std::path::PathBuf {
        let path = self.dir.path().join(format!("{name}-cert.pub"));
        std::fs::write(
            &path,
            format!("{}\n", issued["certificate"].as_str().unwrap()),
        )
        .unwrap();
        path
    }

    async fn krl_bytes(&self) -> Vec<u8> {
        let res = self
            .app
            .client
            .get(self.app.url("/api/v1/ca/krl"))
            .bearer_auth(&self.server_token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.bytes().await.unwrap().to_vec()
    }

    fn user_ca(&self) -> ssh_key::PublicKey {
        self.app
            .services
            .ca
            .as_ref()
            .unwrap()
            .user
            .public_key()
            .clone()
    }
}

/// An `expiry-time` option's value for `t` (`Z`: UTC; without: the server's local time).
fn expiry_stamp(t: time::OffsetDateTime, zone: &str) -> String {
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}{zone}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn keygen(args: &[&str], file: &Path) -> (bool, String) {
    let out = Command::new("ssh-keygen")
        .args(args)
        .arg(file)
        .output()
        .expect("ssh-keygen (openssh-client)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `ssh-keygen -Q -f krl file`: true when the real OpenSSH says REVOKED.
fn revoked_per_ssh_keygen(krl_file: &Path, file: &Path) -> bool {
    let out = Command::new("ssh-keygen")
        .args(["-Q", "-f"])
        .arg(krl_file)
        .arg(file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    match (
        out.status.code(),
        text.contains("REVOKED"),
        text.contains(": ok"),
    ) {
        (Some(1), true, false) => true,
        (Some(0), false, true) => false,
        other => panic!("ssh-keygen -Q gave {other:?}: {text}"),
    }
}

#[tokio::test]
async fn a_certificate_carries_the_granted_logins_and_ssh_keygen_reads_it_so() {
    let w = World::new().await;
    let key = w.key("alice", "valid/ed25519.pub").await;
    w.grant("web1", "alice", "deploy", None).await;
    w.grant("db1", "alice", "alice", None).await;
    let (status, cert) = w.issue(&w.alice, &key, json!({})).await;
    assert_eq!(status, 201, "{cert}");
    let serial = cert["serial"].as_i64().unwrap();
    assert!(serial >= 1);
    // One principal per server login: a bare login would open it on every server.
    assert_eq!(cert["principals"], json!(["alice@db1", "deploy@web1"]));
    let file = w.cert_file("a", &cert);
    let (ok, text) = keygen(&["-L", "-f"], &file);
    assert!(ok, "{text}");
    assert!(
        text.contains("ssh-ed25519-cert-v01@openssh.com user certificate"),
        "{text}"
    );
    assert!(
        text.contains(&format!("Key ID: \"keyportal:alice:{key}:{serial}\"")),
        "{text}"
    );
    assert!(text.contains(&format!("Serial: {serial}")), "{text}");
    let ca_fp = w
        .user_ca()
        .fingerprint(ssh_key::HashAlg::Sha256)
        .to_string();
    assert!(
        text.contains(&format!("Signing CA: ED25519 {ca_fp}")),
        "{text}"
    );
    let principals: Vec<&str> = text
        .split("Principals:")
        .nth(1)
        .unwrap()
        .split("Critical Options:")
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(principals, ["alice@db1", "deploy@web1"], "{text}");
    assert!(text.contains("permit-pty"), "{text}");
    // The validity is at most the policy's 8 hours.
    let after = time::OffsetDateTime::parse(
        cert["valid_after"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let before = time::OffsetDateTime::parse(
        cert["valid_before"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let now = time::OffsetDateTime::now_utc();
    assert!(
        before - now <= time::Duration::hours(8) && before - now > time::Duration::hours(7),
        "{cert}"
    );
    assert!(after <= now, "{cert}");
    // The published CA is the one that signed.
    let res = w
        .app
        .client
        .get(w.app.url("/api/v1/ca/user"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let published = res.text().await.unwrap();
    assert_eq!(
        ssh_key::PublicKey::from_openssh(published.lines().next().unwrap())
            .unwrap()
            .key_data(),
        w.user_ca().key_data()
    );
    // Issued once, audited once, listed on the key.
    let (status, events) = answer(
        w.app
            .get(&w.app.admin, "/api/v1/audit?action=certificate.issue"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(events["items"].as_array().unwrap().len(), 1, "{events}");
    let (status, listed) = answer(
        w.app
            .get(&w.alice, &format!("/api/v1/keys/{key}/certificates")),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(listed[0]["serial"], json!(serial));
    // Narrowed to one login and a short validity.
    let (status, narrow) = w
        .issue(
            &w.alice,
            &key,
            json!({"logins": ["deploy"], "validity": 120}),
        )
        .await;
    assert_eq!(status, 201, "{narrow}");
    assert_eq!(narrow["principals"], json!(["deploy@web1"]));
    // For one server, a grant without options: the default extensions, no critical option.
    let (status, one) = w.issue(&w.alice, &key, json!({"server": "db1"})).await;
    assert_eq!(status, 201, "{one}");
    assert_eq!(one["principals"], json!(["alice@db1"]));
    assert_eq!(one["critical_options"], json!({}));
    assert_eq!(one["extensions"].as_array().unwrap().len(), 5, "{one}");
    assert!(narrow["serial"].as_i64().unwrap() > serial);
}

#[tokio::test]
async fn a_certificate_for_one_server_carries_its_grants_command_and_source_address() {
    let w = World::new().await;
    let key = w.key("alice", "valid/ecdsa-256.pub").await;
    w.grant(
        "web1",
        "alice",
        "deploy",
        Some("command=\"/usr/bin/uptime\",from=\"127.0.0.1/32,10.0.0.0/8\",no-pty"),
    )
    .await;
    // For every server, a login whose grant has options cannot go in.
    let (status, problem) = w.issue(&w.alice, &key, json!({})).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("no_grantable_login")),
        "{problem}"
    );
    let (status, cert) = w.issue(&w.alice, &key, json!({"server": "web1"})).await;
    assert_eq!(status, 201, "{cert}");
    let (ok, text) = keygen(&["-L", "-f"], &w.cert_file("b", &cert));
    assert!(ok, "{text}");
    assert!(text.contains("force-command /usr/bin/uptime"), "{text}");
    assert!(
        text.contains("source-address 127.0.0.1/32,10.0.0.0/8"),
        "{text}"
    );
    assert!(!text.contains("permit-pty"), "{text}");
    assert!(text.contains("permit-agent-forwarding"), "{text}");
    // A host-name pattern cannot be a source-address: left out, said why.
    w.grant("db1", "alice", "alice", Some("from=\"*.example.com\""))
        .await;
    let (status, problem) = w.issue(&w.alice, &key, json!({"server": "db1"})).await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("source-address"),
        "{problem}"
    );
}

#[tokio::test]
async fn a_grants_expiry_bounds_the_certificate() {
    let w = World::new().await;
    let key = w.key("alice", "valid/ed25519.pub").await;
    let soon = time::OffsetDateTime::now_utc() + time::Duration::hours(2);
    let stamp = expiry_stamp(soon, "Z");
    w.grant(
        "web1",
        "alice",
        "deploy",
        Some(&format!("expiry-time=\"{stamp}\"")),
    )
    .await;
    let (status, cert) = w.issue(&w.alice, &key, json!({"server": "web1"})).await;
    assert_eq!(status, 201, "{cert}");
    let before = time::OffsetDateTime::parse(
        cert["valid_before"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(before.unix_timestamp(), soon.unix_timestamp(), "{cert}");
    // Without `Z` sshd reads the server's local time: the earliest it can be (UTC+14) counts.
    let in_a_day = time::OffsetDateTime::now_utc() + time::Duration::hours(20);
    let local = expiry_stamp(in_a_day, "");
    w.grant(
        "db1",
        "alice",
        "alice",
        Some(&format!("expiry-time=\"{local}\"")),
    )
    .await;
    let (status, cert) = w.issue(&w.alice, &key, json!({"server": "db1"})).await;
    assert_eq!(status, 201, "{cert}");
    let before = time::OffsetDateTime::parse(
        cert["valid_before"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(
        before.unix_timestamp(),
        (in_a_day - time::Duration::hours(14)).unix_timestamp(),
        "{cert}"
    );
    // Past: nothing to certify.
    sqlx::query("UPDATE grants SET options = 'expiry-time=\"20000101\"' WHERE login = 'alice'")
        .execute(&w.app.db.pool)
        .await
        .unwrap();
    let (status, problem) = w.issue(&w.alice, &key, json!({"server": "db1"})).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("grant_expired")),
        "{problem}"
    );
}

#[tokio::test]
async fn refusals_name_their_cause_and_change_nothing() {
    let w = World::new().await;
    let key = w.key("alice", "valid/ed25519.pub").await;
    w.grant("web1", "alice", "deploy", None).await;
    let bob = w.app.user_with_token("bob", Role::Member).await;
    let before = data_counts(&w.app.db.pool).await;
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            w.alice.as_str(),
            json!({"logins": ["root"]}),
            422,
            "login_not_granted",
        ),
        (
            w.alice.as_str(),
            json!({"logins": []}),
            422,
            "invalid_field",
        ),
        (
            w.alice.as_str(),
            json!({"validity": 8 * 3600 + 1}),
            422,
            "invalid_field",
        ),
        (
            w.alice.as_str(),
            json!({"validity": 0}),
            422,
            "invalid_field",
        ),
        (
            w.alice.as_str(),
            json!({"server": "nope"}),
            404,
            "not_found",
        ),
        (w.alice.as_str(), json!({"surprise": 1}), 400, ""),
        (bob.as_str(), json!({}), 404, "not_found"),
        (w.server_token.as_str(), json!({}), 403, "forbidden"),
    ];
    for (token, body, status, code) in cases {
        let (got, problem) = w.issue(token, &key, body.clone()).await;
        assert_eq!(got, status, "{body}: {problem}");
        if !code.is_empty() {
            assert_eq!(problem["code"], code, "{body}: {problem}");
        }
    }
    // A blocklisted key is refused with the validator's code.
    let fp = w
        .app
        .services
        .get_key(&w.cli, key.parse().unwrap())
        .await
        .unwrap()
        .fingerprint_sha256;
    let (status, _) = answer(w.app.post(
        &w.app.admin,
        "/api/v1/blocklist",
        json!({"fingerprint": fp, "reason": "leaked"}),
    ))
    .await;
    assert_eq!(status, 201);
    let after_block = data_counts(&w.app.db.pool).await;
    let (status, problem) = w.issue(&w.alice, &key, json!({})).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("key_compromised")),
        "{problem}"
    );
    assert_eq!(data_counts(&w.app.db.pool).await, after_block);
    assert_eq!(before.len(), after_block.len());
    let certs: i64 = sqlx::query_scalar("SELECT count(*) FROM certificates")
        .fetch_one(&w.app.db.pool)
        .await
        .unwrap();
    assert_eq!(certs, 0);
}

#[tokio::test]
async fn the_principals_answer_follows_todays_grant_and_revocation() {
    let w = World::new().await;
    let key = w.key("alice", "valid/ed25519.pub").await;
    let grant = w.grant("web1", "alice", "deploy", None).await;
    let (_, cert) = w.issue(&w.alice, &key, json!({})).await;
    let serial = cert["serial"].as_i64().unwrap();
    let key_id = cert["key_id"].as_str().unwrap().to_owned();
    let ask = |login: &str, key_id: &str, serial: i64| {
        w.app
            .client
            .get(w.app.url("/api/v1/servers/web1/principals"))
            .query(&[
                ("login", login),
                ("key_id", key_id),
                ("serial", &serial.to_string()),
            ])
            .bearer_auth(&w.server_token)
            .send()
    };
    let text = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    };
    assert_eq!(
        text(ask("deploy", &key_id, serial).await.unwrap()).await,
        "deploy@web1\n"
    );
    assert_eq!(text(ask("root", &key_id, serial).await.unwrap()).await, "");
    assert_eq!(
        text(ask("deploy", "keyportal:alice:x:1", serial).await.unwrap()).await,
        ""
    );
    assert_eq!(
        text(ask("deploy", &key_id, serial + 1).await.unwrap()).await,
        ""
    );
    // The grant's options today are on the line; once it is gone, nothing.
    sqlx::query("UPDATE grants SET options = 'no-pty' WHERE id = $1::uuid")
        .bind(&grant)
        .execute(&w.app.db.pool)
        .await
        .unwrap();
    assert_eq!(
        text(ask("deploy", &key_id, serial).await.unwrap()).await,
        "no-pty deploy@web1\n"
    );
    let (status, _) = answer(
        w.app
            .delete(&w.app.admin, &format!("/api/v1/grants/{grant}")),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        text(ask("deploy", &key_id, serial).await.unwrap()).await,
        ""
    );
    // Granted again, then the certificate revoked (not by another member): nothing.
    let bob = w.app.user_with_token("bob", Role::Member).await;
    let (status, _) = answer(w.app.post(
        &bob,
        &format!("/api/v1/certificates/{serial}/revoke"),
        json!({}),
    ))
    .await;
    assert_eq!(status, 404);
    w.grant("web1", "alice", "deploy", None).await;
    assert_eq!(
        text(ask("deploy", &key_id, serial).await.unwrap()).await,
        "deploy@web1\n"
    );
    let (status, _) = answer(w.app.post(
        &w.alice,
        &format!("/api/v1/certificates/{serial}/revoke"),
        json!({}),
    ))
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        text(ask("deploy", &key_id, serial).await.unwrap()).await,
        ""
    );
    let (status, problem) = answer(w.app.post(
        &w.alice,
        &format!("/api/v1/certificates/{serial}/revoke"),
        json!({}),
    ))
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("certificate_not_revocable"))
    );
    // Another server's token may not ask about web1.
    let db1 = w
        .app
        .services
        .create_server_token(&w.cli, "db1", None, None)
        .await
        .unwrap()
        .secret;
    let res = w
        .app
        .client
        .get(w.app.url("/api/v1/servers/web1/principals"))
        .query(&[
            ("login", "deploy"),
            ("key_id", key_id.as_str()),
            ("serial", "1"),
        ])
        .bearer_auth(&db1)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn every_revocation_reaches_the_krl_and_ssh_keygen_agrees_with_it() {
    let w = World::new().await;
    let cli = &w.cli;
    let bob = w.app.user_with_token("bob", Role::Member).await;
    let carol = w.app.user_with_token("carol", Role::Member).await;
    for user in ["alice", "bob", "carol"] {
        w.grant("web1", user, "deploy", None).await;
    }
    let mut issued = Vec::new();
    for (user, token, corpus) in [
        ("alice", &w.alice, "valid/ed25519.pub"),
        ("alice", &w.alice, "valid/ecdsa-384.pub"),
        ("bob", &bob, "valid/rsa-2048.pub"),
        ("bob", &bob, "valid/ecdsa-521.pub"),
        ("carol", &carol, "valid/sk-ecdsa-256.pub"),
        ("carol", &carol, "valid/ecdsa-256.pub"),
    ] {
        let key = w.key(user, corpus).await;
        let (status, cert) = w.issue(token, &key, json!({})).await;
        assert_eq!(status, 201, "{cert}");
        // Two certificates for one key: consecutive serials, a range in the KRL.
        let (_, second) = w.issue(token, &key, json!({})).await;
        issued.push((
            user,
            key,
            corpus,
            w.cert_file(&format!("c{}", issued.len()), &cert),
            w.cert_file(&format!("d{}", issued.len()), &second),
        ));
    }
    let version = |bytes: &[u8]| Krl::parse(bytes).unwrap().krl.version;
    let v0 = version(&w.krl_bytes().await);
    // Revoked through each door: the API, deleting the key, disabling the owner, the blocklist.
    let serial_of = |p: &Path| -> i64 {
        let c =
            ssh_key::Certificate::from_openssh(std::fs::read_to_string(p).unwrap().trim()).unwrap();
        c.serial() as i64
    };
    let (status, _) = answer(w.app.post(
        &w.alice,
        &format!("/api/v1/certificates/{}/revoke", serial_of(&issued[0].3)),
        json!({}),
    ))
    .await;
    assert_eq!(status, 204);
    let v1 = version(&w.krl_bytes().await);
    assert!(v1 > v0, "{v1} > {v0}");
    w.app
        .services
        .delete_key(cli, issued[2].1.parse().unwrap())
        .await
        .unwrap();
    w.app
        .services
        .update_user(
            cli,
            "carol",
            keyportal::service::users::UserPatch {
                disabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let fp = keyportal::keys::validate(corpus_key(issued[1].2).as_bytes(), &Default::default())
        .unwrap()
        .fingerprint_sha256()
        .to_owned();
    let (status, _) = answer(w.app.post(
        &w.app.admin,
        "/api/v1/blocklist",
        json!({"fingerprint": fp, "reason": "leaked"}),
    ))
    .await;
    assert_eq!(status, 201);
    let signed = w.krl_bytes().await;
    let (list, unsigned) = krl::verify(&signed, &[w.user_ca()]).unwrap();
    assert!(list.version > v1);
    let krl_file = w.dir.path().join("revoked_keys");
    std::fs::write(&krl_file, unsigned).unwrap();
    // The plain blocklisted key, as a file.
    let plain = w.dir.path().join("blocked.pub");
    std::fs::write(&plain, corpus_key(issued[1].2)).unwrap();
    let expect_revoked = [
        // (first cert, second cert)
        (true, false),  // alice ed25519: first revoked by serial
        (true, true),   // alice ecdsa-384: blocklisted key, every certificate
        (true, true),   // bob rsa: key deleted
        (false, false), // bob ecdsa-521: untouched
        (true, true),   // carol: disabled
        (true, true),
    ];
    for ((user, _, corpus, first, second), (r1, r2)) in issued.iter().zip(expect_revoked) {
        for (file, want) in [(first, r1), (second, r2)] {
            let cert =
                ssh_key::Certificate::from_openssh(std::fs::read_to_string(file).unwrap().trim())
                    .unwrap();
            assert_eq!(
                list.revokes_certificate(&cert),
                want,
                "{user} {corpus} (ours)"
            );
            assert_eq!(
                revoked_per_ssh_keygen(&krl_file, file),
                want,
                "{user} {corpus} (ssh-keygen)"
            );
        }
    }
    assert!(revoked_per_ssh_keygen(&krl_file, &plain));
    // The dump lists the version we wrote.
    let (_, dump) = keygen(&["-Q", "-l", "-f"], &krl_file);
    assert!(
        dump.contains(&format!("# KRL version {}", list.version)),
        "{dump}"
    );
    // Only servers and admins read the KRL.
    let res = w
        .app
        .client
        .get(w.app.url("/api/v1/ca/krl"))
        .bearer_auth(&w.alice)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

/// A stand-in portal that answers `/api/v1/ca/krl` with whatever bytes the test sets.
async fn fake_portal(bytes: std::sync::Arc<std::sync::Mutex<Vec<u8>>>) -> String {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/api/v1/ca/krl",
        get(move || {
            let b = bytes.lock().unwrap().clone();
            async move { b }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn fetch_krl(portal: &str, token: &Path, ca_keys: &Path, out: &Path) -> (Option<i32>, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_keyportal"))
        .args(["fetch-krl", "--portal", portal, "--token-file"])
        .arg(token)
        .arg("--ca-keys")
        .arg(ca_keys)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

// Multi-threaded: the commands run while the test waits on them, and the portal must answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_krl_installs_only_a_newer_krl_signed_by_a_trusted_ca() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new().await;
    let token = w.dir.path().join("token");
    std::fs::write(&token, &w.server_token).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ca_keys = w.dir.path().join("user_ca.pub");
    let res = w
        .app
        .client
        .get(w.app.url("/api/v1/ca/user"))
        .send()
        .await
        .unwrap();
    std::fs::write(&ca_keys, res.text().await.unwrap()).unwrap();
    let out = w.dir.path().join("revoked_keys");
    // From the real portal: installed, unsigned, 0644, and sshd-readable per ssh-keygen.
    let (code, text) = fetch_krl(&w.app.url(""), &token, &ca_keys, &out);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("installed KRL version"), "{text}");
    let installed = std::fs::read(&out).unwrap();
    let parsed = Krl::parse(&installed).unwrap();
    assert!(parsed.signatures.is_empty());
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let plain = w.dir.path().join("k.pub");
    std::fs::write(&plain, corpus_key("valid/ed25519.pub")).unwrap();
    assert!(!revoked_per_ssh_keygen(&out, &plain));
    let (code, text) = fetch_krl(&w.app.url(""), &token, &ca_keys, &out);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("installed already"), "{text}");

    // A portal that serves other bytes: each refused, the installed file untouched.
    let ca = w.app.services.ca.clone().unwrap();
    let served = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let fake = fake_portal(served.clone()).await;
    let krl_of = |version: u64| {
        Krl {
            version,
            comment: "test".into(),
            ..Default::default()
        }
        .to_bytes()
        .unwrap()
    };
    let current = parsed.krl.version;
    let newer = ca.user.sign_krl(&krl_of(current + 5)).unwrap();
    let mut tampered_body = newer.clone();
    tampered_body[30] ^= 1; // inside the header (generated date), covered by the signature
    let mut tampered_sig = newer.clone();
    let n = tampered_sig.len();
    tampered_sig[n - 1] ^= 1;
    let other = keyportal::ca::Authority::generate("x").unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "older",
            ca.user.sign_krl(&krl_of(current - 1)).unwrap(),
            "older than the installed",
        ),
        ("tampered body", tampered_body, "refused"),
        ("tampered signature", tampered_sig, "refused"),
        ("unsigned", krl_of(current + 5), "refused"),
        (
            "signed by another key",
            other.sign_krl(&krl_of(current + 5)).unwrap(),
            "refused",
        ),
        ("not a KRL", b"ssh-ed25519 AAAA\n".to_vec(), "refused"),
        ("empty", Vec::new(), "refused"),
    ];
    for (what, bytes, says) in cases {
        *served.lock().unwrap() = bytes;
        let (code, text) = fetch_krl(&fake, &token, &ca_keys, &out);
        assert_eq!(code, Some(1), "{what}: {text}");
        assert!(
            text.contains(says) && text.contains("left as it was"),
            "{what}: {text}"
        );
        assert_eq!(std::fs::read(&out).unwrap(), installed, "{what}");
    }
    // Someone's own list of revoked keys in that place is not overwritten.
    let own = w.dir.path().join("own_list");
    std::fs::write(&own, corpus_key("valid/ed25519.pub")).unwrap();
    *served.lock().unwrap() = newer.clone();
    let (code, text) = fetch_krl(&fake, &token, &ca_keys, &own);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("something other than a KRL"), "{text}");
    assert_eq!(
        std::fs::read_to_string(&own).unwrap(),
        corpus_key("valid/ed25519.pub")
    );
    // A newer one signed by the CA is taken, without its signature.
    *served.lock().unwrap() = newer.clone();
    let (code, text) = fetch_krl(&fake, &token, &ca_keys, &out);
    assert_eq!(code, Some(0), "{text}");
    let now_installed = std::fs::read(&out).unwrap();
    assert_eq!(Krl::parse(&now_installed).unwrap().krl.version, current + 5);
    assert!(newer.starts_with(&now_installed) && newer.len() > now_installed.len());
    // No portal answering: exit 1, file untouched.
    let (code, text) = fetch_krl("http://127.0.0.1:9", &token, &ca_keys, &out);
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(std::fs::read(&out).unwrap(), now_installed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyportal_cert_writes_the_certificate_next_to_the_key_and_renews_only_when_due() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new().await;
    w.key("alice", "valid/ed25519.pub").await;
    w.grant("web1", "alice", "deploy", None).await;
    let token = w.dir.path().join("token");
    std::fs::write(&token, &w.alice).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let public = w.dir.path().join("id_ed25519.pub");
    std::fs::write(&public, corpus_key("valid/ed25519.pub")).unwrap();
    let run = |extra: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_keyportal"))
            .args(["cert", "--portal", &w.app.url(""), "--token-file"])
            .arg(&token)
            .args(extra)
            .arg(&public)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    let (code, text) = run(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("for deploy@web1 valid until"), "{text}");
    let cert_file = w.dir.path().join("id_ed25519-cert.pub");
    assert_eq!(
        std::fs::metadata(&cert_file).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let (ok, listing) = keygen(&["-L", "-f"], &cert_file);
    assert!(ok && listing.contains("deploy"), "{listing}");
    let first = std::fs::read_to_string(&cert_file).unwrap();
    let (code, text) = run(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("not renewed"), "{text}");
    assert_eq!(std::fs::read_to_string(&cert_file).unwrap(), first);
    let (code, text) = run(&["--force", "--validity", "600"]);
    assert_eq!(code, Some(0), "{text}");
    assert_ne!(std::fs::read_to_string(&cert_file).unwrap(), first);
    // Refusals come back with the portal's reason, and nothing is written.
    let written = std::fs::read_to_string(&cert_file).unwrap();
    let (code, text) = run(&["--force", "--login", "root"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("no grant lets this key log in as \"root\""),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(&cert_file).unwrap(), written);
}

#[tokio::test]
async fn a_server_gets_host_certificates_for_its_name_and_hostname() {
    let w = World::new().await;
    let host_key = corpus_key("valid/ed25519-no-comment.pub");
    let (status, certs) = answer(w.app.post(
        &w.server_token,
        "/api/v1/servers/web1/host-certificate",
        json!({"host_keys": [host_key.trim()]}),
    ))
    .await;
    assert_eq!(status, 201, "{certs}");
    let (ok, text) = keygen(&["-L", "-f"], &w.cert_file("host", &certs[0]));
    assert!(ok, "{text}");
    assert!(text.contains("host certificate"), "{text}");
    assert!(
        text.contains("web1\n") && text.contains("web1.example.com"),
        "{text}"
    );
    let host_ca = w
        .app
        .services
        .ca
        .as_ref()
        .unwrap()
        .host
        .fingerprint()
        .to_owned();
    assert!(text.contains(&host_ca), "{text}");
    // Only for itself, and only valid keys.
    let (status, _) = answer(w.app.post(
        &w.server_token,
        "/api/v1/servers/db1/host-certificate",
        json!({"host_keys": [host_key.trim()]}),
    ))
    .await;
    assert_eq!(status, 404);
    let (status, problem) = answer(w.app.post(
        &w.server_token,
        "/api/v1/servers/web1/host-certificate",
        json!({"host_keys": ["ssh-ed25519 AAAA"]}),
    ))
    .await;
    assert_eq!(status, 422, "{problem}");
    let res = w
        .app
        .client
        .get(w.app.url("/api/v1/ca/known_hosts"))
        .send()
        .await
        .unwrap();
    let line = res.text().await.unwrap();
    assert!(line.starts_with("@cert-authority * ssh-ed25519 "), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_principals_fails_closed_and_a_no_replaces_its_cache() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new().await;
    let key = w.key("alice", "valid/ed25519.pub").await;
    w.grant("web1", "alice", "deploy", None).await;
    let (_, cert) = w.issue(&w.alice, &key, json!({})).await;
    let serial = cert["serial"].as_i64().unwrap().to_string();
    let key_id = cert["key_id"].as_str().unwrap().to_owned();
    let token = w.dir.path().join("token");
    std::fs::write(&token, &w.server_token).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cache = w.dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    let run = |portal: &str, with_cache: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyportal"));
        cmd.args([
            "fetch-principals",
            "--portal",
            portal,
            "--server",
            "web1",
            "--token-file",
        ])
        .arg(&token);
        if with_cache {
            cmd.arg("--cache-dir").arg(&cache);
        }
        let o = cmd.args(["deploy", &key_id, &serial]).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let live = w.app.url("");
    let dead = "http://127.0.0.1:9";
    assert_eq!(run(&live, true).0, Some(0));
    assert_eq!(run(&live, true).1, "deploy@web1\n");
    let (code, out, err) = run(dead, false);
    assert_eq!((code, out.as_str()), (Some(1), ""), "{err}");
    assert!(err.contains("fail closed"), "{err}");
    let (code, out, err) = run(dead, true);
    assert_eq!((code, out.as_str()), (Some(0), "deploy@web1\n"), "{err}");
    assert!(err.contains("cached"), "{err}");
    // Revoked: the portal's empty answer is what the cache holds from then on.
    let (status, _) = answer(w.app.post(
        &w.alice,
        &format!("/api/v1/certificates/{serial}/revoke"),
        json!({}),
    ))
    .await;
    assert_eq!(status, 204);
    assert_eq!(run(&live, true).1, "");
    assert_eq!(run(dead, true).1, "");
}
