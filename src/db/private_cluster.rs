//! keyportal's own PostgreSQL cluster, used when no `DATABASE_URL` is configured.
//!
//! Whoever reaches this database can grant themselves root on every server, so the cluster is
//! owner-only:
//! - It listens on no TCP port, only on a Unix socket (mode 0700) in `run/`; the cluster
//!   directory, `pgdata/` and `run/` are 0700 and owned by the account PostgreSQL runs as, so no
//!   other local account can even reach the socket.
//! - Authentication is `peer` with an ident map that lets exactly that account, and root when
//!   keyportal runs as root, connect as the role `postgres`. There is no password to store, read
//!   or leak. `pg_hba.conf` and `pg_ident.conf` are rewritten and the modes tightened at every
//!   start, so a cluster made by an older keyportal (`trust`, a 0777 socket) is fixed in place.
//! - `initdb` refuses root, so as root PostgreSQL runs as a dedicated system account
//!   (`keyportal-db` unless configured, created with `useradd --system` when missing): never
//!   `nobody`, whose processes other daemons share, nor the distribution's `postgres`.
//! - Directories are created and checked without following symbolic links; a data or socket
//!   directory that another account owns, or that group or others can write, is refused.
//!
//! Where it lives: in the data directory itself, except as root when that account could not
//! traverse the path to it (a checkout in `/root`): then under `/var/lib/keyportal-clusters/<id>`, and the
//! file `cluster-location` in the data directory names it.
//!
//! If the cluster is already running (another keyportal, or a test binary of the same run) it is
//! reused, not started twice. At exit, the last keyportal connected to it stops it; one that
//! leaves while others are connected leaves it running.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{AtFlags, Flock, FlockArg};
use nix::unistd::{Gid, Uid, User};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::process::Command;

/// The account the cluster runs as when keyportal runs as root, unless configured otherwise.
pub const DEFAULT_ACCOUNT: &str = "keyportal-db";
/// Where clusters go whose data directory the cluster's account cannot reach. Not
/// `/var/lib/keyportal`: that is the Debian package's data directory (0700, its own account's).
pub const RELOCATED_BASE: &str = "/var/lib/keyportal-clusters";
/// Where earlier releases put them; a `cluster-location` naming a cluster there is still
/// followed, so their clusters are found where they are.
pub const LEGACY_RELOCATED_BASE: &str = "/var/lib/keyportal";
/// The file in a data directory that names its relocated cluster.
pub const LOCATION_FILE: &str = "cluster-location";
/// Accounts the cluster must never run as: shared with other software, or root itself.
const FORBIDDEN_ACCOUNTS: &[&str] = &["root", "nobody", "postgres"];

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("PostgreSQL server programs (initdb, pg_ctl) were not found; install them (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql) or set DATABASE_URL to an existing database")]
    BinariesNotFound,
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the private cluster must not run as {0:?}: other software shares that account; choose a dedicated one with KEYPORTAL_CLUSTER_ACCOUNT (default keyportal-db)")]
    ForbiddenAccount(String),
    #[error("cannot create the system account {account:?} for the private cluster: {detail}")]
    CreateAccount { account: String, detail: String },
    #[error("the account this process runs as (uid {0}) has no name in the user database; PostgreSQL's peer authentication needs one")]
    NamelessUser(u32),
    #[error("the PostgreSQL cluster directory {path} cannot be reached by the account {user}: {blocker} is not searchable by it")]
    Unreachable {
        path: PathBuf,
        user: String,
        blocker: PathBuf,
    },
    #[error("{0} is a symbolic link; keyportal creates and uses its data directories only as real directories (remove the link, or point KEYPORTAL_DATA_DIR at the real directory)")]
    Symlink(PathBuf),
    #[error("{0} exists but is not a directory")]
    NotADirectory(PathBuf),
    #[error("{path} is owned by uid {owner}, not by this account or the cluster's; refusing to keep the database there (remove it, or choose another KEYPORTAL_DATA_DIR)")]
    NotOwned { path: PathBuf, owner: u32 },
    #[error("{path} can be written by group or others (mode {mode:o}); another account could replace the database or its socket: run `chmod go-w {path}` or choose another KEYPORTAL_DATA_DIR")]
    OthersCanWrite { path: PathBuf, mode: u32 },
    #[error("{pointer} names {target}, which is not a cluster directory under /var/lib/keyportal-clusters (or /var/lib/keyportal, before); remove {pointer} (and the cluster it meant, if any)")]
    BadLocation { pointer: PathBuf, target: String },
    #[error("the socket path {0} is too long for a Unix socket (limit 107 bytes); choose a shorter KEYPORTAL_DATA_DIR")]
    SocketPathTooLong(PathBuf),
    #[error("{program} failed ({status}): {output}")]
    Command {
        program: String,
        status: String,
        output: String,
    },
    #[error("PostgreSQL did not accept connections on {socket}: {source}")]
    NotReady {
        socket: PathBuf,
        source: sqlx::Error,
    },
    #[error("the PostgreSQL postmaster exited while keyportal waited for it to accept connections on {socket} (see postgres.log): {source}")]
    ExitedWhileStarting {
        socket: PathBuf,
        source: sqlx::Error,
    },
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ClusterError + 'a {
    move |source| ClusterError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The OS account PostgreSQL runs as, and the accounts allowed to connect through the socket.
