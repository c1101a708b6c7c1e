//! No input causes a 500: NUL and other control characters are refused at the door with 400
//! `invalid_characters` (PostgreSQL refuses NUL in text, so one that reached a query was a 500),
//! and a cursor the list could not have returned is 400 `invalid_cursor`. Each refusal changes
//! nothing.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{answer, TestApp};
use keyportal::domain::Role;
use reqwest::Method;
use serde_json::{json, Value};

const NUL: &str = "a\u{0}b";
const PASSWORD: &str = "correct horse battery staple";

fn ed25519_key() -> String {
    common::corpus_key("valid/ed25519.pub").trim().to_owned()
}

/// Rows that any accepted write would have added to.
async fn footprint(app: &TestApp) -> Vec<i64> {
    common::data_counts(&app.db.pool).await
}

/// A member `alice` with one key, and a server `web1` with a grant for her.
async fn world(app: &TestApp) {
    let (s, _) = answer(app.post(&app.admin, "/api/v1/users", json!({"username": "alice"}))).await;
    assert_eq!(s, 201);
    let (s, _) = answer(app.post(
        &app.admin,
        "/api/v1/users/alice/keys",
        json!({"key": ed25519_key()}),
    ))
    .await;
    assert_eq!(s, 201);
    let (s, _) = answer(app.post(&app.admin, "/api/v1/servers", json!({"name": "web1"}))).await;
    assert_eq!(s, 201);
    let (s, _) = answer(app.post(
        &app.admin,
        "/api/v1/servers/web1/grants",
        json!({"username": "alice", "login": "deploy"}),
    ))
    .await;
    assert_eq!(s, 201);
}

#[tokio::test]
async fn nul_in_any_field_of_any_json_body_is_400_and_changes_nothing() {
    let app = TestApp::spawn().await;
    world(&app).await;
    let key = ed25519_key();
    let cases: Vec<(Method, &str, Value)> = vec![
        (Method::POST, "/api/v1/users", json!({"username": NUL})),
        (
            Method::POST,
            "/api/v1/users",
            json!({"username": "bob", "display_name": NUL}),
        ),
        (
            Method::POST,
            "/api/v1/users",
            json!({"username": "bob", "email": NUL}),
        ),
        (
            Method::POST,
            "/api/v1/users",
            json!({"username": "bob", "password": format!("{PASSWORD}{NUL}")}),
        ),
        (
            Method::PATCH,
            "/api/v1/users/alice",
            json!({"display_name": NUL}),
        ),
        (Method::PATCH, "/api/v1/users/alice", json!({"email": NUL})),
        (
            Method::PATCH,
            "/api/v1/users/alice",
            json!({"password": format!("{PASSWORD}{NUL}")}),
        ),
        (
            Method::POST,
            "/api/v1/users/alice/keys",
            json!({"key": key, "title": NUL}),
        ),
        (Method::POST, "/api/v1/servers", json!({"name": NUL})),
        (
            Method::POST,
            "/api/v1/servers",
            json!({"name": "web2", "hostname": NUL}),
        ),
        (
            Method::POST,
            "/api/v1/servers",
            json!({"name": "web2", "description": NUL}),
        ),
        (
            Method::PATCH,
            "/api/v1/servers/web1",
            json!({"hostname": NUL}),
        ),
        (
            Method::PATCH,
            "/api/v1/servers/web1",
            json!({"description": NUL}),
        ),
        (
            Method::POST,
            "/api/v1/servers/web1/grants",
            json!({"username": NUL, "login": "ops"}),
        ),
        (
            Method::POST,
            "/api/v1/servers/web1/grants",
            json!({"username": "alice", "login": NUL}),
        ),
        (
            Method::POST,
            "/api/v1/servers/web1/grants",
            json!({"username": "alice", "login": "ops", "options": NUL}),
        ),
        (
            Method::POST,
            "/api/v1/servers/web1/tokens",
            json!({"name": NUL}),
        ),
        (
            Method::PUT,
            "/api/v1/policy",
            json!({"allowed_algorithms": [NUL]}),
        ),
        (Method::POST, "/api/v1/tokens", json!({"name": NUL})),
        // A NUL in a member name is found too.
        (
            Method::POST,
            "/api/v1/servers",
            json!({"name": "web2", NUL: 1}),
        ),
    ];
    let before = footprint(&app).await;
    for (method, path, body) in cases {
        let req = app
            .client
            .request(method.clone(), app.url(path))
            .bearer_auth(&app.admin)
            .json(&body);
        let (status, problem) = answer(req).await;
        assert_eq!(status, 400, "{method} {path} {body}: {problem}");
        assert_eq!(problem["code"], "invalid_characters", "{method} {path}");
    }
    assert_eq!(footprint(&app).await, before, "nothing may change");

    // Key text is the validator's to judge: it names the fault, and nothing is stored.
    for body in [
        json!({"key": NUL}),
        json!({"key": format!("{key} x{NUL}y")}),
    ] {
        for path in ["/api/v1/users/alice/keys", "/api/v1/keys/validate"] {
            let (status, problem) = answer(app.post(&app.admin, path, body.clone())).await;
            assert_eq!(status, 422, "{path} {body}: {problem}");
            assert_ne!(problem["code"], "invalid_characters");
        }
    }
    assert_eq!(footprint(&app).await, before, "nothing may change");
    let req = app
        .client
        .post(app.url("/api/v1/users/alice/keys/import"))
        .bearer_auth(&app.admin)
        .header("content-type", "text/plain")
        .body(format!("{key} x\0y\n"));
    let (status, report) = answer(req).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["added"], 0);
    assert_eq!(report["lines"][0]["status"], "rejected", "{report}");
}

