//! Names and values that must be valid to exist: parsed once at the boundary, then trusted.
//! The same rules are CHECK constraints in the schema.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a name was refused: a stable `code` for the API, and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct NameError {
    pub code: &'static str,
    pub detail: String,
}

impl From<NameError> for String {
    fn from(e: NameError) -> String {
        e.detail
    }
}

/// Names that would be mistaken for keyportal itself in the audit trail (`cli` and
/// `anonymous` are actors there already). The schema refuses them too (migration 0003).
pub const RESERVED_USERNAMES: [&str; 4] = ["cli", "anonymous", "system", "keyportal"];

macro_rules! name_type {
    ($name:ident, $what:literal, $check:expr, $rule:literal) => {
        name_type!($name, $what, $check, $rule, []);
    };
    ($name:ident, $what:literal, $check:expr, $rule:literal, $reserved:expr) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, NameError> {
                let check: fn(&str) -> bool = $check;
                let reserved: &[&str] = &$reserved;
                if !check(s) {
                    Err(NameError {
                        code: "invalid_field",
                        detail: format!(concat!("{:?} is not a valid ", $what, ": ", $rule), s),
                    })
                } else if reserved.contains(&s) {
                    Err(NameError {
                        code: "name_reserved",
                        detail: format!(
                            concat!(
                                "{:?} is reserved and cannot be a ",
                                $what,
                                " (reserved: {})"
                            ),
                            s,
                            reserved.join(", ")
                        ),
                    })
                } else {
                    Ok($name(s.to_owned()))
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn unix_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=32).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'.' | b'-')
        })
}

name_type!(
    Username,
    "username",
    unix_name,
    "1-32 characters, lower-case letters, digits, '_', '.', '-', starting with a letter or '_'",
    RESERVED_USERNAMES
);
name_type!(
    LoginName,
    "login name",
    unix_name,
    "a Unix account name: 1-32 characters, lower-case letters, digits, '_', '.', '-', starting with a letter or '_'"
);
name_type!(
    ServerName,
    "server name",
    |s: &str| {
        let b = s.as_bytes();
        (1..=253).contains(&b.len())
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'-'))
    },
    "up to 253 lower-case letters, digits, '.', '-', starting with a letter or digit"
);

name_type!(
    GroupName,
    "group name",
    |s: &str| {
        let b = s.as_bytes();
        (1..=64).contains(&b.len())
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && b.iter().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'.' | b'-')
            })
    },
    "1-64 lower-case letters, digits, '_', '.', '-', starting with a letter or digit"
);

/// A user's role.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

/// Text people type for a label (a key title, a display name, a server's hostname or
/// description, a token name): `MIN` to `MAX` characters, without control characters. Each
/// field's bounds are in its type, so the check is written once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundedText<const MIN: usize, const MAX: usize>(String);

impl<const MIN: usize, const MAX: usize> BoundedText<MIN, MAX> {
    pub fn parse(text: &str) -> Result<Self, String> {
        let chars = text.chars().count();
        if chars < MIN || chars > MAX || text.chars().any(char::is_control) {
            return Err(if MIN == 0 {
                format!("at most {MAX} characters, without control characters")
            } else {
                format!("{MIN}-{MAX} characters, without control characters")
            });
        }
        Ok(BoundedText(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub type KeyTitle = BoundedText<0, 200>;
pub type DisplayName = BoundedText<0, 200>;
pub type Hostname = BoundedText<0, 253>;
pub type Description = BoundedText<0, 2000>;
pub type TokenName = BoundedText<1, 100>;

/// When something stops working (a key, a grant, a token): a moment after now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry(time::OffsetDateTime);

impl Expiry {
    pub fn parse(at: time::OffsetDateTime) -> Result<Expiry, String> {
        if at <= time::OffsetDateTime::now_utc() {
            return Err("expires_at must be in the future".into());
        }
        Ok(Expiry(at))
    }

    /// No expiry, or one in the future.
    pub fn parse_optional(at: Option<time::OffsetDateTime>) -> Result<Option<Expiry>, String> {
        at.map(Expiry::parse).transpose()
    }

    pub fn at(self) -> time::OffsetDateTime {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_text_and_expiries() {
        assert!(TokenName::parse("").is_err());
        assert!(TokenName::parse(&"x".repeat(100)).is_ok());
        assert!(TokenName::parse(&"x".repeat(101)).is_err());
        assert!(KeyTitle::parse("").is_ok());
        assert!(KeyTitle::parse("laptop\u{7}").is_err());
        let now = time::OffsetDateTime::now_utc();
        assert!(Expiry::parse(now - time::Duration::seconds(1)).is_err());
        assert!(Expiry::parse(now + time::Duration::hours(1)).is_ok());
        assert_eq!(Expiry::parse_optional(None), Ok(None));
    }

    #[test]
    fn names_follow_the_contract() {
        assert!(Username::parse("alice").is_ok());
        assert!(Username::parse("_svc.deploy-1").is_ok());
        assert!(Username::parse("Alice").is_err());
        assert!(Username::parse("1alice").is_err());
        assert!(Username::parse(&"a".repeat(33)).is_err());
        assert!(ServerName::parse("web-1.example.com").is_ok());
        assert!(ServerName::parse("-web").is_err());
        assert!(ServerName::parse("web_1").is_err());
        assert!(LoginName::parse("root").is_ok());
        assert!(LoginName::parse("root\n").is_err());
    }

    #[test]
    fn usernames_of_keyportal_itself_are_reserved() {
        for name in RESERVED_USERNAMES {
            let e = Username::parse(name).unwrap_err();
            assert_eq!(e.code, "name_reserved");
            assert!(e.detail.contains("reserved"), "{e}");
            // A Unix login of that name is still fine.
            assert!(LoginName::parse(name).is_ok());
        }
        assert_eq!(Username::parse("1x").unwrap_err().code, "invalid_field");
        assert!(Username::parse("root").is_ok());
        assert!(Username::parse("cli2").is_ok());
    }
}
