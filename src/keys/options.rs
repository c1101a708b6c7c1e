//! The authorized_keys options grammar (sshd(8) "AUTHORIZED_KEYS FILE FORMAT").
//!
//! `option[,option]...` where an option is `name` or `name="value"`; inside a value `\"` is a
//! quote and every other byte (including other backslashes) stands for itself, as sshd's
//! `opt_dequote` reads it. Names are case-insensitive. Parsed options are re-rendered from the
//! parsed values, never copied from the input.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Options that take no value.
const FLAGS: &[&str] = &[
    "agent-forwarding",
    "cert-authority",
    "no-agent-forwarding",
    "no-port-forwarding",
    "no-pty",
    "no-touch-required",
    "no-user-rc",
    "no-x11-forwarding",
    "port-forwarding",
    "pty",
    "restrict",
    "user-rc",
    "verify-required",
    "x11-forwarding",
];

/// Options that require a quoted value.
const VALUED: &[&str] = &[
    "command",
    "environment",
    "expiry-time",
    "from",
    "permitlisten",
    "permitopen",
    "principals",
    "tunnel",
];

/// Whether `word` is the name of an option that takes no value (used to tell `no-pty ssh-rsa
/// AAAA...` from a key type).
pub fn is_flag_name(word: &[u8]) -> bool {
    FLAGS
        .iter()
        .any(|f| f.as_bytes().eq_ignore_ascii_case(word))
}

/// Whether `word` is the name of any authorized_keys option.
pub fn is_option_name(word: &[u8]) -> bool {
    FLAGS
        .iter()
        .chain(VALUED)
        .any(|f| f.as_bytes().eq_ignore_ascii_case(word))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyOption {
    /// Lower-case option name.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A parsed, valid list of options.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyOptions(pub Vec<KeyOption>);

impl KeyOptions {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for KeyOptions {
    /// The authorized_keys form: `name,name="value"` with quotes escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, opt) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&opt.name)?;
            if let Some(value) = &opt.value {
                f.write_str("=\"")?;
                f.write_str(&value.replace('"', "\\\""))?;
                f.write_str("\"")?;
            }
        }
        Ok(())
    }
}

/// Where the options field ends: the first blank outside quotes. Returns the end and whether a
/// quote was left open.
pub fn options_end(line: &[u8]) -> (usize, bool) {
    let mut in_quote = false;
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b'\\' if in_quote && line.get(i + 1) == Some(&b'"') => i += 1,
            b'"' => in_quote = !in_quote,
            b' ' | b'\t' if !in_quote => return (i, false),
            _ => {}
        }
        i += 1;
    }
    (line.len(), in_quote)
}

/// Parses the options field (everything before the key type).
pub fn parse(field: &[u8]) -> Result<KeyOptions, String> {
    let mut out = Vec::new();
    let mut rest = field;
    loop {
        let name_len = rest
            .iter()
            .position(|b| matches!(b, b'=' | b','))
            .unwrap_or(rest.len());
        let name = &rest[..name_len];
        if name.is_empty() {
            return Err(format!(
                "empty option name at column {}",
                field.len() - rest.len() + 1
            ));
        }
        let name = std::str::from_utf8(name)
            .ok()
            .filter(|n| n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            .ok_or_else(|| {
                format!(
                    "option name at column {} is not a word",
                    field.len() - rest.len() + 1
                )
            })?
            .to_ascii_lowercase();
        rest = &rest[name_len..];
        let value = if let Some(after_eq) = rest.strip_prefix(b"=") {
            let column = field.len() - after_eq.len() + 1;
            let Some(quoted) = after_eq.strip_prefix(b"\"") else {
                return Err(format!(
                    "the value of option `{name}` at column {column} must be in double quotes"
                ));
            };
            let (value, len) = dequote(quoted).ok_or_else(|| {
                format!("the value of option `{name}` opens a quote at column {column} that is never closed")
            })?;
            rest = &quoted[len + 1..];
            Some(value)
        } else {
            None
        };
        check_option(&name, value.as_deref())?;
        out.push(KeyOption { name, value });
        match rest.split_first() {
            None => break,
            Some((b',', after)) => rest = after,
            Some(_) => {
                return Err(format!(
                    "expected `,` between options at column {}",
                    field.len() - rest.len() + 1
                ))
            }
        }
    }
    Ok(KeyOptions(out))
}

/// Reads a quoted value up to its closing quote. Returns the value and the index of that quote.
fn dequote(s: &[u8]) -> Option<(String, usize)> {
    let mut value = Vec::new();
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\\' if s.get(i + 1) == Some(&b'"') => {
                value.push(b'"');
                i += 2;
                continue;
            }
            b'"' => return String::from_utf8(value).ok().map(|v| (v, i)),
            b => value.push(b),
        }
        i += 1;
    }
    None
}

