//! Every case of the shared, labelled key corpus (`shared/keys/manifest.tsv`): verdict, code,
//! algorithm, bits and both fingerprints. New manifest rows are picked up without code changes.

mod common;

use keyportal::keys::{self, Policy};

#[test]
fn every_corpus_case_gets_its_labelled_verdict() {
    let policy = Policy::default();
    let cases = common::corpus();
    assert!(
        cases.len() >= 80,
        "corpus looks truncated: {} cases",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let result = keys::validate(&case.bytes, &policy);
        let problem = match (&result, case.expect_valid) {
            (Ok(k), true) => {
                let got = (
                    k.algorithm().as_str(),
                    k.bits().to_string(),
                    k.fingerprint_sha256(),
                    k.fingerprint_md5(),
                );
                let want = (
                    case.algorithm.as_str(),
                    case.bits.clone(),
                    case.sha256.as_str(),
                    case.md5.as_str(),
                );
                (got != want).then(|| format!("valid, but got {got:?}, want {want:?}"))
            }
            (Err(r), false) => {
                let mut why = Vec::new();
                if r.code.as_str() != case.code {
                    why.push(format!(
                        "code {} ({}), want {}",
                        r.code, r.message, case.code
                    ));
                }
                if case.algorithm != "-" && r.algorithm.as_deref() != Some(case.algorithm.as_str())
                {
                    why.push(format!(
                        "algorithm {:?}, want {}",
                        r.algorithm, case.algorithm
                    ));
                }
                if case.bits != "-"
                    && r.bits.map(|b| b.to_string()).as_deref() != Some(case.bits.as_str())
                {
                    why.push(format!("bits {:?}, want {}", r.bits, case.bits));
                }
                (!why.is_empty()).then(|| why.join("; "))
            }
            (Ok(k), false) => Some(format!(
                "accepted as {} {}, want {}",
                k.algorithm(),
                k.bits(),
                case.code
            )),
            (Err(r), true) => Some(format!("rejected: {r}")),
        };
        if let Some(p) = problem {
            failures.push(format!("{} ({}): {p}", case.file, case.note));
        }
    }
    assert!(
        failures.is_empty(),
        "{} corpus cases disagree:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_rejection_message_is_specific_and_never_echoes_a_private_key() {
    let policy = Policy::default();
    for case in common::corpus().iter().filter(|c| !c.expect_valid) {
        let r = keys::validate(&case.bytes, &policy).expect_err(&case.file);
        assert!(
            r.message.len() > 20,
            "{}: message too vague: {:?}",
            case.file,
            r.message
        );
        if r.code == keys::KeyErrorCode::PrivateKey {
            let body_line = String::from_utf8_lossy(&case.bytes)
                .lines()
                .nth(1)
                .unwrap_or("")
                .to_owned();
            assert!(
                !body_line.is_empty() && !r.message.contains(&body_line[..20.min(body_line.len())])
            );
            assert!(
                r.message.contains(".pub"),
                "{}: must say to paste the .pub file",
                case.file
            );
        }
    }
}

#[test]
fn canonical_form_is_type_and_base64_and_revalidates_to_the_same_key() {
    let policy = Policy::default();
    for case in common::corpus().iter().filter(|c| c.expect_valid) {
        let k = keys::validate(&case.bytes, &policy).expect(&case.file);
        let (ty, b64) = k.public_key().split_once(' ').expect("type base64");
        assert_eq!(ty, k.algorithm().as_str(), "{}", case.file);
        assert!(!b64.contains(' '));
        let again = keys::validate(k.public_key().as_bytes(), &policy).expect(&case.file);
        assert_eq!(
            again.fingerprint_sha256(),
            k.fingerprint_sha256(),
            "{}",
            case.file
        );
        assert_eq!(again.public_key(), k.public_key());
        assert_eq!((again.algorithm(), again.bits()), (k.algorithm(), k.bits()));
    }
}

/// RustCrypto's ssh-key, an independent implementation, reads our canonical form as the same
/// key with the same SHA-256 fingerprint.
#[test]
fn ssh_key_crate_agrees_with_our_canonical_form_and_fingerprint() {
    let policy = Policy::default();
    for case in common::corpus().iter().filter(|c| c.expect_valid) {
        let k = keys::validate(&case.bytes, &policy).expect(&case.file);
        let theirs = ssh_key::PublicKey::from_openssh(k.public_key()).unwrap_or_else(|e| {
            panic!("{}: ssh-key cannot read our canonical form: {e}", case.file)
        });
        assert_eq!(
            theirs.algorithm().as_str(),
            k.algorithm().as_str(),
            "{}",
            case.file
        );
        assert_eq!(
            theirs.fingerprint(ssh_key::HashAlg::Sha256).to_string(),
            k.fingerprint_sha256(),
            "{}",
            case.file
        );
    }
}

#[test]
fn comments_survive_normalisation_from_every_form() {
    let policy = Policy::default();
    let read = |file: &str| {
        let case = common::corpus()
            .into_iter()
            .find(|c| c.file == file)
            .expect(file);
        keys::validate(&case.bytes, &policy).expect(file)
    };
    assert_eq!(read("valid/ed25519-no-comment.pub").comment(), "");
    assert!(read("valid/ed25519-comment-spaces.pub")
        .comment()
        .contains(' '));
    assert!(read("valid/ed25519-comment-script.pub")
        .comment()
        .contains("<script>"));
    let rfc = read("valid/rfc4716-ed25519.pub");
    assert!(
        !rfc.comment().is_empty() && !rfc.comment().contains('"') && !rfc.comment().contains('\\'),
        "{:?}",
        rfc.comment()
    );
    assert_eq!(read("valid/pem-pkcs8-rsa-2048.pub").comment(), "");
}

#[test]
fn policy_thresholds_are_applied_from_the_argument() {
    let rsa2048 = common::corpus()
        .into_iter()
        .find(|c| c.file == "valid/rsa-2048.pub")
        .unwrap();
    let strict = Policy {
        min_rsa_bits: 3072,
        ..Policy::default()
    };
    let r = keys::validate(&rsa2048.bytes, &strict).unwrap_err();
    assert_eq!(r.code, keys::KeyErrorCode::KeyTooSmall);
    assert!(
        r.message.contains("2048") && r.message.contains("3072"),
        "{}",
        r.message
    );
    assert!(keys::validate(&rsa2048.bytes, &Policy::default()).is_ok());

    let dss = common::corpus()
        .into_iter()
        .find(|c| c.file == "invalid/ssh-dss-1024.pub")
        .unwrap();
    let mut lenient = Policy {
        min_rsa_bits: 1024,
        ..Policy::default()
    };
    lenient.allowed_algorithms.insert(keys::Algorithm::Dsa);
    assert_eq!(keys::validate(&dss.bytes, &lenient).unwrap().bits(), 1024);

    let mut no_rsa = Policy::default();
    no_rsa.allowed_algorithms.remove(keys::Algorithm::Rsa);
    assert_eq!(
        keys::validate(&rsa2048.bytes, &no_rsa).unwrap_err().code,
        keys::KeyErrorCode::AlgorithmDisallowed
    );
}

/// What every read does to a stored key must agree with the full validator on the same text.
#[test]
fn stored_key_revalidation_agrees_with_the_full_validator() {
    let mut strict = Policy {
        min_rsa_bits: 3072,
        max_comment_bytes: 10,
        ..Policy::default()
    };
    strict.allowed_algorithms.remove(keys::Algorithm::EcdsaP521);
    for policy in [Policy::default(), strict] {
        for case in common::corpus().iter().filter(|c| c.expect_valid) {
            let k = keys::validate(&case.bytes, &Policy::default()).unwrap();
            let full = keys::validate(
                format!("{} {}", k.public_key(), k.comment())
                    .trim()
                    .as_bytes(),
                &policy,
            );
            let stored =
                keys::validate_stored(k.public_key(), k.comment(), &policy, &Default::default());
            match (&full, &stored) {
                (Ok(f), Ok(s)) => {
                    assert_eq!(
                        f.fingerprint_sha256(),
                        s.fingerprint_sha256,
                        "{}",
                        case.file
                    );
                    assert_eq!(f.shape(), s.shape(), "{}", case.file);
                }
                (Err(a), Err(b)) => assert_eq!(a.code, b.code, "{}", case.file),
                _ => panic!(
                    "{}: validate says {full:?}, validate_stored says {stored:?}",
                    case.file
                ),
            }
        }
    }
}

/// The dashboard and the policy preview judge keys by shape (counted in SQL) instead of by their
/// bytes: for every valid key of the corpus and many policies, the shape's verdict must be the
/// validator's, code for code.
#[test]
fn shape_verdicts_agree_with_the_validator() {
    let mut everything = Policy {
        min_rsa_bits: 1024,
        max_rsa_exponent_bits: 4096,
        max_comment_bytes: 4096,
        max_input_bytes: 1024 * 1024,
        ..Policy::default()
    };
    everything.allowed_algorithms.insert(keys::Algorithm::Dsa);
    let mut policies = vec![Policy::default(), everything.clone()];
    for (min, max) in [(2048, 4096), (3072, 16384), (4096, 4096), (1024, 2048)] {
        policies.push(Policy {
            min_rsa_bits: min,
            max_rsa_bits: max,
            ..everything.clone()
        });
    }
    for exponent in [17, 18, 33] {
        policies.push(Policy {
            max_rsa_exponent_bits: exponent,
            ..everything.clone()
        });
    }
    for comment in [0, 5, 20, 100] {
        policies.push(Policy {
            max_comment_bytes: comment,
            ..everything.clone()
        });
    }
    for input in [256, 500, 800, 1000, 3000] {
        policies.push(Policy {
            max_input_bytes: input,
            max_comment_bytes: 0,
            ..everything.clone()
        });
    }
    for a in keys::Algorithm::ALL {
        let mut without = everything.clone();
        without.allowed_algorithms.remove(a);
        policies.push(without);
    }
    let stored: Vec<_> = common::corpus()
        .iter()
        .filter_map(|c| keys::validate(&c.bytes, &everything).ok())
        .collect();
    assert!(stored.len() > 40, "only {} corpus keys", stored.len());
    let mut refused = 0;
    for policy in &policies {
        for k in &stored {
            let by_bytes =
                keys::validate_stored(k.public_key(), k.comment(), policy, &Default::default())
                    .err()
                    .map(|r| r.code);
            assert_eq!(
                k.shape().policy_verdict(policy),
                by_bytes,
                "{} {:?} under {policy:?}",
                k.fingerprint_sha256(),
                k.shape()
            );
            refused += usize::from(by_bytes.is_some());
        }
    }
    // The policies above must actually refuse keys for the comparison to mean anything.
    assert!(refused > 200, "only {refused} refusals");
}
