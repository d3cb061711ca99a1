//! The load tool's short mode, so it keeps working as the service changes. Only behaviour is
//! asserted (every request succeeded, every scenario reported), never a timing.

use std::process::Command;

#[test]
fn the_load_tool_runs_every_scenario_without_a_failed_request() {
    let output = Command::new(env!("CARGO_BIN_EXE_wxlogin-bench"))
        .args(["--quick", "--server", env!("CARGO_BIN_EXE_wxlogin")])
        .output()
        .expect("the load tool starts");
    let table = String::from_utf8_lossy(&output.stdout);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{table}\n{log}");
    for scenario in [
        "1 status polls",
        "2 callback SCAN events (plain)",
        "2 callback SCAN events (safe mode)",
        "3 notify latency",
        "4 RSS per pending scene",
        "5 durable binds",
        "6 held long-polls",
        "7 status, idle",
        "during a purge of",
        "during a backup of",
    ] {
        assert!(
            table.contains(scenario),
            "{scenario} missing from:\n{table}"
        );
    }
}

#[test]
fn the_load_tool_sends_pushes_elsewhere_only_for_a_server_it_targets() {
    // Its own server has one node: there is no other to push to.
    let output = Command::new(env!("CARGO_BIN_EXE_wxlogin-bench"))
        .args(["--push-url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--push-url needs --url"), "{stderr}");
}
