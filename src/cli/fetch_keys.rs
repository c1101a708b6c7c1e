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

use std::process::ExitCode;

use super::portal::{self, ask_with_cache, print_or_fail, FetchError, PortalArgs, Report};
use crate::domain::{LoginName, ServerName};
use crate::keys::{authorized_keys_verdicts, Algorithm, AuthorizedKeysLine, Policy};

#[derive(clap::Args, Debug)]
pub struct FetchKeysArgs {
    #[command(flatten)]
    pub conn: PortalArgs,
    /// This server's name in the portal.
    #[arg(long)]
    pub server: String,
    #[command(flatten)]
    pub cache: portal::CacheArgs,
    #[command(flatten)]
    pub syslog: super::syslog::SyslogArgs,
    /// The login sshd asks about (`%u`).
    pub login: String,
    /// The SHA256 fingerprint of the offered key (`%f`), to ask for just that key.
    pub fingerprint: Option<String>,
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

async fn fetch(args: &FetchKeysArgs, report: &Report<'_>) -> Result<String, FetchError> {
    LoginName::parse(&args.login).map_err(|e| FetchError::Usage(format!("login: {e}")))?;
    ServerName::parse(&args.server).map_err(|e| FetchError::Usage(format!("--server: {e}")))?;
    if let Some(fp) = &args.fingerprint {
        if !fp.starts_with("SHA256:") || fp.len() != 50 {
            return Err(FetchError::Usage(format!(
                "{fp:?} is not a SHA256 fingerprint (sshd's %f)"
            )));
        }
    }
    let mut query = vec![("login", args.login.as_str())];
    if let Some(fp) = &args.fingerprint {
        query.push(("fingerprint", fp));
    }
    let urls = portal::portal_urls(
        &args.conn,
        &["api", "v1", "servers", &args.server, "authorized_keys"],
        &query,
    )?;
    let fingerprint = args.fingerprint.as_deref();
    let parts = [
        args.server.as_str(),
        args.login.as_str(),
        fingerprint.unwrap_or(""),
    ];
    ask_with_cache(report, &args.conn, &args.cache, urls, &parts, |body| {
        let (lines, dropped) = valid_lines(body, fingerprint);
        if dropped > 0 {
            eprintln!("keyportal fetch-keys: left out {dropped} line(s) that are not valid keys");
        }
        lines
    })
    .await
}

pub fn run(args: &FetchKeysArgs) -> ExitCode {
    let mut subject = format!("login={:?} server={:?}", args.login, args.server);
    if let Some(fp) = &args.fingerprint {
        subject.push_str(&format!(" fingerprint={fp:?}"));
    }
    let report = Report {
        command: "fetch-keys",
        subject,
        syslog: &args.syslog,
    };
    match portal::block_on("fetch-keys", fetch(args, &report)) {
        Some(answer) => print_or_fail(&report, answer, "keys"),
        None => ExitCode::FAILURE,
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

    #[test]
    fn a_private_key_body_gives_nothing() {
        let (lines, _) = valid_lines(
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
            None,
        );
        assert!(lines.is_empty());
    }
}
