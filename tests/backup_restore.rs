//! `keyportal backup` while `serve` runs on the private cluster, and `keyportal restore` into a
//! fresh data directory: the same rows come back, and a database with data is replaced only
//! with `--force`.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::answer;
use common::served::Served;
use keyportal::db::private_cluster::{PrivateCluster, DEFAULT_ACCOUNT};
use serde_json::json;

fn keyportal(data: &Path, args: &[&str], stdin: &str) -> Output {
    let data = data.to_string_lossy();
    common::run_keyportal(args, &[("KEYPORTAL_DATA_DIR", &data)], stdin)
}

/// Row counts of every table that holds data, and a digest of the keys table.
async fn contents(data: &Path) -> (Vec<i64>, String, PrivateCluster) {
    let cluster = PrivateCluster::ensure(data, None, DEFAULT_ACCOUNT, &[])
        .await
        .expect("the cluster");
    let pool = sqlx::PgPool::connect_with(cluster.connect_options("keyportal"))
        .await
        .unwrap();
    let counts = common::data_counts(&pool).await;
    let digest: String = sqlx::query_scalar(
        "SELECT md5(string_agg(id::text || user_id::text || public_key || fingerprint_sha256 \
         || comment || created_at::text, ',' ORDER BY id)) FROM ssh_keys",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    (counts, digest, cluster)
}

fn world_searchable_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("kp-backup-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_serving_restores_the_same_rows_into_a_fresh_data_dir() {
    let dir = world_searchable_tempdir();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    let (served, addr) = Served::start(&first, &[]);

    // Some of everything, through the CLI and the API of the running portal.
    let made = keyportal(
        &first,
        &["admin", "create", "--username", "ops", "--password-stdin"],
        "a long enough password\n",
    );
    assert!(made.status.success(), "{made:?}");
    let token = keyportal(
        &first,
        &["token", "create", "--username", "ops", "--name", "t"],
        "",
    );
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let client = common::client();
    let url = |p: &str| format!("http://{addr}{p}");
    for (path, body) in [
        ("/api/v1/users", json!({"username": "alice"})),
        ("/api/v1/servers", json!({"name": "web1"})),
        (
            "/api/v1/servers/web1/grants",
            json!({"username": "alice", "login": "deploy"}),
        ),
    ] {
        let (status, body) = answer(client.post(url(path)).bearer_auth(&token).json(&body)).await;
        assert_eq!(status, 201, "{path}: {body}");
    }
    let file = common::generated_ed25519_keys(25).join("\n");
    let (status, report) = answer(
        client
            .post(url("/api/v1/users/alice/keys/import"))
            .bearer_auth(&token)
            .body(file),
    )
    .await;
    assert_eq!((status, report["added"].as_u64()), (200, Some(25)));

    // The backup, while serving.
    let dump = dir.path().join("keyportal.dump");
    let out = keyportal(&first, &["backup", dump.to_str().unwrap()], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::metadata(&dump).unwrap().mode() & 0o777,
        0o600,
        "it holds hashes"
    );
    let res = client.get(url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200, "still serving");

    // Restored into a fresh data directory: the same rows.
    let out = keyportal(&second, &["restore", dump.to_str().unwrap()], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (before, before_digest, _running) = contents(&first).await;
    let (after, after_digest, restored) = contents(&second).await;
    assert_eq!(before, after);
    assert_eq!(before[1], 25);
    assert_eq!(before_digest, after_digest);

    // A database with data is replaced only with --force.
    let out = keyportal(&second, &["restore", dump.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = keyportal(&second, &["restore", "--force", dump.to_str().unwrap()], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(contents(&second).await.0, before);

    restored.stop().await.unwrap();
    let (status, _) = served.terminate(Duration::from_secs(20));
    assert!(status.success());
}
