//! The `racklift` binary: parse the command line, dispatch.

use std::process::ExitCode;

/// No argument racklift takes is longer; a longer one (a hook fed garbage) is refused before
/// parsing, so error messages stay short.
const MAX_ARG_BYTES: usize = 4096;

fn main() -> ExitCode {
    if let Some(long) = std::env::args_os().find(|a| a.len() > MAX_ARG_BYTES) {
        eprintln!(
            "racklift: error: an argument is {} bytes long; at most {MAX_ARG_BYTES} are allowed",
            long.len()
        );
        return ExitCode::from(2);
    }
    let cli = racklift::cli::Cli::parse_or_exit();
    racklift::cli::init_logging();
    match cli.run() {
        Ok(code) => code,
        Err(e) => {
            let chain: Vec<String> = e.chain().map(ToString::to_string).collect();
            eprintln!("racklift: error: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}
