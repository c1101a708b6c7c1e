//! The key validator: one pure function of (input bytes, policy).
//!
//! Every key that enters keyportal and every key it hands out passes through here. There is no
//! state outside the arguments: no cache, no global, nothing that could make two processes (or
//! two calls) disagree about the same input. The contract is `shared/spec/key-validation.md`.
//!
//! Pipeline: size limit → BOM → empty → private key? → input form (one-line, RFC 4716, PEM) →
//! type name → base64 → strict wire decoding ([`wire`]) → point / RSA / policy checks
//! ([`checks`]) → comment → fingerprints of the decoded blob.

pub mod algorithm;
mod checks;
pub mod compromised;
mod ed25519;
mod error;
mod fingerprint;
pub use fingerprint::decode_sha256 as decode_sha256_fingerprint;
mod line;
pub mod options;
mod pem;
pub mod policy;
mod rfc4716;
mod shape;
pub mod shared_primes;
mod text;
mod wire;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Serialize;

pub use algorithm::{Algorithm, AlgorithmSet};
pub use compromised::CompromiseReason;
pub use error::{KeyErrorCode, KeyRejection};
pub use line::{write_options, AuthorizedKeysLine};
pub use options::{KeyOption, KeyOptions};
pub use policy::Policy;
pub use shape::KeyShape;

use algorithm::is_certificate_type;
use error::quoted;
use text::Lines;

/// A key that passed every check. Built only by the validator, and read-only after: its
/// fields are private, so no caller can change a key after it was judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidatedKey {
    algorithm: Algorithm,
    bits: u32,
    /// Bit length of the RSA public exponent (0 for other algorithms).
    rsa_exponent_bits: u32,
    /// Canonical one-line form `type base64`, encoded from the decoded key.
    public_key: String,
    /// The comment (may be empty), valid UTF-8 without control characters.
    comment: String,
    fingerprint_sha256: String,
    fingerprint_md5: String,
    /// authorized_keys options written before the key (only where the caller accepts them).
    #[serde(skip_serializing_if = "KeyOptions::is_empty")]
    options: KeyOptions,
    format: InputFormat,
}

impl ValidatedKey {
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
    pub fn bits(&self) -> u32 {
        self.bits
    }
    /// Canonical one-line form `type base64`.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }
    pub fn comment(&self) -> &str {
        &self.comment
    }
    pub fn fingerprint_sha256(&self) -> &str {
        &self.fingerprint_sha256
    }
    pub fn fingerprint_md5(&self) -> &str {
        &self.fingerprint_md5
    }
    pub fn options(&self) -> &KeyOptions {
        &self.options
    }
    pub fn format(&self) -> InputFormat {
        self.format
    }
    /// What the policy judges about this key (see [`KeyShape`]).
    pub fn shape(&self) -> KeyShape {
        KeyShape {
            algorithm: self.algorithm.as_str().to_owned(),
            bits: self.bits,
            rsa_exponent_bits: self.rsa_exponent_bits,
            comment_bytes: self.comment.len() as u32,
            line_bytes: (self.public_key.len()
                + usize::from(!self.comment.is_empty())
                + self.comment.len()) as u32,
        }
    }
}

/// What re-validating a stored key found: the fingerprint of its bytes (reads compare it with
/// the registered one) and its shape (reads compare it with the stored columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKeyCheck {
    pub fingerprint_sha256: String,
    algorithm: Algorithm,
    bits: u32,
    rsa_exponent_bits: u32,
    comment_bytes: u32,
    line_bytes: u32,
}

impl StoredKeyCheck {
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Built only when asked: authorized_keys needs the verdict, not the shape.
    pub fn shape(&self) -> KeyShape {
        KeyShape {
            algorithm: self.algorithm.as_str().to_owned(),
            bits: self.bits,
            rsa_exponent_bits: self.rsa_exponent_bits,
            comment_bytes: self.comment_bytes,
            line_bytes: self.line_bytes,
        }
    }
}

