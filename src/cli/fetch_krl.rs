//! `keyportal fetch-krl`: installs the portal's KRL for sshd's `RevokedKeys`, from cron.
//!
//! sshd refuses every public key and certificate, for every user, when the `RevokedKeys` file
//! is missing, unreadable or not a valid KRL. So this command replaces the file only with a
//! KRL that is signed by a CA in `--ca-keys` (the server's `TrustedUserCAKeys` file), that
//! parses strictly, and whose version is newer than the installed one; and it replaces it
//! atomically (a private temporary file in the same directory, fsync, rename, fsync of the
//! directory). The installed bytes carry no signature: OpenSSH 9.2 rejects a whole KRL whose
//! embedded signature it cannot check, and 9.4+ ignores them. Runs that overlap (cron every
//! minute) take turns on a lock file beside the KRL. Any failure leaves the installed file as
//! it was and exits 1.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::portal::{self, Ask, FetchError, PortalArgs};
use crate::ca::krl::{self, Krl};

#[derive(clap::Args, Debug)]
pub struct FetchKrlArgs {
    #[command(flatten)]
    pub conn: PortalArgs,
    /// The CA public keys the KRL must be signed by (the server's TrustedUserCAKeys file).
    #[arg(long)]
    pub ca_keys: PathBuf,
    /// Where sshd reads it (`RevokedKeys`).
    #[arg(long, default_value = "/etc/ssh/revoked_keys")]
    pub out: PathBuf,
}

/// Why nothing was installed.
#[derive(Debug, thiserror::Error)]
enum KrlFetchError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("--ca-keys {path}: {reason}")]
    CaKeys { path: String, reason: String },
    #[error("the portal's KRL was refused: {0}")]
    Invalid(#[from] krl::KrlError),
    #[error("the portal's KRL is version {offered}, older than the installed version {installed}: a portal restored from an old backup, or an answer replayed")]
    Older { offered: u64, installed: u64 },
    #[error("{0}")]
    Io(String),
}

/// What was done.
enum Outcome {
    Installed {
        version: u64,
        previous: Option<u64>,
        krl: Krl,
    },
    UpToDate {
        version: u64,
    },
}

/// The version of the installed KRL: `None` when there is no file or it is empty. A file that
/// is a KRL this parser refuses is replaced (sshd is refusing every key until it is); a file
/// that is not a KRL at all (sshd also reads plain lists of revoked keys there) is someone's
/// own list, and is left alone.
fn installed_version(path: &Path) -> Result<Option<u64>, KrlFetchError> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.is_empty() => Ok(None),
        Ok(bytes) if !bytes.starts_with(krl::MAGIC) => Err(KrlFetchError::Io(format!(
            "{} holds something other than a KRL (a list of revoked keys?); move it aside, or point --out elsewhere",
            path.display()
        ))),
        Ok(bytes) => match Krl::parse(&bytes) {
            Ok(parsed) => Ok(Some(parsed.krl.version)),
            Err(e) => {
                eprintln!(
                    "keyportal fetch-krl: the installed {} is not a valid KRL ({e}); replacing it",
                    path.display()
                );
                Ok(None)
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(KrlFetchError::Io(format!("{}: {e}", path.display()))),
    }
}

/// Writes `bytes` to `path` so that sshd only ever sees the old file or the whole new one.
fn install(path: &Path, bytes: &[u8]) -> Result<(), KrlFetchError> {
    crate::files::write_atomically(path, bytes, 0o644, true)
        .map(|_| ())
        .map_err(|e| KrlFetchError::Io(format!("installing {}: {e}", path.display())))
}

/// Holds the lock beside the KRL while one run reads, compares and installs.
fn lock(out: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, KrlFetchError> {
    let mut name = out.as_os_str().to_owned();
    name.push(".lock");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&name)
        .map_err(|e| KrlFetchError::Io(format!("{}: {e}", Path::new(&name).display())))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| KrlFetchError::Io(format!("locking {}: {e}", Path::new(&name).display())))
}

async fn fetch(args: &FetchKrlArgs) -> Result<Outcome, KrlFetchError> {
    let ca_err = |reason: String| KrlFetchError::CaKeys {
        path: args.ca_keys.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(&args.ca_keys).map_err(|e| ca_err(e.to_string()))?;
    let trusted = crate::ca::read_public_keys(&text).map_err(ca_err)?;
    if trusted.is_empty() {
        return Err(ca_err("it holds no CA key".into()));
    }
    let urls = portal::portal_urls(&args.conn, &["api", "v1", "ca", "krl"], &[])?;
    let token = portal::read_token(&args.conn.token_file)?;
    let agent = format!("keyportal-fetch-krl/{}", env!("CARGO_PKG_VERSION"));
    let _held = lock(&args.out)?;
    let installed = installed_version(&args.out)?;
    let body = portal::ask_portals(&args.conn, urls, &token, &Ask::Get, &agent).await?;
    let (list, unsigned) = krl::verify(&body, &trusted)?;
    // What sshd will read must itself parse strictly (it does, as a prefix of what verified;
    // checked again because a bad file locks everyone out).
    Krl::parse(unsigned)?;
    match installed {
        Some(v) if list.version < v => Err(KrlFetchError::Older {
            offered: list.version,
            installed: v,
        }),
        Some(v) if list.version == v => Ok(Outcome::UpToDate { version: v }),
        previous => {
            install(&args.out, unsigned)?;
            Ok(Outcome::Installed {
                version: list.version,
                previous,
                krl: list,
            })
        }
    }
}

pub fn run(args: &FetchKrlArgs) -> ExitCode {
    let Some(outcome) = portal::block_on("fetch-krl", fetch(args)) else {
        return ExitCode::FAILURE;
    };
    match outcome {
        Ok(Outcome::Installed {
            version,
            previous,
            krl,
        }) => {
            let serials: u64 = krl
                .certificates
                .iter()
                .flat_map(|s| s.serials.iter())
                .fold(0u64, |n, (lo, hi)| {
                    n.saturating_add(hi.saturating_sub(*lo)).saturating_add(1)
                });
            println!(
                "keyportal fetch-krl: installed KRL version {version} (was {}) in {}: {serials} certificate serial(s), {} key(s) revoked",
                previous.map_or("none".to_owned(), |v| v.to_string()),
                args.out.display(),
                krl.sha256_fingerprints.len() + krl.explicit_keys.len() + krl.sha1_fingerprints.len(),
            );
            ExitCode::SUCCESS
        }
        Ok(Outcome::UpToDate { version }) => {
            println!("keyportal fetch-krl: version {version} is installed already");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "keyportal fetch-krl: {e}; {} left as it was",
                args.out.display()
            );
            ExitCode::FAILURE
        }
    }
}
