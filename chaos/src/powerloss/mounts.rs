//! One `neuroshard-lazyfs` process per validator, mounted on its data
//! directory, and the driver's side of their control sockets
//! (chaos/lazyfs/src/control.rs). Dropping [`Mounts`] stops every lazyfs
//! (SIGTERM: it unmounts; then SIGKILL and a lazy unmount for anything
//! left), so no mount outlives a run. Stop the validators first.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::real::error::RealError;

/// Longest a lazyfs may take to mount and answer its socket.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Mount {
    pub mountpoint: PathBuf,
    pub socket: PathBuf,
    child: Option<Child>,
}

pub struct Mounts {
    pub mounts: Vec<Mount>,
}

/// One request to a control socket; `Err` for no answer or an `error` one.
pub fn request(socket: &Path, command: &str) -> Result<BTreeMap<String, u64>, RealError> {
    let io = |e: std::io::Error| RealError::Io {
        path: format!("{} ({command})", socket.display()),
        source: e,
    };
    let mut stream = UnixStream::connect(socket).map_err(io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    writeln!(stream, "{command}").map_err(io)?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).map_err(io)?;
    let line = line.trim_end();
    if !line.starts_with("ok") {
        return Err(RealError::invalid(
            format!("lazyfs {} {command}", socket.display()),
            line,
        ));
    }
    Ok(line
        .split_whitespace()
        .filter_map(|w| {
            let (k, v) = w.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect())
}

impl Mounts {
    /// Moves each `data_dirs[i]` aside as its backing directory and mounts
    /// a lazyfs over it at the original path. `pids` records every process
    /// started (chaos/powerloss's trap kills what a killed driver left).
    pub fn start(
        lazyfs: &Path,
        data_dirs: &[PathBuf],
        work: &Path,
        pids: &Path,
    ) -> Result<Self, RealError> {
        let mut this = Self { mounts: Vec::new() };
        for (i, data) in data_dirs.iter().enumerate() {
            let backing = data.with_extension("backing");
            std::fs::rename(data, &backing).map_err(RealError::io(data))?;
            std::fs::create_dir(data).map_err(RealError::io(data))?;
            let socket = work.join(format!("lazyfs-{i}.sock"));
            let log_path = work.join(format!("lazyfs-{i}.log"));
            let log = std::fs::File::create(&log_path).map_err(RealError::io(&log_path))?;
            let err = log.try_clone().map_err(RealError::io(&log_path))?;
            let child = Command::new(lazyfs)
                .arg("--backing")
                .arg(&backing)
                .arg("--mount")
                .arg(data)
                .arg("--control")
                .arg(&socket)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err)
                .spawn()
                .map_err(|source| RealError::Spawn {
                    command: format!("{} --mount {}", lazyfs.display(), data.display()),
                    source,
                })?;
            record_pid(pids, child.id());
            this.mounts.push(Mount {
                mountpoint: data.clone(),
                socket,
                child: Some(child),
            });
        }
        for (i, m) in this.mounts.iter_mut().enumerate() {
            let started = Instant::now();
            loop {
                if request(&m.socket, "status").is_ok() {
                    break;
                }
                if let Some(child) = m.child.as_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        let log = std::fs::read_to_string(work.join(format!("lazyfs-{i}.log")))
                            .unwrap_or_default();
                        return Err(RealError::invalid(
                            format!("lazyfs {i}"),
                            format!("exited ({status}) before mounting: {}", log.trim()),
                        ));
                    }
                }
                if started.elapsed() > MOUNT_TIMEOUT {
                    return Err(RealError::Timeout {
                        what: format!("lazyfs {i} mounted"),
                        waited_ms: started.elapsed().as_millis() as u64,
                        last: "its control socket does not answer".into(),
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(this)
    }

    pub fn len(&self) -> usize {
        self.mounts.len()
    }

    pub fn request(&self, i: usize, command: &str) -> Result<BTreeMap<String, u64>, RealError> {
        request(&self.mounts[i].socket, command)
    }

    /// Stops every lazyfs: SIGTERM (it unmounts and exits), then SIGKILL
    /// and a lazy unmount for whatever is left.
    pub fn stop(&mut self) {
        for m in &self.mounts {
            if let Some(child) = &m.child {
                if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                    // SAFETY: kill(2) on our own unreaped child.
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for m in &mut self.mounts {
            let Some(mut child) = m.child.take() else {
                continue;
            };
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            if is_mounted(&m.mountpoint) {
                if let Ok(path) =
                    std::ffi::CString::new(m.mountpoint.as_os_str().as_encoded_bytes())
                {
                    // SAFETY: umount2(2) with a NUL-terminated path.
                    unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
                }
            }
        }
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `path` is a mount point (listed in /proc/self/mounts).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let want = path.display().to_string();
    mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(want.as_str()))
}

/// Appends `pid` to the run's pid file.
pub fn record_pid(pids: &Path, pid: u32) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(pids)
    {
        let _ = writeln!(f, "{pid}");
    }
}
