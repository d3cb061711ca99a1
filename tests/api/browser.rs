//! The login page and the simulated phone in headless Chromium: `tests/browser/login.mjs`
//! (Node with playwright-core) drives them against real servers: QR mode, QR codes that expire
//! at once, code mode and confirmation by number; and `tests/browser/attacks.mjs` tries what an
//! attacker would through a browser.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::{node_scripts, spawn_app, spawn_app_with};

/// Debian's Chromium, which `.ci/run` installs.
pub(crate) const CHROMIUM: &str = "/usr/bin/chromium";

/// `tests/browser`, with Chromium beside it; tests that use it are ignored without them
/// (`has_chromium`, build.rs).
pub(crate) fn chromium_scripts() -> PathBuf {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: apt-get install chromium"
    );
    node_scripts()
}

#[tokio::test]
#[cfg_attr(
    not(has_chromium),
    ignore = "needs Chromium, Node 20 and `(cd tests/browser && npm ci)`"
)]
async fn a_person_logs_in_with_the_login_page_and_the_simulated_phone() {
    let scripts = chromium_scripts();
    let app = spawn_app().await;
    let expiring = spawn_app_with(&[("WXLOGIN_SCENE_TTL_SECS", "3")]).await;
    let code_mode = spawn_app_with(&[("WXLOGIN_LOGIN_MODE", "code")]).await;
    let confirming = spawn_app_with(&[("WXLOGIN_CONFIRM", "number")]).await;
    let screenshots = screenshot_dir();
    let _ = writeln!(
        std::io::stderr(),
        "browser test screenshots: {}",
        screenshots.display()
    );

    let output = Command::new("node")
        .arg("login.mjs")
        .current_dir(&scripts)
        .env("WXLOGIN_URL", &app.address)
        .env("WXLOGIN_EXPIRING_URL", &expiring.address)
        .env("WXLOGIN_CODE_URL", &code_mode.address)
        .env("WXLOGIN_CONFIRM_URL", &confirming.address)
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", CHROMIUM)
        .output()
        .expect("node runs");
    println!("{}", String::from_utf8_lossy(&output.stdout));
    assert!(
        output.status.success(),
        "the browser test failed (screenshots in {}):\n{}",
        screenshots.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `tests/browser/i18n.mjs`: Chinese and English pages by Accept-Language and by the switch, a
/// phone outside WeChat, one tap inside WeChat's browser (new and returning users, and a
/// snapshot-page user refused), and an axe-core audit of each page state. Its README
/// pictures go to the screenshot folder with the rest, or with `UPDATE_SCREENSHOTS=1` to
/// docs/screenshots (so a test run leaves the checkout as it was).
#[tokio::test]
#[cfg_attr(
    not(has_chromium),
    ignore = "needs Chromium, Node 20 and `(cd tests/browser && npm ci)`"
)]
async fn languages_phones_and_one_tap_inside_wechat_pass_in_a_browser() {
    let scripts = chromium_scripts();
    let app = spawn_app_with(&[
        ("WXLOGIN_LOGIN_MODE", "auto"),
        ("WXLOGIN_OAUTH_DOMAIN", "127.0.0.1"),
    ])
    .await;
    let screenshots = screenshot_dir();
    let docs = match std::env::var_os("UPDATE_SCREENSHOTS") {
        Some(_) => Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots"),
        None => screenshots.clone(),
    };
    let output = Command::new("node")
        .arg("i18n.mjs")
        .current_dir(&scripts)
        .env("WXLOGIN_URL", &app.address)
        .env("SCREENSHOTS", &screenshots)
        .env("DOC_SCREENSHOTS", &docs)
        .env("CHROMIUM", CHROMIUM)
        .output()
        .expect("node runs");
    println!("{}", String::from_utf8_lossy(&output.stdout));
    assert!(
        output.status.success(),
        "the browser test failed (screenshots in {}):\n{}\n--- wxlogin's log ---\n{}",
        screenshots.display(),
        String::from_utf8_lossy(&output.stderr),
        app.log()
    );
}

/// `target/screenshots`, emptied of an earlier run's pictures.
fn screenshot_dir() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory holds tmp/");
    let dir = target.join("screenshots");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the screenshot folder can be made");
    dir
}

/// `tests/browser/attacks.mjs`: a planted session (login CSRF) from another site, and hostile
/// `return_to` values, in Chromium.
#[tokio::test]
#[cfg_attr(
    not(has_chromium),
    ignore = "needs Chromium, Node 20 and `(cd tests/browser && npm ci)`"
)]
async fn a_browser_refuses_planted_sessions_and_open_redirects() {
    let scripts = chromium_scripts();
    let app = spawn_app().await;
    let output = Command::new("node")
        .arg("attacks.mjs")
        .current_dir(&scripts)
        .env("WXLOGIN_URL", &app.address)
        .env("CHROMIUM", CHROMIUM)
        .output()
        .expect("node runs");
    println!("{}", String::from_utf8_lossy(&output.stdout));
    assert!(
        output.status.success(),
        "the browser attack test failed:\n{}\n--- wxlogin's log ---\n{}",
        String::from_utf8_lossy(&output.stderr),
        app.log()
    );
}
