//! The certificate authorities: the user CA that signs OpenSSH user certificates and the KRL,
//! and the host CA that signs servers' host keys. Pure code over key material, except for
//! reading (or once creating) the CA key files; who may ask for what is the service layer's
//! business.

pub mod krl;

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ssh_key::certificate::{Builder, CertType};
use ssh_key::{Algorithm, Certificate, HashAlg, LineEnding, PrivateKey, PublicKey};

/// Why a CA could not be loaded or could not sign; each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("CA key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("CA public key file {path}: {reason}")]
    PublishedKey { path: String, reason: String },
    /// The request cannot make a certificate OpenSSH would accept (the caller's input).
    #[error("{0}")]
    Request(String),
    #[error("signing failed: {0}")]
    Signing(String),
}

/// One CA: its private key, and what is published of it.
pub struct Authority {
    key: PrivateKey,
    public_line: String,
    fingerprint: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("Authority")
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

/// A user or host certificate to sign.
#[derive(Debug, Clone)]
pub struct CertificateRequest<'a> {
    pub subject: &'a PublicKey,
    pub host: bool,
    pub serial: u64,
    pub key_id: &'a str,
    pub principals: &'a [String],
    /// Unix seconds; `valid_after < valid_before`.
    pub valid_after: u64,
    pub valid_before: u64,
    /// (name, value): `force-command`, `source-address`.
    pub critical_options: Vec<(&'static str, String)>,
    /// Flag extensions (`permit-pty`, ...).
    pub extensions: Vec<&'static str>,
}

impl Authority {
    /// The CA in `path`, created there (Ed25519, mode 0600) if the file does not exist yet.
    /// Instances sharing the file agree: a new key is linked into place only if no other
    /// instance got there first, and the winner's key is then read.
    pub fn load_or_create(path: &Path, comment: &str) -> Result<Authority, CaError> {
        let err = |reason: String| CaError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        match std::fs::symlink_metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path, comment)?,
            Err(e) => return Err(err(e.to_string())),
        }
        // Whoever may write to the directory may swap the key for one of their own.
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir_meta = std::fs::metadata(dir).map_err(|e| err(e.to_string()))?;
        let me = nix::unistd::geteuid().as_raw();
        if dir_meta.permissions().mode() & 0o022 != 0
            || (dir_meta.uid() != me && dir_meta.uid() != 0)
        {
            return Err(err(format!(
                "its directory {} is writable by others or belongs to another account; keep it 0700 and owned by the account keyportal runs as",
                dir.display()
            )));
        }
        let meta = std::fs::symlink_metadata(path).map_err(|e| err(e.to_string()))?;
        if !meta.is_file() {
            return Err(err("not a regular file".into()));
        }
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(err(format!(
                "mode {:04o} lets others read the CA's private key; chmod 600 it",
                meta.permissions().mode() & 0o7777
            )));
        }
        if meta.uid() != nix::unistd::geteuid().as_raw() {
            return Err(err(format!(
                "it belongs to uid {}, not to the account keyportal runs as",
                meta.uid()
            )));
        }
        let text = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let key = PrivateKey::from_openssh(&text)
            .map_err(|e| err(format!("not an OpenSSH private key: {e}")))?;
        if key.is_encrypted() {
            return Err(err("it is encrypted; keyportal needs it unencrypted (keep it mode 0600 on an encrypted disk)".into()));
        }
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(err(format!(
                "it is an {} key; keyportal's CAs are Ed25519",
                key.algorithm()
            )));
        }
        Authority::from_key(key).map_err(err)
    }

    fn from_key(key: PrivateKey) -> Result<Authority, String> {
        let public_line = key.public_key().to_openssh().map_err(|e| e.to_string())?;
        let fingerprint = key.public_key().fingerprint(HashAlg::Sha256).to_string();
        Ok(Authority {
            key,
            public_line,
            fingerprint,
        })
    }

    /// A CA made here and now, for tests and throwaway portals.
    pub fn generate(comment: &str) -> Result<Authority, CaError> {
        let mut key = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519)
            .map_err(|e| CaError::Signing(e.to_string()))?;
        key.set_comment(comment);
        Authority::from_key(key).map_err(CaError::Signing)
    }

    pub fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }

    /// `ssh-ed25519 AAAA... <comment>`: a `TrustedUserCAKeys` line, or the key of an
    /// `@cert-authority` line.
    pub fn public_line(&self) -> &str {
        &self.public_line
    }

    /// `SHA256:...`
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Signs a KRL (see [`krl::sign`]).
    pub fn sign_krl(&self, unsigned: &[u8]) -> Result<Vec<u8>, krl::KrlError> {
        krl::sign(unsigned, &self.key)
    }

    /// An OpenSSH certificate for `req`.
    pub fn sign(&self, req: &CertificateRequest<'_>) -> Result<Certificate, CaError> {
        let bad = |e: ssh_key::Error| CaError::Request(e.to_string());
        if req.principals.is_empty() {
            // An empty list would be valid for every principal: never issued.
            return Err(CaError::Request(
                "a certificate needs at least one principal".into(),
            ));
        }
        if req.valid_after >= req.valid_before {
            return Err(CaError::Request("the validity window is empty".into()));
        }
        let mut b = Builder::new_with_random_nonce(
            &mut rand::rngs::OsRng,
            req.subject.key_data().clone(),
            req.valid_after,
            req.valid_before,
        )
        .map_err(bad)?;
        b.serial(req.serial).map_err(bad)?;
        b.key_id(req.key_id).map_err(bad)?;
        b.cert_type(if req.host {
            CertType::Host
        } else {
            CertType::User
        })
        .map_err(bad)?;
        for p in req.principals {
            b.valid_principal(p.clone()).map_err(bad)?;
        }
        for (name, value) in &req.critical_options {
            b.critical_option(*name, value.clone()).map_err(bad)?;
        }
        for name in &req.extensions {
            b.extension(*name, "").map_err(bad)?;
        }
        b.sign(&self.key)
            .map_err(|e| CaError::Signing(e.to_string()))
    }
}

