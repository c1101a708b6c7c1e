//! Test harness: a real PostgreSQL for every test.
//!
//! With `DATABASE_URL` set, that server is used; otherwise keyportal's own private-cluster
//! helper runs one cluster for the whole test run (shared by every test binary, found again by
//! its socket). Each test gets a fresh database cloned from a template that has all migrations
//! applied, so tests are fast and never see each other's rows.
// Every test binary compiles this module and uses a different part of it, so each would warn
// about the parts it does not use (53 warnings); that, and only that, is why the lint is off.
#![allow(dead_code)]

pub mod browser;
pub mod idp;
pub mod served;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use keyportal::db::{PrivateCluster, MIGRATOR};
use keyportal::http::AppState;
use keyportal::server::HttpSettings;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{ConnectOptions, Connection, Executor};

pub struct TestServer {
    /// Options for the maintenance database (`postgres`), from which test databases are made.
    pub admin: PgConnectOptions,
    pub template: String,
    /// The private cluster's socket directory, when the tests run on one.
    pub socket_dir: Option<PathBuf>,
}

static SERVER: OnceLock<TestServer> = OnceLock::new();

/// Where the shared test cluster lives: outside the work tree, at a fixed path so every test
/// binary of a run (and later runs) finds it. The name is predictable, so the cluster code's
/// own checks guard it: it is created 0700 without following links, and a directory or link
/// planted there by another account is refused, never used.
pub fn test_cluster_dir() -> PathBuf {
    let uid = nix::unistd::Uid::effective();
    std::env::temp_dir().join(format!("keyportal-test-pg-{uid}"))
}

pub fn server() -> &'static TestServer {
    SERVER.get_or_init(|| {
        // Each #[tokio::test] has its own runtime; set up in a runtime of our own.
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(setup())
        })
        .join()
        .expect("test database setup panicked")
    })
}

async fn setup() -> TestServer {
    let (admin, socket_dir) = match std::env::var("DATABASE_URL") {
        Ok(url) => (url.parse::<PgConnectOptions>().expect("DATABASE_URL"), None),
        Err(_) => {
            let cluster = PrivateCluster::ensure(
                &test_cluster_dir(),
                None,
                keyportal::db::private_cluster::DEFAULT_ACCOUNT,
                keyportal::db::private_cluster::TEST_SERVER_SETTINGS,
            )
            .await
            .unwrap_or_else(|e| panic!("cannot start the test PostgreSQL cluster: {e}"));
            (
                cluster.connect_options("postgres"),
                Some(cluster.socket_dir().to_owned()),
            )
        }
    };
    let admin = admin.disable_statement_logging();

    // The template is named after the migrations, so a changed migration gets a new template.
    let mut digest = 0u64;
    for m in MIGRATOR.iter() {
        for b in m.checksum.iter() {
            digest = digest.wrapping_mul(131).wrapping_add(u64::from(*b));
        }
    }
    let template = format!("keyportal_template_{digest:016x}");
    let mut conn = sqlx::PgConnection::connect_with(&admin)
        .await
        .expect("connect to test server");
    conn.execute("SELECT pg_advisory_lock(7243001)")
        .await
        .expect("lock");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&template)
            .fetch_one(&mut conn)
            .await
            .expect("query");
    if !exists {
        let building = format!("{template}_building");
        conn.execute(format!("DROP DATABASE IF EXISTS {building}").as_str())
            .await
            .expect("drop");
        conn.execute(format!("CREATE DATABASE {building}").as_str())
            .await
            .expect("create template");
        let pool = PgPool::connect_with(admin.clone().database(&building))
            .await
            .expect("connect template");
        MIGRATOR.run(&pool).await.expect("migrate template");
        pool.close().await;
        conn.execute(format!("ALTER DATABASE {building} RENAME TO {template}").as_str())
            .await
            .expect("rename template");
    }
    conn.execute("SELECT pg_advisory_unlock(7243001)")
        .await
        .expect("unlock");
    let _ = conn.close().await;
    TestServer {
        admin,
        template,
        socket_dir,
    }
}

