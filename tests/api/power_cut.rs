//! Power cuts under load, with LazyFS as the disk: nothing answered as done is lost.
//!
//! LazyFS (../shared/tools/lazyfs/README.md) keeps every write in its own cache until it is
//! fsynced; `lazyfs::clear-cache` drops what was not, as a power cut drops what the kernel and
//! the drive had not yet written. Each cycle: load the server, cut the power, kill it, remount
//! and start again on what survived, and check every acknowledged write (crash.rs's ledger).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tempfile::TempDir;

use crate::crash::{start_load, verify, Ledger, LOAD_ENV};
use crate::helpers::spawn_app_on;

const CYCLES: usize = 12;

/// A LazyFS mount of a backing directory, remounted after each power cut.
struct LazyFs {
    script: PathBuf,
    mount: Arc<TempDir>,
    /// The backing directory, the command fifos, the config and LazyFS's log.
    work: TempDir,
    /// LazyFS opens it for writing at start and says there when a command is done; held open
    /// for reading and writing so that neither side waits for the other to open it.
    done: Option<BufReader<File>>,
}

impl LazyFs {
    /// The LazyFS script; the test is ignored where build.rs finds no LazyFS (`has_lazyfs`).
    fn find() -> PathBuf {
        let script = std::env::var_os("LAZYFS_SH").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/lazyfs/lazyfs.sh"),
            PathBuf::from,
        );
        let missing = if !script.exists() {
            Some(format!("{} does not exist", script.display()))
        } else if !Path::new("/dev/fuse").exists() {
            Some("/dev/fuse does not exist".into())
        } else if !Command::new(&script)
            .arg("bin")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            Some("LazyFS is not built".into())
        } else {
            None
        };
        if let Some(why) = missing {
            panic!(
                "{why}: run {} build (as root), or set LAZYFS_SH to lazyfs.sh",
                script.display()
            );
        }
        script
    }

    fn new(script: PathBuf) -> Self {
        let work = tempfile::tempdir().unwrap();
        for fifo in ["faults.fifo", "done.fifo"] {
            let made = Command::new("mkfifo").arg(work.path().join(fifo)).status();
            assert!(made.unwrap().success(), "mkfifo {fifo}");
        }
        let config = run(
            &script,
            &[
                "config",
                &work.path().join("faults.fifo").display().to_string(),
                &work.path().join("done.fifo").display().to_string(),
                &work.path().join("lazyfs.log").display().to_string(),
            ],
        );
        std::fs::write(work.path().join("lazyfs.toml"), config).unwrap();
        let mut lazyfs = Self {
            script,
            mount: Arc::new(tempfile::tempdir().unwrap()),
            work,
            done: None,
        };
        lazyfs.mount();
        lazyfs
    }

    fn path(&self, name: &str) -> String {
        self.work.path().join(name).display().to_string()
    }

    fn mount(&mut self) {
        let done = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path("done.fifo"))
            .unwrap();
        self.done = Some(BufReader::new(done));
        let mount = self.mount.path().display().to_string();
        let (backing, config) = (self.path("backing"), self.path("lazyfs.toml"));
        run(&self.script, &["mount", &mount, &backing, &config]);
    }

    fn umount(&mut self) {
        run(
            &self.script,
            &["umount", &self.mount.path().display().to_string()],
        );
        self.done = None;
    }

    /// Drops every write not yet fsynced, and waits until LazyFS says it has.
    fn clear_cache(&mut self) {
        run(
            &self.script,
            &["cmd", &self.path("faults.fifo"), "lazyfs::clear-cache"],
        );
        let mut line = String::new();
        self.done.as_mut().unwrap().read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "finished::clear-cache");
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .arg("umount")
            .arg(self.mount.path())
            .status();
    }
}

/// Runs the LazyFS script; its stdout.
fn run(script: &Path, args: &[&str]) -> String {
    let out = Command::new(script).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "lazyfs.sh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_lazyfs),
    ignore = "needs root, /dev/fuse and LazyFS built (README: The power-cut test)"
)]
async fn nothing_answered_is_lost_across_power_cuts() {
    let script = LazyFs::find();
    let mut disk = LazyFs::new(script);
    let mut app = spawn_app_on(disk.mount.clone(), &LOAD_ENV).await;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let phones = Arc::new(AtomicU32::new(0));
    for cycle in 0..CYCLES {
        let workers = start_load(&app, &ledger, &phones, &format!("oP{cycle}"));
        if cycle % 2 == 0 {
            // A chosen moment: just after a bind was answered, well inside the half second
            // in which only sled's background thread would have synced it.
            let before = ledger.lock().unwrap().bound.len();
            for _ in 0..5_000 {
                if ledger.lock().unwrap().bound.len() > before {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        } else {
            let uptime = rand::thread_rng().gen_range(50..700);
            tokio::time::sleep(Duration::from_millis(uptime)).await;
        }
        // The power cut: the process frozen first, as it would be by the cut itself (else a
        // write made before the clear and synced after it would be answered, and lost: LazyFS
        // dropped it, so the sync found nothing to write); then unsynced writes gone.
        app.freeze().await;
        disk.clear_cache();
        app.stop();
        for worker in workers {
            worker.await.unwrap();
        }
        disk.umount();
        disk.mount();
        app.start_again();
        verify(&app, &ledger).await;
    }
    ledger
        .lock()
        .unwrap()
        .assert_nothing_lost(CYCLES, "power-cut");
}
