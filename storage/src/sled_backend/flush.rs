//! Group commit: concurrent writers share one flush instead of each paying for its own.
//!
//! A flush covers every write made before it started. A writer notes how many flushes had
//! started when its write was done, then waits its turn; if a flush that started later has
//! completed meanwhile, its write is already on disk and it returns at once. Otherwise it
//! flushes, for itself and for every writer queued behind it.
//!
//! Serialising the calls also keeps sled 0.34 from deadlocking: concurrent flushes can hang
//! forever in release builds (spacejam/sled#1308); here, 32 concurrent binds did not finish
//! within 200 s before this, and run at thousands per second after.
//!
//! sled's own flush writes its log with `sync_file_range`, which reaches neither the drive's
//! write cache nor the file's size, and never syncs its blob files or directories; a write it
//! has flushed can still be lost to a power cut (docs/DESIGN.md, "Storage"). So each flush
//! here ends with `fdatasync` of sled's files and `fsync` of their directories, on a blocking
//! thread: it is disk I/O, and must not hold up an actor or an HTTP worker.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Mutex;

pub struct GroupFlush {
    files: Arc<SledFiles>,
    /// Flushes started so far; the n-th covers every write made before it started.
    started: AtomicU64,
    /// The highest-numbered flush that has finished.
    completed: AtomicU64,
    /// One flush at a time; writers queue here in order.
    turn: Mutex<()>,
}

impl GroupFlush {
    /// Also makes durable what sled wrote while opening `dir`: its `conf` file, which sled
    /// never syncs, and the directory entries of a new database.
    pub fn open(db: sled::Db, dir: &Path) -> sled::Result<Self> {
        let files = SledFiles::open(db, dir)?;
        File::open(dir.join("conf"))?.sync_all()?;
        // A relative `data` has the parent "": the working directory.
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
        File::open(parent.unwrap_or(Path::new(".")))?.sync_all()?;
        files.flush()?;
        Ok(Self {
            files: Arc::new(files),
            started: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            turn: Mutex::new(()),
        })
    }

    /// Returns once everything written before the call is durable, power cuts included.
    pub async fn flush(&self) -> sled::Result<()> {
        let covering = self.started.load(Ordering::SeqCst) + 1;
        let _turn = self.turn.lock().await;
        if self.completed.load(Ordering::SeqCst) >= covering {
            return Ok(());
        }
        let this = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        let files = self.files.clone();
        tokio::task::spawn_blocking(move || files.flush())
            .await
            .map_err(io::Error::other)??;
        self.completed.store(this, Ordering::SeqCst);
        Ok(())
    }
}

/// sled's files, held open to sync what its own flush leaves unsynced.
struct SledFiles {
    db: sled::Db,
    /// The data directory: sled renames its snapshots into it.
    dir: File,
    /// `db`, sled's log: every write is appended to it.
    log: File,
    /// `blobs/`: sled writes a record too big for its log to a new file here, and never syncs it.
    blobs: PathBuf,
    blobs_dir: File,
    /// Blob file → the length it had when synced. A blob may still be being written when a
    /// flush sees it; if it has grown since, it is synced again.
    synced_blobs: std::sync::Mutex<HashMap<OsString, u64>>,
}

impl SledFiles {
    fn open(db: sled::Db, dir: &Path) -> io::Result<Self> {
        let blobs = dir.join("blobs");
        Ok(Self {
            db,
            dir: File::open(dir)?,
            log: File::open(dir.join("db"))?,
            blobs_dir: File::open(&blobs)?,
            blobs,
            synced_blobs: Default::default(),
        })
    }

    /// Blocks until every write made before the call is on stable storage.
    fn flush(&self) -> sled::Result<()> {
        self.db.flush()?;
        self.log.sync_data()?;
        self.sync_blobs()?;
        self.dir.sync_all()?;
        Ok(())
    }

    fn sync_blobs(&self) -> io::Result<()> {
        let mut synced = self.synced_blobs.lock().expect("no sync panics holding it");
        let mut present = HashMap::new();
        for entry in fs::read_dir(&self.blobs)? {
            let name = entry?.file_name();
            let file = match File::open(self.blobs.join(&name)) {
                // sled removes blobs it no longer needs, maybe just now.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                file => file?,
            };
            let len = file.metadata()?.len();
            if synced.get(&name) != Some(&len) {
                file.sync_data()?;
            }
            present.insert(name, len);
        }
        *synced = present;
        self.blobs_dir.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn concurrent_writers_all_end_durable() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let flusher = Arc::new(GroupFlush::open(db.clone(), dir.path()).unwrap());
        let writers: Vec<_> = (0..64u32)
            .map(|i| {
                let (db, flusher) = (db.clone(), flusher.clone());
                tokio::spawn(async move {
                    db.insert(i.to_be_bytes(), &[1]).unwrap();
                    flusher.flush().await.unwrap();
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        drop(db);
        drop(flusher);
        let reopened = sled::Config::new().path(dir.path()).open().unwrap();
        assert_eq!(reopened.len(), 64);
    }
}
