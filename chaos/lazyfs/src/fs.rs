//! The FUSE filesystem: a pass-through to a backing directory whose file
//! contents wait in memory ([`Dirty`]) until `fsync`/`fdatasync`.
//!
//! What is durable when:
//!
//! * **File contents and sizes** (`write`, `truncate`/`ftruncate`, `O_TRUNC`)
//!   are durable only after an `fsync` or `fdatasync` of that file (either
//!   one: both send FUSE `FSYNC`, which writes the file's unsynced bytes to
//!   the backing file). `sync_file_range(2)` is not a FUSE operation and
//!   makes nothing durable, nor does `close`, nor `msync` (files are opened
//!   with `FOPEN_DIRECT_IO`, so the kernel keeps no page cache for them and
//!   cannot hide a loss; there is no writeback cache either).
//! * **Namespace and metadata** (`create`, `mkdir`, `rename`, `unlink`,
//!   `rmdir`, `chmod`) go to the backing directory at once and are durable
//!   at once: a crash never loses a directory entry, so `fsyncdir` has
//!   nothing to do. This is kinder than a real filesystem (ext4 can lose a
//!   rename that no directory fsync followed): the power-loss test checks
//!   lost data, not lost directory entries.
//! * **Crash** ([`Shared::crash`]): every unsynced byte and truncation is
//!   dropped, and from then on every operation fails with `EIO` (the disk is
//!   gone: a process still running cannot make anything durable or read
//!   what it wrote) until [`Shared::restart`]. A crash can also be armed to
//!   happen inside the k-th `write` from now ([`Shared::arm`]), after that
//!   write reached memory, so a crash point always finds unsynced bytes.
//!
//! * **Lying** ([`Shared::lie`], test of the test): `fsync` and `fdatasync`
//!   answer success and make nothing durable, as a drive that acknowledges
//!   a cache flush it never did. A crash then drops bytes the program was
//!   told were durable; `chaos/powerloss --sabotage-lying-disks` must see
//!   acknowledged commands lost.
//!
//! The backing directory stands for the platter: the machine running the
//! test never loses power, so its own page cache is as good as the disk and
//! the backing files are not fsynced.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::overlay::Dirty;

/// Attributes and entries are never cached by the kernel: sizes change
/// when a crash drops unsynced bytes.
const TTL: Duration = Duration::ZERO;

/// Counters since mount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes written through the mount.
    pub written: u64,
    /// Unsynced bytes made durable by fsync/fdatasync.
    pub synced: u64,
    /// fsync/fdatasync calls.
    pub fsyncs: u64,
    /// Crashes so far.
    pub crashes: u64,
    /// Unsynced bytes all crashes dropped.
    pub dropped_total: u64,
}

/// What one crash dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    pub bytes: u64,
    pub files: u64,
    pub truncations: u64,
}

/// A snapshot of the filesystem's state for the control socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub crashed: bool,
    pub lying: bool,
    /// Writes left before an armed crash.
    pub armed: Option<u64>,
    pub pending_bytes: u64,
    pub pending_files: u64,
    pub stats: Stats,
    /// What the last crash dropped.
    pub last: Dropped,
}

struct Node {
    /// Relative to the backing directory ("" for the root).
    path: PathBuf,
}

enum Handle {
    File(File),
    Dir(Vec<(u64, FileType, OsString)>),
}

struct State {
    backing: PathBuf,
    nodes: HashMap<u64, Node>,
    /// Backing inode number -> our inode number.
    by_backing: HashMap<u64, u64>,
    next_ino: u64,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    dirty: HashMap<u64, Dirty>,
    crashed: bool,
    armed: Option<u64>,
    lying: bool,
    stats: Stats,
    last: Dropped,
}

/// The state the FUSE handlers and the control socket share.
pub struct Shared {
    state: Mutex<State>,
}

/// The FUSE side.
pub struct LazyFs {
    shared: Arc<Shared>,
}

fn errno(e: io::Error) -> Errno {
    Errno::from(e)
}

fn kind_of(meta: &std::fs::Metadata) -> FileType {
    FileType::from_std(meta.file_type()).unwrap_or(FileType::RegularFile)
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs.clamp(0, 999_999_999) as u32)
    } else {
        UNIX_EPOCH
    }
}

impl State {
    fn full(&self, ino: u64) -> Result<PathBuf, Errno> {
        let node = self.nodes.get(&ino).ok_or(Errno::ENOENT)?;
        Ok(self.backing.join(&node.path))
    }

    fn rel(&self, parent: u64, name: &OsStr) -> Result<PathBuf, Errno> {
        let node = self.nodes.get(&parent).ok_or(Errno::ENOENT)?;
        Ok(node.path.join(name))
    }