/// What the database holds about a stored key besides its text, passed in with it: inputs of
/// the verdict like the policy, so the verdict stays a pure function of its arguments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredFacts<'a> {
    /// The computed checks' verdict stored with the key, when the checks of this version
    /// ([`compromised::CHECKS_VERSION`]) wrote it; `None` runs them.
    pub computed: Option<Option<CompromiseReason>>,
    /// The blocklist entry for the key's fingerprint, if there is one.
    pub blocklisted: Option<BlockEntry<'a>>,
}

/// A blocklist entry as the validator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockEntry<'a> {
    /// `Blocklisted` (added by a person) or `SharedPrime` (found by the scan).
    pub kind: CompromiseReason,
    /// Why it was added, in the words of whoever added it.
    pub reason: &'a str,
}

impl BlockEntry<'_> {
    pub fn rejection(&self) -> KeyRejection {
        KeyRejection::compromised(self.kind, Some(self.reason))
    }
}

/// The form the key was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    Openssh,
    Rfc4716,
    Pem,
}

/// Whether authorized_keys options may precede the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionsMode {
    /// A single key is expected: options are `options_not_allowed`.
    Reject,
    /// Options are parsed, checked and returned (authorized_keys import, grants).
    Accept,
}

/// Validates one public key, in any accepted form, with no options allowed.
pub fn validate(input: &[u8], policy: &Policy) -> Result<ValidatedKey, KeyRejection> {
    validate_with(input, policy, OptionsMode::Reject)
}

/// Validates one public key, in any accepted form.
pub fn validate_with(
    input: &[u8],
    policy: &Policy,
    mode: OptionsMode,
) -> Result<ValidatedKey, KeyRejection> {
    if input.len() > policy.max_input_bytes {
        return Err(KeyRejection::new(
            KeyErrorCode::TooLong,
            format!(
                "the input is {} bytes; a public key is at most {} bytes",
                input.len(),
                policy.max_input_bytes
            ),
        ));
    }
    let input = text::strip_bom(input);
    let mut lines = Lines::new(input);
    let Some((_, first)) = lines.clone().next() else {
        return Err(KeyRejection::new(
            KeyErrorCode::Empty,
            "no key was given: the input is empty",
        ));
    };
    if let Some(kind) = text::private_key_kind(input) {
        return Err(private_key_rejection(kind));
    }
    if first.starts_with(rfc4716::BEGIN) {
        let block = rfc4716::parse(lines)?;
        let blob = decode_base64(&block.body)?;
        let (_, algorithm) = read_type(&blob)?;
        return finish(
            algorithm,
            &blob,
            &block.comment,
            KeyOptions::default(),
            policy,
            InputFormat::Rfc4716,
        );
    }
    if first.starts_with(b"-----BEGIN ") {
        let (algorithm, blob) = pem::to_ssh_blob(text::trim(input))?;
        return finish(
            algorithm,
            &blob,
            b"",
            KeyOptions::default(),
            policy,
            InputFormat::Pem,
        );
    }

    let candidates: Vec<(usize, &[u8])> = lines
        .by_ref()
        .filter(|(_, l)| !l.starts_with(b"#"))
        .collect();
    match candidates.as_slice() {
        [] => Err(KeyRejection::new(
            KeyErrorCode::Empty,
            "the input holds only comment lines, no key",
        )),
        [(_, line)] => validate_line(line, policy, mode),
        many => {
            let keys = many
                .iter()
                .filter(|(_, l)| text::looks_like_key_line(l))
                .count();
            if keys >= 2 {
                Err(KeyRejection::new(
                    KeyErrorCode::MultipleKeys,
                    format!("the input holds {keys} keys on separate lines; add one key at a time (or use the bulk import)"),
                ))
            } else {
                Err(KeyRejection::new(
                    KeyErrorCode::UnrecognizedFormat,
                    format!(
                        "the input has {} lines of text; an OpenSSH public key is a single line \"type base64 [comment]\"",
                        many.len()
                    ),
                ))
            }
        }
    }
}

