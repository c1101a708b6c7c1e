//! keyportal: an SSH key management portal.
//!
//! Layers, each calling only downwards:
//! - [`keys`]: the validator, a pure function of (input, policy);
//! - [`db`]: PostgreSQL (pool, migrations, the private cluster used when none is configured);
//! - [`http`]: the axum application (JSON API, health, middleware);
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
