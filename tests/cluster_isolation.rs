//! The private PostgreSQL cluster is its owner's alone: another local account can neither
//! connect to it nor read its files, a root quick start works from a directory the cluster's
//! account cannot enter, and unsafe data directories are refused.
//!
//! The cross-account tests need root (to create the second account and to run commands as it);
//! run as another user they say so and pass without checking anything.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::served::Served;
use keyportal::db::private_cluster::{self, PrivateCluster, DEFAULT_ACCOUNT};
use nix::unistd::{Uid, User};

fn is_root() -> bool {
    Uid::effective().is_root()
}

/// A local account made for one test and removed afterwards, even when the test fails.
struct LocalAccount {
    user: User,
}

impl LocalAccount {
    fn create() -> LocalAccount {
        let name = format!(
            "kp-intruder-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let out = Command::new("useradd")
            .args(["--no-create-home", "--home-dir", "/nonexistent"])
            .args(["--shell", "/bin/sh", "--user-group"])
            .arg(&name)
            .output()
            .expect("run useradd");
        assert!(out.status.success(), "useradd: {out:?}");
        let user = User::from_name(&name).unwrap().expect("the new account");
        LocalAccount { user }
    }

    /// Runs `program` as this account (runuser: its own uid, gid and groups only), from `/`,
    /// with a plain environment.
    fn run(&self, program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let vars: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Command::new("runuser")
            .args(["-u", &self.user.name, "--", "env", "-i"])
            .args(["PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/"])
            .args(&vars)
            .arg(program)
            .args(args)
            .current_dir("/")
            .output()
            .unwrap_or_else(|e| panic!("run {program} as {}: {e}", self.user.name))
    }
}

impl Drop for LocalAccount {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.user.name).output();
    }
}

