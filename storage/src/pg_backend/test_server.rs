//! A throwaway PostgreSQL server for tests: initialised in a temporary directory, listening
//! only on a Unix socket there, run by an unprivileged user when the tests run as root
//! (PostgreSQL refuses to run as root), stopped and removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The user the server trusts (every local connection, without a password).
const USER: &str = "wxlogin";

pub struct TestServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    databases: std::sync::atomic::AtomicUsize,
}

// `postgres_binaries`, shared with the build scripts.
include!("../../has_postgres.rs");

/// Where `initdb` is: on `PATH`, else Debian's /usr/lib/postgresql/<version>/bin.
pub fn binaries() -> Option<PathBuf> {
    postgres_binaries()
}

impl TestServer {
    /// Initialises and starts a server; panics (a test's failure) if it cannot.
    pub fn start() -> Self {
        let bin = binaries().expect("PostgreSQL's initdb is on PATH or in /usr/lib/postgresql");
        let dir = tempfile::tempdir().expect("a temporary directory");
        if let Some((uid, gid)) = unprivileged() {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
        }
        let server = Self {
            dir,
            bin,
            databases: Default::default(),
        };
        server.run(
            "initdb",
            &[
                "--no-sync",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                &format!("--username={USER}"),
                "-D",
                &server.data().display().to_string(),
            ],
        );
        server.start_again();
        server
    }

    /// Starts the server after [`TestServer::stop`] (or the first time).
    pub fn start_again(&self) {
        let options = format!(
            "-c listen_addresses='' -k {} -c max_connections=200",
            self.dir.path().display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-l",
                &self.dir.path().join("log").display().to_string(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server at once, as a crash would (what it committed stays).
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// A URL for database `name`, through the server's socket.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres:///{name}?host={}&user={USER}",
            self.dir.path().display()
        )
    }

    /// A new, empty database on this server; its URL.
    pub async fn new_database(&self) -> String {
        let n = self
            .databases
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("test{n}");
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .expect("the test server answers");
        let connection = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("a new database");
        drop(client);
        let _ = connection.await;
        self.url(&name)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs one of the server's programs, as the unprivileged user when we are root.
    fn run(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program);
        let mut command = match unprivileged() {
            Some(_) => {
                let mut command = Command::new("runuser");
                command.args(["-u", "nobody", "--"]).arg(&program);
                command
            }
            None => Command::new(&program),
        };
        let out = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        assert!(
            out.status.success(),
            "{} {args:?}: {}{}\n{}",
            program.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
        );
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if Path::new(&self.data().join("postmaster.pid")).exists() {
            self.stop();
        }
    }
}

/// `nobody`'s uid and gid when we are root, else `None` (run as ourselves): also for the other
/// servers tests start (HAProxy in tests/api/cluster).
pub fn unprivileged() -> Option<(u32, u32)> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return None;
    }
    let id = |flag: &str| {
        let out = Command::new("id").args([flag, "nobody"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}
