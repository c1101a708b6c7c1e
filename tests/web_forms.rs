//! The HTML UI without a browser: every form's error path (a clear message next to the field,
//! what was typed kept, nothing changed), escaping, and who may reach which page.

mod common;

use common::browser::{Browser, Page};
use common::{corpus_key, TestApp};
use keyportal::domain::Role;

const PASSWORD: &str = "correct horse battery staple";

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

/// An app with admin `boss` and member `alice`, each signed in on their own browser.
async fn setup() -> (TestApp, Browser, String, Browser, String) {
    let app = TestApp::spawn().await;
    app.user_with_password("boss", Role::Admin, PASSWORD).await;
    app.user_with_password("alice", Role::Member, PASSWORD)
        .await;
    let mut admin = app.browser();
    let admin_csrf = admin.signed_in("boss", PASSWORD).await;
    let mut alice = app.browser();
    let alice_csrf = alice.signed_in("alice", PASSWORD).await;
    (app, admin, admin_csrf, alice, alice_csrf)
}

fn field_error(page: &Page) -> String {
    page.body
        .split("class=\"field-error\"")
        .nth(1)
        .and_then(|r| r.split_once('>'))
        .and_then(|(_, r)| r.split('<').next())
        .unwrap_or_else(|| panic!("no field error on the page: {}", page.body))
        .to_owned()
}

#[tokio::test]
async fn a_rejected_key_shows_the_validators_reason_keeps_the_text_and_stores_nothing() {
    let (app, _, _, mut alice, csrf) = setup().await;
    let bad = corpus_key("invalid/ed25519-identity-point.pub");
    let res = alice
        .post_form(
            "/users/alice/keys",
            &[("csrf_token", &csrf), ("key", &bad), ("title", "laptop")],
        )
        .await;
    assert_eq!(res.status, 422);
    assert!(
        field_error(&res).contains("ed25519_point_invalid"),
        "{}",
        field_error(&res)
    );
    assert!(res.body.contains(bad.trim()), "what was typed is kept");
    assert!(res.body.contains("value=\"laptop\""));
    assert!(res.body.contains("aria-invalid=\"true\""));
    assert_eq!(count(&app, "ssh_keys").await, 0);

    let res = alice
        .post_form(
            "/users/alice/keys",
            &[
                ("csrf_token", &csrf),
                ("key", &corpus_key("invalid/rsa-1024.pub")),
            ],
        )
        .await;
    assert_eq!(res.status, 422);
    assert!(field_error(&res).contains("key_too_small"));

    let res = alice
        .post_form(
            "/users/alice/keys",
            &[
                ("csrf_token", &csrf),
                ("key", &corpus_key("valid/ed25519.pub")),
                ("expires_on", "next tuesday"),
            ],
        )
        .await;
    assert_eq!(res.status, 422);
    assert!(field_error(&res).contains("is not a date"));
    assert_eq!(count(&app, "ssh_keys").await, 0);
}

#[tokio::test]
async fn a_pasted_private_key_is_cleared_with_a_warning_and_never_echoed() {
    let (app, _, _, mut alice, csrf) = setup().await;
    let private = corpus_key("invalid/private-openssh-ed25519.pub");
    let res = alice
        .post_form(
            "/users/alice/keys",
            &[("csrf_token", &csrf), ("key", &private)],
        )
        .await;
    assert_eq!(res.status, 422);
    assert!(res.body.contains("id=\"private-key-warning\""));
    assert!(field_error(&res).contains("private_key"));
    let secret_line = private.lines().nth(1).unwrap();
    assert!(
        !res.body.contains(secret_line),
        "the private key is not in the page"
    );
    assert_eq!(count(&app, "ssh_keys").await, 0);
}

