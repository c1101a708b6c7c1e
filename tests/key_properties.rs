//! Properties of the validator (proptest): no input panics; the verdict for an input never
//! depends on what was validated before or on other threads (the failure this product exists
//! to never repeat); a changed byte is never accepted as the original key.

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use keyportal::keys::{self, KeyRejection, Policy, ValidatedKey};
use proptest::prelude::*;

type Verdict = Result<ValidatedKey, KeyRejection>;

fn valid_keys() -> Vec<ValidatedKey> {
    common::corpus()
        .into_iter()
        .filter(|c| c.expect_valid)
        .map(|c| keys::validate(&c.bytes, &Policy::default()).expect("valid corpus key"))
        .collect()
}

/// Corpus inputs, with a few mutations each: realistic and adversarial inputs side by side.
fn mixed_inputs() -> Vec<Vec<u8>> {
    let mut inputs: Vec<Vec<u8>> = common::corpus().into_iter().map(|c| c.bytes).collect();
    let n = inputs.len();
    for i in 0..n {
        let mut cut = inputs[i].clone();
        cut.truncate(cut.len() / 2);
        inputs.push(cut);
        let mut flipped = inputs[i].clone();
        if let Some(b) = flipped.get_mut(40) {
            *b ^= 0x20;
        }
        inputs.push(flipped);
    }
    inputs
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = keys::validate(&input, &Policy::default());
        let _ = keys::validate_authorized_keys(&input, &Policy::default());
    }

    #[test]
    fn key_shaped_text_never_panics(
        options in "(|no-pty |command=\"[a-z \\\\\"]{0,12}\" |restrict,from=\"[0-9.*]{1,9}\" )",
        ty in "(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|sk-ssh-ed25519@openssh.com|ssh-dss|x-y@z)",
        body in proptest::collection::vec(any::<u8>(), 0..120),
        comment in "[ -~\\t]{0,20}",
    ) {
        let line = format!("{options}{ty} {} {comment}", STANDARD.encode(&body));
        let _ = keys::validate(line.as_bytes(), &Policy::default());
        let _ = keys::validate_authorized_keys(line.as_bytes(), &Policy::default());
    }

    #[test]
    fn changing_one_byte_of_a_blob_is_never_accepted_as_the_original(
        which in any::<prop::sample::Index>(),
        pos in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let keys = valid_keys();
        let original = which.get(&keys);
        let (ty, b64) = original.public_key().split_once(' ').unwrap();
        let mut blob = STANDARD.decode(b64).unwrap();
        let at = pos.index(blob.len());
        blob[at] ^= xor;
        let mutated = format!("{ty} {}", STANDARD.encode(&blob));
        if let Ok(k) = keys::validate(mutated.as_bytes(), &Policy::default()) {
            prop_assert_ne!(&k.fingerprint_sha256(), &original.fingerprint_sha256());
            // What is reported is the key that was given, byte for byte.
            prop_assert_eq!(k.public_key(), mutated);
        }
    }
}

#[test]
fn verdicts_do_not_depend_on_history() {
    let inputs = mixed_inputs();
    let policy = Policy::default();
    // Alone: each input in a fresh state (nothing validated before it in this function).
    let alone: Vec<Verdict> = inputs.iter().map(|i| keys::validate(i, &policy)).collect();
    // After thousands of other inputs, in a scrambled order.
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    for round in 0..20usize {
        order.rotate_left(round * 7 % inputs.len().max(1));
        order.reverse();
        for &i in &order {
            assert_eq!(
                keys::validate(&inputs[i], &policy),
                alone[i],
                "input {i} changed its verdict in round {round}"
            );
        }
    }
}

#[test]
fn verdicts_are_the_same_on_every_thread() {
    let inputs = std::sync::Arc::new(mixed_inputs());
    let policy = Policy::default();
    let alone: Vec<Verdict> = inputs.iter().map(|i| keys::validate(i, &policy)).collect();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let inputs = inputs.clone();
            std::thread::spawn(move || {
                let policy = Policy::default();
                let mut seen = Vec::new();
                for round in 0..25 {
                    for k in 0..inputs.len() {
                        // Each thread walks the inputs in its own order.
                        let i = (k * (2 * t + 1) + round) % inputs.len();
                        seen.push((i, keys::validate(&inputs[i], &policy)));
                    }
                }
                seen
            })
        })
        .collect();
    for t in threads {
        for (i, verdict) in t.join().expect("validator thread panicked") {
            assert_eq!(
                verdict, alone[i],
                "input {i} got another verdict on another thread"
            );
        }
    }
}

#[test]
fn a_stricter_policy_in_one_call_does_not_leak_into_the_next() {
    let rsa = common::corpus()
        .into_iter()
        .find(|c| c.file == "valid/rsa-2048.pub")
        .unwrap();
    let strict = Policy {
        min_rsa_bits: 4096,
        ..Policy::default()
    };
    for _ in 0..100 {
        assert!(keys::validate(&rsa.bytes, &strict).is_err());
        assert!(keys::validate(&rsa.bytes, &Policy::default()).is_ok());
    }
}
