//! Accounts and sign-in: sessions in PostgreSQL, CSRF, rate limiting, password changes,
//! disabled users, security headers, and two keyportal processes sharing sessions.

mod common;

use std::process::{Command, Stdio};

use common::served::Served;
use common::{answer, TestApp};
use keyportal::domain::Role;
use reqwest::Method;
use serde_json::json;

const PASSWORD: &str = "correct horse battery staple";

async fn audit_actions(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT action FROM audit_events ORDER BY id")
        .fetch_all(&app.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn sign_in_makes_a_new_httponly_session_and_lands_on_the_dashboard() {
    let app = TestApp::spawn().await;
    app.user_with_password("alice", Role::Member, PASSWORD)
        .await;
    let mut b = app.browser();

    // Anonymous pages send the browser to sign in, and back afterwards.
    let res = b.get("/?from=mail").await;
    assert_eq!(res.status, 303);
    assert_eq!(res.location(), Some("/login?next=%2F%3Ffrom%3Dmail"));

    // A session id planted before sign-in (fixation) is never adopted.
    b.cookies
        .insert("kp_session".into(), "planted-by-attacker".into());
    let res = b.sign_in("alice", PASSWORD).await;
    assert_eq!(res.status, 303, "{}", res.body);
    assert_eq!(res.location(), Some("/"));
    let cookie = res.set_cookie("kp_session").expect("session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    let secret = b.cookies["kp_session"].clone();
    assert_ne!(secret, "planted-by-attacker");

    let home = b.get("/").await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("alice"), "{}", home.body);
    assert!(home.body.contains("member"), "the role is shown");

    // The session works for the JSON API too; the planted id does not.
    let me = b.api(Method::GET, "/api/v1/me", None, None).await;
    assert_eq!(me.status, 200);
    assert!(me.body.contains("\"alice\""));
    let mut attacker = app.browser();
    attacker
        .cookies
        .insert("kp_session".into(), "planted-by-attacker".into());
    assert_eq!(attacker.get("/api/v1/me").await.status, 401);

    // Only a hash of the secret is stored.
    let stored: Vec<u8> = sqlx::query_scalar("SELECT id FROM sessions")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_ne!(stored, secret.as_bytes());
    assert!(audit_actions(&app)
        .await
        .contains(&"session.sign_in".to_owned()));

    // Signed in, the sign-in page goes straight to the dashboard.
    assert_eq!(b.get("/login").await.location(), Some("/"));
}

#[tokio::test]
async fn the_session_cookie_is_secure_when_the_portal_is_served_over_https() {
    let app = TestApp::spawn_with(|s| s.web.secure_cookies = true).await;
    app.user_with_password("alice", Role::Member, PASSWORD)
        .await;
    let mut b = app.browser();
    let res = b.sign_in("alice", PASSWORD).await;
    assert!(res
        .set_cookie("__Host-kp_session")
        .unwrap()
        .contains("Secure"));
}

#[tokio::test]
async fn unknown_user_and_wrong_password_get_the_same_answer_and_are_audited() {
    let app = TestApp::spawn().await;
    app.user_with_password("alice", Role::Member, PASSWORD)
        .await;
    app.user_with_password("bob", Role::Member, PASSWORD).await;
    let mut bob = app.browser();
    bob.signed_in("bob", PASSWORD).await;
    app.services
        .update_user(
            &keyportal::service::Ctx::command_line(),
            "bob",
            keyportal::service::users::UserPatch {
                disabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // A disabled user's session ends at once.
    assert_eq!(bob.get("/").await.status, 303);

    let mut answers = Vec::new();
    for (user, password) in [
        ("alice", "wrong password here"),
        ("nobody", PASSWORD),
        ("bob", PASSWORD),
    ] {
        let mut b = app.browser();
        let res = b.sign_in(user, password).await;
        assert_eq!(res.status, 401, "{user}");
        assert!(res.set_cookie("kp_session").is_none());
        let message = res
            .body
            .split("id=\"login-error\">")
            .nth(1)
            .and_then(|r| r.split('<').next())
            .expect("an error message")
            .to_owned();
        answers.push(message);
        // What was typed as the username is kept; the password is not echoed.
        assert!(res.body.contains(&format!("value=\"{user}\"")));
        assert!(!res.body.contains(password));
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    let reasons: Vec<String> = sqlx::query_scalar(
        "SELECT detail->>'reason' FROM audit_events WHERE action = 'session.sign_in_failed' ORDER BY id",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(reasons, ["wrong_password", "unknown_user", "disabled"]);
    let addrs: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT detail->>'client_addr' FROM audit_events WHERE action LIKE 'session.%'",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(
        addrs,
        ["127.0.0.1"],
        "the client's address is what is counted"
    );
}

#[tokio::test]
async fn failed_sign_ins_are_rate_limited_per_account_and_per_address() {
    let app = TestApp::spawn_with(|s| {
        s.services.sessions.max_failures_per_account = 3;
        s.services.sessions.max_failures_per_address = 5;
    })
    .await;
    for user in ["alice", "carol"] {
        app.user_with_password(user, Role::Member, PASSWORD).await;
    }
    let mut b = app.browser();
    for _ in 0..3 {
        assert_eq!(b.sign_in("alice", "not the password").await.status, 401);
    }
    // Locked: even the right password is refused until the window passes.
    let res = b.sign_in("alice", PASSWORD).await;
    assert_eq!(res.status, 429, "{}", res.body);
    let retry: u64 = res.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    assert!(res.body.contains("Too many failed sign-ins"));
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sessions")
            .fetch_one(&app.db.pool)
            .await
            .unwrap(),
        0
    );

    // Another account from this address still works (3 failures so far < 5)...
    assert_eq!(b.sign_in("carol", PASSWORD).await.status, 303);
    // ...until this address has failed 5 times, whichever accounts it tried.
    let mut c = app.browser();
    assert_eq!(c.sign_in("nobody", "x").await.status, 401);
    assert_eq!(c.sign_in("someone", "x").await.status, 401);
    let res = c.sign_in("carol", PASSWORD).await;
    assert_eq!(res.status, 429);

    // The window is in the database: once the failures age out, sign-in works again.
    sqlx::query("UPDATE sign_in_failures SET at = at - interval '16 minutes'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(c.sign_in("alice", PASSWORD).await.status, 303);
}

#[tokio::test]
async fn forms_and_session_api_writes_without_the_csrf_token_are_refused_and_change_nothing() {
    let app = TestApp::spawn().await;
    app.user_with_password("alice", Role::Member, PASSWORD)
        .await;
    let mut b = app.browser();

    // Sign-in form without its token (a cross-site login attempt).
    let res = b
        .post_form(
            "/login",
            &[
                ("username", "alice"),
                ("password", PASSWORD),
                ("csrf_token", "forged"),
            ],
        )
        .await;
    assert_eq!(res.status, 403);
    assert!(res.set_cookie("kp_session").is_none());

    let csrf = b.signed_in("alice", PASSWORD).await;

    // Sign-out without, or with a wrong, token: refused, still signed in.
    for fields in [vec![], vec![("csrf_token", "wrong")]] {
        let res = b.post_form("/logout", &fields).await;
        assert_eq!(res.status, 403, "{}", res.body);
        assert!(res.body.contains("Nothing was changed"));
        assert_eq!(b.get("/").await.status, 200);
    }

    // JSON writes on the session need X-CSRF-Token; bearer calls do not.
    let body = json!({ "name": "laptop" });
    let res = b
        .api(Method::POST, "/api/v1/tokens", Some(body.clone()), None)
        .await;
    assert_eq!(res.status, 403);
    assert!(res.body.contains("csrf_token_invalid"));
    let res = b
        .api(
            Method::POST,
            "/api/v1/tokens",
            Some(body.clone()),
            Some("nope"),
        )
        .await;
    assert_eq!(res.status, 403);
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM api_tokens")
            .fetch_one(&app.db.pool)
            .await
            .unwrap()
    };
    assert_eq!(count().await, 1, "only the admin's test token exists");
    let res = b
        .api(Method::POST, "/api/v1/tokens", Some(body), Some(&csrf))
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    assert_eq!(count().await, 2);

    // Sign-out with the token deletes the session.
    let res = b.post_form("/logout", &[("csrf_token", &csrf)]).await;
    assert_eq!(res.status, 303);
    assert_eq!(res.location(), Some("/login"));
    assert!(!b.cookies.contains_key("kp_session"));
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sessions")
            .fetch_one(&app.db.pool)
            .await
            .unwrap(),
        0
    );
    assert!(audit_actions(&app)
        .await
        .contains(&"session.sign_out".to_owned()));
}

#[tokio::test]
async fn changing_a_password_ends_the_other_sessions_but_not_this_one() {
    let app = TestApp::spawn().await;
    app.user_with_password("alice", Role::Member, PASSWORD)
        .await;
    let mut laptop = app.browser();
    let csrf = laptop.signed_in("alice", PASSWORD).await;
    let mut phone = app.browser();
    phone.signed_in("alice", PASSWORD).await;

    let res = laptop
        .api(
            Method::PATCH,
            "/api/v1/users/alice",
            Some(json!({ "password": "a brand new passphrase" })),
            Some(&csrf),
        )
        .await;
    assert_eq!(
        res.status, 400,
        "without the current password: {}",
        res.body
    );
    assert!(
        res.body.contains("current_password_required"),
        "{}",
        res.body
    );
    let res = laptop
        .api(
            Method::PATCH,
            "/api/v1/users/alice",
            Some(json!({ "password": "a brand new passphrase", "current_password": "wrong one entirely" })),
            Some(&csrf),
        )
        .await;
    assert_eq!(
        res.status, 403,
        "with a wrong current password: {}",
        res.body
    );
    assert_eq!(phone.get("/").await.status, 200, "nothing changed yet");
    let res = laptop
        .api(
            Method::PATCH,
            "/api/v1/users/alice",
            Some(json!({ "password": "a brand new passphrase", "current_password": PASSWORD })),
            Some(&csrf),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(
        laptop.get("/").await.status,
        200,
        "the changing session stays"
    );
    assert_eq!(phone.get("/").await.status, 303, "the other session ended");
    assert_eq!(phone.sign_in("alice", PASSWORD).await.status, 401);
    assert_eq!(
        phone
            .sign_in("alice", "a brand new passphrase")
            .await
            .status,
        303
    );

    // An admin resetting the password ends every session of that user.
    let (status, _) = answer(app.patch(
        &app.admin,
        "/api/v1/users/alice",
        json!({ "password": "set by the admin!!" }),
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(laptop.get("/").await.status, 303);
    assert_eq!(phone.get("/").await.status, 303);
}

#[tokio::test]
async fn idle_and_absolute_expiry_end_sessions() {
    let app = TestApp::spawn().await;
    app.user_with_password("alice", Role::Member, PASSWORD)
        .await;
    let mut b = app.browser();
    b.signed_in("alice", PASSWORD).await;
    sqlx::query("UPDATE sessions SET last_seen_at = now() - interval '59 minutes'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(b.get("/").await.status, 200, "used within the idle hour");
    sqlx::query("UPDATE sessions SET last_seen_at = now() - interval '61 minutes'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(b.get("/").await.status, 303, "idle for over an hour");

    b.signed_in("alice", PASSWORD).await;
    sqlx::query("UPDATE sessions SET expires_at = now() - interval '1 second'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(b.get("/").await.status, 303, "past the absolute lifetime");
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = TestApp::spawn().await;
    let mut b = app.browser();
    for path in [
        "/login",
        "/",
        "/api/v1/me",
        "/healthz",
        "/no/such/page",
        "/static/keyportal.css",
    ] {
        let res = b.get(path).await;
        let h = |name: &str| {
            res.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("{path}: no {name}"))
                .to_owned()
        };
        let csp = h("content-security-policy");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(h("x-content-type-options"), "nosniff");
        assert_eq!(h("referrer-policy"), "same-origin");
        assert_eq!(h("x-frame-options"), "DENY");
    }
}

#[tokio::test]
async fn the_last_enabled_admin_cannot_be_demoted_disabled_or_deleted() {
    let app = TestApp::spawn().await;
    for patch in [json!({ "role": "member" }), json!({ "disabled": true })] {
        let (status, body) = answer(app.patch(&app.admin, "/api/v1/users/root", patch)).await;
        assert_eq!(status, 409);
        assert_eq!(body["code"], "last_admin");
    }
    let second = app.user_with_token("second", Role::Admin).await;
    let (status, body) = answer(app.delete(&second, "/api/v1/users/root")).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) =
        answer(app.patch(&second, "/api/v1/users/second", json!({ "role": "member" }))).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("last_admin")));
}

#[tokio::test]
async fn admin_create_without_a_password_prints_one_that_signs_in() {
    let app = TestApp::spawn().await;
    let out = Command::new(env!("CARGO_BIN_EXE_keyportal"))
        .args(["admin", "create", "--username", "ops"])
        .env("DATABASE_URL", &app.db.url)
        .env("KEYPORTAL_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let password = String::from_utf8(out.stdout).unwrap();
    let password = password.trim_end();
    assert!(password.len() >= 20, "{password:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("generated password"));
    let mut b = app.browser();
    assert_eq!(b.sign_in("ops", password).await.status, 303);
    let me = b.api(Method::GET, "/api/v1/me", None, None).await;
    assert!(me.body.contains("\"admin\""), "{}", me.body);
}

#[tokio::test]
async fn a_session_made_by_one_process_works_on_another() {
    let app = TestApp::spawn().await;
    app.user_with_password("alice", Role::Member, PASSWORD)
        .await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let env = [("DATABASE_URL", app.db.url.as_str())];
    let (_one, addr1) = Served::start(dirs[0].path(), &env);
    let (_two, addr2) = Served::start(dirs[1].path(), &env);
    assert_ne!(addr1, addr2);

    let mut on_one = common::browser::Browser::new(&format!("http://{addr1}"));
    let csrf = on_one.signed_in("alice", PASSWORD).await;
    let mut on_two = common::browser::Browser::new(&format!("http://{addr2}"));
    on_two.cookies = on_one.cookies.clone();
    let home = on_two.get("/").await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("alice"));
    assert_eq!(
        home.csrf_token(),
        csrf,
        "the CSRF token is the session's, everywhere"
    );

    // Signing out on the second ends it on the first.
    assert_eq!(
        on_two
            .post_form("/logout", &[("csrf_token", &csrf)])
            .await
            .status,
        303
    );
    assert_eq!(on_one.get("/").await.status, 303);
}
