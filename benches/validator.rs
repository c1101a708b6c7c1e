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

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = per_algorithm
}
criterion_main!(benches);
