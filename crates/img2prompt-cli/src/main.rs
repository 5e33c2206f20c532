//! The `img2prompt` binary: see `img2prompt --help`.

mod cli;
mod models;
mod output;
mod progress;
mod serve;

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        // A bad option value is one line naming the option, like every other bad input.
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::ValueValidation | clap::error::ErrorKind::InvalidValue
            ) =>
        {
            let rendered = e.render().to_string();
            eprintln!(
                "{}",
                rendered.lines().next().unwrap_or("error: invalid value")
            );
            return std::process::ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            match cli::hint(&error) {
                Some(hint) => eprintln!("error: {error} ({hint})"),
                None => eprintln!("error: {error}"),
            }
            std::process::ExitCode::FAILURE
        }
    }
}
