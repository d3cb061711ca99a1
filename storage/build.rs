//! `cfg(has_postgres)` when this machine can start a PostgreSQL server for the conformance
//! suite's PostgreSQL run (or under `CI`, which installs one and where a missing one must
//! fail).

include!("has_postgres.rs");

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=has_postgres.rs");
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-changed=/usr/lib/postgresql");
    println!("cargo::rustc-check-cfg=cfg(has_postgres)");
    if std::env::var_os("CI").is_some() || postgres_binaries().is_some() {
        println!("cargo:rustc-cfg=has_postgres");
    }
}