/// A fresh, migrated database of its own; dropped when the value is dropped.
pub struct TestDb {
    pub pool: PgPool,
    pub name: String,
    pub options: PgConnectOptions,
    /// A `DATABASE_URL` for this database, for the keyportal binary.
    pub url: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        Self::create(true).await
    }

    /// An empty database, without migrations.
    pub async fn empty() -> TestDb {
        Self::create(false).await
    }

    async fn create(migrated: bool) -> TestDb {
        let server = server();
        let name = format!("keyportal_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect_with(&server.admin)
            .await
            .expect("connect");
        let sql = if migrated {
            format!("CREATE DATABASE {name} TEMPLATE {}", server.template)
        } else {
            format!("CREATE DATABASE {name}")
        };
        conn.execute(sql.as_str())
            .await
            .expect("create test database");
        let _ = conn.close().await;
        let options = server.admin.clone().database(&name);
        let pool = keyportal::db::pool_options(10)
            .connect_with(options.clone())
            .await
            .expect("connect test database");
        let url = match std::env::var("DATABASE_URL") {
            // Same server and credentials, this database.
            Ok(base) => {
                let (head, query) = base
                    .split_once('?')
                    .map_or((base.as_str(), None), |(h, q)| (h, Some(q)));
                let root = head.rsplit_once('/').map_or(head, |(r, _)| r);
                match query {
                    Some(q) => format!("{root}/{name}?{q}"),
                    None => format!("{root}/{name}"),
                }
            }
            Err(_) => format!(
                "postgres://postgres@localhost/{name}?host={}",
                server
                    .socket_dir
                    .as_ref()
                    .expect("the test cluster's socket")
                    .display()
            ),
        };
        TestDb {
            pool,
            name,
            options,
            url,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = server().admin.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime: do the async clean-up on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect_with(&admin)
                    .await
                    .map_err(std::io::Error::other)?;
                conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await
                    .map_err(std::io::Error::other)?;
                Ok::<_, std::io::Error>(())
            })
        })
        .join();
    }
}

/// The application served on a random local port, over a fresh database, with an admin
/// (`root`) and its API token.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub db: TestDb,
    pub services: keyportal::service::Services,
    pub admin: String,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}).await
    }

    /// An app whose state (session settings, cookie settings) `adjust` changes first.
    pub async fn spawn_with(adjust: impl FnOnce(&mut AppState)) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        TestApp::spawn_on(listener, adjust).await
    }

    /// An app on a listener bound beforehand, for peers that must know its address first
    /// (an identity provider's registered redirect URI).
    pub async fn spawn_on(
        listener: tokio::net::TcpListener,
        adjust: impl FnOnce(&mut AppState),
    ) -> TestApp {
        let db = TestDb::new().await;
        let mut state = AppState::new(db.pool.clone());
        // Both doors (HTTP and the tests' own service calls) sign with the same CAs.
        let ca = std::sync::Arc::new(keyportal::ca::Authorities::generate().expect("CAs"));
        state.services.ca = Some(ca.clone());
        adjust(&mut state);
        let addr = serve_state_on(listener, state).await;
        let mut services = keyportal::service::Services::new(db.pool.clone());
        services.ca = Some(ca);
        let mut app = TestApp {
            addr,
            client: client(),
            db,
            services,
            admin: String::new(),
        };
        app.admin = app
            .user_with_token("root", keyportal::domain::Role::Admin)
            .await;
        app
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Creates a user with a password directly through the service layer.
    pub async fn user_with_password(
        &self,
        username: &str,
        role: keyportal::domain::Role,
        password: &str,
    ) {
        let new = keyportal::service::users::NewUser {
            username: username.into(),
            role: Some(role),
            password: Some(password.into()),
            ..Default::default()
        };
        self.services
            .create_user(&keyportal::service::Ctx::command_line(), new)
            .await
            .expect("create user");
    }

    /// A form-posting browser (no JavaScript) on this app.
    pub fn browser(&self) -> browser::Browser {
        browser::Browser::new(&self.url(""))
    }

    /// Creates a user directly through the service layer and returns a token of theirs.
    pub async fn user_with_token(&self, username: &str, role: keyportal::domain::Role) -> String {
        let cli = keyportal::service::Ctx::command_line();
        let new = keyportal::service::users::NewUser {
            username: username.into(),
            role: Some(role),
            ..Default::default()
        };
        self.services
            .create_user(&cli, new)
            .await
            .expect("create user");
        self.services
            .create_token_for(&cli, username, "test", None)
            .await
            .expect("token")
            .secret
    }

    pub fn get(&self, token: &str, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(token)
    }

    pub fn post(
        &self,
        token: &str,
        path: &str,
        body: serde_json::Value,
    ) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
    }

    pub fn delete(&self, token: &str, path: &str) -> reqwest::RequestBuilder {
        self.client.delete(self.url(path)).bearer_auth(token)
    }

    pub fn patch(
        &self,
        token: &str,
        path: &str,
        body: serde_json::Value,
    ) -> reqwest::RequestBuilder {
        self.client
            .patch(self.url(path))
            .bearer_auth(token)
            .json(&body)
    }

    pub fn put(&self, token: &str, path: &str, body: serde_json::Value) -> reqwest::RequestBuilder {
        self.client
            .put(self.url(path))
            .bearer_auth(token)
            .json(&body)
    }
}