#[tokio::test]
async fn control_characters_in_paths_and_query_strings_are_400() {
    let app = TestApp::spawn().await;
    world(&app).await;
    let before = footprint(&app).await;
    let cases = [
        (Method::GET, "/api/v1/users/%00"),
        (Method::GET, "/api/v1/users/alice%00"),
        (Method::DELETE, "/api/v1/users/%00"),
        (Method::PATCH, "/api/v1/users/al%0Aice"),
        (Method::GET, "/api/v1/users?q=%00"),
        (Method::GET, "/api/v1/users?q=a%0Db"),
        (Method::GET, "/api/v1/servers?q=%00"),
        (Method::GET, "/api/v1/servers/web1%00"),
        (
            Method::GET,
            "/api/v1/servers/web1/authorized_keys?login=%00",
        ),
        (
            Method::GET,
            "/api/v1/servers/web1/authorized_keys?login=deploy&fingerprint=%00",
        ),
        (Method::GET, "/api/v1/keys/%00"),
        (Method::GET, "/api/v1/audit?actor=%00"),
        (Method::GET, "/api/v1/audit?target=%1B"),
        (Method::GET, "/api/v1/users/alice/keys?cursor=%00"),
        (Method::GET, "/users?q=%00"),
        (Method::GET, "/servers?q=%00"),
        (Method::GET, "/audit?actor=%00"),
        (Method::GET, "/users/%00"),
    ];
    for (method, path) in cases {
        let req = app
            .client
            .request(method.clone(), app.url(path))
            .bearer_auth(&app.admin);
        let (status, problem) = answer(req).await;
        assert_eq!(status, 400, "{method} {path}: {problem}");
        assert_eq!(problem["code"], "invalid_characters", "{method} {path}");
    }
    assert_eq!(footprint(&app).await, before);
}

#[tokio::test]
async fn a_cursor_no_list_could_have_returned_is_400_invalid_cursor() {
    let app = TestApp::spawn().await;
    world(&app).await;
    let b64 = |s: &[u8]| URL_SAFE_NO_PAD.encode(s);
    let uuid = uuid::Uuid::new_v4();
    // Refused by every list.
    let everywhere = [
        "!!not base64!!".to_owned(),
        b64(b"\xff\xfe not utf-8"),
        b64(b"alice\0"),
        b64(b"line\nbreak"),
        "A".repeat(2000),
    ];
    // Refused by the lists whose cursor is a number or a time and an id.
    let typed = [
        b64(b"garbage"),
        b64(b"99999999999999999999999999999"),
        // Year 10000 and year 0: outside what PostgreSQL's timestamptz holds.
        b64(format!("253402300800000000000/{uuid}").as_bytes()),
        b64(format!("-62198755200000000000/{uuid}").as_bytes()),
        b64(format!("-377705116800000000000/{uuid}").as_bytes()),
        b64(b"1700000000000000000/not-a-uuid"),
    ];
    let lists = [
        ("/api/v1/users", false),
        ("/api/v1/servers", false),
        ("/api/v1/audit", true),
        ("/api/v1/users/alice/keys", true),
        ("/api/v1/servers/web1/grants", true),
    ];
    for (list, typed_cursor) in lists {
        let bad = everywhere
            .iter()
            .chain(typed.iter().filter(|_| typed_cursor));
        for cursor in bad {
            let req = app
                .get(&app.admin, list)
                .query(&[("cursor", cursor.as_str())]);
            let (status, problem) = answer(req).await;
            assert_eq!(status, 400, "{list} cursor {cursor:?}: {problem}");
            assert_eq!(problem["code"], "invalid_cursor", "{list} {cursor:?}");
        }
        // A cursor the list itself returned still works.
        let (status, page) = answer(app.get(&app.admin, list).query(&[("limit", "1")])).await;
        assert_eq!(status, 200, "{list}");
        if let Some(next) = page["next_cursor"].as_str() {
            let (status, _) = answer(app.get(&app.admin, list).query(&[("cursor", next)])).await;
            assert_eq!(status, 200, "{list} with its own cursor");
        }
    }
    // The HTML lists take cursors too.
    let mut browser = app.browser();
    app.user_with_password("ops", Role::Admin, PASSWORD).await;
    assert_eq!(browser.sign_in("ops", PASSWORD).await.status, 303);
    for page in ["/users", "/servers", "/audit", "/users/alice/keys"] {
        let bad = b64(b"x\0y");
        let res = browser.get(&format!("{page}?cursor={bad}")).await;
        assert_eq!(res.status, 400, "{page}: {}", res.body);
    }
}