    /// Our inode number for the backing file at `rel` (its path recorded).
    fn intern(&mut self, backing_ino: u64, rel: PathBuf) -> u64 {
        if let Some(&ino) = self.by_backing.get(&backing_ino) {
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.path = rel;
            }
            return ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.by_backing.insert(backing_ino, ino);
        self.nodes.insert(ino, Node { path: rel });
        ino
    }

    /// Forgets a backing inode that no longer exists (unlinked, replaced):
    /// its unsynced bytes go with it, and a new file that reuses its
    /// backing inode number gets a new inode here.
    fn forget_backing(&mut self, backing_ino: u64) {
        if let Some(ino) = self.by_backing.remove(&backing_ino) {
            self.dirty.remove(&ino);
        }
    }

    fn attr(&self, ino: u64, meta: &std::fs::Metadata) -> FileAttr {
        let size = self.dirty.get(&ino).map_or(meta.len(), Dirty::size);
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: time(meta.atime(), meta.atime_nsec()),
            mtime: time(meta.mtime(), meta.mtime_nsec()),
            ctime: time(meta.ctime(), meta.ctime_nsec()),
            crtime: UNIX_EPOCH,
            kind: kind_of(meta),
            perm: (meta.mode() & 0o7777) as u16,
            nlink: meta.nlink() as u32,
            uid: meta.uid(),
            gid: meta.gid(),
            rdev: meta.rdev() as u32,
            blksize: 4096,
            flags: 0,
        }
    }

    fn getattr(&self, ino: u64) -> Result<FileAttr, Errno> {
        let meta = std::fs::symlink_metadata(self.full(ino)?).map_err(errno)?;
        Ok(self.attr(ino, &meta))
    }

    /// Looks `rel` up in the backing directory.
    fn entry(&mut self, rel: PathBuf) -> Result<FileAttr, Errno> {
        let meta = std::fs::symlink_metadata(self.backing.join(&rel)).map_err(errno)?;
        let ino = self.intern(meta.ino(), rel);
        Ok(self.attr(ino, &meta))
    }

    fn dirty_of(&mut self, ino: u64) -> Result<&mut Dirty, Errno> {
        if !self.dirty.contains_key(&ino) {
            let meta = std::fs::metadata(self.full(ino)?).map_err(errno)?;
            self.dirty.insert(ino, Dirty::new(meta.len()));
        }
        self.dirty.get_mut(&ino).ok_or(Errno::EIO)
    }

    fn alive(&self) -> Result<(), Errno> {
        if self.crashed {
            Err(Errno::EIO)
        } else {
            Ok(())
        }
    }

    fn crash(&mut self) -> Dropped {
        if self.crashed {
            return self.last;
        }
        let dropped = Dropped {
            bytes: self.dirty.values().map(Dirty::bytes).sum(),
            files: self.dirty.len() as u64,
            truncations: self.dirty.values().filter(|d| d.truncated()).count() as u64,
        };
        self.dirty.clear();
        self.crashed = true;
        self.armed = None;
        self.stats.crashes += 1;
        self.stats.dropped_total += dropped.bytes;
        self.last = dropped;
        dropped
    }

    /// fsync/fdatasync of `ino`: its unsynced contents become the backing
    /// file's.
    fn sync(&mut self, ino: u64) -> Result<(), Errno> {
        self.alive()?;
        self.stats.fsyncs += 1;
        if self.lying {
            return Ok(());
        }
        let Some(dirty) = self.dirty.get(&ino) else {
            return Ok(());
        };
        let path = self.full(ino)?;
        let file = OpenOptions::new().write(true).open(&path).map_err(errno)?;
        dirty.apply(&file).map_err(errno)?;
        self.stats.synced += dirty.bytes();
        self.dirty.remove(&ino);
        Ok(())
    }
}

