//! keyportal: an SSH key management portal.
//!
//! Layers, each importing only those below it:
//! - [`keys`]: the validator, a pure function of (input, policy); [`domain`]: names that must
//!   be valid to exist (usernames, server names, logins, roles); [`ca`]: the certificate
//!   authorities and the KRL format; [`files`]: files replaced in one step; [`notify`]: the
//!   notifications' transports (SMTP, webhook);
//! - [`store`]: every SQL statement, one file per table; [`db`]: where the database comes from
//!   (pool, migrations, the private cluster, replicas, backup);
//! - [`service`]: every rule (authorization, validation on read, audit), called by all doors;
//! - [`http`]: what both doors share (state, request ids, problem documents, input checks,
//!   cookies and the session resolver, health);
//! - [`api`] the JSON API and [`web`] the HTML pages, both thin over [`service`], neither
//!   importing the other;
//! - [`server`]: composes `http`, `api` and `web` into one app and serves it; [`cli`]: the
//!   `keyportal` command line.

/// The crate version and the git revision it was built from (`build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("KEYPORTAL_GIT_REVISION"),
    ")"
);
/// The git revision alone (`keyportal_build_info`).
pub const GIT_REVISION: &str = env!("KEYPORTAL_GIT_REVISION");

pub mod api;
pub mod ca;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod files;
pub mod http;
pub mod keys;
pub mod notify;
pub mod oidc;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod web;
