//! `keyportal fetch-keys` with several `--portal`s: asked in order within one budget, the first
//! real answer wins (a "no" included, and the cache never overrides it); only when none
//! answers does the cache stand in, or nothing is printed.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{corpus_key, TestApp};
use keyportal::service::Ctx;

/// A live portal with alice's key granted as `deploy` on web1, and web1's token in a file.
async fn live_portal(dir: &Path) -> (TestApp, PathBuf) {
    let app = TestApp::spawn().await;
    let s = &app.services;
    let cli = Ctx::command_line();
    common::alice_granted_on_web1(s).await;
    let secret = s
        .create_server_token(&cli, "web1", None, None)
        .await
        .unwrap()
        .secret;
    let token = dir.join("token");
    std::fs::write(&token, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    (app, token)
}

/// A loopback port nothing listens on.
fn closed_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// A portal that answers every request with `status` (e.g. 503 while its database is down),
/// or, with `None`, accepts connections and never answers.
fn fake_portal(status: Option<u16>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut conn in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            match status {
                Some(code) => {
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {code} Whatever\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                }
                None => held.push(conn),
            }
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_portal_answers_when_one_is_down_failing_or_hung() {
    let dir = tempfile::tempdir().unwrap();
    let (app, token) = live_portal(dir.path()).await;
    let live = app.url("");
    let live = live.trim_end_matches('/');
    let key = corpus_key("valid/ed25519.pub");
    let key_blob = key.split_whitespace().nth(1).unwrap();

    for (first, what) in [
        (closed_port(), "refused connection"),
        (fake_portal(Some(503)), "503"),
        (fake_portal(Some(429)), "429"),
        (fake_portal(None), "hung"),
    ] {
        let (code, out, err) = common::fetch_keys(&[&first, live], &token, &["--timeout", "4"]);
        assert_eq!(code, Some(0), "first portal {what}: {err}");
        assert!(out.contains(key_blob), "first portal {what}: {out}");
    }
    // None answers: nothing, exit 1, and each portal's reason said.
    let (a, b) = (closed_port(), fake_portal(Some(503)));
    let (code, out, err) = common::fetch_keys(&[&a, &b], &token, &["--timeout", "3"]);
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert!(err.contains(&a) && err.contains(&b), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_from_the_first_portal_is_final_and_the_cache_never_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    let (app, token) = live_portal(dir.path()).await;
    let live = app.url("");
    let live = live.trim_end_matches('/');
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    let cache_args = [
        "--cache-dir",
        cache.to_str().unwrap(),
        "--cache-max-age",
        "3600",
    ];

    // A good answer fills the cache...
    let (code, out, _) = common::fetch_keys(&[live], &token, &cache_args);
    assert_eq!(code, Some(0));
    assert!(!out.is_empty());
    // ...which stands in when no portal answers...
    let down = closed_port();
    let (code, cached, err) = common::fetch_keys(&[&down], &token, &cache_args);
    assert_eq!((code, cached.as_str()), (Some(0), out.as_str()), "{err}");

    // ...but a portal that says "no" (here: 401, the token is unknown to it) decides, even with
    // a portal after it that would say yes, and the cached answer is dropped.
    let other = TestApp::spawn().await;
    let other = other.url("");
    let other = other.trim_end_matches('/');
    let (code, out, err) = common::fetch_keys(&[other, live], &token, &cache_args);
    assert_eq!((code, out.as_str()), (Some(1), ""), "{err}");
    assert!(err.contains("401"), "{err}");
    let (code, out, _) = common::fetch_keys(&[&down], &token, &cache_args);
    assert_eq!((code, out.as_str()), (Some(1), ""), "the cache was dropped");
}

#[test]
fn one_plain_http_portal_elsewhere_refuses_them_all_before_asking_any() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "kp_x\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let hung = fake_portal(None);
    let (code, out, err) = common::fetch_keys(&[&hung, "http://192.0.2.1"], &token, &[]);
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert!(err.contains("plain HTTP"), "{err}");
}

/// The datagrams waiting on a syslog socket the test listens on (fetch-keys has exited, so
/// every line it sent is already queued).
fn syslog_lines(socket: &std::os::unix::net::UnixDatagram) -> Vec<String> {
    socket.set_nonblocking(true).unwrap();
    let mut lines = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_hear_through_syslog_of_each_login_the_portal_did_not_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (app, token) = live_portal(dir.path()).await;
    let live = app.url("");
    let live = live.trim_end_matches('/');
    let socket_path = dir.path().join("log");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    let with = |extra: &[&str]| -> Vec<String> {
        let mut args = vec![
            "--syslog-socket".to_owned(),
            socket_path.display().to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    let cache_args = [
        "--cache-dir",
        cache.to_str().unwrap(),
        "--cache-max-age",
        "3600",
    ];

    // An ordinary answer (which also fills the cache): nothing in syslog.
    let args = with(&cache_args);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, _) = common::fetch_keys(&[live], &token, &args);
    assert_eq!(code, Some(0));
    assert!(!out.is_empty());
    assert_eq!(syslog_lines(&socket), Vec::<String>::new());

    // Portal down, answered from the cache: one warning (LOG_AUTH|LOG_WARNING = 36).
    let down = closed_port();
    let (code, _, _) = common::fetch_keys(&[&down], &token, &args);
    assert_eq!(code, Some(0));
    let lines = syslog_lines(&socket);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("<36>keyportal[")
            && lines[0].contains("fetch-keys: outcome=cached login=\"deploy\" server=\"web1\"")
            && lines[0].contains(&down),
        "{lines:?}"
    );

    // Portal down, no cache: the login is refused, one error (LOG_AUTH|LOG_ERR = 35).
    let args = with(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, _) = common::fetch_keys(&[&down], &token, &args);
    assert_eq!((code, out.as_str()), (Some(1), ""));
    let lines = syslog_lines(&socket);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("<35>keyportal[")
            && lines[0].contains("outcome=unreachable")
            && lines[0].contains("fail closed"),
        "{lines:?}"
    );

    // A portal that never answers: timed out, told apart.
    let hung = fake_portal(None);
    let mut timed = args.clone();
    timed.extend(["--timeout", "1"]);
    let (code, _, _) = common::fetch_keys(&[&hung], &token, &timed);
    assert_eq!(code, Some(1));
    let lines = syslog_lines(&socket);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("outcome=timed_out"), "{lines:?}");

    // A "no" from the portal (a token it does not know): refused, and said so.
    let other = TestApp::spawn().await;
    let other = other.url("");
    let (code, _, _) = common::fetch_keys(&[other.trim_end_matches('/')], &token, &args);
    assert_eq!(code, Some(1));
    let lines = syslog_lines(&socket);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("outcome=refused") && lines[0].contains("401"),
        "{lines:?}"
    );
}
