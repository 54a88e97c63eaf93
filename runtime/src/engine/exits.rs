//! Turns the exits monitors record into state changes as they happen.
//!
//! Every monitor writes a container's exit record into one directory, `<state>/exits/<id>.json`,
//! by renaming it into place. crustd holds one inotify watch on that directory and refreshes a
//! container when its record lands, so events and statuses follow an exit within milliseconds
//! and an idle node costs nothing per container (polling 1,000 exit files five times a second
//! did). Where inotify cannot be had, or its queue overflowed, every running container is
//! looked at instead.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;

use super::Engine;

/// The inotify fd, in the shape tokio's reactor wants.
struct Watch(Inotify);

impl AsRawFd for Watch {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.0.as_fd().as_raw_fd()
    }
}

impl Engine {
    /// Runs for the daemon's life. `fallback` is the polling period used without inotify.
    pub async fn watch_exits(self: Arc<Self>, fallback: Duration) {
        match self.exit_watch() {
            Ok(watch) => {
                // Exits recorded between start-up's recovery and the watch are picked up here.
                self.refresh_running().await;
                self.follow(watch).await;
            }
            Err(e) => {
                tracing::warn!(err = %e, every = ?fallback, "no inotify watch on exits; polling")
            }
        }
        loop {
            tokio::time::sleep(fallback).await;
            self.refresh_running().await;
        }
    }

    fn exit_watch(&self) -> std::io::Result<AsyncFd<Watch>> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        inotify.add_watch(&self.exits_dir(), AddWatchFlags::IN_MOVED_TO)?;
        // SAFETY: the Inotify owns its fd and is moved in whole; Watch hands out that same fd,
        // open until the AsyncFd (and with it the Inotify) is dropped.
        unsafe { AsyncFd::register_with_interest(Watch(inotify), tokio::io::Interest::READABLE) }
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// Returns only if the watch breaks.
    async fn follow(self: &Arc<Self>, watch: AsyncFd<Watch>) {
        loop {
            let events = match watch.readable().await {
                Ok(mut ready) => match ready.get_inner().0.read_events() {
                    Ok(ev) => ev,
                    Err(nix::Error::EAGAIN) => {
                        ready.clear_ready();
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(err = %e, "exit watch broke; polling");
                        return;
                    }
                },
                Err(e) => {
                    tracing::warn!(err = %e, "exit watch broke; polling");
                    return;
                }
            };
            for ev in events {
                if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    tracing::warn!("exit watch overflowed; looking at every running container");
                    self.refresh_running().await;
                    continue;
                }
                let Some(id) = ev
                    .name
                    .as_ref()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".json"))
                else {
                    continue;
                };
                if let Some(c) = self.store.container(id) {
                    // Not try_lock: this event comes once, and a call holding the container
                    // may have looked for the exit before it was written. Its own task, so a
                    // long call on one container (a StopContainer's grace period) holds up no
                    // other container's exit.
                    let engine = self.clone();
                    tokio::spawn(async move { engine.refresh(&mut *c.lock().await) });
                }
            }
        }
    }

    async fn refresh_running(&self) {
        for c in self.store.all_containers() {
            // A container busy in another call is refreshed by that call.
            if let Ok(mut c) = c.try_lock() {
                self.refresh(&mut c);
            }
        }
    }
}
