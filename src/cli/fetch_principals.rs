//! `keyportal fetch-principals`: what sshd runs as `AuthorizedPrincipalsCommand` for a
//! certificate login (`%u %i %s`: the login, the certificate's key id and serial).
//!
//! It prints the principal `<login>@<server>`, with the options of the grant that allows it
//! (certificates name each server login so, never a bare login), only if the portal says
//! the certificate is one it issued and did not revoke and a grant still allows the login; sshd
//! then lets the certificate in as that login. Like `fetch-keys`, it fails closed (nothing
//! printed, exit 1) when no portal answers, unless a fresh cached answer exists, and a "no"
//! from the portal is never overridden by the cache.

use std::process::ExitCode;

use super::portal::{
    self, ask_with_cache, print_or_fail, CacheArgs, FetchError, PortalArgs, Report,
};
use crate::domain::{LoginName, ServerName};

#[derive(clap::Args, Debug)]
pub struct FetchPrincipalsArgs {
    #[command(flatten)]
    pub conn: PortalArgs,
    /// This server's name in the portal.
    #[arg(long)]
    pub server: String,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub syslog: super::syslog::SyslogArgs,
    /// The login sshd asks about (`%u`).
    pub login: String,
    /// The certificate's key id (`%i`).
    pub key_id: String,
    /// The certificate's serial (`%s`).
    pub serial: u64,
}

/// The portal's lines that are `[options ]<principal>` with options sshd accepts,
/// re-rendered; anything else is dropped.
pub fn valid_principal_lines(body: &[u8], principal_wanted: &str) -> (String, usize) {
    let Ok(text) = std::str::from_utf8(body) else {
        return (String::new(), 1);
    };
    let mut out = String::new();
    let mut dropped = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (options, principal) = match line.rsplit_once([' ', '\t']) {
            Some((o, p)) => (o.trim(), p),
            None => ("", line),
        };
        let options = if options.is_empty() {
            Some(String::new())
        } else {
            crate::keys::options::parse(options.as_bytes())
                .ok()
                .map(|o| o.to_string())
        };
        match options {
            Some(o) if principal == principal_wanted => {
                if !o.is_empty() {
                    out.push_str(&o);
                    out.push(' ');
                }
                out.push_str(principal_wanted);
                out.push('\n');
            }
            _ => dropped += 1,
        }
    }
    (out, dropped)
}

async fn fetch(args: &FetchPrincipalsArgs, report: &Report<'_>) -> Result<String, FetchError> {
    LoginName::parse(&args.login).map_err(|e| FetchError::Usage(format!("login: {e}")))?;
    ServerName::parse(&args.server).map_err(|e| FetchError::Usage(format!("--server: {e}")))?;
    if args.key_id.is_empty() || args.key_id.len() > 512 || args.key_id.contains(char::is_control) {
        return Err(FetchError::Usage(
            "the certificate key id (sshd's %i) is empty, too long or holds control characters"
                .into(),
        ));
    }
    if args.serial == 0 || args.serial > i64::MAX as u64 {
        // Serial 0 is never one this portal issued.
        return Ok(String::new());
    }
    let serial = args.serial.to_string();
    // What the certificate carries for this server (see docs/certificates.md).
    let principal = format!("{}@{}", args.login, args.server);
    let urls = portal::portal_urls(
        &args.conn,
        &["api", "v1", "servers", &args.server, "principals"],
        &[
            ("login", &args.login),
            ("key_id", &args.key_id),
            ("serial", &serial),
        ],
    )?;
    let parts = [
        "principals",
        args.server.as_str(),
        args.login.as_str(),
        args.key_id.as_str(),
        serial.as_str(),
    ];
    ask_with_cache(report, &args.conn, &args.cache, urls, &parts, |body| {
        let (lines, dropped) = valid_principal_lines(body, &principal);
        if dropped > 0 {
            eprintln!(
                "keyportal fetch-principals: left out {dropped} line(s) that are not this login"
            );
        }
        lines
    })
    .await
}

pub fn run(args: &FetchPrincipalsArgs) -> ExitCode {
    let report = Report {
        command: "fetch-principals",
        subject: format!(
            "login={:?} server={:?} key_id={:?} serial={}",
            args.login, args.server, args.key_id, args.serial
        ),
        syslog: &args.syslog,
    };
    match portal::block_on("fetch-principals", fetch(args, &report)) {
        Some(answer) => print_or_fail(&report, answer, "principals"),
        None => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_login_with_valid_options_is_printed() {
        let body = b"from=\"10.0.0.0/8\",expiry-time=\"20300101000000Z\" deploy@web1\n\
                     root@web1\n\
                     deploy\n\
                     deploy@web1\n\
                     bogus=option deploy@web1\n";
        let (lines, dropped) = valid_principal_lines(body, "deploy@web1");
        assert_eq!(
            lines,
            "from=\"10.0.0.0/8\",expiry-time=\"20300101000000Z\" deploy@web1\ndeploy@web1\n"
        );
        assert_eq!(dropped, 3);
    }
}