#[derive(Debug, Clone)]
struct Accounts {
    /// Set when keyportal runs as root and hands the cluster to another account.
    run_as: Option<(Uid, Gid)>,
    /// Owner of the cluster's files.
    owner: (Uid, Gid),
    /// OS user names that `pg_ident.conf` maps to the role `postgres`.
    peers: Vec<String>,
}

/// A running private cluster.
#[derive(Debug)]
pub struct PrivateCluster {
    root: PathBuf,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    bin_dir: PathBuf,
    accounts: Accounts,
    started_here: bool,
}

/// PostgreSQL's default 128 MB of shared buffers holds a small portal; a million keys need their
/// indexes in memory (bulk imports were half as fast with the default, docs/performance.md). An
/// eighth of the machine's memory, between 128 MB and 1 GB.
fn shared_buffers_mb() -> u64 {
    let total_kb = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    (total_kb / 1024 / 8).clamp(128, 1024)
}

/// Settings for a throw-away cluster (tests): durability is traded for speed.
pub const TEST_SERVER_SETTINGS: &[&str] = &[
    "shared_buffers=128MB",
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "max_connections=600",
];

impl PrivateCluster {
    /// Creates the cluster for `data_dir` if needed and starts it unless it is already running.
    /// `account` is the system account it runs as when keyportal runs as root.
    pub async fn ensure(
        data_dir: &Path,
        pg_bin: Option<&Path>,
        account: &str,
        settings: &[&str],
    ) -> Result<Self, ClusterError> {
        let bin_dir = find_server_binaries(pg_bin).ok_or(ClusterError::BinariesNotFound)?;
        let accounts = accounts(account)?;
        let root = locate(data_dir, &accounts)?;
        let pgdata = root.join("pgdata");
        let socket_dir = root.join("run");
        if socket_dir.join(".s.PGSQL.5432").as_os_str().len() > 107 {
            return Err(ClusterError::SocketPathTooLong(socket_dir));
        }

        // One process at a time creates or starts the cluster; the others then find it running.
        let lock = lock_cluster(&root).await?;

        let mut cluster = PrivateCluster {
            root,
            pgdata,
            socket_dir,
            bin_dir,
            accounts,
            started_here: false,
        };
        let initialized = cluster.pgdata.join("PG_VERSION").exists();
        if initialized {
            cluster.secure_existing()?;
        }
        if cluster.accepts_connections().await {
            // Started by another keyportal: have it read the rewritten authentication files.
            cluster.reload().await;
            drop(lock);
            return Ok(cluster);
        }
        if !initialized {
            cluster.init().await?;
        }
        cluster.write_auth_files()?;
        cluster.start(settings).await?;
        cluster.started_here = true;
        drop(lock);
        cluster.wait_until_ready().await?;
        Ok(cluster)
    }

