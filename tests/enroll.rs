//! `keyportal enroll` / `unenroll` against a real sshd configuration in a scratch root: what
//! they write, that sshd (`sshd -t`, `sshd -T`) accepts it, that a running sshd is reloaded,
//! that running it again changes nothing, and that every refusal leaves every file as it was.
//! Needs root (files owned by root and by the command's account, which enroll creates).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{corpus_key, TestApp};
use keyportal::service::Ctx;

const SSHD: &str = "/usr/sbin/sshd";

/// Every file and directory under `root`: mode, owner and content, to compare before/after.
fn tree(root: &Path) -> BTreeMap<PathBuf, (u32, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            // sshd's own run files are not enroll's.
            if path.ends_with("sshd.log") || path.ends_with("sshd.pid") {
                continue;
            }
            let bytes = if meta.is_dir() {
                stack.push(path.clone());
                Vec::new()
            } else {
                std::fs::read(&path).unwrap()
            };
            out.insert(path, (meta.mode(), meta.uid(), bytes));
        }
    }
    out
}

/// A scratch root holding a minimal sshd configuration that includes `sshd_config.d`.
struct Scratch {
    _dir: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
}

impl Scratch {
    fn new(main_config_head: &str) -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let ssh = root.join("etc/ssh");
        std::fs::create_dir_all(ssh.join("sshd_config.d")).unwrap();
        std::fs::create_dir_all(root.join("run")).unwrap();
        // sshd -t wants its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let host_key = ssh.join("ssh_host_ed25519_key");
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key)
            .status()
            .unwrap();
        assert!(status.success());
        let config = ssh.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "{main_config_head}Include {}/*.conf\nHostKey {}\nPidFile {}\n",
                ssh.join("sshd_config.d").display(),
                host_key.display(),
                root.join("run/sshd.pid").display()
            ),
        )
        .unwrap();
        Scratch {
            _dir: dir,
            root,
            config,
        }
    }

    fn at(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    fn keyportal(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyportal"));
        cmd.args(args)
            .arg("--root")
            .arg(&self.root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(text) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }

    fn effective(&self) -> String {
        let out = Command::new(SSHD)
            .arg("-T")
            .arg("-f")
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The command's account, removed at the end whatever happens.
struct Account(&'static str);

impl Drop for Account {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(self.0).output();
    }
}

/// A child process killed when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn account_exists(name: &str) -> bool {
    nix::unistd::User::from_name(name).unwrap().is_some()
}

async fn portal_with_web1() -> (TestApp, String) {
    let app = TestApp::spawn().await;
    common::alice_granted_on_web1(&app.services).await;
    let token = app
        .services
        .create_server_token(&Ctx::command_line(), "web1", None, None)
        .await
        .unwrap()
        .secret;
    (app, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_sets_a_server_up_in_one_command_reloads_sshd_and_unenroll_takes_it_all_back() {
    let (app, token) = portal_with_web1().await;
    let portal = app.url("");
    let portal = portal.trim_end_matches('/');
    let account = Account("kp-enroll-test");
    let _ = Command::new("userdel").arg(account.0).output();
    let s = Scratch::new("");
    let untouched = tree(&s.root);
    let enroll = [
        "enroll",
        "--portal",
        portal,
        "--server",
        "web1",
        "--token-stdin",
        "--certificates",
        "live",
        "--command-user",
        account.0,
    ];

    // A running sshd on this configuration, to see it reloaded.
    let log = s.at("sshd.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let sshd = Command::new(SSHD)
        .args(["-D", "-o", "ListenAddress=127.0.0.1", "-p", &port, "-f"])
        .arg(&s.config)
        .arg("-E")
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sshd = Killed(sshd);
    let pid_file = s.at("run/sshd.pid");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !pid_file.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "sshd wrote no pid file"
        );
        std::thread::yield_now();
    }

    // --dry-run: says what it would write, changes nothing, creates no account.
    let mut dry = enroll.to_vec();
    dry.push("--dry-run");
    let out = s.keyportal(&dry, Some(&format!("{token}\n")));
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.contains("would create the system account kp-enroll-test"),
        "{said}"
    );
    assert!(said.contains("AuthorizedKeysCommand "), "{said}");
    assert!(!said.contains(&token), "the token is never printed: {said}");
    assert_eq!(tree(&s.root), untouched);
    assert!(!account_exists(account.0));

    // Enroll.
    let out = s.keyportal(&enroll, Some(&format!("{token}\n")));
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains("enrolled as web1"), "{said}");
    assert!(
        said.contains(&format!("reloaded sshd (pid {})", sshd.0.id())),
        "{said}"
    );
    let user = nix::unistd::User::from_name(account.0).unwrap().unwrap();
    let meta = |p: &str| std::fs::metadata(s.at(p)).unwrap();
    assert_eq!(meta("/usr/local/bin/keyportal").mode() & 0o7777, 0o755);
    assert_eq!(meta("/usr/local/bin/keyportal").uid(), 0);
    assert_eq!(meta("/etc/keyportal/token").mode() & 0o7777, 0o600);
    assert_eq!(meta("/etc/keyportal/token").uid(), user.uid.as_raw());
    assert_eq!(
        std::fs::read_to_string(s.at("/etc/keyportal/token")).unwrap(),
        format!("{token}\n")
    );
    let ca = std::fs::read_to_string(s.at("/etc/ssh/keyportal_user_ca.pub")).unwrap();
    assert!(ca.starts_with("ssh-ed25519 "), "{ca}");
    // sshd has our settings in effect...
    let effective = s.effective();
    let command = effective
        .lines()
        .find_map(|l| l.strip_prefix("authorizedkeyscommand "))
        .unwrap()
        .to_owned();
    assert!(
        command.starts_with(&format!(
            "{} fetch-keys --portal {portal} --server web1 --token-file {}",
            s.at("/usr/local/bin/keyportal").display(),
            s.at("/etc/keyportal/token").display()
        )),
        "{command}"
    );
    assert!(effective.contains(&format!("authorizedkeyscommanduser {}", account.0)));
    assert!(effective.contains("authorizedprincipalscommand "));
    // ...and a running sshd re-read them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("Received SIGHUP")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "sshd was not reloaded"
        );
        std::thread::yield_now();
    }
    // The command as sshd runs it, as the command's account, gives alice's key.
    let key = corpus_key("valid/ed25519.pub");
    let blob = key.split_whitespace().nth(1).unwrap();
    let words: Vec<String> = command
        .split_whitespace()
        .map(|w| match w {
            "%u" => "deploy".to_owned(),
            "%f" => String::new(),
            w => w.to_owned(),
        })
        .filter(|w| !w.is_empty())
        .collect();
    let out = Command::new("runuser")
        .args(["-u", account.0, "--"])
        .args(&words)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(blob),
        "{}",
        text(&out)
    );

    // Again: nothing changes, not even a timestamp.
    let enrolled = tree(&s.root);
    let mtime = meta("/etc/ssh/sshd_config.d/keyportal.conf").mtime_nsec();
    let out = s.keyportal(&enroll, Some(&format!("{token}\n")));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing changed"),
        "{}",
        text(&out)
    );
    assert_eq!(tree(&s.root), enrolled);
    assert_eq!(
        meta("/etc/ssh/sshd_config.d/keyportal.conf").mtime_nsec(),
        mtime
    );

    // Unenroll: a dry run first, then everything enroll wrote goes, and the account.
    let out = s.keyportal(&["unenroll", "--dry-run"], None);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(tree(&s.root), enrolled);
    let out = s.keyportal(&["unenroll"], None);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(tree(&s.root), untouched);
    assert!(!account_exists(account.0));
    assert!(!s.effective().contains("fetch-keys"));
    let out = s.keyportal(&["unenroll"], None);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not enrolled"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_leaves_every_file_as_it_was() {
    let (app, token) = portal_with_web1().await;
    let portal = app.url("");
    let portal = portal.trim_end_matches('/');
    let account = Account("kp-enroll-refused");
    let _ = Command::new("userdel").arg(account.0).output();
    let args = |server: &'static str| {
        vec![
            "enroll".to_owned(),
            "--portal".to_owned(),
            portal.to_owned(),
            "--server".to_owned(),
            server.to_owned(),
            "--token-stdin".to_owned(),
            "--command-user".to_owned(),
            account.0.to_owned(),
        ]
    };
    let run = |s: &Scratch, args: &[String], token: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        s.keyportal(&args, Some(&format!("{token}\n")))
    };

    // The portal does not take the token, or does not know the server.
    let s = Scratch::new("");
    let before = tree(&s.root);
    for (server, secret, why) in [("web1", "kp_wrong", "401"), ("web2", token.as_str(), "404")] {
        let out = run(&s, &args(server), secret);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(why) && err.contains("nothing was changed"),
            "{err}"
        );
        assert_eq!(tree(&s.root), before);
    }

    // sshd -t fails before any change (someone's broken drop-in): refused.
    std::fs::write(
        s.at("/etc/ssh/sshd_config.d/50-broken.conf"),
        "NoSuchKeyword yes\n",
    )
    .unwrap();
    let before = tree(&s.root);
    let out = run(&s, &args("web1"), &token);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fail before any change") && err.contains("NoSuchKeyword"),
        "{err}"
    );
    assert_eq!(tree(&s.root), before);
    assert!(!account_exists(account.0));

    // An earlier AuthorizedKeysCommand in the main file wins over the drop-in: sshd -T shows
    // it, enroll refuses and puts every file back (and removes the account it made).
    let s = Scratch::new("AuthorizedKeysCommand /usr/bin/true\nAuthorizedKeysCommandUser nobody\n");
    let before = tree(&s.root);
    let out = run(&s, &args("web1"), &token);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("an earlier setting wins"), "{err}");
    assert_eq!(tree(&s.root), before);
    assert!(!account_exists(account.0));

    // A drop-in of the same name that enroll did not write is someone else's.
    let s = Scratch::new("");
    std::fs::write(s.at("/etc/ssh/sshd_config.d/keyportal.conf"), "# mine\n").unwrap();
    let before = tree(&s.root);
    let out = run(&s, &args("web1"), &token);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not written by keyportal enroll"));
    assert_eq!(tree(&s.root), before);

    // A directory on the way that another account may write: refused (it could swap a file
    // for a link between root's rename and chown).
    let s = Scratch::new("");
    std::fs::create_dir_all(s.at("/etc/keyportal")).unwrap();
    std::fs::set_permissions(
        s.at("/etc/keyportal"),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let before = tree(&s.root);
    let out = run(&s, &args("web1"), &token);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no one else may write it"),
        "{}",
        text(&out)
    );
    assert_eq!(tree(&s.root), before);

    // unenroll trusts its record only for files under the root and accounts that are system
    // accounts: a record naming /etc/passwd or root is refused, and nothing is removed.
    let s = Scratch::new("");
    std::fs::create_dir_all(s.at("/etc/keyportal")).unwrap();
    for (files, account) in [
        (vec!["/etc/passwd".to_owned()], None),
        (vec![], Some("root")),
    ] {
        let record = serde_json::json!({
            "server": "web1", "files": files, "created_account": account, "created_dirs": []
        });
        std::fs::write(s.at("/etc/keyportal/enrollment.json"), record.to_string()).unwrap();
        let before = tree(&s.root);
        let out = s.keyportal(&["unenroll"], None);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not trusting it")
                || String::from_utf8_lossy(&out.stderr).contains("not removing it"),
            "{}",
            text(&out)
        );
        assert_eq!(tree(&s.root), before);
    }
    assert!(std::path::Path::new("/etc/passwd").exists());

    // Root as the command's account is refused outright.
    let s = Scratch::new("");
    let before = tree(&s.root);
    let mut as_root = args("web1");
    as_root[7] = "root".to_owned();
    let out = run(&s, &as_root, &token);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is root"));
    assert_eq!(tree(&s.root), before);
}
