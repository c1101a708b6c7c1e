//! Our KRL writer and reader against the real ssh-keygen (OpenSSH 9.2 here), which is the
//! judge: for every key and certificate, `ssh-keygen -Q -f krl file` must give the verdict
//! our `revokes_*` gives, on KRLs we write, that we sign, and that ssh-keygen writes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use keyportal::ca::krl::{self, CertificateSection, Krl, KrlError};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sha2::{Digest, Sha256};
use ssh_key::{Certificate, HashAlg, PrivateKey, PublicKey};

const SSH_KEYGEN: &str = "/usr/bin/ssh-keygen";
const MAX: u64 = u64::MAX;

/// A temporary directory of keys and certificates made by ssh-keygen.
struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        Lab {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(SSH_KEYGEN)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    /// Runs ssh-keygen, which must succeed; returns its stdout.
    fn keygen(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ssh-keygen {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A new key pair `name` / `name.pub` of the given type.
    fn key(&self, name: &str, kind: &str) -> PathBuf {
        let mut args = vec!["-q", "-t", kind, "-N", "", "-C", name, "-f", name];
        if kind == "rsa" {
            args.extend(["-b", "2048"]);
        }
        self.keygen(&args);
        self.path(&format!("{name}.pub"))
    }

    /// `name-cert.pub`: `subject`'s key certified by `ca` with this key id and serial.
    fn cert(&self, name: &str, ca: &str, subject: &str, key_id: &str, serial: u64) -> PathBuf {
        std::fs::copy(
            self.path(&format!("{subject}.pub")),
            self.path(&format!("{name}.pub")),
        )
        .unwrap();
        let serial = serial.to_string();
        let args = [
            "-q", "-s", ca, "-I", key_id, "-n", "alice", "-z", &serial, "-V", "+1h",
        ];
        self.keygen(&[&args[..], &[&format!("{name}.pub")]].concat());
        self.path(&format!("{name}-cert.pub"))
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// ssh-keygen's verdict (true = REVOKED) for each file, in one `-Q` run whose exit status
    /// must be 1 exactly when one of them is revoked.
    fn query(&self, krl: &Path, files: &[PathBuf]) -> Vec<bool> {
        let mut args = vec!["-Q".to_string(), "-f".into(), krl.display().to_string()];
        args.extend(files.iter().map(|f| f.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.run(&args);
        let stdout = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines.len(),
            files.len(),
            "ssh-keygen -Q: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let verdicts: Vec<bool> = lines
            .iter()
            .zip(files)
            .map(|(line, file)| {
                assert!(line.starts_with(&file.display().to_string()), "{line}");
                match line.rsplit_once(": ") {
                    Some((_, "ok")) => false,
                    Some((_, "REVOKED")) => true,
                    _ => panic!("unexpected ssh-keygen -Q line {line}"),
                }
            })
            .collect();
        let want_code = i32::from(verdicts.iter().any(|&v| v));
        assert_eq!(out.status.code(), Some(want_code), "{stdout}");
        verdicts
    }

    /// ssh-keygen must refuse this KRL as a whole (as sshd would, refusing every key).
    fn assert_rejected(&self, krl: &Path, probe: &Path) {
        let out = self.run(&[
            "-Q",
            "-f",
            &krl.display().to_string(),
            &probe.display().to_string(),
        ]);
        assert_eq!(out.status.code(), Some(255), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Invalid KRL file"),
            "{out:?}"
        );
    }
}

fn public(path: &Path) -> PublicKey {
    PublicKey::read_openssh_file(path).unwrap()
}

fn blob(path: &Path) -> Vec<u8> {
    public(path).to_bytes().unwrap()
}

fn sha256(path: &Path) -> [u8; 32] {
    Sha256::digest(blob(path)).into()
}

fn certificate(path: &Path) -> Certificate {
    Certificate::from_openssh(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Our verdict for a `.pub` or `-cert.pub` file.
fn ours(krl: &Krl, path: &Path) -> bool {
    if path.display().to_string().ends_with("-cert.pub") {
        let cert = certificate(path);
        assert_eq!(
            krl.revokes_key(&cert.to_bytes().unwrap()),
            krl.revokes_certificate(&cert)
        );
        krl.revokes_certificate(&cert)
    } else {
        krl.revokes_key(&blob(path))
    }
}

/// Asserts ssh-keygen and `krl` agree on every file; returns the verdicts.
fn agree(lab: &Lab, krl_file: &Path, krl: &Krl, files: &[PathBuf]) -> Vec<bool> {
    let theirs = lab.query(krl_file, files);
    let mismatches: Vec<String> = files
        .iter()
        .zip(&theirs)
        .filter(|(f, &t)| ours(krl, f) != t)
        .map(|(f, t)| format!("{}: ssh-keygen says revoked={t}", f.display()))
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    theirs
}

/// Three CAs, subjects of each key type, and certificates around every boundary the mixed
/// KRL draws; each with the verdict that KRL must get.
struct Population {
    lab: Lab,
    files: Vec<PathBuf>,
    expected: Vec<bool>,
}

impl Population {
    fn new() -> Population {
        let lab = Lab::new();
        let mut files = Vec::new();
        let mut expected = Vec::new();
        let mut plain = |file: PathBuf, revoked: bool| {
            files.push(file);
            expected.push(revoked);
        };
        plain(lab.key("ca1", "ed25519"), false);
        plain(lab.key("ca2", "ed25519"), false);
        plain(lab.key("ca3", "ed25519"), true); // explicit key: all its certificates too
        plain(lab.key("u_ed", "ed25519"), false);
        plain(lab.key("u_ec", "ecdsa"), false);
        plain(lab.key("u_rsa", "rsa"), false);
        plain(lab.key("p1", "ed25519"), true); // explicit key
        plain(lab.key("p2", "ecdsa"), true); // sha256
        plain(lab.key("p3", "ed25519"), false);
        lab.keygen(&[
            "-q", "-t", "ecdsa", "-b", "384", "-N", "", "-C", "p4", "-f", "p4",
        ]);
        plain(lab.path("p4.pub"), true); // sha256
        #[rustfmt::skip]
        let certs: &[(&str, &str, &str, u64, bool)] = &[
            ("ca1", "u_ed", "u-3", 3, true),            // serial list
            ("ca1", "u_ed", "u-2", 2, false),
            ("ca1", "u_ed", "u-4", 4, false),
            ("ca1", "u_ec", "u-7", 7, true),            // serial list
            ("ca1", "u_ed", "u-9", 9, false),           // just below the range
            ("ca1", "u_ed", "u-10", 10, true),          // range 10-14
            ("ca1", "u_rsa", "u-12", 12, true),
            ("ca1", "u_ed", "u-14", 14, true),
            ("ca1", "u_ed", "u-15", 15, false),         // just above
            ("ca2", "u_ed", "v-3", 3, false),           // another CA, same serial
            ("ca2", "u_ed", "v-10", 10, true),          // ca2's own serial 10
            ("ca2", "u_ed", "v-11", 11, false),
            ("ca1", "u_ed", "alice-laptop", 0, true),   // key id
            ("ca1", "u_ed", "alice-laptop2", 20, false),
            ("ca1", "u_ed", "Alice-laptop", 21, false),
            ("ca2", "u_ed", "alice-laptop", 22, false), // key id only under ca1
            ("ca2", "u_ec", "mallory", 23, true),       // wildcard key id
            ("ca1", "u_ed", "mallory ", 24, false),
            ("ca1", "u_ed", "u-0", 0, false),           // serial 0 never matches by serial
            ("ca1", "p1", "p1", 30, true),              // subject revoked as plain key
            ("ca2", "p2", "p2", 31, true),              // subject revoked by sha256
            ("ca3", "u_ed", "w-1", 1, true),            // CA revoked as plain key
            ("ca2", "u_ed", "v-max-1", MAX - 1, true),  // range MAX-5..MAX
            ("ca2", "u_ed", "v-max-6", MAX - 6, false),
            ("ca1", "u_ed", "u-40", 40, true),          // wildcard serials 40-41
            ("ca2", "u_ed", "v-41", 41, true),
            ("ca3", "u_ed", "w-42", 42, true),
            ("ca1", "u_ed", "u-42", 42, false),
            ("ca1", "u_rsa", "r-50", 50, false),
            ("ca2", "p3", "p3", 51, false),
        ];
        for (i, &(ca, subject, id, serial, revoked)) in certs.iter().enumerate() {
            files.push(lab.cert(&format!("c{i}"), ca, subject, id, serial));
            expected.push(revoked);
        }
        Population {
            lab,
            files,
            expected,
        }
    }

    fn pub_key(&self, name: &str) -> PathBuf {
        self.lab.path(&format!("{name}.pub"))
    }

    /// Serial lists, ranges, key ids, a wildcard section, a second CA, explicit keys (one a
    /// CA) and SHA-256 fingerprints, in no particular order.
    fn mixed_krl(&self) -> Krl {
        Krl {
            version: 42,
            generated_at: 1_700_000_000,
            comment: "portal test KRL".into(),
            certificates: vec![
                CertificateSection {
                    ca_key: blob(&self.pub_key("ca1")),
                    serials: vec![(10, 14), (3, 3), (7, 7), (12, 13)],
                    key_ids: vec!["alice-laptop".into()],
                },
                CertificateSection {
                    ca_key: blob(&self.pub_key("ca2")),
                    serials: vec![(10, 10), (MAX - 5, MAX)],
                    key_ids: vec![],
                },
                CertificateSection {
                    ca_key: vec![],
                    serials: vec![(40, 41)],
                    key_ids: vec!["mallory".into()],
                },
            ],
            explicit_keys: vec![blob(&self.pub_key("p1")), blob(&self.pub_key("ca3"))],
            sha256_fingerprints: vec![sha256(&self.pub_key("p4")), sha256(&self.pub_key("p2"))],
            sha1_fingerprints: vec![],
        }
    }
}

#[test]
fn our_krl_agrees_with_ssh_keygen_on_every_key_and_certificate() {
    let pop = Population::new();
    let krl = pop.mixed_krl();
    let bytes = krl.to_bytes().unwrap();
    let file = pop.lab.write("our.krl", &bytes);
    let verdicts = agree(&pop.lab, &file, &krl, &pop.files);
    assert_eq!(verdicts, pop.expected);
    // What we read back from our own bytes judges the same.
    let parsed = Krl::parse(&bytes).unwrap();
    assert_eq!(parsed.unsigned_len, bytes.len());
    agree(&pop.lab, &file, &parsed.krl, &pop.files);
    assert_eq!(parsed.krl.to_bytes().unwrap(), bytes);
}

#[test]
fn signed_krl_verifies_and_its_unsigned_prefix_is_what_sshd_gets() {
    let pop = Population::new();
    let krl = pop.mixed_krl();
    let unsigned = krl.to_bytes().unwrap();
    let ca = PrivateKey::read_openssh_file(&pop.lab.path("ca1")).unwrap();
    let ca_pub = public(&pop.pub_key("ca1"));
    let other = public(&pop.pub_key("ca2"));
    let signed = krl::sign(&unsigned, &ca).unwrap();

    let (got, prefix) = krl::verify(&signed, &[other.clone(), ca_pub.clone()]).unwrap();
    assert_eq!(prefix, &unsigned[..]);
    assert_eq!(got, Krl::parse(&unsigned).unwrap().krl);
    assert_eq!(
        krl::verify(&signed, &[other]),
        Err(KrlError::UntrustedSigner)
    );
    assert_eq!(
        krl::verify(&unsigned, std::slice::from_ref(&ca_pub)),
        Err(KrlError::NotSigned)
    );

    // The prefix is what gets installed: ssh-keygen judges every key as expected.
    let prefix_file = pop.lab.write("prefix.krl", prefix);
    assert_eq!(
        agree(&pop.lab, &prefix_file, &got, &pop.files),
        pop.expected
    );
    // 9.2 checks embedded signatures against their own key: ours passes that check.
    let signed_file = pop.lab.write("signed.krl", &signed);
    assert_eq!(
        agree(&pop.lab, &signed_file, &got, &pop.files),
        pop.expected
    );

    // One byte changed in the body (a serial), then one in the signature: both refused by
    // us, and 9.2 refuses the whole file.
    let serial_10 = [&[0x21, 0, 0, 0, 16][..], &10u64.to_be_bytes()].concat();
    let at = signed
        .windows(serial_10.len())
        .position(|w| w == serial_10)
        .unwrap()
        + serial_10.len()
        - 1;
    let sig_at = signed.len() - 10;
    for i in [at, sig_at] {
        let mut tampered = signed.clone();
        tampered[i] ^= 0x04;
        assert_eq!(
            krl::verify(&tampered, std::slice::from_ref(&ca_pub)),
            Err(KrlError::BadSignature),
            "byte {i}"
        );
        let file = pop.lab.write("tampered.krl", &tampered);
        pop.lab.assert_rejected(&file, &pop.files[0]);
    }
}

/// Section 1's subsection types in a KRL's certificate sections, in order.
fn cert_subsection_types(bytes: &[u8]) -> Vec<u8> {
    fn string<'a>(b: &'a [u8], pos: &mut usize) -> &'a [u8] {
        let len = u32::from_be_bytes(b[*pos..*pos + 4].try_into().unwrap()) as usize;
        *pos += 4 + len;
        &b[*pos - len..*pos]
    }
    let mut pos = 8 + 4 + 8 * 3;
    string(bytes, &mut pos);
    string(bytes, &mut pos);
    let mut types = Vec::new();
    while pos < bytes.len() {
        let kind = bytes[pos];
        pos += 1;
        let data = string(bytes, &mut pos);
        if kind == 1 {
            let mut p = 0;
            string(data, &mut p);
            string(data, &mut p);
            while p < data.len() {
                types.push(data[p]);
                p += 1;
                string(data, &mut p);
            }
        }
    }
    types
}

#[test]
fn we_read_what_ssh_keygen_writes_and_judge_alike() {
    let lab = Lab::new();
    let ca1 = lab.key("ca1", "ed25519");
    lab.key("ca2", "ed25519");
    let p1 = lab.key("p1", "ed25519");
    let p2 = lab.key("p2", "ecdsa");
    let p3 = lab.key("p3", "ed25519");
    let p4 = lab.key("p4", "ed25519");
    lab.key("u", "ed25519");
    let bare = lab.cert("bare", "ca2", "u", "bare", 77);
    let sparse: Vec<u64> = (300..400).step_by(3).collect();
    let mut spec = format!(
        "# revocations\nserial: 1-100\nserial: 205\nid: foo\nkey: {}\nhash: {}\nsha1: {}\n{}\n",
        std::fs::read_to_string(&p1).unwrap().trim(),
        public(&p2).fingerprint(HashAlg::Sha256),
        std::fs::read_to_string(&p3).unwrap().trim(),
        std::fs::read_to_string(&bare).unwrap().trim(),
    );
    for s in &sparse {
        spec.push_str(&format!("serial: {s}\n"));
    }
    lab.write("spec", spec.as_bytes());
    lab.write("wild", b"id: mallory\nserial: 5-6\n");
    let ca1_arg = ca1.display().to_string();
    lab.keygen(&[
        "-q",
        "-k",
        "-f",
        "x.krl",
        "-s",
        &ca1_arg,
        "-z",
        "7",
        "-C",
        "from ssh-keygen",
        "spec",
    ]);
    lab.keygen(&["-q", "-k", "-u", "-f", "x.krl", "-s", "none", "wild"]);
    let bytes = std::fs::read(lab.path("x.krl")).unwrap();
    assert!(
        cert_subsection_types(&bytes).contains(&0x22),
        "ssh-keygen used no bitmap: {:?}",
        cert_subsection_types(&bytes)
    );

    let parsed = Krl::parse(&bytes).unwrap();
    let krl = &parsed.krl;
    assert_eq!((krl.version, krl.comment.as_str()), (7, "from ssh-keygen"));
    assert_eq!(krl.explicit_keys, vec![blob(&p1)]);
    assert_eq!(krl.sha256_fingerprints, vec![sha256(&p2)]);
    assert_eq!(krl.sha1_fingerprints.len(), 1);
    let section = |ca: &[u8]| krl.certificates.iter().find(|c| c.ca_key == ca).unwrap();
    let mut want: Vec<(u64, u64)> = vec![(1, 100), (205, 205)];
    want.extend(sparse.iter().map(|&s| (s, s)));
    assert_eq!(section(&blob(&ca1)).serials, want);
    assert_eq!(section(&blob(&ca1)).key_ids, vec!["foo"]);
    assert_eq!(section(&blob(&lab.path("ca2.pub"))).serials, vec![(77, 77)]);
    assert_eq!(section(&[]).serials, vec![(5, 6)]);
    assert_eq!(section(&[]).key_ids, vec!["mallory"]);

    let mut files = vec![
        p1.clone(),
        p2.clone(),
        p3.clone(),
        p4.clone(),
        ca1.clone(),
        bare,
    ];
    #[rustfmt::skip]
    let certs: &[(&str, &str, &str, u64)] = &[
        ("ca1", "u", "a", 1), ("ca1", "u", "b", 100), ("ca1", "u", "c", 101),
        ("ca1", "u", "d", 204), ("ca1", "u", "e", 205), ("ca1", "u", "f", 206),
        ("ca1", "u", "g", 299), ("ca1", "u", "h", 300), ("ca1", "u", "i", 301),
        ("ca1", "u", "j", 303), ("ca1", "u", "k", 398), ("ca1", "u", "l", 399),
        ("ca1", "u", "foo", 0), ("ca1", "u", "foo2", 0), ("ca2", "u", "foo", 0),
        ("ca2", "u", "m", 78), ("ca2", "u", "n", 5), ("ca2", "u", "mallory", 0),
        ("ca2", "u", "o", 7), ("ca2", "p3", "p", 9), ("ca1", "p4", "q", 9),
        ("ca2", "u", "r", 100),
    ];
    for (i, &(ca, subject, id, serial)) in certs.iter().enumerate() {
        files.push(lab.cert(&format!("c{i}"), ca, subject, id, serial));
    }
    let verdicts = agree(&lab, &lab.path("x.krl"), krl, &files);
    let revoked = verdicts.iter().filter(|&&v| v).count();
    assert!(revoked > 10 && revoked < files.len(), "{verdicts:?}");

    // Rewritten by us (lists and ranges only), ssh-keygen still judges the same.
    let ours = lab.write("ours.krl", &krl.to_bytes().unwrap());
    assert_eq!(agree(&lab, &ours, krl, &files), verdicts);
}

#[test]
fn ssh_keygen_lists_our_version_comment_and_revocations() {
    let pop = Population::new();
    let file = pop
        .lab
        .write("our.krl", &pop.mixed_krl().to_bytes().unwrap());
    let listing = pop
        .lab
        .keygen(&["-Q", "-l", "-f", &file.display().to_string()]);
    let ca1 = public(&pop.pub_key("ca1")).fingerprint(HashAlg::Sha256);
    let p1 = public(&pop.pub_key("p1")).fingerprint(HashAlg::Sha256);
    let p2_hex: String = sha256(&pop.pub_key("p2"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for line in [
        "# KRL version 42".to_string(),
        "# Comment: portal test KRL".into(),
        format!("hash: {p1} # ssh-ed25519"),
        format!("hash: SHA256:{p2_hex}"),
        "# Wildcard CA".into(),
        format!("# CA key ssh-ed25519 {ca1}"),
        "serial: 3".into(),
        "serial: 7".into(),
        "serial: 10-14".into(),
        "id: alice-laptop".into(),
        "serial: 40-41".into(),
        "id: mallory".into(),
        format!("serial: {}-{MAX}", MAX - 5),
    ] {
        assert!(
            listing.lines().any(|l| l.eq_ignore_ascii_case(&line)),
            "missing {line:?} in\n{listing}"
        );
    }
}

#[test]
fn what_we_refuse_ssh_keygen_refuses_too() {
    let lab = Lab::new();
    let ca = lab.key("ca", "ed25519");
    let probe = lab.key("probe", "ed25519");
    let ca_blob = blob(&ca);
    let with_serials = |serials: Vec<(u64, u64)>| Krl {
        certificates: vec![CertificateSection {
            ca_key: ca_blob.clone(),
            serials,
            key_ids: vec![],
        }],
        ..Default::default()
    };
    assert_eq!(
        with_serials(vec![(0, 3)]).to_bytes(),
        Err(KrlError::SerialZero)
    );
    assert_eq!(
        with_serials(vec![(4, 4), (0, 0)]).to_bytes(),
        Err(KrlError::SerialZero)
    );
    assert_eq!(
        with_serials(vec![(9, 8)]).to_bytes(),
        Err(KrlError::SerialRangeReversed { lo: 9, hi: 8 })
    );

    // A good KRL ssh-keygen accepts, then the same bytes with one thing wrong written by
    // hand: both of us refuse each.
    let good = with_serials(vec![(1, 1), (5, 9)]).to_bytes().unwrap();
    let good_file = lab.write("good.krl", &good);
    assert_eq!(
        lab.query(&good_file, std::slice::from_ref(&probe)),
        vec![false]
    );
    let list_1 = [&[0x20, 0, 0, 0, 8][..], &1u64.to_be_bytes()].concat();
    let range_5_9 = [
        &[0x21, 0, 0, 0, 16][..],
        &5u64.to_be_bytes(),
        &9u64.to_be_bytes(),
    ]
    .concat();
    let replace = |from: &[u8], to: &[u8]| {
        let at = good.windows(from.len()).position(|w| w == from).unwrap();
        [&good[..at], to, &good[at + from.len()..]].concat()
    };
    let serial_zero = replace(
        &list_1,
        &[&[0x20, 0, 0, 0, 8][..], &0u64.to_be_bytes()].concat(),
    );
    let reversed = replace(
        &range_5_9,
        &[
            &[0x21, 0, 0, 0, 16][..],
            &9u64.to_be_bytes(),
            &5u64.to_be_bytes(),
        ]
        .concat(),
    );
    let cert_extension = replace(
        &list_1,
        &[&[0x39, 0, 0, 0, 8][..], &1u64.to_be_bytes()].concat(),
    );
    let cases: Vec<(&str, Vec<u8>, KrlError)> = vec![
        ("serial zero", serial_zero, KrlError::SerialZero),
        (
            "reversed",
            reversed,
            KrlError::SerialRangeReversed { lo: 9, hi: 5 },
        ),
        (
            "subsection 0x39",
            cert_extension,
            KrlError::UnknownCertSubsection(0x39),
        ),
        (
            "section 6",
            [&good[..], &[6, 0, 0, 0, 0]].concat(),
            KrlError::UnknownSection(6),
        ),
        (
            "section 255",
            [&good[..], &[255, 0, 0, 0, 0]].concat(),
            KrlError::UnknownSection(255),
        ),
        (
            "garbage",
            [&good[..], b"garbage"].concat(),
            KrlError::Truncated { what: "section" },
        ),
        (
            "one byte",
            [&good[..], &[0]].concat(),
            KrlError::Truncated { what: "section" },
        ),
    ];
    for (name, bytes, want) in cases {
        assert_eq!(Krl::parse(&bytes).map(|_| ()), Err(want), "{name}");
        let file = lab.write("bad.krl", &bytes);
        lab.assert_rejected(&file, &probe);
    }
}

#[test]
fn random_revocation_sets_agree_with_ssh_keygen() {
    let pop = Population::new();
    let plain = [
        "ca1", "ca2", "ca3", "u_ed", "u_ec", "u_rsa", "p1", "p2", "p3", "p4",
    ];
    let blobs: Vec<Vec<u8>> = plain.iter().map(|n| blob(&pop.pub_key(n))).collect();
    let ids = [
        "alice-laptop",
        "mallory",
        "u-3",
        "v-10",
        "Alice-laptop",
        "p1",
    ];
    let ranges = || proptest::collection::vec((1u64..48, 0u64..4), 0..6);
    let id_sets = || proptest::collection::vec(proptest::sample::select(ids.to_vec()), 0..3);
    let strategy = (
        (ranges(), ranges(), ranges(), any::<bool>()),
        (id_sets(), id_sets(), id_sets()),
        (any::<u16>(), any::<u16>()),
        (any::<u64>(), "[ -~]{0,20}"),
    );
    let mut runner = TestRunner::new(Config {
        cases: 16,
        failure_persistence: None,
        ..Config::default()
    });
    let checked = std::cell::Cell::new(0);
    runner
        .run(
            &strategy,
            |((r1, r2, rw, top), (i1, i2, iw), (explicit, hashed), (version, comment))| {
                let serials =
                    |r: &[(u64, u64)]| r.iter().map(|&(lo, n)| (lo, lo + n)).collect::<Vec<_>>();
                let mut ca2_serials = serials(&r2);
                if top {
                    ca2_serials.push((MAX - 5, MAX));
                }
                let pick = |mask: u16| -> Vec<Vec<u8>> {
                    blobs
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| (mask >> i) & 1 == 1)
                        .map(|(_, b)| b.clone())
                        .collect()
                };
                let krl = Krl {
                    version,
                    generated_at: 1_700_000_000,
                    comment,
                    certificates: vec![
                        CertificateSection {
                            ca_key: blobs[1].clone(),
                            serials: ca2_serials,
                            key_ids: i2.iter().map(|s| s.to_string()).collect(),
                        },
                        CertificateSection {
                            ca_key: blobs[0].clone(),
                            serials: serials(&r1),
                            key_ids: i1.iter().map(|s| s.to_string()).collect(),
                        },
                        CertificateSection {
                            ca_key: vec![],
                            serials: serials(&rw),
                            key_ids: iw.iter().map(|s| s.to_string()).collect(),
                        },
                    ],
                    explicit_keys: pick(explicit),
                    sha256_fingerprints: pick(hashed)
                        .iter()
                        .map(|b| Sha256::digest(b).into())
                        .collect(),
                    sha1_fingerprints: vec![],
                };
                let bytes = krl.to_bytes().unwrap();
                let file = pop.lab.write("random.krl", &bytes);
                agree(&pop.lab, &file, &krl, &pop.files);
                agree(
                    &pop.lab,
                    &file,
                    &Krl::parse(&bytes).unwrap().krl,
                    &pop.files,
                );
                checked.set(checked.get() + 1);
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(checked.get(), 16);
}
