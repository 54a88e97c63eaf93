//! An inotify watch on one directory that tokio can wait on: crustd learns of exit records
//! with it, and crustctl of a container's log writes.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent};
use tokio::io::unix::AsyncFd;

/// The inotify fd, in the shape tokio's reactor wants.
struct Fd(Inotify);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

pub struct DirWatch(AsyncFd<Fd>);

impl DirWatch {
    /// Watches `dir` for `events` (on the directory or on any file in it). Needs a tokio runtime.
    pub fn new(dir: &Path, events: AddWatchFlags) -> std::io::Result<DirWatch> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        inotify.add_watch(dir, events)?;
        // SAFETY: the Inotify owns its fd and is moved in whole; Fd hands out that same fd,
        // open until the AsyncFd (and with it the Inotify) is dropped.
        let fd =
            unsafe { AsyncFd::register_with_interest(Fd(inotify), tokio::io::Interest::READABLE) }
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(DirWatch(fd))
    }

    /// The next batch of events (waits for at least one); an error when the watch broke.
    pub async fn next(&self) -> std::io::Result<Vec<InotifyEvent>> {
        loop {
            let mut ready = self.0.readable().await?;
            match ready.get_inner().0.read_events() {
                Ok(events) => return Ok(events),
                Err(nix::Error::EAGAIN) => ready.clear_ready(),
                Err(e) => return Err(e.into()),
            }
        }
    }
}
