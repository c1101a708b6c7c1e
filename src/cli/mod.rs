//! The `keyportal` command line.

mod admin;
mod cert;
mod enroll;
mod fetch_keys;
mod fetch_krl;
mod fetch_principals;
mod generate;
mod key_check;
mod portal;
mod syslog;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{DatabaseConfig, LogConfig, ServeConfig};

#[derive(Parser, Debug)]
#[command(name = "keyportal", version = crate::VERSION, about = "SSH key management portal")]
pub struct Cli {
    #[command(flatten)]
    pub log: LogConfig,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the portal (HTTP API and UI).
    // Boxed: its settings are several times the size of every other command's.
    Serve(Box<ServeConfig>),
    /// Apply pending database migrations and exit.
    Migrate(MigrateArgs),
    /// Write a consistent dump of the database to FILE (works while serve runs).
    Backup(BackupArgs),
    /// Restore a dump made by `keyportal backup` into an empty database.
    Restore(RestoreArgs),
    /// SSH key tools.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Administrator accounts.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Personal API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Servers.
    #[command(subcommand)]
    Server(ServerCommand),
    /// Scans of the stored keys.
    #[command(subcommand)]
    Scan(ScanCommand),
    /// Users and the identity provider.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Email and webhook notifications.
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Print a login's authorized_keys lines from the portal: sshd's AuthorizedKeysCommand
    /// (`fetch-keys --portal URL --server S --token-file F %u %f`). Fails closed.
    FetchKeys(fetch_keys::FetchKeysArgs),
    /// Print the login if a certificate's grant is still live: sshd's
    /// AuthorizedPrincipalsCommand (`fetch-principals --portal URL --server S --token-file F
    /// %u %i %s`). Fails closed.
    FetchPrincipals(fetch_principals::FetchPrincipalsArgs),
    /// Fetch the portal's KRL, check its signature and version, and install it for sshd's
    /// RevokedKeys (atomically; safe from cron every minute).
    FetchKrl(fetch_krl::FetchKrlArgs),
    /// Set this server up to take its keys from the portal (as root): binary, token,
    /// sshd_config.d drop-in, checked with `sshd -t`, sshd reloaded. Idempotent; `--dry-run`.
    Enroll(enroll::EnrollArgs),
    /// Undo `keyportal enroll`: remove what it wrote, check with `sshd -t`, reload sshd.
    Unenroll(enroll::UnenrollArgs),
    /// Get a user certificate for your key from the portal and write it next to the key
    /// (`id_ed25519-cert.pub`); renews only when less than a quarter of its validity is left.
    Cert(cert::CertArgs),
    /// Print the OpenAPI 3 description of the HTTP API (the same as GET /api/openapi.json).
    Openapi,
    /// Man pages and shell completions (what the Debian package installs).
    #[command(subcommand)]
    Generate(generate::GenerateCommand),
}

#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// Change nothing: say where the schema stands, and exit 1 if the database is newer than
    /// this keyportal (which then refuses to serve it); 0 if it is up to date or only has
    /// migrations of this keyportal to apply.
    #[arg(long)]
    pub check: bool,
}

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// Where to write the dump (PostgreSQL's custom format, mode 0600).
    pub file: std::path::PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// Replace the contents of a database that already holds users, keys or servers.
    #[arg(long)]
    pub force: bool,
    /// A dump made by `keyportal backup`.
    pub file: std::path::PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create an admin user.
    Create(admin::AdminCreateArgs),
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a personal API token; prints the secret (shown only this once).
    Create(admin::TokenCreateArgs),
}

#[derive(Subcommand, Debug)]
pub enum ServerCommand {
    /// Create a server token (reads only that server's authorized_keys); prints the secret.
    Token(admin::ServerTokenArgs),
}

#[derive(Subcommand, Debug)]
pub enum ScanCommand {
    /// Batch GCD over every stored RSA modulus: moduli sharing a prime go on the blocklist
    /// (`shared_prime`). Prints the report as JSON; exit 0 whether or not any were found.
    SharedPrimes(admin::ScanArgs),
}

