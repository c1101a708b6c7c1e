//! HTTP edge cases of the browser side and the middleware: where `next` may send a browser,
//! which request ids are kept, the caller a request log line names, reserved usernames, what is
//! compressed, and `__Host-` cookies.

mod common;

use common::{answer, TestApp};
use keyportal::domain::Role;
use serde_json::json;

const PASSWORD: &str = "correct horse battery staple";
const ED25519_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICT2ivHtj5gwd8pkmmJaTIPJZXnN36avCt+4HUyczqR2 laptop";

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

#[tokio::test]
async fn usernames_of_keyportal_itself_are_refused_by_the_api_the_form_and_the_database() {
    let app = TestApp::spawn().await;
    for name in ["cli", "anonymous", "system", "keyportal"] {
        let (status, body) =
            answer(app.post(&app.admin, "/api/v1/users", json!({ "username": name }))).await;
        assert_eq!(status, 422, "{name}: {body}");
        assert_eq!(body["code"], "name_reserved", "{body}");
        assert!(
            body["detail"].as_str().unwrap().contains("reserved"),
            "{body}"
        );
    }

    // The form says so next to the field, and creates nothing.
    app.user_with_password("admin2", Role::Admin, PASSWORD)
        .await;
    let mut b = app.browser();
    let csrf = b.signed_in("admin2", PASSWORD).await;
    let res = b
        .post_form(
            "/users",
            &[
                ("csrf_token", &csrf),
                ("username", "cli"),
                ("role", "member"),
            ],
        )
        .await;
    assert_eq!(res.status, 422, "{}", res.body);
    assert!(res.body.contains("is reserved"), "{}", res.body);
    // `root` is not reserved (the test app's admin is `root`); a look-alike name is fine too.
    let res = b
        .post_form(
            "/users",
            &[
                ("csrf_token", &csrf),
                ("username", "cli-ops"),
                ("role", "member"),
            ],
        )
        .await;
    assert_eq!(res.status, 303, "{}", res.body);
    let (status, _) = answer(app.get(&app.admin, "/api/v1/users/root")).await;
    assert_eq!(status, 200);

    // The schema refuses them too, whatever writes the row.
    let err = sqlx::query("INSERT INTO users (username) VALUES ('system')")
        .execute(&app.db.pool)
        .await
        .unwrap_err();
    let db = err.as_database_error().expect("a database error");
    assert_eq!(db.constraint(), Some("users_username_not_reserved"));
    let reserved: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM users WHERE username IN ('cli', 'anonymous', 'system', 'keyportal')",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(reserved, 0);
}

#[tokio::test]
async fn the_reserved_names_migration_renames_existing_accounts_instead_of_failing() {
    use sqlx::Executor;
    let db = common::TestDb::empty().await;
    let migrations: Vec<_> = keyportal::db::MIGRATOR.iter().collect();
    let reserved_names = migrations
        .iter()
        .position(|m| m.version == 3)
        .expect("migration 0003");
    for m in &migrations[..reserved_names] {
        db.pool.execute(m.sql.as_ref()).await.unwrap();
    }
    // A database from before: accounts named like keyportal's actors, and a name in the way.
    let ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO users (username) VALUES ('cli'), ('anonymous'), ('alice') RETURNING id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO users (username) VALUES ($1)")
        .bind(format!("_cli_{}", ids[0]))
        .execute(&db.pool)
        .await
        .unwrap();

    db.pool
        .execute(migrations[reserved_names].sql.as_ref())
        .await
        .expect("migration 0003 on a database with reserved names");

    let name_of = |id: i64| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT username FROM users WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(name_of(ids[0]).await, format!("_cli_{}_", ids[0]));
    assert_eq!(name_of(ids[1]).await, format!("_anonymous_{}", ids[1]));
    assert_eq!(name_of(ids[2]).await, "alice");
    let renames: Vec<(String, String)> = sqlx::query_as(
        "SELECT actor, detail->>'from' FROM audit_events WHERE action = 'user.rename' ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        renames,
        [
            ("system".to_owned(), "cli".to_owned()),
            ("system".to_owned(), "anonymous".to_owned())
        ]
    );
}

