// Where PostgreSQL's server binaries are: `initdb` on `PATH`, else in Debian's
// /usr/lib/postgresql/<version>/bin. Included by both build scripts (storage's, for the
// conformance suite's PostgreSQL run, and the root crate's, for the black-box tests) and by the
// test server, so none of them disagrees about whether the tests can start one.
fn postgres_binaries() -> Option<std::path::PathBuf> {
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
        .find(|dir| dir.join("initdb").is_file())
}
