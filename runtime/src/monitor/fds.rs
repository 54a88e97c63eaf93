//! Keeps libcontainer's failures from leaking descriptors into the monitor.
//!
//! When libcontainer cannot start a process (an exec whose command is not in the image, say),
//! it returns an error but leaves the sockets of its internal channels open: four per failed
//! exec, measured, so a probe that keeps failing would run a long-lived monitor out of
//! descriptors. The monitor is single-threaded, so every descriptor that appears while a
//! build runs is that build's; after a failure, the ones it left are closed.

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;

/// The descriptors open in this process.
fn open_fds() -> BTreeSet<i32> {
    let Ok(mut dir) = nix::dir::Dir::open(
        "/proc/self/fd",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    ) else {
        return BTreeSet::new();
    };
    let own = dir.as_raw_fd();
    dir.iter()
        .flatten()
        .filter_map(|e| e.file_name().to_str().ok()?.parse().ok())
        .filter(|fd| *fd != own)
        .collect()
}

/// Runs a libcontainer build; if it fails, closes what it opened and did not close.
pub(super) fn closing_leaks_on_failure<T, E>(build: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    let before = open_fds();
    let result = build();
    if result.is_err() && !before.is_empty() {
        for fd in open_fds().difference(&before) {
            // SAFETY: the fd appeared during the failed build on this, the only thread, and
            // nothing outside libcontainer holds it; closing it ends the leak and cannot
            // close a descriptor anyone else uses.
            unsafe { libc::close(*fd) };
        }
    }
    result
}
