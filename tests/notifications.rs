//! Notifications (issue 20): a real SMTP server (aiosmtpd from PyPI, run by the test on
//! 127.0.0.1) receives what keyportal sends, and the tests read the messages as a person
//! would: who got it, the subject, the key's fingerprint, comment and expiry, the link.
//! Rounds are run directly (`notification_round`, or `keyportal notify run`), never by
//! waiting for the schedule.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::TestApp;
use keyportal::domain::Role;
use keyportal::notify::{Mailer, Webhook};
use keyportal::service::notifications::{RoundReport, Transports};
use keyportal::service::Ctx;
use serde_json::{json, Value};
use time::OffsetDateTime;

const PUBLIC_URL: &str = "https://keys.example.com";

/// A Python with aiosmtpd: `KEYPORTAL_TEST_VENV` if set (CI installs it there), else a venv
/// made once under target/. Tests run on parallel threads; one makes it, the others wait.
fn smtp_python() -> PathBuf {
    static MADE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    MADE.get_or_init(|| {
        let venv = std::env::var_os("KEYPORTAL_TEST_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/aiosmtpd-venv"));
        common::python_venv(&venv, "import aiosmtpd", &["aiosmtpd==1.4.6"])
    })
    .clone()
}

/// The SMTP server: each accepted message is written as one JSON file (envelope, headers and
/// the decoded text body), before the server answers 250.
const SERVER_PY: &str = r#"
import email, email.policy, json, os, ssl, sys
from aiosmtpd.controller import Controller

port, out = int(sys.argv[1]), sys.argv[2]
# Recipients refused with a temporary 450 at RCPT (one busy mailbox), comma-separated.
refused = set(filter(None, (sys.argv[3] if len(sys.argv) > 3 else "").split(",")))
# "plain", or "starttls" / "smtps" with a certificate and its key.
mode = sys.argv[4] if len(sys.argv) > 4 else "plain"

class Handler:
    def __init__(self):
        self.n = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in refused:
            return "450 4.2.1 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        part = msg.get_body(preferencelist=("plain",))
        self.n += 1
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(msg["From"]),
            "to": str(msg["To"]),
            "subject": str(msg["Subject"]),
            "body": part.get_content() if part is not None else "",
        }
        tmp = os.path.join(out, ".%d.tmp" % self.n)
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.replace(tmp, os.path.join(out, "%05d.json" % self.n))
        return "250 Message accepted for delivery"

if mode == "plain":
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
else:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(sys.argv[5], sys.argv[6])
    if mode == "starttls":
        controller = Controller(Handler(), hostname="127.0.0.1", port=port,
                                tls_context=tls, require_starttls=True)
    else:
        controller = Controller(Handler(), hostname="127.0.0.1", port=port, ssl_context=tls)
controller.start()
sys.stdin.read()
controller.stop()
"#;

/// One received message.
#[derive(Debug, Clone)]
struct Mail {
    rcpt_tos: Vec<String>,
    from: String,
    subject: String,
    body: String,
}

struct SmtpServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl SmtpServer {
    async fn start() -> SmtpServer {
        SmtpServer::start_on(free_port()).await
    }

    async fn start_on(port: u16) -> SmtpServer {
        SmtpServer::start_refusing(port, &[]).await
    }

    /// A server that answers RCPT for each of `refused` with 450 (and takes the others).
    async fn start_refusing(port: u16, refused: &[&str]) -> SmtpServer {
        SmtpServer::start_with(port, refused, &["plain"]).await
    }

    /// A server speaking `starttls` (required) or `smtps` with the certificate `cert`.
    async fn start_tls(mode: &str, cert: &Path, key: &Path) -> SmtpServer {
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        SmtpServer::start_with(free_port(), &[], &[mode, &cert, &key]).await
    }

    async fn start_with(port: u16, refused: &[&str], tls: &[&str]) -> SmtpServer {
        let python = tokio::task::spawn_blocking(smtp_python).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("server.py");
        std::fs::write(&script, SERVER_PY).unwrap();
        let mailbox = dir.path().join("mail");
        std::fs::create_dir(&mailbox).unwrap();
        let child = Command::new(python)
            .arg(&script)
            .arg(port.to_string())
            .arg(&mailbox)
            .arg(refused.join(","))
            .args(tls)
            .stdin(Stdio::piped())
            .spawn()
            .expect("start aiosmtpd");
        wait_for_port(port).await;
        SmtpServer { child, port, dir }
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    fn mail(&self) -> Vec<Mail> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("mail"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| {
                let v: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
                Mail {
                    rcpt_tos: v["rcpt_tos"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r.as_str().unwrap().to_owned())
                        .collect(),
                    from: v["from"].as_str().unwrap().to_owned(),
                    subject: v["subject"].as_str().unwrap().to_owned(),
                    // Mail lines end in CRLF on the wire.
                    body: v["body"].as_str().unwrap().replace("\r\n", "\n"),
                }
            })
            .collect()
    }

