//! End-to-end UI flows in headless Chromium (Debian `chromium` + `chromium-driver`), driven
//! over WebDriver, against a real `keyportal serve` process. Each flow saves screenshots under
//! `target/tmp/ui-screenshots/`.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::served::Served;
use common::{corpus, corpus_key, TestDb};
use fantoccini::{Client, ClientBuilder, Locator};
use keyportal::domain::Role;
use keyportal::service::users::NewUser;
use keyportal::service::{Ctx, Services};
use serde_json::json;

const PASSWORD: &str = "correct horse battery staple";

/// chromedriver on a free local port, stopped on drop with the browsers it started: they are
/// its children in a process group of its own, and killing chromedriver alone left a browser
/// whose session was never closed (a failed test's) running with no parent.
struct Driver {
    child: tokio::process::Child,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .process_group(0)
            .spawn()
            .expect("chromedriver: apt-get install chromium chromium-driver");
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        // Wait until chromedriver answers its status endpoint.
        for _ in 0..200 {
            if client
                .get(format!("{url}/status"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Driver { child, url };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("chromedriver did not start");
    }

    async fn browser(&self, profile: &std::path::Path) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id().and_then(|id| i32::try_from(id).ok()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.start_kill();
    }
}

/// Processes whose command line holds `needle` (a browser's profile directory): a process that
/// has exited and not yet been reaped has an empty command line, so it does not count.
fn processes_with(needle: &str) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|cmdline| String::from_utf8_lossy(cmdline).contains(needle))
        .count()
}

/// A browser whose session is never closed (a test that failed half-way) ends with its driver,
/// rather than running on with no parent after the suite.
#[tokio::test]
async fn a_browser_left_open_ends_with_its_driver() {
    let profile = tempfile::tempdir().unwrap();
    let needle = format!("--user-data-dir={}", profile.path().display());
    let driver = Driver::start().await;
    let b = driver.browser(profile.path()).await;
    b.goto("about:blank").await.unwrap();
    // As a failed test would: the session is not closed when the client goes away.
    b.persist().await.unwrap();
    drop(b);
    assert!(processes_with(&needle) > 0, "the browser runs");
    drop(driver);
    // The kill is sent at once; the processes end on their own time: bounded wait.
    for _ in 0..200 {
        if processes_with(&needle) == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{} browser processes outlived their driver",
        processes_with(&needle)
    );
}

/// A real `serve` on a fresh database, with admin `boss` and member `alice`.
struct Portal {
    _served: Served,
    _data: tempfile::TempDir,
    base: String,
    db: TestDb,
}

