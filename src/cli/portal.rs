//! What every command that asks the portal from a server or a laptop shares (`fetch-keys`,
//! `fetch-principals`, `fetch-krl`, `cert`): the portal addresses and their transport rules,
//! the token file, asking several portals in order within one time budget, and the
//! last-known-good answer cache.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::syslog::{self, Severity, SyslogArgs};
use crate::telemetry::error_chain;

/// How to reach the portal.
#[derive(clap::Args, Debug, Clone)]
pub struct PortalArgs {
    /// The portal's base address, e.g. https://keys.example.com. Repeat it for several
    /// portals on one database: they are asked in order until one answers.
    #[arg(long, required = true)]
    pub portal: Vec<String>,
    /// File holding the API token; it must not be readable by group or others.
    #[arg(long)]
    pub token_file: PathBuf,
    /// Give up after this many seconds in all, every portal asked included.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
    /// Longest wait for one portal to accept the connection before the next is tried.
    #[arg(long, default_value_t = 2)]
    pub connect_timeout: u64,
    /// Allow a plain `http://` portal that is not on this machine. Anyone on the path then
    /// reads the token and can forge the answers; only for a network you fully trust.
    #[arg(long)]
    pub allow_insecure_http: bool,
}

/// Why asking failed; each variant says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Usage(String),
    #[error(
        "--portal {0:?} is plain HTTP to another machine: anyone on the path could read the \
         token and forge the portal's answers; use https, or pass \
         --allow-insecure-http if the network is fully trusted"
    )]
    InsecurePortal(String),
    #[error("token file {path}: {reason}")]
    TokenFile { path: String, reason: String },
    /// The portal could not be asked (network, timeout, 5xx, 429): a cache may stand in.
    #[error("the portal could not be reached: {0}")]
    Unreachable(String),
    /// The portal answered "no": the cache must not override it.
    #[error("the portal refused: {0}")]
    Refused(String),
}

/// A request to send to each portal in turn.
pub enum Ask<'a> {
    Get,
    /// A JSON body.
    Post(&'a serde_json::Value),
}