    fn mail_to(&self, address: &str) -> Vec<Mail> {
        self.mail()
            .into_iter()
            .filter(|m| m.rcpt_tos.iter().any(|r| r == address))
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on (bound, read, released).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Polls until something accepts connections on the port (at most 60 s: a first run installs
/// aiosmtpd before this).
async fn wait_for_port(port: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the SMTP server did not start on port {port}"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn mailer(url: &str) -> Transports {
    Transports {
        mailer: Some(Mailer::new(url, "keyportal <keys@example.com>").unwrap()),
        webhook: None,
        public_url: Some(PUBLIC_URL.to_owned()),
    }
}

async fn round(app: &TestApp, t: &Transports) -> RoundReport {
    app.services
        .notification_round(&Ctx::command_line(), t)
        .await
        .expect("the round runs")
}

/// A member with an email address and a token.
async fn member_with_email(app: &TestApp, name: &str, role: Role) -> String {
    let token = app.user_with_token(name, role).await;
    let (status, _) = common::answer(app.patch(
        &app.admin,
        &format!("/api/v1/users/{name}"),
        json!({ "email": format!("{name}@example.com") }),
    ))
    .await;
    assert_eq!(status, 200);
    token
}

/// Adds `key` for `user` through the API, expiring `days` from now if given; its JSON.
async fn add_key(app: &TestApp, user: &str, key: &str, title: &str, days: Option<i64>) -> Value {
    let mut body = json!({ "key": key, "title": title });
    if let Some(d) = days {
        let at = OffsetDateTime::now_utc() + time::Duration::days(d);
        body["expires_at"] = json!(at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap());
    }
    let (status, v) =
        common::answer(app.post(&app.admin, &format!("/api/v1/users/{user}/keys"), body)).await;
    assert_eq!(status, 201, "{v}");
    v
}

async fn sent_rows(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM notifications_sent")
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

fn kinds(r: &RoundReport) -> Vec<(String, String)> {
    let v = serde_json::to_value(r).unwrap();
    v["sent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap().to_owned(),
                d["channel"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_expiring_key_is_mailed_to_its_owner_once() {
    let app = TestApp::spawn().await;
    let smtp = SmtpServer::start().await;
    member_with_email(&app, "alice", Role::Member).await;
    app.user_with_token("nomail", Role::Member).await;
    let keys = common::generated_ed25519_keys(4);
    let soon = add_key(&app, "alice", &keys[0], "laptop", Some(3)).await;
    // Outside the policy's 14 days, and without an expiry: nothing to say.
    add_key(&app, "alice", &keys[1], "desktop", Some(30)).await;
    add_key(&app, "alice", &keys[2], "forever", None).await;
    add_key(&app, "nomail", &keys[3], "theirs", Some(2)).await;
    let t = mailer(&smtp.url());

    let first = round(&app, &t).await;
    assert!(first.ran);
    assert!(first.failed.is_empty(), "{first:?}");
    assert_eq!(kinds(&first), [("key_expiring".into(), "email".into())]);
    let mail = smtp.mail_to("alice@example.com");
    assert_eq!(mail.len(), 1, "{mail:?}");
    let m = &mail[0];
    let expires = soon["expires_at"].as_str().unwrap();
    assert_eq!(
        m.subject,
        format!("Your SSH key \"laptop\" expires on {}", &expires[..10])
    );
    assert_eq!(m.from, "keyportal <keys@example.com>");
    assert!(m.body.starts_with("Hello alice,"), "{}", m.body);
    assert!(
        m.body
            .contains(soon["fingerprint_sha256"].as_str().unwrap()),
        "{}",
        m.body
    );
    assert!(
        m.body.contains(soon["comment"].as_str().unwrap()),
        "{}",
        m.body
    );
    // The expiry to the minute, in UTC.
    let shown = format!("{} {} UTC", &expires[..10], &expires[11..16]);
    assert!(m.body.contains(&shown), "{shown} in {}", m.body);
    assert!(
        m.body.contains("https://keys.example.com/keys"),
        "{}",
        m.body
    );
    // The user without an address is reported, not mailed.
    let v = serde_json::to_value(&first).unwrap();
    assert!(
        v["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["username"] == "nomail"
                && s["kind"] == "key_expiring"
                && s["reason"] == "no_email"),
        "{v}"
    );
    assert_eq!(smtp.mail().len(), 1, "nobody else was mailed");

    let second = round(&app, &t).await;
    assert!(
        second.ran && second.sent.is_empty() && second.failed.is_empty(),
        "{second:?}"
    );
    assert_eq!(smtp.mail().len(), 1, "sent once");
    assert_eq!(sent_rows(&app).await, 1);
    let (status, audit) =
        common::answer(app.get(&app.admin, "/api/v1/audit?action=notification.sent")).await;
    assert_eq!(status, 200);
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
    assert_eq!(audit["items"][0]["target"], "user:alice");
}

#[tokio::test]
async fn a_key_the_new_policy_refuses_is_mailed_to_its_owner() {
    let app = TestApp::spawn().await;
    let smtp = SmtpServer::start().await;
    member_with_email(&app, "alice", Role::Member).await;
    let rsa = common::corpus_key("valid/pem-pkcs8-rsa-2048.pub");
    let added = add_key(&app, "alice", &rsa, "old rsa", None).await;
    let t = mailer(&smtp.url());
    let before = round(&app, &t).await;
    assert!(
        before.sent.is_empty(),
        "a valid key is nobody's news: {before:?}"
    );

    let (status, mut policy) = common::answer(app.get(&app.admin, "/api/v1/policy")).await;
    assert_eq!(status, 200);
    policy["min_rsa_bits"] = json!(3072);
    let (status, _) = common::answer(app.put(&app.admin, "/api/v1/policy", policy)).await;
    assert_eq!(status, 200);

    let after = round(&app, &t).await;
    assert_eq!(kinds(&after), [("key_invalid".into(), "email".into())]);
    let mail = smtp.mail_to("alice@example.com");
    assert_eq!(mail.len(), 1);
    assert_eq!(
        mail[0].subject,
        "Your SSH key \"old rsa\" is no longer accepted"
    );
    assert!(mail[0].body.contains("key_too_small"), "{}", mail[0].body);
    assert!(
        mail[0]
            .body
            .contains(added["fingerprint_sha256"].as_str().unwrap()),
        "{}",
        mail[0].body
    );
    assert!(round(&app, &t).await.sent.is_empty(), "told once");
}

#[tokio::test]
async fn a_blocklisted_key_is_mailed_to_its_owner_as_compromised() {
    let app = TestApp::spawn().await;
    let smtp = SmtpServer::start().await;
    member_with_email(&app, "alice", Role::Member).await;
    let key = common::generated_ed25519_keys(1).remove(0);
    let added = add_key(&app, "alice", &key, "leaked", None).await;
    let fp = added["fingerprint_sha256"].as_str().unwrap();
    let (status, v) = common::answer(app.post(
        &app.admin,
        "/api/v1/blocklist",
        json!({ "fingerprint": fp, "reason": "found in a public repository" }),
    ))
    .await;
    assert_eq!(status, 201, "{v}");
    let t = mailer(&smtp.url());
    let report = round(&app, &t).await;
    assert_eq!(kinds(&report), [("key_compromised".into(), "email".into())]);
    let mail = smtp.mail_to("alice@example.com");
    assert_eq!(mail.len(), 1);
    assert_eq!(
        mail[0].subject,
        "Your SSH key \"leaked\" is compromised and blocked"
    );
    assert!(mail[0].body.contains(fp), "{}", mail[0].body);
    assert!(
        mail[0].body.contains("found in a public repository"),
        "{}",
        mail[0].body
    );
    assert!(round(&app, &t).await.sent.is_empty(), "told once");
}

#[tokio::test]
async fn a_pending_access_request_is_mailed_to_those_who_may_decide_it() {
    let app = TestApp::spawn().await;
    let smtp = SmtpServer::start().await;
    let alice = member_with_email(&app, "alice", Role::Member).await;
    member_with_email(&app, "ada", Role::Admin).await;
    member_with_email(&app, "carol", Role::Member).await;
    let (status, _) =
        common::answer(app.post(&app.admin, "/api/v1/servers", json!({ "name": "web1" }))).await;
    assert_eq!(status, 201);
    let (status, request) = common::answer(app.post(
        &alice,
        "/api/v1/access-requests",
        json!({ "server": "web1", "login": "root", "duration_hours": 4, "reason": "incident 42" }),
    ))
    .await;
    assert_eq!(status, 201, "{request}");
    let t = mailer(&smtp.url());
    round(&app, &t).await;
    let to_ada: Vec<Mail> = smtp
        .mail_to("ada@example.com")
        .into_iter()
        .filter(|m| m.subject.starts_with("Access request"))
        .collect();
    assert_eq!(to_ada.len(), 1, "{:?}", smtp.mail());
    assert_eq!(
        to_ada[0].subject,
        "Access request: alice asks to log in as root on server web1"
    );
    assert!(to_ada[0].body.contains("incident 42"), "{}", to_ada[0].body);
    assert!(to_ada[0].body.contains("4 hour(s)"), "{}", to_ada[0].body);
    assert!(
        to_ada[0]
            .body
            .contains("https://keys.example.com/access-requests"),
        "{}",
        to_ada[0].body
    );
    assert!(
        smtp.mail_to("alice@example.com").is_empty(),
        "not the requester"
    );
    assert!(
        smtp.mail_to("carol@example.com").is_empty(),
        "not an approver"
    );
    round(&app, &t).await;
    let again = smtp
        .mail_to("ada@example.com")
        .into_iter()
        .filter(|m| m.subject.starts_with("Access request"))
        .count();
    assert_eq!(again, 1, "told once");
}

#[tokio::test]
async fn admins_get_one_digest_a_day() {
    let app = TestApp::spawn().await;
    let smtp = SmtpServer::start().await;
    member_with_email(&app, "ada", Role::Admin).await;
    member_with_email(&app, "alice", Role::Member).await;
    let key = common::generated_ed25519_keys(1).remove(0);
    add_key(&app, "alice", &key, "laptop", Some(5)).await;
    let t = mailer(&smtp.url());
    let today = OffsetDateTime::now_utc().date().to_string();
    let digests = |smtp: &SmtpServer| {
        smtp.mail()
            .into_iter()
            .filter(|m| m.subject.starts_with("keyportal daily summary"))
            .collect::<Vec<_>>()
    };
    round(&app, &t).await;
    let got = digests(&smtp);
    assert_eq!(got.len(), 1, "{:?}", smtp.mail());
    assert_eq!(got[0].rcpt_tos, ["ada@example.com"], "admins only");
    assert_eq!(got[0].subject, format!("keyportal daily summary, {today}"));
    assert!(
        got[0].body.contains("Keys in all: 1\n"),
        "{:?}",
        got[0].body
    );
    assert!(
        got[0].body.contains("Expiring within 14 day(s): 1\n"),
        "{}",
        got[0].body
    );
    assert!(got[0].body.contains("Compromised: 0\n"), "{}", got[0].body);
    assert!(
        got[0]
            .body
            .contains("Access requests waiting for a decision: 0\n"),
        "{}",
        got[0].body
    );
    round(&app, &t).await;
    assert_eq!(digests(&smtp).len(), 1, "once a day");
    // The record of today's digest, moved to yesterday: today's is due again.
    sqlx::query("UPDATE notifications_sent SET period = '2000-01-01' WHERE kind = 'admin_digest'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    round(&app, &t).await;
    assert_eq!(digests(&smtp).len(), 2, "the next day's");
}

#[tokio::test]
async fn with_the_smtp_server_down_nothing_is_recorded_and_the_next_round_sends_it() {
    let app = TestApp::spawn().await;
    member_with_email(&app, "alice", Role::Member).await;
    let keys = common::generated_ed25519_keys(2);
    add_key(&app, "alice", &keys[0], "laptop", Some(3)).await;
    add_key(&app, "alice", &keys[1], "phone", Some(4)).await;
    let port = free_port();
    let t = mailer(&format!("smtp://127.0.0.1:{port}"));

    let down = round(&app, &t).await;
    assert!(down.ran && down.sent.is_empty(), "{down:?}");
    assert_eq!(
        down.failed.len(),
        1,
        "the first failure stops the channel: {down:?}"
    );
    assert_eq!(down.deferred, 1, "{down:?}");
    assert!(
        down.failed[0].error.contains(&format!("127.0.0.1:{port}")),
        "the error names the server: {}",
        down.failed[0].error
    );
    assert_eq!(sent_rows(&app).await, 0, "nothing recorded");

    let smtp = SmtpServer::start_on(port).await;
    let up = round(&app, &t).await;
    assert!(up.failed.is_empty(), "{up:?}");
    assert_eq!(up.sent.len(), 2);
    let subjects: Vec<String> = smtp
        .mail_to("alice@example.com")
        .into_iter()
        .map(|m| m.subject)
        .collect();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(subjects.iter().any(|s| s.contains("\"laptop\"")));
    assert!(subjects.iter().any(|s| s.contains("\"phone\"")));
}

/// A server that accepts the TCP connection and never sends its greeting must not hold the
/// round (and its advisory lock) forever: the send times out, the failure is reported, and
/// the lock is free for the next round.
#[tokio::test]
async fn a_silent_smtp_server_fails_the_round_within_the_timeout() {
    let app = TestApp::spawn().await;
    member_with_email(&app, "alice", Role::Member).await;
    let key = common::generated_ed25519_keys(1).remove(0);
    add_key(&app, "alice", &key, "laptop", Some(3)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts and keeps each connection open, saying nothing.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            held.push(socket);
        }
    });
    let t = Transports {
        mailer: Some(
            Mailer::new(
                &format!("smtp://127.0.0.1:{port}"),
                "keyportal <keys@example.com>",
            )
            .unwrap()
            .with_timeout(Duration::from_millis(300)),
        ),
        webhook: None,
        public_url: None,
    };
    // The guard only: the mailer's own 300 ms deadline must end the round long before.
    let report = tokio::time::timeout(Duration::from_secs(20), round(&app, &t))
        .await
        .expect("the round ends although the SMTP server never answers");
    assert!(report.ran && report.sent.is_empty(), "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(
        report.failed[0].error.contains("no answer within"),
        "{}",
        report.failed[0].error
    );
    assert_eq!(sent_rows(&app).await, 0);
    // The lock was released: the next round runs (and fails the same way).
    let again = tokio::time::timeout(Duration::from_secs(20), round(&app, &t))
        .await
        .expect("the second round ends too");
    assert!(again.ran, "{again:?}");
    silent.abort();
}

/// A temporary refusal of one recipient (450 at RCPT) is about that message only: the other
/// notices of the round still go, and the refused one stays due.
#[tokio::test]
async fn one_recipients_temporary_refusal_does_not_stop_email_for_the_others() {
    let app = TestApp::spawn().await;
    for name in ["alice", "bob", "carol"] {
        member_with_email(&app, name, Role::Member).await;
    }
    let keys = common::generated_ed25519_keys(3);
    // Bob's key expires first, so his notice is the first tried.
    add_key(&app, "bob", &keys[0], "bobs", Some(1)).await;
    add_key(&app, "alice", &keys[1], "alices", Some(3)).await;
    add_key(&app, "carol", &keys[2], "carols", Some(4)).await;
    let smtp = SmtpServer::start_refusing(free_port(), &["bob@example.com"]).await;
    let t = mailer(&smtp.url());

    let report = round(&app, &t).await;
    assert_eq!(report.deferred, 0, "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].username.as_deref(), Some("bob"));
    assert!(report.failed[0].error.contains("450"), "{report:?}");
    assert_eq!(smtp.mail_to("alice@example.com").len(), 1, "{report:?}");
    assert_eq!(smtp.mail_to("carol@example.com").len(), 1, "{report:?}");
    assert!(smtp.mail_to("bob@example.com").is_empty());
    let expiring_sent = report
        .sent
        .iter()
        .filter(|d| d.kind.as_str() == "key_expiring")
        .count();
    assert_eq!(expiring_sent, 2, "{report:?}");

    // Bob's notice stays due; the others are not sent again.
    let next = round(&app, &t).await;
    assert_eq!(next.failed.len(), 1, "{next:?}");
    assert!(next.sent.is_empty(), "{next:?}");
}

/// The webhook refusing one payload (a 4xx) is about that payload; the others still go.
#[tokio::test]
async fn a_webhook_refusing_one_payload_still_gets_the_others() {
    let app = TestApp::spawn().await;
    for name in ["alice", "bob"] {
        member_with_email(&app, name, Role::Member).await;
    }
    let keys = common::generated_ed25519_keys(2);
    add_key(&app, "bob", &keys[0], "bobs", Some(1)).await;
    add_key(&app, "alice", &keys[1], "alices", Some(3)).await;
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let hook = {
        let received = received.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
                let received = received.clone();
                async move {
                    if v["username"] == "bob" {
                        return axum::http::StatusCode::BAD_REQUEST;
                    }
                    received.lock().unwrap().push(v);
                    axum::http::StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, hook).await });
    let t = Transports {
        mailer: None,
        webhook: Some(Webhook::new(&format!("http://{addr}/hook")).unwrap()),
        public_url: None,
    };
    let report = round(&app, &t).await;
    assert_eq!(report.deferred, 0, "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let got = received.lock().unwrap().clone();
    assert!(
        got.iter()
            .any(|v| v["kind"] == "key_expiring" && v["username"] == "alice"),
        "{got:?}"
    );
}

/// Candidates that are due in SQL but do not apply once validated (here a compromised key
/// whose verdict is a policy rule, told as `key_invalid`) stay due and sort first; they must
/// not fill the batch round after round and keep later keys from ever being told. With a
/// batch of one, the compromised key behind such a candidate is still due.
#[tokio::test]
async fn candidates_that_do_not_apply_do_not_crowd_out_the_batch() {
    let app = TestApp::spawn().await;
    member_with_email(&app, "alice", Role::Member).await;
    let rsa = common::corpus_key("valid/pem-pkcs8-rsa-2048.pub");
    let old = add_key(&app, "alice", &rsa, "old rsa", None).await;
    let ed = common::generated_ed25519_keys(1).remove(0);
    let leaked = add_key(&app, "alice", &ed, "leaked", None).await;
    for k in [&old, &leaked] {
        let (status, v) = common::answer(app.post(
            &app.admin,
            "/api/v1/blocklist",
            json!({ "fingerprint": k["fingerprint_sha256"], "reason": "published" }),
        ))
        .await;
        assert_eq!(status, 201, "{v}");
    }
    let (status, mut policy) = common::answer(app.get(&app.admin, "/api/v1/policy")).await;
    assert_eq!(status, 200);
    policy["min_rsa_bits"] = json!(3072);
    let (status, _) = common::answer(app.put(&app.admin, "/api/v1/policy", policy)).await;
    assert_eq!(status, 200);

    let t = mailer("smtp://127.0.0.1:25");
    let due = app
        .services
        .collect_due_notices_in_batches_of(&t, OffsetDateTime::now_utc(), 1)
        .await
        .unwrap();
    let told: Vec<(String, String)> = due
        .notices
        .iter()
        .map(|n| (n.kind.as_str().to_owned(), n.subject.clone()))
        .collect();
    let id = |k: &Value| k["id"].as_str().unwrap().to_owned();
    // The premise: the RSA key's verdict is the policy's, so as a compromised candidate it
    // does not apply (and sorts first, being older).
    assert!(
        !told.contains(&("key_compromised".into(), id(&old))),
        "{told:?}"
    );
    assert!(
        told.contains(&("key_compromised".into(), id(&leaked))),
        "the later compromised key is due: {told:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_rounds_at_once_send_each_notice_exactly_once() {
    let app = TestApp::spawn().await;
    let smtp = SmtpServer::start().await;
    let mut expected = Vec::new();
    let keys = common::generated_ed25519_keys(12);
    for (i, key) in keys.iter().enumerate() {
        let name = format!("user{i}");
        member_with_email(&app, &name, Role::Member).await;
        add_key(&app, &name, key, "k", Some(2)).await;
        expected.push(format!("{name}@example.com"));
    }
    // A second instance: its own pool on the same database.
    let other_pool = keyportal::db::pool_options(4)
        .connect_with(app.db.options.clone())
        .await
        .unwrap();
    let other = keyportal::service::Services::new(other_pool);
    let t = Arc::new(mailer(&smtp.url()));
    let (a, b) = {
        let (t1, t2) = (t.clone(), t.clone());
        let one = app.services.clone();
        let two = other.clone();
        tokio::join!(
            tokio::spawn(async move { one.notification_round(&Ctx::command_line(), &t1).await }),
            tokio::spawn(async move { two.notification_round(&Ctx::command_line(), &t2).await })
        )
    };
    let (a, b) = (a.unwrap().unwrap(), b.unwrap().unwrap());
    assert_eq!(a.sent.len() + b.sent.len(), expected.len(), "{a:?} {b:?}");
    let mut got: Vec<String> = smtp.mail().into_iter().flat_map(|m| m.rcpt_tos).collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "each owner mailed exactly once");
    assert_eq!(sent_rows(&app).await, expected.len() as i64);
}

#[tokio::test]
async fn the_webhook_gets_each_notice_as_json() {
    let app = TestApp::spawn().await;
    member_with_email(&app, "alice", Role::Member).await;
    let key = common::generated_ed25519_keys(1).remove(0);
    let added = add_key(&app, "alice", &key, "laptop", Some(3)).await;
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let hook = {
        let received = received.clone();
        axum::Router::new().route(
            "/hooks/T0/secret-token",
            axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
                let received = received.clone();
                async move {
                    received.lock().unwrap().push(v);
                    "ok"
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, hook).await });
    let t = Transports {
        mailer: None,
        webhook: Some(Webhook::new(&format!("http://{addr}/hooks/T0/secret-token")).unwrap()),
        public_url: Some(PUBLIC_URL.to_owned()),
    };
    let report = round(&app, &t).await;
    assert!(report.failed.is_empty(), "{report:?}");
    let got = received.lock().unwrap().clone();
    let expiring: Vec<&Value> = got.iter().filter(|v| v["kind"] == "key_expiring").collect();
    assert_eq!(expiring.len(), 1, "{got:?}");
    let v = expiring[0];
    assert_eq!(v["username"], "alice");
    assert_eq!(v["fingerprint"], added["fingerprint_sha256"]);
    assert_eq!(v["link"], "https://keys.example.com/keys");
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains("alice's SSH key \"laptop\""),
        "{v}"
    );
    assert!(
        got.iter()
            .any(|v| v["kind"] == "admin_digest" && v["keys"] == 1),
        "the digest goes to the webhook too: {got:?}"
    );
    let n = got.len();
    round(&app, &t).await;
    assert_eq!(received.lock().unwrap().len(), n, "each once");

    // A webhook that fails: reported, nothing recorded, and its URL's token never shown.
    let before = sent_rows(&app).await;
    sqlx::query("DELETE FROM notifications_sent")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let gone = free_port();
    let broken = Transports {
        mailer: None,
        webhook: Some(
            Webhook::new(&format!("http://127.0.0.1:{gone}/hooks/secret-token")).unwrap(),
        ),
        public_url: None,
    };
    let failed = round(&app, &broken).await;
    assert_eq!(failed.failed.len(), 1, "{failed:?}");
    assert!(
        !failed.failed[0].error.contains("secret-token"),
        "{failed:?}"
    );
    assert_eq!(sent_rows(&app).await, 0);
    assert!(before > 0);
}

#[tokio::test]
async fn notify_run_sends_a_round_and_prints_its_report() {
    let app = TestApp::spawn().await;
    let smtp = SmtpServer::start().await;
    member_with_email(&app, "alice", Role::Member).await;
    let key = common::generated_ed25519_keys(1).remove(0);
    add_key(&app, "alice", &key, "laptop", Some(3)).await;
    let url = smtp.url();
    let db_url = app.db.url.clone();
    let run = move |smtp_url: String| {
        let db_url = db_url.clone();
        tokio::task::spawn_blocking(move || {
            common::run_keyportal(
                &["notify", "run"],
                &[
                    ("DATABASE_URL", db_url.as_str()),
                    ("KEYPORTAL_SMTP_URL", smtp_url.as_str()),
                    ("KEYPORTAL_SMTP_FROM", "keys@example.com"),
                    ("KEYPORTAL_PUBLIC_URL", PUBLIC_URL),
                ],
                "",
            )
        })
    };
    let out = run(url.clone()).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ran"], true);
    assert_eq!(report["sent"][0]["kind"], "key_expiring");
    assert_eq!(report["sent"][0]["address"], "alice@example.com");
    assert_eq!(smtp.mail_to("alice@example.com").len(), 1);
    let again: Value = serde_json::from_slice(&run(url).await.unwrap().stdout).unwrap();
    assert_eq!(again["sent"], json!([]));

    // A failing server: exit 1, the report still printed; the password never shown.
    let down = format!("smtp://mailer:hunter2@127.0.0.1:{}", free_port());
    sqlx::query("DELETE FROM notifications_sent")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let out = run(down).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains("hunter2") && !stderr.contains("hunter2"),
        "{stdout}{stderr}"
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["failed"].as_array().unwrap().len(), 1, "{report}");
}

#[tokio::test]
async fn notify_expiring_days_is_part_of_the_policy() {
    let app = TestApp::spawn().await;
    let smtp = SmtpServer::start().await;
    member_with_email(&app, "alice", Role::Member).await;
    let key = common::generated_ed25519_keys(1).remove(0);
    add_key(&app, "alice", &key, "laptop", Some(5)).await;
    let (_, mut policy) = common::answer(app.get(&app.admin, "/api/v1/policy")).await;
    assert_eq!(policy["notify_expiring_days"], 14, "the default");
    policy["notify_expiring_days"] = json!(3);
    let (status, saved) =
        common::answer(app.put(&app.admin, "/api/v1/policy", policy.clone())).await;
    assert_eq!(status, 200);
    assert_eq!(saved["notify_expiring_days"], 3);
    policy["notify_expiring_days"] = json!(0);
    let (status, problem) = common::answer(app.put(&app.admin, "/api/v1/policy", policy)).await;
    assert_eq!(status, 422, "{problem}");
    let t = mailer(&smtp.url());
    assert!(round(&app, &t).await.sent.is_empty(), "5 days is beyond 3");
}

#[tokio::test]
async fn starttls_required_never_falls_back_to_plain_text() {
    let app = TestApp::spawn().await;
    // aiosmtpd as started here offers no STARTTLS.
    let smtp = SmtpServer::start().await;
    member_with_email(&app, "alice", Role::Member).await;
    let key = common::generated_ed25519_keys(1).remove(0);
    add_key(&app, "alice", &key, "laptop", Some(3)).await;
    let t = mailer(&format!("{}?tls=required", smtp.url()));
    let report = round(&app, &t).await;
    assert!(report.sent.is_empty(), "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(smtp.mail().is_empty(), "nothing went out in plain text");
    assert_eq!(sent_rows(&app).await, 0);
}

#[tokio::test]
async fn serve_runs_rounds_on_its_schedule_and_outlives_a_dead_smtp_server() {
    let app = TestApp::spawn().await;
    member_with_email(&app, "alice", Role::Member).await;
    let key = common::generated_ed25519_keys(1).remove(0);
    add_key(&app, "alice", &key, "laptop", Some(3)).await;
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_owned();
    let db_url = app.db.url.clone();
    let dead = format!("smtp://mailer:hunter2@127.0.0.1:{}", free_port());
    let (still_serving, status, log) = tokio::task::spawn_blocking(move || {
        let (mut served, addr) = common::served::Served::start(
            &data_dir,
            &[
                ("DATABASE_URL", db_url.as_str()),
                ("KEYPORTAL_SMTP_URL", dead.as_str()),
                ("KEYPORTAL_SMTP_FROM", "keys@example.com"),
                ("KEYPORTAL_NOTIFY_INTERVAL", "1"),
            ],
        );
        served.wait_for("some notices were not delivered", Duration::from_secs(60));
        // Still there for the next round.
        served.wait_for("some notices were not delivered", Duration::from_secs(60));
        let still_serving = std::net::TcpStream::connect(&addr).is_ok();
        let (status, log) = served.terminate(Duration::from_secs(30));
        (still_serving, status, log.join("\n"))
    })
    .await
    .unwrap();
    assert!(still_serving, "{log}");
    assert!(status.success(), "{log}");
    assert!(log.contains("notifications are on"), "{log}");
    assert!(log.contains("****@127.0.0.1"), "{log}");
    assert!(
        !log.contains("hunter2"),
        "the password is never logged: {log}"
    );
    assert_eq!(sent_rows(&app).await, 0);
}

#[tokio::test]
async fn the_policy_page_shows_and_saves_notify_expiring_days() {
    let app = TestApp::spawn().await;
    app.user_with_password("ada", Role::Admin, "correct horse battery")
        .await;
    let mut admin = app.browser();
    let csrf = admin.signed_in("ada", "correct horse battery").await;
    let page = admin.get("/policy").await;
    assert!(
        page.body.contains(
            "name=\"notify_expiring_days\" type=\"number\" min=\"1\" max=\"365\" value=\"14\""
        ),
        "{}",
        page.body
    );
    let save = |days: &'static str| {
        [
            ("csrf_token", csrf.clone()),
            ("notify_expiring_days", days.to_owned()),
            ("allowed_algorithms", "ssh-ed25519".to_owned()),
            ("action", "save".to_owned()),
        ]
    };
    let fields = save("0");
    let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = admin.post_form("/policy", &refs).await;
    assert_eq!(res.status, 422);
    assert!(
        res.body
            .contains("notify_expiring_days must be between 1 and 365"),
        "{}",
        res.body
    );
    let fields = save("7");
    let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = admin.post_form("/policy", &refs).await;
    assert_eq!(res.status, 303, "{}", res.body);
    let (_, policy) = common::answer(app.get(&app.admin, "/api/v1/policy")).await;
    assert_eq!(policy["notify_expiring_days"], 7);
}

/// A CA and a certificate it signed for 127.0.0.1 (openssl), in `dir`: (ca, cert, key).
fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=keyportal test mail CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

#[tokio::test]
async fn mail_goes_over_starttls_and_tls_to_a_server_signed_by_the_configured_ca_and_nowhere_else()
{
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(dir.path());
    let ca_pem = std::fs::read(&ca).unwrap();
    for (mode, url) in [
        ("starttls", "smtp://127.0.0.1:{port}?tls=required"),
        ("smtps", "smtps://127.0.0.1:{port}"),
    ] {
        let app = TestApp::spawn().await;
        let smtp = SmtpServer::start_tls(mode, &cert, &key).await;
        member_with_email(&app, "alice", Role::Member).await;
        let keys = common::generated_ed25519_keys(1);
        add_key(&app, "alice", &keys[0], "laptop", Some(3)).await;
        let url = url.replace("{port}", &smtp.port.to_string());

        // Without the CA the server's certificate is not trusted: nothing is sent or recorded.
        let untrusted = mailer(&url);
        let r = round(&app, &untrusted).await;
        assert!(r.sent.is_empty() && !r.failed.is_empty(), "{mode}: {r:?}");
        assert_eq!(smtp.mail().len(), 0, "{mode}");
        assert_eq!(sent_rows(&app).await, 0);

        // With it, the notice goes out over TLS.
        let trusted = Transports {
            mailer: Some(
                Mailer::with_ca(
                    &url,
                    "keyportal <keys@example.com>",
                    Some(("ca.pem", &ca_pem)),
                )
                .unwrap(),
            ),
            webhook: None,
            public_url: Some(PUBLIC_URL.to_owned()),
        };
        let r = round(&app, &trusted).await;
        assert!(r.failed.is_empty(), "{mode}: {r:?}");
        let mail = smtp.mail_to("alice@example.com");
        assert_eq!(mail.len(), 1, "{mode}: {mail:?}");
        assert!(
            mail[0].subject.contains("laptop") || mail[0].body.contains("laptop"),
            "{mail:?}"
        );
    }
    // A CA with an SMTP URL that uses no TLS is refused at start, not ignored.
    let e = Mailer::with_ca(
        "smtp://127.0.0.1:25",
        "keys@example.com",
        Some(("ca.pem", &ca_pem)),
    );
    assert!(e.unwrap_err().to_string().contains("uses no TLS"));
}