/// A key named by a blocklist entry: its canonical `type base64` form and SHA256 fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIdentity {
    pub public_key: String,
    pub fingerprint_sha256: String,
}

/// Identifies a one-line public key (`type base64 [comment]`) checked only for being a
/// well-formed key: type, base64 and wire encoding, no point, size or policy checks. A
/// blocklist entry needs the fingerprint of keys the validator itself may refuse.
pub fn identify(line: &[u8]) -> Result<KeyIdentity, KeyRejection> {
    let DecodedLine {
        algorithm, blob, ..
    } = decode_key_line(text::trim(line))?;
    let mut public_key =
        String::with_capacity(algorithm.as_str().len() + 1 + blob.len().div_ceil(3) * 4);
    public_key.push_str(algorithm.as_str());
    public_key.push(' ');
    STANDARD.encode_string(&blob, &mut public_key);
    Ok(KeyIdentity {
        public_key,
        fingerprint_sha256: fingerprint::sha256(&blob),
    })
}

/// A one-line key (no options) that decodes: the common part of [`identify`],
/// [`computed_checks`] and [`rsa_modulus`].
struct DecodedLine {
    algorithm: Algorithm,
    blob: Vec<u8>,
    /// The RSA modulus (big-endian magnitude), for an RSA key.
    rsa_modulus: Option<Vec<u8>>,
}

fn decode_key_line(line: &[u8]) -> Result<DecodedLine, KeyRejection> {
    let parts = text::split_key_line(line)?;
    if parts.options.is_some() {
        return Err(KeyRejection::new(
            KeyErrorCode::OptionsNotAllowed,
            "remove the authorized_keys options before the key type",
        ));
    }
    let algorithm = Algorithm::from_name(parts.type_name).ok_or_else(|| {
        KeyRejection::new(
            KeyErrorCode::UnknownAlgorithm,
            format!(
                "{} is not an SSH public key type",
                quoted(parts.type_name, 40)
            ),
        )
    })?;
    let blob = decode_base64(parts.body)?;
    let modulus =
        match wire::decode(&blob, algorithm).map_err(|e| e.with_algorithm(algorithm.as_str()))? {
            wire::KeyBlob::Rsa { n, .. } => Some(n.to_vec()),
            _ => None,
        };
    Ok(DecodedLine {
        algorithm,
        blob,
        rsa_modulus: modulus,
    })
}

/// The computed compromised-key checks alone, on a stored canonical key (`type base64`): what
/// the `compromise` column of a key holds. A key that does not decode gets an error; the full
/// validation of every read refuses it anyway.
pub fn computed_checks(public_key: &str) -> Result<Option<CompromiseReason>, KeyRejection> {
    Ok(decode_key_line(public_key.as_bytes())?
        .rsa_modulus
        .and_then(|n| compromised::check_rsa_modulus(&n)))
}

/// The RSA modulus (big-endian magnitude) of a stored canonical key, if it is an RSA key that
/// decodes: the shared-prime scan's input.
pub fn rsa_modulus(public_key: &str) -> Option<Vec<u8>> {
    decode_key_line(public_key.as_bytes()).ok()?.rsa_modulus
}

/// Whether `text` is a SHA256 fingerprint as `ssh-keygen -l -E sha256` prints it: `SHA256:`
/// and the unpadded base64 of 32 bytes.
pub fn is_sha256_fingerprint(text: &str) -> bool {
    text.strip_prefix("SHA256:").is_some_and(|b64| {
        b64.len() == 43
            && base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(b64)
                .is_ok_and(|d| d.len() == 32)
    })
}

/// One line of an authorized_keys file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineVerdict {
    /// 1-based line number in the file.
    pub line: usize,
    pub result: Result<ValidatedKey, KeyRejection>,
}

