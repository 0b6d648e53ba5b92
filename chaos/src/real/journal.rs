//! The history of one scenario, written as it happens by every task of the
//! run (clients, samplers, the fault schedule) through one lock. Times are
//! the harness host's wall clock, which on one machine is also every
//! validator's clock (apart from an injected skew).

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Mutex;

use neuroshard_chaos::history::{Event, Fault, Header, Heal, HistoryError, Recorder};

use super::error::RealError;

/// Milliseconds since the Unix epoch on this host.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

struct Inner {
    recorder: Option<Recorder<BufWriter<File>>>,
    /// The first write error; later events are dropped and the run fails.
    error: Option<HistoryError>,
    next_fault: u32,
}

pub struct Journal {
    inner: Mutex<Inner>,
}

impl Journal {
    /// Creates `path` and writes the header.
    pub fn create(path: &Path, header: &Header) -> Result<Self, RealError> {
        let file = File::create(path).map_err(RealError::io(path))?;
        let recorder = Recorder::new(BufWriter::new(file), header)?;
        Ok(Self {
            inner: Mutex::new(Inner {
                recorder: Some(recorder),
                error: None,
                next_fault: 1,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panicking writer leaves a history that is still line-complete.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record(&self, event: Event) {
        let mut inner = self.lock();
        if inner.error.is_some() {
            return;
        }
        if let Some(r) = inner.recorder.as_mut() {
            if let Err(e) = r.record(&event) {
                inner.error = Some(e);
            }
        }
    }

    /// Records a fault now; returns its id for the heal.
    pub fn fault(&self, fault: &str, targets: Vec<u32>, detail: String) -> u32 {
        let id = {
            let mut inner = self.lock();
            let id = inner.next_fault;
            inner.next_fault += 1;
            id
        };
        self.record(Event::Fault(Fault {
            time_ms: now_ms(),
            id,
            fault: fault.to_owned(),
            targets,
            detail,
        }));
        id
    }

    pub fn heal(&self, id: u32, detail: String) {
        self.record(Event::Heal(Heal {
            time_ms: now_ms(),
            id,
            detail,
        }));
    }

    /// Flushes the file; the first error of the whole run, if any.
    pub fn finish(&self) -> Result<(), RealError> {
        let mut inner = self.lock();
        if let Some(e) = inner.error.take() {
            return Err(e.into());
        }
        if let Some(r) = inner.recorder.take() {
            r.finish()?;
        }
        Ok(())
    }
}
