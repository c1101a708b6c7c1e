//! Writes distinct, valid Ed25519 public keys for bench/scale.sh: FILES files of PER_FILE
//! authorized_keys lines each, key i being the (1000 + i)-th multiple of the base point, so
//! every run gets the same keys.
//!   cargo run --release --example scale_keys -- DIR FILES PER_FILE [FIRST]

use std::io::Write;

use base64::Engine;
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::scalar::Scalar;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, files, per_file, rest @ ..] = args.as_slice() else {
        return Err("usage: scale_keys DIR FILES PER_FILE [FIRST]".into());
    };
    let (files, per_file): (u64, u64) = (files.parse()?, per_file.parse()?);
    let first: u64 = rest.first().map_or(Ok(0), |f| f.parse())?;
    let mut point = ED25519_BASEPOINT_POINT * Scalar::from(1000 + first);
    let mut blob = Vec::with_capacity(51);
    let mut line = String::with_capacity(120);
    let mut i = first;
    for f in 0..files {
        let mut out = std::io::BufWriter::new(std::fs::File::create(format!("{dir}/keys{f}"))?);
        for _ in 0..per_file {
            blob.clear();
            blob.extend_from_slice(&11u32.to_be_bytes());
            blob.extend_from_slice(b"ssh-ed25519");
            blob.extend_from_slice(&32u32.to_be_bytes());
            blob.extend_from_slice(point.compress().as_bytes());
            line.clear();
            line.push_str("ssh-ed25519 ");
            base64::engine::general_purpose::STANDARD.encode_string(&blob, &mut line);
            line.push_str(&format!(" scale-{i}\n"));
            out.write_all(line.as_bytes())?;
            point += ED25519_BASEPOINT_POINT;
            i += 1;
        }
        out.flush()?;
    }
    Ok(())
}
