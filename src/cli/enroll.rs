//! `keyportal enroll` / `keyportal unenroll`: set a server up to take its keys from the portal
//! in one command, as root on that server, and take it back out.
//!
//! Enroll checks the token against the portal before changing anything, then writes the
//! binary (where sshd accepts a command: root-owned all the way up), the token (0600, for the
//! command's own account), an `sshd_config.d` drop-in and, with certificates, the CA keys. It
//! then asks sshd itself: `sshd -t` must pass and `sshd -T` must show our command in effect
//! (an earlier setting in the main file would win silently). If either fails, every file is
//! put back as it was. Only then is sshd reloaded. Running it again changes nothing, and
//! `--dry-run` shows what it would do.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use nix::unistd::{Uid, User};
use serde::{Deserialize, Serialize};

use super::portal::{self, Ask, FetchError, PortalArgs};
use crate::domain::ServerName;

/// Where the server's files are: the real ones, or a scratch root for tests.
#[derive(clap::Args, Debug, Clone)]
pub struct TargetArgs {
    /// Prefix every path read or written, those written into the sshd settings included
    /// (a scratch root for tests; `/` on a real server).
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// sshd's main configuration file (it must `Include` the `sshd_config.d` directory beside
    /// it, as Debian's and most distributions' do).
    #[arg(long, default_value = "/etc/ssh/sshd_config")]
    pub sshd_config: PathBuf,
    /// The sshd program that checks the result (`sshd -t`, `sshd -T`).
    #[arg(long, default_value = "/usr/sbin/sshd")]
    pub sshd: PathBuf,
    /// Do not reload a running sshd (the settings apply at its next start or reload).
    #[arg(long)]
    pub no_reload: bool,
    /// Print what would change and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Certificates {
    /// Keys only, looked up at each login (`fetch-keys`).
    None,
    /// Also user certificates from the portal's CA, checked live at each login
    /// (`fetch-principals`; see docs/certificates.md).
    Live,
}

#[derive(clap::Args, Debug)]
pub struct EnrollArgs {
    /// The portal's base address; repeat for several portals on one database.
    #[arg(long, required = true)]
    pub portal: Vec<String>,
    /// This server's name in the portal.
    #[arg(long)]
    pub server: String,
    /// File holding this server's token (from `keyportal server token` or the server's page).
    #[arg(
        long,
        required_unless_present = "token_stdin",
        conflicts_with = "token_stdin"
    )]
    pub token_file: Option<PathBuf>,
    /// Read the token from standard input instead.
    #[arg(long)]
    pub token_stdin: bool,
    /// Also trust the portal's user certificates.
    #[arg(long, value_enum, default_value = "none")]
    pub certificates: Certificates,
    /// The unprivileged account sshd runs the commands as (`AuthorizedKeysCommandUser`);
    /// created as a system account if missing.
    #[arg(long, default_value = "keyportal")]
    pub command_user: String,
    /// Where the keyportal binary is installed for sshd.
    #[arg(long, default_value = "/usr/local/bin/keyportal")]
    pub binary: PathBuf,
    /// Allow a plain `http://` portal on another machine (see `fetch-keys`).
    #[arg(long)]
    pub allow_insecure_http: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(clap::Args, Debug)]
pub struct UnenrollArgs {
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Why enrolling stopped; nothing is left changed in any case.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("{0}")]
    Usage(String),
    #[error("the portal: {0}")]
    Portal(#[from] FetchError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsafe(String),
    #[error("`{command}` failed: {output}")]
    Sshd { command: String, output: String },
    #[error("account {name}: {reason}")]
    Account { name: String, reason: String },
    /// The failure, when putting the files back failed too (each named on stderr).
    #[error("{0}; and some files could not be put back (named above): check them by hand")]
    NotRestored(Box<EnrollError>),
}

fn not_restored_unless(restored: bool, e: EnrollError) -> EnrollError {
    if restored {
        e
    } else {
        EnrollError::NotRestored(Box::new(e))
    }
}