#[tokio::test]
async fn an_uploaded_pub_file_is_added_and_its_fingerprint_shown() {
    let (app, _, _, mut alice, csrf) = setup().await;
    let res = alice
        .post_multipart(
            "/users/alice/keys",
            &[("csrf_token", &csrf), ("key", ""), ("title", "from file")],
            (
                "file",
                "id_ecdsa.pub",
                corpus_key("valid/ecdsa-256.pub").into_bytes(),
            ),
        )
        .await;
    assert_eq!(res.status, 303, "{}", res.body);
    let page = alice.get("/users/alice/keys").await;
    let fp: String = sqlx::query_scalar("SELECT fingerprint_sha256 FROM ssh_keys")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(
        page.body
            .contains(&format!("Key added: ecdsa-sha2-nistp256 {fp}")),
        "the flash"
    );
    assert!(page.body.contains("from file"));
    // The flash is shown once.
    assert!(!alice
        .get("/users/alice/keys")
        .await
        .body
        .contains("Key added"));

    // A binary upload is refused with a reason, and nothing is added.
    let res = alice
        .post_multipart(
            "/users/alice/keys",
            &[("csrf_token", &csrf)],
            ("file", "id_ed25519", vec![0xff, 0xfe, 0x00, 0x01]),
        )
        .await;
    assert_eq!(res.status, 400);
    assert!(res.body.contains("is not text"));
    assert_eq!(count(&app, "ssh_keys").await, 1);
}

#[tokio::test]
async fn user_text_is_escaped_everywhere_it_is_shown() {
    let (app, mut admin, _, mut alice, csrf) = setup().await;
    let key = corpus_key("valid/ed25519-comment-script.pub");
    assert!(key.contains("<script>"));
    let res = alice
        .post_form(
            "/users/alice/keys",
            &[
                ("csrf_token", &csrf),
                ("key", &key),
                ("title", "<b>bold</b>"),
            ],
        )
        .await;
    assert_eq!(res.status, 303, "{}", res.body);
    for page in [alice.get("/users/alice/keys").await, admin.get("/").await] {
        assert!(!page.body.contains("<script>"), "{}", page.body);
        assert!(!page.body.contains("<b>bold"));
    }
    let page = alice.get("/users/alice/keys").await;
    assert!(page.body.contains("&#60;script&#62;alert"), "{}", page.body);
    assert_eq!(count(&app, "ssh_keys").await, 1);
}

#[tokio::test]
async fn import_reports_every_line_and_refuses_a_private_key_file() {
    let (app, _, _, mut alice, csrf) = setup().await;
    let file = format!(
        "{}{}garbage\n",
        corpus_key("valid/ed25519.pub"),
        corpus_key("invalid/rsa-1024.pub")
    );
    let res = alice
        .post_form(
            "/users/alice/keys/import",
            &[("csrf_token", &csrf), ("text", &file)],
        )
        .await;
    assert_eq!(res.status, 200);
    assert!(
        res.body.contains("1 key(s) added from 3 line(s)"),
        "{}",
        res.body
    );
    assert!(res.body.contains("key_too_small"));
    let res = alice
        .post_form(
            "/users/alice/keys/import",
            &[
                ("csrf_token", &csrf),
                ("text", &corpus_key("invalid/private-pem-rsa.pub")),
            ],
        )
        .await;
    assert_eq!(res.status, 422);
    assert!(res.body.contains("private_key") || res.body.contains("private key"));
    assert_eq!(count(&app, "ssh_keys").await, 1);
}

