//! `cfg(has_postgres)` when this machine can start a PostgreSQL server for the conformance
//! suite's PostgreSQL run (or under `CI`, which installs one and where a missing one must
//! fail): `initdb` on `PATH` or in Debian's /usr/lib/postgresql/<version>/bin. The root
//! crate's build.rs says the same for the black-box tests.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-changed=/usr/lib/postgresql");
    println!("cargo::rustc-check-cfg=cfg(has_postgres)");
    if std::env::var_os("CI").is_some() || has_initdb() {
        println!("cargo:rustc-cfg=has_postgres");
    }
}

fn has_initdb() -> bool {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|version| version.path().join("bin"));
    on_path
        .into_iter()
        .chain(debian)
        .any(|dir| Path::new(&dir.join("initdb")).is_file())
}