/// How a failed run ends its message: what it left behind.
fn left(e: &EnrollError) -> &'static str {
    match e {
        EnrollError::NotRestored(_) => "",
        _ => "; nothing was changed",
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> EnrollError + '_ {
    move |source| EnrollError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The token file's place, and the record of what enroll wrote (read by `unenroll`).
const TOKEN_PATH: &str = "/etc/keyportal/token";
const STATE_PATH: &str = "/etc/keyportal/enrollment.json";
const CA_KEYS_PATH: &str = "/etc/ssh/keyportal_user_ca.pub";
const DROP_IN_NAME: &str = "keyportal.conf";
/// The first line of every drop-in enroll writes: a file without it is someone else's.
const MARKER: &str = "# Written by `keyportal enroll`";

/// One file enroll manages.
struct Planned {
    path: PathBuf,
    bytes: Vec<u8>,
    mode: u32,
    uid: u32,
    gid: u32,
    /// Shown as `<secret>` in `--dry-run`.
    secret: bool,
}

/// A file as it was before this run, to put back on failure.
struct Before {
    path: PathBuf,
    was: Option<(Vec<u8>, u32, u32, u32)>,
}

#[derive(Serialize, Deserialize, Debug)]
struct Enrollment {
    server: String,
    /// Every file enroll wrote (full paths, root included).
    files: Vec<PathBuf>,
    /// The account enroll created, removed again by unenroll.
    created_account: Option<String>,
    /// Directories enroll created, removed again by unenroll if empty.
    #[serde(default)]
    created_dirs: Vec<PathBuf>,
}

fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

fn read_token(args: &EnrollArgs) -> Result<String, EnrollError> {
    let mut raw = String::new();
    match &args.token_file {
        Some(path) => {
            raw = std::fs::read_to_string(path).map_err(io_error(path))?;
            if let Ok(meta) = std::fs::metadata(path) {
                if meta.mode() & 0o077 != 0 {
                    eprintln!(
                        "keyportal enroll: warning: {} is readable by others (mode {:o}); \
                         delete it once enrolled, or pass the token with --token-stdin",
                        path.display(),
                        meta.mode() & 0o777
                    );
                }
            }
        }
        None => {
            std::io::stdin()
                .read_to_string(&mut raw)
                .map_err(io_error(Path::new("standard input")))?;
        }
    }
    let token = raw.trim_end_matches(['\n', '\r']).to_owned();
    if token.is_empty() || token.len() > 512 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(EnrollError::Usage(
            "the token must be one line of printable characters (the secret shown once by \
             `keyportal server token` or the server's page)"
                .into(),
        ));
    }
    Ok(token)
}

/// A portal address as it goes on sshd's command line: sshd splits on spaces, reads quotes
/// and expands `%`, so none of them may be in it.
fn checked_portal(url: &str) -> Result<&str, EnrollError> {
    if url.is_empty()
        || url
            .chars()
            .any(|c| c.is_whitespace() || "\"'\\%".contains(c))
    {
        return Err(EnrollError::Usage(format!(
            "--portal {url:?}: an address with spaces, quotes, backslashes or % cannot go on \
             sshd's command line"
        )));
    }
    Ok(url)
}

/// The two command lines sshd runs: `fetch-keys …` and `fetch-principals …`.
fn commands(args: &EnrollArgs, binary: &Path, token: &Path) -> (String, String) {
    let mut common = String::new();
    for p in &args.portal {
        common.push_str(&format!("--portal {p} "));
    }
    common.push_str(&format!(
        "--server {} --token-file {}",
        args.server,
        token.display()
    ));
    if args.allow_insecure_http {
        common.push_str(" --allow-insecure-http");
    }
    let bin = binary.display();
    (
        format!("{bin} fetch-keys {common} %u %f"),
        format!("{bin} fetch-principals {common} %u %i %s"),
    )
}

fn checked_path(path: &Path) -> Result<(), EnrollError> {
    let text = path.to_string_lossy();
    if text
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "\"'\\%".contains(c))
    {
        return Err(EnrollError::Usage(format!(
            "{}: a path with spaces, quotes, backslashes or % cannot go on sshd's command line",
            path.display()
        )));
    }
    Ok(())
}

