//! `keyportal admin create`, `token create`, `server token`: they work on the database directly,
//! while a `serve` runs on the same data, and what they make works over HTTP.

mod common;

use std::process::Output;

use common::{answer, TestDb};

fn keyportal(db: &TestDb, args: &[&str], stdin: &str) -> Output {
    common::run_keyportal(args, &[("DATABASE_URL", &db.url)], stdin)
}

#[tokio::test]
async fn admin_and_token_commands_make_accounts_that_work_over_http() {
    let db = TestDb::new().await;
    let addr = common::serve_app(db.pool.clone()).await;
    let client = common::client();

    let out = keyportal(
        &db,
        &["admin", "create", "--username", "ops", "--password-stdin"],
        "correct horse battery staple\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (role, hash): (String, String) =
        sqlx::query_as("SELECT role, password_hash FROM users WHERE username = 'ops'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(role, "admin");
    assert!(hash.starts_with("$argon2id$"), "{hash}");

    let out = keyportal(
        &db,
        &["token", "create", "--username", "ops", "--name", "ci"],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "only the secret on standard output: {stdout:?}"
    );
    let token = stdout.trim().to_owned();
    let (status, me) = answer(
        client
            .get(format!("http://{addr}/api/v1/me"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(
        (status, me["user"]["username"].as_str()),
        (200, Some("ops"))
    );

    sqlx::query("INSERT INTO servers (name) VALUES ('web1')")
        .execute(&db.pool)
        .await
        .unwrap();
    let out = keyportal(&db, &["server", "token", "--server", "web1"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server_token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let res = client
        .get(format!(
            "http://{addr}/api/v1/servers/web1/authorized_keys?login=root"
        ))
        .bearer_auth(&server_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (status, _) = answer(
        client
            .get(format!("http://{addr}/api/v1/users"))
            .bearer_auth(&server_token),
    )
    .await;
    assert_eq!(status, 403);
    // The personal token got the policy's cap (90 days); the server token none.
    let days: Vec<Option<f64>> = sqlx::query_scalar(
        "SELECT extract(epoch FROM expires_at - now())::float8 / 86400 FROM api_tokens ORDER BY created_at",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!((days[0].unwrap() - 90.0).abs() < 0.01, "{days:?}");
    assert_eq!(days[1], None);

    // A server token that expires: the secret alone on stdout, expiry stored.
    let out = keyportal(
        &db,
        &[
            "server",
            "token",
            "--server",
            "web1",
            "--expires-in-days",
            "5",
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
    let days: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM expires_at - now())::float8 / 86400 FROM api_tokens ORDER BY created_at DESC LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!((days - 5.0).abs() < 0.01, "{days}");

    // Every one of them is in the audit trail.
    let actions: Vec<String> = sqlx::query_scalar("SELECT action FROM audit_events ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        actions,
        [
            "user.create",
            "token.create",
            "token.create",
            "token.create"
        ]
    );
    let actors: Vec<String> = sqlx::query_scalar("SELECT DISTINCT actor FROM audit_events")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        actors,
        ["cli"],
        "commands are audited as the command line, not as a user"
    );
}

#[tokio::test]
async fn admin_and_token_commands_fail_with_one_clear_line() {
    let db = TestDb::new().await;
    let out = keyportal(
        &db,
        &["admin", "create", "--username", "ops", "--password-stdin"],
        "short\n",
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("at least 12 characters"), "{stderr}");
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(users, 0, "a refused command changes nothing");

    let out = keyportal(
        &db,
        &["token", "create", "--username", "ghost", "--name", "x"],
        "",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user \"ghost\""));
    assert!(out.stdout.is_empty());

    let out = keyportal(&db, &["server", "token", "--server", "nowhere"], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("server not found"));

    keyportal(&db, &["admin", "create", "--username", "ops"], "");
    let out = keyportal(&db, &["admin", "create", "--username", "ops"], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("taken"));
}

#[test]
fn version_names_the_release_and_the_commit_it_was_built_from() {
    let out = common::run_keyportal(&["--version"], &[], "");
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout);
    // The commit checked out when the binary was built: this checkout's, unless it has moved
    // since (then `cargo test` rebuilt the binary from it anyway).
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git runs");
    let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
    assert_eq!(head.len(), 12, "not a git checkout? {head:?}");
    assert_eq!(
        printed.trim(),
        format!("keyportal {} (git {head})", env!("CARGO_PKG_VERSION")),
    );
}