#[derive(Subcommand, Debug)]
pub enum NotifyCommand {
    /// One notification round now (as `serve` runs every KEYPORTAL_NOTIFY_INTERVAL seconds):
    /// prints what was sent, skipped and failed as JSON. Exit 1 if a notice could not be
    /// delivered (it stays due); a round another process is running is skipped (`ran: false`).
    Run(admin::NotifyRunArgs),
}

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Ask the identity provider about every user who signs in through it: sync their claims
    /// (name, email, role, groups) and disable those it no longer knows. Prints the report.
    Sync(admin::UsersSyncArgs),
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Validate public keys. Exit status: 0 all valid, 1 some rejected, 2 usage error.
    Check(key_check::KeyCheckArgs),
}

/// Runs the command line; returns the process exit status.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        // Pure and synchronous: no runtime, no logger, nothing but the validator.
        Command::Key(KeyCommand::Check(args)) => key_check::run(&args),
        // Runs inside sshd's login: a small runtime, no logger, errors on stderr.
        Command::FetchKeys(args) => fetch_keys::run(&args),
        Command::FetchPrincipals(args) => fetch_principals::run(&args),
        Command::FetchKrl(args) => fetch_krl::run(&args),
        Command::Cert(args) => cert::run(&args),
        Command::Enroll(args) => enroll::run_enroll(&args),
        Command::Generate(command) => generate::run(&command),
        Command::Unenroll(args) => enroll::run_unenroll(&args),
        Command::Serve(cfg) => with_runtime(&cli.log, async move {
            crate::server::serve(*cfg).await.map_err(|e| e.to_string())
        }),
        Command::Admin(AdminCommand::Create(args)) => {
            with_runtime(&cli.log, admin::admin_create(args))
        }
        Command::Token(TokenCommand::Create(args)) => {
            with_runtime(&cli.log, admin::token_create(args))
        }
        Command::Server(ServerCommand::Token(args)) => {
            with_runtime(&cli.log, admin::server_token(args))
        }
        Command::Users(UsersCommand::Sync(args)) => with_runtime(&cli.log, admin::users_sync(args)),
        Command::Notify(NotifyCommand::Run(args)) => {
            with_runtime(&cli.log, admin::notify_run(args))
        }
        Command::Scan(ScanCommand::SharedPrimes(args)) => {
            with_runtime(&cli.log, admin::scan_shared_primes(args))
        }
        Command::Openapi => match serde_json::to_string_pretty(&crate::api::openapi_document())
            .map_err(|e| e.to_string())
            .and_then(|json| print_stdout(&json))
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("keyportal: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Migrate(args) => with_runtime(&cli.log, migrate(args)),
        Command::Backup(args) => with_runtime(&cli.log, async move {
            crate::db::backup::backup(&args.database, &args.file)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(file = %args.file.display(), "backup written");
            Ok(())
        }),
        Command::Restore(args) => with_runtime(&cli.log, async move {
            crate::db::backup::restore(&args.database, &args.file, args.force)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(file = %args.file.display(), "restored");
            Ok(())
        }),
    }
}

/// `keyportal migrate [--check]`.
async fn migrate(args: MigrateArgs) -> Result<(), String> {
    use crate::db::{schema_state, Database, SchemaState};
    if !args.check {
        let db = Database::open(&args.database)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!("migrations applied");
        db.close().await;
        return Ok(());
    }
    let db = Database::connect(&args.database)
        .await
        .map_err(|e| e.to_string())?;
    let state = schema_state(&db.pool).await;
    db.close().await;
    match state.map_err(|e| e.to_string())? {
        SchemaState::UpToDate { version } => {
            print_stdout(&format!("up to date: the schema is at migration {version}"))
        }
        SchemaState::Pending { versions } => print_stdout(&format!(
            "{} migration(s) of this keyportal to apply ({}): run `keyportal migrate`",
            versions.len(),
            versions
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        SchemaState::Newer { database, binary } => {
            Err(crate::db::DbError::NewerSchema { database, binary }.to_string())
        }
    }
}

/// Writes one line to standard output. A reader that went away (`| head`) is not an error.
pub(crate) fn print_stdout(line: &str) -> Result<(), String> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write to standard output: {e}"))
        }
        _ => Ok(()),
    }
}

fn with_runtime(
    log: &LogConfig,
    work: impl std::future::Future<Output = Result<(), String>>,
) -> ExitCode {
    // Held to the end of this function: dropping it flushes the queued log lines.
    let _log_writer = match crate::telemetry::init(log) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("keyportal: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keyportal: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "keyportal stopped");
            eprintln!("keyportal: {e}");
            ExitCode::FAILURE
        }
    }
}
