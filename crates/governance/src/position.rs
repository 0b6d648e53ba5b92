//! Where a command sits in the replicated log.
//!
//! The leader batches client commands into one log entry
//! ([`crate::Entry::Commands`]), so a log index alone no longer names a
//! command: its **position** is the entry's log index and the command's
//! offset inside it. Positions are totally ordered as the commands were
//! applied: by log index, then by offset. A tick or a certificate entry is
//! never batched (a batch holds client commands only), so it has offset 0,
//! as has a command logged alone (`Entry::Command`, log format 2).
//!
//! The API, receipts, remembered outcomes and certificate payloads all
//! carry this one type (or its two numbers); nothing else defines it.

use serde::{Deserialize, Serialize};

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Position {
    /// Index of the log entry that carried the command.
    pub log_index: u64,
    /// The command's place in that entry, from 0.
    pub offset: u32,
}

impl Position {
    /// The position of a whole entry (a tick, a certificate, a command
    /// logged alone): offset 0.
    pub const fn entry(log_index: u64) -> Self {
        Self {
            log_index,
            offset: 0,
        }
    }

    pub const fn new(log_index: u64, offset: u32) -> Self {
        Self { log_index, offset }
    }
}

/// `log_index.offset`, e.g. `1042.7`.
impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.log_index, self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_entry_then_offset() {
        let mut v = vec![
            Position::new(3, 0),
            Position::new(2, 5),
            Position::entry(2),
            Position::new(2, 1),
        ];
        v.sort();
        assert_eq!(
            v,
            vec![
                Position::new(2, 0),
                Position::new(2, 1),
                Position::new(2, 5),
                Position::new(3, 0)
            ]
        );
        assert_eq!(Position::new(1042, 7).to_string(), "1042.7");
    }
}
