//! Rolling upgrades: a keyportal never serves a database that a later keyportal migrated, and
//! `keyportal migrate --check` says where the schema stands without changing it.

mod common;

use std::process::{Command, Output};

use common::TestDb;

fn keyportal(db: &TestDb, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyportal"))
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("KEYPORTAL_LISTEN", "127.0.0.1:0")
        .env("KEYPORTAL_LOG", "warn")
        .output()
        .expect("run keyportal")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn latest_known() -> i64 {
    keyportal::db::MIGRATOR
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap()
}

#[tokio::test]
async fn migrate_check_reports_pending_and_up_to_date_and_changes_nothing() {
    let db = TestDb::empty().await;
    let out = keyportal(&db, &["migrate", "--check"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let known = keyportal::db::MIGRATOR.iter().count();
    assert!(
        text(&out.stdout).starts_with(&format!("{known} migration(s) of this keyportal to apply")),
        "{}",
        text(&out.stdout)
    );
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(tables, 0, "--check applies nothing");

    assert!(keyportal(&db, &["migrate"]).status.success());
    let out = keyportal(&db, &["migrate", "--check"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("up to date: the schema is at migration {}", latest_known())
    );
}

#[tokio::test]
async fn a_database_migrated_by_a_later_keyportal_is_refused_with_one_clear_line() {
    let db = TestDb::new().await;
    // What a later version leaves behind: a migration this binary does not have.
    let future = latest_known() + 1000;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES ($1, 'from the future', true, '\\x00', 1)",
    )
    .bind(future)
    .execute(&db.pool)
    .await
    .unwrap();

    let check = keyportal(&db, &["migrate", "--check"]);
    assert_eq!(check.status.code(), Some(1));
    let serve = keyportal(&db, &["serve"]);
    assert!(!serve.status.success(), "serve must refuse");
    for out in [&check, &serve] {
        let stderr = text(&out.stderr);
        let line = stderr
            .lines()
            .find(|l| l.starts_with("keyportal: "))
            .unwrap_or_else(|| panic!("no error line in {stderr}"));
        assert!(
            line.contains(&format!(
                "migration {future}, newer than this keyportal knows"
            )),
            "{line}"
        );
    }
    let migrate = keyportal(&db, &["migrate"]);
    assert_eq!(migrate.status.code(), Some(1), "migrate refuses too");
}
