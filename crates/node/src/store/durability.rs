//! Closes sled 0.34's power-loss gap and batches the syncs ("group commit").
//!
//! sled 0.34 makes its log durable with `sync_file_range(2)` on Linux, which
//! writes the dirty pages but neither flushes the drive's volatile write cache
//! nor persists file metadata (sled issues #1351 and #1452), and it writes
//! large values into `blobs/` files without any sync at all. So after
//! `Db::flush` this module additionally:
//!
//! 1. `fdatasync`s sled's log file `<dir>/db` (fdatasync works on the inode,
//!    so a second descriptor of the same file is enough): it issues the cache
//!    flush and persists the file size that recovery needs;
//! 2. `fdatasync`s every blob file it has not synced before, and `fsync`s the
//!    `blobs/` directory and the store directory whenever their entries
//!    changed (new blob, new sled snapshot file), so the files can be found
//!    after a power loss.
//!
//! The Raft log's entries are not in sled but in their own append-only
//! segment files (`wal.rs`). A log append is acknowledged (its Raft callback
//! fired) only after [`Wal::sync`] returned for a sync that started after
//! the write (except a leader's own, below); a vote, a truncation or a purge returns only after both the
//! log and sled ([`DurableDb::sync`]) were synced. Many appends share one
//! sync: the [`GroupCommit`] thread takes every request queued while the
//! previous sync ran. What sled holds besides the vote (the applied and
//! committed ids, the acknowledgement records, a built snapshot) waits for
//! no sync of its own: the sled-sync thread syncs sled every
//! [`SLED_SYNC_INTERVAL`], and a barrier syncs it at once. Every log sync
//! moves the log's durable mark (`store::durable_mark`) before any callback
//! fires; an entry is applied (and its position recorded in sled) only once
//! the mark covers it. A leader's own appends have their callback fired
//! before the sync (`raft.replicate_before_sync`); every other append's
//! fires after it.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::storage::LogFlushed;
use tokio::sync::{mpsc, oneshot};

use crate::store::durable_mark::DurableMark;
use crate::store::wal::Wal;
use crate::types::{LogId, TypeConfig};

/// How often the sled-sync thread makes sled's unsynced writes durable.
pub const SLED_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// Exit status of a validator stopped by a failed write, flush or sync of
/// its store (sysexits' EX_IOERR).
pub const EXIT_DISK_FAILED: i32 = 74;

/// A write, flush or sync of the store failed: the process stops at once.
/// After a failed fsync the kernel may have dropped the dirty pages and a
/// later fsync can succeed without them, so nothing is retried, nothing
/// more is written and nothing is acknowledged; the supervisor restarts the
/// validator from what is on disk (docs/operations.md, "Disk errors").
pub fn disk_failed(what: &str, error: &dyn std::fmt::Display) -> ! {
    tracing::error!(%error, "could not {what}: the store's disk failed; stopping now without writing anything more (exit status {EXIT_DISK_FAILED})");
    eprintln!("neuroshard: FATAL: could not {what}: {error}. The store's disk failed; the validator stops without retrying (exit status {EXIT_DISK_FAILED}). Check the disk, then restart it.");
    std::process::exit(EXIT_DISK_FAILED)
}

/// The value of a store write, or the end of the process.
pub fn written<T, E: std::fmt::Display>(what: &str, result: Result<T, E>) -> T {
    match result {
        Ok(v) => v,
        Err(e) => disk_failed(what, &e),
    }
}

/// Requests the group-commit thread may have queued before callers wait.
pub const MAX_PENDING_SYNC_REQUESTS: usize = 16 * 1024;

/// sled's data file inside its directory (sled 0.34 `Config::db_path`).
pub const SLED_DATA_FILE: &str = "db";
/// sled's directory of large values (sled 0.34 `Config::blob_path`).
const SLED_BLOB_DIR: &str = "blobs";

/// A sled database whose writes can be made durable against power loss.
pub struct DurableDb {
    db: sled::Db,
    dir: PathBuf,
    data_file: File,
    /// The Raft log's files, synced first by [`DurableDb::sync`].
    log: std::sync::OnceLock<Arc<Wal>>,
    /// Directory entries already made durable, per directory.
    known: Mutex<(BTreeSet<OsString>, BTreeSet<OsString>)>,
    syncs: AtomicU64,
}

/// sled's page cache.
pub const SLED_CACHE_BYTES: u64 = 64 * 1024 * 1024;

