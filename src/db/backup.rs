//! Backup and restore with PostgreSQL's own tools: `pg_dump` takes a consistent snapshot (one
//! transaction) while keyportal keeps serving, and `pg_restore` puts it back in one transaction.
//! For the private cluster they connect as its owner through its socket (peer authentication),
//! so no credential is needed; with `DATABASE_URL`, with that URL.
//!
//! A dump holds password and token hashes: it is written 0600, and into place only when whole.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tokio::process::Command;

use super::{schema_state, Database, DbError, SchemaState, MIGRATOR};
use crate::config::DatabaseConfig;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{program} was not found next to initdb; install PostgreSQL's client programs")]
    ProgramNotFound { program: &'static str },
    #[error("{program} failed ({status}): {output}")]
    Tool {
        program: &'static str,
        status: String,
        output: String,
    },
    #[error("the database is not empty ({users} users, {keys} keys, {servers} servers); restore replaces everything in it only with --force")]
    NotEmpty { users: i64, keys: i64, servers: i64 },
    #[error("the restored data is at migration {database}, newer than this keyportal knows (up to {binary}); run the keyportal that made the backup")]
    NewerBackup { database: i64, binary: i64 },
}

/// `pg_dump`/`pg_restore` and the arguments that reach this database.
struct Tools {
    bin_dir: PathBuf,
    connection: Vec<OsString>,
}

fn tools(db: &Database, cfg: &DatabaseConfig) -> Result<Tools, BackupError> {
    match (&db.cluster, &cfg.database_url) {
        (Some(cluster), _) => Ok(Tools {
            bin_dir: cluster.bin_dir().to_owned(),
            connection: vec![
                "--host".into(),
                cluster.socket_dir().as_os_str().to_owned(),
                "--username".into(),
                "postgres".into(),
                "--dbname".into(),
                "keyportal".into(),
            ],
        }),
        (None, Some(url)) => Ok(Tools {
            bin_dir: super::private_cluster::find_server_binaries(cfg.pg_bin.as_deref())
                .ok_or(BackupError::ProgramNotFound { program: "pg_dump" })?,
            connection: vec!["--dbname".into(), url.into()],
        }),
        (None, None) => Err(BackupError::ProgramNotFound { program: "pg_dump" }),
    }
}

async fn run(tools: &Tools, program: &'static str, args: Vec<OsString>) -> Result<(), BackupError> {
    let path = tools.bin_dir.join(program);
    if !path.is_file() {
        return Err(BackupError::ProgramNotFound { program });
    }
    let out = Command::new(&path)
        .args(&args)
        .args(&tools.connection)
        .env_remove("PGPASSWORD")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| BackupError::Io {
            action: "cannot run",
            path: path.clone(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(BackupError::Tool {
        program,
        status: out.status.to_string(),
        output: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// Writes a consistent dump of the database to `file` (PostgreSQL's custom format), mode 0600.
pub async fn backup(cfg: &DatabaseConfig, file: &Path) -> Result<(), BackupError> {
    let db = Database::connect(cfg).await?;
    let result = backup_from(&db, cfg, file).await;
    db.close().await;
    result
}

async fn backup_from(db: &Database, cfg: &DatabaseConfig, file: &Path) -> Result<(), BackupError> {
    let tools = tools(db, cfg)?;
    let tmp = file.with_extension(format!("partial{}", std::process::id()));
    let io = |action, path: &Path| {
        let path = path.to_owned();
        move |source| BackupError::Io {
            action,
            path,
            source,
        }
    };
    // Made here, private, before pg_dump writes into it.
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.flush())
        .map_err(io("cannot create", &tmp))?;
    let dumped = run(
        &tools,
        "pg_dump",
        vec![
            "--format=custom".into(),
            "--no-owner".into(),
            "--file".into(),
            tmp.clone().into(),
        ],
    )
    .await;
    if let Err(e) = dumped {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, file).map_err(io("cannot write", file))
}

/// Restores a dump into the configured database, which must hold no users, keys or servers
/// unless `force` (then its contents are replaced). Pending migrations are applied afterwards.
pub async fn restore(cfg: &DatabaseConfig, file: &Path, force: bool) -> Result<(), BackupError> {
    let db = Database::connect(cfg).await?;
    let result = restore_into(&db, cfg, file, force).await;
    db.close().await;
    result
}

async fn restore_into(
    db: &Database,
    cfg: &DatabaseConfig,
    file: &Path,
    force: bool,
) -> Result<(), BackupError> {
    fs::metadata(file).map_err(|source| BackupError::Io {
        action: "cannot read",
        path: file.to_owned(),
        source,
    })?;
    if !force {
        let (users, keys, servers) = contents(db).await?;
        if users + keys + servers > 0 {
            return Err(BackupError::NotEmpty {
                users,
                keys,
                servers,
            });
        }
    }
    let tools = tools(db, cfg)?;
    run(
        &tools,
        "pg_restore",
        vec![
            "--clean".into(),
            "--if-exists".into(),
            "--no-owner".into(),
            "--single-transaction".into(),
            "--exit-on-error".into(),
            file.as_os_str().to_owned(),
        ],
    )
    .await?;
    match schema_state(&db.pool).await? {
        SchemaState::Newer { database, binary } => {
            Err(BackupError::NewerBackup { database, binary })
        }
        _ => MIGRATOR
            .run(&db.pool)
            .await
            .map_err(|e| BackupError::Database(DbError::from(e))),
    }
}

/// Users, keys and servers in the database; a database no keyportal migrated holds none.
async fn contents(db: &Database) -> Result<(i64, i64, i64), BackupError> {
    let migrated: bool = sqlx::query_scalar("SELECT to_regclass('public.users') IS NOT NULL")
        .fetch_one(&db.pool)
        .await
        .map_err(|e| BackupError::Database(DbError::Connect(e)))?;
    if !migrated {
        return Ok((0, 0, 0));
    }
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM ssh_keys),
                (SELECT count(*) FROM servers)",
    )
    .fetch_one(&db.pool)
    .await
    .map_err(|e| BackupError::Database(DbError::Connect(e)))
}