/// Judges every line of an authorized_keys file on its own (options accepted); blank lines and
/// `#` comments are skipped. A file that holds a private key is refused whole, so that no part
/// of it is echoed back line by line.
pub fn validate_authorized_keys(
    input: &[u8],
    policy: &Policy,
) -> Result<Vec<LineVerdict>, KeyRejection> {
    Ok(authorized_keys_verdicts(input, policy)?.collect())
}

/// The same, one line at a time: nothing is judged before it is asked for, so a caller can
/// write each verdict out before the next line is read.
pub fn authorized_keys_verdicts<'a>(
    input: &'a [u8],
    policy: &'a Policy,
) -> Result<impl Iterator<Item = LineVerdict> + 'a, KeyRejection> {
    let input = text::strip_bom(input);
    if let Some(kind) = text::private_key_kind(input) {
        return Err(private_key_rejection(kind));
    }
    Ok(Lines::new(input)
        .filter(|(_, l)| !l.starts_with(b"#"))
        .map(move |(line, text)| LineVerdict {
            line,
            result: if text.len() > policy.max_input_bytes {
                Err(KeyRejection::new(
                    KeyErrorCode::TooLong,
                    format!(
                        "the line is {} bytes; at most {} are allowed",
                        text.len(),
                        policy.max_input_bytes
                    ),
                ))
            } else {
                validate_line(text, policy, OptionsMode::Accept)
            },
        }))
}

fn private_key_rejection(kind: &str) -> KeyRejection {
    KeyRejection::new(
        KeyErrorCode::PrivateKey,
        format!(
            "this is {kind}, which must never leave your machine; it was not stored. \
             Paste the public key instead: the .pub file next to it (e.g. ~/.ssh/id_ed25519.pub)"
        ),
    )
}

fn validate_line(
    line: &[u8],
    policy: &Policy,
    mode: OptionsMode,
) -> Result<ValidatedKey, KeyRejection> {
    let parts = text::split_key_line(line)?;
    let comment = parts.comment;
    judge_line(
        parts,
        comment,
        policy,
        mode,
        Derive::All,
        &StoredFacts::default(),
    )
}

/// Re-validation of a stored key, as every read does: its canonical `type base64` form and its
/// comment under `policy`. The same checks as [`validate`] on `"{public_key} {comment}"`; only
/// the SHA-256 fingerprint is computed.
pub fn validate_stored(
    public_key: &str,
    comment: &str,
    policy: &Policy,
    facts: &StoredFacts<'_>,
) -> Result<StoredKeyCheck, KeyRejection> {
    let len = public_key.len() + usize::from(!comment.is_empty()) + comment.len();
    if len > policy.max_input_bytes {
        return Err(KeyRejection::new(
            KeyErrorCode::TooLong,
            format!(
                "the key is {len} bytes; at most {} are allowed",
                policy.max_input_bytes
            ),
        ));
    }
    let parts = text::split_key_line(public_key.as_bytes())?;
    if !parts.comment.is_empty() {
        return Err(KeyRejection::new(
            KeyErrorCode::UnrecognizedFormat,
            "the stored key holds more than `type base64`",
        ));
    }
    judge_line(
        parts,
        comment.as_bytes(),
        policy,
        OptionsMode::Reject,
        Derive::Sha256Only,
        facts,
    )
    .map(|k| StoredKeyCheck {
        algorithm: k.algorithm,
        bits: k.bits,
        rsa_exponent_bits: k.rsa_exponent_bits,
        // The comment passed its checks whole; the verdict does not copy it (Derive::Sha256Only).
        comment_bytes: comment.len() as u32,
        line_bytes: len as u32,
        fingerprint_sha256: k.fingerprint_sha256,
    })
}

/// What a verdict produces besides itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Derive {
    /// What a new key is stored with: its canonical text, comment and both fingerprints.
    All,
    /// A read's re-validation of a stored key: only the SHA-256 fingerprint, which the caller
    /// compares with the stored one. The text and comment it would derive are the stored ones
    /// (the decoder accepts only canonical base64), so they are left empty, not built again:
    /// at 10,000 keys per authorized_keys that is 20,000 strings per login.
    Sha256Only,
}