pub fn read_token(path: &Path) -> Result<String, FetchError> {
    let err = |reason: String| FetchError::TokenFile {
        path: path.display().to_string(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(err(format!(
            "mode {:04o} lets others read it; chmod 600 it (owned by the account that runs this)",
            meta.permissions().mode() & 0o7777
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let token = text.trim();
    if token.is_empty() || token.len() > 200 || token.contains(char::is_whitespace) {
        return Err(err("it does not hold one token".into()));
    }
    Ok(token.to_owned())
}

/// The address to ask: https, or plain http only to this machine (or when explicitly allowed),
/// since over plain http the token and the answer are open to anyone on the path.
pub fn portal_url(
    args: &PortalArgs,
    portal: &str,
    path: &[&str],
    query: &[(&str, &str)],
) -> Result<reqwest::Url, FetchError> {
    let mut url = reqwest::Url::parse(portal.trim_end_matches('/'))
        .map_err(|e| FetchError::Usage(format!("--portal {portal:?}: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if args.allow_insecure_http || is_loopback(&url) => {}
        "http" => return Err(FetchError::InsecurePortal(portal.to_owned())),
        other => {
            return Err(FetchError::Usage(format!(
                "--portal {portal:?}: scheme {other:?} is not supported; use https"
            )))
        }
    }
    url.path_segments_mut()
        .map_err(|()| FetchError::Usage(format!("--portal {portal:?} is not a base URL")))?
        .extend(path);
    if !query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in query {
            pairs.append_pair(k, v);
        }
    }
    Ok(url)
}

/// Every portal's address; all are checked before any is asked, since one plain-http portal
/// is a mistake to fix.
pub fn portal_urls(
    args: &PortalArgs,
    path: &[&str],
    query: &[(&str, &str)],
) -> Result<Vec<reqwest::Url>, FetchError> {
    args.portal
        .iter()
        .map(|p| portal_url(args, p, path, query))
        .collect()
}

/// 127.0.0.0/8, ::1 or `localhost`: traffic that never leaves this machine.
fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The first real answer of the portals, asked in order within one budget: a body, or a "no"
/// (`Refused`). `Unreachable` only when none answered; it says why for each.
pub async fn ask_portals(
    args: &PortalArgs,
    urls: Vec<reqwest::Url>,
    token: &str,
    ask: &Ask<'_>,
    user_agent: &str,
) -> Result<Vec<u8>, FetchError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    let mut failures = Vec::new();
    let count = urls.len();
    for (i, url) in urls.into_iter().enumerate() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            failures.push(format!(
                "{}: not asked, the {} s budget is spent",
                origin(&url),
                args.timeout
            ));
            continue;
        }
        // A portal that accepts but never answers gets its share, not the whole budget: the
        // portals not yet asked split what is left, and the last one gets all of it.
        let share = (left / u32::try_from(count - i).unwrap_or(1)).max(Duration::from_secs(1));
        let answer_within = share.min(left);
        let connect = answer_within.min(Duration::from_secs(args.connect_timeout.max(1)));
        let from = origin(&url);
        match ask_portal(url, token, ask, user_agent, answer_within, connect).await {
            Err(FetchError::Unreachable(why)) => failures.push(format!("{from}: {why}")),
            answer => return answer,
        }
    }
    Err(FetchError::Unreachable(failures.join("; ")))
}

/// `scheme://host:port` of a portal address, for messages (never the query).
fn origin(url: &reqwest::Url) -> String {
    url.origin().ascii_serialization()
}

/// One portal's answer.
async fn ask_portal(
    url: reqwest::Url,
    token: &str,
    ask: &Ask<'_>,
    user_agent: &str,
    timeout: Duration,
    connect_timeout: Duration,
) -> Result<Vec<u8>, FetchError> {
    const MAX_BODY: usize = 64 * 1024 * 1024;
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(user_agent)
        .build()
        .map_err(|e| FetchError::Usage(format!("cannot set up the HTTP client: {e}")))?;
    let request = match ask {
        Ask::Get => client.get(url),
        Ask::Post(body) => client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string()),
    };
    let mut res = request
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| FetchError::Unreachable(error_chain(&e)))?;
    let status = res.status();
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(FetchError::Unreachable(format!(
            "the portal answered {status}"
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| FetchError::Unreachable(error_chain(&e)))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(FetchError::Unreachable("the answer is too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        return Err(FetchError::Refused(format!(
            "the portal answered {status}{}",
            problem_detail(&body)
                .map(|d| format!(": {d}"))
                .unwrap_or_else(|| " (check --server and the token)".into())
        )));
    }
    Ok(body)
}

/// The `detail` of a problem document, so a refusal says what the portal said.
fn problem_detail(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let detail = v.get("detail")?.as_str()?;
    // One line, bounded: it goes to a terminal or a log.
    Some(
        detail
            .chars()
            .filter(|c| !c.is_control())
            .take(300)
            .collect(),
    )
}

/// The last good answers, kept so a server can go on letting people in for a bounded time
/// while no portal answers. Off unless the operator gives a directory.
pub struct AnswerCache<'a> {
    pub dir: &'a Path,
    /// Oldest answer (seconds) that may still be used.
    pub max_age: u64,
}

