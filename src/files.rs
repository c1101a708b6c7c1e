//! Writing files that other programs read at any moment (sshd reads `RevokedKeys` at every
//! login, ssh reads certificates) or that hold secrets (the CA keys): the new content goes to a
//! private temporary file with a name nobody can guess, is synced, and is then put in place in
//! one step, so a reader sees the old file or the whole new one, never a part.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `bytes` to `path` with `mode`. With `replace`, an existing file is replaced (rename);
/// without, an existing file wins and nothing is written (hard link, which fails if `path`
/// exists). Returns whether this call put its file in place.
pub fn write_atomically(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    replace: bool,
) -> std::io::Result<bool> {
    use rand::RngCore;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file")
    })?;
    let mut nonce = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        nonce.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ));
    // create_new: never through a link or onto a file someone else made.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    let placed = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            if replace {
                std::fs::rename(&tmp, path).map(|()| true)
            } else {
                match std::fs::hard_link(&tmp, path) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(e),
                }
            }
        });
    // Ours alone to remove (after a rename it is gone already).
    let _ = std::fs::remove_file(&tmp);
    let placed = placed?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_or_keeps_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        assert!(write_atomically(&path, b"one", 0o600, false).unwrap());
        assert!(!write_atomically(&path, b"two", 0o600, false).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        assert!(write_atomically(&path, b"three", 0o644, true).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"three");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
