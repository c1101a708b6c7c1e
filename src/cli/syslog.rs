//! One line to the machine's syslog for a login the portal could not answer, so the operators
//! of a server hear about it from the logs they already watch, not only from sshd's stderr.
//!
//! A single datagram to the local socket (`/dev/log`, read by journald or rsyslog) in the
//! traditional local format `<PRI>TAG[PID]: MSG`; the daemon adds the time and host. Best
//! effort: a missing socket or a full queue never changes what sshd is told.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

/// Where the lines go.
#[derive(clap::Args, Debug, Clone)]
pub struct SyslogArgs {
    /// The local syslog socket; nothing is sent if it does not exist.
    #[arg(long, env = "KEYPORTAL_SYSLOG_SOCKET", default_value = "/dev/log")]
    pub syslog_socket: PathBuf,
}

/// syslog(3) severities used here.
#[derive(Debug, Clone, Copy)]
pub enum Severity {
    Error = 3,
    Warning = 4,
}

/// LOG_AUTH: sshd's own facility, so the line sits beside sshd's in auth.log.
const FACILITY_AUTH: u8 = 4;
/// Longest message sent; a datagram this size fits every syslog daemon's default.
const MAX_MESSAGE: usize = 1024;

/// The datagram for `message`: control characters become `?` so nothing read from the
/// command line or the network can start a forged line.
pub fn format_line(severity: Severity, tag: &str, pid: u32, message: &str) -> String {
    let mut clean: String = message
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if clean.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !clean.is_char_boundary(end) {
            end -= 1;
        }
        clean.truncate(end);
    }
    format!(
        "<{}>{tag}[{pid}]: {clean}",
        FACILITY_AUTH * 8 + severity as u8
    )
}

/// Sends one line; the error is returned for the caller to mention on stderr.
pub fn send(socket: &Path, severity: Severity, tag: &str, message: &str) -> std::io::Result<()> {
    if !socket.exists() {
        return Ok(());
    }
    let line = format_line(severity, tag, std::process::id(), message);
    let sender = UnixDatagram::unbound()?;
    // A stuck syslog daemon must not hold up a login: a full queue drops the line.
    sender.set_nonblocking(true)?;
    sender.send_to(line.as_bytes(), socket)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_the_auth_facility_and_no_control_characters() {
        let line = format_line(
            Severity::Error,
            "keyportal",
            42,
            "fetch-keys: login=x\nforged line",
        );
        assert_eq!(line, "<35>keyportal[42]: fetch-keys: login=x?forged line");
        assert!(format_line(Severity::Warning, "t", 1, "m").starts_with("<36>"));
    }

    #[test]
    fn a_long_message_is_cut_on_a_character_boundary() {
        let line = format_line(Severity::Warning, "t", 1, &"é".repeat(2000));
        assert!(line.len() <= MAX_MESSAGE + 20);
        assert!(line.ends_with('é'));
    }

    #[test]
    fn no_socket_is_not_an_error() {
        assert!(send(Path::new("/nonexistent/log"), Severity::Error, "t", "m").is_ok());
    }
}
