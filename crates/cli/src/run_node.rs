//! `neuroshard node`: runs one validator until SIGTERM or Ctrl-C, then shuts
//! down gracefully; exits non-zero if Raft stops on a fatal error (listeners, ticker, Raft, final sync of the store).

use std::path::Path;

use neuroshard_node::{Node, NodeConfig};

pub async fn run(config_path: &Path, recover: bool) -> anyhow::Result<()> {
    let config = NodeConfig::load(config_path)?;
    raise_fd_limit(&config);
    let node = Node::start_recovering(&config, recover).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let fatal = tokio::select! {
        _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); None }
        _ = tokio::signal::ctrl_c() => { tracing::info!("interrupt: shutting down"); None }
        e = node.fatal() => { tracing::error!(error = %e, "raft stopped: exiting"); Some(e) }
    };
    node.shutdown().await;
    match fatal {
        None => Ok(()),
        Some(e) => Err(anyhow::anyhow!("raft stopped with a fatal error: {e}")),
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