    /// Connection options for `database` on this cluster.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .host(&self.socket_dir.to_string_lossy())
            .username("postgres")
            .database(database)
            .application_name(&format!("keyportal-{}", std::process::id()))
    }

    /// The cluster directory (`pgdata/`, `run/`, `postgres.log`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of PostgreSQL's programs this cluster runs with (`pg_dump` is there too).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The directory holding the cluster's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// Whether this process started the cluster (and so stops it at exit).
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    async fn accepts_connections(&self) -> bool {
        let opts = self.connect_options("postgres").disable_statement_logging();
        matches!(
            tokio::time::timeout(
                Duration::from_secs(5),
                sqlx::PgConnection::connect_with(&opts)
            )
            .await,
            Ok(Ok(_))
        )
    }

    async fn wait_until_ready(&self) -> Result<(), ClusterError> {
        let opts = self.connect_options("postgres");
        let mut last = None;
        for _ in 0..100 {
            match sqlx::PgConnection::connect_with(&opts).await {
                Ok(conn) => {
                    let _ = conn.close().await;
                    return Ok(());
                }
                // Killed again while starting: say so now rather than wait out the timeout.
                Err(e) if !self.postmaster_alive() => {
                    return Err(ClusterError::ExitedWhileStarting {
                        socket: self.socket_dir.clone(),
                        source: e,
                    })
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(ClusterError::NotReady {
            socket: self.socket_dir.clone(),
            source: last.unwrap_or(sqlx::Error::PoolTimedOut),
        })
    }

    /// Tightens a cluster made earlier (perhaps by an older keyportal, with 0755 directories
    /// owned by another account) to the layout described at the top of this file.
    fn secure_existing(&self) -> Result<(), ClusterError> {
        let (uid, gid) = self.accounts.owner;
        let meta =
            fs::symlink_metadata(&self.pgdata).map_err(io("cannot inspect", &self.pgdata))?;
        if meta.uid() != uid.as_raw() {
            tracing::info!(pgdata = %self.pgdata.display(), "handing the private cluster to its account");
            reown_tree(&self.root, uid, gid)?;
        }
        private_dir(&self.pgdata, Some((uid, gid)))?;
        private_dir(&self.socket_dir, Some((uid, gid)))?;
        self.write_auth_files()
    }

    /// Peer authentication on the socket, for the accounts in the ident map only.
    fn write_auth_files(&self) -> Result<(), ClusterError> {
        let mut ident =
            String::from("# Written by keyportal at every start: who may connect as postgres.\n");
        for peer in &self.accounts.peers {
            ident.push_str(&format!("keyportal {peer} postgres\n"));
        }
        let hba =
            "# Written by keyportal at every start: the Unix socket only, peer-authenticated, \
                   mapped by pg_ident.conf (replication too, so the owner can make a standby \
                   with pg_basebackup).\nlocal all all peer map=keyportal\n\
                   local replication all peer map=keyportal\n";
        self.write_owned(&self.pgdata.join("pg_ident.conf"), &ident)?;
        self.write_owned(&self.pgdata.join("pg_hba.conf"), hba)
    }

    /// Replaces a file in `pgdata` with `text`, mode 0600, owned by the cluster's account.
    fn write_owned(&self, path: &Path, text: &str) -> Result<(), ClusterError> {
        let tmp = path.with_extension("keyportal-new");
        let _ = fs::remove_file(&tmp);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("cannot write", &tmp))?;
        file.write_all(text.as_bytes())
            .map_err(io("cannot write", &tmp))?;
        let (uid, gid) = self.accounts.owner;
        nix::unistd::fchown(std::os::fd::AsRawFd::as_raw_fd(&file), Some(uid), Some(gid)).map_err(
            |e| ClusterError::Io {
                action: "cannot hand over",
                path: tmp.clone(),
                source: e.into(),
            },
        )?;
        fs::rename(&tmp, path).map_err(io("cannot replace", path))
    }

    /// Asks a running server to read its authentication files again.
    async fn reload(&self) {
        if let Ok(mut conn) =
            sqlx::PgConnection::connect_with(&self.connect_options("postgres")).await
        {
            if let Err(e) = sqlx::query("SELECT pg_reload_conf()")
                .execute(&mut conn)
                .await
            {
                tracing::warn!(error = %e, "could not reload the private cluster's configuration");
            }
            let _ = conn.close().await;
        }
    }

    async fn init(&self) -> Result<(), ClusterError> {
        tracing::info!(pgdata = %self.pgdata.display(), "creating the private PostgreSQL cluster");
        private_dir(&self.pgdata, Some(self.accounts.owner))?;
        let mut cmd = self.command("initdb");
        cmd.arg("-D").arg(&self.pgdata).args([
            "-U",
            "postgres",
            // Replaced before the first start by write_auth_files; never trust.
            "--auth-local=peer",
            "--auth-host=reject",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-instructions",
        ]);
        self.run(cmd, "initdb").await
    }

    async fn start(&self, settings: &[&str]) -> Result<(), ClusterError> {
        private_dir(&self.socket_dir, Some(self.accounts.owner))?;
        let log = self.root.join("postgres.log");
        if fs::symlink_metadata(&log).is_err() {
            self.write_owned(&log, "")?;
        }
        let mut server_opts = format!(
            "-c listen_addresses= -c unix_socket_directories='{}' -c unix_socket_permissions=0700 \
             -c shared_buffers={}MB -c max_wal_size=4GB",
            self.socket_dir.display(),
            shared_buffers_mb(),
        );
        // Later settings win: the caller's (tests') override these.
        for s in settings {
            server_opts.push_str(" -c ");
            server_opts.push_str(s);
        }
        tracing::info!(socket = %self.socket_dir.display(), "starting the private PostgreSQL cluster");
        let mut cmd = self.command("pg_ctl");
        cmd.arg("start")
            .arg("-D")
            .arg(&self.pgdata)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o"])
            .arg(server_opts);
        self.run(cmd, "pg_ctl start").await
    }

    /// Whether the postmaster named in `postmaster.pid` is alive. (A cluster stopped on purpose
    /// has no such file.)
    pub fn postmaster_alive(&self) -> bool {
        fs::read_to_string(self.pgdata.join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse::<u32>().ok())
            .is_some_and(process_alive)
    }

    /// Crash recovery: starts the cluster again unless it accepts connections (another
    /// keyportal may have restarted it a moment ago). Whether this process restarted it.
    pub async fn recover(&self, settings: &[&str]) -> Result<bool, ClusterError> {
        let _lock = lock_cluster(&self.root).await?;
        if self.accepts_connections().await {
            return Ok(false);
        }
        // PostgreSQL refuses to start while its lock files (postmaster.pid, the socket's
        // .lock) name a process kill(pid, 0) finds, and a killed postmaster not yet reaped is
        // still found. Its own shared-memory check still guards against backends it left.
        for lock in [
            self.pgdata.join("postmaster.pid"),
            self.socket_dir.join(".s.PGSQL.5432.lock"),
        ] {
            let dead = fs::read_to_string(&lock)
                .ok()
                .and_then(|text| text.lines().next()?.trim().parse::<u32>().ok())
                .is_some_and(|pid| !process_alive(pid));
            if dead {
                tracing::info!(file = %lock.display(), "removing a dead postmaster's lock file");
                match fs::remove_file(&lock) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(io("cannot remove", &lock)(e));
                    }
                    _ => {}
                }
            }
        }
        self.write_auth_files()?;
        self.start(settings).await?;
        self.wait_until_ready().await?;
        Ok(true)
    }

    /// Stops the cluster unless another keyportal process is still connected to it.
    pub async fn stop_if_last(&self) -> Result<(), ClusterError> {
        if let Ok(mut conn) =
            sqlx::PgConnection::connect_with(&self.connect_options("postgres")).await
        {
            // Backends of a pool closed a moment ago take a few milliseconds to leave
            // pg_stat_activity; another process's connections stay. Wait briefly for ours to go.
            let mut others: Vec<u32> = Vec::new();
            for _ in 0..20 {
                let names: Vec<String> = sqlx::query_scalar(
                    "SELECT DISTINCT application_name FROM pg_stat_activity
                     WHERE application_name LIKE 'keyportal-%' AND pid <> pg_backend_pid()",
                )
                .fetch_all(&mut conn)
                .await
                .unwrap_or_default();
                others = names
                    .iter()
                    .filter_map(|n| n.strip_prefix("keyportal-")?.parse::<u32>().ok())
                    .filter(|pid| *pid != std::process::id() && process_alive(*pid))
                    .collect();
                if others.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = conn.close().await;
            if !others.is_empty() {
                tracing::info!(
                    pids = ?others,
                    "other keyportal processes still use the private cluster; leaving it running"
                );
                return Ok(());
            }
        }
        self.stop().await
    }

    /// Stops the cluster unconditionally (fast shutdown: open sessions are disconnected).
    pub async fn stop(&self) -> Result<(), ClusterError> {
        tracing::info!("stopping the private PostgreSQL cluster");
        let mut cmd = self.command("pg_ctl");
        cmd.arg("stop")
            .arg("-D")
            .arg(&self.pgdata)
            .args(["-m", "fast", "-w", "-t", "30"]);
        self.run(cmd, "pg_ctl stop").await
    }

    /// Starts a stopped cluster again with the same settings (tests use this to simulate outages).
    pub async fn restart(&self, settings: &[&str]) -> Result<(), ClusterError> {
        self.start(settings).await?;
        self.wait_until_ready().await
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        cmd.current_dir(&self.root)
            .env_remove("PGDATA")
            .env("LC_ALL", "C")
            .stdin(std::process::Stdio::null())
            // Its own process group: a Ctrl-C meant for keyportal must not also hit PostgreSQL,
            // which keyportal stops itself, in order, after its last request.
            .process_group(0)
            .kill_on_drop(false);
        if let Some((uid, gid)) = self.accounts.run_as {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        cmd
    }

    async fn run(&self, mut cmd: Command, name: &str) -> Result<(), ClusterError> {
        let output = cmd.output().await.map_err(|source| ClusterError::Io {
            action: "cannot run",
            path: self.bin_dir.join(name.split(' ').next().unwrap_or(name)),
            source,
        })?;
        if output.status.success() {
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stdout));
        if name == "pg_ctl start" {
            if let Ok(log) = fs::read_to_string(self.root.join("postgres.log")) {
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                text.push_str(" | server log: ");
                text.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join(" | "));
            }
        }
        Err(ClusterError::Command {
            program: name.to_owned(),
            status: output.status.to_string(),
            output: text.trim().to_owned(),
        })
    }
}

