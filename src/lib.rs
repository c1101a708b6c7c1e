//! keyportal: an SSH key management portal.
//!
//! Layers, each calling only downwards:
//! - [`keys`]: the validator, a pure function of (input, policy);
//! - [`db`]: PostgreSQL (pool, migrations, the private cluster used when none is configured);
//! - [`service`]: every rule (authorization, validation on read, audit), called by all doors;
//! - [`http`]: the axum application (middleware, errors, serve); [`api`] the JSON API and
//!   [`web`] the HTML UI, both thin over [`service`];
//! - [`cli`]: the `keyportal` command line.

pub mod api;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod http;
pub mod keys;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod web;