async fn portal() -> Portal {
    let db = TestDb::new().await;
    let services = Services::new(db.pool.clone());
    for (name, role) in [("boss", Role::Admin), ("alice", Role::Member)] {
        services
            .create_user(
                &Ctx::command_line(),
                NewUser {
                    username: name.into(),
                    role: Some(role),
                    password: Some(PASSWORD.into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    let data = tempfile::tempdir().unwrap();
    // The address servers would use; the page prints it in the sshd lines. (Plain http keeps
    // cookies unprefixed for the browser on 127.0.0.1.)
    let (served, addr) = Served::start(
        data.path(),
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("KEYPORTAL_PUBLIC_URL", "http://portal.example.test"),
        ],
    );
    Portal {
        _served: served,
        _data: data,
        base: format!("http://{addr}"),
        db,
    }
}

struct Shots {
    dir: PathBuf,
}

impl Shots {
    fn new(flow: &str) -> Shots {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("ui-screenshots")
            .join(flow);
        std::fs::create_dir_all(&dir).unwrap();
        Shots { dir }
    }

    async fn take(&self, b: &Client, name: &str) {
        let png = b.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::write(self.dir.join(format!("{name}.png")), png).unwrap();
    }
}

async fn text_of(b: &Client, css: &str) -> String {
    b.wait()
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

async fn fill(b: &Client, css: &str, value: &str) {
    let field = b.find(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

async fn click(b: &Client, css: &str) {
    b.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Submits with the button at `css` and waits until the browser has left that page (the
/// button has gone stale), so the next lookup sees the answer, not the form.
async fn submit(b: &Client, css: &str) {
    let button = b.find(Locator::Css(css)).await.unwrap();
    button.click().await.unwrap();
    for _ in 0..400 {
        if button.is_displayed().await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("submitting {css} did not load a new page");
}

async fn sign_in(b: &Client, base: &str, user: &str) {
    b.goto(&format!("{base}/login")).await.unwrap();
    fill(b, "#username", user).await;
    fill(b, "#password", PASSWORD).await;
    submit(b, "form[action='/login'] button[type=submit]").await;
    assert_eq!(text_of(b, "[data-testid=current-user]").await, user);
}

/// Pastes `key` into the add-key form and submits it.
async fn add_key(b: &Client, key: &str) {
    // send_keys types newlines as Enter, which is fine in a textarea.
    fill(b, "#key", key.trim_end()).await;
    submit(b, "form[action$='/keys'] button[type=submit]").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_adds_keys_grants_access_and_sees_policy_changes() {
    let portal = portal().await;
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let b = driver.browser(profile.path()).await;
    let shots = Shots::new("admin");
    let base = &portal.base;

    sign_in(&b, base, "boss").await;
    assert_eq!(text_of(&b, "[data-testid=current-role]").await, "admin");
    shots.take(&b, "01-dashboard").await;

    // A valid key: its fingerprint is shown.
    let ed25519 = corpus()
        .into_iter()
        .find(|c| c.file == "valid/ed25519.pub")
        .unwrap();
    b.goto(&format!("{base}/keys")).await.unwrap();
    add_key(&b, &corpus_key("valid/ed25519.pub")).await;
    let flash = text_of(&b, ".flash").await;
    assert!(flash.contains(&ed25519.sha256), "{flash}");
    let table = text_of(&b, "#keys").await;
    assert!(table.contains(&ed25519.sha256), "{table}");
    assert!(table.contains("ssh-ed25519"));
    shots.take(&b, "02-key-added").await;

    // An invalid key: the validator's reason next to the field, the text kept.
    let bad = corpus_key("invalid/ecdsa-256-not-on-curve.pub");
    add_key(&b, &bad).await;
    let reason = text_of(&b, "#key-error").await;
    assert!(reason.contains("ecdsa_point_invalid"), "{reason}");
    let kept = b
        .find(Locator::Css("#key"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default();
    assert_eq!(kept.trim(), bad.trim());
    shots.take(&b, "03-key-rejected").await;

    // A server and a grant.
    b.goto(&format!("{base}/servers")).await.unwrap();
    fill(&b, "#name", "web1").await;
    fill(&b, "#hostname", "web1.example.net").await;
    submit(
        &b,
        "form[action='/servers'][method=post] button[type=submit]",
    )
    .await;
    let h1 = text_of(&b, "h1").await;
    assert!(h1.contains("web1"), "{h1}: {}", b.source().await.unwrap());
    fill(&b, "#username", "boss").await;
    fill(&b, "#login", "deploy").await;
    fill(&b, "#options", "no-port-forwarding").await;
    submit(&b, "form[action$='/grants'] button[type=submit]").await;
    let grants = text_of(&b, "#grants").await;
    assert!(
        grants.contains("deploy") && grants.contains("no-port-forwarding"),
        "{grants}"
    );
    let sshd = text_of(&b, "#sshd-lines").await;
    assert!(sshd.contains("--server web1"), "{sshd}");
    assert!(
        sshd.contains("--portal http://portal.example.test "),
        "{sshd}"
    );
    let enroll = text_of(&b, "#enroll-command").await;
    assert_eq!(
        enroll.trim(),
        "keyportal enroll --portal http://portal.example.test --server web1 --token-file token"
    );
    let live = text_of(&b, "#cert-live-lines").await;
    assert!(
        live.starts_with("# above any AuthorizedKeysCommand line"),
        "{live}"
    );
    assert!(
        live.contains("fetch-principals --portal http://portal.example.test --server web1")
            && live.contains("%u %i %s"),
        "{live}"
    );
    let krl_lines = text_of(&b, "#cert-krl-lines").await;
    assert!(
        krl_lines.contains("AuthorizedPrincipalsCommand /bin/echo %u@web1"),
        "{krl_lines}"
    );
    let cron = text_of(&b, "#cert-krl-cron").await;
    assert!(
        cron.contains("fetch-krl --portal http://portal.example.test"),
        "{cron}"
    );
    shots.take(&b, "04-server-with-grant").await;

    // The server's authorized_keys now holds the key.
    b.goto(&format!(
        "{base}/api/v1/servers/web1/authorized_keys?login=deploy"
    ))
    .await
    .unwrap();
    let lines = text_of(&b, "body").await;
    let blob = corpus_key("valid/ed25519.pub");
    let blob = blob.split_whitespace().nth(1).unwrap();
    assert!(
        lines.starts_with("no-port-forwarding ssh-ed25519 "),
        "{lines}"
    );
    assert!(lines.contains(blob));

    // Raise the policy (no more Ed25519): the preview names the key, saving flags it.
    b.goto(&format!("{base}/policy")).await.unwrap();
    click(&b, "input[name=allowed_algorithms][value='ssh-ed25519']").await;
    submit(&b, "button[value=preview]").await;
    let preview = text_of(&b, "#policy-preview").await;
    assert!(
        preview.contains("1 key(s) valid today would become invalid"),
        "{preview}"
    );
    assert!(preview.contains(&ed25519.sha256));
    shots.take(&b, "05-policy-preview").await;
    submit(&b, "button[value=save]").await;
    assert!(text_of(&b, ".flash").await.contains("Policy saved"));
    b.goto(&format!("{base}/keys")).await.unwrap();
    assert_eq!(text_of(&b, "[data-testid=key-status]").await, "invalid");
    assert!(text_of(&b, "[data-testid=key-problem]")
        .await
        .contains("algorithm_disallowed"));
    shots.take(&b, "06-key-flagged").await;
    b.goto(&format!("{base}/")).await.unwrap();
    assert!(text_of(&b, "#attention").await.contains(&ed25519.sha256));
    b.goto(&format!(
        "{base}/api/v1/servers/web1/authorized_keys?login=deploy"
    ))
    .await
    .unwrap();
    assert_eq!(
        text_of(&b, "body").await.trim(),
        "",
        "the key left authorized_keys"
    );

    // Sign out: back to the sign-in page, and the session is gone.
    b.goto(&format!("{base}/")).await.unwrap();
    submit(&b, "form[action='/logout'] button").await;
    b.wait()
        .for_element(Locator::Css("#password"))
        .await
        .unwrap();
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&portal.db.pool)
        .await
        .unwrap();
    assert_eq!(sessions, 0);
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_sees_only_their_own_pages() {
    let portal = portal().await;
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let b = driver.browser(profile.path()).await;
    let shots = Shots::new("member");
    let base = &portal.base;

    // A wrong password first: the same calm message, no session.
    b.goto(&format!("{base}/login")).await.unwrap();
    fill(&b, "#username", "alice").await;
    fill(&b, "#password", "not my password").await;
    submit(&b, "form[action='/login'] button[type=submit]").await;
    assert!(text_of(&b, "#login-error").await.contains("not right"));
    shots.take(&b, "01-sign-in-failed").await;

    sign_in(&b, base, "alice").await;
    assert_eq!(text_of(&b, "[data-testid=current-role]").await, "member");
    let nav = text_of(&b, "header nav").await;
    assert!(!nav.contains("Users") && !nav.contains("Audit"), "{nav}");
    shots.take(&b, "02-member-dashboard").await;

    for page in ["/users", "/audit"] {
        b.goto(&format!("{base}{page}")).await.unwrap();
        let h1 = text_of(&b, "h1").await;
        assert!(h1.contains("403"), "{page}: {h1}");
    }
    shots.take(&b, "03-admin-page-refused").await;
    b.goto(&format!("{base}/users/boss/keys")).await.unwrap();
    assert!(text_of(&b, "h1").await.contains("404"), "no name leaks");

    // Their own keys page works, and the copy button is there (JavaScript is on).
    b.goto(&format!("{base}/keys")).await.unwrap();
    add_key(&b, &corpus_key("valid/ecdsa-384.pub")).await;
    assert!(text_of(&b, ".flash").await.contains("Key added"));
    assert!(b
        .find(Locator::Css("button[data-copy]"))
        .await
        .unwrap()
        .is_displayed()
        .await
        .unwrap());
    shots.take(&b, "04-member-keys").await;
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_requests_access_and_an_owner_approves_it_in_the_browser() {
    use keyportal::store::groups::Kind;
    let portal = portal().await;
    let s = Services::new(portal.db.pool.clone());
    let cli = Ctx::command_line();
    // olga owns group ops (alice is in it), which holds a grant on server group web (web1).
    s.create_user(
        &cli,
        NewUser {
            username: "olga".into(),
            role: Some(Role::Member),
            password: Some(PASSWORD.into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    s.create_server(&cli, "web1", None, None).await.unwrap();

    let driver = Driver::start().await;
    let shots = Shots::new("access-request");
    let base = &portal.base;

    // boss builds the groups in the UI: ops = {alice}, web = {web1}, ops on web as deploy.
    let boss_profile = tempfile::tempdir().unwrap();
    let boss = driver.browser(boss_profile.path()).await;
    sign_in(&boss, base, "boss").await;
    click(&boss, "header nav a[href='/groups']").await;
    fill(&boss, "#group-name", "ops").await;
    submit(&boss, "#create-group").await;
    fill(&boss, "#server-group-name", "web").await;
    submit(&boss, "#create-server-group").await;
    fill(&boss, "#member-ops", "alice").await;
    submit(&boss, "button[aria-label='Add to ops']").await;
    fill(&boss, "#server-web", "web1").await;
    submit(&boss, "button[aria-label='Add a server to web']").await;
    fill(&boss, "#grant-group", "ops").await;
    fill(&boss, "#grant-server-group", "web").await;
    fill(&boss, "#grant-login", "deploy").await;
    submit(&boss, "#grant-submit").await;
    assert!(text_of(&boss, ".flash")
        .await
        .contains("may log in to every server of web as deploy"));
    let groups = text_of(&boss, "#groups-table tbody").await;
    assert!(
        groups.contains("ops") && groups.contains("alice"),
        "{groups}"
    );
    assert!(text_of(&boss, "#server-groups-table tbody")
        .await
        .contains("web1"));
    shots.take(&boss, "00-groups").await;
    boss.close().await.unwrap();
    // Owners are set through the API (PATCH /api/v1/groups/ops); the page has no owner form.
    s.update_group(
        &cli,
        Kind::Users,
        "ops",
        keyportal::service::groups::GroupPatch {
            owners: Some(vec!["olga".into()]),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        s.authorized_keys(&cli, "web1", "deploy", None)
            .await
            .unwrap(),
        "",
        "alice has no key yet: nothing to write, but no error"
    );

    // alice asks for root on web1 for 2 hours.
    let alice_profile = tempfile::tempdir().unwrap();
    let a = driver.browser(alice_profile.path()).await;
    sign_in(&a, base, "alice").await;
    click(&a, "header nav a[href='/access-requests']").await;
    fill(&a, "#target", "web1").await;
    fill(&a, "#login", "root").await;
    fill(&a, "#duration_hours", "2").await;
    fill(&a, "#reason", "incident 42: disk full").await;
    submit(&a, "form[action='/access-requests'] button[type=submit]").await;
    assert!(text_of(&a, ".flash")
        .await
        .contains("waits for an approver"));
    assert_eq!(text_of(&a, "[data-testid=request-status]").await, "pending");
    shots.take(&a, "01-requested").await;

    // olga finds it in her inbox and approves it with a comment.
    let olga_profile = tempfile::tempdir().unwrap();
    let o = driver.browser(olga_profile.path()).await;
    sign_in(&o, base, "olga").await;
    o.goto(&format!("{base}/access-requests")).await.unwrap();
    let inbox = text_of(&o, "#inbox-table tbody").await;
    assert!(
        inbox.contains("alice") && inbox.contains("incident 42"),
        "{inbox}"
    );
    shots.take(&o, "02-inbox").await;
    fill(&o, "#inbox-table input[name=comment]", "ok, 2 hours").await;
    submit(&o, "#inbox-table button[aria-label^='Approve']").await;
    assert!(text_of(&o, ".flash")
        .await
        .contains("Approved alice's request"));
    assert!(text_of(&o, "#inbox-table tbody")
        .await
        .contains("Nothing is waiting"));
    o.close().await.unwrap();

    // alice sees it approved, and the grant is there, ending in two hours.
    a.refresh().await.unwrap();
    assert_eq!(
        text_of(&a, "[data-testid=request-status]").await,
        "approved"
    );
    shots.take(&a, "03-approved").await;
    a.close().await.unwrap();
    let grants = s
        .list_grants(&cli, "web1", Some("alice"), None, None)
        .await
        .unwrap();
    assert_eq!(grants.items.len(), 1);
    assert_eq!(grants.items[0].login, "root");
    let left = grants.items[0].expires_at.unwrap() - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::minutes(119) && left <= time::Duration::hours(2),
        "{left}"
    );
    // With a key, alice gets in as deploy (through ops on web) and as root (the approval).
    let key = corpus_key("valid/ed25519.pub");
    s.add_key(&cli, "alice", key.as_bytes(), None, None)
        .await
        .unwrap();
    assert_eq!(
        s.authorized_keys(&cli, "web1", "root", None)
            .await
            .unwrap()
            .lines()
            .count(),
        1
    );
    // The admin's access page says so, and why.
    let boss_profile = tempfile::tempdir().unwrap();
    let boss = driver.browser(boss_profile.path()).await;
    sign_in(&boss, base, "boss").await;
    boss.goto(&format!("{base}/servers/web1")).await.unwrap();
    click(&boss, "#server-access").await;
    let rows = text_of(&boss, "#access tbody").await;
    assert!(
        rows.contains("deploy") && rows.contains("group ops on server group web"),
        "{rows}"
    );
    assert!(
        rows.contains("root") && rows.contains("user grant"),
        "{rows}"
    );
    shots.take(&boss, "04-who-can-log-in").await;
    boss.goto(&format!("{base}/users/alice/keys"))
        .await
        .unwrap();
    click(&boss, "#user-access").await;
    let rows = text_of(&boss, "#access tbody").await;
    assert_eq!(
        rows.matches("web1").count(),
        2,
        "deploy and root on web1: {rows}"
    );
    boss.close().await.unwrap();

    // Two hours later (moved here, not waited for) the grant has ended by itself.
    sqlx::query("UPDATE grants SET expires_at = now() - interval '1 second' WHERE login = 'root'")
        .execute(&portal.db.pool)
        .await
        .unwrap();
    assert_eq!(
        s.authorized_keys(&cli, "web1", "root", None).await.unwrap(),
        ""
    );
}

/// Issue 17 in Chromium: "Sign in with <provider>", the provider's own sign-in page, back on
/// the portal signed in as an admin (the provider's admin group) with the provider's groups,
/// the sync button, and sign-out continuing at the provider. The portal is a real `serve`
/// configured only through its environment, the client secret from a file.
#[tokio::test]
async fn a_person_signs_in_with_the_identity_provider_and_lands_with_role_and_groups() {
    let db = TestDb::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let idp = common::idp::Idp::start(&base).await;
    let data = tempfile::tempdir().unwrap();
    let secret_file = data.path().join("oidc-secret");
    std::fs::write(&secret_file, format!("{}\n", common::idp::CLIENT_SECRET)).unwrap();
    let listen = format!("127.0.0.1:{port}");
    let (_served, _) = Served::start(
        data.path(),
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("KEYPORTAL_LISTEN", listen.as_str()),
            ("KEYPORTAL_PUBLIC_URL", base.as_str()),
            ("KEYPORTAL_OIDC_ISSUER", idp.issuer.as_str()),
            ("KEYPORTAL_OIDC_CLIENT_ID", "keyportal"),
            (
                "KEYPORTAL_OIDC_CLIENT_SECRET_FILE",
                secret_file.to_str().unwrap(),
            ),
            ("KEYPORTAL_OIDC_SCOPES", "openid,profile,email,groups"),
            ("KEYPORTAL_OIDC_NAME", "Test IdP"),
            ("KEYPORTAL_OIDC_ADMIN_GROUP", "keyportal-admins"),
        ],
    );
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let b = driver.browser(profile.path()).await;
    let shots = Shots::new("oidc");

    b.goto(&format!("{base}/login")).await.unwrap();
    assert_eq!(text_of(&b, "#oidc-sign-in").await, "Sign in with Test IdP");
    shots.take(&b, "01-sign-in-page").await;
    submit(&b, "#oidc-sign-in").await;
    // The provider's page, on the provider's address.
    fill(&b, "#idp-username", "alice").await;
    fill(&b, "#idp-password", "alice-pass").await;
    shots.take(&b, "02-provider-sign-in").await;
    submit(&b, "#idp-sign-in").await;
    assert_eq!(text_of(&b, "[data-testid=current-user]").await, "alice");
    assert_eq!(text_of(&b, "[data-testid=current-role]").await, "admin");
    assert!(b.current_url().await.unwrap().as_str().starts_with(&base));
    shots.take(&b, "03-signed-in").await;

    b.goto(&format!("{base}/groups")).await.unwrap();
    let groups = text_of(&b, "main").await;
    assert!(groups.contains("ops"), "{groups}");
    assert!(groups.contains("keyportal-admins"), "{groups}");
    shots.take(&b, "04-groups-from-the-provider").await;

    b.goto(&format!("{base}/users")).await.unwrap();
    assert_eq!(text_of(&b, "#oidc-sync").await, "Sync with Test IdP");
    submit(&b, "#oidc-sync").await;
    let flash = text_of(&b, "[role=status]").await;
    assert!(
        flash.contains("Checked 1 account(s) at the identity provider: 1 known"),
        "{flash}"
    );
    shots.take(&b, "05-synced").await;

    submit(&b, "form[action='/logout'] button").await;
    let at = b.current_url().await.unwrap().to_string();
    assert!(
        at.starts_with(&format!("{}/session/end", idp.issuer)),
        "{at}"
    );
    b.goto(&format!("{base}/")).await.unwrap();
    text_of(&b, "#oidc-sign-in").await;
    assert!(
        b.current_url().await.unwrap().path().starts_with("/login"),
        "signed out of the portal"
    );
    b.close().await.unwrap();
}

/// `n` characters without a blank or any other place a line may break, starting with `label`
/// (lower-case letters and digits, so it also fits names).
fn unbroken(label: &str, n: usize) -> String {
    label
        .chars()
        .chain("0123456789abcdefghijklmnopqrstuvwxyz".chars().cycle())
        .take(n)
        .collect()
}

/// Issue 20's "real data", each field as long as the portal accepts (1,024 characters where
/// it takes that many), none with a blank in it.
struct Hostile {
    username: String,
    display_name: String,
    email: String,
    key_title: String,
    comment: String,
    server: String,
    hostname: String,
    description: String,
    login: String,
    options: String,
    group: String,
    group_description: String,
    server_group: String,
    server_group_description: String,
    reason: String,
    block_reason: String,
    token_name: String,
    /// The 16384-bit key's public key blob (base64).
    rsa_blob: String,
    rsa_fingerprint: String,
}

impl Hostile {
    fn new() -> Hostile {
        let rsa = corpus_key("valid/rsa-16384.pub");
        Hostile {
            username: unbroken("u", 32),
            display_name: unbroken("Name", 200),
            email: format!("{}@{}.example", unbroken("mail", 64), unbroken("d", 200)),
            key_title: unbroken("Title", 200),
            comment: unbroken("Comment", 1024),
            server: unbroken("s", 64),
            hostname: unbroken("host", 253),
            description: unbroken("Description", 1024),
            login: unbroken("l", 32),
            options: format!("command=\"/usr/local/bin/{}\"", unbroken("cmd", 1000)),
            group: unbroken("g", 64),
            group_description: unbroken("GroupDescription", 1024),
            server_group: unbroken("sg", 64),
            server_group_description: unbroken("ServerGroupDescription", 1024),
            reason: unbroken("Reason", 1000),
            block_reason: unbroken("BlockReason", 1024),
            token_name: unbroken("Token", 100),
            rsa_blob: rsa.split_whitespace().nth(1).unwrap().to_owned(),
            rsa_fingerprint: corpus()
                .into_iter()
                .find(|c| c.file == "valid/rsa-16384.pub")
                .unwrap()
                .sha256,
        }
    }

    /// Through the service layer: boss holds the 16384-bit key and 199 more (200 keys), every
    /// one with the longest title and a 1,024-character comment, expiring within days (so the
    /// dashboard lists them); a member with the longest name and email; a server with long
    /// labels, a grant with long options on all of boss's keys, groups, an access request, a
    /// blocklist entry and tokens with long names; and a policy change for a nested audit
    /// detail.
    async fn store(&self, s: &Services, pool: &sqlx::PgPool) {
        use keyportal::service::access::Caller;
        use keyportal::service::access_requests::NewAccessRequest;
        use keyportal::service::blocklist::BlockTarget;
        use keyportal::service::grants::NewGrant;
        use keyportal::service::groups::{GrantFor, GroupGrantTarget, NewGroup, NewGroupGrant};
        use keyportal::store::groups::Kind;
        let cli = Ctx::command_line();
        s.create_user(
            &cli,
            NewUser {
                username: self.username.clone(),
                display_name: Some(self.display_name.clone()),
                email: Some(self.email.clone()),
                role: Some(Role::Member),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let mut policy = s.policy(&cli).await.unwrap();
        assert!(policy.max_rsa_bits >= 16384 && policy.max_comment_bytes >= 1024);
        policy.max_keys_per_user = 200;
        s.set_policy(&cli, policy.clone()).await.unwrap();

        let soon = time::OffsetDateTime::now_utc() + time::Duration::days(3);
        let rsa = format!("ssh-rsa {} {}", self.rsa_blob, self.comment);
        let mut lines = vec![rsa];
        for key in common::generated_ed25519_keys(199) {
            let blob = key.split_whitespace().nth(1).unwrap();
            lines.push(format!("ssh-ed25519 {blob} {}", self.comment));
        }
        for line in &lines {
            s.add_key(
                &cli,
                "boss",
                line.as_bytes(),
                Some(&self.key_title),
                Some(soon),
            )
            .await
            .unwrap();
        }

        s.create_server(
            &cli,
            &self.server,
            Some(&self.hostname),
            Some(&self.description),
        )
        .await
        .unwrap();
        s.create_grant(
            &cli,
            &self.server,
            NewGrant {
                username: "boss".into(),
                login: self.login.clone(),
                key_id: None,
                options: Some(self.options.clone()),
                expires_at: Some(soon),
            },
        )
        .await
        .unwrap();

        s.create_group(
            &cli,
            Kind::Users,
            NewGroup {
                name: self.group.clone(),
                description: Some(self.group_description.clone()),
                owners: None,
            },
        )
        .await
        .unwrap();
        for member in ["boss", self.username.as_str()] {
            s.set_group_member(&cli, Kind::Users, &self.group, member, true)
                .await
                .unwrap();
        }
        s.create_group(
            &cli,
            Kind::Servers,
            NewGroup {
                name: self.server_group.clone(),
                description: Some(self.server_group_description.clone()),
                owners: None,
            },
        )
        .await
        .unwrap();
        s.set_group_member(&cli, Kind::Servers, &self.server_group, &self.server, true)
            .await
            .unwrap();
        s.create_group_grant(
            &cli,
            GroupGrantTarget::ServerGroup(&self.server_group),
            NewGroupGrant {
                grantee: GrantFor::Group(self.group.clone()),
                login: "deploy".into(),
                options: None,
                expires_at: None,
            },
        )
        .await
        .unwrap();

        let member_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = $1")
            .bind(&self.username)
            .fetch_one(pool)
            .await
            .unwrap();
        let member = Ctx {
            caller: Caller::User {
                id: member_id,
                username: self.username.clone(),
                role: Role::Member,
            },
            request_id: None,
            session: None,
        };
        s.create_access_request(
            &member,
            NewAccessRequest {
                server: Some(self.server.clone()),
                login: self.login.clone(),
                duration_hours: 2,
                reason: self.reason.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();

        let elsewhere = corpus()
            .into_iter()
            .find(|c| c.file == "valid/ed25519.pub")
            .unwrap()
            .sha256;
        s.add_to_blocklist(
            &cli,
            BlockTarget::Fingerprint(elsewhere),
            &self.block_reason,
        )
        .await
        .unwrap();
        s.create_token_for(&cli, "boss", &self.token_name, None)
            .await
            .unwrap();
        s.create_server_token(&cli, &self.server, Some(&self.token_name), None)
            .await
            .unwrap();
        policy.min_rsa_bits = 3072;
        s.set_policy(&cli, policy).await.unwrap();
    }
}

/// What one page looks like at one width: the page's own horizontal scroll, the tables that
/// scroll sideways inside the page (their wrapper's width and the table's), and which of the
/// long values it should show cannot be found in full (text, a title, or a field's value).
#[derive(Debug, serde::Deserialize)]
struct Fit {
    scroll_width: i64,
    inner_width: i64,
    wide_tables: Vec<(String, i64, i64)>,
    /// The innermost elements that stick out on the right (outside a scrolling table).
    sticking_out: Vec<String>,
    missing: Vec<String>,
}

async fn fit(b: &Client, values: &[&str]) -> Fit {
    let answer = b
        .execute(
            r##"const [values] = arguments;
            const fields = [...document.querySelectorAll("textarea, input")];
            const titled = [...document.querySelectorAll("[title]")];
            const found = (v) => document.body.textContent.includes(v)
                || titled.some((e) => e.title.includes(v))
                || fields.some((e) => e.value.includes(v));
            const wide_tables = [...document.querySelectorAll(".table-wrap")]
                .filter((w) => w.scrollWidth > w.clientWidth)
                .map((w) => [w.querySelector("table")?.id || "table", w.clientWidth, w.scrollWidth]);
            const scrolled = (e) => {
                for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) {
                    if (getComputedStyle(p).overflowX !== "visible") return true;
                }
                return false;
            };
            const out = [...document.body.querySelectorAll("*")].filter((e) =>
                e.getBoundingClientRect().right > window.innerWidth + 1 && !scrolled(e));
            const sticking_out = out.filter((e) => !out.some((o) => o !== e && e.contains(o)))
                .slice(0, 5)
                .map((e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "")
                    + (e.className ? "." + e.className : ""));
            return {
                sticking_out,
                scroll_width: document.documentElement.scrollWidth,
                inner_width: window.innerWidth,
                wide_tables,
                missing: values.filter((v) => !found(v)).map((v) => v.slice(0, 30) + "…"),
            };"##,
            vec![json!(values)],
        )
        .await
        .unwrap();
    serde_json::from_value(answer).unwrap()
}

/// Issue 20, "the UI holds up with real data": with 1,024-character values without blanks, a
/// 16384-bit key and 200 keys for one user, no page scrolls sideways at 1280 or 390 px, and
/// every long value can still be read or copied in full. Screenshots of every page at both
/// widths (`docs/screenshots/` holds a copy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_values_a_16384_bit_key_and_200_keys_keep_every_page_usable_at_1280_and_390_px() {
    let portal = portal().await;
    let s = Services::new(portal.db.pool.clone());
    let h = Hostile::new();
    h.store(&s, &portal.db.pool).await;

    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let b = driver.browser(profile.path()).await;
    let shots = Shots::new("real-data");
    let base = &portal.base;
    sign_in(&b, base, "boss").await;

    let server = h.server.as_str();
    let pages: Vec<(&str, String, Vec<&str>)> = vec![
        ("dashboard", "/".into(), vec![&h.key_title]),
        (
            "keys",
            "/users/boss/keys".into(),
            vec![&h.key_title, &h.comment, &h.rsa_blob, &h.rsa_fingerprint],
        ),
        (
            "my-access",
            "/users/boss/access".into(),
            vec![server, &h.login, &h.options],
        ),
        (
            "users",
            "/users".into(),
            vec![&h.username, &h.display_name, &h.email],
        ),
        (
            "user",
            format!("/users/{}", h.username),
            vec![&h.username, &h.display_name, &h.email],
        ),
        (
            "servers",
            "/servers".into(),
            vec![server, &h.hostname, &h.description],
        ),
        (
            "server",
            format!("/servers/{server}"),
            vec![server, &h.hostname, &h.description, &h.login, &h.options],
        ),
        (
            "server-access",
            format!("/servers/{server}/access"),
            vec![server, &h.login, &h.options],
        ),
        (
            "groups",
            "/groups".into(),
            vec![
                &h.group,
                &h.group_description,
                &h.server_group,
                &h.server_group_description,
                &h.username,
            ],
        ),
        (
            "access-requests",
            "/access-requests".into(),
            vec![&h.username, server, &h.login, &h.reason],
        ),
        ("audit", "/audit".into(), vec![&h.token_name, server]),
        ("policy", "/policy".into(), vec![]),
        ("blocklist", "/blocklist".into(), vec![&h.block_reason]),
        ("tokens", "/tokens".into(), vec![&h.token_name]),
    ];

    let mut problems = Vec::new();
    for (width, height) in [(1280, 900), (390, 844)] {
        b.set_window_size(width, height).await.unwrap();
        for (n, (name, path, values)) in pages.iter().enumerate() {
            b.goto(&format!("{base}{path}")).await.unwrap();
            text_of(&b, "main h1").await;
            shots
                .take(&b, &format!("{:02}-{name}-{width}", n + 1))
                .await;
            let fit = fit(&b, values).await;
            assert_eq!(
                fit.inner_width,
                i64::from(width),
                "the window is {width} px wide"
            );
            if fit.scroll_width > fit.inner_width {
                problems.push(format!(
                    "{name} at {width} px: the page is {} px wide ({:?})",
                    fit.scroll_width, fit.sticking_out
                ));
            }
            // At 1280 px every table fits; narrower, a table may scroll inside its wrapper.
            if width == 1280 && !fit.wide_tables.is_empty() {
                problems.push(format!(
                    "{name} at {width} px: wide tables {:?}",
                    fit.wide_tables
                ));
            }
            if width < 1280 && !fit.wide_tables.is_empty() {
                println!(
                    "{name} at {width} px: tables scroll inside the page: {:?}",
                    fit.wide_tables
                );
            }
            if !fit.missing.is_empty() {
                problems.push(format!(
                    "{name} at {width} px: not in full: {:?}",
                    fit.missing
                ));
            }
        }
    }

    // On a phone, the 16384-bit key's whole line (and so its comment) unfolds on the keys page,
    // in a read-only field that fits the screen.
    b.goto(&format!("{base}/users/boss/keys")).await.unwrap();
    // The keys page lists the oldest first: the 16384-bit key was added first.
    let rsa_row = "#keys tbody tr:first-child details.blob";
    click(&b, &format!("{rsa_row} summary")).await;
    let field = b
        .wait()
        .for_element(Locator::Css(&format!("{rsa_row}[open] textarea")))
        .await
        .unwrap();
    assert!(field.is_displayed().await.unwrap());
    let line = field.prop("value").await.unwrap().unwrap_or_default();
    assert_eq!(line, format!("ssh-rsa {} {}", h.rsa_blob, h.comment));
    let opened = fit(&b, &[]).await;
    if opened.scroll_width > opened.inner_width {
        problems.push(format!(
            "keys at 390 px with a public key unfolded: the page is {} px wide",
            opened.scroll_width
        ));
    }
    shots.take(&b, "15-key-unfolded-390").await;

    // The audit log: each event's detail as key/value rows, the raw JSON one click away.
    b.goto(&format!("{base}/audit")).await.unwrap();
    let audit = b
        .execute(
            r##"const rows = document.querySelectorAll("#audit dl.detail dt").length;
            const raw = [...document.querySelectorAll("#audit details")]
                .filter((d) => d.querySelector("summary")?.textContent.includes("raw JSON")
                    && d.querySelector("pre")).length;
            const policy = [...document.querySelectorAll("#audit dl.detail dt")]
                .some((dt) => dt.textContent.includes("min_rsa_bits"));
            return [rows, raw, policy];"##,
            vec![],
        )
        .await
        .unwrap();
    let (rows, raw, nested) = (audit[0].as_i64(), audit[1].as_i64(), audit[2].as_bool());
    if !(rows > Some(0) && raw > Some(0) && nested == Some(true)) {
        problems.push(format!(
            "audit: {rows:?} detail rows, {raw:?} raw JSON toggles, nested policy row: {nested:?}"
        ));
    }
    b.close().await.unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
}
