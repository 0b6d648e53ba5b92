//! The Raft log's own append-only file: one durable write per entry and one
//! `fdatasync` per group commit (issue 12).
//!
//! Before, the log was a sled tree: every append was a sled batch, and every
//! acknowledgement waited for sled's flush (a `pwrite` and its own
//! `sync_file_range` wait) before the fdatasync, about 465 µs a sync against
//! 130–160 µs for an fdatasync of an appended file on the same disk
//! (BENCHMARKS.md, "The Raft log in its own file"). sled keeps the vote, the
//! purged and committed ids, and the state machine.
//!
//! Layout: directory `raft-wal/` in the data directory, holding segment
//! files named `<first index, 20 digits>.wal`. A segment holds consecutive
//! entries, each one record:
//!
//! ```text
//! u32 LE payload length | u32 LE CRC-32 of (index bytes, payload) | u64 LE log index | payload
//! ```
//!
//! where the payload is `codec::encode_entry` of the openraft entry. A new
//! segment starts when the current one passed [`SEGMENT_BYTES`] or when an
//! append does not follow its last entry (after a snapshot was installed).
//!
//! Durability rules (each one is what makes recovery below sound):
//!
//! * an append is `pwrite`s only; [`Wal::sync`] (the group-commit thread)
//!   fdatasyncs the segment being written and, when a segment was created
//!   since the last sync, the directory. Nothing is acknowledged before it;
//! * a segment is fdatasynced before the next one is created, so only the
//!   last segment can end in a torn record;
//! * a truncation deletes the later segments from the last one back, syncs
//!   the directory, then shortens the segment holding the first removed
//!   entry and syncs it: a crash at any point leaves a prefix of the log;
//! * a purge deletes whole segments from the first one on: a crash leaves a
//!   suffix, and a segment that comes back is at or below the purged id,
//!   which nothing reads.
//!
//! Recovery reads every segment: a record that is short, too long, fails
//! its CRC or carries the wrong index ends the segment. In the last segment
//! that is taken for the torn tail of an append a crash interrupted before
//! its sync, so never acknowledged: everything from it on is cut off (and
//! synced), after a copy is kept beside the segment (`<segment>.torn`).
//! Nothing after it is searched for valid records: record payloads carry
//! client bytes, so a search could be fooled into refusing a store that
//! only lost an unacknowledged append, and a torn write can leave later
//! pages on disk. If the cut bytes were acknowledged (damage, not a torn
//! append), the other validators' record of what this one acknowledged
//! catches it at start (`safety::AckRecords`). In any other segment a bad
//! record is damage: opening fails with [`WalError::Damaged`], naming the
//! file and offset, and nothing is changed.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::codec::MAX_ENCODED_VALUE_BYTES;

/// The directory of the log's segments, inside the data directory.
pub const WAL_DIR: &str = "raft-wal";
/// A segment is closed and a new one started once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Bytes before each record's payload.
pub const RECORD_HEADER_BYTES: usize = 16;
/// The longest segment file this program writes: a segment takes records
/// while it is shorter than [`SEGMENT_BYTES`], so it ends at most one record
/// past it. A longer file is refused as damaged when the log is opened.
pub const MAX_SEGMENT_FILE_BYTES: u64 =
    SEGMENT_BYTES + (RECORD_HEADER_BYTES + MAX_ENCODED_VALUE_BYTES) as u64;
const SEGMENT_SUFFIX: &str = ".wal";
/// Extension of the copy of a cut-off tail, beside its segment.
const TORN_SUFFIX: &str = "torn";

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("Raft log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Raft log segment {path} is damaged at byte {offset} ({what}) and is not the last segment; the store is damaged")]
    Damaged {
        path: PathBuf,
        offset: u64,
        what: &'static str,
    },
    #[error("Raft log segment {path} starts at entry {first}, inside the segment before it (which ends at entry {previous_last}); the store is damaged")]
    Overlap {
        path: PathBuf,
        first: u64,
        previous_last: u64,
    },
    #[error("cannot append entry {index}: the log already holds entries up to {last} (openraft truncates before it overwrites)")]
    OutOfOrder { index: u64, last: u64 },
    #[error("the record of entry {index} is {len} bytes, more than the {max} a record may hold")]
    TooLarge { index: u64, len: usize, max: usize },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

