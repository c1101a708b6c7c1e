//! A real OpenID Provider for the tests: `tests/oidc_provider/provider.mjs` (panva's
//! oidc-provider) run with Node.js. Its npm packages are installed on first use
//! (`npm ci`, from the committed lock file).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const CLIENT_SECRET: &str = "keyportal-test-secret";

fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc_provider")
}

static INSTALL: Mutex<()> = Mutex::new(());

/// Installs the provider's packages once (a lock file keeps two test binaries from racing).
fn ensure_packages() {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = provider_dir();
    if dir.join("node_modules/oidc-provider/package.json").exists() {
        return;
    }
    let lock = std::fs::File::create(dir.join(".install.lock")).expect("install lock");
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock");
    if dir.join("node_modules/oidc-provider/package.json").exists() {
        return;
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .expect("the OIDC tests need Node.js and npm (apt-get install nodejs npm); .ci/run installs them");
    assert!(status.success(), "npm ci in tests/oidc_provider failed");
}

pub struct Idp {
    pub issuer: String,
    http: reqwest::Client,
    _child: Child,
}

impl Idp {
    /// A provider whose one client (`keyportal`) is registered for the portal at `portal`.
    pub async fn start(portal: &str) -> Idp {
        ensure_packages();
        let mut child = Command::new("node")
            .arg(provider_dir().join("provider.mjs"))
            .env("KP_REDIRECT_URI", format!("{portal}/auth/oidc/callback"))
            .env("KP_POST_LOGOUT_URI", format!("{portal}/login"))
            .env("KP_CLIENT_SECRET", CLIENT_SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node (the OIDC tests need Node.js: apt-get install nodejs npm)");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let mut lines = BufReader::new(stdout);
        lines
            .read_line(&mut line)
            .await
            .expect("provider's first line");
        // Kept reading: a closed pipe would kill the provider at its next line of output.
        tokio::spawn(async move {
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut lines, &mut sink).await;
        });
        let started: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("provider said {line:?}: {e}"));
        Idp {
            issuer: started["issuer"].as_str().expect("issuer").to_owned(),
            http: reqwest::Client::new(),
            _child: child,
        }
    }

    /// The portal's settings for this provider: groups claim, `keyportal-admins` as the admin
    /// group, and a re-check at every request.
    pub fn settings(&self, portal: &str) -> keyportal::oidc::OidcSettings {
        keyportal::oidc::OidcSettings {
            issuer: self.issuer.clone(),
            client_id: "keyportal".into(),
            client_secret: Some(CLIENT_SECRET.into()),
            redirect_url: format!("{portal}/auth/oidc/callback"),
            post_logout_url: format!("{portal}/login"),
            scopes: ["openid", "profile", "email", "groups"]
                .map(str::to_owned)
                .to_vec(),
            label: "Test IdP".into(),
            username_claim: "preferred_username".into(),
            name_claim: "name".into(),
            email_claim: "email".into(),
            groups_claim: "groups".into(),
            admin_group: Some("keyportal-admins".into()),
            recheck: time::Duration::ZERO,
            link_existing: false,
        }
    }

    /// Adds or replaces a person at the provider.
    pub async fn put_account(&self, id: &str, password: &str, groups: &[&str]) {
        let res = self
            .http
            .put(format!("{}/__test/accounts/{id}", self.issuer))
            .json(&serde_json::json!({
                "password": password,
                "name": format!("{id} at the IdP"),
                "email": format!("{id}@example.test"),
                "groups": groups,
            }))
            .send()
            .await
            .expect("idp control");
        assert_eq!(res.status(), 204);
    }

    /// A person whose ID token and userinfo carry no groups claim at all.
    pub async fn put_account_without_groups(&self, id: &str, password: &str) {
        let res = self
            .http
            .put(format!("{}/__test/accounts/{id}", self.issuer))
            .json(&serde_json::json!({ "password": password, "name": id, "email": format!("{id}@example.test") }))
            .send()
            .await
            .expect("idp control");
        assert_eq!(res.status(), 204);
    }

    pub async fn remove_account(&self, id: &str) {
        let res = self
            .http
            .delete(format!("{}/__test/accounts/{id}", self.issuer))
            .send()
            .await
            .expect("idp control");
        assert_eq!(res.status(), 204);
    }

    /// The next ID token the provider hands out is re-signed with one thing wrong (`mode`).
    pub async fn tamper_next_id_token(&self, mode: &str) {
        let res = self
            .http
            .post(format!("{}/__test/tamper", self.issuer))
            .json(&serde_json::json!({ "mode": mode }))
            .send()
            .await
            .expect("idp control");
        assert_eq!(res.status(), 204);
    }

    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http") {
            location.to_owned()
        } else {
            format!("{}{location}", self.issuer)
        }
    }

    /// The provider's side of a sign-in, from its authorization URL: the sign-in form is
    /// filled and consent implied. Returns the provider's redirect back to the portal (the
    /// callback URL), not yet followed.
    pub async fn sign_in(
        &self,
        b: &mut super::browser::Browser,
        authorize_url: &str,
        user: &str,
        password: &str,
    ) -> String {
        let mut url = authorize_url.to_owned();
        for _ in 0..12 {
            if !url.starts_with(&self.issuer) {
                return url;
            }
            let page = b.get_url(&url).await;
            match page.status {
                302 | 303 => url = self.absolute(page.location().expect("location")),
                200 if page.body.contains("idp-username") => {
                    let res = b
                        .post_form_url(&url, &[("username", user), ("password", password)])
                        .await;
                    assert!(
                        matches!(res.status, 302 | 303),
                        "the provider refused {user}: {} {}",
                        res.status,
                        res.body
                    );
                    url = self.absolute(res.location().expect("location"));
                }
                s => panic!("provider answered {s} at {url}: {}", page.body),
            }
        }
        panic!("the provider kept redirecting");
    }
}