impl DurableDb {
    /// Opens (creating) the sled database in `dir` and makes its initial
    /// files durable.
    pub fn open(dir: &Path) -> io::Result<Arc<Self>> {
        std::fs::create_dir_all(dir)?;
        let db = sled::Config::new()
            .path(dir)
            // sled's page cache would otherwise grow to 1 GiB: bounded so a
            // validator's memory has a documented ceiling (docs/operations.md).
            .cache_capacity(SLED_CACHE_BYTES)
            // The group-commit thread flushes; sled's own timer would only
            // add unsynchronised writes in between.
            .flush_every_ms(None)
            .open()
            .map_err(io::Error::other)?;
        let data_file = File::open(dir.join(SLED_DATA_FILE))?;
        let this = Arc::new(Self {
            db,
            dir: dir.to_path_buf(),
            data_file,
            log: std::sync::OnceLock::new(),
            known: Mutex::new((BTreeSet::new(), BTreeSet::new())),
            syncs: AtomicU64::new(0),
        });
        this.sync()?;
        // The store directory itself may be new: make its entry durable too.
        if let Some(parent) = dir.parent() {
            if let Ok(parent) = File::open(parent) {
                parent.sync_all()?;
            }
        }
        Ok(this)
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of completed syncs since open, of sled and of the Raft log
    /// (for throughput reports).
    pub fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Counts a sync of the Raft log's file.
    fn count_log_sync(&self) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
    }

    /// From now on [`DurableDb::sync`] syncs `log` too (first).
    pub fn attach_log(&self, log: Arc<Wal>) {
        let _already = self.log.set(log);
    }

