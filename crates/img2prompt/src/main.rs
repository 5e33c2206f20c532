//! The `img2prompt` binary: see `img2prompt --help`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = img2prompt::cli::Cli::parse();
    match img2prompt::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
