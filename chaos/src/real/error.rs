//! Why a real-process run could not be carried out (as opposed to an
//! invariant violation, which the checkers report).

use neuroshard_chaos::history::HistoryError;

#[derive(Debug, thiserror::Error)]
pub enum RealError {
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    #[error("{what} did not happen within {waited_ms} ms; last seen: {last}")]
    Timeout {
        what: String,
        waited_ms: u64,
        last: String,
    },
    #[error("setup command {command} was refused: {message}")]
    SetupRefused { command: String, message: String },
    #[error("history: {0}")]
    History(#[from] HistoryError),
    #[error("interrupted by {0}; cleaning up")]
    Interrupted(&'static str),
}

impl RealError {
    pub fn invalid(what: impl Into<String>, message: impl std::fmt::Display) -> Self {
        RealError::Invalid {
            what: what.into(),
            message: message.to_string(),
        }
    }

    pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> RealError + '_ {
        move |source| RealError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
