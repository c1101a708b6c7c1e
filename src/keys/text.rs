//! Framing of text input: BOM, line ends, white space, and the one-line OpenSSH form
//! `[options] type base64 [comment]`.

use super::algorithm::{is_certificate_type, Algorithm};
use super::error::{quoted, KeyErrorCode, KeyRejection};
use super::options;

const BOM: &[u8] = b"\xEF\xBB\xBF";

pub fn strip_bom(input: &[u8]) -> &[u8] {
    input.strip_prefix(BOM).unwrap_or(input)
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'\x0b' | b'\x0c')
}

pub fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !is_blank(*b)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !is_blank(*b))
        .map_or(start, |e| e + 1);
    &s[start..end]
}

/// Non-blank lines with their 1-based numbers, trimmed of white space and CR.
#[derive(Clone)]
pub struct Lines<'a> {
    rest: &'a [u8],
    number: usize,
}

impl<'a> Lines<'a> {
    pub fn new(input: &'a [u8]) -> Self {
        Lines {
            rest: input,
            number: 0,
        }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = (usize, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.rest.is_empty() {
            self.number += 1;
            let (line, rest) = match self.rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
                None => (self.rest, &b""[..]),
            };
            self.rest = rest;
            let line = trim(line);
            if !line.is_empty() {
                return Some((self.number, line));
            }
        }
        None
    }
}

/// What a private key looks like: PEM/OpenSSH/PuTTY/SSH.com headers, or the base64 of
/// OpenSSH's `openssh-key-v1` magic at the start of a line (a body pasted without headers).
pub fn private_key_kind(input: &[u8]) -> Option<&'static str> {
    // Fast path for long inputs (authorized_keys files): none of the three markers occurs.
    let markers: [&[u8]; 3] = [
        b"PRIVATE KEY",
        b"PuTTY-User-Key-File-",
        b"b3BlbnNzaC1rZXktdjE",
    ];
    if !markers
        .iter()
        .any(|m| memchr::memmem::find(input, m).is_some())
    {
        return None;
    }
    for (_, line) in Lines::new(input) {
        let is_header = line.starts_with(b"-----BEGIN") || line.starts_with(b"---- BEGIN");
        if is_header && contains(line, b"PRIVATE KEY") {
            return Some(if contains(line, b"OPENSSH") {
                "an OpenSSH private key"
            } else {
                "a PEM private key"
            });
        }
        if line.starts_with(b"PuTTY-User-Key-File-") {
            return Some("a PuTTY private key (.ppk)");
        }
        if line.starts_with(b"b3BlbnNzaC1rZXktdjE") {
            return Some("an OpenSSH private key");
        }
    }
    None
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// One authorized_keys line split into its fields (nothing decoded yet).
#[derive(Debug)]
pub struct KeyLine<'a> {
    pub options: Option<options::KeyOptions>,
    pub type_name: &'a [u8],
    pub body: &'a [u8],
    pub comment: &'a [u8],
}

fn split_word(s: &[u8]) -> (&[u8], &[u8]) {
    // Words are often a whole base64 body: find the blank with memchr's SIMD search.
    let end = memchr::memchr2(b' ', b'\t', s).unwrap_or(s.len());
    let rest = &s[end..];
    let skip = rest
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(rest.len());
    (&s[..end], &rest[skip..])
}

fn is_type_name_like(word: &[u8]) -> bool {
    !word.is_empty()
        && word
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'@' | b'.' | b'_'))
}

/// Every SSH key blob starts with a 4-byte length below 2^24: `AAAA` in base64.
fn looks_like_key_data(word: &[u8]) -> bool {
    word.len() >= 16 && word.starts_with(b"AAAA")
}

fn is_known_type(word: &[u8]) -> bool {
    Algorithm::from_name(word).is_some() || is_certificate_type(word)
}

/// Whether a line has the shape of a key line (used to tell "two keys" from "a key and junk").
pub fn looks_like_key_line(line: &[u8]) -> bool {
    let mut rest = line;
    for _ in 0..3 {
        let (word, after) = split_word(rest);
        if is_known_type(word) || looks_like_key_data(word) {
            return true;
        }
        rest = after;
    }
    false
}

/// Whether the first word starts an options field: its first option name is a real option, or
/// it is option-shaped and a key type follows later on the line. Otherwise the line is prose.
fn looks_like_options(first: &[u8], line: &[u8]) -> bool {
    let name_end = first
        .iter()
        .position(|b| matches!(b, b'=' | b','))
        .unwrap_or(first.len());
    let name = &first[..name_end];
    if options::is_option_name(name) {
        return true;
    }
    let option_shaped = first.contains(&b'=') || first.contains(&b'"') || first.contains(&b',');
    option_shaped && line.split(|b| matches!(b, b' ' | b'\t')).any(is_known_type)
}

/// Splits `[options] type base64 [comment]` as sshd reads it: the first word is the key type if
/// it is one (or is followed by key data); otherwise it is the options field.
pub fn split_key_line(line: &[u8]) -> Result<KeyLine<'_>, KeyRejection> {
    let unrecognized =
        |why: &str| KeyRejection::new(KeyErrorCode::UnrecognizedFormat, why.to_owned());
    let (first, after_first) = split_word(line);
    // The second word is only looked at when the first is not a known type (it is usually the
    // whole base64 body, so it is not scanned twice on the common path).
    let second = || split_word(after_first).0;

    let first_is_type = is_known_type(first)
        || (is_type_name_like(first)
            && looks_like_key_data(second())
            && !options::is_flag_name(first));
    let (opts, rest) = if first_is_type {
        (None, line)
    } else if looks_like_key_data(first) {
        return Err(unrecognized(
            "the key type is missing: the line starts with key data; it should start with e.g. ssh-ed25519",
        ));
    } else if looks_like_options(first, line) {
        let (end, unterminated) = options::options_end(line);
        // The key type, if one is written further on, so the rejection can name it.
        let written_type = line
            .split(|b| matches!(b, b' ' | b'\t'))
            .find(|w| is_known_type(w))
            .map(String::from_utf8_lossy);
        let invalid = |why: String| {
            let r = KeyRejection::new(KeyErrorCode::OptionsInvalid, why);
            match &written_type {
                Some(t) => r.with_algorithm(t),
                None => r,
            }
        };
        if unterminated {
            return Err(invalid(
                "the options before the key open a double quote that is never closed".into(),
            ));
        }
        let parsed = options::parse(&line[..end])
            .map_err(|why| invalid(format!("invalid authorized_keys options: {why}")))?;
        let rest = &line[end..];
        let skip = rest
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t'))
            .unwrap_or(rest.len());
        (Some(parsed), &rest[skip..])
    } else {
        return Err(unrecognized(
            "this is not an SSH public key: expected \"type base64 [comment]\" (an OpenSSH .pub file), an RFC 4716 or a PEM public key",
        ));
    };

    let (type_name, rest) = split_word(rest);
    if type_name.is_empty() {
        return Err(unrecognized("there is no key after the options"));
    }
    let is_type = is_known_type(type_name)
        || (is_type_name_like(type_name) && looks_like_key_data(split_word(rest).0));
    if !is_type {
        return Err(unrecognized(&format!(
            "expected a key type after the options, found {}",
            quoted(type_name, 40)
        )));
    }
    let (body, comment) = split_word(rest);
    if body.is_empty() {
        return Err(unrecognized(&format!(
            "the line has the key type {} but no key data after it",
            quoted(type_name, 40)
        )));
    }
    Ok(KeyLine {
        options: opts,
        type_name,
        body,
        comment: trim(comment),
    })
}
