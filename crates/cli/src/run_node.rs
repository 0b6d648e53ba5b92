//! `neuroshard node`: runs one validator until SIGTERM or Ctrl-C, then shuts
//! down gracefully; exits non-zero if Raft stops on a fatal error (listeners, ticker, Raft, final sync of the store).

use std::path::Path;

use neuroshard_node::{Node, NodeConfig};

pub async fn run(config_path: &Path, recover: bool) -> anyhow::Result<()> {
    let config = NodeConfig::load(config_path)?;
    raise_fd_limit(&config);
    let node = Node::start_recovering(&config, recover).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let counters = std::env::var_os(COUNTERS_ENV)
        .is_some()
        .then(|| config_path.with_file_name(COUNTERS_FILE));
    let mut usr1 = match counters {
        Some(_) => Some(tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::user_defined1(),
        )?),
        None => None,
    };
    let mut requests = 0u64;
    let fatal = loop {
        let usr1_received = async {
            match usr1.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break None }
            _ = tokio::signal::ctrl_c() => { tracing::info!("interrupt: shutting down"); break None }
            e = node.fatal() => { tracing::error!(error = %e, "raft stopped: exiting"); break Some(e) }
            Some(()) = usr1_received => {
                requests += 1;
                if let Some(path) = &counters {
                    write_counters(
                        path,
                        requests,
                        node.sync_count().unwrap_or(0),
                        neuroshard_governance::signature::verification_count(),
                    );
                }
            }
        }
    };
    node.shutdown().await;
    match fatal {
        None => Ok(()),
        Some(e) => Err(anyhow::anyhow!("raft stopped with a fatal error: {e}")),
    }
}

/// With this environment variable set (to anything), SIGUSR1 makes the
/// validator write its counters to [`COUNTERS_FILE`] beside its node.toml:
/// `neuroshard bench run` reads them at every round boundary. Unset (as in
/// production), SIGUSR1 keeps its default action.
pub const COUNTERS_ENV: &str = "NEUROSHARD_BENCH_COUNTERS";

/// The counters file: one line `<requests answered> <store syncs>`, where
/// a store sync is one `DurableDb::sync` (a flush and an fdatasync).
pub const COUNTERS_FILE: &str = "counters";

fn write_counters(path: &Path, requests: u64, syncs: u64, verifications: u64) {
    let tmp = path.with_extension("tmp");
    let written = std::fs::write(&tmp, format!("{requests} {syncs} {verifications}\n"))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the counters");
    }
}

/// File descriptors a validator needs beyond its listeners' connections:
/// the store, outgoing peer connections, logs.
const FD_HEADROOM: u64 = 512;

/// Raises the soft limit on open files to the hard limit (many systems
/// start processes at 1024) and warns when even that cannot hold every
/// connection the listeners admit: past it, accept fails and the listener
/// backs off instead of refusing politely.
fn raise_fd_limit(config: &NodeConfig) {
    let need = (config.api_listener.max_connections
        + config.peer_listener.max_connections
        + config.peer_listener.reserved_for_committee) as u64
        + FD_HEADROOM;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if got != 0 {
        tracing::warn!("cannot read the open-file limit (RLIMIT_NOFILE)");
        return;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
    let have = lim.rlim_cur as u64;
    if have < need {
        tracing::warn!(
            open_file_limit = have,
            needed = need,
            "the open-file limit is below api_listener.max_connections + peer_listener.max_connections + peer_listener.reserved_for_committee + {FD_HEADROOM}: raise it (ulimit -n, LimitNOFILE=) or lower those keys"
        );
    } else {
        tracing::debug!(open_file_limit = have, needed = need, "open-file limit");
    }
}
