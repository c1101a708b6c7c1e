//! `keyportal key check [--json] [--lines] FILE...`: the validator on files, one verdict per
//! input (or per line with `--lines`), in order.

use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::keys::{self, KeyRejection, Policy, ValidatedKey};

#[derive(clap::Args, Debug)]
pub struct KeyCheckArgs {
    /// Print one JSON object per verdict (JSON Lines).
    #[arg(long)]
    json: bool,
    /// Judge each line of each file as one key, as in an authorized_keys file (options allowed).
    #[arg(long)]
    lines: bool,
    /// A JSON policy file (fields of the policy; missing ones take the defaults).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Files to check; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<String>,
}

pub fn run(args: &KeyCheckArgs) -> ExitCode {
    let policy = match &args.policy {
        None => Policy::default(),
        Some(path) => match std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                let p: Policy = serde_json::from_slice(&b).map_err(|e| e.to_string())?;
                p.check().map(|()| p)
            }) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("keyportal: policy file {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
    };
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut all_valid = true;
    for file in &args.files {
        let input = match read_input(file) {
            Ok(b) => b,
            Err(e) => {
                let _ = out.flush();
                eprintln!("keyportal: cannot read {file}: {e}");
                return ExitCode::from(2);
            }
        };
        let written = if args.lines {
            // Each line is judged and written before the next is read.
            match keys::authorized_keys_verdicts(&input, &policy) {
                Ok(mut verdicts) => verdicts.try_for_each(|v| {
                    all_valid &= v.result.is_ok();
                    emit(&mut out, args.json, file, Some(v.line), &v.result)
                }),
                Err(whole_file) => {
                    all_valid = false;
                    emit(&mut out, args.json, file, None, &Err(whole_file))
                }
            }
        } else {
            let result = keys::validate(&input, &policy);
            all_valid &= result.is_ok();
            emit(&mut out, args.json, file, None, &result)
        };
        if let Err(e) = written {
            if e.kind() == io::ErrorKind::BrokenPipe {
                return ExitCode::from(if all_valid { 0 } else { 1 });
            }
            eprintln!("keyportal: cannot write output: {e}");
            return ExitCode::from(2);
        }
    }
    if let Err(e) = out.flush() {
        if e.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("keyportal: cannot write output: {e}");
            return ExitCode::from(2);
        }
    }
    ExitCode::from(if all_valid { 0 } else { 1 })
}

fn read_input(file: &str) -> io::Result<Vec<u8>> {
    if file == "-" {
        let mut buf = Vec::new();
        io::stdin().read_to_end(&mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(file)
    }
}

fn emit(
    out: &mut impl Write,
    json: bool,
    file: &str,
    line: Option<usize>,
    result: &Result<ValidatedKey, KeyRejection>,
) -> io::Result<()> {
    if json {
        return emit_json(out, file, line, result);
    }
    let place = match line {
        Some(n) => format!("{file}:{n}"),
        None => file.to_owned(),
    };
    match result {
        Ok(k) => writeln!(
            out,
            "{place}: valid {} {} {} {}",
            k.algorithm(),
            k.bits(),
            k.fingerprint_sha256(),
            k.comment()
        ),
        Err(r) => match r.reason {
            Some(reason) => writeln!(
                out,
                "{place}: rejected {} ({}): {}",
                r.code,
                reason.as_str(),
                r.message
            ),
            None => writeln!(out, "{place}: rejected {}: {}", r.code, r.message),
        },
    }
}

/// One JSON object per verdict, in the contract's field order. Free text (file name, comment,
/// options, message) goes through serde_json's escaping; the other fields come from fixed
/// alphabets (algorithm names, base64, hex, digits) that need none.
fn emit_json(
    out: &mut impl Write,
    file: &str,
    line: Option<usize>,
    result: &Result<ValidatedKey, KeyRejection>,
) -> io::Result<()> {
    let text =
        |out: &mut dyn Write, s: &str| serde_json::to_writer(out, s).map_err(io::Error::other);
    out.write_all(b"{\"file\":")?;
    text(out, file)?;
    if let Some(n) = line {
        write!(out, ",\"line\":{n}")?;
    }
    match result {
        Ok(k) => {
            out.write_all(b",\"valid\":true,\"algorithm\":\"")?;
            out.write_all(k.algorithm().as_str().as_bytes())?;
            write!(out, "\",\"bits\":{},\"sha256\":\"", k.bits())?;
            out.write_all(k.fingerprint_sha256().as_bytes())?;
            out.write_all(b"\",\"md5\":\"")?;
            out.write_all(k.fingerprint_md5().as_bytes())?;
            out.write_all(b"\",\"canonical\":\"")?;
            out.write_all(k.public_key().as_bytes())?;
            out.write_all(b"\",\"comment\":")?;
            text(out, k.comment())?;
            if !k.options().is_empty() {
                out.write_all(b",\"options\":")?;
                text(out, &k.options().to_string())?;
            }
        }
        Err(r) => {
            write!(out, ",\"valid\":false,\"code\":\"{}\",", r.code.as_str())?;
            if let Some(reason) = r.reason {
                write!(out, "\"reason\":\"{}\",", reason.as_str())?;
            }
            out.write_all(b"\"message\":")?;
            text(out, &r.message)?;
        }
    }
    out.write_all(b"}\n")
}