/// Takes the cluster's lock (`cluster.lock`, an exclusive flock): whoever holds it is the one
/// creating, starting or restarting the cluster. Released when the value is dropped.
async fn lock_cluster(root: &Path) -> Result<Flock<fs::File>, ClusterError> {
    let lock_path = root.join("cluster.lock");
    let lock_file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&lock_path)
        .map_err(io("cannot open", &lock_path))?;
    tokio::task::spawn_blocking(move || Flock::lock(lock_file, FlockArg::LockExclusive))
        .await
        .map_err(|e| ClusterError::Io {
            action: "cannot lock",
            path: lock_path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(|(_, errno)| ClusterError::Io {
            action: "cannot lock",
            path: lock_path.clone(),
            source: errno.into(),
        })
}

/// Whether a process exists (the cluster is local: its clients are processes on this machine).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // A killed postmaster is a zombie until whoever inherited it reaps it, which some init
    // processes do only every few seconds; kill(pid, 0) still succeeds on a zombie.
    if let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) {
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        return !matches!(state, Some('Z' | 'X'));
    }
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// Who runs the cluster and who may connect: as root, the dedicated `account` (created when
/// missing) and root; otherwise the current user alone.
fn accounts(account: &str) -> Result<Accounts, ClusterError> {
    let me = Uid::effective();
    if !me.is_root() {
        let user = User::from_uid(me)
            .ok()
            .flatten()
            .ok_or(ClusterError::NamelessUser(me.as_raw()))?;
        return Ok(Accounts {
            run_as: None,
            owner: (user.uid, user.gid),
            peers: vec![user.name],
        });
    }
    if FORBIDDEN_ACCOUNTS.contains(&account)
        || account.is_empty()
        || !account
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(ClusterError::ForbiddenAccount(account.to_owned()));
    }
    let user = match User::from_name(account).ok().flatten() {
        Some(u) => u,
        None => create_system_account(account)?,
    };
    if user.uid.is_root() {
        return Err(ClusterError::ForbiddenAccount(account.to_owned()));
    }
    Ok(Accounts {
        run_as: Some((user.uid, user.gid)),
        owner: (user.uid, user.gid),
        peers: vec![user.name, "root".to_owned()],
    })
}

