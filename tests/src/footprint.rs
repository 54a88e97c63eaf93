//! What a daemon leaves on the machine, for tests that check nothing leaks.

use std::collections::BTreeSet;
use std::path::Path;

use crate::bridge::Bridge;
use crate::{Daemon, cgroup_mounts};

/// What a daemon has on the machine besides its records: mounts under its dirs (the pods'
/// netns pins among them), cgroups under its parent, monitor processes, and on its pod network
/// the veths on the bridge and the addresses host-local has leased.
#[derive(Debug, PartialEq, Eq)]
pub struct Footprint {
    pub mounts: BTreeSet<String>,
    pub cgroups: BTreeSet<String>,
    pub monitors: usize,
    pub veths: Vec<String>,
    pub leases: Vec<String>,
}

pub fn footprint(d: &Daemon, net: Option<&Bridge>) -> Footprint {
    let base = d.dir.path().display().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&base))
        .collect();
    let mut cgroups = BTreeSet::new();
    for m in cgroup_mounts() {
        let root = m.join(d.cgroup_root.trim_start_matches('/'));
        for e in walkdirs(&root) {
            cgroups.insert(e.strip_prefix(&m).unwrap().display().to_string());
        }
    }
    let state = d.state.display().to_string();
    let monitors = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| {
            let c = String::from_utf8_lossy(c);
            c.starts_with("crust-monitor") && c.contains(&state)
        })
        .count();
    Footprint {
        mounts,
        cgroups,
        monitors,
        veths: net.map(Bridge::veths).unwrap_or_default(),
        leases: net.map(Bridge::leases).unwrap_or_default(),
    }
}

/// Directories below `root` (not `root` itself).
fn walkdirs(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(e.path());
                    stack.push(e.path());
                }
            }
        }
    }
    out
}