    /// Makes every write that completed before this call durable: the
    /// Raft log's (once attached), then sled's.
    pub fn sync(&self) -> io::Result<()> {
        if let Some(log) = self.log.get() {
            log.sync().map_err(io::Error::other)?;
        }
        self.sync_sled()?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Makes every write to sled that completed before this call durable.
    fn sync_sled(&self) -> io::Result<()> {
        let started = std::time::Instant::now();
        crate::hoptrace::mark("SY_0", 0);
        self.db.flush().map_err(io::Error::other)?;
        crate::hoptrace::mark("SY_flushed", 0);
        self.data_file.sync_data()?;
        crate::hoptrace::mark("SY_synced", 0);
        self.sync_new_files()?;
        crate::hoptrace::mark("SY_dirs", 0);
        crate::metrics::observe_since(&crate::metrics::metrics().fsync_seconds, started);
        Ok(())
    }

    fn sync_new_files(&self) -> io::Result<()> {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let blob_dir = self.dir.join(SLED_BLOB_DIR);
        let blobs = list(&blob_dir)?;
        let new_blobs: Vec<_> = blobs.difference(&known.1).cloned().collect();
        for name in &new_blobs {
            // A blob may be removed by sled's GC between listing and opening.
            match File::open(blob_dir.join(name)) {
                Ok(f) => f.sync_data()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if blobs != known.1 {
            // sled may remove an emptied blobs/ directory meanwhile.
            match File::open(&blob_dir) {
                Ok(d) => d.sync_all()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            known.1 = blobs;
        }
        let entries = list(&self.dir)?;
        if entries != known.0 {
            File::open(&self.dir)?.sync_all()?;
            known.0 = entries;
        }
        Ok(())
    }
}

fn list(dir: &Path) -> io::Result<BTreeSet<OsString>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.map(|e| e.file_name())).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(e),
    }
}

enum SyncRequest {
    /// Move the durable mark to `last` (an append made in `epoch`) once
    /// durable, then fire the append's Raft callback if it is still owed
    /// (a leader's own appends had theirs fired at once:
    /// `store::durable_mark`).
    Log {
        callback: Option<LogFlushed<TypeConfig>>,
        last: LogId,
        epoch: u64,
    },
    /// Wake a caller that waits for durability (vote, truncation, purge).
    Barrier(oneshot::Sender<io::Result<()>>),
}

/// The group-commit thread: one sync for every request queued while the
/// previous sync ran. Requests are served in order, so an append callback
/// never fires before an earlier vote is durable.
#[derive(Clone)]
pub struct GroupCommit {
    tx: mpsc::Sender<SyncRequest>,
    durable: Arc<DurableDb>,
    mark: DurableMark,
    /// Held by every store handle: the sled-sync thread stops once the
    /// last one is dropped.
    _open: Arc<()>,
}

impl GroupCommit {
    /// Starts the group-commit thread (log appends wait for the log's sync;
    /// barriers for the log's and sled's) and the sled-sync thread.
    pub fn start(durable: Arc<DurableDb>, wal: Arc<Wal>, mark: DurableMark) -> io::Result<Self> {
        let (tx, mut rx) = mpsc::channel::<SyncRequest>(MAX_PENDING_SYNC_REQUESTS);
        let worker = durable.clone();
        let synced_mark = mark.clone();
        let open = Arc::new(());
        let (weak, handles) = (Arc::downgrade(&durable), Arc::downgrade(&open));
        std::thread::Builder::new()
            .name("sled-sync".into())
            .spawn(move || loop {
                std::thread::sleep(SLED_SYNC_INTERVAL);
                // Stops once the store is closed.
                if handles.strong_count() == 0 {
                    return;
                }
                let Some(durable) = weak.upgrade() else {
                    return;
                };
                if let Err(e) = durable.sync_sled() {
                    disk_failed("sync the state store", &e);
                }
            })?;
        std::thread::Builder::new()
            .name("sled-group-commit".into())
            .spawn(move || {
                let mut batch = Vec::new();
                while let Some(first) = rx.blocking_recv() {
                    batch.push(first);
                    while batch.len() < MAX_PENDING_SYNC_REQUESTS {
                        match rx.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                    crate::hoptrace::mark("GC_start", batch.len() as u64);
                    let barrier = batch.iter().any(|r| matches!(r, SyncRequest::Barrier(_)));
                    let started = std::time::Instant::now();
                    let result = if barrier {
                        worker.sync()
                    } else {
                        wal.sync().map_err(io::Error::other).map(|()| {
                            worker.count_log_sync();
                            crate::metrics::observe_since(
                                &crate::metrics::metrics().fsync_seconds,
                                started,
                            );
                        })
                    };
                    crate::hoptrace::mark("GC_end", 0);
                    if let Err(e) = &result {
                        disk_failed("sync the Raft store", e);
                    }
                    for request in batch.drain(..) {
                        let result = match &result {
                            Ok(()) => Ok(()),
                            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                        };
                        match request {
                            SyncRequest::Log {
                                callback,
                                last,
                                epoch,
                            } => {
                                // Before the callback: openraft may apply
                                // the entry as soon as it fires.
                                synced_mark.synced(last, epoch);
                                if let Some(callback) = callback {
                                    callback.log_io_completed(result);
                                }
                            }
                            SyncRequest::Barrier(tx) => {
                                let _receiver_gone = tx.send(result);
                            }
                        }
                    }
                }
            })?;
        Ok(Self {
            tx,
            durable,
            mark,
            _open: open,
        })
    }

    pub fn durable(&self) -> &Arc<DurableDb> {
        &self.durable
    }

    /// The durable end of the log, moved by this thread's syncs.
    pub fn mark(&self) -> &DurableMark {
        &self.mark
    }

    /// Once everything written so far is durable: moves the mark to `last`
    /// (appended in `epoch`, [`DurableMark::epoch`]) and fires `callback`
    /// if one is given.
    pub async fn after_sync(
        &self,
        callback: Option<LogFlushed<TypeConfig>>,
        last: LogId,
        epoch: u64,
    ) -> io::Result<()> {
        self.tx
            .send(SyncRequest::Log {
                callback,
                last,
                epoch,
            })
            .await
            .map_err(|_| io::Error::other("group-commit thread has stopped"))
    }

    /// Returns once everything written so far is durable.
    pub async fn barrier(&self) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(SyncRequest::Barrier(tx))
            .await
            .map_err(|_| io::Error::other("group-commit thread has stopped"))?;
        rx.await
            .map_err(|_| io::Error::other("group-commit thread has stopped"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn barrier_syncs_and_data_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store");
        {
            let durable = DurableDb::open(&path).expect("open");
            let wal = Arc::new(Wal::open(&path).expect("open the log"));
            let commit =
                GroupCommit::start(durable.clone(), wal, DurableMark::default()).expect("start");
            let tree = durable.db().open_tree("t").expect("tree");
            tree.insert(b"k", vec![7u8; 300_000])
                .expect("insert a blob-sized value");
            let before = durable.sync_count();
            commit.barrier().await.expect("barrier");
            assert!(durable.sync_count() > before, "a barrier performs a sync");
        }
        // The group-commit thread drops its handle just after the last sender.
        let mut reopened = DurableDb::open(&path);
        for _ in 0..100 {
            if reopened.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            reopened = DurableDb::open(&path);
        }
        let durable = reopened.expect("reopen");
        let tree = durable.db().open_tree("t").expect("tree");
        let value = tree
            .get(b"k")
            .expect("get")
            .expect("value present after reopen");
        assert_eq!(value.len(), 300_000);
    }
}
