//! Waiting on a container without polling: crustd's event stream says the moment it exits, and
//! an inotify watch on its log directory says the moment it writes. `run`, `start -a` and
//! `logs -f` wake on either, so output shows as it is written and the exit code as the
//! container exits.

use std::path::Path;
use std::time::Duration;

use crust_proto::cri;
use crust_runtime::dirwatch::DirWatch;
use crust_shim::client::CriClient;
use nix::sys::inotify::AddWatchFlags;

/// How long a wait lasts when a source is missing (the event stream ended, or the log directory
/// cannot be watched).
const FALLBACK: Duration = Duration::from_millis(50);

/// A container's events and log writes, subscribed to before the caller looks at its state.
pub(crate) struct Watch {
    id: String,
    events: Option<tonic::Streaming<cri::ContainerEventResponse>>,
    log_dir: Option<DirWatch>,
    /// Whether the caller follows a log (`run -t` waits on the exit alone).
    wants_log: bool,
}

impl Watch {
    /// Subscribes to crustd's events and watches the directory of `log_path` (a directory
    /// watch sees the file created, written and reopened after a rotation). Call it before
    /// checking the container's state, so that a change right after that check still wakes.
    pub(crate) async fn new(c: &mut CriClient, id: &str, log_path: &str) -> Watch {
        let events = c
            .runtime
            .get_container_events(cri::GetEventsRequest {})
            .await
            .ok()
            .map(tonic::Response::into_inner);
        Watch {
            id: id.to_string(),
            events,
            log_dir: watch_dir(log_path),
            wants_log: !log_path.is_empty(),
        }
    }

    /// Waits until the container may have changed: its log directory was written to, crustd
    /// sent an event for it, or, with a source missing, [`FALLBACK`] passed.
    pub(crate) async fn changed(&mut self) {
        // With every source the caller needs, a wait ends on news; the second is a guard, never
        // the rule. Without one of them (no exit news, or no write news for a followed log) the
        // wait is the old polling interval.
        let complete = self.events.is_some() && (self.log_dir.is_some() || !self.wants_log);
        let limit = if complete {
            Duration::from_secs(1)
        } else {
            FALLBACK
        };
        tokio::select! {
            broken = log_written(self.log_dir.as_ref()) => {
                if broken {
                    self.log_dir = None;
                }
            }
            gone = event_for(self.events.as_mut(), &self.id) => {
                if gone {
                    self.events = None;
                }
            }
            () = tokio::time::sleep(limit) => {}
        }
    }
}

/// An inotify watch on the directory holding `log_path`, or None when it cannot be had.
fn watch_dir(log_path: &str) -> Option<DirWatch> {
    let dir = Path::new(log_path).parent()?;
    let events = AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_CLOSE_WRITE;
    DirWatch::new(dir, events).ok()
}

/// Returns false when the watched directory has news, true when the watch broke (the caller
/// then drops it); never without a watch.
async fn log_written(watch: Option<&DirWatch>) -> bool {
    match watch {
        Some(w) => w.next().await.is_err(),
        None => std::future::pending().await,
    }
}

/// Returns false at the next event for container `id`, true when the stream has ended or
/// failed (the caller then stops listening); never without a stream.
async fn event_for(
    events: Option<&mut tonic::Streaming<cri::ContainerEventResponse>>,
    id: &str,
) -> bool {
    let Some(events) = events else {
        return std::future::pending().await;
    };
    loop {
        match events.message().await {
            Ok(Some(ev)) if ev.container_id == id => return false,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return true,
        }
    }
}
