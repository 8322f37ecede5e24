//! The command line: bad flags and config end in one clear line and exit status 2.

use std::process::Command;

use crate::harness::bin;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("running percore");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_values_exit_2_with_one_line_naming_them() {
    for (args, needle) in [
        (&["--ports", "0-5"][..], "0-5"),
        (&["--ports", "70000"][..], "70000"),
        (&["--ports", "9000-8000"][..], "9000-8000"),
        (&["--workers", "0"][..], "0"),
        (
            &["--root", "/definitely/not/here"][..],
            "/definitely/not/here",
        ),
        (&["--no-such-flag"][..], "--no-such-flag"),
    ] {
        let (code, _out, err) = run(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?} printed more than one line: {err}"
        );
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn help_shows_examples_and_exits_0() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("--ports"));
    assert!(out.contains("percore --"), "examples missing: {out}");
}

#[test]
fn unknown_config_key_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "portz = 80\n").unwrap();
    let (code, _, err) = run(&["--config", file.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("portz"), "{err}");
}

/// An installed binary started outside the repository has no `www` beside it: the error names
/// the absolute path tried, the directory it was relative to, and how to set another root.
#[test]
fn a_missing_default_root_names_the_absolute_path_and_how_to_set_it() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = std::fs::canonicalize(dir.path()).unwrap();
    let out = Command::new(bin())
        .current_dir(&cwd)
        .output()
        .expect("running percore");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let expected = format!(
        "percore: root directory {}/www does not exist (relative to the current directory {}; \
         set it with --root DIR or root = \"...\" in the config file)\n",
        cwd.display(),
        cwd.display()
    );
    assert_eq!(err, expected);
}

/// nginx's `-t`: a valid configuration is reported on one line and exit status 0, without
/// binding anything (the ports and the admin address are taken by this test, so a bind or a
/// started worker would fail).
#[test]
fn check_config_validates_without_binding() {
    let root = tempfile::tempdir().unwrap();
    let root_path = std::fs::canonicalize(root.path()).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let admin = format!("127.0.0.1:{port}");
    let file = root.path().join("percore.toml");
    std::fs::write(
        &file,
        format!("root = '{}'\nworkers = 7\nports = 1\n", root_path.display()),
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let (code, out, err) = run(&[
        "--config",
        file,
        "--bind",
        "127.0.0.1",
        "--ports",
        &port,
        "--admin",
        &admin,
        "--check-config",
    ]);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    assert_eq!(
        out,
        format!(
            "percore: configuration is valid (config file {file}; root {}; 127.0.0.1 port(s) \
             {port}; 7 worker(s); admin on {admin})\n",
            root_path.display()
        )
    );
}

#[test]
fn check_config_fails_with_status_2_and_the_reason() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("missing");
    let not_dir = root.path().join("file.txt");
    std::fs::write(&not_dir, "x").unwrap();
    let bad_file = root.path().join("bad.toml");
    std::fs::write(&bad_file, "workers = 0\n").unwrap();
    let root_arg = root.path().to_str().unwrap();
    for (args, needle) in [
        (
            vec!["--root", missing.to_str().unwrap()],
            format!("root directory {} does not exist", missing.display()),
        ),
        (
            vec!["--root", not_dir.to_str().unwrap()],
            format!("root {} is not a directory", not_dir.display()),
        ),
        (
            vec!["--root", root_arg, "--config", bad_file.to_str().unwrap()],
            "invalid workers '0': must be at least 1".to_owned(),
        ),
    ] {
        let mut args = args;
        args.push("--check-config");
        let (code, out, err) = run(&args);
        assert_eq!((code, out.as_str()), (2, ""), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(&needle), "{args:?}: {err}");
    }
}

/// `percore -h | head -1`: the reader may close the pipe before percore writes. Here the read
/// end is closed before percore starts (it belonged to a `true` that has exited), so every
/// write fails with EPIPE; `println!` used to panic on that (status 101).
#[test]
fn help_and_version_into_a_closed_pipe_do_not_panic() {
    for flag in ["-h", "--help", "--version", "--check-config"] {
        let mut reader = Command::new("true")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("spawning true");
        let writer = reader.stdin.take().expect("the pipe's write end");
        reader.wait().expect("true exits");
        let root = tempfile::tempdir().unwrap();
        let out = Command::new(bin())
            .args([flag, "--root", root.path().to_str().unwrap()])
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("running percore");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{flag}: {err}");
        assert!(!err.contains("panicked"), "{flag}: {err}");
    }
}

/// `percore check` judges this host for a target: a small one fits, a hundred million does
/// not (no host has the descriptors), and the failing line says which setting lifts it.
#[test]
fn check_reports_what_the_host_allows() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path().to_str().unwrap();
    let (code, out, err) = run(&["check", "--connections", "1000", "--root", root]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("percore check: toward 1,000 connections\n"),
        "{out}"
    );
    assert!(out.contains("open files: soft "), "{out}");
    assert!(out.ends_with("this host fits the target\n"), "{out}");

    let (code, out, _) = run(&["check", "--connections", "100_000_000", "--root", root]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("  FAIL  open files:"), "{out}");
    assert!(out.contains("lift: LimitNOFILE=100000"), "{out}");
    assert!(
        out.ends_with("does not fit the target: see the FAIL lines\n"),
        "{out}"
    );

    let (code, _, err) = run(&["check", "--connections", "many", "--root", root]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid --connections"), "{err}");
    // The configuration is checked as for a start.
    let (code, _, err) = run(&["check", "--workers", "0", "--root", root]);
    assert_eq!(code, 2, "{err}");
}
