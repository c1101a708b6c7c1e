//! Fingerprints exactly as `ssh-keygen -l -E sha256|md5` prints them.

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use md5::Md5;
use sha2::{Digest, Sha256};

/// `SHA256:` and the unpadded base64 of the SHA-256 of the key blob.
pub fn sha256(blob: &[u8]) -> String {
    let mut out = String::with_capacity(50);
    out.push_str("SHA256:");
    STANDARD_NO_PAD.encode_string(Sha256::digest(blob), &mut out);
    out
}

/// The 32 hash bytes of a `SHA256:` fingerprint (what a KRL lists), if it is one.
pub fn decode_sha256(fingerprint: &str) -> Option<[u8; 32]> {
    let b64 = fingerprint.strip_prefix("SHA256:")?;
    STANDARD_NO_PAD.decode(b64).ok()?.try_into().ok()
}

/// `MD5:` and the colon-separated hex of the MD5 of the key blob.
pub fn md5(blob: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Md5::digest(blob);
    let mut out = String::with_capacity(4 + 3 * digest.len());
    out.push_str("MD5:");
    for (i, b) in digest.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}
