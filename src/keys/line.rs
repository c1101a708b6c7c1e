//! One authorized_keys line as sshd reads it: `[options ]type base64[ comment]`. The portal
//! writes lines with it and `fetch-keys` re-writes the lines it checked with it, so both put
//! lines together the same way.

use std::fmt::Write;

use time::OffsetDateTime;

/// The parts of a line, each already validated: options text and comment without line breaks,
/// the key in its canonical `type base64` form.
#[derive(Debug, Clone, Copy)]
pub struct AuthorizedKeysLine<'a> {
    /// Comma-separated options, or empty.
    pub options: &'a str,
    /// Written as one more option, `expiry-time="YYYYMMDDHHMMSSZ"` (UTC).
    pub expiry: Option<OffsetDateTime>,
    pub public_key: &'a str,
    /// Pieces of the comment, written one after the other (none: no comment).
    pub comment: &'a [&'a str],
}

impl AuthorizedKeysLine<'_> {
    /// Appends the line and its newline to `out`.
    pub fn write_to(&self, out: &mut String) {
        if write_options(self.options, self.expiry, out) {
            out.push(' ');
        }
        out.push_str(self.public_key);
        if self.comment.iter().any(|c| !c.is_empty()) {
            out.push(' ');
            for piece in self.comment {
                out.push_str(piece);
            }
        }
        out.push('\n');
    }
}

/// Writes `options` and the expiry as one more option (`expiry-time="YYYYMMDDHHMMSSZ"`, UTC),
/// comma-separated, as authorized_keys and AuthorizedPrincipalsFile lines begin. Returns
/// whether anything was written (then a blank must follow).
pub fn write_options(options: &str, expiry: Option<OffsetDateTime>, out: &mut String) -> bool {
    let mut wrote_option = false;
    if !options.is_empty() {
        out.push_str(options);
        wrote_option = true;
    }
    if let Some(expiry) = expiry {
        let e = expiry.to_offset(time::UtcOffset::UTC);
        if wrote_option {
            out.push(',');
        }
        let _ = write!(
            out,
            "expiry-time=\"{:04}{:02}{:02}{:02}{:02}{:02}Z\"",
            e.year(),
            u8::from(e.month()),
            e.day(),
            e.hour(),
            e.minute(),
            e.second()
        );
        wrote_option = true;
    }
    wrote_option
}

#[cfg(test)]
mod tests {
    use super::AuthorizedKeysLine;

    #[test]
    fn options_expiry_key_and_comment_in_sshd_order() {
        let mut out = String::new();
        let expiry = time::macros::datetime!(2030-01-02 03:04:05 +02:00);
        AuthorizedKeysLine {
            options: "no-pty",
            expiry: Some(expiry),
            public_key: "ssh-ed25519 AAAA",
            comment: &["keyportal:", "alice", ":", "id"],
        }
        .write_to(&mut out);
        AuthorizedKeysLine {
            options: "",
            expiry: None,
            public_key: "ssh-ed25519 BBBB",
            comment: &[""],
        }
        .write_to(&mut out);
        assert_eq!(
            out,
            "no-pty,expiry-time=\"20300102010405Z\" ssh-ed25519 AAAA keyportal:alice:id\n\
             ssh-ed25519 BBBB\n"
        );
    }
}
