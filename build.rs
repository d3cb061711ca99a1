//! Records the commit the binary was built from, for `wxlogin --version`: `BUILD_COMMIT` when
//! set (the Dockerfile's build argument: its context has no `.git`), else git's `HEAD`, else
//! `unknown` (a source tarball, `cargo install` from a registry).
//!
//! And says which of the tools some black-box tests need this machine has: `cfg(has_<tool>)`
//! for each. A test without its tool is `#[ignore]`d, so the test runner reports it as skipped,
//! never as passed. Under `CI` every tool counts as present: CI installs them all (`.ci/run`),
//! and a missing one must fail its tests.

use std::path::{Path, PathBuf};
use std::process::Command;

include!("storage/has_postgres.rs");

fn git(args: &[&str]) -> Option<String> {
    runs("git", args).filter(|text| !text.is_empty())
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
    println!("cargo:rerun-if-changed=storage/has_postgres.rs");
    test_tools();
}

fn test_tools() {
    let ci = std::env::var_os("CI").is_some();
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-env-changed=LAZYFS_SH");
    println!("cargo:rerun-if-env-changed=LAZYFS_HOME");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = ci || runs("id", &["-u"]).is_some_and(|uid| uid == "0");
    let node = runs("node", &["--version"]).is_some()
        && exists(&manifest.join("tests/browser/node_modules/.package-lock.json"));
    let lazyfs = std::env::var_os("LAZYFS_SH").map_or_else(
        || manifest.join("../shared/tools/lazyfs/lazyfs.sh"),
        PathBuf::from,
    );
    let tools = [
        ("node", node),
        ("chromium", node && exists(Path::new("/usr/bin/chromium"))),
        (
            "rp_venv",
            exists(&manifest.join("tests/rp/.venv/bin/python")),
        ),
        (
            "faketime",
            exists(Path::new(
                "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
            )),
        ),
        (
            "systemd_analyze",
            exists(Path::new("/usr/bin/systemd-analyze")),
        ),
        ("root", root),
        (
            "lazyfs",
            // Not watched (/dev and the build's cache change all the time): a LazyFS
            // built later counts from the next change to build.rs or the environment.
            root && Path::new("/dev/fuse").exists() && {
                let bin = runs(lazyfs.to_str().unwrap_or_default(), &["bin"]);
                bin.is_some_and(|bin| Path::new(&bin).exists())
            },
        ),
        ("postgres", postgres_binaries().is_some()),
        (
            "haproxy",
            runs("haproxy", &["-v"]).is_some() || exists(Path::new("/usr/sbin/haproxy")),
        ),
        (
            "curl_jq",
            runs("curl", &["--version"]).is_some() && runs("jq", &["--version"]).is_some(),
        ),
    ];
    for (tool, present) in tools {
        println!("cargo::rustc-check-cfg=cfg(has_{tool})");
        if ci || present {
            println!("cargo:rustc-cfg=has_{tool}");
        }
    }
}

/// Whether `path` exists; either way the build script runs again when it may have changed: a
/// missing path would rerun it on every build, so its nearest existing parent is watched,
/// which changes when the path appears.
fn exists(path: &Path) -> bool {
    let mut watched = path;
    while !watched.exists() {
        match watched.parent() {
            Some(parent) => watched = parent,
            None => break,
        }
    }
    println!("cargo:rerun-if-changed={}", watched.display());
    path.exists()
}

/// What `program args` printed, trimmed, if it ran and succeeded.
fn runs(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
