//! OOM kills: the memory cgroup counts them (`oom_kill` in cgroup v2's `memory.events`, and in
//! v1's `memory.oom_control` on current kernels). A non-zero count when the container exits means
//! the kernel's OOM killer ended it or one of its processes: CRI reason `OOMKilled`, as
//! containerd reports it.

use std::path::Path;

use crate::cgroups::Hierarchy;

/// Whether the OOM killer ran in the cgroup of the container whose bundle is `bundle`.
pub fn oom_killed(bundle: &Path) -> bool {
    let Some(path) = std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["linux"]["cgroupsPath"].as_str().map(str::to_string))
    else {
        return false;
    };
    let Ok(hierarchy) = Hierarchy::detect() else {
        return false;
    };
    let rel = path.trim_start_matches('/');
    let file = match &hierarchy {
        Hierarchy::V2 { root } => root.join(rel).join("memory.events"),
        Hierarchy::V1 { mounts } => match mounts.iter().find(|(c, _)| c == "memory") {
            Some((_, m)) => m.join(rel).join("memory.oom_control"),
            None => return false,
        },
    };
    oom_kill_count(&std::fs::read_to_string(file).unwrap_or_default()) > 0
}

/// The `oom_kill N` line of memory.events / memory.oom_control.
pub fn oom_kill_count(text: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("oom_kill ")
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_come_from_either_hierarchy_format() {
        assert_eq!(
            oom_kill_count("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n"),
            1
        );
        assert_eq!(
            oom_kill_count("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            2
        );
        assert_eq!(oom_kill_count("oom_kill_disable 0\nunder_oom 0\n"), 0);
    }
}
