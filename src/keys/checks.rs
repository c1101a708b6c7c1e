//! Checks on a structurally valid blob: is the key mathematically possible, and does the
//! policy allow it. Points are checked by the curve crates (curve25519-dalek, p256/p384/p521).

use super::algorithm::{Algorithm, Curve};
use super::ed25519::{self, Ed25519Fault};
use super::error::{KeyErrorCode, KeyRejection};
use super::policy::Policy;
use super::wire::{bit_length, KeyBlob};

/// Checks the key and returns its size in bits (RSA/DSA modulus, ECDSA curve, 256 for Ed25519
/// and the ML-DSA-44 + Ed25519 hybrid).
pub fn check_key(
    algorithm: Algorithm,
    key: &KeyBlob<'_>,
    policy: &Policy,
) -> Result<u32, KeyRejection> {
    let bits = match *key {
        KeyBlob::Ed25519 { point } | KeyBlob::SkEd25519 { point, .. } => {
            check_ed25519(point)?;
            256
        }
        // OpenSSH reports 256 bits for the hybrid (its `keybits`), as for Ed25519.
        KeyBlob::MlDsa44Ed25519 { ed25519, .. } => {
            check_ed25519(ed25519)?;
            256
        }
        KeyBlob::Ecdsa { curve, point, .. } => {
            check_ecdsa(curve, point)?;
            curve.bits()
        }
        KeyBlob::Rsa { e, n } => check_rsa(e, n, policy)?,
        KeyBlob::Dsa { p } => bit_length(p),
    };
    if !policy.allowed_algorithms.contains(algorithm) {
        return Err(KeyRejection::new(
            KeyErrorCode::AlgorithmDisallowed,
            format!(
                "{algorithm} keys are not allowed by this portal's policy; allowed: {}",
                policy
                    .allowed_algorithms
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .with_bits(bits));
    }
    Ok(bits)
}

fn check_ed25519(bytes: &[u8; 32]) -> Result<(), KeyRejection> {
    let why = match ed25519::check_point(bytes) {
        Ok(()) => return Ok(()),
        Err(Ed25519Fault::NonCanonical) => {
            "is a non-canonical encoding (y is not reduced mod 2^255-19)"
        }
        Err(Ed25519Fault::NotOnCurve) => "is not a point on the curve",
        Err(Ed25519Fault::SmallOrder) => {
            "is a small-order point (order 1, 2, 4 or 8), which no real key has"
        }
    };
    Err(KeyRejection::new(
        KeyErrorCode::Ed25519PointInvalid,
        format!("the Ed25519 public key {why}"),
    ))
}

fn check_ecdsa(curve: Curve, point: &[u8]) -> Result<(), KeyRejection> {
    let invalid = |why: String| KeyRejection::new(KeyErrorCode::EcdsaPointInvalid, why);
    let expected = 1 + 2 * curve.field_bytes();
    match point {
        [0] => return Err(invalid("the ECDSA public point is the point at infinity".into())),
        [0x02 | 0x03, ..] => {
            return Err(invalid(format!(
                "the ECDSA public point is compressed ({} bytes); SSH requires the uncompressed form (04 || X || Y)",
                point.len()
            )))
        }
        [0x04, ..] if point.len() == expected => {}
        _ => {
            return Err(invalid(format!(
                "the ECDSA public point is not an uncompressed {} point: {} bytes, expected {expected} starting with 04",
                curve.ssh_name(),
                point.len()
            )))
        }
    }
    let on_curve = match curve {
        Curve::P256 => p256::PublicKey::from_sec1_bytes(point).is_ok(),
        Curve::P384 => p384::PublicKey::from_sec1_bytes(point).is_ok(),
        Curve::P521 => p521::PublicKey::from_sec1_bytes(point).is_ok(),
    };
    if on_curve {
        Ok(())
    } else {
        Err(invalid(format!(
            "the ECDSA public point is not on the {} curve",
            curve.ssh_name()
        )))
    }
}

fn check_rsa(e: &[u8], n: &[u8], policy: &Policy) -> Result<u32, KeyRejection> {
    let bits = bit_length(n);
    let modulus =
        |why: String| KeyRejection::new(KeyErrorCode::RsaModulusInvalid, why).with_bits(bits);
    let exponent =
        |why: String| KeyRejection::new(KeyErrorCode::RsaExponentInvalid, why).with_bits(bits);
    // n is positive and e non-negative (empty: zero): the wire decoder made sure.
    let n_last = n.last().copied().unwrap_or(0);
    let e_last = e.last().copied().unwrap_or(0);
    if n_last & 1 == 0 {
        return Err(modulus(format!(
            "the RSA modulus ({bits} bits) is even, so it is not a product of two odd primes"
        )));
    }
    let e_bits = bit_length(e);
    if e_bits <= 2 && e_last < 3 {
        return Err(exponent(format!(
            "the RSA public exponent is {}; it must be at least 3",
            e.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b))
        )));
    }
    if e_last & 1 == 0 {
        return Err(exponent(
            "the RSA public exponent is even; it must be odd (usually 65537)".into(),
        ));
    }
    if e_bits > policy.max_rsa_exponent_bits {
        return Err(exponent(format!(
            "the RSA public exponent has {e_bits} bits; policy allows at most {}",
            policy.max_rsa_exponent_bits
        )));
    }
    if e_bits > bits || (e_bits == bits && e >= n) {
        return Err(modulus(
            "the RSA modulus is not larger than the public exponent".into(),
        ));
    }
    if bits < policy.min_rsa_bits {
        return Err(KeyRejection::new(
            KeyErrorCode::KeyTooSmall,
            format!(
                "this RSA key has {bits} bits; policy requires at least {} (make a new key: ssh-keygen -t ed25519)",
                policy.min_rsa_bits
            ),
        )
        .with_bits(bits));
    }
    if bits > policy.max_rsa_bits {
        return Err(KeyRejection::new(
            KeyErrorCode::KeyTooLarge,
            format!(
                "this RSA key has {bits} bits; policy allows at most {}",
                policy.max_rsa_bits
            ),
        )
        .with_bits(bits));
    }
    Ok(bits)
}