/// `useradd --system` for the cluster's account: no home, no login shell.
fn create_system_account(name: &str) -> Result<User, ClusterError> {
    let shell = ["/usr/sbin/nologin", "/sbin/nologin"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("/bin/false");
    let out = std::process::Command::new("useradd")
        .args(["--system", "--user-group", "--no-create-home"])
        .args(["--home-dir", "/nonexistent", "--shell", shell])
        .args(["--comment", "keyportal private PostgreSQL cluster"])
        .arg(name)
        .output();
    // Another keyportal may have created it a moment ago: look again before failing.
    if let Some(user) = User::from_name(name).ok().flatten() {
        tracing::info!(
            account = name,
            "created the system account the private cluster runs as"
        );
        return Ok(user);
    }
    let detail = match out {
        Ok(o) => format!(
            "useradd exited with {}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("cannot run useradd: {e}"),
    };
    Err(ClusterError::CreateAccount {
        account: name.to_owned(),
        detail,
    })
}

/// The cluster directory for `data_dir`, created or checked (see the top of this file).
fn locate(data_dir: &Path, accounts: &Accounts) -> Result<PathBuf, ClusterError> {
    let me = (Uid::effective(), Gid::effective());
    // The data directory itself: ours, or (as root) already the cluster account's.
    let created = checked_dir(data_dir, &[me.0, accounts.owner.0])?;
    let data_dir = fs::canonicalize(data_dir).map_err(io("cannot resolve", data_dir))?;
    let pointer = data_dir.join(LOCATION_FILE);
    if let Some(target) = read_location(&pointer)? {
        relocated_base()?;
        private_dir(&target, Some(accounts.owner))?;
        return Ok(target);
    }
    let Some((uid, gid)) = accounts.run_as else {
        private_dir(&data_dir, None)?;
        return Ok(data_dir);
    };
    let meta = fs::symlink_metadata(&data_dir).map_err(io("cannot inspect", &data_dir))?;
    // In place when the account can reach the data directory (which it is then handed), and
    // the directory is new, already the account's, or holds a cluster of an older keyportal.
    let reachable = data_dir
        .parent()
        .is_none_or(|p| unreachable_ancestor(p, uid, gid).is_none());
    let in_place =
        reachable && (created || meta.uid() == uid.as_raw() || data_dir.join("pgdata").exists());
    if in_place {
        private_dir(&data_dir, Some((uid, gid)))?;
        return Ok(data_dir);
    }
    // Root's data directory stays root's; the cluster moves where its account can reach it.
    private_dir(&data_dir, None)?;
    let digest = Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    let id: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let base = relocated_base()?;
    let target = base.join(id);
    if let Some(blocker) = unreachable_ancestor(&base, uid, gid) {
        return Err(ClusterError::Unreachable {
            path: target,
            user: format!("uid {uid}"),
            blocker,
        });
    }
    checked_dir(&target, &[uid])?;
    private_dir(&target, Some((uid, gid)))?;
    let text = format!("{}\n", target.display());
    let tmp = data_dir.join(format!("{LOCATION_FILE}.new"));
    let _ = fs::remove_file(&tmp);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(io("cannot write", &tmp))?;
    fs::rename(&tmp, &pointer).map_err(io("cannot write", &pointer))?;
    tracing::info!(
        cluster = %target.display(),
        data_dir = %data_dir.display(),
        "the private PostgreSQL cluster lives outside the data directory, which its account cannot reach; {} names it",
        pointer.display()
    );
    Ok(target)
}

/// [`RELOCATED_BASE`], root's and not writable by others, created when missing.
fn relocated_base() -> Result<PathBuf, ClusterError> {
    let base = PathBuf::from(RELOCATED_BASE);
    if fs::symlink_metadata(&base).is_err() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&base)
            .map_err(io("cannot create", &base))?;
    }
    checked_dir(&base, &[Uid::from_raw(0)])?;
    Ok(base)
}

