//! `neuroshard-lazyfs`: mounts a lazy filesystem (written bytes stay in
//! memory until fsync/fdatasync) over a backing directory and serves its
//! control socket until SIGTERM/SIGINT, then unmounts.
//!
//! ```sh
//! neuroshard-lazyfs --backing /tmp/b --mount /tmp/m --control /tmp/ctl.sock &
//! echo status | socat - UNIX-CONNECT:/tmp/ctl.sock
//! ```
//!
//! Test-only (chaos/powerloss). Needs /dev/fuse and root (mount(2)) or
//! fusermount3.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use neuroshard_lazyfs::control::{self, Invalidate};
use neuroshard_lazyfs::{LazyFs, Shared};

#[derive(Parser)]
#[command(
    name = "neuroshard-lazyfs",
    about = "Test-only FUSE filesystem: written bytes stay in memory until fsync; a control socket drops them"
)]
struct Args {
    /// The directory that holds the durable bytes.
    #[arg(long)]
    backing: PathBuf,
    /// Where to mount (an existing empty directory).
    #[arg(long)]
    mount: PathBuf,
    /// The control socket to create (control.rs).
    #[arg(long)]
    control: PathBuf,
}

fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a set we own; pthread_sigmask on this
    // thread before any other is spawned, so every thread inherits it and
    // only sigwait receives these signals.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let set = block_signals();
    let shared = match Shared::new(&args.backing) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("neuroshard-lazyfs: {}: {e}", args.backing.display());
            return ExitCode::from(2);
        }
    };
    let mut session = match fuser::Session::new(
        LazyFs::new(shared.clone()),
        &args.mount,
        &neuroshard_lazyfs::config(),
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("neuroshard-lazyfs: mount {}: {e}", args.mount.display());
            return ExitCode::from(2);
        }
    };
    let notifier = session.notifier();
    let invalidate: Arc<Invalidate> = Arc::new(Box::new(move |ino| {
        // Unknown to the kernel (never looked up, or forgotten): nothing
        // cached to drop.
        let _ = notifier.inval_inode(fuser::INodeNo(ino), 0, 0);
    }));
    let _ = std::fs::remove_file(&args.control);
    let listener = match std::os::unix::net::UnixListener::bind(&args.control) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("neuroshard-lazyfs: control {}: {e}", args.control.display());
            let _ = session.unmount();
            return ExitCode::from(2);
        }
    };
    {
        let shared = shared.clone();
        std::thread::spawn(move || control::serve(listener, shared, invalidate));
    }
    let mountpoint = args.mount.clone();
    let socket = args.control.clone();
    std::thread::spawn(move || {
        let mut sig: libc::c_int = 0;
        // SAFETY: waits for one of the signals blocked in every thread.
        unsafe { libc::sigwait(&set, &mut sig) };
        // A lazy unmount cannot fail on a busy mount; the session's loop
        // ends when the kernel lets go of the connection, and if a process
        // still holds a file there, the exit below ends it anyway.
        if let Ok(path) = std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes()) {
            // SAFETY: umount2(2) with a NUL-terminated path.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
        std::thread::sleep(Duration::from_secs(2));
        let _ = std::fs::remove_file(&socket);
        std::process::exit(0);
    });
    println!(
        "neuroshard-lazyfs: {} over {} (control {})",
        args.mount.display(),
        args.backing.display(),
        args.control.display()
    );
    let result = session.run();
    let _ = std::fs::remove_file(&args.control);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("neuroshard-lazyfs: {e}");
            ExitCode::from(1)
        }
    }
}
