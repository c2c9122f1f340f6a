//! The `racklift` binary: parse the command line, dispatch.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = racklift::cli::Cli::parse();
    racklift::cli::init_logging();
    match cli.run() {
        Ok(code) => code,
        Err(e) => {
            let chain: Vec<String> = e.chain().map(ToString::to_string).collect();
            eprintln!("racklift: error: {}", chain.join(": "));
            std::process::ExitCode::FAILURE
        }
    }
}