/// Status and JSON body of a response (`Null` for an empty or non-JSON body).
pub async fn answer(req: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let problem = res
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    let text = res.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    if status >= 400 {
        assert!(problem, "error {status} must be a problem document: {text}");
        assert_eq!(body["status"].as_u64(), Some(u64::from(status)), "{text}");
        assert!(body["code"].is_string(), "{text}");
    }
    (status, body)
}

/// Text of a corpus file.
pub fn corpus_key(file: &str) -> String {
    String::from_utf8(std::fs::read(corpus_dir().join(file)).unwrap()).unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// Serves the application over `pool` on 127.0.0.1:0 in the background; returns the address.
pub async fn serve_app(pool: PgPool) -> SocketAddr {
    serve_state(AppState::new(pool)).await
}

/// Serves the application with `state` on 127.0.0.1:0 in the background.
pub async fn serve_state(state: AppState) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    serve_state_on(listener, state).await
}

pub async fn serve_state_on(listener: tokio::net::TcpListener, state: AppState) -> SocketAddr {
    let settings = HttpSettings {
        request_timeout: Duration::from_secs(30),
        max_body_bytes: 1024 * 1024,
    };
    let app = keyportal::server::app(state, &settings);
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    addr
}

/// The shared key corpus (`../shared/keys`, or `KEYPORTAL_KEY_CORPUS`).
pub fn corpus_dir() -> PathBuf {
    std::env::var_os("KEYPORTAL_KEY_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/keys"))
}

/// One row of `manifest.tsv`.
#[derive(Debug, Clone)]
pub struct CorpusCase {
    pub file: String,
    pub expect_valid: bool,
    pub code: String,
    pub algorithm: String,
    pub bits: String,
    pub sha256: String,
    pub md5: String,
    pub note: String,
    pub bytes: Vec<u8>,
}

pub fn corpus() -> Vec<CorpusCase> {
    let dir = corpus_dir();
    let manifest = std::fs::read_to_string(dir.join("manifest.tsv"))
        .unwrap_or_else(|e| panic!("cannot read the key corpus at {}: {e}", dir.display()));
    let mut lines = manifest.lines();
    let header: Vec<&str> = lines.next().expect("manifest header").split('\t').collect();
    assert_eq!(
        header[..7],
        [
            "file",
            "expect",
            "code",
            "algorithm",
            "bits",
            "sha256",
            "md5"
        ]
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            CorpusCase {
                file: f[0].to_owned(),
                expect_valid: f[1] == "valid",
                code: f[2].to_owned(),
                algorithm: f[3].to_owned(),
                bits: f[4].to_owned(),
                sha256: f[5].to_owned(),
                md5: f[6].to_owned(),
                note: f.get(7).unwrap_or(&"").to_string(),
                bytes: std::fs::read(dir.join(f[0])).unwrap_or_else(|e| panic!("{}: {e}", f[0])),
            }
        })
        .collect()
}

/// `n` distinct valid Ed25519 public keys (multiples of the base point), one-line form.
pub fn generated_ed25519_keys(n: u64) -> Vec<String> {
    use base64::Engine;
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
    use curve25519_dalek::scalar::Scalar;
    (1..=n)
        .map(|i| {
            let point = (ED25519_BASEPOINT_POINT * Scalar::from(1000 + i)).compress();
            let mut blob = Vec::new();
            for field in [&b"ssh-ed25519"[..], point.as_bytes()] {
                blob.extend_from_slice(&(field.len() as u32).to_be_bytes());
                blob.extend_from_slice(field);
            }
            format!(
                "ssh-ed25519 {} gen-{i}",
                base64::engine::general_purpose::STANDARD.encode(blob)
            )
        })
        .collect()
}

/// Through the service layer: member `alice` with the corpus Ed25519 key, server `web1`, and a
/// grant for her as `deploy` (what an sshd login on web1 needs).
pub async fn alice_granted_on_web1(s: &keyportal::service::Services) {
    let cli = keyportal::service::Ctx::command_line();
    let alice = keyportal::service::users::NewUser {
        username: "alice".into(),
        ..Default::default()
    };
    s.create_user(&cli, alice).await.expect("alice");
    let key = corpus_key("valid/ed25519.pub");
    s.add_key(&cli, "alice", key.as_bytes(), None, None)
        .await
        .expect("her key");
    s.create_server(&cli, "web1", None, None)
        .await
        .expect("web1");
    let grant = keyportal::service::grants::NewGrant {
        username: "alice".into(),
        login: "deploy".into(),
        key_id: None,
        options: None,
        expires_at: None,
    };
    s.create_grant(&cli, "web1", grant)
        .await
        .expect("the grant");
}