#[tokio::test]
async fn user_forms_explain_what_is_wrong_and_change_nothing() {
    let (app, mut admin, csrf, mut alice, alice_csrf) = setup().await;
    let users = count(&app, "users").await;
    let res = admin
        .post_form(
            "/users",
            &[
                ("csrf_token", &csrf),
                ("username", "Bad Name"),
                ("role", "member"),
            ],
        )
        .await;
    assert_eq!(res.status, 422);
    assert!(res.body.contains("value=\"Bad Name\""));
    let res = admin
        .post_form(
            "/users",
            &[
                ("csrf_token", &csrf),
                ("username", "carol"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(res.status, 422);
    assert!(field_error(&res).contains("at least 12 characters"));
    assert!(
        !res.body.contains("value=\"short\""),
        "passwords are not echoed"
    );
    let res = admin
        .post_form("/users", &[("csrf_token", &csrf), ("username", "alice")])
        .await;
    assert_eq!(res.status, 422);
    assert!(res.body.contains("taken"));
    assert_eq!(count(&app, "users").await, users);

    let res = alice
        .post_form(
            "/users/alice",
            &[
                ("csrf_token", &alice_csrf),
                ("display_name", "Alice"),
                ("email", "not-an-email"),
            ],
        )
        .await;
    assert_eq!(res.status, 422);
    assert!(field_error(&res).contains("is not an email address"));
    let res = alice
        .post_form(
            "/users/alice/password",
            &[
                ("csrf_token", &alice_csrf),
                ("password", "a long new passphrase"),
                ("confirm", "different"),
            ],
        )
        .await;
    assert_eq!(res.status, 422);
    assert!(field_error(&res).contains("differ"));
    // Members cannot make themselves admin through the form.
    let res = alice
        .post_form(
            "/users/alice",
            &[
                ("csrf_token", &alice_csrf),
                ("display_name", "A"),
                ("role", "admin"),
            ],
        )
        .await;
    assert_eq!(res.status, 403);
    let role: String = sqlx::query_scalar("SELECT role FROM users WHERE username = 'alice'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(role, "member");

    // The only enabled admin cannot demote themselves.
    sqlx::query("UPDATE users SET disabled = true WHERE username = 'root'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let res = admin
        .post_form(
            "/users/boss",
            &[
                ("csrf_token", &csrf),
                ("display_name", ""),
                ("role", "member"),
                ("disabled_shown", "1"),
            ],
        )
        .await;
    assert_eq!(res.status, 422);
    assert!(res.body.contains("only enabled admin"));

    // A successful change redirects with a message.
    let res = alice
        .post_form(
            "/users/alice/password",
            &[
                ("csrf_token", &alice_csrf),
                ("current_password", "not her password at all"),
                ("password", "a long new passphrase"),
                ("confirm", "a long new passphrase"),
            ],
        )
        .await;
    assert_eq!(res.status, 422, "a wrong current password: {}", res.body);
    assert!(
        res.body.contains("give your current password"),
        "{}",
        res.body
    );
    let res = alice
        .post_form(
            "/users/alice/password",
            &[
                ("csrf_token", &alice_csrf),
                ("current_password", PASSWORD),
                ("password", "a long new passphrase"),
                ("confirm", "a long new passphrase"),
            ],
        )
        .await;
    assert_eq!(res.status, 303);
    assert!(alice
        .get("/users/alice")
        .await
        .body
        .contains("Password changed"));
}

#[tokio::test]
async fn server_grant_policy_and_token_forms_refuse_bad_input() {
    let (app, mut admin, csrf, _, _) = setup().await;
    let res = admin
        .post_form("/servers", &[("csrf_token", &csrf), ("name", "Web_1")])
        .await;
    assert_eq!(res.status, 422);
    assert!(res.body.contains("value=\"Web_1\""));
    assert_eq!(count(&app, "servers").await, 0);
    assert_eq!(
        admin
            .post_form("/servers", &[("csrf_token", &csrf), ("name", "web1")])
            .await
            .location(),
        Some("/servers/web1")
    );

    for (fields, expect) in [
        (vec![("username", "alice"), ("login", "root user")], "login"),
        (vec![("username", "ghost"), ("login", "deploy")], "ghost"),
        (
            vec![
                ("username", "alice"),
                ("login", "deploy"),
                ("options", "command=\"x\"\nssh-rsa AAAA"),
            ],
            "option",
        ),
        (
            vec![("username", "alice"), ("login", "deploy"), ("key_id", "12")],
            "key id",
        ),
        (
            vec![
                ("username", "alice"),
                ("login", "deploy"),
                ("expires_on", "2001-01-01"),
            ],
            "future",
        ),
    ] {
        let mut all = vec![("csrf_token", csrf.as_str())];
        all.extend(fields);
        let res = admin.post_form("/servers/web1/grants", &all).await;
        assert_eq!(res.status, 422, "{all:?}: {}", res.body);
        assert!(
            res.body.to_lowercase().contains(expect),
            "{all:?}: {}",
            res.body
        );
    }
    assert_eq!(count(&app, "grants").await, 0);

    // Without a public URL the server page warns instead of printing a plain-http line.
    let page = admin.get("/servers/web1").await;
    assert!(page.body.contains("id=\"no-public-url\""), "{}", page.body);
    assert!(page.body.contains("KEYPORTAL_PUBLIC_URL"));
    assert!(!page.body.contains("fetch-keys --portal"), "{}", page.body);

    // OpenSSH 10.5's hybrid type is its own algorithm on the policy page, allowed by default.
    let page = admin.get("/policy").await;
    assert!(
        page.body.contains(
            "value=\"ssh-mldsa44-ed25519@openssh.com\" checked> <code>ssh-mldsa44-ed25519@openssh.com</code>"
        ),
        "{}",
        page.body
    );

    let res = admin
        .post_form(
            "/policy",
            &[
                ("csrf_token", &csrf),
                ("min_rsa_bits", "8192"),
                ("max_rsa_bits", "4096"),
                ("allowed_algorithms", "ssh-rsa"),
                ("action", "save"),
            ],
        )
        .await;
    assert_eq!(res.status, 422);
    assert!(res.body.contains("id=\"policy-error\""), "{}", res.body);
    let res = admin
        .post_form(
            "/policy",
            &[("csrf_token", &csrf), ("min_rsa_bits", "many")],
        )
        .await;
    assert_eq!(res.status, 422);
    assert_eq!(
        count(&app, "audit_events WHERE action = 'policy.update'").await,
        0
    );

    let res = admin
        .post_form("/tokens", &[("csrf_token", &csrf), ("name", "  ")])
        .await;
    assert_eq!(res.status, 422);
    assert!(field_error(&res).contains("token name"));
}

#[tokio::test]
async fn the_policy_preview_lists_the_keys_a_change_would_invalidate_without_saving() {
    let (app, mut admin, csrf, mut alice, alice_csrf) = setup().await;
    for key in ["valid/rsa-2048.pub", "valid/ed25519.pub"] {
        let res = alice
            .post_form(
                "/users/alice/keys",
                &[("csrf_token", &alice_csrf), ("key", &corpus_key(key))],
            )
            .await;
        assert_eq!(res.status, 303);
    }
    let mut fields = vec![
        ("csrf_token", csrf.as_str()),
        ("min_rsa_bits", "3072"),
        ("action", "preview"),
    ];
    for a in ["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256"] {
        fields.push(("allowed_algorithms", a));
    }
    let res = admin.post_form("/policy", &fields).await;
    assert_eq!(res.status, 200);
    assert!(
        res.body
            .contains("1 key(s) valid today would become invalid"),
        "{}",
        res.body
    );
    assert!(res.body.contains("key_too_small"));
    let min: i64 = sqlx::query_scalar("SELECT (settings->>'min_rsa_bits')::bigint FROM policy")
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or(2048);
    assert_eq!(min, 2048, "a preview saves nothing");
}

#[tokio::test]
async fn members_cannot_reach_admin_pages_or_others_keys() {
    let (app, _, _, mut alice, csrf) = setup().await;
    app.user_with_password("bob", Role::Member, PASSWORD).await;
    for path in ["/users", "/audit", "/users/bob", "/users/bob/keys"] {
        let res = alice.get(path).await;
        assert!(
            res.status == 403 || res.status == 404,
            "{path}: {}",
            res.status
        );
    }
    assert_eq!(
        alice.get("/users/bob/keys").await.status,
        404,
        "no name leaks"
    );
    for (path, fields) in [
        ("/users", vec![("username", "mallory")]),
        ("/servers", vec![("name", "evil")]),
        (
            "/policy",
            vec![("min_rsa_bits", "1024"), ("action", "save")],
        ),
    ] {
        let mut all = vec![("csrf_token", csrf.as_str())];
        all.extend(fields);
        let res = alice.post_form(path, &all).await;
        assert_eq!(res.status, 403, "{path}");
    }
    assert_eq!(count(&app, "users WHERE username = 'mallory'").await, 0);
    assert_eq!(count(&app, "servers").await, 0);
    // The pages members may use render, with their name and role in the header.
    for path in [
        "/",
        "/users/alice/keys",
        "/servers",
        "/tokens",
        "/policy",
        "/users/alice",
    ] {
        let res = alice.get(path).await;
        assert_eq!(res.status, 200, "{path}");
        assert!(
            res.body.contains("data-testid=\"current-role\">member"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn every_form_without_its_csrf_token_is_refused() {
    let (app, mut admin, _, _, _) = setup().await;
    let before = count(&app, "audit_events").await;
    for path in [
        "/users",
        "/users/alice",
        "/users/alice/password",
        "/users/alice/delete",
        "/users/alice/keys",
        "/users/alice/keys/import",
        "/servers",
        "/policy",
        "/tokens",
        "/logout",
    ] {
        let res = admin
            .post_form(path, &[("username", "x"), ("name", "x")])
            .await;
        assert_eq!(res.status, 403, "{path}");
    }
    assert_eq!(count(&app, "audit_events").await, before, "nothing changed");

    // Without a session a form post goes to sign in, and back home afterwards (a post
    // cannot be replayed); a page comes back to itself.
    let mut stranger = app.browser();
    let res = stranger
        .post_form("/users/alice/keys", &[("key", "ssh-ed25519 AAAA")])
        .await;
    assert_eq!(res.location(), Some("/login?next=%2F"));
    let res = stranger.get("/users/alice/keys").await;
    assert_eq!(res.location(), Some("/login?next=%2Fusers%2Falice%2Fkeys"));
    assert_eq!(count(&app, "ssh_keys").await, 0);
}

#[tokio::test]
async fn edits_and_deletes_of_things_that_are_not_there_or_not_right_are_refused() {
    let (app, mut admin, csrf, mut alice, alice_csrf) = setup().await;
    assert_eq!(
        admin
            .post_form("/servers", &[("csrf_token", &csrf), ("name", "web1")])
            .await
            .status,
        303
    );
    let long = "h".repeat(300);
    let res = admin
        .post_form(
            "/servers/web1",
            &[
                ("csrf_token", &csrf),
                ("hostname", &long),
                ("description", ""),
            ],
        )
        .await;
    assert_eq!(res.status, 422);
    assert!(field_error(&res).contains("at most 253 characters"));
    let hostname: String = sqlx::query_scalar("SELECT hostname FROM servers")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(hostname, "");

    let ghost = "0f8c0000-0000-4000-8000-000000000000";
    for path in [
        format!("/keys/{ghost}/delete"),
        "/keys/not-a-uuid/delete".to_owned(),
        format!("/tokens/{ghost}/revoke"),
        format!("/grants/{ghost}/delete"),
        "/servers/nowhere/delete".to_owned(),
        "/users/ghost/delete".to_owned(),
    ] {
        let res = admin
            .post_form(&path, &[("csrf_token", &csrf), ("server", "web1")])
            .await;
        assert_eq!(res.status, 404, "{path}: {}", res.body);
        assert!(res.body.contains("Not Found"), "{path}");
    }

    // An admin cannot delete their own account from the UI either.
    let res = admin
        .post_form("/users/boss/delete", &[("csrf_token", &csrf)])
        .await;
    assert_eq!(res.status, 409);
    assert!(res.body.contains("cannot delete your own account"));

    // A member cannot delete someone else's key: it is simply not there for them.
    let key = app
        .services
        .add_key(
            &keyportal::service::Ctx::command_line(),
            "boss",
            corpus_key("valid/ed25519.pub").as_bytes(),
            None,
            None,
        )
        .await
        .unwrap();
    let res = alice
        .post_form(
            &format!("/keys/{}/delete", key.id),
            &[("csrf_token", &alice_csrf)],
        )
        .await;
    assert_eq!(res.status, 404);
    assert_eq!(count(&app, "ssh_keys").await, 1);
}
