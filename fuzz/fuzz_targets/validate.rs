//! Any bytes, as a single key: all three front ends (one-line, RFC 4716, PEM) are reached by
//! the input's own first line. No input may panic, and a valid verdict must re-validate to
//! the same key.
#![no_main]

use keyportal::keys::{self, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let policy = Policy::default();
    if let Ok(key) = keys::validate(data, &policy) {
        let again = keys::validate(key.public_key.as_bytes(), &policy).expect("canonical form re-validates");
        assert_eq!(again.fingerprint_sha256, key.fingerprint_sha256);
    }
});
