//! Turns the exits monitors record into state changes as they happen.
//!
//! Every monitor writes a container's exit record into one directory, `<state>/exits/<id>.json`,
//! by renaming it into place. crustd holds one inotify watch on that directory and refreshes a
//! container when its record lands, so events and statuses follow an exit within milliseconds
//! and an idle node costs nothing per container (polling 1,000 exit files five times a second
//! did). Where inotify cannot be had, or its queue overflowed, every running container is
//! looked at instead.

use std::sync::Arc;
use std::time::Duration;

use nix::sys::inotify::AddWatchFlags;

use super::Engine;
use crate::dirwatch::DirWatch;

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

    fn exit_watch(&self) -> std::io::Result<DirWatch> {
        DirWatch::new(&self.exits_dir(), AddWatchFlags::IN_MOVED_TO)
    }

    /// Returns only if the watch breaks.
    async fn follow(self: &Arc<Self>, watch: DirWatch) {
        loop {
            let events = match watch.next().await {
                Ok(events) => events,
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
