//! One file's unsynced contents: the bytes written since its last
//! `fsync`/`fdatasync`, its size and the truncations, kept in memory over
//! the backing file's durable bytes. [`Dirty::apply`] makes them durable
//! (on fsync); dropping a [`Dirty`] is the power loss.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The unsynced state of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dirty {
    /// Written and not yet synced: non-overlapping, non-adjacent extents
    /// keyed by their offset.
    extents: BTreeMap<u64, Vec<u8>>,
    /// The size a reader sees.
    size: u64,
    /// The smallest size the file was truncated to since its last sync:
    /// the backing file's bytes from there on are not visible any more.
    cut: Option<u64>,
}

impl Dirty {
    /// Nothing unsynced yet over a backing file of `backing_size` bytes.
    pub fn new(backing_size: u64) -> Self {
        Self {
            extents: BTreeMap::new(),
            size: backing_size,
            cut: None,
        }
    }

    /// The size readers see.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Unsynced data bytes (what a power loss now would drop).
    pub fn bytes(&self) -> u64 {
        self.extents.values().map(|v| v.len() as u64).sum()
    }

    /// Whether a truncation is unsynced.
    pub fn truncated(&self) -> bool {
        self.cut.is_some()
    }

    /// A `pwrite` of `data` at `offset`.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        // Extents that overlap or touch [offset, end), highest offset first
        // (they do not overlap each other, so the first one that ends
        // before `offset` ends the search).
        let touching: Vec<u64> = self
            .extents
            .range(..=end)
            .rev()
            .take_while(|(s, v)| **s + v.len() as u64 >= offset)
            .map(|(s, _)| *s)
            .collect();
        let Some(&first) = touching.last() else {
            self.extents.insert(offset, data.to_vec());
            self.size = self.size.max(end);
            return;
        };
        let start = first.min(offset);
        let merged_end = touching
            .iter()
            .map(|s| s + self.extents[s].len() as u64)
            .fold(end, u64::max);
        // Reuse the first extent's buffer when it starts the merged one
        // (sequential appends then grow one buffer).
        let mut buf = if first <= offset {
            self.extents.remove(&first).unwrap_or_default()
        } else {
            Vec::new()
        };
        buf.resize((merged_end - start) as usize, 0);
        for s in touching {
            if let Some(v) = self.extents.remove(&s) {
                let at = (s - start) as usize;
                buf[at..at + v.len()].copy_from_slice(&v);
            }
        }
        let at = (offset - start) as usize;
        buf[at..at + data.len()].copy_from_slice(data);
        self.extents.insert(start, buf);
        self.size = self.size.max(end);
    }

    /// A `truncate`/`ftruncate` to `size`.
    pub fn truncate(&mut self, size: u64) {
        if size < self.size {
            self.cut = Some(self.cut.map_or(size, |c| c.min(size)));
            // Drop what lies beyond, clip the extent that straddles.
            let beyond: Vec<u64> = self.extents.range(size..).map(|(s, _)| *s).collect();
            for s in beyond {
                self.extents.remove(&s);
            }
            if let Some((s, v)) = self.extents.range_mut(..size).next_back() {
                let keep = (size - *s) as usize;
                if v.len() > keep {
                    v.truncate(keep);
                }
            }
        }
        self.size = size;
    }

    /// Reads up to `len` bytes at `offset` as a reader sees them: the
    /// backing file's durable bytes (through `backing`, a `pread`) below
    /// any unsynced truncation, zeros elsewhere, the unsynced writes over
    /// them.
    pub fn read(
        &self,
        offset: u64,
        len: usize,
        mut backing: impl FnMut(u64, &mut [u8]) -> io::Result<usize>,
    ) -> io::Result<Vec<u8>> {
        let end = self.size.min(offset.saturating_add(len as u64));
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; (end - offset) as usize];
        let visible = self.cut.map_or(end, |c| c.min(end));
        if visible > offset {
            let want = (visible - offset) as usize;
            let mut got = 0;
            while got < want {
                let n = backing(offset + got as u64, &mut buf[got..want])?;
                if n == 0 {
                    break;
                }
                got += n;
            }
        }
        for (s, v) in self.extents.range(..end) {
            let e = s + v.len() as u64;
            if e <= offset {
                continue;
            }
            let from = offset.max(*s);
            let to = end.min(e);
            buf[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&v[(from - s) as usize..(to - s) as usize]);
        }
        Ok(buf)
    }

    /// Makes the unsynced contents the backing file's: the truncation,
    /// the size, then every extent (the caller syncs the file after).
    pub fn apply(&self, file: &File) -> io::Result<()> {
        if let Some(cut) = self.cut {
            file.set_len(cut)?;
        }
        if file.metadata()?.len() != self.size {
            file.set_len(self.size)?;
        }
        for (s, v) in &self.extents {
            file.write_all_at(v, *s)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model of the file: a plain byte vector.
    fn model_read(model: &[u8], offset: u64, len: usize) -> Vec<u8> {
        let from = (offset as usize).min(model.len());
        let to = (offset as usize + len).min(model.len());
        model[from..to].to_vec()
    }

    fn read_all(d: &Dirty, backing: &[u8]) -> Vec<u8> {
        d.read(0, 1 << 20, |off, buf| {
            let from = (off as usize).min(backing.len());
            let n = buf.len().min(backing.len() - from);
            buf[..n].copy_from_slice(&backing[from..from + n]);
            Ok(n)
        })
        .expect("read")
    }

    #[test]
    fn writes_merge_and_read_through() {
        let backing = b"0123456789".to_vec();
        let mut d = Dirty::new(backing.len() as u64);
        d.write(2, b"ab");
        d.write(6, b"cd");
        assert_eq!(read_all(&d, &backing), b"01ab45cd89");
        assert_eq!(d.bytes(), 4);
        // Bridges both extents: one extent remains.
        d.write(3, b"XYZW");
        assert_eq!(read_all(&d, &backing), b"01aXYZWd89");
        assert_eq!(d.extents.len(), 1);
        assert_eq!(d.bytes(), 6);
        // Appends beyond the end grow the size.
        d.write(12, b"!!");
        assert_eq!(d.size(), 14);
        assert_eq!(read_all(&d, &backing), b"01aXYZWd89\0\0!!");
        // Adjacent writes join.
        d.write(14, b"??");
        assert_eq!(d.extents.len(), 2);
        assert_eq!(d.bytes(), 10);
    }

    #[test]
    fn truncation_hides_backing_bytes_until_synced() {
        let backing = b"0123456789".to_vec();
        let mut d = Dirty::new(10);
        d.write(1, b"ab");
        d.truncate(2);
        assert_eq!(read_all(&d, &backing), b"0a");
        d.write(5, b"z");
        // Between the cut and the new write: zeros, not the old bytes.
        assert_eq!(read_all(&d, &backing), b"0a\0\0\0z");
        assert!(d.truncated());
        assert_eq!(d.bytes(), 2);
    }

    #[test]
    fn random_operations_match_a_byte_vector() {
        // A small deterministic generator (no dependency).
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for round in 0..200 {
            let backing: Vec<u8> = (0..next(64)).map(|i| (i as u8) ^ 0x55).collect();
            let mut model = backing.clone();
            let mut d = Dirty::new(backing.len() as u64);
            for _ in 0..40 {
                if next(8) == 0 {
                    let size = next(96) as usize;
                    model.resize(size, 0);
                    d.truncate(size as u64);
                } else {
                    let off = next(96) as usize;
                    let data: Vec<u8> = (0..1 + next(24)).map(|_| next(256) as u8).collect();
                    if model.len() < off + data.len() {
                        model.resize(off + data.len(), 0);
                    }
                    model[off..off + data.len()].copy_from_slice(&data);
                    d.write(off as u64, &data);
                }
                assert_eq!(read_all(&d, &backing), model, "round {round}");
                let off = next(100);
                let len = next(40) as usize;
                let part = d
                    .read(off, len, |o, buf| {
                        let from = (o as usize).min(backing.len());
                        let n = buf.len().min(backing.len() - from);
                        buf[..n].copy_from_slice(&backing[from..from + n]);
                        Ok(n)
                    })
                    .expect("read");
                assert_eq!(part, model_read(&model, off, len), "round {round}");
            }
            // Extents never overlap or touch.
            let mut last_end = None;
            for (s, v) in &d.extents {
                if let Some(e) = last_end {
                    assert!(*s > e, "round {round}: extents touch");
                }
                last_end = Some(s + v.len() as u64);
            }
        }
    }

    #[test]
    fn apply_writes_the_model() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").expect("write");
        let mut d = Dirty::new(10);
        d.truncate(3);
        d.write(6, b"xy");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        d.apply(&file).expect("apply");
        assert_eq!(std::fs::read(&path).expect("read"), b"012\0\0\0xy");
    }
}
