//! Commands that work on the database directly, with or without a running `serve`:
//! `admin create`, `token create`, `server token`.

use std::io::Read;

use crate::config::DatabaseConfig;
use crate::db::Database;
use crate::domain::Role;
use crate::service::users::NewUser;
use crate::service::{Ctx, Services};

#[derive(clap::Args, Debug)]
pub struct AdminCreateArgs {
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[arg(long)]
    pub username: String,
    /// Read the password from standard input (first line). Without it, a password is
    /// generated and printed on standard output.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(clap::Args, Debug)]
pub struct TokenCreateArgs {
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[arg(long)]
    pub username: String,
    #[arg(long)]
    pub name: String,
}

#[derive(clap::Args, Debug)]
pub struct ServerTokenArgs {
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[arg(long)]
    pub server: String,
    #[arg(long, default_value = "sshd")]
    pub name: String,
    /// The token stops working after this many days (default: until revoked).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub expires_in_days: Option<u32>,
}

async fn open(cfg: &DatabaseConfig) -> Result<(Database, Services), String> {
    let db = Database::open(cfg).await.map_err(|e| e.to_string())?;
    let services = Services::new(db.pool.clone());
    Ok((db, services))
}

pub async fn admin_create(args: AdminCreateArgs) -> Result<(), String> {
    let password = if args.password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read the password: {e}"))?;
        Some(text.lines().next().unwrap_or("").to_owned())
    } else {
        None
    };
    // Without a password on stdin, one is generated and printed once, like a token.
    let generated = password
        .is_none()
        .then(crate::service::users::generate_password);
    let password = password.or_else(|| generated.clone());
    let (db, services) = open(&args.database).await?;
    let result = services
        .create_user(
            &Ctx::command_line(),
            NewUser {
                username: args.username,
                role: Some(Role::Admin),
                password,
                ..NewUser::default()
            },
        )
        .await;
    db.close().await;
    let user = result.map_err(|e| e.to_string())?;
    match generated {
        Some(password) => {
            eprintln!(
                "created admin {}; the generated password (shown once) follows",
                user.username
            );
            super::print_stdout(&password)
        }
        None => {
            eprintln!("created admin {}", user.username);
            Ok(())
        }
    }
}

pub async fn token_create(args: TokenCreateArgs) -> Result<(), String> {
    let (db, services) = open(&args.database).await?;
    let result = services
        .create_token_for(&Ctx::command_line(), &args.username, &args.name, None)
        .await
        .map_err(|e| e.to_string());
    db.close().await;
    super::print_stdout(&result?.secret)
}

pub async fn server_token(args: ServerTokenArgs) -> Result<(), String> {
    let (db, services) = open(&args.database).await?;
    let result = services
        .create_server_token(
            &Ctx::command_line(),
            &args.server,
            Some(&args.name),
            args.expires_in_days
                .map(|d| time::OffsetDateTime::now_utc() + time::Duration::days(i64::from(d))),
        )
        .await;
    db.close().await;
    super::print_stdout(&result.map_err(|e| e.to_string())?.secret)
}

#[derive(clap::Args, Debug)]
pub struct ScanArgs {
    #[command(flatten)]
    pub database: DatabaseConfig,
}

#[derive(clap::Args, Debug)]
pub struct UsersSyncArgs {
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// The portal's public URL, as `serve` has it (part of the provider registration).
    #[arg(long, env = "KEYPORTAL_PUBLIC_URL")]
    pub public_url: Option<String>,
    #[command(flatten)]
    pub oidc: crate::config::OidcConfig,
}

/// Checks every provider-linked user at the provider; prints the report as JSON. Exit 0
/// unless the check itself could not run.
pub async fn users_sync(args: UsersSyncArgs) -> Result<(), String> {
    let settings = args
        .oidc
        .settings(args.public_url.as_deref())?
        .ok_or("no identity provider is configured (KEYPORTAL_OIDC_ISSUER)")?;
    let provider = crate::oidc::OidcProvider::new(settings).map_err(|e| e.to_string())?;
    let (db, mut services) = open(&args.database).await?;
    services.oidc = Some(std::sync::Arc::new(provider));
    let result = services
        .sync_provider_users(&Ctx::command_line())
        .await
        .map_err(|e| e.to_string());
    db.close().await;
    let report = serde_json::to_string_pretty(&result?).map_err(|e| e.to_string())?;
    super::print_stdout(&report)
}

pub async fn scan_shared_primes(args: ScanArgs) -> Result<(), String> {
    let (db, services) = open(&args.database).await?;
    let result = services
        .scan_shared_primes(&Ctx::command_line())
        .await
        .map_err(|e| e.to_string());
    db.close().await;
    let report = serde_json::to_string_pretty(&result?).map_err(|e| e.to_string())?;
    super::print_stdout(&report)
}

#[derive(clap::Args, Debug)]
pub struct NotifyRunArgs {
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// The portal's public URL, as `serve` has it (the links in the notices).
    #[arg(long, env = "KEYPORTAL_PUBLIC_URL")]
    pub public_url: Option<String>,
    #[command(flatten)]
    pub notify: crate::config::NotifyConfig,
}

/// One notification round; prints the report as JSON. Exit 1 if a notice failed (it stays
/// due) or the round could not run.
pub async fn notify_run(args: NotifyRunArgs) -> Result<(), String> {
    let (mailer, webhook) = args.notify.transports()?;
    let transports = crate::service::notifications::Transports {
        mailer,
        webhook,
        public_url: args.public_url.clone(),
    };
    if transports.is_empty() {
        return Err("nothing to send to: set KEYPORTAL_SMTP_URL and KEYPORTAL_SMTP_FROM, or KEYPORTAL_WEBHOOK_URL".into());
    }
    let (db, services) = open(&args.database).await?;
    let result = services
        .notification_round(&Ctx::command_line(), &transports)
        .await
        .map_err(|e| e.to_string());
    db.close().await;
    let report = result?;
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    super::print_stdout(&text)?;
    if report.failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} notice(s) were not delivered and stay due; first error: {}",
            report.failed.len(),
            report.failed[0].error
        ))
    }
}
