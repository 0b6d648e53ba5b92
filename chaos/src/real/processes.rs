//! The validators as real `neuroshard node` processes: started in their
//! network namespace (or on loopback), `kill -9`ed, paused with SIGSTOP,
//! resumed with SIGCONT, restarted with a skewed clock. Dropping
//! [`Validators`] kills every validator still running, paused ones
//! included, so nothing outlives a run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use neuroshard_node::NodeConfig;

use super::error::RealError;

/// `RUST_LOG` of the validators unless `NEUROSHARD_NODE_LOG` is set:
/// openraft's elections and leader changes are logged (a few tens of KB
/// per scenario), so an anomaly in a table can be explained afterwards.
pub const NODE_LOG: &str = "info,openraft=info,sled=warn,h2=warn,tower=warn";

pub struct Validators {
    binary: PathBuf,
    configs: Vec<PathBuf>,
    /// Command prefix per validator (`ip netns exec <ns>`), empty on loopback.
    launch: Vec<Vec<String>>,
    children: Vec<Option<Child>>,
    paused: Vec<bool>,
    /// Soft `RLIMIT_NOFILE` the validators start with (default: this
    /// process's own).
    open_files: Option<u64>,
}

fn signal(pid: u32, sig: libc::c_int) -> Result<(), RealError> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| RealError::invalid("pid", format!("{pid} does not fit pid_t")))?;
    // SAFETY: kill(2) on the pid of a child process this struct owns and has
    // not reaped yet, so the pid cannot have been reused.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc != 0 {
        return Err(RealError::Io {
            path: format!("kill({pid}, {sig})"),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

impl Validators {
    pub fn new(binary: &Path, configs: Vec<PathBuf>, launch: Vec<Vec<String>>) -> Self {
        let n = configs.len();
        Self {
            binary: binary.to_path_buf(),
            configs,
            launch,
            children: (0..n).map(|_| None).collect(),
            paused: vec![false; n],
            open_files: None,
        }
    }

    /// Validators started from now on get this soft `RLIMIT_NOFILE` (the
    /// hostile suite raises its own limit for its attackers, and starts the
    /// validators with the limit the environment gave it).
    pub fn set_open_files(&mut self, soft: u64) {
        self.open_files = Some(soft);
    }

    pub fn len(&self) -> usize {
        self.configs.len()
    }

    /// Starts validator `i`; its output is appended to `node.log` beside
    /// its config.
    // rlim_t is u64 here but not on every target.
    #[allow(clippy::unnecessary_cast)]
    pub fn spawn(&mut self, i: usize) -> Result<(), RealError> {
        let config = &self.configs[i];
        let log_path = config.with_file_name("node.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(RealError::io(&log_path))?;
        let err_log = log.try_clone().map_err(RealError::io(&log_path))?;
        let binary = self.binary.display().to_string();
        let config_arg = config.display().to_string();
        let mut argv: Vec<String> = self.launch[i].clone();
        argv.extend([binary, "node".into(), "--config".into(), config_arg]);
        let mut command = Command::new(&argv[0]);
        if let Some(soft) = self.open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec the closure only calls
            // getrlimit/setrlimit, which are async-signal-safe, on the
            // child's own limits.
            unsafe {
                command.pre_exec(move || {
                    let mut lim = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                        lim.rlim_cur = (soft as libc::rlim_t).min(lim.rlim_max);
                        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
                    }
                    Ok(())
                });
            }
        }
        let child = command
            .args(&argv[1..])
            .env(
                "RUST_LOG",
                std::env::var("NEUROSHARD_NODE_LOG").unwrap_or_else(|_| NODE_LOG.to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .spawn()
            .map_err(|source| RealError::Spawn {
                command: argv.join(" "),
                source,
            })?;
        self.children[i] = Some(child);
        self.paused[i] = false;
        Ok(())
    }

    /// The process id of validator `i`, while it runs (the hostile suite
    /// reads its peak RSS from /proc).
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.children[i].as_ref().map(Child::id)
    }

    /// `kill -9`: no chance to flush or close anything.
    pub fn kill9(&mut self, i: usize) -> Result<(), RealError> {
        if let Some(mut child) = self.children[i].take() {
            child.kill().map_err(RealError::io(Path::new("kill -9")))?;
            child.wait().map_err(RealError::io(Path::new("wait")))?;
        }
        self.paused[i] = false;
        Ok(())
    }

    /// SIGSTOP: the process stays, silent, holding its connections.
    pub fn pause(&mut self, i: usize) -> Result<(), RealError> {
        if let Some(child) = &self.children[i] {
            signal(child.id(), libc::SIGSTOP)?;
            self.paused[i] = true;
        }
        Ok(())
    }

    /// SIGCONT.
    pub fn resume(&mut self, i: usize) -> Result<(), RealError> {
        if let Some(child) = &self.children[i] {
            signal(child.id(), libc::SIGCONT)?;
        }
        self.paused[i] = false;
        Ok(())
    }

    /// Rewrites validator `i`'s `ticks.clock_offset_ms` (takes effect at its
    /// next start).
    pub fn set_clock_offset(&self, i: usize, offset_ms: i64) -> Result<(), RealError> {
        let path = &self.configs[i];
        let text = std::fs::read_to_string(path).map_err(RealError::io(path))?;
        let mut config = NodeConfig::parse(&text)
            .map_err(|e| RealError::invalid(path.display().to_string(), e))?;
        config.ticks.clock_offset_ms = offset_ms;
        let body = config
            .to_toml()
            .map_err(|e| RealError::invalid(path.display().to_string(), e))?;
        std::fs::write(path, body).map_err(RealError::io(path))
    }

    /// Whether any validator exited by itself (a crash), with its status.
    pub fn exited(&mut self) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        for (i, slot) in self.children.iter_mut().enumerate() {
            if let Some(child) = slot {
                if let Ok(Some(status)) = child.try_wait() {
                    out.push((i, status.to_string()));
                    *slot = None;
                }
            }
        }
        out
    }

    /// Kills every validator (resuming paused ones first, so the kill is
    /// delivered at once).
    pub fn kill_all(&mut self) {
        for i in 0..self.children.len() {
            if self.paused[i] {
                let _ = self.resume(i);
            }
            let _ = self.kill9(i);
        }
    }
}

impl Drop for Validators {
    fn drop(&mut self) {
        self.kill_all();
    }
}
