//! Configuration: one struct per command, parsed by clap from flags or environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where the data lives. With no `DATABASE_URL`, keyportal runs its own PostgreSQL cluster
/// under `data_dir`.
#[derive(clap::Args, Debug, Clone)]
pub struct DatabaseConfig {
    /// PostgreSQL URL; when unset, a private cluster under the data directory is used.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Directory for keyportal's own data (the private PostgreSQL cluster lives in it).
    #[arg(long, env = "KEYPORTAL_DATA_DIR", default_value = "./keyportal-data")]
    pub data_dir: PathBuf,
    /// As root: the system account the private cluster runs as (created when missing). Never
    /// `nobody`, `postgres`, or the account sshd runs `fetch-keys` as.
    #[arg(long, env = "KEYPORTAL_CLUSTER_ACCOUNT", default_value = crate::db::private_cluster::DEFAULT_ACCOUNT)]
    pub cluster_account: String,
    /// Directory holding PostgreSQL's server programs (initdb, pg_ctl); found automatically when unset.
    #[arg(long, env = "KEYPORTAL_PG_BIN")]
    pub pg_bin: Option<PathBuf>,
    /// Most database connections this process opens.
    #[arg(long, env = "KEYPORTAL_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub max_connections: u32,
}

/// Streaming replicas that serve the login path's reads.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ReadReplicaConfig {
    /// PostgreSQL URL of a read replica (a streaming standby of the primary). Repeat the flag,
    /// or separate URLs with commas in the variable. `authorized_keys` and `fingerprint=`
    /// lookups go to a replica that has every revocation and is within the lag bound; all else
    /// goes to the primary.
    #[arg(
        long = "database-read-url",
        env = "KEYPORTAL_DATABASE_READ_URL",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub read_urls: Vec<String>,
    /// How far (WAL bytes) a replica may be behind the primary and still serve logins. It
    /// bounds how long a new key or grant can be missing from a replica's answers; revocations
    /// never wait on it.
    #[arg(long, env = "KEYPORTAL_REPLICA_MAX_LAG_BYTES", default_value_t = 1024 * 1024)]
    pub replica_max_lag_bytes: u64,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ServeConfig {
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub replicas: ReadReplicaConfig,
    /// Address and port to listen on.
    #[arg(long, env = "KEYPORTAL_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Requests that take longer are answered 503 (seconds).
    #[arg(long, env = "KEYPORTAL_REQUEST_TIMEOUT", default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "KEYPORTAL_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// The address people and servers reach this portal at (e.g. https://keys.example.com).
    /// It appears in the sshd setup shown for each server; with https the session cookie is
    /// marked Secure.
    #[arg(long, env = "KEYPORTAL_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Hours between shared-prime scans of every stored RSA modulus (batch GCD; one process at
    /// a time); 0 turns the schedule off (the CLI and the admin action still work).
    #[arg(long, env = "KEYPORTAL_SHARED_PRIME_SCAN_HOURS", default_value_t = 24)]
    pub shared_prime_scan_hours: u32,
    /// A browser session unused for this many minutes ends.
    #[arg(long, env = "KEYPORTAL_SESSION_IDLE_MINUTES", default_value_t = 60)]
    pub session_idle_minutes: u32,
    /// A browser session ends this many hours after sign-in, used or not.
    #[arg(long, env = "KEYPORTAL_SESSION_MAX_HOURS", default_value_t = 12)]
    pub session_max_hours: u32,
    #[command(flatten)]
    pub oidc: OidcConfig,
    #[command(flatten)]
    pub ca: CaConfig,
    #[command(flatten)]
    pub notify: NotifyConfig,
}

/// Notifications by email and webhook (see the README, "Notifications"); off unless an SMTP
/// URL or a webhook URL is set.
#[derive(clap::Args, Clone, Default)]
pub struct NotifyConfig {
    /// The SMTP server: `smtp://host:port` (plain), `smtp://host:587?tls=required` (STARTTLS)
    /// or `smtps://host:465` (TLS); `user:password@` before the host to log in. Prefer the
    /// variable to the flag (a flag shows in the process list).
    #[arg(long, env = "KEYPORTAL_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The sender of the notices, `keyportal <keys@example.com>` or a bare address.
    #[arg(long, env = "KEYPORTAL_SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// PEM file of CA certificates to trust for the SMTP server's TLS besides the system's
    /// (an internal CA).
    #[arg(long, env = "KEYPORTAL_SMTP_CA_FILE")]
    pub smtp_ca_file: Option<std::path::PathBuf>,
    /// A chat tool's incoming webhook: each notice is POSTed to it as JSON.
    #[arg(long, env = "KEYPORTAL_WEBHOOK_URL", hide_env_values = true)]
    pub webhook_url: Option<String>,
    /// Seconds between notification rounds of `serve` (one process sends at a time); 0 turns
    /// the schedule off (`keyportal notify run` still works).
    #[arg(long, env = "KEYPORTAL_NOTIFY_INTERVAL", default_value_t = 300)]
    pub notify_interval: u64,
}

