// Whether this machine can start a PostgreSQL server for the tests: `initdb` on `PATH` or in
// Debian's /usr/lib/postgresql/<version>/bin. Included by both build scripts (storage's, for
// the conformance suite's PostgreSQL run, and the root crate's, for the black-box tests), so
// the two never disagree.
fn has_postgres() -> bool {
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
        .any(|dir| dir.join("initdb").is_file())
}
