//! Logging. Every request runs in a span that carries its request id, so every log line written
//! while handling it (errors included) names the request.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber; logs go to standard error.
pub fn init(cfg: &LogConfig) -> Result<(), String> {
    let filter = EnvFilter::try_new(&cfg.filter)
        .map_err(|e| format!("KEYPORTAL_LOG {:?} is not a valid filter: {e}", cfg.filter))?;
    // Colours only for a person at a terminal, never into files, pipes or log collectors.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let result = match cfg.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))
}