fn check_option(name: &str, value: Option<&str>) -> Result<(), String> {
    let flag = FLAGS.contains(&name);
    let valued = VALUED.contains(&name);
    match (flag, valued, value) {
        (false, false, _) => return Err(format!("unknown option `{name}`")),
        (true, _, Some(_)) => return Err(format!("option `{name}` takes no value")),
        (_, true, None) => return Err(format!("option `{name}` needs a value: {name}=\"...\"")),
        _ => {}
    }
    let Some(value) = value else { return Ok(()) };
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the value of option `{name}` contains control character {c:?}"
        ));
    }
    if value.ends_with('\\') {
        return Err(format!("the value of option `{name}` ends with a backslash, which would escape its closing quote"));
    }
    let ok = match name {
        "from" | "principals" | "permitopen" | "permitlisten" => {
            !value.is_empty() && !value.contains(char::is_whitespace)
        }
        "environment" => value.split_once('=').is_some_and(|(k, _)| {
            !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        }),
        "expiry-time" => {
            let digits = value.strip_suffix('Z').unwrap_or(value);
            matches!(digits.len(), 8 | 12 | 14) && digits.bytes().all(|b| b.is_ascii_digit())
        }
        "tunnel" => {
            value == "any" || (!value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()))
        }
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the value of option `{name}` is not valid: {value:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_with_spaces_commas_and_escaped_quotes_parse() {
        let opts = parse(br#"command="echo \"hi, there\"",no-pty,from="10.0.0.0/8,*.example.com""#)
            .unwrap();
        assert_eq!(opts.0.len(), 3);
        assert_eq!(opts.0[0].value.as_deref(), Some(r#"echo "hi, there""#));
        assert_eq!(
            opts.to_string(),
            r#"command="echo \"hi, there\"",no-pty,from="10.0.0.0/8,*.example.com""#
        );
    }

    #[test]
    fn rendering_reparses_to_the_same_options() {
        let opts = parse(br#"Restrict,environment="A=b\c",expiry-time="20300101""#).unwrap();
        assert_eq!(parse(opts.to_string().as_bytes()).unwrap(), opts);
        assert_eq!(opts.0[0].name, "restrict");
    }

    #[test]
    fn bad_options_say_what_is_wrong() {
        assert!(parse(b"command=\"echo")
            .unwrap_err()
            .contains("never closed"));
        assert!(parse(b"no-pty=\"x\"")
            .unwrap_err()
            .contains("takes no value"));
        assert!(parse(b"bogus").unwrap_err().contains("unknown option"));
        assert!(parse(b"from=x").unwrap_err().contains("double quotes"));
        assert!(parse(b"expiry-time=\"2030\"")
            .unwrap_err()
            .contains("not valid"));
        assert!(parse(b"no-pty,,pty")
            .unwrap_err()
            .contains("empty option name"));
    }

    #[test]
    fn options_end_skips_quoted_blanks() {
        assert_eq!(options_end(br#"command="a b" ssh-ed25519"#), (13, false));
        assert_eq!(options_end(br#"command="a b"#), (12, true));
    }
}
