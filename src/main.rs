//! The `percore` binary: parse the command line, then hand over to the supervisor.

use std::io::Write;

use percore::config::{parse_args, CliOutcome};

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match parse_args(args.clone()) {
        CliOutcome::Run(config) => {
            let reload = Box::new(move || percore::config::reload(args.clone()));
            std::process::exit(percore::supervisor::run(config, reload))
        }
        CliOutcome::Exit {
            code,
            message,
            to_stderr,
        } => std::process::exit(print_and_exit_code(code, &message, to_stderr)),
    }
}

/// Prints `message` and returns the exit status. `println!` panics when the reader has gone
/// away (`percore -h | head -1`); a reader that stopped early wanted no more, so a broken pipe
/// keeps `code`, and any other write error is reported and turns a success into status 1.
fn print_and_exit_code(code: i32, message: &str, to_stderr: bool) -> i32 {
    let line = format!("{}\n", message.trim_end());
    let written = if to_stderr {
        std::io::stderr().lock().write_all(line.as_bytes())
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(line.as_bytes()).and_then(|()| out.flush())
    };
    match written {
        Ok(()) => code,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "percore: cannot write the output: {e}");
            if code == 0 {
                1
            } else {
                code
            }
        }
    }
}
