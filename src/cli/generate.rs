//! `keyportal generate man DIR` and `keyportal generate completions SHELL`: the man pages and
//! shell completions the Debian package installs, made from the same clap definitions as
//! `--help` so they cannot drift from the binary they ship with.
//!
//! Man pages: one per command, named the way `man` looks them up (`keyportal.1`,
//! `keyportal-serve.1`, `keyportal-admin-create.1`, ...), written by clap_mangen. Completions:
//! printed to standard output for `bash`, `zsh`, `fish` (and clap_complete's other shells).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Subcommand};
use clap_complete::Shell;

#[derive(Subcommand, Debug)]
pub enum GenerateCommand {
    /// Write a man page for keyportal and each of its commands into DIR (created if missing).
    Man {
        /// The directory to write `keyportal.1`, `keyportal-serve.1`, ... into.
        dir: PathBuf,
    },
    /// Print the completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to complete for.
        shell: Shell,
    },
}

pub fn run(command: &GenerateCommand) -> ExitCode {
    let result = match command {
        GenerateCommand::Man { dir } => man_pages(dir),
        GenerateCommand::Completions { shell } => completions(*shell),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyportal: {e}");
            ExitCode::FAILURE
        }
    }
}

fn man_pages(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    clap_mangen::generate_to(super::Cli::command(), dir)
        .map_err(|e| format!("cannot write the man pages into {}: {e}", dir.display()))
}

fn completions(shell: Shell) -> Result<(), String> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut super::Cli::command(), "keyportal", &mut script);
    let script = String::from_utf8(script).map_err(|e| e.to_string())?;
    super::print_stdout(script.trim_end_matches('\n'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_man_page_per_command() {
        let dir = tempfile::tempdir().unwrap();
        man_pages(dir.path()).unwrap();
        for page in [
            "keyportal.1",
            "keyportal-serve.1",
            "keyportal-admin.1",
            "keyportal-admin-create.1",
            "keyportal-generate-man.1",
        ] {
            let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
            assert!(text.starts_with(".ie \\n(.g"), "{page} is not roff");
        }
        let serve = std::fs::read_to_string(dir.path().join("keyportal-serve.1")).unwrap();
        assert!(serve.contains("KEYPORTAL_DATA_DIR"), "{serve}");
    }

    #[test]
    fn completion_scripts_name_the_commands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut script = Vec::new();
            clap_complete::generate(
                shell,
                &mut super::super::Cli::command(),
                "keyportal",
                &mut script,
            );
            let script = String::from_utf8(script).unwrap();
            assert!(script.contains("fetch-keys"), "{shell}: {script}");
        }
    }
}