impl Shared {
    /// A filesystem over `backing` (an existing directory).
    pub fn new(backing: &Path) -> io::Result<Arc<Self>> {
        let backing = backing.canonicalize()?;
        let meta = std::fs::metadata(&backing)?;
        if !meta.is_dir() {
            return Err(io::Error::other(format!(
                "{}: not a directory",
                backing.display()
            )));
        }
        let mut state = State {
            backing,
            nodes: HashMap::new(),
            by_backing: HashMap::new(),
            next_ino: 2,
            handles: HashMap::new(),
            next_fh: 1,
            dirty: HashMap::new(),
            crashed: false,
            armed: None,
            lying: false,
            stats: Stats::default(),
            last: Dropped::default(),
        };
        state.by_backing.insert(meta.ino(), INodeNo::ROOT.0);
        state.nodes.insert(
            INodeNo::ROOT.0,
            Node {
                path: PathBuf::new(),
            },
        );
        Ok(Arc::new(Self {
            state: Mutex::new(state),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Power loss now: drops every unsynced byte and fails every operation
    /// with `EIO` until [`Shared::restart`]. A second crash returns what
    /// the first dropped.
    pub fn crash(&self) -> Dropped {
        self.lock().crash()
    }

    /// Crash inside the `writes`-th write from now (after it reached
    /// memory). `0` disarms.
    pub fn arm(&self, writes: u64) {
        let mut state = self.lock();
        state.armed = (writes > 0).then_some(writes);
    }

    /// From now on fsync/fdatasync succeed without making anything
    /// durable (`true`), or work again (`false`).
    pub fn lie(&self, lying: bool) {
        self.lock().lying = lying;
    }

    /// Power back: operations work again, on the durable bytes only.
    /// Returns our inode numbers (for the kernel's caches to be
    /// invalidated).
    pub fn restart(&self) -> Vec<u64> {
        let mut state = self.lock();
        state.crashed = false;
        state.armed = None;
        state.nodes.keys().copied().collect()
    }

    pub fn status(&self) -> Status {
        let state = self.lock();
        Status {
            crashed: state.crashed,
            lying: state.lying,
            armed: state.armed,
            pending_bytes: state.dirty.values().map(Dirty::bytes).sum(),
            pending_files: state.dirty.len() as u64,
            stats: state.stats,
            last: state.last,
        }
    }
}

impl LazyFs {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }
}

fn reply_entry(reply: ReplyEntry, result: Result<FileAttr, Errno>) {
    match result {
        Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn reply_empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for LazyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut s = self.lock();
        let result = s.alive().and_then(|()| {
            let rel = s.rel(parent.0, name)?;
            s.entry(rel)
        });
        reply_entry(reply, result);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let s = self.lock();
        match s.alive().and_then(|()| s.getattr(ino.0)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut s = self.lock();
        let result = (|| {
            s.alive()?;
            let path = s.full(ino.0)?;
            if let Some(mode) = mode {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))
                    .map_err(errno)?;
            }
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::chown(&path, uid, gid).map_err(errno)?;
            }
            if let Some(size) = size {
                s.dirty_of(ino.0)?.truncate(size);
            }
            s.getattr(ino.0)
        })();
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut s = self.lock();
        let result = (|| {
            s.alive()?;
            let rel = s.rel(parent.0, name)?;
            std::fs::DirBuilder::new()
                .mode(mode & !umask & 0o7777)
                .create(s.backing.join(&rel))
                .map_err(errno)?;
            s.entry(rel)
        })();
        reply_entry(reply, result);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.lock();
        let result = (|| {
            s.alive()?;
            let path = s.backing.join(s.rel(parent.0, name)?);
            let meta = std::fs::symlink_metadata(&path).map_err(errno)?;
            std::fs::remove_file(&path).map_err(errno)?;
            if meta.nlink() <= 1 {
                s.forget_backing(meta.ino());
            }
            Ok(())
        })();
        reply_empty(reply, result);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.lock();
        let result = (|| {
            s.alive()?;
            let path = s.backing.join(s.rel(parent.0, name)?);
            let meta = std::fs::symlink_metadata(&path).map_err(errno)?;
            std::fs::remove_dir(&path).map_err(errno)?;
            s.forget_backing(meta.ino());
            Ok(())
        })();
        reply_empty(reply, result);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut s = self.lock();
        let result = (|| {
            s.alive()?;
            let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
            if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
                return Err(Errno::EINVAL);
            }
            let from = s.rel(parent.0, name)?;
            let to = s.rel(newparent.0, newname)?;
            let meta = std::fs::symlink_metadata(s.backing.join(&from)).map_err(errno)?;
            let replaced = std::fs::symlink_metadata(s.backing.join(&to)).ok();
            if noreplace && replaced.is_some() {
                return Err(Errno::EEXIST);
            }
            std::fs::rename(s.backing.join(&from), s.backing.join(&to)).map_err(errno)?;
            if let Some(old) = replaced {
                if old.ino() != meta.ino() && old.nlink() <= 1 {
                    s.forget_backing(old.ino());
                }
            }
            // The moved node and, for a directory, everything under it.
            for node in s.nodes.values_mut() {
                if let Ok(rest) = node.path.strip_prefix(&from) {
                    node.path = if rest.as_os_str().is_empty() {
                        to.clone()
                    } else {
                        to.join(rest)
                    };
                }
            }
            s.intern(meta.ino(), to);
            Ok(())
        })();
        reply_empty(reply, result);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut s = self.lock();
        let result = (|| {
            s.alive()?;
            // Reads go to the backing file; writes wait in memory, so a
            // read-only descriptor serves every open.
            let file = File::open(s.full(ino.0)?).map_err(errno)?;
            let fh = s.next_fh;
            s.next_fh += 1;
            s.handles.insert(fh, Handle::File(file));
            Ok(fh)
        })();
        match result {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut s = self.lock();
        let result = (|| {
            s.alive()?;
            let rel = s.rel(parent.0, name)?;
            let path = s.backing.join(&rel);
            let existed = path.exists();
            let mut options = OpenOptions::new();
            options
                .read(true)
                .write(true)
                .create(true)
                .mode(mode & !umask & 0o7777);
            if flags & libc::O_EXCL != 0 {
                options.create_new(true);
            }
            let file = options.open(&path).map_err(errno)?;
            let attr = s.entry(rel)?;
            let ino = attr.ino.0;
            if existed && flags & libc::O_TRUNC != 0 {
                // The truncation waits for a sync like any other.
                s.dirty_of(ino)?.truncate(0);
            }
            let attr = s.getattr(ino)?;
            let fh = s.next_fh;
            s.next_fh += 1;
            s.handles.insert(fh, Handle::File(file));
            Ok((attr, fh))
        })();
        match result {
            Ok((attr, fh)) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let s = self.lock();
        let result = (|| {
            s.alive()?;
            let Some(Handle::File(file)) = s.handles.get(&fh.0) else {
                return Err(Errno::EBADF);
            };
            let pread = |off: u64, buf: &mut [u8]| file.read_at(buf, off);
            match s.dirty.get(&ino.0) {
                Some(dirty) => dirty.read(offset, size as usize, pread).map_err(errno),
                None => {
                    let mut buf = vec![0u8; size as usize];
                    let mut got = 0;
                    while got < buf.len() {
                        let n = file
                            .read_at(&mut buf[got..], offset + got as u64)
                            .map_err(errno)?;
                        if n == 0 {
                            break;
                        }
                        got += n;
                    }
                    buf.truncate(got);
                    Ok(buf)
                }
            }
        })();
        match result {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut s = self.lock();
        let result = (|| {
            s.alive()?;
            s.dirty_of(ino.0)?.write(offset, data);
            s.stats.written += data.len() as u64;
            if let Some(left) = s.armed {
                if left <= 1 {
                    // The write reached memory; then the power failed.
                    s.crash();
                } else {
                    s.armed = Some(left - 1);
                }
            }
            Ok(data.len() as u32)
        })();
        match result {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) makes nothing durable.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.lock().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let result = self.lock().sync(ino.0);
        reply_empty(reply, result);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut s = self.lock();
        let result = (|| {
            s.alive()?;
            let path = s.full(ino.0)?;
            let mut entries = vec![
                (ino.0, FileType::Directory, OsString::from(".")),
                (ino.0, FileType::Directory, OsString::from("..")),
            ];
            for entry in std::fs::read_dir(&path).map_err(errno)? {
                let entry = entry.map_err(errno)?;
                let meta = entry.metadata().map_err(errno)?;
                entries.push((meta.ino(), kind_of(&meta), entry.file_name()));
            }
            let fh = s.next_fh;
            s.next_fh += 1;
            s.handles.insert(fh, Handle::Dir(entries));
            Ok(fh)
        })();
        match result {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let s = self.lock();
        if let Err(e) = s.alive() {
            reply.error(e);
            return;
        }
        let Some(Handle::Dir(entries)) = s.handles.get(&fh.0) else {
            reply.error(Errno::EBADF);
            return;
        };
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.lock().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Directory entries are durable at once (module doc).
        let result = self.lock().alive();
        reply_empty(reply, result);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let backing = self.lock().backing.clone();
        let Ok(path) = std::ffi::CString::new(backing.as_os_str().as_encoded_bytes()) else {
            reply.error(Errno::EINVAL);
            return;
        };
        // SAFETY: statvfs(3) writes into the zeroed struct we own, given a
        // NUL-terminated path.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
        if rc != 0 {
            reply.error(errno(io::Error::last_os_error()));
            return;
        }
        reply.statfs(
            st.f_blocks,
            st.f_bfree,
            st.f_bavail,
            st.f_files,
            st.f_ffree,
            st.f_bsize as u32,
            st.f_namemax as u32,
            st.f_frsize as u32,
        );
    }
}
