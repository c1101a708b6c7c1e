//! OpenSSH 10.5's own public test keys (`tests/data/openssh-10.5/`, see its README): each gets
//! the verdict in `expected.tsv` under the default policy, and every valid key exactly
//! OpenSSH's SHA256 fingerprint. Also the ML-DSA-44 + Ed25519 hybrid's mutations: one changed
//! byte in either half, wrong lengths, and an Ed25519 half that is no usable point.

use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use keyportal::keys::{self, KeyErrorCode, Policy};

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/openssh-10.5")
}

#[test]
fn every_openssh_test_key_gets_its_verdict_and_openssh_fingerprint() {
    let table = std::fs::read_to_string(data().join("expected.tsv")).unwrap();
    let policy = Policy::default();
    let mut failures = Vec::new();
    let mut rows = 0;
    for line in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        rows += 1;
        let f: Vec<&str> = line.split('\t').collect();
        let (file, want, fingerprint) = (f[0], f[1], f.get(2).copied().unwrap_or(""));
        let bytes = std::fs::read(data().join(file)).unwrap();
        match (keys::validate(&bytes, &policy), want) {
            (Ok(k), "valid") if k.fingerprint_sha256() == fingerprint => {}
            (Ok(k), _) => failures.push(format!(
                "{file}: valid {}, want {want} {fingerprint}",
                k.fingerprint_sha256()
            )),
            (Err(r), code) if r.code.as_str() == code => {}
            (Err(r), _) => failures.push(format!(
                "{file}: {} ({}), want {want}",
                r.code.as_str(),
                r.message
            )),
        }
        // Where OpenSSH ships a .fp file, the table must agree with it.
        let fp_file = data().join(file.replace(".pub", ".fp"));
        if let Ok(fp) = std::fs::read_to_string(&fp_file) {
            if want == "valid" && fp.trim() != fingerprint {
                failures.push(format!(
                    "{file}: table says {fingerprint}, OpenSSH's .fp says {}",
                    fp.trim()
                ));
            }
        }
    }
    assert_eq!(rows, 71, "every one of OpenSSH's 71 test keys has a row");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The hybrid's blob: `string type, string(mldsa44_pk || ed25519_pk)`.
fn hybrid_blob() -> Vec<u8> {
    let text = std::fs::read_to_string(data().join("sshkey-mldsa44_ed25519_1.pub")).unwrap();
    STANDARD
        .decode(text.split_whitespace().nth(1).unwrap())
        .unwrap()
}

fn verdict(blob: &[u8]) -> Result<String, KeyErrorCode> {
    let text = format!("ssh-mldsa44-ed25519@openssh.com {}", STANDARD.encode(blob));
    keys::validate(text.as_bytes(), &Policy::default())
        .map(|k| k.fingerprint_sha256().to_owned())
        .map_err(|r| r.code)
}

