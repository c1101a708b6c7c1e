//! Keys reach a real OpenSSH server: a private `sshd` on 127.0.0.1 whose
//! `AuthorizedKeysCommand` is `keyportal fetch-keys`, and the real `ssh` client logging in.
//!
//! Needs Debian's `openssh-server` and `openssh-client`, and root (sshd switches to the login's
//! account and runs the command as `nobody`); `.ci/run` installs the packages.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use common::{answer, TestApp};
use keyportal::domain::Role;
use keyportal::service::certificates::{CertificateAsk, IssuedCertificate};
use keyportal::service::grants::NewGrant;
use keyportal::service::users::UserPatch;
use keyportal::service::Ctx;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The Unix account every login in these tests uses: the one running the tests.
fn login() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .expect("the current user has a name")
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the sshd tests need root: sshd must switch to the login's account and run \
         AuthorizedKeysCommand as another user"
    );
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A temp dir sshd's `nobody` can traverse, holding host key, client keys, token and cache,
/// and a copy of `keyportal` where sshd accepts to run it.
struct Lab {
    /// Where `ssh`, `sshd` and `ssh-keygen` come from: Debian's, or an OpenSSH built here.
    openssh: OpenSsh,
    dir: tempfile::TempDir,
    /// sshd runs an AuthorizedKeysCommand only if it and every directory above it are root's
    /// and not writable by others; the build may live under /tmp, so the binary is copied here.
    bin_dir: tempfile::TempDir,
}

/// The OpenSSH programs a test uses.
#[derive(Clone)]
struct OpenSsh {
    sshd: PathBuf,
    ssh: PathBuf,
    keygen: PathBuf,
    /// sshd_config lines and `ssh -o` options this OpenSSH needs beyond the tests' own.
    server_config: &'static str,
    client_options: &'static [&'static str],
}

impl OpenSsh {
    fn debian() -> OpenSsh {
        OpenSsh {
            sshd: "/usr/sbin/sshd".into(),
            ssh: "ssh".into(),
            keygen: "ssh-keygen".into(),
            server_config: "",
            client_options: &[],
        }
    }

    /// OpenSSH 10.5p1, built once from `../shared/vendor` by `.ci/openssh-10.5.sh` (cached).
    fn v10_5() -> OpenSsh {
        let out = std::process::Command::new(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/openssh-10.5.sh"),
        )
        .output()
        .expect("run .ci/openssh-10.5.sh");
        assert!(
            out.status.success(),
            "building OpenSSH 10.5: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let prefix = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        OpenSsh {
            sshd: prefix.join("sbin/sshd"),
            ssh: prefix.join("bin/ssh"),
            keygen: prefix.join("bin/ssh-keygen"),
            // 10.5 knows the hybrid type but does not accept it by default, on either side.
            server_config: "PubkeyAcceptedAlgorithms +ssh-mldsa44-ed25519@openssh.com\n",
            client_options: &[
                "-o",
                "PubkeyAcceptedAlgorithms=+ssh-mldsa44-ed25519@openssh.com",
            ],
        }
    }
}

impl Lab {
    fn with(openssh: OpenSsh) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let bin_dir = tempfile::Builder::new()
            .prefix("keyportal-sshd-test")
            .tempdir_in("/run")
            .unwrap();
        std::fs::set_permissions(bin_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::copy(
            env!("CARGO_BIN_EXE_keyportal"),
            bin_dir.path().join("keyportal"),
        )
        .unwrap();
        let lab = Lab {
            openssh,
            dir,
            bin_dir,
        };
        lab.keygen("host", "ed25519", "");
        lab
    }

