//! A throwaway PostgreSQL server for tests: initialised in a temporary directory, listening
//! only on a Unix socket there (and, with [`TestServer::start_tls`], on loopback TCP for TLS
//! alone), run by an unprivileged user when the tests run as root (PostgreSQL refuses to run as
//! root), stopped and removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The user the server trusts (every local connection, without a password).
const USER: &str = "wxlogin";

pub struct TestServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    databases: std::sync::atomic::AtomicUsize,
    /// The loopback port TLS connections take, with [`TestServer::start_tls`].
    tls_port: Option<u16>,
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
        Self::initialised(None)
    }

    /// [`TestServer::start`], also listening on 127.0.0.1 for TLS connections only (plaintext
    /// ones over TCP are refused), under a certificate for `localhost` that a CA of its own
    /// signed: [`TestServer::ca_file`]. Uses the `openssl` command.
    pub fn start_tls() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        Self::initialised(Some(port))
    }

    fn initialised(tls_port: Option<u16>) -> Self {
        let bin = binaries().expect("PostgreSQL's initdb is on PATH or in /usr/lib/postgresql");
        let dir = tempfile::tempdir().expect("a temporary directory");
        if let Some((uid, gid)) = unprivileged() {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
        }
        let server = Self {
            dir,
            bin,
            databases: Default::default(),
            tls_port,
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
        if tls_port.is_some() {
            server.make_certificates();
            // TCP from loopback with TLS only; the socket as before.
            let hba = server.data().join("pg_hba.conf");
            std::fs::write(
                &hba,
                format!("local all all trust\nhostssl all {USER} 127.0.0.1/32 trust\n"),
            )
            .expect("pg_hba.conf");
        }
        server.start_again();
        server
    }

    /// The CA that signed the server's certificate, with [`TestServer::start_tls`].
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A URL for database `name` over TCP to `localhost`, with `sslmode`.
    pub fn tls_url(&self, name: &str, sslmode: &str) -> String {
        let port = self.tls_port.expect("a server started with start_tls");
        format!("postgres://{USER}@localhost:{port}/{name}?hostaddr=127.0.0.1&sslmode={sslmode}")
    }

    /// A CA and a certificate for `localhost` it signed, in the server's directory.
    fn make_certificates(&self) {
        let dir = self.dir.path();
        let openssl = |args: &str| {
            let out = Command::new("openssl")
                .args(args.split_whitespace())
                .current_dir(dir)
                .output()
                .expect("openssl runs");
            assert!(out.status.success(), "openssl {args}: {out:?}");
        };
        openssl(
            "req -x509 -newkey rsa:2048 -nodes -days 2 -keyout ca.key -out ca.pem \
             -subj /CN=wxlogin-test-CA -addext basicConstraints=critical,CA:TRUE \
             -addext keyUsage=critical,keyCertSign,cRLSign",
        );
        openssl(
            "req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost",
        );
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .expect("server.ext");
        openssl(
            "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
             -extfile server.ext -out server.crt",
        );
        // PostgreSQL takes a key only its own user can read.
        let key = dir.join("server.key");
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        if let Some((uid, gid)) = unprivileged() {
            for file in ["server.key", "server.crt"] {
                std::os::unix::fs::chown(dir.join(file), Some(uid), Some(gid)).expect("chown");
            }
        }
    }

    /// Starts the server after [`TestServer::stop`] (or the first time).
    pub fn start_again(&self) {
        let dir = self.dir.path().display();
        let mut options = format!("-k {dir} -c max_connections=200");
        match self.tls_port {
            None => options.push_str(" -c listen_addresses=''"),
            Some(port) => options.push_str(&format!(
                " -c listen_addresses=127.0.0.1 -c port={port} -c ssl=on \
                 -c ssl_cert_file={dir}/server.crt -c ssl_key_file={dir}/server.key"
            )),
        }
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
        // The socket's name carries the port.
        let port = self.tls_port.unwrap_or(5432);
        format!(
            "postgres:///{name}?host={}&port={port}&user={USER}",
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
