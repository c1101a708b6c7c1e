//! Rejections: a stable code (the contract in `shared/spec/key-validation.md`) plus a message
//! naming the exact cause. Every code maps to one cause; nothing is ever turned into another.

use std::fmt;

use serde::Serialize;

use super::compromised::CompromiseReason;

/// The stable rejection codes of the key-validation contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyErrorCode {
    Empty,
    TooLong,
    MultipleKeys,
    PrivateKey,
    UnrecognizedFormat,
    UnknownAlgorithm,
    Base64Invalid,
    EncodingInvalid,
    TypeMismatch,
    KeyTooSmall,
    KeyTooLarge,
    RsaExponentInvalid,
    RsaModulusInvalid,
    EcdsaPointInvalid,
    Ed25519PointInvalid,
    AlgorithmDisallowed,
    CertificateNotAllowed,
    OptionsNotAllowed,
    OptionsInvalid,
    CommentInvalid,
    KeyCompromised,
}

impl KeyErrorCode {
    pub const ALL: [KeyErrorCode; 21] = [
        Self::Empty,
        Self::TooLong,
        Self::MultipleKeys,
        Self::PrivateKey,
        Self::UnrecognizedFormat,
        Self::UnknownAlgorithm,
        Self::Base64Invalid,
        Self::EncodingInvalid,
        Self::TypeMismatch,
        Self::KeyTooSmall,
        Self::KeyTooLarge,
        Self::RsaExponentInvalid,
        Self::RsaModulusInvalid,
        Self::EcdsaPointInvalid,
        Self::Ed25519PointInvalid,
        Self::AlgorithmDisallowed,
        Self::CertificateNotAllowed,
        Self::OptionsNotAllowed,
        Self::OptionsInvalid,
        Self::CommentInvalid,
        Self::KeyCompromised,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLong => "too_long",
            Self::MultipleKeys => "multiple_keys",
            Self::PrivateKey => "private_key",
            Self::UnrecognizedFormat => "unrecognized_format",
            Self::UnknownAlgorithm => "unknown_algorithm",
            Self::Base64Invalid => "base64_invalid",
            Self::EncodingInvalid => "encoding_invalid",
            Self::TypeMismatch => "type_mismatch",
            Self::KeyTooSmall => "key_too_small",
            Self::KeyTooLarge => "key_too_large",
            Self::RsaExponentInvalid => "rsa_exponent_invalid",
            Self::RsaModulusInvalid => "rsa_modulus_invalid",
            Self::EcdsaPointInvalid => "ecdsa_point_invalid",
            Self::Ed25519PointInvalid => "ed25519_point_invalid",
            Self::AlgorithmDisallowed => "algorithm_disallowed",
            Self::CertificateNotAllowed => "certificate_not_allowed",
            Self::OptionsNotAllowed => "options_not_allowed",
            Self::OptionsInvalid => "options_invalid",
            Self::CommentInvalid => "comment_invalid",
            Self::KeyCompromised => "key_compromised",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for KeyErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a key was refused. `algorithm` and `bits` are filled in where the input got far enough
/// to reveal them (an RSA key that is too small still says it is `ssh-rsa` of 1024 bits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRejection {
    pub code: KeyErrorCode,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bits: Option<u32>,
    /// Only with `key_compromised`: what made the key compromised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<CompromiseReason>,
}

impl KeyRejection {
    pub fn new(code: KeyErrorCode, message: impl Into<String>) -> Self {
        KeyRejection {
            code,
            message: message.into(),
            algorithm: None,
            bits: None,
            reason: None,
        }
    }

    /// `key_compromised` with its reason; `detail` adds what is known about this case (the
    /// blocklist entry's reason text, the other key of a shared prime).
    pub fn compromised(reason: CompromiseReason, detail: Option<&str>) -> Self {
        let message = match detail {
            Some(d) if !d.is_empty() => format!("{} ({d})", reason.explain()),
            _ => reason.explain().to_owned(),
        };
        KeyRejection {
            reason: Some(reason),
            ..Self::new(KeyErrorCode::KeyCompromised, message)
        }
    }

    pub fn with_algorithm(mut self, algorithm: &str) -> Self {
        if self.algorithm.is_none() {
            self.algorithm = Some(algorithm.to_owned());
        }
        self
    }

    pub fn with_bits(mut self, bits: u32) -> Self {
        self.bits = Some(bits);
        self
    }
}

impl fmt::Display for KeyRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for KeyRejection {}

/// Shows a piece of user input inside an error message: at most `max` characters, with
/// control characters escaped so a message can never break a log line or a terminal.
pub(crate) fn quoted(input: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(input);
    let mut out = String::with_capacity(max.min(text.len()) + 2);
    out.push('"');
    for (n, ch) in text.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        if ch.is_control() {
            out.extend(ch.escape_default());
        } else {
            out.push(ch);
        }
    }
    out.push('"');
    out
}
