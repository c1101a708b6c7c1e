//! `keyportal fetch-keys`: what sshd runs as `AuthorizedKeysCommand` on a server.
//!
//! It asks the portal for the authorized_keys lines of one login (and one key, with `%f`),
//! checks every line with the validator, and prints only lines that pass. It fails closed:
//! when the portal cannot be asked, nothing is printed and the exit status is 1, unless the
//! operator opted into a last-known-good cache (`--cache-dir`), whose entries are used only
//! while younger than `--cache-max-age`. An answer from the portal that says "no" (unknown or
//! revoked token, unknown server) is never overridden by the cache.
//!
//! `--portal` may be repeated: the portals are asked in order within one time budget
//! (`--timeout`, kept under sshd's patience), and the first real answer wins, a "no" included.
//! Only when none answers does the cache stand in.

use crate::telemetry::error_chain;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::domain::{LoginName, ServerName};
use crate::keys::{authorized_keys_verdicts, Algorithm, AuthorizedKeysLine, Policy};

#[derive(clap::Args, Debug)]
pub struct FetchKeysArgs {
    /// The portal's base address, e.g. https://keys.example.com. Repeat it for several
    /// portals on one database: they are asked in order until one answers.
    #[arg(long, required = true)]
    pub portal: Vec<String>,
    /// This server's name in the portal.
    #[arg(long)]
    pub server: String,
    /// File holding this server's token; it must not be readable by group or others.
    #[arg(long)]
    pub token_file: PathBuf,
    /// Give up after this many seconds in all, every portal asked included.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
    /// Longest wait for one portal to accept the connection before the next is tried.
    #[arg(long, default_value_t = 2)]
    pub connect_timeout: u64,
    /// Keep the last good answer per login and key here, for use while the portal is down.
    /// Off unless given. The directory must belong to this user and be private (0700).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Oldest cached answer (seconds) that may still be used while the portal is down.
    #[arg(long, default_value_t = 3600)]
    pub cache_max_age: u64,
    /// The login sshd asks about (`%u`).
    pub login: String,
    /// The SHA256 fingerprint of the offered key (`%f`), to ask for just that key.
    pub fingerprint: Option<String>,
    /// Allow a plain `http://` portal that is not on this machine. Anyone on the path then
    /// reads the server token and can inject keys; only for a network you fully trust.
    #[arg(long)]
    pub allow_insecure_http: bool,
}

/// Why fetching failed; each variant says what to fix.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("{0}")]
    Usage(String),
    #[error(
        "--portal {0:?} is plain HTTP to another machine: anyone on the path could read the \
         server token and inject any key for any login; use https, or pass \
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

/// The lines the portal may send are checked with a policy that only keeps what sshd itself
/// would accept; the portal has already applied its own, stricter one.
fn line_policy() -> Policy {
    Policy {
        min_rsa_bits: 1024,
        allowed_algorithms: Algorithm::ALL.into_iter().collect(),
        ..Policy::default()
    }
}

/// Only the lines that are valid authorized_keys entries (for `fingerprint`, if given),
/// re-rendered from what the validator parsed.
pub fn valid_lines(body: &[u8], fingerprint: Option<&str>) -> (String, usize) {
    let policy = line_policy();
    let Ok(verdicts) = authorized_keys_verdicts(body, &policy) else {
        return (String::new(), 1);
    };
    let mut out = String::new();
    let mut dropped = 0;
    for v in verdicts {
        match v.result {
            Ok(k) if fingerprint.is_none_or(|f| f == k.fingerprint_sha256()) => {
                AuthorizedKeysLine {
                    options: &k.options().to_string(),
                    expiry: None,
                    public_key: k.public_key(),
                    comment: &[k.comment()],
                }
                .write_to(&mut out);
            }
            _ => dropped += 1,
        }
    }
    (out, dropped)
}