/// The cluster a data directory's `cluster-location` names, if it has one. Only a direct
/// child of [`RELOCATED_BASE`] (or [`LEGACY_RELOCATED_BASE`]) is followed, from a file no
/// other account could have written.
fn read_location(pointer: &Path) -> Result<Option<PathBuf>, ClusterError> {
    let meta = match fs::symlink_metadata(pointer) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("cannot inspect", pointer)(e)),
    };
    let text = fs::read_to_string(pointer).map_err(io("cannot read", pointer))?;
    let target = PathBuf::from(text.trim());
    let bad = || ClusterError::BadLocation {
        pointer: pointer.to_owned(),
        target: text.trim().to_owned(),
    };
    if !meta.file_type().is_file()
        || meta.mode() & 0o022 != 0
        || (meta.uid() != 0 && meta.uid() != Uid::effective().as_raw())
    {
        return Err(bad());
    }
    let name_ok = target
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.len() == 16 && n.bytes().all(|b| b.is_ascii_hexdigit()));
    let base_ok = [RELOCATED_BASE, LEGACY_RELOCATED_BASE]
        .iter()
        .any(|b| target.parent() == Some(Path::new(b)));
    if !base_ok || !name_ok {
        return Err(bad());
    }
    Ok(Some(target))
}

/// Makes `path` a directory if it is missing (mode 0700, not following links); otherwise checks
/// it is a real directory owned by one of `owners` that group and others cannot write.
/// Returns whether it was created.
fn checked_dir(path: &Path, owners: &[Uid]) -> Result<bool, ClusterError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(parent)
                    .map_err(io("cannot create", parent))?;
            }
            match fs::DirBuilder::new().mode(0o700).create(path) {
                Ok(()) => Ok(true),
                // Made by another keyportal a moment ago: check it like any other.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    checked_dir(path, owners).map(|_| false)
                }
                Err(e) => Err(io("cannot create", path)(e)),
            }
        }
        Err(e) => Err(io("cannot inspect", path)(e)),
        Ok(meta) => {
            if meta.file_type().is_symlink() {
                return Err(ClusterError::Symlink(path.to_owned()));
            }
            if !meta.is_dir() {
                return Err(ClusterError::NotADirectory(path.to_owned()));
            }
            if !owners.iter().any(|o| o.as_raw() == meta.uid()) {
                return Err(ClusterError::NotOwned {
                    path: path.to_owned(),
                    owner: meta.uid(),
                });
            }
            if meta.mode() & 0o022 != 0 {
                return Err(ClusterError::OthersCanWrite {
                    path: path.to_owned(),
                    mode: meta.mode() & 0o7777,
                });
            }
            Ok(false)
        }
    }
}

