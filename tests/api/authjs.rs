//! Auth.js, the real `@auth/core` that next-auth v5 wraps, signs a user in with wxlogin using
//! README.md's configuration: `tests/browser/authjs.mjs` (Node) plays the Next.js app and the
//! user's browser, against a real server with the client registered.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use serde_json::Value;

use crate::helpers::{node_scripts, spawn_app_on, TestApp};
use crate::oidc::{fresh_tokens, Rp};

/// The app as README.md registers it for Auth.js: next-auth's callback for the provider id
/// `wxlogin`, on a made-up origin (Auth.js answers `Request`s in-process; nothing listens there).
const APP: Rp = Rp {
    id: "nextjs-app",
    secret: "nextjs-secret-0123456789abcdef0123456789",
    callback: "http://app.test/api/auth/callback/wxlogin",
};

#[tokio::test]
#[cfg_attr(
    not(has_node),
    ignore = "needs Node 20 and `(cd tests/browser && npm ci)`"
)]
async fn auth_js_signs_a_user_in_with_the_readme_configuration() {
    let scripts = node_scripts();
    assert_eq!(
        readme_configuration(),
        script_configuration(&scripts),
        "tests/browser/authjs.mjs must run README.md's Auth.js configuration"
    );

    let dir = Arc::new(tempfile::tempdir().unwrap());
    let clients = dir.path().join("clients.toml");
    std::fs::write(
        &clients,
        format!(
            "[[clients]]\nid = \"{}\"\nname = \"The Next.js app\"\nredirect_uris = [\"{}\"]\nsecret = \"{}\"\n",
            APP.id, APP.callback, APP.secret
        ),
    )
    .unwrap();
    let app = spawn_app_on(dir, &[("WXLOGIN_OIDC_CLIENTS", clients.to_str().unwrap())]).await;
    let session = app.sign_up("oAuthJs", "13800000301").await;

    // The user's first authorization of the app, on the consent page (allowed): from then on
    // a sign-in through Auth.js needs no page of ours.
    let (_, _, sub) = fresh_tokens(&app, APP, &session).await;
    let first = sign_in_with_auth_js(&scripts, &app, &session);

    // The app's session names the user by the pairwise `sub` wxlogin gives this client (as
    // its own code flow shows), not by the WeChat openid, and carries the phone number.
    assert_eq!(first["user"]["id"], sub.as_str(), "{first}");
    assert_ne!(sub, "oAuthJs");
    assert_eq!(first["user"]["phone_number"], "+8613800000301");
    assert!(first["expires"].is_string(), "{first}");

    // The next login (a new wxlogin session, a new Auth.js sign-in) is the same user to the app.
    let again = app.scan_in("oAuthJs").await;
    let second = sign_in_with_auth_js(&scripts, &app, &again);
    assert_eq!(second["user"], first["user"]);
}

/// Runs the script: Auth.js signs in the user holding the wxlogin `session`; returns the app's
/// session (`GET /api/auth/session`).
fn sign_in_with_auth_js(scripts: &Path, app: &TestApp, session: &str) -> Value {
    let output = Command::new("node")
        .arg("authjs.mjs")
        .current_dir(scripts)
        .env("AUTH_WXLOGIN_ISSUER", &app.address)
        .env("AUTH_WXLOGIN_ID", APP.id)
        .env("AUTH_WXLOGIN_SECRET", APP.secret)
        .env("WXLOGIN_SESSION", session)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "Auth.js did not sign the user in:\n{}\n{}\nwxlogin's log:\n{}",
        stdout,
        String::from_utf8_lossy(&output.stderr),
        app.log()
    );
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

/// The object README.md's Auth.js example passes to `NextAuth(...)`, its issuer as the script
/// takes it.
fn readme_configuration() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let example = readme
        .split("export const { handlers, auth, signIn, signOut } = NextAuth({\n")
        .nth(1)
        .expect("README.md has the Auth.js example");
    let body = example.split("\n});\n").next().unwrap();
    lines(&body.replace(
        "\"https://login.example.com\"",
        "process.env.AUTH_WXLOGIN_ISSUER",
    ))
}

/// The object the script hands Auth.js, between its README markers.
fn script_configuration(scripts: &Path) -> Vec<String> {
    let script = std::fs::read_to_string(scripts.join("authjs.mjs")).unwrap();
    let marked = script
        .split("// README begin\nconst config = {\n")
        .nth(1)
        .expect("authjs.mjs marks the configuration");
    lines(marked.split("\n};\n// README end").next().unwrap())
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(|line| line.trim().to_owned()).collect()
}