fn content_encoding(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn pages_and_fresh_secrets_are_never_compressed_but_json_lists_are() {
    let app = TestApp::spawn().await;
    app.user_with_password("alice", Role::Member, PASSWORD)
        .await;
    let mut b = app.browser();
    b.signed_in("alice", PASSWORD).await;
    let cookies: String = b
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");

    // Pages hold the CSRF token next to reflected query text: never compressed.
    for (path, signed_in) in [
        ("/login?next=%2Fkeys%3Fq%3Dguess", false),
        ("/keys?q=guess-the-token", true),
        ("/users/alice/keys", true),
        ("/servers/no-such-server?q=guess", true),
    ] {
        let mut req = app
            .client
            .get(app.url(path))
            .header("accept-encoding", "gzip");
        if signed_in {
            req = req.header("cookie", &cookies);
        }
        let res = req.send().await.unwrap();
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
        assert_eq!(content_encoding(&res), None, "{path}");
    }

    // A token's secret is shown once, not stored by caches, and not compressed.
    let (status, _) =
        common::answer(app.post(&app.admin, "/api/v1/servers", json!({ "name": "web1" }))).await;
    assert_eq!(status, 201);
    let res = app
        .post(
            &app.admin,
            "/api/v1/servers/web1/tokens",
            json!({ "name": "sshd" }),
        )
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert_eq!(content_encoding(&res), None);

    // JSON lists stay compressed.
    let res = app
        .get(&app.admin, "/api/v1/users")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(content_encoding(&res).as_deref(), Some("gzip"));
}

/// Checks a `Set-Cookie` for a `__Host-` cookie: Secure, Path=/, no Domain.
fn assert_host_cookie(set_cookie: &str) {
    assert!(set_cookie.starts_with("__Host-"), "{set_cookie}");
    let attrs: Vec<String> = set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    assert!(attrs.contains(&"secure".to_owned()), "{set_cookie}");
    assert!(attrs.contains(&"path=/".to_owned()), "{set_cookie}");
    assert!(
        !attrs.iter().any(|a| a.starts_with("domain")),
        "{set_cookie}"
    );
}

#[tokio::test]
async fn over_https_every_cookie_is_a_host_cookie_and_signing_in_and_posting_forms_work() {
    let app = TestApp::spawn_with(|s| s.web.secure_cookies = true).await;
    app.user_with_password("alice", Role::Member, PASSWORD)
        .await;
    let mut b = app.browser();

    let form = b.get("/login").await;
    assert!(!form.set_cookies.is_empty());
    for c in &form.set_cookies {
        assert_host_cookie(c);
    }
    assert!(form.set_cookie("__Host-kp_login_csrf").is_some());

    let res = b.sign_in("alice", PASSWORD).await;
    assert_eq!(res.status, 303, "{}", res.body);
    for c in &res.set_cookies {
        assert_host_cookie(c);
    }
    assert!(res
        .set_cookie("__Host-kp_session")
        .unwrap()
        .contains("HttpOnly"));
    let home = b.get("/").await;
    assert_eq!(home.status, 200);
    let csrf = home.csrf_token();

    // A form post, its flash message (a cookie too) and the JSON API on the session.
    let res = b
        .post_form(
            "/users/alice/keys",
            &[
                ("csrf_token", &csrf),
                ("key", ED25519_KEY),
                ("title", "laptop"),
            ],
        )
        .await;
    assert_eq!(res.status, 303, "{}", res.body);
    assert_host_cookie(res.set_cookie("__Host-kp_flash").expect("flash cookie"));
    let keys = b.get("/users/alice/keys").await;
    assert!(keys.body.contains("Key added"), "{}", keys.body);
    assert_host_cookie(keys.set_cookie("__Host-kp_flash").expect("flash cleared"));
    let me = b.api(reqwest::Method::GET, "/api/v1/me", None, None).await;
    assert_eq!(me.status, 200, "{}", me.body);

    // The plain name, which any sibling host or http page could set, is not read.
    let mut planted = app.browser();
    planted
        .cookies
        .insert("kp_session".into(), b.cookies["__Host-kp_session"].clone());
    assert_eq!(planted.get("/").await.status, 303);
    assert_eq!(planted.get("/api/v1/me").await.status, 401);
}

/// The login path checks a server's token inside its own service call, so the request's log
/// line gets its caller from there; a lookup refused for its query string (after the token is
/// judged) still names the server that asked. Checked on the log of a real `serve`.
#[tokio::test]
async fn the_request_log_names_the_server_whose_login_lookup_it_refused() {
    let app = TestApp::spawn().await;
    let (status, _) =
        answer(app.post(&app.admin, "/api/v1/servers", json!({ "name": "web1" }))).await;
    assert_eq!(status, 201);
    let (status, token) =
        answer(app.post(&app.admin, "/api/v1/servers/web1/tokens", json!({}))).await;
    assert_eq!(status, 201, "{token}");
    let secret = token["secret"].as_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let (mut served, addr) =
        common::served::Served::start(dir.path(), &[("DATABASE_URL", app.db.url.as_str())]);
    let res = app
        .client
        .get(format!(
            "http://{addr}/api/v1/servers/web1/authorized_keys?login=deploy&color=blue"
        ))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let line = served.wait_for("status=400", std::time::Duration::from_secs(10));
    assert!(line.contains(r#"caller="server:web1""#), "{line}");
}
