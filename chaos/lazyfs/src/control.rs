//! The control socket: one command a line over a Unix stream socket, one
//! answer a line.
//!
//! | command | answer |
//! |---|---|
//! | `status` | `ok crashed=0 lying=0 armed=0 pending_bytes=N pending_files=N written=N synced=N fsyncs=N crashes=N dropped_total=N` |
//! | `arm K` | `ok armed=K`: crash inside the K-th write from now |
//! | `crash` | `ok dropped_bytes=N dropped_files=N dropped_truncations=N` (a crash already armed or done: what it dropped) |
//! | `restart` | `ok` |
//! | `lie 1` / `lie 0` | `ok lying=1`: fsync/fdatasync succeed and make nothing durable (test of the test) / `ok lying=0` |
//!
//! Anything else: `error <what>`.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::fs::Shared;

/// Invalidates the kernel's caches of an inode (attributes and pages).
pub type Invalidate = Box<dyn Fn(u64) + Send + Sync>;

/// Answers one command.
pub fn answer(shared: &Shared, line: &str, invalidate: &Invalidate) -> String {
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("status"), None, None) => {
            let s = shared.status();
            format!(
                "ok crashed={} lying={} armed={} pending_bytes={} pending_files={} written={} synced={} fsyncs={} crashes={} dropped_total={}",
                u8::from(s.crashed),
                u8::from(s.lying),
                s.armed.unwrap_or(0),
                s.pending_bytes,
                s.pending_files,
                s.stats.written,
                s.stats.synced,
                s.stats.fsyncs,
                s.stats.crashes,
                s.stats.dropped_total
            )
        }
        (Some("arm"), Some(k), None) => match k.parse::<u64>() {
            Ok(k) => {
                shared.arm(k);
                format!("ok armed={k}")
            }
            Err(e) => format!("error arm {k}: {e}"),
        },
        (Some("lie"), Some(on @ ("0" | "1")), None) => {
            shared.lie(on == "1");
            format!("ok lying={on}")
        }
        (Some("crash"), None, None) => {
            let d = shared.crash();
            format!(
                "ok dropped_bytes={} dropped_files={} dropped_truncations={}",
                d.bytes, d.files, d.truncations
            )
        }
        (Some("restart"), None, None) => {
            for ino in shared.restart() {
                invalidate(ino);
            }
            "ok".to_owned()
        }
        _ => format!("error unknown command {line:?}"),
    }
}

/// Serves `listener` until the process ends (one thread per connection).
pub fn serve(listener: UnixListener, shared: Arc<Shared>, invalidate: Arc<Invalidate>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let shared = shared.clone();
        let invalidate = invalidate.clone();
        std::thread::spawn(move || {
            let Ok(read) = stream.try_clone() else { return };
            let mut out = stream;
            for line in BufReader::new(read).lines() {
                let Ok(line) = line else { return };
                let reply = answer(&shared, &line, &invalidate);
                if writeln!(out, "{reply}").is_err() {
                    return;
                }
            }
        });
    }
}

/// Sends one command to the socket at `path` and returns its answer
/// (`error …` answers become errors).
pub fn request(path: &Path, command: &str) -> io::Result<String> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    writeln!(stream, "{command}")?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    let line = line.trim_end().to_owned();
    if line.starts_with("ok") {
        Ok(line)
    } else {
        Err(io::Error::other(format!("{command}: {line}")))
    }
}

/// The `key=value` numbers of an answer.
pub fn fields(answer: &str) -> BTreeMap<String, u64> {
    answer
        .split_whitespace()
        .filter_map(|w| {
            let (k, v) = w.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}
