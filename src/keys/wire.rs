//! The SSH public key blob (RFC 4253 §6.6, RFC 5656, PROTOCOL.u2f), decoded strictly.
//!
//! A generic parser is lenient where the contract is not (opaque `name@domain` keys,
//! compressed EC points, errors without a position), so the four wire primitives are read
//! here with every length checked before it is trusted, and every error names the field
//! and its byte offset. The mathematics (points on curves) is left to the curve crates.

use super::algorithm::{Algorithm, Curve};
use super::error::{quoted, KeyErrorCode, KeyRejection};

/// A decoded, structurally valid key blob. Borrowed from the decoded bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyBlob<'a> {
    Ed25519 {
        point: &'a [u8; 32],
    },
    /// The ML-DSA-44 half needs no check beyond its length (see [`MLDSA44_PUBLIC_KEY_BYTES`]).
    MlDsa44Ed25519 {
        ed25519: &'a [u8; 32],
    },
    SkEd25519 {
        point: &'a [u8; 32],
        application: &'a [u8],
    },
    Ecdsa {
        curve: Curve,
        point: &'a [u8],
        application: Option<&'a [u8]>,
    },
    /// `e` and `n` are the magnitudes (no sign byte), both positive.
    Rsa {
        e: &'a [u8],
        n: &'a [u8],
    },
    Dsa {
        p: &'a [u8],
    },
}

/// A cursor over the blob. Offsets in errors are from the start of the blob.
struct Reader<'a> {
    blob: &'a [u8],
    pos: usize,
}

fn encoding(message: String) -> KeyRejection {
    KeyRejection::new(KeyErrorCode::EncodingInvalid, message)
}

impl<'a> Reader<'a> {
    fn new(blob: &'a [u8]) -> Self {
        Reader { blob, pos: 0 }
    }

    /// A `string`: a big-endian u32 length and that many bytes.
    fn string(&mut self, field: &str) -> Result<&'a [u8], KeyRejection> {
        let at = self.pos;
        let rest = &self.blob[self.pos..];
        let Some((len, body)) = rest.split_first_chunk::<4>() else {
            return Err(encoding(format!(
                "key blob is truncated: field `{field}` at byte {at} needs a 4-byte length, {} bytes left",
                rest.len()
            )));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if len > body.len() {
            return Err(encoding(format!(
                "key blob is truncated: field `{field}` at byte {at} claims {len} bytes, only {} present",
                body.len()
            )));
        }
        self.pos += 4 + len;
        Ok(&body[..len])
    }

    /// An `mpint` that must be positive (RFC 4251 §5): returns its magnitude.
    fn positive_mpint(&mut self, field: &str) -> Result<&'a [u8], KeyRejection> {
        let at = self.pos;
        match self.non_negative_mpint(field)? {
            [] => Err(encoding(format!(
                "field `{field}` at byte {at} is zero; it must be a positive number"
            ))),
            magnitude => Ok(magnitude),
        }
    }

    /// A canonical, non-negative `mpint`: its magnitude, empty for zero (the empty string is
    /// zero's canonical encoding, which OpenSSH reads as 0).
    fn non_negative_mpint(&mut self, field: &str) -> Result<&'a [u8], KeyRejection> {
        let at = self.pos;
        let bytes = self.string(field)?;
        match bytes {
            [] => Ok(bytes),
            [first, ..] if first & 0x80 != 0 => Err(encoding(format!(
                "field `{field}` at byte {at} is a negative mpint (high bit set without a leading 00 byte)"
            ))),
            [0, second, ..] if second & 0x80 != 0 => Ok(&bytes[1..]),
            [0, ..] => Err(encoding(format!(
                "field `{field}` at byte {at} is a non-canonical mpint: needless leading zero byte"
            ))),
            _ => Ok(bytes),
        }
    }

    fn finish(&self) -> Result<(), KeyRejection> {
        let left = self.blob.len() - self.pos;
        if left == 0 {
            Ok(())
        } else {
            Err(encoding(format!(
                "key blob has {left} trailing bytes after the last field (from byte {})",
                self.pos
            )))
        }
    }
}

/// Decodes a blob whose type the text says is `expected`. The type inside the blob must be
/// the same; for ECDSA the curve name must match the type.
pub fn decode(blob: &[u8], expected: Algorithm) -> Result<KeyBlob<'_>, KeyRejection> {
    let mut r = Reader::new(blob);
    let inner = r.string("key type")?;
    if inner != expected.as_str().as_bytes() {
        let what = match Algorithm::from_name(inner) {
            Some(a) => a.as_str().to_owned(),
            None => quoted(inner, 64),
        };
        return Err(KeyRejection::new(
            KeyErrorCode::TypeMismatch,
            format!("the key is written as {expected} but the key data inside says {what}",),
        ));
    }
    let key = match expected {
        Algorithm::Ed25519 => KeyBlob::Ed25519 {
            point: ed25519_point(&mut r)?,
        },
        Algorithm::SkEd25519 => {
            let point = ed25519_point(&mut r)?;
            let application = application(&mut r)?;
            KeyBlob::SkEd25519 { point, application }
        }
        Algorithm::EcdsaP256
        | Algorithm::EcdsaP384
        | Algorithm::EcdsaP521
        | Algorithm::SkEcdsaP256 => {
            let curve = expected
                .curve()
                .ok_or_else(|| encoding("no curve".into()))?;
            let name = r.string("curve name")?;
            if name != curve.ssh_name().as_bytes() {
                return Err(KeyRejection::new(
                    KeyErrorCode::TypeMismatch,
                    format!(
                        "the key is written as {expected} but its curve name is {}, not {}",
                        quoted(name, 32),
                        curve.ssh_name()
                    ),
                ));
            }
            let point = r.string("public point")?;
            let application = if expected == Algorithm::SkEcdsaP256 {
                Some(application(&mut r)?)
            } else {
                None
            };
            KeyBlob::Ecdsa {
                curve,
                point,
                application,
            }
        }
        Algorithm::Rsa => {
            // Zero is well-formed here: the RSA checks refuse it as rsa_exponent_invalid.
            let e = r.non_negative_mpint("e (public exponent)")?;
            let n = r.positive_mpint("n (modulus)")?;
            KeyBlob::Rsa { e, n }
        }
        Algorithm::MlDsa44Ed25519 => mldsa44_ed25519(&mut r)?,
        Algorithm::Dsa => {
            let p = r.positive_mpint("p")?;
            r.positive_mpint("q")?;
            r.positive_mpint("g")?;
            r.positive_mpint("y")?;
            KeyBlob::Dsa { p }
        }
    };
    r.finish()?;
    Ok(key)
}

