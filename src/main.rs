//! The `percore` binary: parse the command line, then hand over to the supervisor; or, as
//! `percore check [--connections N] [flags…]`, report what this host allows toward N
//! connections (1,000,000 by default) under that configuration.

use std::io::Write;

use percore::config::{parse_args, CliOutcome};

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|arg| arg == "check") {
        std::process::exit(host_check(args));
    }
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

/// `percore check`: 0 when the host fits the target, 1 when it does not, 2 for bad arguments.
fn host_check(mut args: Vec<std::ffi::OsString>) -> i32 {
    args.remove(1);
    let mut target = 1_000_000;
    if let Some(i) = args.iter().position(|arg| arg == "--connections") {
        let value = args
            .get(i + 1)
            .and_then(|v| v.to_str()?.replace(['_', ','], "").parse().ok());
        match value {
            Some(n) if n > 0 => target = n,
            _ => {
                let line = "percore: invalid --connections: expected a positive number";
                return print_and_exit_code(2, line, true);
            }
        }
        args.drain(i..i + 2);
    }
    match parse_args(args) {
        CliOutcome::Run(config) => {
            let findings =
                percore::hostcheck::assess(&percore::hostcheck::gather(), &config, target);
            let (text, fits) = percore::hostcheck::report(&findings, target);
            print_and_exit_code(if fits { 0 } else { 1 }, &text, false)
        }
        CliOutcome::Exit {
            code,
            message,
            to_stderr,
        } => print_and_exit_code(code, &message, to_stderr),
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
