//! Hands freed heap memory back to the kernel once the daemon is quiet.
//!
//! glibc keeps freed pages inside its heaps (one arena per thread that allocated) unless they
//! happen to be at the top. Measured here: crustd stayed at 36 MB RSS after ListContainerStats
//! calls on 1,000 containers and went back to 18 MB after `malloc_trim`; after a few pod lives
//! it idles at 15.2 MB, 13.8 after a trim. So every CRI call marks the daemon busy, and a trim
//! runs once it has been quiet for a moment, off the request path, at most once per
//! [`MIN_INTERVAL`] (kubelet relists every second; a trim of a small heap is well under a
//! millisecond).

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::Notify;

/// How long without a call before the trim runs (kubelet's calls come in bursts).
const QUIET: Duration = Duration::from_millis(500);
/// The least time between two trims.
const MIN_INTERVAL: Duration = Duration::from_secs(10);

fn busy() -> &'static Notify {
    static BUSY: OnceLock<Notify> = OnceLock::new();
    BUSY.get_or_init(Notify::new)
}

/// Makes every thread allocate from glibc's one main arena, unless MALLOC_ARENA_MAX says
/// otherwise. By default each thread that allocates gets an arena of its own, each keeping
/// its own freed pages: crustd idled at 13.6 MB RSS with them, 12.0 with one; pod start and
/// stop times did not move (8 alternating rounds of 5 lives, medians within 0.1 ms; the small
/// allocations are served from per-thread caches without the arena's lock). Call it first in
/// `main`.
pub fn one_arena() {
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a glibc tunable; called before any other thread exists.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    }
}

/// Called when a CRI call ends.
pub fn worked() {
    busy().notify_one();
}

/// Runs for the daemon's life.
pub async fn trim_when_quiet() {
    trim_after_work(busy(), || async {
        let _ = tokio::task::spawn_blocking(trim).await;
    })
    .await
}

async fn trim_after_work<F, Fut>(busy: &Notify, mut trim: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        busy.notified().await;
        // Wait until the burst is over: every new call restarts the wait.
        while tokio::time::timeout(QUIET, busy.notified()).await.is_ok() {}
        trim().await;
        // Calls in the meantime leave a permit behind, so the next round starts at once.
        tokio::time::sleep(MIN_INTERVAL).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn trims_once_quiet_and_not_more_often_than_the_interval() {
        let busy: &'static Notify = Box::leak(Box::new(Notify::new()));
        let trims = Rc::new(Cell::new(0));
        let counted = trims.clone();
        let local = tokio::task::LocalSet::new();
        local.spawn_local(trim_after_work(busy, move || {
            let counted = counted.clone();
            async move { counted.set(counted.get() + 1) }
        }));
        local
            .run_until(async {
                let step = Duration::from_millis(100);
                // Nothing happened: no trim.
                tokio::time::sleep(Duration::from_secs(2)).await;
                assert_eq!(trims.get(), 0);
                // A burst of calls 100 ms apart for 2 s: no trim during it, one after.
                for _ in 0..20 {
                    busy.notify_one();
                    tokio::time::sleep(step).await;
                }
                assert_eq!(trims.get(), 0, "trimmed during the burst");
                tokio::time::sleep(QUIET).await;
                assert_eq!(trims.get(), 1);
                // More calls right after: the next trim waits for the interval.
                busy.notify_one();
                tokio::time::sleep(MIN_INTERVAL / 2).await;
                assert_eq!(trims.get(), 1);
                tokio::time::sleep(MIN_INTERVAL / 2 + QUIET + step).await;
                assert_eq!(trims.get(), 2);
                // Quiet for long: nothing more.
                tokio::time::sleep(MIN_INTERVAL * 3).await;
                assert_eq!(trims.get(), 2);
            })
            .await;
    }
}