#[test]
fn the_hybrid_key_is_read_exactly_as_openssh_writes_it() {
    let blob = hybrid_blob();
    let header = 4 + "ssh-mldsa44-ed25519@openssh.com".len();
    assert_eq!(blob.len(), header + 4 + 1312 + 32, "OpenSSH's layout");
    let original = verdict(&blob).expect("OpenSSH's own key is valid");
    let key = keys::validate(
        std::fs::read(data().join("sshkey-mldsa44_ed25519_1.pub"))
            .unwrap()
            .as_slice(),
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(
        (key.bits(), key.algorithm().as_str()),
        (256, "ssh-mldsa44-ed25519@openssh.com")
    );

    // One changed byte in the ML-DSA half: still a well-formed key, another fingerprint.
    let mut mldsa = blob.clone();
    mldsa[header + 4 + 100] ^= 0x01;
    let changed = verdict(&mldsa).expect("every 1312-byte ML-DSA-44 half is well-formed");
    assert_ne!(changed, original);

    // The Ed25519 half: a point not on the curve, a small-order point, a non-canonical y.
    let ed = header + 4 + 1312;
    let with_ed25519 = |point: [u8; 32]| {
        let mut b = blob.clone();
        b[ed..].copy_from_slice(&point);
        b
    };
    let mut not_on_curve = [0u8; 32];
    not_on_curve[0] = 2; // y = 2 gives no square x^2
    let mut identity = [0u8; 32];
    identity[0] = 1; // (0, 1): order 1
    let mut non_canonical = [0xffu8; 32];
    non_canonical[0] = 0xed;
    non_canonical[31] = 0x7f; // y = p, not reduced
    for point in [not_on_curve, identity, non_canonical] {
        assert_eq!(
            verdict(&with_ed25519(point)),
            Err(KeyErrorCode::Ed25519PointInvalid)
        );
    }

    // Lengths: the key string one byte short or long, and bytes after it.
    let mut short = blob.clone();
    short.pop();
    short[header..header + 4].copy_from_slice(&(1312u32 + 31).to_be_bytes());
    let mut long = blob.clone();
    long.push(0);
    long[header..header + 4].copy_from_slice(&(1312u32 + 33).to_be_bytes());
    let mut trailing = blob.clone();
    trailing.push(0);
    let mut truncated = blob.clone();
    truncated.truncate(blob.len() - 10);
    for bad in [short, long, trailing, truncated] {
        assert_eq!(verdict(&bad), Err(KeyErrorCode::EncodingInvalid));
    }

    // Its certificate type is refused like every other certificate.
    let cert = std::fs::read(data().join("sshkey-mldsa44_ed25519_1-cert.pub")).unwrap();
    assert_eq!(
        keys::validate(&cert, &Policy::default()).unwrap_err().code,
        KeyErrorCode::CertificateNotAllowed
    );
}

/// An RSA key whose exponent is the empty mpint (zero's canonical encoding) is an exponent
/// problem, not an encoding one.
#[test]
fn an_rsa_exponent_of_zero_is_rsa_exponent_invalid() {
    let text = std::fs::read_to_string(data().join("sshkey-rsa_2.pub")).unwrap();
    let blob = STANDARD
        .decode(text.split_whitespace().nth(1).unwrap())
        .unwrap();
    // string "ssh-rsa", mpint e, mpint n: replace e by the empty mpint.
    let e_at = 4 + 7;
    let e_len = u32::from_be_bytes(blob[e_at..e_at + 4].try_into().unwrap()) as usize;
    let mut zero = blob[..e_at].to_vec();
    zero.extend_from_slice(&0u32.to_be_bytes());
    zero.extend_from_slice(&blob[e_at + 4 + e_len..]);
    let line = format!("ssh-rsa {}", STANDARD.encode(&zero));
    let r = keys::validate(line.as_bytes(), &Policy::default()).unwrap_err();
    assert_eq!(r.code, KeyErrorCode::RsaExponentInvalid, "{}", r.message);
    assert!(r.message.contains("is 0"), "{}", r.message);
}

/// 1,000 hybrid keys made by OpenSSH 10.5's own `ssh-keygen` (built once from
/// `../shared/vendor` by `.ci/openssh-10.5.sh`): every one valid, with the fingerprint and size
/// `ssh-keygen -l` prints.
#[test]
fn openssh_10_5_and_keyportal_agree_on_a_thousand_fresh_hybrid_keys() {
    use std::process::Command;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/openssh-10.5.sh");
    let built = Command::new(script).output().unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let keygen =
        PathBuf::from(String::from_utf8_lossy(&built.stdout).trim()).join("bin/ssh-keygen");
    let dir = tempfile::tempdir().unwrap();
    let mut all = String::new();
    for i in 0..1000 {
        let file = dir.path().join(format!("k{i}"));
        let status = Command::new(&keygen)
            .args([
                "-q",
                "-t",
                "mldsa44-ed25519",
                "-N",
                "",
                "-C",
                &format!("k{i}"),
                "-f",
            ])
            .arg(&file)
            .status()
            .unwrap();
        assert!(status.success());
        all.push_str(&std::fs::read_to_string(file.with_extension("pub")).unwrap());
    }
    let list = dir.path().join("all.pub");
    std::fs::write(&list, &all).unwrap();
    let out = Command::new(&keygen)
        .args(["-l", "-E", "sha256", "-f"])
        .arg(&list)
        .output()
        .unwrap();
    assert!(out.status.success());
    let openssh: Vec<(String, u32)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[1].to_owned(), f[0].parse().unwrap())
        })
        .collect();
    let ours: Vec<(String, u32)> = all
        .lines()
        .map(|l| {
            let k = keys::validate(l.as_bytes(), &Policy::default())
                .unwrap_or_else(|r| panic!("{}: {l}", r.message));
            (k.fingerprint_sha256().to_owned(), k.bits())
        })
        .collect();
    assert_eq!(openssh.len(), 1000);
    assert_eq!(ours, openssh);
}

/// `keyportal key check` (the real binary) on OpenSSH's hybrid test key: valid, with its
/// `.fp` fingerprint, type and size.
#[test]
fn key_check_reports_the_hybrid_key_as_openssh_does() {
    let file = data().join("sshkey-mldsa44_ed25519_2.pub");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyportal"))
        .args(["key", "check", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fp = std::fs::read_to_string(data().join("sshkey-mldsa44_ed25519_2.fp")).unwrap();
    assert_eq!(
        (
            v["valid"].as_bool(),
            v["algorithm"].as_str(),
            v["bits"].as_u64(),
            v["sha256"].as_str()
        ),
        (
            Some(true),
            Some("ssh-mldsa44-ed25519@openssh.com"),
            Some(256),
            Some(fp.trim())
        )
    );
}