fn judge_line(
    parts: text::KeyLine<'_>,
    comment: &[u8],
    policy: &Policy,
    mode: OptionsMode,
    derive: Derive,
    facts: &StoredFacts<'_>,
) -> Result<ValidatedKey, KeyRejection> {
    let type_str = String::from_utf8_lossy(parts.type_name);
    let options = match (parts.options, mode) {
        (Some(_), OptionsMode::Reject) => {
            return Err(KeyRejection::new(
                KeyErrorCode::OptionsNotAllowed,
                "authorized_keys options are written before the key; remove everything before the key type",
            )
            .with_algorithm(&type_str))
        }
        (opts, _) => opts.unwrap_or_default(),
    };
    if is_certificate_type(parts.type_name) {
        return Err(KeyRejection::new(
            KeyErrorCode::CertificateNotAllowed,
            format!(
                "{} is an OpenSSH certificate, not a plain key; certificates are trusted through TrustedUserCAKeys. Add the plain public key",
                quoted(parts.type_name, 60)
            ),
        )
        .with_algorithm(&type_str));
    }
    let Some(algorithm) = Algorithm::from_name(parts.type_name) else {
        return Err(KeyRejection::new(
            KeyErrorCode::UnknownAlgorithm,
            format!(
                "{} is not an SSH public key type (known: ssh-ed25519, ssh-mldsa44-ed25519@openssh.com, ecdsa-sha2-nistp256/384/521, ssh-rsa, and the sk- security-key types)",
                quoted(parts.type_name, 40)
            ),
        )
        .with_algorithm(&type_str));
    };
    let blob = decode_base64(parts.body).map_err(|e| e.with_algorithm(algorithm.as_str()))?;
    finish_with(
        algorithm,
        &blob,
        comment,
        options,
        policy,
        InputFormat::Openssh,
        derive,
        facts,
    )
}

fn decode_base64(body: &[u8]) -> Result<Vec<u8>, KeyRejection> {
    STANDARD.decode(body).map_err(|e| {
        let why = match e {
            base64::DecodeError::InvalidByte(at, b'=') => {
                format!("'=' padding at position {} is misplaced or too long (padding only ends the data: at most one '=' per missing byte)", at + 1)
            }
            base64::DecodeError::InvalidByte(at, b) => {
                format!("character {} at position {} is not base64", quoted(&[b], 4), at + 1)
            }
            base64::DecodeError::InvalidLength(len) => {
                format!("its length ({len} characters) is not a valid base64 length")
            }
            base64::DecodeError::InvalidLastSymbol(at, _) => {
                format!("the last character (position {}) has bits that a canonical encoding leaves zero", at + 1)
            }
            base64::DecodeError::InvalidPadding => "its '=' padding is wrong (missing, extra or misplaced)".to_owned(),
        };
        KeyRejection::new(KeyErrorCode::Base64Invalid, format!("the key data is not valid base64: {why}"))
    })
}

/// The type named inside a blob (RFC 4716 and PEM carry no outer type name).
fn read_type(blob: &[u8]) -> Result<(&[u8], Algorithm), KeyRejection> {
    let name = blob
        .split_first_chunk::<4>()
        .and_then(|(len, rest)| rest.get(..u32::from_be_bytes(*len) as usize))
        .ok_or_else(|| {
            KeyRejection::new(
                KeyErrorCode::EncodingInvalid,
                "the key data is too short to hold a key type",
            )
        })?;
    if is_certificate_type(name) {
        return Err(KeyRejection::new(
            KeyErrorCode::CertificateNotAllowed,
            "this is an OpenSSH certificate, not a plain key; add the plain public key",
        )
        .with_algorithm(&String::from_utf8_lossy(name)));
    }
    let algorithm = Algorithm::from_name(name).ok_or_else(|| {
        KeyRejection::new(
            KeyErrorCode::UnknownAlgorithm,
            format!("{} is not an SSH public key type", quoted(name, 40)),
        )
    })?;
    Ok((name, algorithm))
}

