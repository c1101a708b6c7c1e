//! PEM public keys: SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`: RSA, EC P-256/384/521, Ed25519)
//! and PKCS#1 (`BEGIN RSA PUBLIC KEY`), as `ssh-keygen -e -m PKCS8|PEM` writes them.
//! DER decoding is done by the RustCrypto `der`/`spki`/`pkcs1` crates; the result is an SSH
//! key blob that then passes the same checks as any other key.

use der::asn1::ObjectIdentifier;
use der::Decode;

use super::algorithm::{Algorithm, Curve};
use super::error::{KeyErrorCode, KeyRejection};
use super::wire::{put_positive_mpint, put_string};

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const SECP521R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");

fn encoding(why: String) -> KeyRejection {
    KeyRejection::new(KeyErrorCode::EncodingInvalid, why)
}

/// Turns one PEM document into (algorithm, SSH key blob).
pub fn to_ssh_blob(pem: &[u8]) -> Result<(Algorithm, Vec<u8>), KeyRejection> {
    let (label, der) = pem_rfc7468::decode_vec(pem).map_err(|e| match e {
        pem_rfc7468::Error::Base64(e) => KeyRejection::new(
            KeyErrorCode::Base64Invalid,
            format!("the PEM body is not valid base64: {e}"),
        ),
        e => KeyRejection::new(
            KeyErrorCode::UnrecognizedFormat,
            format!("malformed PEM block: {e}"),
        ),
    })?;
    match label {
        "PUBLIC KEY" => from_spki(&der),
        "RSA PUBLIC KEY" => {
            let key = pkcs1::RsaPublicKey::from_der(&der)
                .map_err(|e| encoding(format!("the PKCS#1 RSA public key is malformed DER: {e}")))?;
            Ok((Algorithm::Rsa, rsa_blob(key.public_exponent.as_bytes(), key.modulus.as_bytes())))
        }
        other => Err(KeyRejection::new(
            KeyErrorCode::UnrecognizedFormat,
            format!("a PEM block labelled {other:?} is not a public key; paste an SSH public key (.pub file)"),
        )),
    }
}

fn from_spki(der: &[u8]) -> Result<(Algorithm, Vec<u8>), KeyRejection> {
    let spki = spki::SubjectPublicKeyInfoRef::from_der(der)
        .map_err(|e| encoding(format!("the SubjectPublicKeyInfo is malformed DER: {e}")))?;
    let key = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| encoding("the public key BIT STRING has unused bits".into()))?;
    let oid = spki.algorithm.oid;
    if oid == RSA_ENCRYPTION {
        let rsa = pkcs1::RsaPublicKey::from_der(key).map_err(|e| {
            encoding(format!(
                "the RSA public key inside the SubjectPublicKeyInfo is malformed: {e}"
            ))
        })?;
        return Ok((
            Algorithm::Rsa,
            rsa_blob(rsa.public_exponent.as_bytes(), rsa.modulus.as_bytes()),
        ));
    }
    if oid == ED25519 {
        let mut blob = Vec::with_capacity(51);
        put_string(&mut blob, Algorithm::Ed25519.as_str().as_bytes());
        put_string(&mut blob, key);
        return Ok((Algorithm::Ed25519, blob));
    }
    if oid == EC_PUBLIC_KEY {
        let curve_oid: ObjectIdentifier = spki
            .algorithm
            .parameters_oid()
            .map_err(|e| encoding(format!("the EC key does not name its curve: {e}")))?;
        let (algorithm, curve) = match curve_oid {
            c if c == SECP256R1 => (Algorithm::EcdsaP256, Curve::P256),
            c if c == SECP384R1 => (Algorithm::EcdsaP384, Curve::P384),
            c if c == SECP521R1 => (Algorithm::EcdsaP521, Curve::P521),
            c => {
                return Err(KeyRejection::new(
                    KeyErrorCode::UnknownAlgorithm,
                    format!(
                    "EC curve {c} has no SSH key type (SSH supports nistp256, nistp384, nistp521)"
                ),
                ))
            }
        };
        let mut blob = Vec::with_capacity(40 + key.len());
        put_string(&mut blob, algorithm.as_str().as_bytes());
        put_string(&mut blob, curve.ssh_name().as_bytes());
        put_string(&mut blob, key);
        return Ok((algorithm, blob));
    }
    Err(KeyRejection::new(
        KeyErrorCode::UnknownAlgorithm,
        format!("public key algorithm {oid} has no SSH key type"),
    ))
}

fn rsa_blob(e: &[u8], n: &[u8]) -> Vec<u8> {
    let mut blob = Vec::with_capacity(24 + e.len() + n.len());
    put_string(&mut blob, Algorithm::Rsa.as_str().as_bytes());
    put_positive_mpint(&mut blob, e);
    put_positive_mpint(&mut blob, n);
    blob
}
