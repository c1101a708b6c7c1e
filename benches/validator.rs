//! Validator throughput per algorithm and input form (criterion). Figures and their reading are
//! in docs/performance.md. Run: cargo bench --bench validator

use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use keyportal::keys::{self, Policy};

fn corpus(file: &str) -> Vec<u8> {
    let dir = std::env::var_os("KEYPORTAL_KEY_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/keys"));
    std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn per_algorithm(c: &mut Criterion) {
    let policy = Policy::default();
    let mut group = c.benchmark_group("validate");
    group.throughput(Throughput::Elements(1));
    for (name, file) in [
        ("ssh-ed25519", "valid/ed25519.pub"),
        ("sk-ssh-ed25519", "valid/sk-ed25519.pub"),
        ("ecdsa-nistp256", "valid/ecdsa-256.pub"),
        ("ecdsa-nistp384", "valid/ecdsa-384.pub"),
        ("ecdsa-nistp521", "valid/ecdsa-521.pub"),
        ("rsa-2048", "valid/rsa-2048.pub"),
        ("rsa-3072", "valid/rsa-3072.pub"),
        ("rsa-4096", "valid/rsa-4096.pub"),
        ("rsa-8192", "valid/rsa-8192.pub"),
        ("rfc4716-rsa-3072", "valid/rfc4716-rsa-3072.pub"),
        ("pem-pkcs8-ecdsa-256", "valid/pem-pkcs8-ecdsa-256.pub"),
        (
            "rejected-not-on-curve",
            "invalid/ecdsa-256-not-on-curve.pub",
        ),
        (
            "rejected-private-key",
            "invalid/private-openssh-ed25519.pub",
        ),
    ] {
        let input = corpus(file);
        assert_eq!(
            keys::validate(&input, &policy).is_ok(),
            file.starts_with("valid/"),
            "{file}"
        );
        group.bench_with_input(BenchmarkId::from_parameter(name), &input, |b, input| {
            b.iter(|| keys::validate(std::hint::black_box(input), &policy))
        });
    }
    group.finish();
}

/// Re-validation of a stored key, as every read does (authorized_keys validates each granted key
/// this way): the canonical `type base64` and the comment, apart.
fn stored(c: &mut Criterion) {
    let policy = Policy::default();
    // As a read passes them: the stored verdict of the computed checks, no blocklist entry.
    let facts = keys::StoredFacts {
        computed: Some(None),
        ..Default::default()
    };
    let mut group = c.benchmark_group("validate_stored");
    group.throughput(Throughput::Elements(1));
    for (name, file) in [
        ("ssh-ed25519", "valid/ed25519.pub"),
        ("ecdsa-nistp256", "valid/ecdsa-256.pub"),
        ("rsa-3072", "valid/rsa-3072.pub"),
    ] {
        let key = keys::validate(&corpus(file), &policy).expect(file);
        let (public_key, comment) = (key.public_key().to_owned(), key.comment().to_owned());
        assert!(keys::validate_stored(&public_key, &comment, &policy, &facts).is_ok());
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                keys::validate_stored(
                    std::hint::black_box(&public_key),
                    std::hint::black_box(&comment),
                    &policy,
                    &facts,
                )
            })
        });
    }
    // The same key on every iteration lets the branch predictor learn its Jacobi loop, which
    // no login sees: authorized_keys validates thousands of different keys. These rotate
    // through 4,096 (multiples of the base point).
    let distinct: Vec<String> = (1..=4096u64)
        .map(|i| {
            use base64::Engine;
            let point = (curve25519_dalek::constants::ED25519_BASEPOINT_POINT
                * curve25519_dalek::scalar::Scalar::from(1000 + i))
            .compress();
            let mut blob = Vec::new();
            for field in [&b"ssh-ed25519"[..], point.as_bytes()] {
                blob.extend_from_slice(&(field.len() as u32).to_be_bytes());
                blob.extend_from_slice(field);
            }
            format!(
                "ssh-ed25519 {}",
                base64::engine::general_purpose::STANDARD.encode(blob)
            )
        })
        .collect();
    assert!(distinct
        .iter()
        .all(|k| keys::validate_stored(k, "", &policy, &facts).is_ok()));
    let mut next = 0;
    group.bench_function("ssh-ed25519, 4096 distinct", |b| {
        b.iter(|| {
            next = (next + 1) % distinct.len();
            keys::validate_stored(&distinct[next], "", &policy, &facts)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = per_algorithm, stored
}
criterion_main!(benches);
