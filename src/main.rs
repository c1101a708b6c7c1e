//! The `keyportal` binary: everything lives in the library; see `keyportal --help`.

fn main() -> std::process::ExitCode {
    keyportal::cli::run()
}