impl AnswerCache<'_> {
    /// Where the answer for these request parts is kept.
    fn file(&self, parts: &[&str]) -> PathBuf {
        let mut h = Sha256::new();
        for part in parts {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let name: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(name)
    }

    /// A cache directory is used only if it is this user's and nobody else may write to it.
    fn check_dir(&self) -> Result<(), String> {
        let dir = self.dir;
        let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if !meta.is_dir() {
            return Err(format!("{} is not a directory", dir.display()));
        }
        if meta.uid() != nix::unistd::geteuid().as_raw() || meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "{} must belong to this user with mode 0700",
                dir.display()
            ));
        }
        Ok(())
    }

    pub fn store(&self, parts: &[&str], answer: &str) -> Result<(), String> {
        self.check_dir()?;
        let file = self.file(parts);
        crate::files::write_atomically(&file, answer.as_bytes(), 0o600, true)
            .map(|_| ())
            .map_err(|e| format!("cannot write the cache {}: {e}", file.display()))
    }

    pub fn forget(&self, parts: &[&str]) {
        let _ = std::fs::remove_file(self.file(parts));
    }

    /// The cached answer, if there is one younger than the maximum age; its age in seconds.
    pub fn get(&self, parts: &[&str]) -> Result<(Vec<u8>, u64), String> {
        self.check_dir()?;
        let file = self.file(parts);
        let meta = std::fs::metadata(&file).map_err(|_| "no cached answer".to_owned())?;
        let age = SystemTime::now()
            .duration_since(meta.modified().map_err(|e| e.to_string())?)
            .unwrap_or_default()
            .as_secs();
        if age > self.max_age {
            return Err(format!(
                "the cached answer is {age} s old, over --cache-max-age {}",
                self.max_age
            ));
        }
        Ok((std::fs::read(&file).map_err(|e| e.to_string())?, age))
    }
}

/// Runs `work` on a small runtime of its own (these commands run inside sshd's login or from
/// cron); `None`, said on standard error, if the runtime cannot start.
pub fn block_on<T>(command: &str, work: impl std::future::Future<Output = T>) -> Option<T> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt.block_on(work)),
        Err(e) => {
            eprintln!("keyportal {command}: cannot start: {e}");
            None
        }
    }
}

/// The last-known-good cache of a server-side command.
#[derive(clap::Args, Debug, Clone)]
pub struct CacheArgs {
    /// Keep the last good answer per request here, for use while the portal is down.
    /// Off unless given. The directory must belong to this user and be private (0700).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Oldest cached answer (seconds) that may still be used while the portal is down.
    #[arg(long, default_value_t = 3600)]
    pub cache_max_age: u64,
}

impl CacheArgs {
    pub fn cache(&self) -> Option<AnswerCache<'_>> {
        self.cache_dir.as_deref().map(|dir| AnswerCache {
            dir,
            max_age: self.cache_max_age,
        })
    }
}

/// Asks the portals; on an answer, keeps it in the cache (after `check` made it what is
/// printed); when none answers, the cache stands in (checked again); a "no" clears it.
pub async fn ask_with_cache(
    report: &Report<'_>,
    conn: &PortalArgs,
    cache: &CacheArgs,
    urls: Vec<reqwest::Url>,
    parts: &[&str],
    check: impl Fn(&[u8]) -> String,
) -> Result<String, FetchError> {
    let token = read_token(&conn.token_file)?;
    let command = report.command;
    let agent = format!("keyportal-{command}/{}", env!("CARGO_PKG_VERSION"));
    let cache = cache.cache();
    match ask_portals(conn, urls, &token, &Ask::Get, &agent).await {
        Ok(body) => {
            let answer = check(&body);
            if let Some(cache) = &cache {
                if let Err(e) = cache.store(parts, &answer) {
                    eprintln!("keyportal {command}: cache not updated: {e}");
                }
            }
            Ok(answer)
        }
        Err(FetchError::Unreachable(why)) => match &cache {
            None => Err(FetchError::Unreachable(why)),
            Some(cache) => match cache.get(parts) {
                Ok((text, age)) => {
                    report.warning(
                        "cached",
                        &format!("{why}; using the answer cached {age} s ago"),
                    );
                    // The cache is re-checked like a portal answer.
                    Ok(check(&text))
                }
                Err(e) => Err(FetchError::Unreachable(format!("{why}; no cache: {e}"))),
            },
        },
        Err(e) => {
            if let Some(cache) = &cache {
                cache.forget(parts);
            }
            Err(e)
        }
    }
}

/// Says what became of one login's question: on stderr (sshd logs it at its own level) and,
/// when the portal could not give the answer, one syslog line; nothing for an ordinary answer.
pub struct Report<'a> {
    pub command: &'a str,
    /// `login=... server=...`: which login on which server.
    pub subject: String,
    pub syslog: &'a SyslogArgs,
}

