//! README's curl walk-through, run as it stands there against a sandbox server: the script a
//! newcomer pastes must log in.

use std::path::Path;
use std::process::Command;

use crate::helpers::spawn_app;

/// The shell block between README's `<!-- walkthrough -->` markers.
fn readme_walkthrough() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md is readable");
    let block = readme
        .split_once("<!-- walkthrough -->")
        .and_then(|(_, rest)| rest.split_once("<!-- /walkthrough -->"))
        .expect("README marks its walk-through")
        .0;
    block
        .trim()
        .strip_prefix("```sh")
        .and_then(|b| b.strip_suffix("```"))
        .expect("the walk-through is one sh block")
        .to_owned()
}

#[tokio::test]
#[cfg_attr(
    not(has_curl_jq),
    ignore = "needs curl and jq: apt-get install curl jq"
)]
async fn the_readme_walkthrough_logs_in() {
    let script = readme_walkthrough();
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let mut bash = Command::new("bash");
    bash.arg("-c")
        .arg(&script)
        .env("B", app.url(""))
        .current_dir(dir.path());
    // The server answers on this runtime's threads while the script runs.
    let run = tokio::task::spawn_blocking(move || bash.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}\n{}", app.log());
    // After the account's reply to the scan (a line or more of Chinese text):
    let lines: Vec<&str> = stdout.lines().rev().take(4).collect();
    assert_eq!(
        lines,
        [
            "logout: 204",
            r#"{"openid":"oWalkThrough","phone":"13800138000"}"#,
            r#"{"cooldown":60}"#,
            r#"{"state":"need_bind","bound":false}"#,
        ],
        "{stdout}"
    );
    assert!(stdout.contains("扫码成功"), "{stdout}");
    // It cleans up after itself.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
