//! `keyportal cert`: a user certificate for one's own key, from the portal, written next to
//! the key (`id_ed25519.pub` -> `id_ed25519-cert.pub`), where `ssh` finds it. Run it before
//! logging in, or from a login script: it asks the portal only when the certificate is
//! missing, for another key, or has less than a quarter of its validity left.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::portal::{self, Ask, FetchError, PortalArgs};
use crate::keys::{Algorithm, Policy};

#[derive(clap::Args, Debug)]
pub struct CertArgs {
    #[command(flatten)]
    pub conn: PortalArgs,
    /// A certificate for this server only (its grants' options go into it).
    #[arg(long)]
    pub server: Option<String>,
    /// Only this login; repeat for several (default: every login the grants allow).
    #[arg(long = "login")]
    pub logins: Vec<String>,
    /// Validity in seconds (default: the portal's longest).
    #[arg(long)]
    pub validity: Option<u32>,
    /// Ask for a new certificate even if the one in place has time left.
    #[arg(long)]
    pub force: bool,
    /// The public key file (`~/.ssh/id_ed25519.pub`).
    pub public_key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
enum CertError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{0}")]
    Key(String),
    #[error("the portal's answer is not a certificate for this key: {0}")]
    BadAnswer(String),
    #[error("{0}")]
    Io(String),
}

enum Outcome {
    StillValid {
        until: u64,
    },
    Written {
        serial: i64,
        principals: Vec<String>,
        until: u64,
        left_out: Vec<String>,
    },
}

/// `id_ed25519.pub` -> `id_ed25519-cert.pub`, as ssh looks for it.
fn cert_path(public_key: &Path) -> Result<PathBuf, CertError> {
    let name = public_key
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".pub"))
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            CertError::Key(format!(
                "{} does not end in .pub; give the public key file next to the private key",
                public_key.display()
            ))
        })?;
    Ok(public_key.with_file_name(format!("{name}-cert.pub")))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The certificate in place is for this key, carries what is asked (`--server`, `--login`)
/// and still has more than a quarter of its validity left.
fn still_valid(path: &Path, key: &ssh_key::PublicKey, args: &CertArgs) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let cert = ssh_key::Certificate::from_openssh(text.trim()).ok()?;
    if cert.public_key() != key.key_data() {
        return None;
    }
    // Principals are `login@server`.
    let split: Vec<(&str, &str)> = cert
        .valid_principals()
        .iter()
        .filter_map(|p| p.rsplit_once('@'))
        .collect();
    if let Some(server) = &args.server {
        if split.iter().any(|(_, s)| s != server) {
            return None;
        }
    }
    if !args.logins.is_empty() {
        let mut have: Vec<&str> = split.iter().map(|(l, _)| *l).collect();
        have.sort_unstable();
        have.dedup();
        let mut want: Vec<&str> = args.logins.iter().map(String::as_str).collect();
        want.sort_unstable();
        want.dedup();
        if have != want {
            return None;
        }
    }
    let (after, before) = (cert.valid_after(), cert.valid_before());
    let quarter = before.saturating_sub(after) / 4;
    (now() + quarter < before).then_some(before)
}

async fn fetch(args: &CertArgs) -> Result<Outcome, CertError> {
    let out = cert_path(&args.public_key)?;
    let text = std::fs::read(&args.public_key)
        .map_err(|e| CertError::Key(format!("{}: {e}", args.public_key.display())))?;
    // The key passes the validator here too (any algorithm sshd takes; the portal applies
    // its own policy).
    let policy = Policy {
        min_rsa_bits: 1024,
        allowed_algorithms: Algorithm::ALL.into_iter().collect(),
        ..Policy::default()
    };
    let key = crate::keys::validate(&text, &policy)
        .map_err(|r| CertError::Key(format!("{}: {}", args.public_key.display(), r.message)))?;
    let subject = ssh_key::PublicKey::from_openssh(key.public_key())
        .map_err(|e| CertError::Key(format!("{}: {e}", args.public_key.display())))?;
    if !args.force {
        if let Some(until) = still_valid(&out, &subject, args) {
            return Ok(Outcome::StillValid { until });
        }
    }
    let body = serde_json::json!({
        "fingerprint": key.fingerprint_sha256(),
        "server": args.server,
        "logins": (!args.logins.is_empty()).then_some(&args.logins),
        "validity": args.validity,
    });
    let urls = portal::portal_urls(&args.conn, &["api", "v1", "certificates"], &[])?;
    let token = portal::read_token(&args.conn.token_file)?;
    let agent = format!("keyportal-cert/{}", env!("CARGO_PKG_VERSION"));
    let answer = portal::ask_portals(&args.conn, urls, &token, &Ask::Post(&body), &agent).await?;
    let issued: serde_json::Value =
        serde_json::from_slice(&answer).map_err(|e| CertError::BadAnswer(e.to_string()))?;
    let line = issued["certificate"]
        .as_str()
        .ok_or_else(|| CertError::BadAnswer("no `certificate`".into()))?;
    let cert = ssh_key::Certificate::from_openssh(line)
        .map_err(|e| CertError::BadAnswer(e.to_string()))?;
    if cert.public_key() != subject.key_data() {
        return Err(CertError::BadAnswer("it certifies another key".into()));
    }
    crate::files::write_atomically(&out, format!("{}\n", line.trim()).as_bytes(), 0o644, true)
        .map_err(|e| CertError::Io(format!("cannot write {}: {e}", out.display())))?;
    Ok(Outcome::Written {
        serial: issued["serial"].as_i64().unwrap_or_default(),
        principals: cert.valid_principals().to_vec(),
        until: cert.valid_before(),
        left_out: issued["left_out"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| {
                        Some(format!(
                            "{} ({})",
                            l["login"].as_str()?,
                            l["reason"].as_str()?
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default(),
    })
}

fn rfc3339(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

pub fn run(args: &CertArgs) -> ExitCode {
    let Some(outcome) = portal::block_on("cert", fetch(args)) else {
        return ExitCode::FAILURE;
    };
    match outcome {
        Ok(Outcome::StillValid { until }) => {
            println!(
                "keyportal cert: the certificate in place is valid until {}; not renewed (--force to renew)",
                rfc3339(until)
            );
            ExitCode::SUCCESS
        }
        Ok(Outcome::Written {
            serial,
            principals,
            until,
            left_out,
        }) => {
            println!(
                "keyportal cert: wrote certificate {serial} for {} valid until {}",
                principals.join(", "),
                rfc3339(until)
            );
            for l in left_out {
                println!("keyportal cert: not included: {l}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keyportal cert: {e}; no certificate written");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_goes_where_ssh_looks_for_it() {
        assert_eq!(
            cert_path(Path::new("/home/a/.ssh/id_ed25519.pub")).unwrap(),
            Path::new("/home/a/.ssh/id_ed25519-cert.pub")
        );
        assert!(cert_path(Path::new("/home/a/.ssh/id_ed25519")).is_err());
        assert!(cert_path(Path::new(".pub")).is_err());
    }
}