impl Report<'_> {
    fn line(&self, severity: Severity, outcome: &str, detail: &str) {
        let command = self.command;
        eprintln!("keyportal {command}: {detail}");
        let message = format!("{command}: outcome={outcome} {}: {detail}", self.subject);
        if let Err(e) = syslog::send(&self.syslog.syslog_socket, severity, "keyportal", &message) {
            eprintln!(
                "keyportal {command}: cannot write to syslog at {}: {e}",
                self.syslog.syslog_socket.display()
            );
        }
    }

    /// The login was answered from the cache: it works, but the portal is not being asked.
    pub fn warning(&self, outcome: &str, detail: &str) {
        self.line(Severity::Warning, outcome, detail);
    }

    /// The login got nothing (fail closed).
    pub fn error(&self, outcome: &str, detail: &str) {
        self.line(Severity::Error, outcome, detail);
    }
}

/// The `outcome=` of a failure: a timeout is told apart, as the fix differs (a slow portal or
/// network, not a refusal).
fn failure_outcome(e: &FetchError) -> &'static str {
    match e {
        FetchError::Unreachable(why)
            if why.contains("timed out") || why.contains("budget is spent") =>
        {
            "timed_out"
        }
        FetchError::Unreachable(_) => "unreachable",
        FetchError::Refused(_) => "refused",
        FetchError::Usage(_) | FetchError::InsecurePortal(_) | FetchError::TokenFile { .. } => {
            "misconfigured"
        }
    }
}

/// Prints the answer, or says why there is none; exit status 0 or 1.
pub fn print_or_fail(
    report: &Report<'_>,
    answer: Result<String, FetchError>,
    what: &str,
) -> ExitCode {
    let command = report.command;
    match answer {
        Ok(lines) => {
            let mut out = std::io::stdout().lock();
            match out.write_all(lines.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("keyportal {command}: cannot write the {what}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            report.error(
                failure_outcome(&e),
                &format!("{e}; no {what} given (fail closed)"),
            );
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(portal: &str, allow_insecure_http: bool) -> PortalArgs {
        PortalArgs {
            portal: vec![portal.into()],
            token_file: PathBuf::from("/nonexistent"),
            timeout: 1,
            connect_timeout: 1,
            allow_insecure_http,
        }
    }

    #[test]
    fn plain_http_is_allowed_only_to_this_machine_or_by_flag() {
        let url = |p: &str, allow| portal_url(&args(p, allow), p, &["api"], &[]);
        for ok in [
            "https://keys.example.com",
            "http://127.0.0.1:8080",
            "http://127.9.8.7",
            "http://[::1]:8080/",
            "http://localhost:1",
            "http://LOCALHOST",
        ] {
            assert!(url(ok, false).is_ok(), "{ok}");
        }
        for refused in [
            "http://keys.example.com",
            "http://192.0.2.1:1",
            "http://[::ffff:127.0.0.1]",
            "http://localhost.example.com",
            "http://128.0.0.1",
        ] {
            assert!(
                matches!(url(refused, false), Err(FetchError::InsecurePortal(_))),
                "{refused}"
            );
            assert!(url(refused, true).is_ok(), "{refused}");
        }
        assert!(matches!(
            url("ftp://keys.example.com", true),
            Err(FetchError::Usage(_))
        ));
    }

    #[test]
    fn path_segments_and_query_are_escaped() {
        let u = portal_url(
            &args("https://k.example.com/base/", false),
            "https://k.example.com/base/",
            &["api", "v1", "servers", "a/b", "principals"],
            &[("key_id", "keyportal:al ice:1&x=2")],
        )
        .unwrap();
        assert_eq!(
            u.as_str(),
            "https://k.example.com/base/api/v1/servers/a%2Fb/principals?key_id=keyportal%3Aal+ice%3A1%26x%3D2"
        );
    }
}