#[tokio::test]
async fn nul_in_any_field_of_any_form_is_400_and_changes_nothing() {
    let app = TestApp::spawn().await;
    world(&app).await;
    app.user_with_password("ops", Role::Admin, PASSWORD).await;
    let mut browser = app.browser();
    assert_eq!(browser.sign_in("ops", PASSWORD).await.status, 303);
    let csrf = browser.get("/").await.csrf_token();
    let key = ed25519_key();
    let forms: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "/users",
            vec![
                ("username", "bob".into()),
                ("display_name", "Bob".into()),
                ("email", "b@example.com".into()),
                ("role", "member".into()),
            ],
        ),
        (
            "/users/alice",
            vec![
                ("display_name", "Alice".into()),
                ("email", "a@example.com".into()),
                ("role", "member".into()),
                ("disabled_shown", "1".into()),
            ],
        ),
        (
            "/users/alice/password",
            vec![("password", PASSWORD.into()), ("confirm", PASSWORD.into())],
        ),
        (
            "/users/alice/keys",
            vec![
                ("key", key.clone()),
                ("title", "laptop".into()),
                ("expires_on", String::new()),
            ],
        ),
        ("/users/alice/keys/import", vec![("text", key.clone())]),
        (
            "/servers",
            vec![
                ("name", "web2".into()),
                ("hostname", "web2.example.com".into()),
                ("description", "d".into()),
            ],
        ),
        (
            "/servers/web1",
            vec![
                ("hostname", "web1.example.com".into()),
                ("description", "d".into()),
            ],
        ),
        (
            "/servers/web1/grants",
            vec![
                ("username", "alice".into()),
                ("login", "ops".into()),
                ("key_id", String::new()),
                ("options", String::new()),
                ("expires_on", String::new()),
            ],
        ),
        ("/servers/web1/tokens", vec![("name", "sshd".into())]),
        (
            "/tokens",
            vec![("name", "laptop".into()), ("expires_on", String::new())],
        ),
        (
            "/policy",
            vec![
                ("min_rsa_bits", "2048".into()),
                ("max_rsa_bits", "16384".into()),
                ("max_rsa_exponent_bits", "33".into()),
                ("max_comment_bytes", "1024".into()),
                ("allowed_algorithms", "ssh-ed25519".into()),
                ("action", "save".into()),
            ],
        ),
    ];
    let before = footprint(&app).await;
    for (path, fields) in &forms {
        for poisoned in 0..fields.len() {
            if keyportal::http::input::KEY_FIELDS.contains(&fields[poisoned].0) {
                continue;
            }
            let mut sent: Vec<(&str, &str)> = vec![("csrf_token", csrf.as_str())];
            let value = format!("{}{NUL}", fields[poisoned].1);
            for (i, (name, v)) in fields.iter().enumerate() {
                sent.push((
                    name,
                    if i == poisoned {
                        value.as_str()
                    } else {
                        v.as_str()
                    },
                ));
            }
            let res = browser.post_form(path, &sent).await;
            assert_eq!(
                res.status, 400,
                "{path} with NUL in {}: {}",
                fields[poisoned].0, res.body
            );
        }
    }
    // The sign-in form, before any session.
    let mut anonymous = app.browser();
    let login = anonymous.get("/login").await;
    let token = login.csrf_token();
    for (user, pass) in [(NUL, PASSWORD), ("ops", NUL)] {
        let res = anonymous
            .post_form(
                "/login",
                &[
                    ("username", user),
                    ("password", pass),
                    ("csrf_token", token.as_str()),
                ],
            )
            .await;
        assert_eq!(res.status, 400, "sign-in with NUL: {}", res.body);
    }
    // A key pasted with a NUL is refused by the validator, next to the field.
    let res = browser
        .post_form(
            "/users/alice/keys",
            &[
                ("csrf_token", csrf.as_str()),
                ("key", &format!("{key} x{NUL}y")),
                ("title", "t"),
            ],
        )
        .await;
    assert_eq!(res.status, 422, "{}", res.body);
    assert!(res.body.contains("comment_invalid"), "{}", res.body);
    assert_eq!(footprint(&app).await, before, "nothing may change");
}