/// The URLs may hold a password or a token: they are shown redacted.
impl std::fmt::Debug for NotifyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyConfig")
            .field(
                "smtp_url",
                &self.smtp_url.as_deref().map(crate::notify::redact_url),
            )
            .field("smtp_from", &self.smtp_from)
            .field("smtp_ca_file", &self.smtp_ca_file)
            .field(
                "webhook_url",
                &self.webhook_url.as_deref().map(crate::notify::redact_url),
            )
            .field("notify_interval", &self.notify_interval)
            .finish()
    }
}

impl NotifyConfig {
    /// The transports configured: a mailer if an SMTP URL is set (it then needs a sender), a
    /// webhook if its URL is set. Empty values count as unset.
    pub fn transports(
        &self,
    ) -> Result<
        (
            Option<crate::notify::Mailer>,
            Option<crate::notify::Webhook>,
        ),
        String,
    > {
        let set = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        let mailer = match (set(&self.smtp_url), set(&self.smtp_from)) {
            (Some(url), Some(from)) => {
                let ca = match &self.smtp_ca_file {
                    Some(path) => Some((
                        path.display().to_string(),
                        std::fs::read(path).map_err(|e| {
                            format!("KEYPORTAL_SMTP_CA_FILE {}: {e}", path.display())
                        })?,
                    )),
                    None => None,
                };
                let ca = ca.as_ref().map(|(p, pem)| (p.as_str(), pem.as_slice()));
                Some(crate::notify::Mailer::with_ca(&url, &from, ca).map_err(|e| e.to_string())?)
            }
            (Some(_), None) => {
                return Err(
                    "KEYPORTAL_SMTP_URL is set but KEYPORTAL_SMTP_FROM (the sender address) is not"
                        .into(),
                )
            }
            (None, Some(_)) => {
                return Err("KEYPORTAL_SMTP_FROM is set but KEYPORTAL_SMTP_URL is not".into())
            }
            (None, None) => None,
        };
        let webhook = match set(&self.webhook_url) {
            Some(url) => Some(crate::notify::Webhook::new(&url).map_err(|e| e.to_string())?),
            None => None,
        };
        Ok((mailer, webhook))
    }
}

/// The certificate authorities' key files.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CaConfig {
    /// The user CA's private key (OpenSSH format, Ed25519, mode 0600), shared by every
    /// instance; created on first start when missing. Default: <data dir>/ca/user_ca.
    #[arg(long, env = "KEYPORTAL_USER_CA_KEY_FILE")]
    pub user_ca_key_file: Option<PathBuf>,
    /// The host CA's private key, likewise. Default: <data dir>/ca/host_ca.
    #[arg(long, env = "KEYPORTAL_HOST_CA_KEY_FILE")]
    pub host_ca_key_file: Option<PathBuf>,
    /// Public key files of older user CAs still trusted during a rotation (comma-separated):
    /// published beside the signing CA in GET /api/v1/ca/user, and their certificates' serials
    /// listed in the KRL.
    #[arg(long, env = "KEYPORTAL_USER_CA_PUBLISHED", value_delimiter = ',')]
    pub user_ca_published: Vec<PathBuf>,
}

impl CaConfig {
    /// The CAs, created in `data_dir` on first use.
    pub fn load(
        &self,
        data_dir: &std::path::Path,
    ) -> Result<crate::ca::Authorities, crate::ca::CaError> {
        let user = self
            .user_ca_key_file
            .clone()
            .unwrap_or_else(|| data_dir.join("ca").join("user_ca"));
        let host = self
            .host_ca_key_file
            .clone()
            .unwrap_or_else(|| data_dir.join("ca").join("host_ca"));
        crate::ca::Authorities::load(&user, &host, &self.user_ca_published)
    }
}

