//! Records the git revision the binary was built from, for `keyportal --version` and the
//! `keyportal_build_info` metric: on a server at 3 a.m. "which build is this?" must have an
//! answer. Outside a git checkout (a source tarball) the revision is "unknown".

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_owned())
}

fn main() {
    // The commit checked out; uncommitted edits are not tracked (the build script does not
    // rerun on every source change, so such a marker could not be kept true).
    let revision = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=KEYPORTAL_GIT_REVISION={revision}");
    // Rebuild when HEAD moves (a commit, a checkout). Only files that exist: cargo takes a
    // missing one as changed, and would rerun this and rebuild the crate on every build.
    let mut watched = Vec::new();
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        watched.push(PathBuf::from(dir).join("HEAD"));
        // Branches live in the common directory (shared by every worktree).
        if let Some(common) = git(&["rev-parse", "--git-common-dir"]).map(PathBuf::from) {
            watched.push(common.join("packed-refs"));
            if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
                watched.push(common.join(head_ref));
            }
        }
    }
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-changed=build.rs");
    // sqlx::migrate! embeds migrations/ at compile time: edits to a migration are tracked,
    // but nothing notices a new file there unless the build script watches the directory.
    println!("cargo:rerun-if-changed=migrations");
}