fn read_token(path: &Path) -> Result<String, FetchError> {
    let err = |reason: String| FetchError::TokenFile {
        path: path.display().to_string(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(err(format!(
            "mode {:04o} lets others read it; chmod 600 it (owned by the AuthorizedKeysCommandUser)",
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
fn portal_url(args: &FetchKeysArgs, portal: &str) -> Result<reqwest::Url, FetchError> {
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
        .extend(["api", "v1", "servers", &args.server, "authorized_keys"]);
    url.query_pairs_mut().append_pair("login", &args.login);
    if let Some(fp) = &args.fingerprint {
        url.query_pairs_mut().append_pair("fingerprint", fp);
    }
    Ok(url)
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
async fn ask_portals(
    args: &FetchKeysArgs,
    urls: Vec<reqwest::Url>,
    token: &str,
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
        match ask_portal(url, token, answer_within, connect).await {
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

/// One portal's answer for this login (and key).
async fn ask_portal(
    url: reqwest::Url,
    token: &str,
    timeout: Duration,
    connect_timeout: Duration,
) -> Result<Vec<u8>, FetchError> {
    const MAX_BODY: usize = 64 * 1024 * 1024;
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("keyportal-fetch-keys/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FetchError::Usage(format!("cannot set up the HTTP client: {e}")))?;
    let mut res = client
        .get(url)
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
    if !status.is_success() {
        return Err(FetchError::Refused(format!(
            "the portal answered {status} (check --server and the token)"
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
    Ok(body)
}

/// Where the last good answer for this server, login and key is kept.
fn cache_file(dir: &Path, args: &FetchKeysArgs) -> PathBuf {
    let mut h = Sha256::new();
    for part in [
        args.server.as_str(),
        args.login.as_str(),
        args.fingerprint.as_deref().unwrap_or(""),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let name: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    dir.join(name)
}

/// A cache directory is used only if it is this user's and nobody else may write to it.
fn check_cache_dir(dir: &Path) -> Result<(), String> {
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

fn store_cache(dir: &Path, args: &FetchKeysArgs, lines: &str) -> Result<(), String> {
    check_cache_dir(dir)?;
    let file = cache_file(dir, args);
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, lines)
        .and_then(|()| std::fs::rename(&tmp, &file))
        .map_err(|e| format!("cannot write the cache {}: {e}", file.display()))
}

fn forget_cache(dir: &Path, args: &FetchKeysArgs) {
    let _ = std::fs::remove_file(cache_file(dir, args));
}

/// The cached answer, if there is one younger than the maximum age; its age in seconds.
fn cached(dir: &Path, args: &FetchKeysArgs) -> Result<(String, u64), String> {
    check_cache_dir(dir)?;
    let file = cache_file(dir, args);
    let meta = std::fs::metadata(&file).map_err(|_| "no cached answer".to_owned())?;
    let age = SystemTime::now()
        .duration_since(meta.modified().map_err(|e| e.to_string())?)
        .unwrap_or_default()
        .as_secs();
    if age > args.cache_max_age {
        return Err(format!(
            "the cached answer is {age} s old, over --cache-max-age {}",
            args.cache_max_age
        ));
    }
    let text = std::fs::read(&file).map_err(|e| e.to_string())?;
    // The cache is re-checked like a portal answer.
    Ok((valid_lines(&text, args.fingerprint.as_deref()).0, age))
}

async fn fetch(args: &FetchKeysArgs) -> Result<String, FetchError> {
    LoginName::parse(&args.login).map_err(|e| FetchError::Usage(format!("login: {e}")))?;
    ServerName::parse(&args.server).map_err(|e| FetchError::Usage(format!("--server: {e}")))?;
    if let Some(fp) = &args.fingerprint {
        if !fp.starts_with("SHA256:") || fp.len() != 50 {
            return Err(FetchError::Usage(format!(
                "{fp:?} is not a SHA256 fingerprint (sshd's %f)"
            )));
        }
    }
    // Every address is checked before any is asked: one plain-http portal is a mistake to fix.
    let urls = args
        .portal
        .iter()
        .map(|p| portal_url(args, p))
        .collect::<Result<Vec<_>, _>>()?;
    let token = read_token(&args.token_file)?;
    match ask_portals(args, urls, &token).await {
        Ok(body) => {
            let (lines, dropped) = valid_lines(&body, args.fingerprint.as_deref());
            if dropped > 0 {
                eprintln!(
                    "keyportal fetch-keys: left out {dropped} line(s) that are not valid keys"
                );
            }
            if let Some(dir) = &args.cache_dir {
                if let Err(e) = store_cache(dir, args, &lines) {
                    eprintln!("keyportal fetch-keys: cache not updated: {e}");
                }
            }
            Ok(lines)
        }
        Err(FetchError::Unreachable(why)) => match &args.cache_dir {
            None => Err(FetchError::Unreachable(why)),
            Some(dir) => match cached(dir, args) {
                Ok((lines, age)) => {
                    eprintln!("keyportal fetch-keys: {why}; using the answer cached {age} s ago");
                    Ok(lines)
                }
                Err(e) => Err(FetchError::Unreachable(format!("{why}; no cache: {e}"))),
            },
        },
        Err(e) => {
            if let Some(dir) = &args.cache_dir {
                forget_cache(dir, args);
            }
            Err(e)
        }
    }
}

pub fn run(args: &FetchKeysArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keyportal fetch-keys: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fetch(args)) {
        Ok(lines) => {
            let mut out = std::io::stdout().lock();
            match out.write_all(lines.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("keyportal fetch-keys: cannot write the keys: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("keyportal fetch-keys: {e}; no keys given (fail closed)");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    #[test]
    fn only_valid_lines_are_printed_and_re_rendered() {
        let body = format!(
            "from=\"10.0.0.0/8\" {ED25519} keyportal:alice:1\n\
             garbage line\n\
             command=\"x\"\nrm -rf / {ED25519}\n\
             {ED25519} keyportal:bob:2\n"
        );
        let (lines, dropped) = valid_lines(body.as_bytes(), None);
        assert_eq!(
            lines,
            format!("from=\"10.0.0.0/8\" {ED25519} keyportal:alice:1\n{ED25519} keyportal:bob:2\n")
        );
        assert_eq!(dropped, 3);
    }

    #[test]
    fn a_line_for_another_fingerprint_is_left_out() {
        let (lines, dropped) = valid_lines(
            format!("{ED25519} k\n").as_bytes(),
            Some("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        );
        assert_eq!((lines.as_str(), dropped), ("", 1));
    }

    fn args(portal: &str, allow_insecure_http: bool) -> FetchKeysArgs {
        FetchKeysArgs {
            portal: vec![portal.into()],
            server: "web1".into(),
            token_file: PathBuf::from("/nonexistent"),
            timeout: 1,
            connect_timeout: 1,
            cache_dir: None,
            cache_max_age: 0,
            login: "root".into(),
            fingerprint: None,
            allow_insecure_http,
        }
    }

    #[test]
    fn plain_http_is_allowed_only_to_this_machine_or_by_flag() {
        for ok in [
            "https://keys.example.com",
            "http://127.0.0.1:8080",
            "http://127.9.8.7",
            "http://[::1]:8080/",
            "http://localhost:1",
            "http://LOCALHOST",
        ] {
            assert!(portal_url(&args(ok, false), ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://keys.example.com",
            "http://192.0.2.1:1",
            "http://[::ffff:127.0.0.1]",
            "http://localhost.example.com",
            "http://128.0.0.1",
        ] {
            assert!(
                matches!(
                    portal_url(&args(refused, false), refused),
                    Err(FetchError::InsecurePortal(_))
                ),
                "{refused}"
            );
            assert!(
                portal_url(&args(refused, true), refused).is_ok(),
                "{refused}"
            );
        }
        assert!(matches!(
            portal_url(
                &args("ftp://keys.example.com", true),
                "ftp://keys.example.com"
            ),
            Err(FetchError::Usage(_))
        ));
    }

    #[test]
    fn a_private_key_body_gives_nothing() {
        let (lines, _) = valid_lines(
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
            None,
        );
        assert!(lines.is_empty());
    }
}