/// Sign-in through the organisation's OpenID Provider; off unless an issuer is set.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct OidcConfig {
    /// The provider's issuer URL (discovery: <issuer>/.well-known/openid-configuration).
    #[arg(long, env = "KEYPORTAL_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    #[arg(long, env = "KEYPORTAL_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// The client secret. Prefer KEYPORTAL_OIDC_CLIENT_SECRET_FILE, which keeps it out of the
    /// process environment.
    #[arg(long, env = "KEYPORTAL_OIDC_CLIENT_SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<String>,
    /// A file holding the client secret (one line).
    #[arg(long, env = "KEYPORTAL_OIDC_CLIENT_SECRET_FILE")]
    pub oidc_client_secret_file: Option<PathBuf>,
    /// Scopes to ask for, comma-separated (`openid` is always asked for).
    #[arg(
        long,
        env = "KEYPORTAL_OIDC_SCOPES",
        default_value = "openid,profile,email"
    )]
    pub oidc_scopes: String,
    /// The name on the sign-in button ("Sign in with <name>"); default: the issuer's host.
    #[arg(long, env = "KEYPORTAL_OIDC_NAME")]
    pub oidc_name: Option<String>,
    #[arg(
        long,
        env = "KEYPORTAL_OIDC_USERNAME_CLAIM",
        default_value = "preferred_username"
    )]
    pub oidc_username_claim: String,
    #[arg(long, env = "KEYPORTAL_OIDC_NAME_CLAIM", default_value = "name")]
    pub oidc_name_claim: String,
    #[arg(long, env = "KEYPORTAL_OIDC_EMAIL_CLAIM", default_value = "email")]
    pub oidc_email_claim: String,
    #[arg(long, env = "KEYPORTAL_OIDC_GROUPS_CLAIM", default_value = "groups")]
    pub oidc_groups_claim: String,
    /// Members of this provider group are keyportal admins, others members. Unset: roles are
    /// managed in keyportal.
    #[arg(long, env = "KEYPORTAL_OIDC_ADMIN_GROUP")]
    pub oidc_admin_group: Option<String>,
    /// Minutes between checks of a signed-in user's account at the provider (0: every request).
    #[arg(long, env = "KEYPORTAL_OIDC_RECHECK_MINUTES", default_value_t = 5)]
    pub oidc_recheck_minutes: u32,
    /// A first provider sign-in whose username is an existing local account's links to it
    /// (off: refused). Only with a username claim the provider controls.
    #[arg(long, env = "KEYPORTAL_OIDC_LINK_EXISTING", default_value_t = false)]
    pub oidc_link_existing: bool,
}

impl OidcConfig {
    /// The provider's settings, `None` when no issuer is configured. `public_url` is where
    /// browsers reach this portal (the redirect URI is derived from it).
    pub fn settings(
        &self,
        public_url: Option<&str>,
    ) -> Result<Option<crate::oidc::OidcSettings>, String> {
        let Some(issuer) = self.oidc_issuer.clone().filter(|i| !i.is_empty()) else {
            return Ok(None);
        };
        let client_id = self
            .oidc_client_id
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or("KEYPORTAL_OIDC_ISSUER is set but KEYPORTAL_OIDC_CLIENT_ID is not")?;
        let public_url = public_url
            .map(|u| u.trim_end_matches('/').to_owned())
            .ok_or("KEYPORTAL_OIDC_ISSUER needs KEYPORTAL_PUBLIC_URL (the redirect URI is <public URL>/auth/oidc/callback)")?;
        let client_secret = match (&self.oidc_client_secret, &self.oidc_client_secret_file) {
            (Some(_), Some(_)) => return Err(
                "set KEYPORTAL_OIDC_CLIENT_SECRET or KEYPORTAL_OIDC_CLIENT_SECRET_FILE, not both"
                    .into(),
            ),
            (Some(s), None) => Some(s.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        format!("KEYPORTAL_OIDC_CLIENT_SECRET_FILE {}: {e}", path.display())
                    })?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        let label = self.oidc_name.clone().unwrap_or_else(|| {
            issuer
                .split("://")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .unwrap_or(&issuer)
                .to_owned()
        });
        Ok(Some(crate::oidc::OidcSettings {
            redirect_url: format!("{public_url}/auth/oidc/callback"),
            post_logout_url: format!("{public_url}/login"),
            issuer,
            client_id,
            client_secret,
            scopes: self
                .oidc_scopes
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            label,
            username_claim: self.oidc_username_claim.clone(),
            name_claim: self.oidc_name_claim.clone(),
            email_claim: self.oidc_email_claim.clone(),
            groups_claim: self.oidc_groups_claim.clone(),
            admin_group: self.oidc_admin_group.clone().filter(|g| !g.is_empty()),
            recheck: time::Duration::minutes(self.oidc_recheck_minutes.into()),
            link_existing: self.oidc_link_existing,
        }))
    }
}

impl ServeConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

/// Logging: `KEYPORTAL_LOG` is a tracing filter (`info`, `keyportal=debug,info`, ...).
#[derive(clap::Args, Debug, Clone)]
pub struct LogConfig {
    // PostgreSQL's notices ("relation already exists, skipping") are not news to an operator.
    #[arg(
        long = "log",
        env = "KEYPORTAL_LOG",
        default_value = "info,sqlx::postgres::notice=warn",
        global = true
    )]
    pub filter: String,
    /// `text` (human-readable) or `json` (one object per line).
    #[arg(
        long = "log-format",
        env = "KEYPORTAL_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub format: LogFormat,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}