/// Writes a new CA key to a private temporary file beside `path`, then links it into place
/// unless another instance already did (then theirs stands and this one is dropped).
fn create(path: &Path, comment: &str) -> Result<(), CaError> {
    let err = |reason: String| CaError::KeyFile {
        path: path.display().to_string(),
        reason,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
    }
    let authority = Authority::generate(comment)?;
    let pem = authority
        .key
        .to_openssh(LineEnding::LF)
        .map_err(|e| err(e.to_string()))?;
    // Linked into place only if no other instance got there first; theirs then stands.
    let placed = crate::files::write_atomically(path, pem.as_bytes(), 0o600, false)
        .map_err(|e| err(format!("cannot write the new key: {e}")))?;
    if placed {
        let _ = crate::files::write_atomically(
            &path.with_extension("pub"),
            format!("{}\n", authority.public_line).as_bytes(),
            0o644,
            true,
        );
    }
    Ok(())
}

/// The extensions OpenSSH's `ssh-keygen` grants by default; a grant's `no-*` options and
/// `restrict` take them away.
pub const DEFAULT_EXTENSIONS: [&str; 5] = [
    "permit-X11-forwarding",
    "permit-agent-forwarding",
    "permit-port-forwarding",
    "permit-pty",
    "permit-user-rc",
];

/// What a grant's authorized_keys options become in a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRestrictions {
    pub critical_options: Vec<(&'static str, String)>,
    pub extensions: Vec<&'static str>,
}

/// Turns a grant's options (already canonical, as stored) into critical options and
/// extensions, or says which option a certificate cannot carry. `command` becomes
/// `force-command`; `from` becomes `source-address` only when it is a list of addresses and
/// networks (sshd checks `source-address` as CIDR only: no host names, patterns or negations).
/// `expiry-time` is left to the caller, which bounds the validity with it.
pub fn restrictions_from_options(
    options: &crate::keys::KeyOptions,
) -> Result<CertificateRestrictions, String> {
    let mut critical = Vec::new();
    let mut ext: Vec<&'static str> = DEFAULT_EXTENSIONS.to_vec();
    let set = |ext: &mut Vec<&'static str>, name: &'static str, on: bool| {
        ext.retain(|e| *e != name);
        if on {
            ext.push(name);
        }
    };
    for opt in &options.0 {
        let value = opt.value.clone().unwrap_or_default();
        match opt.name.as_str() {
            "command" => critical.push(("force-command", value)),
            "from" => {
                if !is_cidr_list(&value) {
                    return Err(format!(
                        "from=\"{value}\" holds host names or patterns; a certificate's source-address takes only addresses and networks"
                    ));
                }
                critical.push(("source-address", value));
            }
            "verify-required" => critical.push(("verify-required", String::new())),
            "no-touch-required" => set(&mut ext, "no-touch-required", true),
            "restrict" => ext.retain(|e| *e == "no-touch-required"),
            "no-pty" => set(&mut ext, "permit-pty", false),
            "pty" => set(&mut ext, "permit-pty", true),
            "no-port-forwarding" => set(&mut ext, "permit-port-forwarding", false),
            "port-forwarding" => set(&mut ext, "permit-port-forwarding", true),
            "no-agent-forwarding" => set(&mut ext, "permit-agent-forwarding", false),
            "agent-forwarding" => set(&mut ext, "permit-agent-forwarding", true),
            "no-x11-forwarding" => set(&mut ext, "permit-X11-forwarding", false),
            "x11-forwarding" => set(&mut ext, "permit-X11-forwarding", true),
            "no-user-rc" => set(&mut ext, "permit-user-rc", false),
            "user-rc" => set(&mut ext, "permit-user-rc", true),
            "expiry-time" => {}
            other => return Err(format!("the option {other} has no certificate equivalent")),
        }
    }
    ext.sort_unstable();
    critical.sort_unstable();
    Ok(CertificateRestrictions {
        critical_options: critical,
        extensions: ext,
    })
}