fn ed25519_point<'a>(r: &mut Reader<'a>) -> Result<&'a [u8; 32], KeyRejection> {
    let at = r.pos;
    let bytes = r.string("public key")?;
    bytes.try_into().map_err(|_| {
        encoding(format!(
            "Ed25519 public key at byte {at} is {} bytes long; it must be exactly 32",
            bytes.len()
        ))
    })
}

/// ML-DSA-44 public key length (FIPS 204: rho, 32 bytes, then t1, 256 x 4 coefficients of 10
/// bits each, 1,280 bytes).
pub const MLDSA44_PUBLIC_KEY_BYTES: usize = 1312;

/// `string(mldsa44_pk || ed25519_pk)`, exactly 1,312 + 32 bytes, as OpenSSH 10.5 writes it
/// (`ssh-mldsa-eddsa.c`: `MLDSA44_ED25519_PK_SZ`). Every 1,312-byte string is a well-formed
/// ML-DSA-44 public key (each 10-bit t1 coefficient is in range by construction, and rho is any
/// 32 bytes), so the length is the whole check of that half; the Ed25519 half is checked as a
/// point like a plain Ed25519 key.
fn mldsa44_ed25519<'a>(r: &mut Reader<'a>) -> Result<KeyBlob<'a>, KeyRejection> {
    let at = r.pos;
    let bytes = r.string("public key")?;
    const WANT: usize = MLDSA44_PUBLIC_KEY_BYTES + 32;
    if bytes.len() != WANT {
        return Err(encoding(format!(
            "ML-DSA-44 + Ed25519 public key at byte {at} is {} bytes long; it must be exactly \
             {WANT} (1312 for ML-DSA-44, then 32 for Ed25519)",
            bytes.len()
        )));
    }
    let ed = &bytes[MLDSA44_PUBLIC_KEY_BYTES..];
    let ed25519: &[u8; 32] = ed
        .try_into()
        .map_err(|_| encoding("the Ed25519 half is not 32 bytes".into()))?;
    Ok(KeyBlob::MlDsa44Ed25519 { ed25519 })
}

fn application<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], KeyRejection> {
    let at = r.pos;
    let app = r.string("application")?;
    if app.is_empty() {
        return Err(encoding(format!(
            "security key application string at byte {at} is empty (normally \"ssh:\")"
        )));
    }
    if std::str::from_utf8(app).is_err() || app.iter().any(|b| b.is_ascii_control()) {
        return Err(encoding(format!(
            "security key application string at byte {at} is not printable text"
        )));
    }
    Ok(app)
}

/// Bit length of a big-endian magnitude without leading zero bytes.
pub fn bit_length(magnitude: &[u8]) -> u32 {
    match magnitude.first() {
        None => 0,
        Some(first) => (magnitude.len() as u32 - 1) * 8 + (8 - first.leading_zeros()),
    }
}

/// Appends an SSH `string`.
pub fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Appends a positive SSH `mpint` from a big-endian magnitude (leading zeros are dropped).
pub fn put_positive_mpint(out: &mut Vec<u8>, magnitude: &[u8]) {
    let start = magnitude
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(magnitude.len());
    let m = &magnitude[start..];
    let pad = m.first().is_some_and(|b| b & 0x80 != 0);
    out.extend_from_slice(&((m.len() + usize::from(pad)) as u32).to_be_bytes());
    if pad {
        out.push(0);
    }
    out.extend_from_slice(m);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_length_counts_from_the_highest_set_bit() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[1]), 1);
        assert_eq!(bit_length(&[0x80, 0]), 16);
        assert_eq!(bit_length(&[0x01, 0, 1]), 17);
    }

    #[test]
    fn mpint_round_trip_adds_sign_byte_only_when_needed() {
        let mut out = Vec::new();
        put_positive_mpint(&mut out, &[0, 0x80, 1]);
        assert_eq!(out, [0, 0, 0, 3, 0, 0x80, 1]);
        let mut r = Reader::new(&out);
        assert_eq!(r.positive_mpint("x").unwrap(), &[0x80, 1]);
    }

    #[test]
    fn truncated_length_names_field_and_offset() {
        let err = Reader::new(&[0, 0, 0, 9, 1])
            .string("key type")
            .unwrap_err();
        assert_eq!(err.code, KeyErrorCode::EncodingInvalid);
        assert!(
            err.message
                .contains("`key type` at byte 0 claims 9 bytes, only 1"),
            "{}",
            err.message
        );
    }
}