/// The drop-in: the same lines the server's page shows.
fn drop_in(args: &EnrollArgs, binary: &Path, token: &Path, ca_keys: &Path) -> String {
    let (keys, principals) = commands(args, binary, token);
    let user = &args.command_user;
    let mut text = format!(
        "{MARKER} for server {}; `keyportal unenroll` removes it.\n",
        args.server
    );
    if args.certificates == Certificates::Live {
        // Above AuthorizedKeysCommand: OpenSSH 9.2's sshd ignores an
        // AuthorizedPrincipalsCommand that comes after one (seen with `sshd -T`).
        text.push_str(&format!(
            "TrustedUserCAKeys {}\n\
             AuthorizedPrincipalsCommand {principals}\n\
             AuthorizedPrincipalsCommandUser {user}\n",
            ca_keys.display()
        ));
    }
    text.push_str(&format!(
        "AuthorizedKeysCommand {keys}\n\
         AuthorizedKeysCommandUser {user}\n"
    ));
    text
}

/// sshd refuses a command unless it and every directory above it belong to root and only
/// root may write them; say so now rather than at the first login. The same holds for every
/// file enroll writes as root: another account able to write a directory on the way could
/// swap a file for a link between the rename and the chown.
fn check_root_owned_path(root: &Path, path: &Path) -> Result<(), EnrollError> {
    let mut dir = path.parent();
    while let Some(d) = dir {
        // Above a scratch root is the test's business, not the server's.
        if !d.starts_with(root) || d == root.parent().unwrap_or(Path::new("")) {
            break;
        }
        if let Ok(meta) = std::fs::symlink_metadata(d) {
            if meta.file_type().is_symlink() && d != root {
                return Err(EnrollError::Unsafe(format!(
                    "{} is a symbolic link; enroll writes only under directories that are \
                     root's own",
                    d.display()
                )));
            }
            if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
                return Err(EnrollError::Unsafe(format!(
                    "{}: sshd runs a command only if every directory above it belongs to root \
                     and no one else may write it (owner uid {}, mode {:o}); choose another \
                     --binary or fix the directory",
                    d.display(),
                    meta.uid(),
                    meta.mode() & 0o7777
                )));
            }
        }
        if d == root {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}

/// The account sshd runs the commands as: never root; created if missing.
fn command_account(name: &str, dry_run: bool) -> Result<(Option<User>, bool), EnrollError> {
    let account_err = |reason: String| EnrollError::Account {
        name: name.to_owned(),
        reason,
    };
    crate::domain::LoginName::parse(name).map_err(|e| account_err(e.to_string()))?;
    match User::from_name(name).map_err(|e| account_err(e.to_string()))? {
        Some(user) if user.uid.is_root() => Err(account_err(
            "is root: whatever sshd runs as it would run as root; use an unprivileged account"
                .into(),
        )),
        Some(user) => Ok((Some(user), false)),
        None if dry_run => Ok((None, true)),
        None => {
            run_checked(Command::new("useradd").args([
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ]))?;
            let user = User::from_name(name)
                .map_err(|e| account_err(e.to_string()))?
                .ok_or_else(|| {
                    account_err("useradd succeeded but the account is not there".into())
                })?;
            Ok((Some(user), true))
        }
    }
}

fn run_checked(cmd: &mut Command) -> Result<String, EnrollError> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|e| EnrollError::Sshd {
        command: shown.clone(),
        output: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(EnrollError::Sshd {
            command: shown,
            output: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `sshd -t`, then `sshd -T`: the settings parse, and ours are the ones in effect.
fn check_sshd(target: &TargetArgs, expect: &[(&str, String)]) -> Result<String, EnrollError> {
    let config = under(&target.root, &target.sshd_config);
    run_checked(Command::new(&target.sshd).arg("-t").arg("-f").arg(&config))?;
    let effective = run_checked(Command::new(&target.sshd).arg("-T").arg("-f").arg(&config))?;
    for (keyword, value) in expect {
        let found = effective
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{keyword} ")))
            .unwrap_or("none");
        if found != value {
            return Err(EnrollError::Sshd {
                command: format!("{} -T -f {}", target.sshd.display(), config.display()),
                output: format!(
                    "{keyword} in effect is {found:?}, not the one written ({value:?}): an \
                     earlier setting wins (sshd keeps the first), or {} does not Include \
                     sshd_config.d; fix that and run enroll again",
                    config.display()
                ),
            });
        }
    }
    Ok(effective)
}

/// Sends SIGHUP to a running sshd (it re-reads its settings; open sessions stay).
fn reload_sshd(effective: &str) -> String {
    let pidfile = effective
        .lines()
        .find_map(|l| l.strip_prefix("pidfile "))
        .unwrap_or("/run/sshd.pid");
    let pid = std::fs::read_to_string(pidfile)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok());
    // A stale pid file may name a pid now used by something else: signal only an sshd.
    let is_sshd = |pid: i32| {
        std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .and_then(|exe| {
                exe.file_name()
                    .map(|n| n.to_string_lossy().starts_with("sshd"))
            })
            .unwrap_or(false)
    };
    match pid {
        Some(pid) if !is_sshd(pid) => format!(
            "sshd's pid file {pidfile} names {pid}, which is not sshd; reload sshd yourself"
        ),
        Some(pid) => {
            match nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGHUP,
            ) {
                Ok(()) => format!("reloaded sshd (pid {pid})"),
                Err(e) => format!(
                    "sshd's pid file {pidfile} names {pid}, which could not be signalled ({e}); \
                     reload sshd yourself"
                ),
            }
        }
        None => "sshd is not running; the settings apply when it starts".into(),
    }
}

fn snapshot(path: &Path) -> Result<Before, EnrollError> {
    let was = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(EnrollError::Unsafe(format!(
                "{} is a symbolic link; enroll writes only plain files",
                path.display()
            )))
        }
        Ok(meta) => Some((
            std::fs::read(path).map_err(io_error(path))?,
            meta.mode() & 0o7777,
            meta.uid(),
            meta.gid(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error(path)(e)),
    };
    Ok(Before {
        path: path.to_owned(),
        was,
    })
}

fn write_file(path: &Path, bytes: &[u8], mode: u32, uid: u32, gid: u32) -> Result<(), EnrollError> {
    crate::files::write_atomically(path, bytes, mode, true).map_err(io_error(path))?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io_error(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_error(path))
}

/// Puts every file back as it was (removing those that were not there); says which
/// could not be, and whether all were.
fn restore(befores: &[Before]) -> bool {
    let mut all = true;
    for b in befores.iter().rev() {
        let result = match &b.was {
            Some((bytes, mode, uid, gid)) => write_file(&b.path, bytes, *mode, *uid, *gid),
            None => std::fs::remove_file(&b.path).map_err(io_error(&b.path)),
        };
        if let Err(e) = result {
            all = false;
            eprintln!("keyportal: could not put back {}: {e}", b.path.display());
        }
    }
    all
}

fn ensure_dir(path: &Path, dry_run: bool, created: &mut Vec<PathBuf>) -> Result<(), EnrollError> {
    if path.is_dir() || created.iter().any(|c| c == path) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        ensure_dir(parent, dry_run, created)?;
    }
    if !dry_run {
        std::fs::create_dir(path).map_err(io_error(path))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .map_err(io_error(path))?;
    }
    created.push(path.to_owned());
    Ok(())
}

fn enroll(args: &EnrollArgs) -> Result<(), EnrollError> {
    let t = &args.target;
    ServerName::parse(&args.server).map_err(|e| EnrollError::Usage(format!("--server: {e}")))?;
    for p in &args.portal {
        checked_portal(p)?;
    }
    if !args.binary.is_absolute() {
        return Err(EnrollError::Usage(
            "--binary must be an absolute path".into(),
        ));
    }
    let token = read_token(args)?;
    let binary = under(&t.root, &args.binary);
    let token_path = under(&t.root, Path::new(TOKEN_PATH));
    let ca_path = under(&t.root, Path::new(CA_KEYS_PATH));
    let state_path = under(&t.root, Path::new(STATE_PATH));
    let config = under(&t.root, &t.sshd_config);
    let drop_in_dir = config
        .parent()
        .map(|d| d.join("sshd_config.d"))
        .ok_or_else(|| EnrollError::Usage("--sshd-config names no directory".into()))?;
    let drop_in_path = drop_in_dir.join(DROP_IN_NAME);
    for path in [&binary, &token_path, &ca_path, &state_path, &drop_in_path] {
        check_root_owned_path(&t.root, path)?;
    }
    // sshd splits the command line on spaces and expands %: the binary's path goes on it.
    checked_path(&binary)?;

    // The portal must know this server and take its token before anything changes.
    let conn = PortalArgs {
        portal: args.portal.clone(),
        token_file: token_path.clone(),
        timeout: 10,
        connect_timeout: 3,
        allow_insecure_http: args.allow_insecure_http,
    };
    let agent = format!("keyportal-enroll/{}", env!("CARGO_PKG_VERSION"));
    let urls = portal::portal_urls(
        &conn,
        &["api", "v1", "servers", &args.server, "authorized_keys"],
        &[("login", "root")],
    )?;
    portal::block_on(
        "enroll",
        portal::ask_portals(&conn, urls, &token, &Ask::Get, &agent),
    )
    .ok_or_else(|| EnrollError::Usage("cannot start the HTTP client".into()))??;
    let ca_keys = if args.certificates == Certificates::Live {
        let urls = portal::portal_urls(&conn, &["api", "v1", "ca", "user"], &[])?;
        let body = portal::block_on(
            "enroll",
            portal::ask_portals(&conn, urls, &token, &Ask::Get, &agent),
        )
        .ok_or_else(|| EnrollError::Usage("cannot start the HTTP client".into()))??;
        let text = String::from_utf8(body)
            .map_err(|_| EnrollError::Usage("the portal's CA keys are not text".into()))?;
        if crate::ca::read_public_keys(&text).map_or(true, |keys| keys.is_empty()) {
            return Err(EnrollError::Usage(
                "the portal's /api/v1/ca/user answer holds no CA key".into(),
            ));
        }
        Some(text)
    } else {
        None
    };

    // sshd must be happy before we start, or a failure afterwards would not be ours.
    run_checked(Command::new(&t.sshd).arg("-t").arg("-f").arg(&config))
        .map_err(|e| EnrollError::Usage(format!("sshd's settings fail before any change: {e}")))?;
    if let Ok(existing) = std::fs::read(&drop_in_path) {
        if !existing.starts_with(MARKER.as_bytes()) {
            return Err(EnrollError::Unsafe(format!(
                "{} exists and was not written by keyportal enroll; move it away first",
                drop_in_path.display()
            )));
        }
    }

    // Everything that can fail without changing anything comes before the account.
    let exe = std::env::current_exe().map_err(io_error(Path::new("this program")))?;
    let exe_bytes = std::fs::read(&exe).map_err(io_error(&exe))?;
    let (account, create_account) = command_account(&args.command_user, t.dry_run)?;
    let (uid, gid) = account
        .as_ref()
        .map_or((0, 0), |u| (u.uid.as_raw(), u.gid.as_raw()));
    let mut plan = vec![
        Planned {
            path: binary.clone(),
            bytes: exe_bytes,
            mode: 0o755,
            uid: 0,
            gid: 0,
            secret: false,
        },
        Planned {
            path: token_path.clone(),
            bytes: format!("{token}\n").into_bytes(),
            mode: 0o600,
            uid,
            gid,
            secret: true,
        },
    ];
    if let Some(keys) = ca_keys {
        plan.push(Planned {
            path: ca_path.clone(),
            bytes: keys.into_bytes(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            secret: false,
        });
    }
    plan.push(Planned {
        path: drop_in_path.clone(),
        bytes: drop_in(args, &binary, &token_path, &ca_path).into_bytes(),
        mode: 0o644,
        uid: 0,
        gid: 0,
        secret: false,
    });
    let previous: Option<Enrollment> = std::fs::read(&state_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let mut missing_dirs = Vec::new();
    for p in &plan {
        if let Some(dir) = p.path.parent() {
            ensure_dir(dir, true, &mut missing_dirs)?;
        }
    }
    if let Some(dir) = state_path.parent() {
        ensure_dir(dir, true, &mut missing_dirs)?;
    }
    let (previous_account, mut created_dirs_total, mut created_files) = previous
        .map(|p| (p.created_account, p.created_dirs, p.files))
        .unwrap_or_default();
    // Only files that were not there are enroll's to remove later; one it replaced (an older
    // binary, a token put there by hand) stays when unenrolling.
    for p in &plan {
        if std::fs::symlink_metadata(&p.path).is_err() && !created_files.contains(&p.path) {
            created_files.push(p.path.clone());
        }
    }
    if !created_files.contains(&state_path) {
        created_files.push(state_path.clone());
    }
    for d in &missing_dirs {
        if !created_dirs_total.contains(d) {
            created_dirs_total.push(d.clone());
        }
    }
    let state = Enrollment {
        server: args.server.clone(),
        files: created_files,
        created_account: if create_account {
            Some(args.command_user.clone())
        } else {
            previous_account
        },
        created_dirs: created_dirs_total,
    };
    let state_bytes = serde_json::to_vec_pretty(&state).unwrap_or_default();
    plan.push(Planned {
        path: state_path,
        bytes: state_bytes,
        mode: 0o600,
        uid: 0,
        gid: 0,
        secret: false,
    });

    if t.dry_run {
        if create_account {
            println!("would create the system account {}", args.command_user);
        }
        for p in &plan {
            let same = snapshot(&p.path)?.was.is_some_and(|(bytes, mode, u, g)| {
                bytes == p.bytes && mode == p.mode && u == p.uid && g == p.gid
            });
            let verb = if same { "unchanged" } else { "would write" };
            println!("{verb} {} (mode {:o})", p.path.display(), p.mode);
            if !same && !p.secret && p.path != binary {
                for line in String::from_utf8_lossy(&p.bytes).lines() {
                    println!("    {line}");
                }
            }
        }
        println!(
            "would check `{0} -t -f {1}` and `{0} -T -f {1}`, then reload sshd",
            t.sshd.display(),
            config.display()
        );
        return Ok(());
    }

    let mut created_dirs = Vec::new();
    let mut befores = Vec::new();
    let mut changed = 0;
    let result = (|| {
        for p in &plan {
            if let Some(dir) = p.path.parent() {
                ensure_dir(dir, false, &mut created_dirs)?;
            }
            let before = snapshot(&p.path)?;
            let same = before.was.as_ref().is_some_and(|(bytes, mode, u, g)| {
                *bytes == p.bytes && *mode == p.mode && *u == p.uid && *g == p.gid
            });
            if same {
                continue;
            }
            befores.push(before);
            write_file(&p.path, &p.bytes, p.mode, p.uid, p.gid)?;
            changed += 1;
        }
        let (keys, principals) = commands(args, &binary, &token_path);
        let mut expect = vec![
            ("authorizedkeyscommand", keys),
            ("authorizedkeyscommanduser", args.command_user.clone()),
        ];
        if args.certificates == Certificates::Live {
            expect.push(("trustedusercakeys", ca_path.display().to_string()));
            expect.push(("authorizedprincipalscommand", principals));
        }
        check_sshd(t, &expect)
    })();
    match result {
        Ok(effective) => {
            if changed == 0 {
                println!("already enrolled as {}: nothing changed", args.server);
                return Ok(());
            }
            println!(
                "enrolled as {}: {changed} file(s) written, sshd -t passed",
                args.server
            );
            if !t.no_reload {
                println!("{}", reload_sshd(&effective));
            }
            Ok(())
        }
        Err(e) => {
            let restored = restore(&befores);
            for d in created_dirs.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
            if create_account {
                remove_account(&args.command_user);
            }
            Err(not_restored_unless(restored, e))
        }
    }
}

fn remove_account(name: &str) {
    if let Err(e) = run_checked(Command::new("userdel").arg(name)) {
        eprintln!("keyportal: could not remove the account {name}: {e}");
    }
}

fn unenroll(args: &UnenrollArgs) -> Result<(), EnrollError> {
    let t = &args.target;
    let state_path = under(&t.root, Path::new(STATE_PATH));
    // The record decides what root deletes: it must be root's, in directories only root writes.
    check_root_owned_path(&t.root, &state_path)?;
    if let Ok(meta) = std::fs::symlink_metadata(&state_path) {
        if !meta.file_type().is_file() || meta.uid() != 0 || meta.mode() & 0o022 != 0 {
            return Err(EnrollError::Unsafe(format!(
                "{} is not a plain file that only root may write; not trusting it",
                state_path.display()
            )));
        }
    }
    let state: Enrollment = match std::fs::read(&state_path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| EnrollError::Usage(format!("{}: {e}", state_path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("not enrolled: nothing to undo");
            return Ok(());
        }
        Err(e) => return Err(io_error(&state_path)(e)),
    };
    if let Some(f) = state
        .files
        .iter()
        .find(|f| !f.starts_with(&t.root) || !f.is_absolute())
    {
        return Err(EnrollError::Unsafe(format!(
            "{} lists {}, outside {}; not trusting it",
            state_path.display(),
            f.display(),
            t.root.display()
        )));
    }
    if let Some(name) = &state.created_account {
        let system = crate::domain::LoginName::parse(name).is_ok()
            && User::from_name(name)
                .ok()
                .flatten()
                .is_some_and(|u| !u.uid.is_root() && u.uid.as_raw() < 1000);
        if !system {
            return Err(EnrollError::Unsafe(format!(
                "{} names the account {name:?}, which is not a system account; not removing it",
                state_path.display()
            )));
        }
    }
    let config = under(&t.root, &t.sshd_config);
    if t.dry_run {
        for f in &state.files {
            println!("would remove {}", f.display());
        }
        if let Some(a) = &state.created_account {
            println!("would remove the account {a}");
        }
        return Ok(());
    }
    let mut befores = Vec::new();
    let result = (|| {
        for f in state.files.iter().filter(|f| **f != state_path) {
            let before = snapshot(f)?;
            if before.was.is_some() {
                std::fs::remove_file(f).map_err(io_error(f))?;
                befores.push(before);
            }
        }
        run_checked(Command::new(&t.sshd).arg("-t").arg("-f").arg(&config))?;
        run_checked(Command::new(&t.sshd).arg("-T").arg("-f").arg(&config))
    })();
    match result {
        Ok(effective) => {
            std::fs::remove_file(&state_path).map_err(io_error(&state_path))?;
            // Deepest first, and only those left empty.
            let mut dirs = state.created_dirs.clone();
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for d in dirs {
                let _ = std::fs::remove_dir(d);
            }
            if let Some(a) = &state.created_account {
                remove_account(a);
            }
            println!(
                "unenrolled {}: {} file(s) removed, sshd -t passed",
                state.server,
                befores.len()
            );
            if !t.no_reload {
                println!("{}", reload_sshd(&effective));
            }
            Ok(())
        }
        Err(e) => {
            let restored = restore(&befores);
            Err(not_restored_unless(restored, e))
        }
    }
}

fn require_root() -> Result<(), EnrollError> {
    if !Uid::effective().is_root() {
        return Err(EnrollError::Usage(
            "run as root: the files belong to root and sshd must be reloaded".into(),
        ));
    }
    Ok(())
}

pub fn run_enroll(args: &EnrollArgs) -> ExitCode {
    match require_root().and_then(|()| enroll(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyportal enroll: {e}{}", left(&e));
            ExitCode::FAILURE
        }
    }
}

pub fn run_unenroll(args: &UnenrollArgs) -> ExitCode {
    match require_root().and_then(|()| unenroll(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyportal unenroll: {e}{}", left(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_portal_address_sshd_would_split_or_expand_is_refused() {
        for bad in [
            "https://a b",
            "https://x/%u",
            "https://x/\"",
            "https://x/'",
            "",
        ] {
            assert!(checked_portal(bad).is_err(), "{bad:?}");
        }
        assert!(checked_portal("https://keys.example.com:8443").is_ok());
    }
}
