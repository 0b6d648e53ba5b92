//! `neuroshard node`: runs one validator until SIGTERM or Ctrl-C, then shuts
//! down gracefully; exits non-zero if Raft stops on a fatal error (listeners, ticker, Raft, final sync of the store).

use std::path::Path;

use neuroshard_node::{Node, NodeConfig};

pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = NodeConfig::load(config_path)?;
    let node = Node::start(&config).await?;
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