/// Through the service layer: user `name` allowed `max_keys` keys (the policy's quota), and a
/// personal token of theirs.
pub async fn user_with_room_for(
    s: &keyportal::service::Services,
    name: &str,
    max_keys: u32,
) -> String {
    let cli = keyportal::service::Ctx::command_line();
    let user = keyportal::service::users::NewUser {
        username: name.into(),
        ..Default::default()
    };
    s.create_user(&cli, user).await.expect("user");
    let mut policy = s.policy(&cli).await.expect("policy");
    policy.max_keys_per_user = max_keys;
    s.set_policy(&cli, policy).await.expect("quota");
    s.create_token_for(&cli, name, "t", None)
        .await
        .expect("token")
        .secret
}

/// One sample from `/metrics` at `base` (`http://host:port`): the value of the line that starts
/// with `series` (a name, with its labels if it has any); a panic naming it when absent.
pub async fn metric(base: &str, series: &str) -> f64 {
    let all = metrics(base).await;
    match all.get(series) {
        Some(value) => *value,
        None => panic!("no {series} in /metrics: {all:?}"),
    }
}

/// `{base}/metrics` as served (HELP and TYPE lines included).
pub async fn metrics_text(base: &str) -> String {
    client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Every series of `{base}/metrics` (name with its labels), with its value.
pub async fn metrics(base: &str) -> std::collections::BTreeMap<String, f64> {
    metrics_text(base)
        .await
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Runs the `keyportal` binary with `args`, `env` (no `DATABASE_URL` unless `env` gives one)
/// and `stdin`, and waits for it.
pub fn run_keyportal(args: &[&str], env: &[(&str, &str)], stdin: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyportal"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env("KEYPORTAL_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run keyportal");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The tables that hold what people and servers wrote.
pub const DATA_TABLES: [&str; 15] = [
    "users",
    "ssh_keys",
    "servers",
    "grants",
    "api_tokens",
    "audit_events",
    "user_groups",
    "user_group_members",
    "server_groups",
    "server_group_members",
    "group_grants",
    "access_requests",
    "oidc_identities",
    "certificates",
    "notifications_sent",
];

/// The row count of each of [`DATA_TABLES`].
pub async fn data_counts(pool: &sqlx::PgPool) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in DATA_TABLES {
        // A table name of ours, not input.
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(pool)
            .await
            .unwrap();
        counts.push(n);
    }
    counts
}

/// Returns once a backend of this test's database waits for a lock (of `wait_event`, e.g.
/// `advisory`, or any), while `task` still runs: the request in `task` got as far as that
/// lock. Panics if `task` ends first, or if nothing waits within 30 s.
pub async fn until_a_lock_wait<T>(
    pool: &PgPool,
    wait_event: Option<&str>,
    task: &tokio::task::JoinHandle<T>,
    what: &str,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock'
                AND ($1::text IS NULL OR wait_event = $1)",
        )
        .bind(wait_event)
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(
            !task.is_finished(),
            "{what} ended without waiting for the lock"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "{what} never waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `keyportal fetch-keys` (the real binary) for login `deploy` on server `web1`, asking
/// `portals` in order with `token`: its exit code, standard output and standard error.
pub fn fetch_keys(
    portals: &[&str],
    token: &std::path::Path,
    extra: &[&str],
) -> (Option<i32>, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_keyportal"));
    cmd.arg("fetch-keys");
    for p in portals {
        cmd.args(["--portal", p]);
    }
    let out = cmd
        .args(["--server", "web1", "--token-file"])
        .arg(token)
        .args(extra)
        .arg("deploy")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The python of a virtual environment at `venv` in which `import_check` works, made (and
/// `packages` installed from PyPI) if it does not yet. Callers keep one per test binary in a
/// `OnceLock`: tests run on parallel threads, one makes it and the others wait.
#[allow(dead_code)]
pub fn python_venv(venv: &std::path::Path, import_check: &str, packages: &[&str]) -> PathBuf {
    use std::process::Command;
    let python = venv.join("bin/python");
    let ready = Command::new(&python)
        .args(["-c", import_check])
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(venv)
            .status()
            .expect("python3 -m venv");
        assert!(made.success(), "python3 -m venv failed");
        let installed = Command::new(venv.join("bin/pip"))
            .args(["install", "-q"])
            .args(packages)
            .status()
            .expect("pip");
        assert!(installed.success(), "pip install {packages:?} failed");
    }
    python
}
