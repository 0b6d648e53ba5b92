//! A per-command trace of the write path's hand-offs, for diagnosis only.
//!
//! With `NEUROSHARD_HOP_TRACE=<dir>` in its environment, every process
//! (validators and the `bench run` load generator) appends one line per
//! event to `<dir>/<pid>.trace`: `<pid> <event> <value> <µs>`, where `µs`
//! is `CLOCK_MONOTONIC`, shared by all processes of the machine, so one
//! command can be followed from the client through the leader, the
//! followers and back. `bench/hops` runs a 1-outstanding bench with it and
//! prints the median time of every hand-off (BENCHMARKS.md, "One
//! command's hand-offs"). Without the variable a mark is one atomic load.
//! For benchmarks only: on, the files grow with every command and every
//! heartbeat, and the validators of one process (the simulation) share a
//! file.
//!
//! Events (value in brackets): `C_send`/`C_recv` the load generator
//! around one command; `S_recv`/`S_done` the API's Submit handler;
//! `SIG_done` its signature check; `ADM_done` admission; `FW_send`/
//! `FW_back` a follower forwarding to the leader, `FW_recv`/`FW_done` the
//! leader serving it; `P_write` [commands] the leader proposing an entry,
//! `P_applied` [index] its answer; `LA` [index] the log store's append,
//! `LA_w` its write, `GC_start` [requests]/`GC_end` the group-commit
//! thread's sync and `SY_0`/`SY_flushed`/`SY_synced`/`SY_dirs` its steps
//! (sled's flush, the fdatasync, the directory check); `PV_start`
//! [commands]/`PV_end` the signature checks of appended commands;
//! `AE_recv`/`AE_raft`/`AE_done` [last index or 0] a follower serving
//! AppendEntries; `RD` [start]/`RD_end` [entries] log reads; `SC` the
//! committed index saved; `SM_apply`/`SM_done` [index] apply;
//! `CP_start`/`CP_end` [index] a checkpoint's capture (inside apply);
//! `CX_start`/`CX_end` [index] checking received checkpoint shares;
//! `SB_start` [bytes]/`SB_end` storing a built snapshot.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

type Sink = Mutex<std::io::BufWriter<std::fs::File>>;

static SINK: OnceLock<Option<Sink>> = OnceLock::new();

/// Records `event` with `value` now, if tracing is on.
pub fn mark(event: &str, value: u64) {
    let sink = SINK.get_or_init(|| {
        let dir = std::env::var_os("NEUROSHARD_HOP_TRACE")?;
        let path = std::path::Path::new(&dir).join(format!("{}.trace", std::process::id()));
        // A file of its own: never one that exists (another process's, or
        // a link someone put there).
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => Some(Mutex::new(std::io::BufWriter::new(f))),
            Err(e) => {
                eprintln!(
                    "neuroshard: hop trace off: cannot create {}: {e}",
                    path.display()
                );
                None
            }
        }
    });
    if let Some(sink) = sink {
        let now = monotonic_micros();
        let mut w = sink.lock().unwrap_or_else(|p| p.into_inner());
        // The events of a command are few; flushing each keeps the file
        // whole when a validator is stopped by a signal.
        let _ = writeln!(w, "{} {event} {value} {now}", std::process::id());
        let _ = w.flush();
    }
}

fn monotonic_micros() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always
    // exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}
