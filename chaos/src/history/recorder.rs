//! Writes a history line by line, hashing what it writes so two runs can be
//! compared by one digest (the determinism check).

use std::io::Write;

use sha2::{Digest, Sha256};

use super::{Event, Header, HistoryError, MAX_LINE_BYTES};

/// Streams events to `W` as JSON lines. The header is written first, by
/// [`Recorder::new`], so a history on disk always starts with one.
pub struct Recorder<W: Write> {
    out: W,
    digest: Sha256,
    lines: u64,
}

impl<W: Write> Recorder<W> {
    pub fn new(out: W, header: &Header) -> Result<Self, HistoryError> {
        let mut recorder = Self {
            out,
            digest: Sha256::new(),
            lines: 0,
        };
        recorder.record(&Event::Header(header.clone()))?;
        Ok(recorder)
    }

    /// Appends one event as one line.
    pub fn record(&mut self, event: &Event) -> Result<(), HistoryError> {
        let mut line = serde_json::to_vec(event).map_err(|e| HistoryError::Encode {
            line: self.lines + 1,
            message: e.to_string(),
        })?;
        // The reader refuses longer lines, so never write one.
        if line.len() > MAX_LINE_BYTES {
            return Err(HistoryError::LineTooLong {
                line: self.lines + 1,
                max: MAX_LINE_BYTES,
            });
        }
        line.push(b'\n');
        self.out.write_all(&line).map_err(HistoryError::io)?;
        self.digest.update(&line);
        self.lines += 1;
        Ok(())
    }

    /// Lines written so far, the header included.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// SHA-256 of every byte written so far.
    pub fn digest(&self) -> [u8; 32] {
        self.digest.clone().finalize().into()
    }

    /// Flushes and returns the writer and the digest of the whole history.
    pub fn finish(mut self) -> Result<(W, [u8; 32]), HistoryError> {
        self.out.flush().map_err(HistoryError::io)?;
        let digest = self.digest.finalize().into();
        Ok((self.out, digest))
    }
}
