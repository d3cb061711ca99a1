//! Records the commit the binary was built from, for `wxlogin --version`: `BUILD_COMMIT` when
//! set (the Dockerfile's build argument: its context has no `.git`), else git's `HEAD`, else
//! `unknown` (a source tarball, `cargo install` from a registry).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

fn main() {
    let commit = std::env::var("BUILD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty() && c != "unknown")
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rerun-if-env-changed=BUILD_COMMIT");
    println!("cargo:rustc-env=WXLOGIN_COMMIT={commit}");
    // A new commit changes HEAD, or the branch HEAD names.
    for file in ["HEAD", "refs/heads", "packed-refs"] {
        if let Some(path) = git(&["rev-parse", "--git-path", file]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
