//! A committee of real `neuroshard node` child processes on loopback, for
//! `neuroshard bench`, the demo and the end-to-end tests: start,
//! `kill -9`, SIGTERM, wipe a data dir, restart, and wait for conditions.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use neuroshard_node::{ApiClient, NodeConfig, NodeStatus};

use crate::keygen::Ceremony;

/// `RUST_LOG` of the child validators unless `NEUROSHARD_NODE_LOG` is set
/// (or the cluster's extra environment sets `RUST_LOG`).
pub const DEFAULT_NODE_LOG: &str = "info,openraft=warn,sled=warn,h2=warn,tower=warn";

/// How long a status call may take before the node counts as unreachable.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("starting {binary} for validator {node}: {source}")]
    Spawn {
        binary: String,
        node: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} did not happen within {waited:?}; last seen: {last}")]
    Timeout {
        what: String,
        waited: Duration,
        last: String,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub struct LocalCluster {
    pub ceremony: Ceremony,
    pub binary: PathBuf,
    children: Vec<Option<Child>>,
    /// Extra environment of every validator started.
    env: Vec<(String, String)>,
    /// Extra arguments of every validator started, after `node --config …`.
    args: Vec<String>,
}

impl LocalCluster {
    /// Starts every validator of `ceremony` as a child process of `binary`.
    pub fn start(binary: &Path, ceremony: Ceremony) -> Result<Self, ClusterError> {
        Self::start_with_env(binary, ceremony, Vec::new())
    }

    /// [`LocalCluster::start`] with extra environment variables for every
    /// validator (also when restarted).
    pub fn start_with_env(
        binary: &Path,
        ceremony: Ceremony,
        env: Vec<(String, String)>,
    ) -> Result<Self, ClusterError> {
        Self::start_with(binary, ceremony, env, Vec::new())
    }

    /// [`LocalCluster::start_with_env`] with extra arguments of `neuroshard
    /// node` for every validator (also when restarted).
    pub fn start_with(
        binary: &Path,
        ceremony: Ceremony,
        env: Vec<(String, String)>,
        args: Vec<String>,
    ) -> Result<Self, ClusterError> {
        let n = ceremony.node_configs.len();
        let mut cluster = Self {
            ceremony,
            binary: binary.to_path_buf(),
            children: (0..n).map(|_| None).collect(),
            env,
            args,
        };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    pub fn len(&self) -> usize {
        self.children.len()
    }

    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// (Re)starts validator `i`; its output is appended to `node.log` beside
    /// its config.
    pub fn spawn(&mut self, i: usize) -> Result<(), ClusterError> {
        self.spawn_with(i, &[])
    }

    /// Restarts validator `i` with `--recover` (its data directory was lost
    /// or rolled back).
    pub fn spawn_recovering(&mut self, i: usize) -> Result<(), ClusterError> {
        self.spawn_with(i, &["--recover"])
    }

    /// Starts validator `i` with extra arguments after `node --config …`.
    pub fn spawn_with(&mut self, i: usize, extra: &[&str]) -> Result<(), ClusterError> {
        let config = &self.ceremony.node_configs[i];
        let log_path = config.with_file_name("node.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let child = Command::new(&self.binary)
            .arg("node")
            .arg("--config")
            .arg(config)
            .args(&self.args)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("NEUROSHARD_NODE_LOG")
                    .unwrap_or_else(|_| DEFAULT_NODE_LOG.to_owned()),
            )
            // Extra environment last: it may set `RUST_LOG` itself.
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|source| ClusterError::Spawn {
                binary: self.binary.display().to_string(),
                node: i,
                source,
            })?;
        self.children[i] = Some(child);
        Ok(())
    }

    /// `kill -9`: no chance to flush or close anything.
    pub fn kill(&mut self, i: usize) -> Result<(), ClusterError> {
        if let Some(mut child) = self.children[i].take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then wait for a graceful exit (SIGKILL after `grace`).
    /// Returns whether the validator exited by itself with status 0 (true
    /// also when it was not running).
    pub fn terminate(&mut self, i: usize, grace: Duration) -> Result<bool, ClusterError> {
        let Some(mut child) = self.children[i].take() else {
            return Ok(true);
        };
        let pid = child.id() as libc::pid_t;
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status.success());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill()?;
        child.wait()?;
        Ok(false)
    }

    /// The process id of validator `i`, if it was started and not reaped.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.children[i].as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self, i: usize) -> bool {
        match &mut self.children[i] {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits up to `timeout` for validator `i` to exit by itself; its exit
    /// status (None: still running, or not started).
    pub async fn wait_exit(
        &mut self,
        i: usize,
        timeout: Duration,
    ) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(child) = &mut self.children[i] {
                if let Ok(Some(status)) = child.try_wait() {
                    self.children[i] = None;
                    return Some(status);
                }
            } else {
                return None;
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Validator `i`'s log so far (`node.log` beside its config).
    pub fn node_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.ceremony.node_configs[i].with_file_name("node.log"))
            .unwrap_or_default()
    }

    /// The path of validator `i`'s data directory.
    pub fn data_dir(&self, i: usize) -> Result<PathBuf, ClusterError> {
        let config = NodeConfig::load(&self.ceremony.node_configs[i])
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(config.data_dir)
    }

    /// Deletes validator `i`'s data directory (it must be stopped).
    pub fn wipe(&self, i: usize) -> Result<(), ClusterError> {
        let config = NodeConfig::load(&self.ceremony.node_configs[i])
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        match std::fs::remove_dir_all(&config.data_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.ceremony.dir.join("ca.pem")
    }

    pub async fn client(&self, i: usize) -> Result<ApiClient, neuroshard_node::ClientError> {
        ApiClient::connect(&self.ceremony.api_endpoints[i], &self.ca(), STATUS_TIMEOUT).await
    }

    pub async fn status(&self, i: usize) -> Option<NodeStatus> {
        let mut c = self.client(i).await.ok()?;
        tokio::time::timeout(STATUS_TIMEOUT, c.status())
            .await
            .ok()?
            .ok()
    }

    /// Statuses of every running-or-not validator (None: unreachable).
    pub async fn statuses(&self) -> Vec<Option<NodeStatus>> {
        let mut out = Vec::with_capacity(self.len());
        for i in 0..self.len() {
            out.push(self.status(i).await);
        }
        out
    }

    /// Waits until some reachable validator reports itself leader and the
    /// others that are reachable agree; returns its id and term.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<(u64, u64), ClusterError> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < timeout {
            let statuses = self.statuses().await;
            let leaders: Vec<&NodeStatus> = statuses
                .iter()
                .flatten()
                .filter(|s| s.role == "leader")
                .collect();
            if let [leader] = leaders.as_slice() {
                let agree = statuses
                    .iter()
                    .flatten()
                    .filter(|s| s.leader == Some(leader.node_id))
                    .count();
                if agree * 2 > self.len() {
                    return Ok((leader.node_id, leader.term));
                }
            }
            last = format!("{statuses:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(ClusterError::Timeout {
            what: "a leader".into(),
            waited: timeout,
            last,
        })
    }

    /// Waits until every validator in `nodes` reports the same applied
    /// index and state hash at the same moment; returns them.
    pub async fn wait_for_agreement(
        &self,
        nodes: &[usize],
        timeout: Duration,
    ) -> Result<(u64, String), ClusterError> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < timeout {
            let mut seen = Vec::new();
            for &i in nodes {
                seen.push(
                    self.status(i)
                        .await
                        .map(|s| (s.applied_index.unwrap_or(0), s.state_hash)),
                );
            }
            if let Some(Some(first)) = seen.first() {
                if seen.iter().all(|s| s.as_ref() == Some(first)) {
                    return Ok(first.clone());
                }
            }
            last = format!("{seen:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(ClusterError::Timeout {
            what: format!("agreement of validators {nodes:?}"),
            waited: timeout,
            last,
        })
    }

    /// Stops every validator with SIGTERM; returns the ids of those that did
    /// not exit gracefully (status 0 within 10 s).
    pub fn stop_all(&mut self) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| !matches!(self.terminate(i, Duration::from_secs(10)), Ok(true)))
            .collect()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
