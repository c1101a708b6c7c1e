//! keyportal's own PostgreSQL cluster, used when no `DATABASE_URL` is configured.
//!
//! The cluster lives in `<data dir>/pgdata`, listens only on a Unix socket in `<data dir>/run`
//! (no TCP port to clash with), and is created with the machine's PostgreSQL server programs.
//! `initdb` refuses to run as root, so as root the cluster is owned and run by the unprivileged
//! `postgres` (or `nobody`) account. If the cluster is already running (another keyportal, or a
//! test binary of the same run) it is reused, not started twice. At exit, the last keyportal
//! connected to it stops it; one that leaves while others are connected leaves it running.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use nix::unistd::{Gid, Uid, User};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::process::Command;

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
    #[error("running as root, but there is no unprivileged account (postgres or nobody) to run PostgreSQL as")]
    NoUnprivilegedUser,
    #[error("the PostgreSQL cluster directory {path} cannot be reached by the account {user}: {blocker} is not searchable by it; choose a KEYPORTAL_DATA_DIR under a world-searchable path, or set DATABASE_URL")]
    Unreachable {
        path: PathBuf,
        user: String,
        blocker: PathBuf,
    },
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

/// A running private cluster.
#[derive(Debug)]
pub struct PrivateCluster {
    root: PathBuf,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<(Uid, Gid)>,
    started_here: bool,
}

/// Settings for a throw-away cluster (tests): durability is traded for speed.
pub const TEST_SERVER_SETTINGS: &[&str] = &[
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "max_connections=300",
];

impl PrivateCluster {
    /// Creates the cluster if needed and starts it unless it is already running.
    pub async fn ensure(
        root: &Path,
        pg_bin: Option<&Path>,
        settings: &[&str],
    ) -> Result<Self, ClusterError> {
        let bin_dir = find_server_binaries(pg_bin).ok_or(ClusterError::BinariesNotFound)?;
        fs::create_dir_all(root).map_err(io("cannot create", root))?;
        let root = fs::canonicalize(root).map_err(io("cannot resolve", root))?;
        let pgdata = root.join("pgdata");
        let socket_dir = root.join("run");
        if socket_dir.join(".s.PGSQL.5432").as_os_str().len() > 107 {
            return Err(ClusterError::SocketPathTooLong(socket_dir));
        }
        let run_as = unprivileged_account(&root)?;

        // One process at a time creates or starts the cluster; the others then find it running.
        let lock_path = root.join("cluster.lock");
        let lock_file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("cannot open", &lock_path))?;
        let lock =
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
                })?;

        let mut cluster = PrivateCluster {
            root,
            pgdata,
            socket_dir,
            bin_dir,
            run_as,
            started_here: false,
        };
        if cluster.accepts_connections().await {
            drop(lock);
            return Ok(cluster);
        }
        if !cluster.pgdata.join("PG_VERSION").exists() {
            cluster.init().await?;
        }
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

    pub fn root(&self) -> &Path {
        &self.root
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
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(ClusterError::NotReady {
            socket: self.socket_dir.clone(),
            source: last.unwrap_or(sqlx::Error::PoolTimedOut),
        })
    }

    fn prepare_dir(&self, dir: &Path, mode: u32) -> Result<(), ClusterError> {
        fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))
            .map_err(io("cannot set permissions of", dir))?;
        if let Some((uid, gid)) = self.run_as {
            nix::unistd::chown(dir, Some(uid), Some(gid)).map_err(|e| ClusterError::Io {
                action: "cannot hand over",
                path: dir.to_owned(),
                source: e.into(),
            })?;
        }
        Ok(())
    }

    async fn init(&self) -> Result<(), ClusterError> {
        tracing::info!(pgdata = %self.pgdata.display(), "creating the private PostgreSQL cluster");
        self.prepare_dir(&self.pgdata, 0o700)?;
        let mut cmd = self.command("initdb");
        cmd.arg("-D").arg(&self.pgdata).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-instructions",
        ]);
        self.run(cmd, "initdb").await
    }

    async fn start(&self, settings: &[&str]) -> Result<(), ClusterError> {
        self.prepare_dir(&self.socket_dir, 0o755)?;
        let log = self.root.join("postgres.log");
        if !log.exists() {
            fs::write(&log, b"").map_err(io("cannot create", &log))?;
        }
        if let Some((uid, gid)) = self.run_as {
            let _ = nix::unistd::chown(&log, Some(uid), Some(gid));
        }
        let mut server_opts = format!(
            "-c listen_addresses= -c unix_socket_directories='{}' -c unix_socket_permissions=0777",
            self.socket_dir.display()
        );
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
        if let Some((uid, gid)) = self.run_as {
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

/// Whether a process exists (the cluster is local: its clients are processes on this machine).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// As root, the account PostgreSQL runs as; otherwise none (it runs as the current user).
fn unprivileged_account(root: &Path) -> Result<Option<(Uid, Gid)>, ClusterError> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let user = ["postgres", "nobody"]
        .into_iter()
        .find_map(|name| User::from_name(name).ok().flatten())
        .ok_or(ClusterError::NoUnprivilegedUser)?;
    // Every ancestor must be searchable by that account, or PostgreSQL cannot reach its data.
    let mut dir = Some(root);
    while let Some(d) = dir {
        let meta = fs::metadata(d).map_err(io("cannot inspect", d))?;
        let mode = meta.mode();
        let searchable = if meta.uid() == user.uid.as_raw() {
            mode & 0o100 != 0
        } else if meta.gid() == user.gid.as_raw() {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !searchable {
            return Err(ClusterError::Unreachable {
                path: root.to_owned(),
                user: user.name,
                blocker: d.to_owned(),
            });
        }
        dir = d.parent();
    }
    Ok(Some((user.uid, user.gid)))
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