/// A temporary directory in /tmp that every account may enter (so only the cluster's own modes
/// stand between another account and the database).
fn world_searchable_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("kp-iso-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// The keyportal binary where another account can run it (the build tree may be under /root).
fn binary_for_everyone(dir: &Path) -> PathBuf {
    let bin = dir.join("keyportal");
    std::fs::copy(env!("CARGO_BIN_EXE_keyportal"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

#[tokio::test]
async fn another_local_account_cannot_connect_to_the_cluster_or_read_its_files() {
    if !is_root() {
        eprintln!("skipped: creating a second local account needs root");
        return;
    }
    let dir = world_searchable_tempdir();
    let cluster = PrivateCluster::ensure(
        &dir.path().join("data"),
        None,
        DEFAULT_ACCOUNT,
        private_cluster::TEST_SERVER_SETTINGS,
    )
    .await
    .expect("start a cluster");
    let socket = cluster.socket_dir().to_str().unwrap().to_owned();
    let pgdata = cluster.root().join("pgdata");
    let bin = binary_for_everyone(dir.path());
    let intruder = LocalAccount::create();
    let sql = [
        "-h", &socket, "-U", "postgres", "-d", "postgres", "-Atc", "SELECT 1",
    ];

    // The owner (root, mapped to postgres) gets in: the socket is live and psql works.
    let own = Command::new("psql").args(sql).output().expect("psql");
    assert!(own.status.success(), "root must connect: {own:?}");

    let psql = intruder.run("psql", &sql, &[]);
    assert!(
        !psql.status.success(),
        "another account connected to the private cluster: {psql:?}"
    );

    // keyportal itself, as that account, pointed straight at the socket, makes no admin.
    let runs = intruder.run(bin.to_str().unwrap(), &["--version"], &[]);
    assert!(
        runs.status.success(),
        "the intruder can run keyportal: {runs:?}"
    );
    let url = format!("postgres://postgres@localhost/postgres?host={socket}");
    let admin = intruder.run(
        bin.to_str().unwrap(),
        &["admin", "create", "--username", "mallory"],
        &[("DATABASE_URL", &url)],
    );
    assert!(
        !admin.status.success(),
        "admin create as another account must fail: {admin:?}"
    );
    let pool = sqlx::PgPool::connect_with(cluster.connect_options("postgres"))
        .await
        .unwrap();
    let users_table: Option<String> = sqlx::query_scalar("SELECT to_regclass('users')::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(users_table, None, "nothing was created in the database");
    pool.close().await;

    // Nor can it read the data files.
    let ls = intruder.run("ls", &[pgdata.to_str().unwrap()], &[]);
    assert!(
        !ls.status.success(),
        "pgdata listed by another account: {ls:?}"
    );
    let version = pgdata.join("PG_VERSION");
    let cat = intruder.run("cat", &[version.to_str().unwrap()], &[]);
    assert!(
        !cat.status.success(),
        "PG_VERSION read by another account: {cat:?}"
    );

    // The modes that make it so.
    for path in [cluster.root(), pgdata.as_path(), cluster.socket_dir()] {
        assert_eq!(mode(path), 0o700, "{}", path.display());
    }
    assert_eq!(mode(&cluster.socket_dir().join(".s.PGSQL.5432")), 0o700);
    let hba = std::fs::read_to_string(pgdata.join("pg_hba.conf")).unwrap();
    assert!(!hba.contains("trust"), "{hba}");
    let owner = User::from_name(DEFAULT_ACCOUNT)
        .unwrap()
        .expect("cluster account");
    assert_eq!(
        std::fs::metadata(&pgdata).unwrap().uid(),
        owner.uid.as_raw()
    );
    cluster.stop().await.expect("stop");
}

#[tokio::test]
async fn a_cluster_left_open_by_an_older_keyportal_is_locked_down_at_start() {
    let dir = world_searchable_tempdir();
    let data = dir.path().join("data");
    let settings = private_cluster::TEST_SERVER_SETTINGS;
    let cluster = PrivateCluster::ensure(&data, None, DEFAULT_ACCOUNT, settings)
        .await
        .expect("start a cluster");
    cluster.stop().await.expect("stop");
    // What older versions left: trust for every local connection, 0755 directories.
    let pgdata = cluster.root().join("pgdata");
    std::fs::write(pgdata.join("pg_hba.conf"), "local all all trust\n").unwrap();
    for path in [cluster.root(), cluster.socket_dir()] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    let again = PrivateCluster::ensure(&data, None, DEFAULT_ACCOUNT, settings)
        .await
        .expect("start it again");
    let hba = std::fs::read_to_string(pgdata.join("pg_hba.conf")).unwrap();
    assert!(!hba.contains("trust"), "{hba}");
    assert!(hba.contains("peer map=keyportal"), "{hba}");
    for path in [again.root(), again.socket_dir()] {
        assert_eq!(mode(path), 0o700, "{}", path.display());
    }
    let pool = sqlx::PgPool::connect_with(again.connect_options("postgres"))
        .await
        .expect("the owner still connects");
    pool.close().await;
    again.stop().await.expect("stop");
}

#[tokio::test]
async fn as_root_serve_starts_from_a_directory_its_database_account_cannot_enter() {
    if !is_root() {
        eprintln!("skipped: the root quick start needs root");
        return;
    }
    // Like a checkout in /root: a fresh 0700 directory owned by root.
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let data = home.path().join("keyportal-data");
    let (served, addr) = Served::start(&data, &[]);
    let cluster = CleanUp(
        std::fs::read_to_string(data.join("cluster-location"))
            .expect("the data directory names where its cluster is")
            .trim()
            .into(),
    );
    let res = common::client()
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Not under /var/lib/keyportal: that is the Debian package's data directory.
    assert_eq!(
        cluster.0.parent(),
        Some(Path::new(private_cluster::RELOCATED_BASE))
    );
    let owner = User::from_name(DEFAULT_ACCOUNT)
        .unwrap()
        .expect("cluster account");
    for path in [
        cluster.0.clone(),
        cluster.0.join("pgdata"),
        cluster.0.join("run"),
    ] {
        assert_eq!(mode(&path), 0o700, "{}", path.display());
        assert_eq!(std::fs::metadata(&path).unwrap().uid(), owner.uid.as_raw());
    }
    assert_eq!(mode(&data), 0o700);
    assert_eq!(
        std::fs::metadata(&data).unwrap().uid(),
        0,
        "root's data stays root's"
    );

    let (status, log) = served.terminate(Duration::from_secs(20));
    assert!(status.success(), "{}", log.join("\n"));
    assert!(
        log.iter().any(|l| l.contains("cluster-location")),
        "the log says where the cluster is"
    );
    // A cluster an earlier release relocated to /var/lib/keyportal is still found there.
    let legacy_base = Path::new(private_cluster::LEGACY_RELOCATED_BASE);
    let made_legacy_base = !legacy_base.exists();
    std::fs::create_dir_all(legacy_base).unwrap();
    let legacy = CleanUp(legacy_base.join(cluster.0.file_name().unwrap()));
    std::fs::rename(&cluster.0, &legacy.0).unwrap();
    std::fs::write(
        data.join("cluster-location"),
        format!("{}\n", legacy.0.display()),
    )
    .unwrap();
    let (served, addr) = Served::start(&data, &[]);
    let res = common::client()
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (status, log) = served.terminate(Duration::from_secs(20));
    assert!(status.success(), "{}", log.join("\n"));

    // The README's removal step takes both away.
    let removed = Command::new("sh")
        .arg("-c")
        .arg(r#"rm -rf "$(cat "$1/cluster-location")" "$1""#)
        .arg("sh")
        .arg(&data)
        .status()
        .unwrap();
    assert!(removed.success());
    assert!(!cluster.0.exists() && !legacy.0.exists() && !data.exists());
    if made_legacy_base {
        // Left empty, and in the way of the Debian package's own directory.
        let _ = std::fs::remove_dir(legacy_base);
    }
}

/// Removes a relocated cluster directory if a test stops before its own removal step.
struct CleanUp(PathBuf);

impl Drop for CleanUp {
    fn drop(&mut self) {
        let relocated = [
            private_cluster::RELOCATED_BASE,
            private_cluster::LEGACY_RELOCATED_BASE,
        ]
        .iter()
        .any(|base| self.0.parent() == Some(Path::new(base)));
        if relocated {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn migrate_with_data_dir(data: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyportal"))
        .arg("migrate")
        .env_remove("DATABASE_URL")
        .env("KEYPORTAL_DATA_DIR", data)
        .output()
        .unwrap()
}

#[test]
fn a_data_directory_others_can_write_is_refused() {
    let dir = world_searchable_tempdir();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = migrate_with_data_dir(&data);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("can be written by group or others") && stderr.contains("chmod go-w"),
        "{stderr}"
    );
    assert!(!data.join("pgdata").exists(), "nothing was created there");
}

#[test]
fn a_data_directory_that_is_a_symbolic_link_is_refused() {
    let dir = world_searchable_tempdir();
    let real = dir.path().join("elsewhere");
    std::fs::create_dir(&real).unwrap();
    let link = dir.path().join("data");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let out = migrate_with_data_dir(&link);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is a symbolic link"), "{stderr}");
    assert!(!real.join("pgdata").exists());
}