struct Segment {
    first: u64,
    path: PathBuf,
    file: Arc<File>,
    /// Start offset of each record: entry `first + i` starts at `offsets[i]`.
    offsets: Vec<u64>,
    /// End of the last record (the file's length).
    end: u64,
}

impl Segment {
    fn next_index(&self) -> u64 {
        self.first + self.offsets.len() as u64
    }

    fn last_index(&self) -> Option<u64> {
        (!self.offsets.is_empty()).then(|| self.next_index() - 1)
    }

    fn record_span(&self, index: u64) -> Option<(u64, u64)> {
        let i = usize::try_from(index.checked_sub(self.first)?).ok()?;
        let start = *self.offsets.get(i)?;
        let end = self.offsets.get(i + 1).copied().unwrap_or(self.end);
        Some((start, end))
    }
}

/// Records to read: (index, file, path, start, end), and the truncation
/// count when they were taken.
struct Spans {
    records: Vec<(u64, Arc<File>, PathBuf, u64, u64)>,
    truncations: u64,
}

struct Inner {
    /// By first index; the last one is the segment appends go to.
    segments: BTreeMap<u64, Segment>,
    /// A segment file was created or removed since the directory was synced.
    dir_dirty: bool,
    /// Truncations so far: a read that raced one returns what it read
    /// before the truncated part instead of an error.
    truncations: u64,
}

impl Inner {
    fn last_index(&self) -> Option<u64> {
        self.segments.values().rev().find_map(Segment::last_index)
    }
}

