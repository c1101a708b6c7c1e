//! `keyportal key check`: the contract of the CLI section of `shared/spec/api.md`.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn key_check(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyportal"))
        .args(["key", "check"])
        .args(args)
        .current_dir(common::corpus_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run keyportal");
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or_default()).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[test]
fn all_valid_files_exit_0_with_one_json_object_each_in_order() {
    let out = key_check(
        &[
            "--json",
            "valid/ed25519.pub",
            "valid/rfc4716-rsa-3072.pub",
            "valid/pem-pkcs8-ecdsa-521.pub",
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_lines(&out);
    assert_eq!(v.len(), 3);
    assert_eq!(v[0]["file"], "valid/ed25519.pub");
    assert_eq!(v[0]["valid"], true);
    assert_eq!(v[0]["algorithm"], "ssh-ed25519");
    assert_eq!(v[0]["bits"], 256);
    assert_eq!(
        v[0]["sha256"],
        "SHA256:25/L5aQAQ+ZU44q2L+aJKS10+aHYendqOjkVb4BgfWY"
    );
    assert_eq!(
        v[0]["md5"],
        "MD5:4b:20:83:90:2a:87:0a:3b:07:a4:65:af:e4:71:9d:3f"
    );
    assert!(v[0]["canonical"]
        .as_str()
        .unwrap()
        .starts_with("ssh-ed25519 AAAA"));
    assert!(v[0]["comment"].is_string());
    assert_eq!(
        (v[1]["algorithm"].as_str(), v[1]["bits"].as_u64()),
        (Some("ssh-rsa"), Some(3072))
    );
    assert_eq!(
        (v[2]["algorithm"].as_str(), v[2]["bits"].as_u64()),
        (Some("ecdsa-sha2-nistp521"), Some(521))
    );
}

#[test]
fn a_rejected_file_exits_1_and_names_code_and_message() {
    let out = key_check(
        &["--json", "valid/ed25519.pub", "invalid/rsa-1024.pub"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let v = json_lines(&out);
    assert_eq!(v[1]["valid"], false);
    assert_eq!(v[1]["code"], "key_too_small");
    assert!(v[1]["message"].as_str().unwrap().contains("1024"));
    assert!(v[1].get("sha256").is_none());
}

#[test]
fn usage_errors_and_unreadable_files_exit_2() {
    assert_eq!(key_check(&[], None).status.code(), Some(2));
    assert_eq!(key_check(&["--bogus", "x"], None).status.code(), Some(2));
    let out = key_check(&["no/such/file.pub"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/file.pub"));
}

#[test]
fn dash_reads_standard_input() {
    let key = std::fs::read(common::corpus_dir().join("valid/ecdsa-256.pub")).unwrap();
    let out = key_check(&["--json", "-"], Some(&key));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json_lines(&out)[0]["file"], "-");
}

#[test]
fn lines_mode_judges_each_line_with_its_number_and_options() {
    let file = b"# team keys\n\
        ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJWOK2GQPsZiGp3/HEG5pLnqs8n7YJqqY2f0A9cU0ROf alice\n\
        \n\
        from=\"10.0.0.0/8\",no-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJWOK2GQPsZiGp3/HEG5pLnqs8n7YJqqY2f0A9cU0ROf bob\n\
        ssh-dss AAAAB3NzaC1kc3MAAACBAP8= carol\n";
    let out = key_check(&["--json", "--lines", "-"], Some(file));
    assert_eq!(out.status.code(), Some(1));
    let v = json_lines(&out);
    assert_eq!(v.len(), 3, "blank and # lines are skipped");
    assert_eq!(
        (v[0]["line"].as_u64(), v[0]["valid"].as_bool()),
        (Some(2), Some(true))
    );
    assert_eq!(v[1]["line"], 4);
    assert_eq!(v[1]["options"], "from=\"10.0.0.0/8\",no-pty");
    assert_eq!(
        (v[2]["line"].as_u64(), v[2]["valid"].as_bool()),
        (Some(5), Some(false))
    );
    assert_eq!(v[2]["code"], "encoding_invalid");
}

#[test]
fn lines_mode_refuses_a_private_key_whole_without_echoing_it() {
    let private =
        std::fs::read(common::corpus_dir().join("invalid/private-openssh-ed25519.pub")).unwrap();
    let out = key_check(&["--json", "--lines", "-"], Some(&private));
    assert_eq!(out.status.code(), Some(1));
    let v = json_lines(&out);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["code"], "private_key");
    assert!(v[0].get("line").is_none());
    let secret_line = String::from_utf8_lossy(&private)
        .lines()
        .nth(2)
        .unwrap()
        .to_owned();
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&secret_line));
}

#[test]
fn a_policy_file_changes_the_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.json");
    std::fs::write(&policy, br#"{"min_rsa_bits": 4096}"#).unwrap();
    let out = key_check(
        &["--policy", policy.to_str().unwrap(), "valid/rsa-3072.pub"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("key_too_small"));
    std::fs::write(&policy, br#"{"min_rsa_bits": 9000, "max_rsa_bits": 4096}"#).unwrap();
    assert_eq!(
        key_check(
            &["--policy", policy.to_str().unwrap(), "valid/rsa-3072.pub"],
            None
        )
        .status
        .code(),
        Some(2)
    );
}

#[test]
fn json_output_is_valid_for_every_corpus_file_and_matches_the_validator() {
    let cases = common::corpus();
    let files: Vec<&str> = cases.iter().map(|c| c.file.as_str()).collect();
    let mut args = vec!["--json"];
    args.extend(&files);
    let out = key_check(&args, None);
    let verdicts = json_lines(&out);
    assert_eq!(verdicts.len(), cases.len());
    for (v, case) in verdicts.iter().zip(&cases) {
        assert_eq!(v["file"], case.file.as_str());
        match keyportal::keys::validate(&case.bytes, &keyportal::keys::Policy::default()) {
            Ok(k) => {
                assert_eq!(v["valid"], true);
                assert_eq!(v["comment"], k.comment(), "{}", case.file);
                assert_eq!(v["canonical"], k.public_key());
                assert_eq!(
                    (v["sha256"].as_str(), v["md5"].as_str()),
                    (Some(case.sha256.as_str()), Some(case.md5.as_str()))
                );
            }
            Err(r) => {
                assert_eq!(v["valid"], false);
                assert_eq!(v["code"], r.code.as_str(), "{}", case.file);
                assert_eq!(v["message"], r.message.as_str());
            }
        }
    }
}
