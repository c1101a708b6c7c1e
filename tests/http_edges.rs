//! HTTP edge cases of the browser side and the middleware: where `next` may send a browser,
//! which request ids are kept, reserved usernames, what is compressed, and `__Host-` cookies.

mod common;

use common::{answer, TestApp};
use keyportal::domain::Role;
use serde_json::json;

const PASSWORD: &str = "correct horse battery staple";

/// `next` values a browser would follow to another site (tab, newline and other control
/// characters, raw or percent-encoded, `//`, `/\`, a scheme), as they arrive after decoding.
const OFF_SITE: &[&str] = &[
    "/\t/evil.example/",
    "/\n/evil.example/",
    "/\r\n/evil.example/",
    "/\x0b/evil.example/",
    "/\x00/evil.example/",
    "/ /evil.example/",
    "/%09/evil.example/",
    "/%0a/evil.example/",
    "/%0D%0A/evil.example/",
    "/%00/evil.example/",
    "/%5c/evil.example/",
    "//evil.example/",
    "/\\evil.example/",
    "https://evil.example/",
    "https:evil.example",
];

fn login_url(next: &str) -> String {
    format!(
        "/login?{}",
        serde_urlencoded::to_string([("next", next)]).unwrap()
    )
}

#[tokio::test]
async fn next_with_control_characters_or_another_site_lands_on_home() {
    let app = TestApp::spawn().await;
    app.user_with_password("alice", Role::Member, PASSWORD)
        .await;

    for next in OFF_SITE {
        // Signed out: the sign-in form carries `/` as where to go next...
        let mut b = app.browser();
        let form = b.get(&login_url(next)).await;
        assert_eq!(form.status, 200, "{next:?}");
        assert_eq!(
            common::browser::hidden_value(&form.body, "next").as_deref(),
            Some("/"),
            "{next:?}"
        );
        // ...and a sign-in posted with that `next` goes home.
        let token = form.csrf_token();
        let res = b
            .post_form(
                "/login",
                &[
                    ("username", "alice"),
                    ("password", PASSWORD),
                    ("csrf_token", &token),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(res.status, 303, "{next:?}: {}", res.body);
        assert_eq!(res.location(), Some("/"), "{next:?}");

        // Signed in, GET /login?next=... redirects at once: also home.
        let res = b.get(&login_url(next)).await;
        assert_eq!(res.status, 303, "{next:?}");
        assert_eq!(res.location(), Some("/"), "{next:?}");
    }

    // A page of this site is still where sign-in returns to.
    let mut b = app.browser();
    b.signed_in("alice", PASSWORD).await;
    let res = b.get(&login_url("/keys?q=a%20b")).await;
    assert_eq!(res.location(), Some("/keys?q=a%20b"));
}

async fn request_id_of_user_create(app: &TestApp, username: &str) -> Option<String> {
    sqlx::query_scalar(
        "SELECT request_id FROM audit_events WHERE action = 'user.create' AND target = $1",
    )
    .bind(format!("user:{username}"))
    .fetch_one(&app.db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_request_id_that_is_too_long_or_has_odd_characters_is_replaced_by_a_fresh_one() {
    let app = TestApp::spawn().await;
    let long = "a".repeat(129);
    for (i, sent) in [
        long.as_str(),
        "has space",
        "semi;colon",
        "quote\"",
        "<script>",
        "%0a",
    ]
    .into_iter()
    .enumerate()
    {
        let username = format!("bad{i}");
        let res = app
            .post(&app.admin, "/api/v1/users", json!({ "username": username }))
            .header("x-request-id", sent)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{sent:?}");
        let echoed = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(echoed, sent);
        assert!(uuid::Uuid::parse_str(&echoed).is_ok(), "{echoed}");
        let stored = request_id_of_user_create(&app, &username).await;
        assert_eq!(stored.as_deref(), Some(echoed.as_str()), "{sent:?}");
    }

    // A plain id (up to 128 characters of letters, digits, `.`, `_`, `:`, `-`) is kept.
    for (i, sent) in ["req-1.a_b:c", &"Z9".repeat(64)].into_iter().enumerate() {
        let username = format!("good{i}");
        let res = app
            .post(&app.admin, "/api/v1/users", json!({ "username": username }))
            .header("x-request-id", sent)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        assert_eq!(res.headers()["x-request-id"], sent);
        let stored = request_id_of_user_create(&app, &username).await;
        assert_eq!(stored.as_deref(), Some(sent));
    }
}