/// The Raft log's segment files.
pub struct Wal {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

fn segment_name(first: u64) -> String {
    format!("{first:020}{SEGMENT_SUFFIX}")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn crc(index: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Appends the record of entry `index` to `out`.
fn encode_record(out: &mut Vec<u8>, index: u64, payload: &[u8]) -> Result<(), WalError> {
    if payload.len() > MAX_ENCODED_VALUE_BYTES {
        return Err(WalError::TooLarge {
            index,
            len: payload.len(),
            max: MAX_ENCODED_VALUE_BYTES,
        });
    }
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc(index, payload).to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// (payload length, checksum, log index) of a record header.
fn parse_header(header: &[u8]) -> Option<(usize, u32, u64)> {
    let header: &[u8; RECORD_HEADER_BYTES] = header.try_into().ok()?;
    let [l0, l1, l2, l3, s0, s1, s2, s3, index @ ..] = *header;
    Some((
        u32::from_le_bytes([l0, l1, l2, l3]) as usize,
        u32::from_le_bytes([s0, s1, s2, s3]),
        u64::from_le_bytes(index),
    ))
}

/// Why a segment's scan stopped before the end of its bytes.
struct Stop {
    offset: u64,
    what: &'static str,
}

/// Record start offsets of `bytes`, a segment whose first entry is `first`,
/// and where (and why) the valid records end, if before the end.
fn scan(first: u64, bytes: &[u8]) -> (Vec<u64>, Option<Stop>) {
    let mut offsets = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let stop = |what| {
            Some(Stop {
                offset: at as u64,
                what,
            })
        };
        let Some((len, sum, index)) = bytes
            .get(at..at + RECORD_HEADER_BYTES)
            .and_then(parse_header)
        else {
            return (offsets, stop("short record header"));
        };
        if len == 0 || len > MAX_ENCODED_VALUE_BYTES {
            return (offsets, stop("record length out of bounds"));
        }
        let expected = first + offsets.len() as u64;
        if index != expected {
            return (offsets, stop("record of another entry"));
        }
        let Some(payload) = bytes.get(at + RECORD_HEADER_BYTES..at + RECORD_HEADER_BYTES + len)
        else {
            return (offsets, stop("short record"));
        };
        if crc(index, payload) != sum {
            return (offsets, stop("record checksum mismatch"));
        }
        offsets.push(at as u64);
        at += RECORD_HEADER_BYTES + len;
    }
    (offsets, None)
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}

impl Wal {
    /// Opens (creating) the log in `data_dir`/[`WAL_DIR`], cutting off a torn
    /// tail of the last segment, and makes what it found durable: a
    /// previous process may have stopped between a write and its sync, and
    /// what it left in the page cache is acknowledged from now on.
    pub fn open(data_dir: &Path) -> Result<Self, WalError> {
        let dir = data_dir.join(WAL_DIR);
        std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let mut firsts = Vec::new();
        for item in std::fs::read_dir(&dir).map_err(io_at(&dir))? {
            let item = item.map_err(io_at(&dir))?;
            if let Some(first) = item.file_name().to_str().and_then(parse_segment_name) {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        // Everything is checked before anything is changed.
        let count = firsts.len();
        let mut found = Vec::with_capacity(count);
        let mut cut = None;
        let mut previous_last: Option<u64> = None;
        for (n, first) in firsts.into_iter().enumerate() {
            let path = dir.join(segment_name(first));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_at(&path))?;
            let len = file.metadata().map_err(io_at(&path))?.len();
            if len > MAX_SEGMENT_FILE_BYTES {
                return Err(WalError::Damaged {
                    path,
                    offset: MAX_SEGMENT_FILE_BYTES,
                    what: "segment longer than any this program writes",
                });
            }
            let mut bytes = Vec::with_capacity(len as usize);
            io::Read::read_to_end(&mut &file, &mut bytes).map_err(io_at(&path))?;
            let (offsets, stop) = scan(first, &bytes);
            let mut end = bytes.len() as u64;
            if let Some(stop) = stop {
                if n + 1 != count {
                    return Err(WalError::Damaged {
                        path,
                        offset: stop.offset,
                        what: stop.what,
                    });
                }
                cut = Some((
                    stop.offset,
                    bytes[stop.offset as usize..].to_vec(),
                    stop.what,
                ));
                end = stop.offset;
            }
            let last = (!offsets.is_empty()).then(|| first + offsets.len() as u64 - 1);
            if let (Some(previous_last), Some(_)) = (previous_last, last) {
                if first <= previous_last {
                    return Err(WalError::Overlap {
                        path,
                        first,
                        previous_last,
                    });
                }
            }
            previous_last = last.or(previous_last);
            found.push(Segment {
                first,
                path,
                file: Arc::new(file),
                offsets,
                end,
            });
        }
        let mut segments = BTreeMap::new();
        let count = found.len();
        for (n, segment) in found.into_iter().enumerate() {
            let is_last = n + 1 == count;
            if !is_last && segment.offsets.is_empty() {
                // A segment created just before a crash, then left behind.
                std::fs::remove_file(&segment.path).map_err(io_at(&segment.path))?;
                continue;
            }
            if is_last {
                if let Some((offset, dropped, reason)) = cut.take() {
                    // Kept for inspection: a torn append is the usual cause,
                    // but damage to the last records looks the same.
                    let aside = segment.path.with_extension(TORN_SUFFIX);
                    std::fs::write(&aside, &dropped)
                        .and_then(|()| File::open(&aside)?.sync_all())
                        .map_err(io_at(&aside))?;
                    tracing::warn!(
                        segment = %segment.path.display(),
                        offset,
                        dropped_bytes = dropped.len(),
                        kept_in = %aside.display(),
                        reason,
                        "the Raft log ends in a bad record: cut off there, as the torn end of an append a crash interrupted before its sync (so never acknowledged); the other validators' record of what this one acknowledged is checked at start (docs/operations.md, \"Recovering a validator\")"
                    );
                    segment.file.set_len(offset).map_err(io_at(&segment.path))?;
                }
                segment.file.sync_all().map_err(io_at(&segment.path))?;
            } else {
                segment.file.sync_data().map_err(io_at(&segment.path))?;
            }
            segments.insert(segment.first, segment);
        }
        sync_dir(&dir)?;
        sync_dir(data_dir)?;
        Ok(Self {
            dir,
            inner: Mutex::new(Inner {
                segments,
                dir_dirty: false,
                truncations: 0,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The highest index held, if any.
    pub fn last_index(&self) -> Option<u64> {
        self.lock().last_index()
    }

    /// Writes the records of `entries` (index, `codec::encode_entry` bytes),
    /// whose indexes must follow one another. Readable at once; durable after
    /// the next [`Wal::sync`].
    pub fn append(&self, entries: &[(u64, Vec<u8>)]) -> Result<(), WalError> {
        let mut inner = self.lock();
        // Every check first: a refused batch writes nothing.
        let mut last = inner.last_index();
        for (index, payload) in entries {
            if let Some(last) = last.filter(|l| index <= l) {
                return Err(WalError::OutOfOrder {
                    index: *index,
                    last,
                });
            }
            if payload.len() > MAX_ENCODED_VALUE_BYTES {
                return Err(WalError::TooLarge {
                    index: *index,
                    len: payload.len(),
                    max: MAX_ENCODED_VALUE_BYTES,
                });
            }
            last = Some(*index);
        }
        let mut buf = Vec::new();
        let mut ends: Vec<u64> = Vec::new();
        for (index, payload) in entries {
            let follows = inner.segments.values().next_back().is_some_and(|s| {
                s.next_index() + ends.len() as u64 == *index
                    && s.end + (buf.len() as u64) < SEGMENT_BYTES
            });
            if !follows {
                self.write_pending(&mut inner, &mut buf, &mut ends)?;
                self.start_segment(&mut inner, *index)?;
            }
            encode_record(&mut buf, *index, payload)?;
            ends.push(buf.len() as u64);
        }
        self.write_pending(&mut inner, &mut buf, &mut ends)
    }

    /// Writes `buf` (records whose ends are `ends`) at the end of the last
    /// segment.
    fn write_pending(
        &self,
        inner: &mut Inner,
        buf: &mut Vec<u8>,
        ends: &mut Vec<u64>,
    ) -> Result<(), WalError> {
        if buf.is_empty() {
            return Ok(());
        }
        // `append` starts a segment before it encodes a first record.
        let Some(segment) = inner.segments.values_mut().next_back() else {
            return Err(WalError::Io {
                path: self.dir.clone(),
                source: io::Error::other("no segment to write the records to"),
            });
        };
        segment
            .file
            .write_all_at(buf, segment.end)
            .map_err(io_at(&segment.path))?;
        let mut start = 0u64;
        for end in ends.drain(..) {
            segment.offsets.push(segment.end + start);
            start = end;
        }
        segment.end += buf.len() as u64;
        buf.clear();
        Ok(())
    }

    /// Closes the last segment (synced, so only the last one can be torn)
    /// and starts a new one at `first`.
    fn start_segment(&self, inner: &mut Inner, first: u64) -> Result<(), WalError> {
        if let Some(last) = inner.segments.values().next_back() {
            if last.offsets.is_empty() {
                let (key, path) = (last.first, last.path.clone());
                std::fs::remove_file(&path).map_err(io_at(&path))?;
                inner.segments.remove(&key);
            } else {
                last.file.sync_data().map_err(io_at(&last.path))?;
            }
        }
        let path = self.dir.join(segment_name(first));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io_at(&path))?;
        inner.segments.insert(
            first,
            Segment {
                first,
                path,
                file: Arc::new(file),
                offsets: Vec::new(),
                end: 0,
            },
        );
        inner.dir_dirty = true;
        Ok(())
    }

    /// The payloads of consecutive entries from the first one held at or
    /// after `start`, below `end`, at most `max` of them: it stops at the
    /// next index not held. Each record's index and checksum are checked
    /// again (the files are read outside the lock).
    pub fn read(&self, start: u64, end: u64, max: usize) -> Result<Vec<Vec<u8>>, WalError> {
        let spans = self.spans(start, end, max);
        self.read_spans(spans)
    }

    /// Where the records [`Wal::read`] reads are, taken under the lock.
    fn spans(&self, start: u64, end: u64, max: usize) -> Spans {
        let inner = self.lock();
        let mut spans = Spans {
            records: Vec::new(),
            truncations: inner.truncations,
        };
        let held = |s: &Segment| s.record_span(start).is_some();
        let mut index = match inner.segments.range(..=start).next_back() {
            Some((_, s)) if held(s) => start,
            _ => match inner
                .segments
                .range(start..)
                .find(|(_, s)| !s.offsets.is_empty())
            {
                Some((first, _)) => *first,
                None => return spans,
            },
        };
        while index < end && spans.records.len() < max {
            let Some((_, segment)) = inner.segments.range(..=index).next_back() else {
                break;
            };
            let Some((from, to)) = segment.record_span(index) else {
                break;
            };
            spans
                .records
                .push((index, segment.file.clone(), segment.path.clone(), from, to));
            index += 1;
        }
        spans
    }

    /// Reads and checks the records of `spans`, outside the lock.
    fn read_spans(&self, spans: Spans) -> Result<Vec<Vec<u8>>, WalError> {
        let mut out = Vec::with_capacity(spans.records.len());
        for (index, file, path, from, to) in spans.records {
            let mut record = vec![0u8; (to - from) as usize];
            let read = file.read_exact_at(&mut record, from);
            let stop = read.as_ref().ok().and_then(|()| scan(index, &record).1);
            if read.is_err() || stop.is_some() {
                // A replication task of a term that ended may read while the
                // log is truncated: what it read before is all there is.
                if self.lock().truncations != spans.truncations {
                    return Ok(out);
                }
                read.map_err(io_at(&path))?;
                if let Some(stop) = stop {
                    return Err(WalError::Damaged {
                        path,
                        offset: from + stop.offset,
                        what: stop.what,
                    });
                }
            }
            record.drain(..RECORD_HEADER_BYTES);
            out.push(record);
        }
        Ok(out)
    }

    /// Makes every append that returned before this call durable.
    pub fn sync(&self) -> Result<(), WalError> {
        let (file, path, dir_dirty) = {
            let mut inner = self.lock();
            let dir_dirty = std::mem::take(&mut inner.dir_dirty);
            match inner.segments.values().next_back() {
                Some(s) => (Some(s.file.clone()), s.path.clone(), dir_dirty),
                None => (None, self.dir.clone(), dir_dirty),
            }
        };
        if let Some(file) = file {
            file.sync_data().map_err(io_at(&path))?;
        }
        if dir_dirty {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Removes every entry from `index` on, durably, before it returns.
    pub fn truncate_from(&self, index: u64) -> Result<(), WalError> {
        let mut inner = self.lock();
        inner.truncations += 1;
        // Later segments first, from the last one back: a crash leaves a
        // prefix of the log.
        let later = inner.segments.split_off(&index);
        // One directory sync per removal: the order of unlinks reaches the
        // disk as it was made.
        for segment in later.values().rev() {
            std::fs::remove_file(&segment.path).map_err(io_at(&segment.path))?;
            sync_dir(&self.dir)?;
        }
        if let Some((_, segment)) = inner.segments.range_mut(..index).next_back() {
            if let Some((from, _)) = segment.record_span(index) {
                segment.file.set_len(from).map_err(io_at(&segment.path))?;
                segment.file.sync_all().map_err(io_at(&segment.path))?;
                let keep = (index - segment.first) as usize;
                segment.offsets.truncate(keep);
                segment.end = from;
            }
        }
        Ok(())
    }

    /// Deletes every segment whose entries are all at or below `upto`, from
    /// the first one on (the rest of the log stays readable).
    pub fn purge_upto(&self, upto: u64) -> Result<usize, WalError> {
        let mut inner = self.lock();
        let mut gone = 0;
        while let Some(first) = inner.segments.first_entry() {
            if first.get().last_index().is_none_or(|l| l > upto) {
                break;
            }
            let segment = first.remove();
            std::fs::remove_file(&segment.path).map_err(io_at(&segment.path))?;
            gone += 1;
        }
        if gone > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(gone)
    }

    /// Segment files held (for tests and the status).
    pub fn segment_count(&self) -> usize {
        self.lock().segments.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(range: std::ops::Range<u64>, len: usize) -> Vec<(u64, Vec<u8>)> {
        range.map(|i| (i, vec![(i % 251) as u8; len])).collect()
    }

    fn all(wal: &Wal, start: u64) -> Vec<Vec<u8>> {
        wal.read(start, u64::MAX, usize::MAX).expect("read")
    }

    /// A log of `range`'s entries of `payload` bytes, synced and closed, and
    /// the path of its (only) segment.
    fn synced_log(
        range: std::ops::Range<u64>,
        payload: usize,
    ) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(WAL_DIR).join(segment_name(range.start));
        let wal = Wal::open(dir.path()).expect("open");
        wal.append(&entries(range, payload)).expect("append");
        wal.sync().expect("sync");
        (dir, path)
    }

    /// Opening the log in `dir` fails with damage at `offset`, and the
    /// segment at `path` keeps `records` records of `payload` bytes: the
    /// damaged file is not changed.
    fn assert_damaged_unchanged(dir: &Path, offset: u64, path: &Path, records: u64, payload: u64) {
        match Wal::open(dir) {
            Err(WalError::Damaged { offset: at, .. }) => assert_eq!(at, offset),
            other => panic!("expected damage at {offset}, got {:?}", other.err()),
        }
        assert_eq!(
            std::fs::metadata(path).expect("meta").len(),
            records * (RECORD_HEADER_BYTES as u64 + payload),
            "a damaged segment is left as it is"
        );
    }

    #[test]
    fn appends_read_back_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let wal = Wal::open(dir.path()).expect("open");
            wal.append(&entries(1..11, 100)).expect("append");
            wal.append(&entries(11..21, 7)).expect("append");
            wal.sync().expect("sync");
            assert_eq!(wal.last_index(), Some(20));
        }
        let wal = Wal::open(dir.path()).expect("reopen");
        assert_eq!(wal.last_index(), Some(20));
        let got = all(&wal, 1);
        assert_eq!(got.len(), 20);
        assert_eq!(got[0], vec![1u8; 100]);
        assert_eq!(got[19], vec![20u8; 7]);
        assert_eq!(wal.read(5, 8, usize::MAX).expect("read").len(), 3);
        assert_eq!(wal.read(5, 100, 2).expect("read").len(), 2);
        assert!(wal.read(21, 100, 10).expect("read").is_empty());
    }

    #[test]
    fn out_of_order_appends_are_refused_and_gaps_start_a_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = Wal::open(dir.path()).expect("open");
        wal.append(&entries(1..6, 10)).expect("append");
        assert!(matches!(
            wal.append(&entries(5..6, 10)),
            Err(WalError::OutOfOrder { index: 5, last: 5 })
        ));
        assert!(matches!(
            wal.append(&[(6, vec![1]), (6, vec![1])]),
            Err(WalError::OutOfOrder { index: 6, last: 6 })
        ));
        // The refused batch wrote nothing of its own past entry 6.
        wal.truncate_from(6).expect("truncate");
        wal.append(&entries(100..103, 10))
            .expect("append after a gap");
        assert_eq!(wal.segment_count(), 2);
        assert_eq!(all(&wal, 1).len(), 5, "a read stops at the gap");
        assert_eq!(all(&wal, 100).len(), 3);
        drop(wal);
        let wal = Wal::open(dir.path()).expect("reopen");
        assert_eq!(wal.last_index(), Some(102));
        assert_eq!(all(&wal, 1).len(), 5);
    }

    #[test]
    fn truncation_removes_the_suffix_durably_and_appends_go_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = Wal::open(dir.path()).expect("open");
        wal.append(&entries(1..11, 50)).expect("append");
        wal.append(&entries(20..25, 50)).expect("second segment");
        wal.truncate_from(7).expect("truncate");
        assert_eq!(wal.last_index(), Some(6));
        assert_eq!(wal.segment_count(), 1);
        wal.append(&[(7, vec![9u8; 3])])
            .expect("append the new entry 7");
        drop(wal);
        let wal = Wal::open(dir.path()).expect("reopen");
        let got = all(&wal, 1);
        assert_eq!(got.len(), 7);
        assert_eq!(got[6], vec![9u8; 3], "the new entry, not the old one");
        // Truncating everything leaves an empty log that takes entry 1 again.
        wal.truncate_from(1).expect("truncate all");
        assert_eq!(wal.last_index(), None);
        wal.append(&entries(1..3, 5)).expect("append");
        assert_eq!(all(&wal, 1).len(), 2);
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_damage_elsewhere_is_refused() {
        let (dir, path) = synced_log(1..6, 40);
        let len = std::fs::metadata(&path).expect("meta").len();
        // Half of the last record made it to disk.
        let f = OpenOptions::new().write(true).open(&path).expect("open");
        f.set_len(len - 20).expect("tear");
        drop(f);
        let wal = Wal::open(dir.path()).expect("a torn tail is not damage");
        assert_eq!(wal.last_index(), Some(4));
        assert_eq!(
            std::fs::metadata(&path).expect("meta").len(),
            4 * (RECORD_HEADER_BYTES as u64 + 40),
            "the torn record is cut off"
        );
        wal.append(&entries(5..6, 40)).expect("append again");
        // A second segment, then a flipped byte in the first one.
        wal.append(&entries(50..52, 40)).expect("second segment");
        drop(wal);
        let f = OpenOptions::new().write(true).open(&path).expect("open");
        f.write_all_at(&[0xff], RECORD_HEADER_BYTES as u64 + 3)
            .expect("flip");
        drop(f);
        assert_damaged_unchanged(dir.path(), 0, &path, 5, 40);
    }

    #[test]
    fn segments_roll_over_at_their_size_and_purge_removes_whole_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = Wal::open(dir.path()).expect("open");
        // Records of 1 MiB: a segment takes SEGMENT_BYTES / record of them.
        let size = 1024 * 1024;
        let per = SEGMENT_BYTES.div_ceil((size + RECORD_HEADER_BYTES) as u64);
        let n = per * 2 + 3;
        for i in 1..=n {
            wal.append(&[(i, vec![(i % 7) as u8; size])])
                .expect("append");
        }
        assert_eq!(wal.segment_count(), 3);
        assert_eq!(all(&wal, n - 1).len(), 2);
        // Purging inside the second segment removes only the first.
        assert_eq!(wal.purge_upto(per + 2).expect("purge"), 1);
        assert!(wal.read(1, 2, 1).expect("read").is_empty());
        assert_eq!(
            wal.read(per + 1, n + 1, usize::MAX).expect("read").len() as u64,
            n - per
        );
        drop(wal);
        let wal = Wal::open(dir.path()).expect("reopen");
        assert_eq!(wal.segment_count(), 2);
        assert_eq!(wal.last_index(), Some(n));
        assert_eq!(wal.purge_upto(n).expect("purge all"), 2);
        assert_eq!(wal.last_index(), None);
        wal.append(&entries(n + 1..n + 2, 1)).expect("append after");
        assert_eq!(wal.last_index(), Some(n + 1));
    }

    #[test]
    fn records_at_under_and_over_the_size_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = Wal::open(dir.path()).expect("open");
        wal.append(&[(1, vec![1u8; MAX_ENCODED_VALUE_BYTES - 1])])
            .expect("under");
        wal.append(&[(2, vec![2u8; MAX_ENCODED_VALUE_BYTES])])
            .expect("at");
        assert!(matches!(
            wal.append(&[(3, vec![3u8; MAX_ENCODED_VALUE_BYTES + 1])]),
            Err(WalError::TooLarge { index: 3, .. })
        ));
        drop(wal);
        let wal = Wal::open(dir.path()).expect("reopen");
        assert_eq!(wal.last_index(), Some(2));
    }

    #[test]
    fn a_bad_record_in_the_last_segment_is_cut_there_and_kept_aside() {
        let (dir, path) = synced_log(1..11, 40);
        // A flipped byte in entry 3's payload of the last (only) segment,
        // valid records after it: nothing after a bad record is trusted.
        let f = OpenOptions::new().write(true).open(&path).expect("open");
        let record = RECORD_HEADER_BYTES as u64 + 40;
        f.write_all_at(&[0xee], 2 * record + RECORD_HEADER_BYTES as u64 + 5)
            .expect("flip");
        drop(f);
        let wal = Wal::open(dir.path()).expect("opens");
        assert_eq!(wal.last_index(), Some(2));
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 2 * record);
        let aside = path.with_extension(TORN_SUFFIX);
        assert_eq!(
            std::fs::metadata(&aside)
                .expect("the cut bytes are kept")
                .len(),
            8 * record
        );
        // The copy is not taken for a segment.
        drop(wal);
        let wal = Wal::open(dir.path()).expect("reopens");
        assert_eq!(wal.segment_count(), 1);
        assert_eq!(wal.last_index(), Some(2));
    }

    #[test]
    fn reads_check_every_record_and_empty_segments_left_behind_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = Wal::open(dir.path()).expect("open");
        wal.append(&entries(1..4, 30)).expect("append");
        // Damage after the open: the read refuses it, naming the offset.
        let path = dir.path().join(WAL_DIR).join(segment_name(1));
        let f = OpenOptions::new().write(true).open(&path).expect("open");
        f.write_all_at(&[0xaa], RECORD_HEADER_BYTES as u64 + 1)
            .expect("flip");
        match wal.read(1, 4, 10) {
            Err(WalError::Damaged { offset: 0, .. }) => {}
            other => panic!("expected damage, got {other:?}"),
        }
        assert_eq!(wal.read(2, 4, 10).expect("later entries read").len(), 2);
        drop(wal);
        drop(f);
        // An empty segment between two others (made just before a crash).
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let wal = Wal::open(dir.path()).expect("open");
            wal.append(&entries(1..4, 30)).expect("append");
            wal.append(&entries(10..12, 30)).expect("append");
            wal.sync().expect("sync");
        }
        let stray = dir.path().join(WAL_DIR).join(segment_name(5));
        File::create(&stray).expect("stray");
        let wal = Wal::open(dir.path()).expect("open");
        assert!(
            !stray.exists(),
            "the empty segment in the middle is removed"
        );
        assert_eq!(wal.segment_count(), 2);
        assert_eq!(wal.purge_upto(3).expect("purge"), 1);
    }

    #[test]
    fn a_segment_longer_than_any_written_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Wal::open(dir.path()).expect("open"));
        let path = dir.path().join(WAL_DIR).join(segment_name(1));
        let f = File::create(&path).expect("create");
        // Sparse: the bound is checked before the file is read.
        f.set_len(MAX_SEGMENT_FILE_BYTES + 1).expect("extend");
        match Wal::open(dir.path()) {
            Err(WalError::Damaged { offset, .. }) => assert_eq!(offset, MAX_SEGMENT_FILE_BYTES),
            other => panic!("expected damage, got {:?}", other.err()),
        }
        // At the bound it is read (and here, being zeros, cut as torn).
        f.set_len(MAX_SEGMENT_FILE_BYTES).expect("shrink");
        let wal = Wal::open(dir.path()).expect("at the bound");
        assert_eq!(wal.last_index(), None);
    }

    #[test]
    fn a_read_that_races_a_truncation_returns_what_it_read_before() {
        let (dir, _path) = synced_log(1..6, 30);
        let wal = Wal::open(dir.path()).expect("open");
        // The spans taken, then the log truncated before they are read.
        let spans = wal.spans(1, 6, 10);
        wal.truncate_from(3).expect("truncate");
        let got = wal.read_spans(spans).expect("no error for a raced read");
        assert_eq!(got, vec![vec![1u8; 30], vec![2u8; 30]]);
        // Without a truncation, the same shortened file is damage.
        let spans = wal.spans(1, 3, 10);
        let path = dir.path().join(WAL_DIR).join(segment_name(1));
        OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open")
            .set_len(RECORD_HEADER_BYTES as u64 + 30)
            .expect("shorten");
        assert!(matches!(wal.read_spans(spans), Err(WalError::Io { .. })));
    }
}
