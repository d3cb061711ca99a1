//! The command line as operators and their tools meet it: help and version whatever the
//! environment, a closed pipe, logs without colours, the container health check.

use std::process::{Command, Stdio};

use crate::helpers::{run_command, spawn_app};

fn wxlogin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wxlogin"))
}

#[test]
fn version_names_the_release_and_the_commit_it_was_built_from() {
    let (status, stdout, _) = run_command(&["--version"], &[]);
    assert!(status.success());
    let version = format!("wxlogin {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(stdout.starts_with(&version), "{stdout}");
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|out| out.status.success());
    if let Some(head) = head {
        let head = String::from_utf8(head.stdout).unwrap();
        assert_eq!(stdout.trim(), format!("{version}{})", head.trim()));
    }
}

#[test]
fn help_and_version_answer_whatever_the_environment_holds() {
    // A misspelt setting stops the service (exit 2), but not a request for help.
    let typo = [("WXLOGIN_APP_ID", "typo")];
    assert_eq!(run_command(&[], &typo).0.code(), Some(2));
    for (arg, says) in [
        ("--help", "usage: wxlogin"),
        ("-h", "usage: wxlogin"),
        ("--version", "wxlogin "),
        ("-V", "wxlogin "),
    ] {
        let (status, stdout, stderr) = run_command(&[arg], &typo);
        assert!(status.success(), "{arg}: {stderr}");
        assert!(stdout.starts_with(says), "{arg}: {stdout}");
    }
}

#[test]
fn help_into_a_closed_pipe_does_not_panic() {
    for arg in ["--help", "--version"] {
        let (reader, writer) = std::io::pipe().unwrap();
        // Closed before the process starts: its first write meets EPIPE.
        drop(reader);
        let out = wxlogin()
            .arg(arg)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{arg}: {:?} {stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[tokio::test]
async fn logs_into_a_pipe_carry_no_colour_codes() {
    let app = spawn_app().await;
    app.wait_for_log("wxlogin started").await;
    let log = app.log();
    assert!(!log.contains('\u{1b}'), "{log:?}");
}

#[tokio::test]
async fn healthcheck_exits_0_while_the_service_answers_and_1_when_it_does_not() {
    let app = spawn_app().await;
    let bind = app.address.trim_start_matches("http://").to_owned();
    let (status, _, stderr) = run_command(&["healthcheck"], &[("WXLOGIN_BIND", &bind)]);
    assert!(status.success(), "{stderr}");

    // The same port on the wildcard address is reached on loopback.
    let port = bind.rsplit(':').next().unwrap();
    let wildcard = format!("0.0.0.0:{port}");
    let (status, _, stderr) = run_command(&["healthcheck"], &[("WXLOGIN_BIND", &wildcard)]);
    assert!(status.success(), "{stderr}");

    drop(app);
    let (status, _, stderr) = run_command(&["healthcheck"], &[("WXLOGIN_BIND", &bind)]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("wxlogin healthcheck"), "{stderr}");
}