    fn keyportal(&self) -> PathBuf {
        self.bin_dir.path().join("keyportal")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A real key pair made by ssh-keygen; returns the public key line.
    fn keygen(&self, name: &str, kind: &str, bits: &str) -> String {
        let mut cmd = std::process::Command::new(&self.openssh.keygen);
        cmd.args(["-q", "-t", kind, "-N", "", "-C", name, "-f"])
            .arg(self.path(name));
        if !bits.is_empty() {
            cmd.args(["-b", bits]);
        }
        let out = cmd.output().expect("ssh-keygen (openssh-client)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(self.path(&format!("{name}.pub"))).unwrap()
    }

    /// A file or directory only `nobody` (the AuthorizedKeysCommandUser) can read.
    fn give_to_nobody(&self, path: &Path, mode: u32) {
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        nix::unistd::chown(path, Some(nobody.uid), Some(nobody.gid)).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn token_file(&self, token: &str) -> PathBuf {
        let path = self.path("token");
        std::fs::write(&path, format!("{token}\n")).unwrap();
        self.give_to_nobody(&path, 0o600);
        path
    }

    fn cache_dir(&self) -> PathBuf {
        let path = self.path("cache");
        std::fs::create_dir_all(&path).unwrap();
        self.give_to_nobody(&path, 0o700);
        path
    }
}

/// A private sshd; stopped when dropped.
struct Sshd {
    child: Child,
    port: u16,
}

impl Sshd {
    /// Starts sshd with `fetch-keys` pointed at `portal`, with `extra` fetch-keys flags.
    async fn start(lab: &Lab, name: &str, portal: &str, token_file: &Path, extra: &str) -> Sshd {
        let auth = format!(
            "AuthorizedKeysFile none\n\
             AuthorizedKeysCommand {bin} fetch-keys --portal {portal} --server web1 --token-file {token} {extra} %u %f\n\
             AuthorizedKeysCommandUser nobody\n",
            bin = lab.keyportal().display(),
            token = token_file.display(),
        );
        Sshd::start_with(lab, name, &auth).await
    }

    /// Starts sshd with `auth` as its public-key settings (and the tests' common ones).
    async fn start_with(lab: &Lab, name: &str, auth: &str) -> Sshd {
        let port = free_port();
        let config = lab.path(&format!("sshd_config.{name}"));
        std::fs::write(
            &config,
            format!(
                "Port {port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {host}\n\
                 PidFile {pid}\n\
                 {auth}\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 UsePAM no\n\
                 PermitRootLogin prohibit-password\n\
                 LogLevel VERBOSE\n{more}",
                host = lab.path("host").display(),
                pid = lab.path(&format!("sshd.{name}.pid")).display(),
                more = lab.openssh.server_config,
            ),
        )
        .unwrap();
        let mut child = Command::new(&lab.openssh.sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("sshd (openssh-server)");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut log = Vec::new();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                let up = line.contains("Server listening on");
                log.push(line);
                if up {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            matches!(ready, Ok(true)),
            "sshd did not start:\n{}",
            log.join("\n")
        );
        // Keep draining its log so sshd never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Sshd { child, port }
    }

    /// `ssh login@127.0.0.1 <command>` with one key; the exit status and standard output.
    async fn ssh(&self, lab: &Lab, key: &str, command: &str) -> (bool, String) {
        self.ssh_as(lab, key, &login(), command, None).await
    }

    /// `ssh user@127.0.0.1 <command>` with one key (and its `-cert.pub` beside it, if there
    /// is one). With `known_hosts`, the host must prove itself against that file
    /// (`StrictHostKeyChecking=yes`); without, any host key is taken.
    async fn ssh_as(
        &self,
        lab: &Lab,
        key: &str,
        user: &str,
        command: &str,
        known_hosts: Option<&Path>,
    ) -> (bool, String) {
        let host_checking: Vec<String> = match known_hosts {
            Some(file) => vec![
                "-o".into(),
                "StrictHostKeyChecking=yes".into(),
                "-o".into(),
                format!("UserKnownHostsFile={}", file.display()),
            ],
            None => vec![
                "-o".into(),
                "StrictHostKeyChecking=no".into(),
                "-o".into(),
                "UserKnownHostsFile=/dev/null".into(),
            ],
        };
        let out = Command::new(&lab.openssh.ssh)
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "IdentityAgent=none",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "ConnectTimeout=20",
            ])
            .args(&host_checking)
            .arg("-i")
            .arg(lab.path(key))
            .args(lab.openssh.client_options)
            .args(["-p", &self.port.to_string()])
            .arg(format!("{user}@127.0.0.1"))
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .await
            .expect("ssh (openssh-client)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    async fn logs_in(&self, lab: &Lab, key: &str) -> bool {
        self.ssh(lab, key, "true").await.0
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

struct World {
    app: TestApp,
    lab: Lab,
    token: PathBuf,
    cli: Ctx,
}

impl World {
    async fn new() -> World {
        World::with(OpenSsh::debian()).await
    }

    async fn with(openssh: OpenSsh) -> World {
        require_root();
        World::with_app(TestApp::spawn().await, openssh).await
    }

    async fn with_app(app: TestApp, openssh: OpenSsh) -> World {
        require_root();
        let lab = Lab::with(openssh);
        let cli = Ctx::command_line();
        app.services
            .create_server(&cli, "web1", Some("127.0.0.1"), None)
            .await
            .unwrap();
        let token = app
            .services
            .create_server_token(&cli, "web1", None, None)
            .await
            .unwrap()
            .secret;
        let token = lab.token_file(&token);
        World {
            app,
            lab,
            token,
            cli,
        }
    }

    /// A user with one fresh key pair (named after the user) stored in the portal.
    async fn user_with_key(&self, name: &str, kind: &str, bits: &str) -> uuid::Uuid {
        self.app.user_with_token(name, Role::Member).await;
        let public = self.lab.keygen(name, kind, bits);
        self.app
            .services
            .add_key(&self.cli, name, public.as_bytes(), None, None)
            .await
            .unwrap()
            .id
    }

    async fn grant(&self, user: &str, options: Option<&str>) -> uuid::Uuid {
        self.grant_login(user, &login(), options).await
    }

    async fn sql(&self, statement: &str) {
        sqlx::query(statement)
            .execute(&self.app.db.pool)
            .await
            .unwrap();
    }

    fn portal(&self) -> String {
        self.app.url("")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_decide_who_logs_in_to_a_real_sshd() {
    let w = World::new().await;
    let alice_key = w.user_with_key("alice", "ed25519", "").await;
    w.grant("alice", None).await;
    w.user_with_key("bob", "ed25519", "").await; // no grant
    w.user_with_key("carol", "ecdsa", "256").await;
    w.grant("carol", None).await;
    w.user_with_key("dave", "ed25519", "").await;
    w.grant("dave", None).await;
    w.user_with_key("erin", "rsa", "2048").await;
    w.grant("erin", None).await;
    w.user_with_key("frank", "ed25519", "").await;
    w.grant("frank", Some("command=\"echo forced-by-keyportal\""))
        .await;
    w.user_with_key("grace", "ed25519", "").await;
    w.grant("grace", Some("from=\"10.9.8.7\"")).await;
    let sshd = Sshd::start(&w.lab, "main", &w.portal(), &w.token, "").await;

    assert!(sshd.logs_in(&w.lab, "alice").await, "alice has a grant");
    let used: Option<time::OffsetDateTime> =
        sqlx::query_scalar("SELECT last_used_at FROM ssh_keys WHERE id = $1")
            .bind(alice_key)
            .fetch_one(&w.app.db.pool)
            .await
            .unwrap();
    assert!(used.is_some(), "the %f lookup recorded the key as used");
    assert!(!sshd.logs_in(&w.lab, "bob").await, "bob has no grant");

    // Expired grant; disabled user; a key the new policy rejects.
    assert!(sshd.logs_in(&w.lab, "carol").await);
    w.sql("UPDATE grants SET expires_at = now() - interval '1 second' WHERE user_id = (SELECT id FROM users WHERE username = 'carol')").await;
    assert!(
        !sshd.logs_in(&w.lab, "carol").await,
        "carol's grant expired"
    );

    assert!(sshd.logs_in(&w.lab, "dave").await);
    w.app
        .services
        .update_user(
            &w.cli,
            "dave",
            UserPatch {
                disabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!sshd.logs_in(&w.lab, "dave").await, "dave is disabled");

    assert!(sshd.logs_in(&w.lab, "erin").await);
    let mut policy = w.app.services.policy(&w.cli).await.unwrap();
    policy.min_rsa_bits = 3072;
    w.app.services.set_policy(&w.cli, policy).await.unwrap();
    assert!(
        !sshd.logs_in(&w.lab, "erin").await,
        "erin's RSA-2048 key is invalid under the new policy"
    );

    // Options travel to sshd and sshd enforces them.
    let (ok, out) = sshd.ssh(&w.lab, "frank", "echo not-this").await;
    assert!(ok);
    assert_eq!(out.trim(), "forced-by-keyportal");
    assert!(
        !sshd.logs_in(&w.lab, "grace").await,
        "from= allows only 10.9.8.7"
    );

    // Revocation takes effect on the very next login.
    w.app.services.delete_key(&w.cli, alice_key).await.unwrap();
    assert!(
        !sshd.logs_in(&w.lab, "alice").await,
        "alice's key was deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_down_fails_closed_unless_a_fresh_cached_answer_exists() {
    let w = World::new().await;
    w.user_with_key("alice", "ed25519", "").await;
    w.grant("alice", None).await;
    let cache = w.lab.cache_dir();
    let cache_flags = format!("--cache-dir {} --cache-max-age 600", cache.display());
    let dead_portal = format!("http://127.0.0.1:{}", free_port());

    let live = Sshd::start(&w.lab, "live", &w.portal(), &w.token, &cache_flags).await;
    let closed = Sshd::start(&w.lab, "closed", &dead_portal, &w.token, "").await;
    let cached = Sshd::start(&w.lab, "cached", &dead_portal, &w.token, &cache_flags).await;

    assert!(!cached.logs_in(&w.lab, "alice").await, "nothing cached yet");
    assert!(
        live.logs_in(&w.lab, "alice").await,
        "and this fills the cache"
    );
    assert!(
        !closed.logs_in(&w.lab, "alice").await,
        "portal down: fail closed"
    );
    assert!(
        cached.logs_in(&w.lab, "alice").await,
        "portal down: fresh cache"
    );

    // Past the cache's maximum age, the outage locks the key out again.
    for entry in std::fs::read_dir(&cache).unwrap() {
        let file = std::fs::File::options()
            .write(true)
            .open(entry.unwrap().path())
            .unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(601))
            .unwrap();
    }
    assert!(
        !cached.logs_in(&w.lab, "alice").await,
        "the cache is too old"
    );

    // The portal saying "no" replaces the cache: revoke, log in once through the live
    // portal (refused), and the cache no longer lets the key in either.
    assert!(live.logs_in(&w.lab, "alice").await);
    w.sql("DELETE FROM grants").await;
    assert!(!live.logs_in(&w.lab, "alice").await);
    assert!(!cached.logs_in(&w.lab, "alice").await);
}

/// `fetch-keys` on its own: what it prints for each kind of portal answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_keys_prints_only_valid_lines_and_fails_closed() {
    let w = World::new().await;
    w.user_with_key("alice", "ed25519", "").await;
    w.grant("alice", Some("no-port-forwarding")).await;
    // Run as root here; the token file stays private to root.
    let token = w.lab.path("root-token");
    std::fs::copy(&w.token, &token).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let run = |portal: String, token: PathBuf, args: Vec<String>| async move {
        let out = Command::new(env!("CARGO_BIN_EXE_keyportal"))
            .args([
                "fetch-keys",
                "--portal",
                &portal,
                "--server",
                "web1",
                "--token-file",
            ])
            .arg(token)
            .args(args)
            .output()
            .await
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, _) = run(w.portal(), token.clone(), vec![login()]).await;
    assert_eq!(code, Some(0));
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("no-port-forwarding ssh-ed25519 "), "{out}");
    assert!(out.trim_end().ends_with(&format!(
        "keyportal:alice:{}",
        sqlx::query_scalar::<_, uuid::Uuid>("SELECT id FROM ssh_keys")
            .fetch_one(&w.app.db.pool)
            .await
            .unwrap()
    )));

    // Another login: nothing, successfully.
    let (code, out, _) = run(w.portal(), token.clone(), vec!["nobodyhere".into()]).await;
    assert_eq!((code, out.as_str()), (Some(0), ""));

    // A wrong token, an unreachable portal, a token file others can read: no keys, exit 1.
    let bad = w.lab.path("bad-token");
    std::fs::write(&bad, "kp_not-a-real-token\n").unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, out, err) = run(w.portal(), bad, vec![login()]).await;
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert!(err.contains("401"), "{err}");

    let dead = format!("http://127.0.0.1:{}", free_port());
    let (code, out, err) = run(dead, token.clone(), vec![login()]).await;
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert!(err.contains("could not be reached"), "{err}");
    assert!(err.contains("fail closed"), "{err}");

    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out, err) = run(w.portal(), token, vec![login()]).await;
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert!(err.contains("chmod 600"), "{err}");
}

/// Plain HTTP to another machine is refused before any packet is sent: inside an empty network
/// namespace a refusal and a connection error read differently, so the test tells them apart.
#[tokio::test]
async fn fetch_keys_refuses_plain_http_to_another_host_unless_allowed() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "kp_some-token\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let run = |extra: &'static [&'static str]| {
        let token = token.clone();
        async move {
            let out = Command::new("unshare")
                .args(["-n", "--", env!("CARGO_BIN_EXE_keyportal"), "fetch-keys"])
                .args(["--portal", "http://192.0.2.1:1", "--server", "web1"])
                .arg("--token-file")
                .arg(&token)
                .args(["--timeout", "2"])
                .args(extra)
                .arg("root")
                .output()
                .await
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };

    let (code, out, err) = run(&[]).await;
    assert_eq!((code, out.as_str()), (Some(1), ""), "{err}");
    assert!(err.contains("plain HTTP"), "{err}");
    assert!(err.contains("use https"), "{err}");
    assert!(!err.contains("could not be reached"), "{err}");

    let (code, out, err) = run(&["--allow-insecure-http"]).await;
    assert_eq!((code, out.as_str()), (Some(1), ""), "{err}");
    assert!(err.contains("could not be reached"), "{err}");
    assert!(!err.contains("plain HTTP"), "{err}");
}

/// Two `serve` processes on one database, both listed in `fetch-keys`: the first is killed
/// with SIGKILL (once while a login is under way) and no login is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_keep_working_when_the_first_of_two_portals_is_killed() {
    let w = World::new().await;
    w.user_with_key("carol", "ed25519", "").await;
    w.grant("carol", None).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let url = w.app.db.url.as_str();
    let (a, addr_a) = common::served::Served::start(dir_a.path(), &[("DATABASE_URL", url)]);
    let (_b, addr_b) = common::served::Served::start(dir_b.path(), &[("DATABASE_URL", url)]);
    let sshd = Sshd::start(
        &w.lab,
        "two-portals",
        &format!("http://{addr_a}"),
        &w.token,
        &format!("--portal http://{addr_b}"),
    )
    .await;
    for _ in 0..3 {
        assert!(sshd.logs_in(&w.lab, "carol").await, "both portals up");
    }
    let (during, ()) = tokio::join!(sshd.logs_in(&w.lab, "carol"), async move { a.kill_hard() });
    assert!(during, "a login while the first portal is killed");
    for i in 0..5 {
        assert!(
            sshd.logs_in(&w.lab, "carol").await,
            "login {i} after the first portal died"
        );
    }
}

/// OpenSSH 10.5's post-quantum hybrid key, made by its own `ssh-keygen`: registered, granted,
/// and used by its own `ssh` against its own `sshd` through `fetch-keys` (by fingerprint, `%f`);
/// deleted, the next login is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openssh_10_5_mldsa44_ed25519_key_logs_in_through_fetch_keys() {
    let w = World::with(OpenSsh::v10_5()).await;
    let id = w.user_with_key("quinn", "mldsa44-ed25519", "").await;
    let key = w.app.services.get_key(&w.cli, id).await.unwrap();
    assert_eq!(
        (key.algorithm.as_str(), key.bits),
        ("ssh-mldsa44-ed25519@openssh.com", 256)
    );
    w.grant("quinn", None).await;
    let sshd = Sshd::start(&w.lab, "pq", &w.portal(), &w.token, "").await;
    assert!(
        sshd.logs_in(&w.lab, "quinn").await,
        "the hybrid key logs in"
    );
    w.app.services.delete_key(&w.cli, id).await.unwrap();
    assert!(!sshd.logs_in(&w.lab, "quinn").await, "deleted: refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_blocklisted_through_the_api_is_refused_at_its_next_login() {
    let w = World::new().await;
    let alice_key = w.user_with_key("alice", "ed25519", "").await;
    w.grant("alice", None).await;
    let sshd = Sshd::start(&w.lab, "main", &w.portal(), &w.token, "").await;
    assert!(sshd.logs_in(&w.lab, "alice").await, "alice has a grant");

    let admin = w.app.user_with_token("blockadmin", Role::Admin).await;
    let (status, key) = answer(w.app.get(&admin, &format!("/api/v1/keys/{alice_key}"))).await;
    assert_eq!(status, 200, "{key}");
    let fingerprint = key["fingerprint_sha256"].as_str().unwrap().to_owned();
    let (status, entry) = answer(w.app.post(
        &admin,
        "/api/v1/blocklist",
        serde_json::json!({ "fingerprint": fingerprint, "reason": "private key found on a pastebin" }),
    ))
    .await;
    assert_eq!(status, 201, "{entry}");
    assert_eq!(entry["key_owner"], "alice");

    assert!(
        !sshd.logs_in(&w.lab, "alice").await,
        "a blocklisted key is refused at the very next login"
    );
    let (_, key) = answer(w.app.get(&admin, &format!("/api/v1/keys/{alice_key}"))).await;
    assert_eq!(key["status"], "invalid", "{key}");
    assert_eq!(key["problem"]["code"], "key_compromised", "{key}");
    assert_eq!(key["problem"]["reason"], "blocklisted", "{key}");
    assert!(
        key["problem"]["message"]
            .as_str()
            .unwrap()
            .contains("private key found on a pastebin"),
        "{key}"
    );

    // Taking the entry back lets the key in again, also at the next login.
    let id = entry["id"].as_str().unwrap();
    let res = w
        .app
        .delete(&admin, &format!("/api/v1/blocklist/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert!(sshd.logs_in(&w.lab, "alice").await, "the entry is gone");
}

/// Server group `web`, holding web1, made by `admin` through the API.
async fn server_group_web_with_web1(w: &World, admin: &str) {
    for (req, want) in [
        (
            w.app.post(
                admin,
                "/api/v1/server-groups",
                serde_json::json!({ "name": "web" }),
            ),
            201,
        ),
        (
            w.app.put(
                admin,
                "/api/v1/server-groups/web/servers/web1",
                serde_json::json!(null),
            ),
            200,
        ),
    ] {
        let (status, body) = answer(req).await;
        assert_eq!(status, want, "{body}");
    }
}

#[tokio::test]
async fn a_login_through_a_group_grant_stops_when_the_user_leaves_the_group() {
    let w = World::new().await;
    w.user_with_key("alice", "ed25519", "").await;
    let admin = w.app.user_with_token("teamadmin", Role::Admin).await;
    let call = |req: reqwest::RequestBuilder, want: u16| async move {
        let (status, body) = answer(req).await;
        assert_eq!(status, want, "{body}");
    };
    call(
        w.app.post(
            &admin,
            "/api/v1/groups",
            serde_json::json!({ "name": "ops" }),
        ),
        201,
    )
    .await;
    call(
        w.app.put(
            &admin,
            "/api/v1/groups/ops/members/alice",
            serde_json::json!(null),
        ),
        200,
    )
    .await;
    server_group_web_with_web1(&w, &admin).await;
    let sshd = Sshd::start(&w.lab, "main", &w.portal(), &w.token, "").await;
    assert!(!sshd.logs_in(&w.lab, "alice").await, "no grant yet");
    call(
        w.app.post(
            &admin,
            "/api/v1/server-groups/web/grants",
            serde_json::json!({ "group": "ops", "login": login() }),
        ),
        201,
    )
    .await;
    assert!(
        sshd.logs_in(&w.lab, "alice").await,
        "ops on web reaches alice on web1"
    );

    call(
        w.app.delete(&admin, "/api/v1/groups/ops/members/alice"),
        200,
    )
    .await;
    assert!(
        !sshd.logs_in(&w.lab, "alice").await,
        "she left ops: refused at the next login"
    );
    call(
        w.app.put(
            &admin,
            "/api/v1/groups/ops/members/alice",
            serde_json::json!(null),
        ),
        200,
    )
    .await;
    assert!(sshd.logs_in(&w.lab, "alice").await, "back in ops");
    call(
        w.app
            .delete(&admin, "/api/v1/server-groups/web/servers/web1"),
        200,
    )
    .await;
    assert!(
        !sshd.logs_in(&w.lab, "alice").await,
        "web1 left web: refused at the next login"
    );
}

/// Issue 17: a person the identity provider moves out of a group loses that group's server
/// access after the next sync or sign-in, and one it removes is disabled by the sync; each
/// proven with a real ssh login.
#[tokio::test]
async fn the_identity_providers_groups_decide_logins_after_a_sync_or_sign_in() {
    require_root();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let idp = common::idp::Idp::start(&base).await;
    let provider = keyportal::oidc::OidcProvider::new(idp.settings(&base)).unwrap();
    let app = TestApp::spawn_on(listener, |state| {
        state.services.oidc = Some(std::sync::Arc::new(provider));
    })
    .await;
    let w = World::with_app(app, OpenSsh::debian()).await;
    let sign_in = || async {
        let mut b = w.app.browser();
        let res = b.get("/auth/oidc/login").await;
        let authorize = res.location().unwrap().to_owned();
        let callback = idp.sign_in(&mut b, &authorize, "alice", "alice-pass").await;
        let res = b.get(callback.strip_prefix(&base).unwrap()).await;
        assert_eq!(res.status, 303, "{}", res.body);
    };
    let admin = w.app.admin.clone();
    let call = |req: reqwest::RequestBuilder, want: u16| async move {
        let (status, body) = answer(req).await;
        assert_eq!(status, want, "{body}");
        body
    };

    // alice's first sign-in makes her account, in the provider-managed group ops.
    sign_in().await;
    let public = w.lab.keygen("alice", "ed25519", "");
    w.app
        .services
        .add_key(&w.cli, "alice", public.as_bytes(), None, None)
        .await
        .unwrap();
    server_group_web_with_web1(&w, &admin).await;
    call(
        w.app.post(
            &admin,
            "/api/v1/server-groups/web/grants",
            serde_json::json!({ "group": "ops", "login": login() }),
        ),
        201,
    )
    .await;
    let sshd = Sshd::start(&w.lab, "main", &w.portal(), &w.token, "").await;
    assert!(sshd.logs_in(&w.lab, "alice").await, "ops reaches web1");

    // The provider takes alice out of ops: the sync says so, and the next login is refused.
    idp.put_account("alice", "alice-pass", &["dev"]).await;
    let report = call(
        w.app
            .post(&admin, "/api/v1/oidc/sync", serde_json::json!(null)),
        200,
    )
    .await;
    assert_eq!(report["known"], serde_json::json!(["alice"]), "{report}");
    assert!(
        !sshd.logs_in(&w.lab, "alice").await,
        "out of ops after the sync"
    );

    // Back in ops at the provider: her next sign-in brings the access back.
    idp.put_account("alice", "alice-pass", &["ops"]).await;
    sign_in().await;
    assert!(
        sshd.logs_in(&w.lab, "alice").await,
        "in ops again after signing in"
    );

    // Removed at the provider: the sync disables her, and her keys leave the output.
    idp.remove_account("alice").await;
    let report = call(
        w.app
            .post(&admin, "/api/v1/oidc/sync", serde_json::json!(null)),
        200,
    )
    .await;
    assert_eq!(report["disabled"], serde_json::json!(["alice"]), "{report}");
    assert!(!sshd.logs_in(&w.lab, "alice").await, "disabled: refused");
}

/// sshd settings for certificates checked against a KRL, with no portal: the certificate must
/// name `<login>@<server>`, which `echo` prints for sshd (certificates never carry a bare
/// login, which every server trusting the CA would accept).
fn krl_auth(ca_file: &Path, krl: &Path, server: &str) -> String {
    format!(
        "AuthorizedKeysFile none\n\
         TrustedUserCAKeys {ca}\n\
         RevokedKeys {krl}\n\
         AuthorizedPrincipalsCommand /bin/echo %u@{server}\n\
         AuthorizedPrincipalsCommandUser nobody\n",
        ca = ca_file.display(),
        krl = krl.display(),
    )
}

/// sshd settings for certificates checked live: the user CA, and `fetch-principals` asking
/// `portal` at every login.
fn certificate_auth(lab: &Lab, ca_file: &Path, portal: &str, token_file: &Path) -> String {
    format!(
        "AuthorizedKeysFile none\n\
         TrustedUserCAKeys {ca}\n\
         AuthorizedPrincipalsCommand {bin} fetch-principals --portal {portal} --server web1 --token-file {token} %u %i %s\n\
         AuthorizedPrincipalsCommandUser nobody\n",
        ca = ca_file.display(),
        bin = lab.keyportal().display(),
        token = token_file.display(),
    )
}

impl World {
    /// The portal's `TrustedUserCAKeys` file, where sshd reads it.
    fn user_ca_file(&self) -> PathBuf {
        let path = self.lab.path("user_ca.pub");
        std::fs::write(&path, self.app.services.user_ca_keys().unwrap()).unwrap();
        path
    }

    /// A certificate for `user`'s key, written where ssh looks for it (`<user>-cert.pub`).
    async fn certify(&self, user: &str, key: uuid::Uuid, ask: CertificateAsk) -> IssuedCertificate {
        let cert = self
            .app
            .services
            .issue_certificate(&self.cli, key, ask)
            .await
            .unwrap();
        std::fs::write(
            self.lab.path(&format!("{user}-cert.pub")),
            format!("{}\n", cert.certificate),
        )
        .unwrap();
        cert
    }

    async fn grant_login(&self, user: &str, login: &str, options: Option<&str>) -> uuid::Uuid {
        self.app
            .services
            .create_grant(
                &self.cli,
                "web1",
                NewGrant {
                    username: user.into(),
                    login: login.into(),
                    key_id: None,
                    options: options.map(str::to_owned),
                    expires_at: None,
                },
            )
            .await
            .unwrap()
            .id
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_logs_in_while_its_grant_lives_and_not_after() {
    let w = World::new().await;
    let key = w.user_with_key("alice", "ed25519", "").await;
    let grant = w.grant("alice", None).await;
    w.grant_login("alice", "deploy", None).await;
    let sshd = Sshd::start_with(
        &w.lab,
        "certs",
        &certificate_auth(&w.lab, &w.user_ca_file(), &w.portal(), &w.token),
    )
    .await;
    assert!(
        !sshd.logs_in(&w.lab, "alice").await,
        "a plain key is not enough here"
    );
    w.certify("alice", key, CertificateAsk::default()).await;
    assert!(
        sshd.logs_in(&w.lab, "alice").await,
        "certificate, live grant"
    );

    // A certificate for another login does not open this one.
    w.certify(
        "alice",
        key,
        CertificateAsk {
            logins: Some(vec!["deploy".into()]),
            ..Default::default()
        },
    )
    .await;
    assert!(!sshd.logs_in(&w.lab, "alice").await, "wrong principal");

    // The grant removed: refused at the next login, though the certificate has hours left.
    w.certify("alice", key, CertificateAsk::default()).await;
    assert!(sshd.logs_in(&w.lab, "alice").await);
    w.app.services.delete_grant(&w.cli, grant).await.unwrap();
    assert!(!sshd.logs_in(&w.lab, "alice").await, "grant removed");

    // Revoked: refused at the next login.
    w.grant("alice", None).await;
    let cert = w.certify("alice", key, CertificateAsk::default()).await;
    assert!(sshd.logs_in(&w.lab, "alice").await);
    w.app
        .services
        .revoke_certificate(&w.cli, cert.serial)
        .await
        .unwrap();
    assert!(!sshd.logs_in(&w.lab, "alice").await, "certificate revoked");

    // Expired: a certificate valid for a few seconds works, then sshd refuses it.
    let cert = w
        .certify(
            "alice",
            key,
            CertificateAsk {
                validity: Some(5),
                ..Default::default()
            },
        )
        .await;
    assert!(sshd.logs_in(&w.lab, "alice").await, "within its validity");
    while time::OffsetDateTime::now_utc() <= cert.valid_before {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!sshd.logs_in(&w.lab, "alice").await, "expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_krl_certificates_work_and_revocations_hold_while_the_portal_is_stopped() {
    let w = World::new().await;
    let admin = w.app.admin.clone();
    // A real portal process on the same database: stopped halfway.
    let data = tempfile::tempdir().unwrap();
    let (portal, addr) =
        common::served::Served::start(data.path(), &[("DATABASE_URL", w.app.db.url.as_str())]);
    let base = format!("http://{addr}");
    let client = common::client();
    let ca = client
        .get(format!("{base}/api/v1/ca/user"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ca_file = w.lab.path("portal_ca.pub");
    std::fs::write(&ca_file, &ca).unwrap();
    let alice = w.user_with_key("alice", "ed25519", "").await;
    let bob = w.user_with_key("bob", "ed25519", "").await;
    let carol = w.user_with_key("carol", "ecdsa", "").await;
    w.grant("alice", None).await;
    w.grant("bob", Some("command=\"echo forced\",from=\"127.0.0.1/32\""))
        .await;
    w.grant("carol", Some("from=\"192.0.2.7/32\"")).await;
    let mut serials = std::collections::HashMap::new();
    for (user, key, server) in [
        ("alice", alice, None),
        ("bob", bob, Some("web1")),
        ("carol", carol, Some("web1")),
    ] {
        let (status, cert) = answer(
            client
                .post(format!("{base}/api/v1/keys/{key}/certificate"))
                .bearer_auth(&admin)
                .json(&serde_json::json!({ "server": server })),
        )
        .await;
        assert_eq!(status, 201, "{cert}");
        std::fs::write(
            w.lab.path(&format!("{user}-cert.pub")),
            format!("{}\n", cert["certificate"].as_str().unwrap()),
        )
        .unwrap();
        serials.insert(user, cert["serial"].as_i64().unwrap());
    }
    let revoked = w.lab.path("revoked_keys");
    let fetch_krl = || {
        let out = std::process::Command::new(w.lab.keyportal())
            .args(["fetch-krl", "--portal", &base, "--token-file"])
            .arg(&w.token)
            .arg("--ca-keys")
            .arg(&ca_file)
            .arg("--out")
            .arg(&revoked)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    fetch_krl();
    let sshd = Sshd::start_with(&w.lab, "krl", &krl_auth(&ca_file, &revoked, "web1")).await;
    // Another server in KRL mode: a certificate for web1's logins does not open it.
    let web2 = Sshd::start_with(&w.lab, "krl-web2", &krl_auth(&ca_file, &revoked, "web2")).await;
    assert!(
        !web2.logs_in(&w.lab, "alice").await,
        "web1's certificate on web2"
    );
    assert!(sshd.logs_in(&w.lab, "alice").await);
    // The grant's command and source address ride in the certificate.
    assert_eq!(
        sshd.ssh(&w.lab, "bob", "true").await,
        (true, "forced\n".to_owned())
    );
    assert!(
        !sshd.logs_in(&w.lab, "carol").await,
        "source-address 192.0.2.7 only"
    );

    // Revoked at the portal, the KRL fetched, then the portal stops: refused all the same,
    // and the other certificates still work without the portal.
    let (status, _) = answer(
        client
            .post(format!(
                "{base}/api/v1/certificates/{}/revoke",
                serials["alice"]
            ))
            .bearer_auth(&admin)
            .json(&serde_json::json!({})),
    )
    .await;
    assert_eq!(status, 204);
    fetch_krl();
    drop(portal);
    assert!(
        client.get(format!("{base}/healthz")).send().await.is_err(),
        "the portal is stopped"
    );
    assert!(!sshd.logs_in(&w.lab, "alice").await, "revoked, per the KRL");
    assert_eq!(
        sshd.ssh(&w.lab, "bob", "true").await,
        (true, "forced\n".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_certificate_replaces_trust_on_first_use() {
    let w = World::new().await;
    w.user_with_key("alice", "ed25519", "").await;
    w.grant("alice", None).await;
    let host_key = std::fs::read_to_string(w.lab.path("host.pub")).unwrap();
    let certs = w
        .app
        .services
        .host_certificates(
            &Ctx {
                caller: keyportal::service::Caller::Server {
                    id: 0,
                    name: "web1".into(),
                },
                request_id: None,
                session: None,
            },
            "web1",
            &[host_key.trim().to_owned()],
            None,
        )
        .await
        .unwrap();
    let host_cert = w.lab.path("host-cert.pub");
    std::fs::write(&host_cert, format!("{}\n", certs[0].certificate)).unwrap();
    let known_hosts = w.lab.path("known_hosts");
    std::fs::write(&known_hosts, w.app.services.known_hosts().unwrap()).unwrap();
    let auth = format!(
        "AuthorizedKeysFile none\n\
         AuthorizedKeysCommand {bin} fetch-keys --portal {portal} --server web1 --token-file {token} %u %f\n\
         AuthorizedKeysCommandUser nobody\n",
        bin = w.lab.keyportal().display(),
        portal = w.portal(),
        token = w.token.display(),
    );
    let certified = Sshd::start_with(
        &w.lab,
        "hostcert",
        &format!("{auth}HostCertificate {}\n", host_cert.display()),
    )
    .await;
    let plain = Sshd::start_with(&w.lab, "hostplain", &auth).await;
    let strict = Some(known_hosts.as_path());
    assert_eq!(
        certified
            .ssh_as(&w.lab, "alice", &login(), "echo in", strict)
            .await,
        (true, "in\n".to_owned()),
        "the host proves itself with its certificate"
    );
    assert!(
        !plain
            .ssh_as(&w.lab, "alice", &login(), "echo in", strict)
            .await
            .0,
        "the same host key without a certificate is not trusted"
    );
}

/// One login: whether it got in, and how long it took (ms).
async fn timed_login(sshd: &Sshd, lab: &Lab, user: &str) -> (bool, f64) {
    let started = std::time::Instant::now();
    let ok = sshd.logs_in(lab, user).await;
    (ok, started.elapsed().as_secs_f64() * 1000.0)
}

/// Median and 90th percentile of `samples` (ms).
fn summary(mut samples: Vec<f64>) -> String {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    format!(
        "median {:.1} ms, p90 {:.1} ms (n={})",
        at(0.5),
        at(0.9),
        samples.len()
    )
}

/// Not a test: the figures of docs/certificates.md (`bench/cert_modes.sh` runs it, release
/// build). Login latency through each delivery mode, and how long a revocation takes to
/// refuse a login in each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drill: bench/cert_modes.sh"]
async fn drill_delivery_modes() {
    const LOGINS: usize = 30;
    let w = World::new().await;
    let key = w.user_with_key("alice", "ed25519", "").await;
    w.grant("alice", None).await;
    let ca_file = w.user_ca_file();
    let krl_file = w.lab.path("revoked_keys");
    let fetch_krl = || {
        let started = std::time::Instant::now();
        let out = std::process::Command::new(w.lab.keyportal())
            .args(["fetch-krl", "--portal", &w.portal(), "--token-file"])
            .arg(&w.token)
            .arg("--ca-keys")
            .arg(&ca_file)
            .arg("--out")
            .arg(&krl_file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        started.elapsed().as_secs_f64() * 1000.0
    };
    fetch_krl();
    let lookup = Sshd::start(&w.lab, "m-lookup", &w.portal(), &w.token, "").await;
    let live = Sshd::start_with(
        &w.lab,
        "m-live",
        &certificate_auth(&w.lab, &ca_file, &w.portal(), &w.token),
    )
    .await;
    let krl = Sshd::start_with(&w.lab, "m-krl", &krl_auth(&ca_file, &krl_file, "web1")).await;
    let timed_login = |sshd, user| timed_login(sshd, &w.lab, user);
    // The lookup mode with no certificate beside the key; the certificate modes with one.
    let mut figures = Vec::new();
    for (mode, sshd, with_cert) in [
        ("lookup (fetch-keys)", &lookup, false),
        ("certificate + live principals", &live, true),
        ("certificate + KRL", &krl, true),
    ] {
        let cert_path = w.lab.path("alice-cert.pub");
        if with_cert {
            w.certify("alice", key, CertificateAsk::default()).await;
        } else {
            let _ = std::fs::remove_file(&cert_path);
        }
        let mut samples = Vec::new();
        for _ in 0..LOGINS {
            let (ok, ms) = timed_login(sshd, "alice").await;
            assert!(ok, "{mode}");
            samples.push(ms);
        }
        figures.push(format!("login, {mode}: {}", summary(samples)));
    }
    // Revoke to refusal. Lookup: the grant goes, the next login is refused.
    let _ = std::fs::remove_file(w.lab.path("alice-cert.pub"));
    let grants = w
        .app
        .services
        .list_grants(&w.cli, "web1", None, None, None)
        .await
        .unwrap()
        .items;
    let started = std::time::Instant::now();
    w.app
        .services
        .delete_grant(&w.cli, grants[0].id)
        .await
        .unwrap();
    let (ok, _) = timed_login(&lookup, "alice").await;
    assert!(!ok);
    figures.push(format!(
        "revoke to refused login, lookup: {:.1} ms (the revocation and the next login)",
        started.elapsed().as_secs_f64() * 1000.0
    ));
    w.grant("alice", None).await;
    // Live principals: the certificate revoked, the next login refused.
    let cert = w.certify("alice", key, CertificateAsk::default()).await;
    assert!(live.logs_in(&w.lab, "alice").await);
    let started = std::time::Instant::now();
    w.app
        .services
        .revoke_certificate(&w.cli, cert.serial)
        .await
        .unwrap();
    let (ok, _) = timed_login(&live, "alice").await;
    assert!(!ok);
    figures.push(format!(
        "revoke to refused login, live principals: {:.1} ms",
        started.elapsed().as_secs_f64() * 1000.0
    ));
    // KRL: revoked, then the next fetch-krl run (cron: at most a minute later), then refused.
    let cert = w.certify("alice", key, CertificateAsk::default()).await;
    assert!(krl.logs_in(&w.lab, "alice").await);
    let started = std::time::Instant::now();
    w.app
        .services
        .revoke_certificate(&w.cli, cert.serial)
        .await
        .unwrap();
    let fetch_ms = fetch_krl();
    let (ok, _) = timed_login(&krl, "alice").await;
    assert!(!ok);
    figures.push(format!("revoke to refused login, KRL: {:.1} ms plus the wait for the next cron run (fetch-krl itself {fetch_ms:.1} ms)", started.elapsed().as_secs_f64() * 1000.0));
    // A large KRL: 100,000 revoked, unexpired certificates, every other serial (so a list of
    // single serials, not one range).
    w.sql(
        "INSERT INTO certificates (kind, ca_fingerprint, key_id, username, fingerprint_sha256, cert_key_id, principals, valid_after, valid_before, issued_by, revoked_at, revoked_reason)
         SELECT 'user', ca_fingerprint, key_id, username, fingerprint_sha256, 'keyportal:alice:bulk:' || g, principals, valid_after, now() + interval '1 hour', 'drill',
                CASE WHEN g % 2 = 0 THEN now() END, CASE WHEN g % 2 = 0 THEN 'revoked' END
           FROM certificates, generate_series(1, 200000) g WHERE serial = (SELECT min(serial) FROM certificates)",
    )
    .await;
    w.sql("UPDATE krl_state SET version = version + 1").await;
    let mut fetches = Vec::new();
    for _ in 0..5 {
        w.sql("UPDATE krl_state SET version = version + 1").await;
        fetches.push(fetch_krl());
    }
    let size = std::fs::metadata(&krl_file).unwrap().len();
    figures.push(format!(
        "fetch-krl with 100,000 revoked certificates ({size} bytes installed): {}",
        summary(fetches)
    ));
    let mut logins = Vec::new();
    w.certify("alice", key, CertificateAsk::default()).await;
    for _ in 0..LOGINS {
        let (ok, ms) = timed_login(&krl, "alice").await;
        assert!(ok);
        logins.push(ms);
    }
    figures.push(format!(
        "login, certificate + KRL of 100,000 serials: {}",
        summary(logins)
    ));
    println!("\nFIGURES\n{}", figures.join("\n"));
}
