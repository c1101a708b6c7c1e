//! RFC 4716 "SSH2" public keys, as PuTTYgen and `ssh-keygen -e` write them.

use super::error::{KeyErrorCode, KeyRejection};
use super::text::Lines;

pub const BEGIN: &[u8] = b"---- BEGIN SSH2 PUBLIC KEY ----";
const END: &[u8] = b"---- END SSH2 PUBLIC KEY ----";

/// What an RFC 4716 block holds: the base64 body (lines joined) and the Comment header.
pub struct Rfc4716 {
    pub body: Vec<u8>,
    pub comment: Vec<u8>,
}

/// Parses a block; `lines` starts at the BEGIN line. Anything after END is `multiple_keys`.
pub fn parse(mut lines: Lines<'_>) -> Result<Rfc4716, KeyRejection> {
    let unrecognized = |why: String| KeyRejection::new(KeyErrorCode::UnrecognizedFormat, why);
    lines.next(); // BEGIN
    let mut body = Vec::new();
    let mut comment = Vec::new();
    let mut in_headers = true;
    let mut ended = false;
    while let Some((number, line)) = lines.next() {
        if line == END {
            ended = true;
            break;
        }
        if line.starts_with(b"----") {
            return Err(unrecognized(format!(
                "RFC 4716 block: unexpected marker on line {number}"
            )));
        }
        if in_headers && line.contains(&b':') {
            // header-tag ":" header-value, continued while a line ends in a backslash.
            let mut header = line.to_vec();
            while header.last() == Some(&b'\\') {
                header.pop();
                let Some((_, next)) = lines.next() else {
                    return Err(unrecognized(
                        "RFC 4716 block: header continued past the end of input".into(),
                    ));
                };
                header.extend_from_slice(next);
            }
            let Some(colon) = header.iter().position(|b| *b == b':') else {
                continue;
            };
            let tag = &header[..colon];
            if tag.len() > 64 || tag.is_empty() {
                return Err(unrecognized(format!(
                    "RFC 4716 block: malformed header on line {number}"
                )));
            }
            if tag.eq_ignore_ascii_case(b"Comment") {
                let value = header[colon + 1..].trim_ascii();
                let value = value
                    .strip_prefix(b"\"")
                    .and_then(|v| v.strip_suffix(b"\""))
                    .unwrap_or(value);
                comment = value.to_vec();
            }
            continue;
        }
        in_headers = false;
        body.extend_from_slice(line);
    }
    if !ended {
        return Err(unrecognized(
            "RFC 4716 block has no \"---- END SSH2 PUBLIC KEY ----\" line".into(),
        ));
    }
    if lines.next().is_some() {
        return Err(KeyRejection::new(
            KeyErrorCode::MultipleKeys,
            "there is more text after the end of the RFC 4716 key; paste one key at a time",
        ));
    }
    if body.is_empty() {
        return Err(unrecognized("RFC 4716 block holds no key data".into()));
    }
    Ok(Rfc4716 { body, comment })
}
