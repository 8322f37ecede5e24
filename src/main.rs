//! The `percore` binary: parse the command line, then hand over to the supervisor.

use percore::config::{parse_args, CliOutcome};

fn main() {
    match parse_args(std::env::args_os()) {
        CliOutcome::Run(config) => std::process::exit(percore::supervisor::run(config)),
        CliOutcome::Exit {
            code,
            message,
            to_stderr,
        } => {
            if to_stderr {
                eprintln!("{}", message.trim_end());
            } else {
                println!("{}", message.trim_end());
            }
            std::process::exit(code);
        }
    }
}