/// `10.0.0.0/8,192.0.2.7,2001:db8::/32`: what sshd's `addr_match_cidr_list` accepts.
fn is_cidr_list(list: &str) -> bool {
    !list.is_empty()
        && list.split(',').all(|entry| {
            let (addr, prefix) = match entry.split_once('/') {
                Some((a, p)) => (a, Some(p)),
                None => (entry, None),
            };
            let Ok(ip) = addr.parse::<std::net::IpAddr>() else {
                return false;
            };
            let max = if ip.is_ipv4() { 32 } else { 128 };
            prefix.is_none_or(|p| {
                !p.is_empty()
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && p.parse::<u8>().is_ok_and(|n| n <= max)
            })
        })
}

/// A published CA public key file (one key; `#` comments and blank lines allowed): an old CA
/// still trusted during a rotation.
pub fn read_public_key(path: &Path) -> Result<PublicKey, CaError> {
    let err = |reason: String| CaError::PublishedKey {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| err("it holds no public key".into()))?;
    PublicKey::from_openssh(line).map_err(|e| err(format!("not an OpenSSH public key: {e}")))
}

/// Every CA public key in a `TrustedUserCAKeys`-style file (one per line).
pub fn read_public_keys(text: &str) -> Result<Vec<PublicKey>, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| PublicKey::from_openssh(l).map_err(|e| format!("{l:.40}...: {e}")))
        .collect()
}

/// The portal's CAs: the user CA that signs, older user CAs still published during a rotation,
/// and the host CA.
#[derive(Debug)]
pub struct Authorities {
    pub user: Authority,
    pub user_published: Vec<PublicKey>,
    pub host: Authority,
}

impl Authorities {
    pub fn load(
        user_key: &Path,
        host_key: &Path,
        user_published: &[PathBuf],
    ) -> Result<Authorities, CaError> {
        Ok(Authorities {
            user: Authority::load_or_create(user_key, "keyportal user CA")?,
            user_published: user_published
                .iter()
                .map(|p| read_public_key(p))
                .collect::<Result<_, _>>()?,
            host: Authority::load_or_create(host_key, "keyportal host CA")?,
        })
    }

    /// Fresh CAs held only in memory (tests).
    pub fn generate() -> Result<Authorities, CaError> {
        Ok(Authorities {
            user: Authority::generate("keyportal user CA")?,
            user_published: Vec::new(),
            host: Authority::generate("keyportal host CA")?,
        })
    }

    /// The `TrustedUserCAKeys` file: the signing CA first, then the older ones.
    pub fn trusted_user_ca_keys(&self) -> String {
        let mut out = format!("{}\n", self.user.public_line());
        for k in &self.user_published {
            if let Ok(line) = k.to_openssh() {
                out.push_str(&line);
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_is_created_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("user_ca");
        let a = Authority::load_or_create(&path, "c").unwrap();
        let b = Authority::load_or_create(&path, "c").unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = Authority::load_or_create(&path, "c")
            .unwrap_err()
            .to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }

    fn restrictions(options: &str) -> Result<CertificateRestrictions, String> {
        let parsed = crate::keys::options::parse(options.as_bytes()).unwrap();
        restrictions_from_options(&parsed)
    }

    #[test]
    fn grant_options_become_critical_options_and_extensions() {
        let r = restrictions("command=\"/bin/true\",from=\"10.0.0.0/8,192.0.2.7\",no-pty").unwrap();
        assert_eq!(
            r.critical_options,
            vec![
                ("force-command", "/bin/true".to_owned()),
                ("source-address", "10.0.0.0/8,192.0.2.7".to_owned())
            ]
        );
        assert!(!r.extensions.contains(&"permit-pty"));
        assert!(r.extensions.contains(&"permit-agent-forwarding"));
        let r = restrictions("restrict,pty").unwrap();
        assert_eq!(r.extensions, vec!["permit-pty"]);
        for refused in [
            "from=\"*.example.com\"",
            "from=\"!10.0.0.1,10.0.0.0/8\"",
            "from=\"10.0.0.0/33\"",
            "permitopen=\"host:22\"",
            "environment=\"A=b\"",
        ] {
            assert!(restrictions(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn no_principal_or_empty_window_is_refused() {
        let ca = Authority::generate("t").unwrap();
        let subject = Authority::generate("s").unwrap();
        let mut req = CertificateRequest {
            subject: subject.public_key(),
            host: false,
            serial: 1,
            key_id: "k",
            principals: &[],
            valid_after: 10,
            valid_before: 20,
            critical_options: vec![],
            extensions: vec![],
        };
        assert!(matches!(ca.sign(&req), Err(CaError::Request(_))));
        let p = ["root".to_owned()];
        req.principals = &p;
        req.valid_before = 10;
        assert!(matches!(ca.sign(&req), Err(CaError::Request(_))));
        req.valid_before = 20;
        let cert = ca.sign(&req).unwrap();
        assert_eq!(cert.valid_principals(), &p);
    }
}
