//! Where monitors live: one cgroup of crust's own, `<cgroup_root>/crust-monitors`, in one
//! hierarchy (the unified one, or v1's `pids`).
//!
//! Two reasons. Operators see every monitor, and the whole per-pod overhead, in one place of
//! crust's, instead of mixed into crustd's service cgroup. And it makes CreateContainer
//! faster: moving a process between cgroups takes a kernel lock whose writer waits for an RCU
//! grace period (7–15 ms measured here) unless another move happened just before. libcontainer
//! moves every new container into its cgroup in the middle of CreateContainer, so crustd
//! writes the pod's monitor into this cgroup (where it already is: a move to nowhere new) at
//! the start of the call, in the background: the grace period then passes while the rootfs
//! is prepared, and libcontainer's own move finds the lock ready. (A second write just before
//! handing the container to the monitor measured no better: 3 alternating rounds, medians
//! within noise.)

use super::Engine;

const MONITORS: &str = "crust-monitors";

impl Engine {
    pub(super) fn monitors_cgroup(&self) -> String {
        format!("{}/{MONITORS}", self.cfg.cgroup_root.trim_end_matches('/'))
    }

    /// Makes the monitors' cgroup (at start-up; without it monitors stay where crustd is).
    pub(super) fn make_monitors_cgroup(&self) {
        if let Err(e) = self.hierarchy.create_single(&self.monitors_cgroup()) {
            tracing::warn!(err = %e, "cannot make the monitors' cgroup; monitors stay in crustd's");
        }
    }

    /// Removes the monitors' cgroup when no pod is left (crustd stopping on a node being
    /// emptied or uninstalled); with pods it stays, holding their monitors. The monitor of a
    /// pod removed just before may still be on its way out: it gets a second.
    pub fn release_monitors_cgroup(&self) {
        if self.store.pod_count() > 0 {
            return;
        }
        let cgroup = self.monitors_cgroup();
        let mut result = self.hierarchy.remove_single(&cgroup);
        for _ in 0..50 {
            if !matches!(&result, Err(e) if e.raw_os_error() == Some(libc::EBUSY)) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            result = self.hierarchy.remove_single(&cgroup);
        }
        if let Err(e) = result {
            tracing::debug!(err = %e, "monitors' cgroup stays");
        }
    }

    /// Writes pod `pod_id`'s monitor (`pid`) into the monitors' cgroup, in the background.
    /// Only a process that is still that pod's monitor is moved (its command line names the
    /// pod's state dir), never whatever process reused the pid.
    pub(super) fn place_monitor(&self, pod_id: &str, pid: u32) {
        let Ok(pid) = i32::try_from(pid) else { return };
        if pid <= 0 {
            return;
        }
        let (hierarchy, cgroup) = (self.hierarchy.clone(), self.monitors_cgroup());
        let marker = self.pod_dir(pod_id).display().to_string();
        tokio::task::spawn_blocking(move || {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if !String::from_utf8_lossy(&cmdline).contains(&marker) {
                return;
            }
            if let Err(e) = hierarchy.attach_single(&cgroup, pid) {
                tracing::debug!(pid, err = %e, "cannot place monitor");
            }
        });
    }
}