fn finish(
    algorithm: Algorithm,
    blob: &[u8],
    comment: &[u8],
    options: KeyOptions,
    policy: &Policy,
    format: InputFormat,
) -> Result<ValidatedKey, KeyRejection> {
    finish_with(
        algorithm,
        blob,
        comment,
        options,
        policy,
        format,
        Derive::All,
        &StoredFacts::default(),
    )
}

// The validator's one inner step: each argument is a separate input of the verdict.
#[allow(clippy::too_many_arguments)]
fn finish_with(
    algorithm: Algorithm,
    blob: &[u8],
    comment: &[u8],
    options: KeyOptions,
    policy: &Policy,
    format: InputFormat,
    derive: Derive,
    facts: &StoredFacts<'_>,
) -> Result<ValidatedKey, KeyRejection> {
    let tag = |e: KeyRejection| e.with_algorithm(algorithm.as_str());
    let decoded = wire::decode(blob, algorithm).map_err(tag)?;
    let bits = checks::check_key(algorithm, &decoded, policy).map_err(tag)?;
    let rsa_exponent_bits = match decoded {
        wire::KeyBlob::Rsa { e, .. } => wire::bit_length(e),
        _ => 0,
    };
    let comment = check_comment(comment, policy).map_err(|e| tag(e).with_bits(bits))?;
    // Judged last: the contract gives a key that also fails a format or policy check that code.
    let computed = match (facts.computed, &decoded) {
        (Some(known), _) => known,
        (None, wire::KeyBlob::Rsa { n, .. }) => compromised::check_rsa_modulus(n),
        (None, _) => None,
    };
    if let Some(reason) = computed {
        return Err(tag(KeyRejection::compromised(reason, None)).with_bits(bits));
    }
    if let Some(entry) = facts.blocklisted {
        return Err(tag(entry.rejection()).with_bits(bits));
    }
    let (public_key, comment, fingerprint_md5) = match derive {
        Derive::All => {
            // The blob was checked field by field with no trailing bytes, so its bytes are
            // exactly the canonical encoding of the parsed key: re-encoding it gives the
            // canonical form.
            let mut public_key =
                String::with_capacity(algorithm.as_str().len() + 1 + blob.len().div_ceil(3) * 4);
            public_key.push_str(algorithm.as_str());
            public_key.push(' ');
            STANDARD.encode_string(blob, &mut public_key);
            (public_key, comment.to_owned(), fingerprint::md5(blob))
        }
        Derive::Sha256Only => (String::new(), String::new(), String::new()),
    };
    Ok(ValidatedKey {
        algorithm,
        bits,
        rsa_exponent_bits,
        public_key,
        comment,
        fingerprint_sha256: fingerprint::sha256(blob),
        fingerprint_md5,
        options,
        format,
    })
}

fn check_comment<'c>(comment: &'c [u8], policy: &Policy) -> Result<&'c str, KeyRejection> {
    let invalid = |why: String| KeyRejection::new(KeyErrorCode::CommentInvalid, why);
    if comment.len() > policy.max_comment_bytes {
        return Err(invalid(format!(
            "the comment is {} bytes; at most {} are allowed",
            comment.len(),
            policy.max_comment_bytes
        )));
    }
    let text = std::str::from_utf8(comment).map_err(|e| {
        invalid(format!(
            "the comment is not UTF-8 text (bad byte at position {})",
            e.valid_up_to() + 1
        ))
    })?;
    if let Some((at, c)) = text.char_indices().find(|(_, c)| c.is_control()) {
        return Err(invalid(format!(
            "the comment contains the control character U+{:04X} at byte {}",
            c as u32,
            at + 1
        )));
    }
    Ok(text)
}