/// A directory only its owner can enter: created or checked as by [`checked_dir`], then handed
/// to `owner` (without following links) and set to 0700.
fn private_dir(path: &Path, owner: Option<(Uid, Gid)>) -> Result<(), ClusterError> {
    let me = Uid::effective();
    let owners: Vec<Uid> = owner.map_or(vec![me], |(uid, _)| vec![me, uid]);
    checked_dir(path, &owners)?;
    if let Some((uid, gid)) = owner {
        nix::unistd::fchownat(
            None,
            path,
            Some(uid),
            Some(gid),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| ClusterError::Io {
            action: "cannot hand over",
            path: path.to_owned(),
            source: e.into(),
        })?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(io("cannot set permissions of", path))
}

/// Hands a whole tree to `uid`/`gid`, links included but never followed (a cluster made by an
/// older keyportal, as the distribution's `postgres` account).
fn reown_tree(dir: &Path, uid: Uid, gid: Gid) -> Result<(), ClusterError> {
    let chown = |p: &Path| {
        nix::unistd::fchownat(None, p, Some(uid), Some(gid), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(
            |e| ClusterError::Io {
                action: "cannot hand over",
                path: p.to_owned(),
                source: e.into(),
            },
        )
    };
    chown(dir)?;
    for entry in fs::read_dir(dir).map_err(io("cannot read", dir))? {
        let entry = entry.map_err(io("cannot read", dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io("cannot inspect", &path))?;
        if kind.is_dir() {
            reown_tree(&path, uid, gid)?;
        } else {
            chown(&path)?;
        }
    }
    Ok(())
}

/// The first directory on the way to `dir` (itself included) that `uid`/`gid` cannot search.
fn unreachable_ancestor(dir: &Path, uid: Uid, gid: Gid) -> Option<PathBuf> {
    let mut next = Some(dir);
    while let Some(d) = next {
        let Ok(meta) = fs::metadata(d) else {
            return Some(d.to_owned());
        };
        let mode = meta.mode();
        let searchable = if meta.uid() == uid.as_raw() {
            mode & 0o100 != 0
        } else if meta.gid() == gid.as_raw() {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !searchable {
            return Some(d.to_owned());
        }
        next = d.parent();
    }
    None
}

/// Finds the directory holding `initdb` and `pg_ctl`.
pub fn find_server_binaries(explicit: Option<&Path>) -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = explicit {
        return has_tools(dir).then(|| dir.to_owned());
    }
    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_tools(&dir) {
            return Some(dir);
        }
    }
    // Debian/Ubuntu keep one directory per major version: take the newest.
    let mut debian: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    debian.sort();
    let fixed = [
        "/usr/local/pgsql/bin",
        "/opt/homebrew/bin",
        "/usr/local/bin",
        "/usr/bin",
    ];
    debian
        .into_iter()
        .rev()
        .map(|(_, p)| p)
        .chain(fixed.iter().map(PathBuf::from))
        .chain(
            std::env::var_os("PATH")
                .into_iter()
                .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>()),
        )
        .find(|d| has_tools(d))
}

#[cfg(test)]
mod tests {
    use super::process_alive;

    /// A dead process not yet reaped (a zombie) is not alive: a killed postmaster is exactly
    /// that until whoever inherited it calls wait().
    #[test]
    fn a_zombie_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let stat = format!("/proc/{pid}/stat");
        let since = std::time::Instant::now();
        while !std::fs::read_to_string(&stat).is_ok_and(|s| s.contains(") Z")) {
            assert!(since.elapsed() < std::time::Duration::from_secs(10));
            std::thread::yield_now();
        }
        assert!(!process_alive(pid), "a zombie");
        assert!(process_alive(std::process::id()), "this process");
        child.wait().unwrap();
        assert!(!process_alive(pid), "reaped");
    }
}
