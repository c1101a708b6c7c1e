//! Logging. Every request runs in a span that carries its request id, so every log line written
//! while handling it (errors included) names the request.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber; logs go to standard error, written by a thread of their own:
/// a request that logs (every request does, at `info`) formats its line and moves on instead of
/// waiting for the write (the login path was 13% slower with the write in line,
/// docs/performance.md). Nothing is dropped: when that thread falls behind, loggers wait.
/// Keep the returned guard until exit; dropping it writes out what is still queued.
pub fn init(cfg: &LogConfig) -> Result<WorkerGuard, String> {
    let filter = EnvFilter::try_new(&cfg.filter)
        .map_err(|e| format!("KEYPORTAL_LOG {:?} is not a valid filter: {e}", cfg.filter))?;
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("keyportal-log")
        .finish(std::io::stderr());
    // Colours only for a person at a terminal, never into files, pipes or log collectors.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    let result = match cfg.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))?;
    Ok(guard)
}

/// An error and its sources on one line, so a log line or message names the real cause.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
