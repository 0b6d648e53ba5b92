//! Reads a history back, one bounded line at a time, so a corrupt or
//! hostile file can neither exhaust memory nor be half-trusted.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use super::{Event, History, Recorder, HISTORY_FORMAT};

/// Longest line accepted (and written). A certificate line carries the
/// envelope plus every replica's payload in hex; real payloads are a few
/// kilobytes, so 1 MiB leaves ample room without trusting the file.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;
/// Most events one history may hold in memory.
pub const MAX_HISTORY_EVENTS: usize = 4_000_000;

/// Why a history cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history I/O failed: {0}")]
    Io(String),
    #[error("line {line} is longer than {max} bytes")]
    LineTooLong { line: u64, max: usize },
    #[error("line {line} is not a history event: {message}")]
    Json { line: u64, message: String },
    #[error("line {line} cannot be encoded: {message}")]
    Encode { line: u64, message: String },
    #[error("the history is empty: its first line must be a header")]
    Empty,
    #[error("line {line} must be the header, found a {found} event")]
    HeaderNotFirst { line: u64, found: String },
    #[error("line {line} is a second header")]
    SecondHeader { line: u64 },
    #[error("history format {found} is not supported (this build reads format {expected})")]
    UnsupportedFormat { found: u32, expected: u32 },
    #[error("the history has more than {max} events")]
    TooManyEvents { max: usize },
}

impl HistoryError {
    pub(crate) fn io(e: std::io::Error) -> Self {
        HistoryError::Io(e.to_string())
    }
}

/// Streams events from a reader; yields each line's event or the error that
/// stops the stream (after an error it yields nothing more).
pub struct HistoryReader<R: BufRead> {
    input: R,
    line: u64,
    buf: Vec<u8>,
    failed: bool,
}

impl<R: BufRead> HistoryReader<R> {
    pub fn new(input: R) -> Self {
        Self {
            input,
            line: 0,
            buf: Vec::new(),
            failed: false,
        }
    }

    /// Number of the line last read (1-based).
    pub fn line(&self) -> u64 {
        self.line
    }

    fn next_line(&mut self) -> Result<Option<()>, HistoryError> {
        loop {
            self.buf.clear();
            let limit = MAX_LINE_BYTES as u64 + 1;
            let n = (&mut self.input)
                .take(limit)
                .read_until(b'\n', &mut self.buf)
                .map_err(HistoryError::io)?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            if self.buf.last() == Some(&b'\n') {
                self.buf.pop();
            } else if self.buf.len() > MAX_LINE_BYTES {
                return Err(HistoryError::LineTooLong {
                    line: self.line,
                    max: MAX_LINE_BYTES,
                });
            }
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
            // Blank lines carry nothing; skipping them lets a file end with
            // an empty line or be concatenated by hand.
            if !self.buf.iter().all(u8::is_ascii_whitespace) {
                return Ok(Some(()));
            }
        }
    }
}

impl<R: BufRead> Iterator for HistoryReader<R> {
    type Item = Result<Event, HistoryError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let result = match self.next_line() {
            Ok(None) => return None,
            Ok(Some(())) => {
                serde_json::from_slice::<Event>(&self.buf).map_err(|e| HistoryError::Json {
                    line: self.line,
                    message: e.to_string(),
                })
            }
            Err(e) => Err(e),
        };
        self.failed = result.is_err();
        Some(result)
    }
}

fn event_name(e: &Event) -> &'static str {
    match e {
        Event::Header(_) => "header",
        Event::Invoke(_) => "invoke",
        Event::Result(_) => "result",
        Event::Applied(_) => "applied",
        Event::Certificate(_) => "certificate",
        Event::Final(_) => "final",
        Event::Fault(_) => "fault",
        Event::Heal(_) => "heal",
    }
}

impl History {
    /// Reads a whole history: a header first, then at most
    /// [`MAX_HISTORY_EVENTS`] events.
    pub fn read<R: BufRead>(input: R) -> Result<History, HistoryError> {
        let mut reader = HistoryReader::new(input);
        let header = match reader.next() {
            None => return Err(HistoryError::Empty),
            Some(Err(e)) => return Err(e),
            Some(Ok(Event::Header(h))) => h,
            Some(Ok(other)) => {
                return Err(HistoryError::HeaderNotFirst {
                    line: reader.line(),
                    found: event_name(&other).to_owned(),
                })
            }
        };
        if header.format != HISTORY_FORMAT {
            return Err(HistoryError::UnsupportedFormat {
                found: header.format,
                expected: HISTORY_FORMAT,
            });
        }
        let mut events = Vec::new();
        while let Some(event) = reader.next() {
            let event = event?;
            if matches!(event, Event::Header(_)) {
                return Err(HistoryError::SecondHeader {
                    line: reader.line(),
                });
            }
            if events.len() >= MAX_HISTORY_EVENTS {
                return Err(HistoryError::TooManyEvents {
                    max: MAX_HISTORY_EVENTS,
                });
            }
            events.push(event);
        }
        Ok(History { header, events })
    }

    /// Reads the history file at `path`.
    pub fn load(path: &Path) -> Result<History, HistoryError> {
        let file =
            File::open(path).map_err(|e| HistoryError::Io(format!("{}: {e}", path.display())))?;
        Self::read(BufReader::new(file))
    }

    /// Writes the whole history as JSON lines; returns the SHA-256 of the bytes.
    pub fn write<W: Write>(&self, out: W) -> Result<[u8; 32], HistoryError> {
        let mut recorder = Recorder::new(out, &self.header)?;
        for e in &self.events {
            recorder.record(e)?;
        }
        Ok(recorder.finish()?.1)
    }

    /// The JSON-lines bytes of the whole history.
    pub fn to_jsonl(&self) -> Result<Vec<u8>, HistoryError> {
        let mut out = Vec::new();
        self.write(&mut out)?;
        Ok(out)
    }
}
