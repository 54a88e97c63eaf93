//! A shared PID namespace for pods that ask for one (CRI PID mode POD): the monitor forks a
//! tiny init that becomes PID 1 of a new PID namespace, reaps what is reparented to it, and
//! lives until the pod ends. Its namespace is bind-mounted at `ns/pid`, so containers join it
//! by path like the other pod namespaces. (A PID namespace dies with its PID 1, so unlike the
//! network namespace it cannot be pinned by a mount alone.)
//!
//! Must run while the caller is single-threaded: it forks.

use std::os::fd::AsRawFd;
use std::path::Path;

use nix::mount::MsFlags;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use super::pin::ns_path;

extern "C" fn on_sigchld(_: libc::c_int) {}

/// Where the pod init's pid is recorded, so the daemon can end it even without the monitor.
pub const PID_FILE: &str = "pod-init.pid";
const COMM: &str = "crust-pod-init";

/// Ends the pod init recorded in `pod_dir` (and so every process in its PID namespace), if it
/// is still the process we started (checked by name, against pid reuse).
pub fn stop(pod_dir: &Path) {
    let Ok(pid) = std::fs::read_to_string(pod_dir.join(PID_FILE)) else {
        return;
    };
    let Ok(pid) = pid.trim().parse::<i32>() else {
        return;
    };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() == COMM {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    let _ = std::fs::remove_file(pod_dir.join(PID_FILE));
}

/// Starts the pod init and pins its PID namespace at `pod_dir/ns/pid`. Returns its pid.
pub fn start(pod_dir: &Path) -> std::io::Result<i32> {
    let target = ns_path(pod_dir, "pid");
    if !target.exists() {
        std::fs::File::create(&target)?;
    }
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
    // SAFETY: single-threaded caller (the monitor before its runtime starts); the children only
    // make syscalls and never return into the monitor's code.
    match unsafe { nix::unistd::fork() }.map_err(std::io::Error::from)? {
        ForkResult::Child => {
            drop(r);
            let code = match unshare_and_fork_init(&w) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            // SAFETY: leave the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(w);
            let status = waitpid(child, None).map_err(std::io::Error::from)?;
            let mut buf = [0u8; 4];
            let n = nix::unistd::read(r.as_raw_fd(), &mut buf).map_err(std::io::Error::from)?;
            if !matches!(status, WaitStatus::Exited(_, 0)) || n != 4 {
                return Err(std::io::Error::other(format!(
                    "starting the pod init failed ({status:?})"
                )));
            }
            let pid = i32::from_ne_bytes(buf);
            nix::mount::mount(
                Some(format!("/proc/{pid}/ns/pid").as_str()),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(std::io::Error::from)?;
            crate::fsutil::write_atomic_unsynced(
                &pod_dir.join(PID_FILE),
                pid.to_string().as_bytes(),
            )?;
            Ok(pid)
        }
    }
}

fn unshare_and_fork_init(report: &std::os::fd::OwnedFd) -> nix::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID)?;
    // SAFETY: still single-threaded; the grandchild runs `init_loop` and never returns.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Child => init_loop(),
        ForkResult::Parent { child } => {
            nix::unistd::write(report, &child.as_raw().to_ne_bytes())?;
            Ok(())
        }
    }
}

/// PID 1 of the pod: no fds of the monitor, a SIGCHLD handler so `pause` wakes, and reaping.
fn init_loop() -> ! {
    // SAFETY: close_range on fds this process inherited and does not use; the readiness pipe
    // and the monitor's log must not be held open by the pod init.
    unsafe { libc::syscall(libc::SYS_close_range, 3, u32::MAX, 0) };
    let _ = nix::unistd::setsid();
    // SAFETY: prctl with a static NUL-terminated name.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"crust-pod-init".as_ptr(), 0, 0, 0) };
    debug_assert_eq!(COMM, "crust-pod-init");
    // SAFETY: installs a handler that does nothing (async-signal-safe by construction).
    unsafe { libc::signal(libc::SIGCHLD, on_sigchld as *const () as libc::sighandler_t) };
    loop {
        // SAFETY: pause only waits for a signal.
        unsafe { libc::pause() };
        while let Ok(st) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            if st == WaitStatus::StillAlive {
                break;
            }
        }
    }
}
