//! Hands freed heap memory back to the kernel after big answers.
//!
//! A list of 1,000 containers with their stats is a few megabytes of records, messages and
//! buffers that are freed as soon as the answer is sent, but glibc keeps freed pages inside its
//! heap unless they happen to be at the top: measured here, crustd stayed at 36 MB RSS after
//! ListContainerStats calls on 1,000 containers, and went back to 18 MB after `malloc_trim`.
//! So a call that built a big answer asks for a trim, which runs once the daemon has been
//! quiet for a moment, off the request path.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::Notify;

/// Answers with at least this many items ask for a trim.
pub const BIG_ANSWER: usize = 200;

/// How long after the last big answer the trim runs (kubelet's lists come in bursts).
const QUIET: Duration = Duration::from_millis(500);

fn wanted() -> &'static Notify {
    static WANTED: OnceLock<Notify> = OnceLock::new();
    WANTED.get_or_init(Notify::new)
}

/// Called by a handler with the number of items in its answer.
pub fn answered(items: usize) {
    if items >= BIG_ANSWER {
        wanted().notify_one();
    }
}

/// Runs for the daemon's life.
pub async fn trim_after_big_answers() {
    loop {
        wanted().notified().await;
        // Wait until the burst is over: every new big answer restarts the wait.
        while tokio::time::timeout(QUIET, wanted().notified())
            .await
            .is_ok()
        {}
        let _ = tokio::task::spawn_blocking(trim).await;
    }
}

#[cfg(target_env = "gnu")]
fn trim() {
    // SAFETY: malloc_trim only walks glibc's own arenas and gives free pages back; it takes
    // the arena locks itself and touches no memory that is in use.
    unsafe { libc::malloc_trim(0) };
}

#[cfg(not(target_env = "gnu"))]
fn trim() {}
