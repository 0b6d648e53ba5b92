//! `neuroshard node`: runs one validator until SIGTERM or Ctrl-C, then shuts
//! down gracefully (listeners, ticker, Raft, final sync of the store).

use std::path::Path;

use neuroshard_node::{Node, NodeConfig};

pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = NodeConfig::load(config_path)?;
    let node = Node::start(&config).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
    }
    node.shutdown().await;
    Ok(())
}
