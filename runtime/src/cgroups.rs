//! Pod cgroups on cgroup v1 and v2 (cgroupfs driver). Container cgroups below them are made and
//! removed by libcontainer; this module owns the pod level: it creates the directories crust
//! needs under its own parent and removes exactly those it created.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// v1 controllers crust places pods in; others (net_cls, perf_event…) are left alone.
const V1_CONTROLLERS: &[&str] = &[
    "cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices", "freezer", "hugetlb",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// Unified hierarchy mounted at the given root.
    V2 { root: PathBuf },
    /// Legacy hierarchies: one mount point per controller crust uses.
    V1 { mounts: Vec<(String, PathBuf)> },
}

impl Hierarchy {
    /// The distinct v1 mount points (`/sys/fs/cgroup/cpu,cpuacct`, …); none on v2.
    pub fn v1_mount_points(&self) -> Vec<PathBuf> {
        let mut points: Vec<PathBuf> = match self {
            Hierarchy::V2 { .. } => vec![],
            Hierarchy::V1 { mounts } => mounts.iter().map(|(_, p)| p.clone()).collect(),
        };
        points.sort();
        points.dedup();
        points
    }

    /// Probes the host the way libcgroups does: cgroup2 at /sys/fs/cgroup means unified.
    pub fn detect() -> io::Result<Self> {
        let root = Path::new("/sys/fs/cgroup");
        let st = nix::sys::statfs::statfs(root).map_err(io::Error::from)?;
        if st.filesystem_type().0 == CGROUP2_SUPER_MAGIC {
            return Ok(Hierarchy::V2 {
                root: root.to_path_buf(),
            });
        }
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
        let mut mounts = Vec::new();
        for line in mountinfo.lines() {
            // id parent major:minor root mountpoint opts... - fstype source superopts
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mut r = right.split_whitespace();
            if r.next() != Some("cgroup") {
                continue;
            }
            let super_opts = r.nth(1).unwrap_or("");
            let Some(mount_point) = left.split_whitespace().nth(4) else {
                continue;
            };
            for opt in super_opts.split(',') {
                if V1_CONTROLLERS.contains(&opt) && !mounts.iter().any(|(c, _)| c == opt) {
                    mounts.push((opt.to_string(), PathBuf::from(mount_point)));
                }
            }
        }
        Ok(Hierarchy::V1 { mounts })
    }

    /// Whether the host has `controller` where crust's cgroups live: a v1 hierarchy of it, or
    /// on v2 its name in the root's `cgroup.controllers`. kubelet asks for hugepage limits
    /// even where hugetlb is missing; runc skips such limits, libcontainer would fail.
    pub fn has_controller(&self, controller: &str) -> bool {
        match self {
            Hierarchy::V1 { mounts } => mounts.iter().any(|(c, _)| c == controller),
            Hierarchy::V2 { root } => fs::read_to_string(root.join("cgroup.controllers"))
                .is_ok_and(|s| s.split_whitespace().any(|c| c == controller)),
        }
    }

    pub fn version(&self) -> &'static str {
        match self {
            Hierarchy::V2 { .. } => "v2",
            Hierarchy::V1 { .. } => "v1",
        }
    }

    /// Directories (one per hierarchy) that make up cgroup `path`.
    pub fn dirs(&self, path: &str) -> Vec<PathBuf> {
        let rel = path.trim_start_matches('/');
        match self {
            Hierarchy::V2 { root } => vec![root.join(rel)],
            Hierarchy::V1 { mounts } => {
                let mut v: Vec<PathBuf> = mounts.iter().map(|(_, m)| m.join(rel)).collect();
                v.dedup();
                v
            }
        }
    }

    /// Creates cgroup `path` in every hierarchy; returns whether anything was created, so the
    /// caller knows whether the pod owns (and must later remove) the directory.
    pub fn create(&self, path: &str) -> io::Result<bool> {
        validate_path(path)?;
        let mut created = false;
        match self {
            Hierarchy::V2 { root } => {
                let mut cur = root.clone();
                for comp in path.trim_start_matches('/').split('/') {
                    enable_v2_controllers(&cur);
                    cur.push(comp);
                    created |= mkdir_new(&cur)?;
                }
            }
            Hierarchy::V1 { mounts } => {
                for (controller, mount) in mounts {
                    let mut cur = mount.clone();
                    for comp in path.trim_start_matches('/').split('/') {
                        let parent = cur.clone();
                        cur.push(comp);
                        if mkdir_new(&cur)? {
                            created = true;
                            if controller == "cpuset" {
                                // A new cpuset is empty, and nothing can join an empty cpuset.
                                for f in ["cpuset.cpus", "cpuset.mems"] {
                                    let v = fs::read_to_string(parent.join(f))?;
                                    fs::write(cur.join(f), v.trim())?;
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(created)
    }

    /// The one hierarchy's directory for `path` that [`Hierarchy::attach_single`] uses: the
    /// unified one, or on v1 the `pids` hierarchy (where membership limits nothing unless a
    /// limit is written) or, without it, the first.
    fn single_dir(&self, path: &str) -> Option<PathBuf> {
        let rel = path.trim_start_matches('/');
        match self {
            Hierarchy::V2 { root } => Some(root.join(rel)),
            Hierarchy::V1 { mounts } => mounts
                .iter()
                .find(|(c, _)| c == "pids")
                .or(mounts.first())
                .map(|(_, m)| m.join(rel)),
        }
    }

    /// Makes cgroup `path` (and its parents) in that one hierarchy.
    pub fn create_single(&self, path: &str) -> io::Result<()> {
        validate_path(path)?;
        let dir = self
            .single_dir(path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no cgroup hierarchy"))?;
        fs::create_dir_all(dir)
    }

    /// Moves process `pid` into cgroup `path` of that one hierarchy.
    pub fn attach_single(&self, path: &str, pid: i32) -> io::Result<()> {
        let dir = self
            .single_dir(path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no cgroup hierarchy"))?;
        fs::write(dir.join("cgroup.procs"), pid.to_string())
    }

    /// Removes cgroup `path` made by [`Hierarchy::create_single`]. Missing is fine; EBUSY
    /// while a process is still in it.
    pub fn remove_single(&self, path: &str) -> io::Result<()> {
        validate_path(path)?;
        let dir = self
            .single_dir(path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no cgroup hierarchy"))?;
        match fs::remove_dir(dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes cgroup `path` (not its parents) from every hierarchy. Missing is fine.
    pub fn remove(&self, path: &str) -> io::Result<()> {
        validate_path(path)?;
        let mut first_err = None;
        for dir in self.dirs(path) {
            // Children left by a crashed container first; rmdir only succeeds on empty cgroups.
            if let Ok(rd) = fs::read_dir(&dir) {
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        let _ = fs::remove_dir(e.path());
                    }
                }
            }
            match fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), err = %e, "cannot remove cgroup");
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Number of processes in cgroup `path` and all its descendants.
    pub fn process_count(&self, path: &str) -> u64 {
        self.all_procs(path).len() as u64
    }

    /// PIDs in cgroup `path` (from the first hierarchy), for checks and cleanup.
    pub fn procs(&self, path: &str) -> Vec<i32> {
        let Some(dir) = self.dirs(path).into_iter().next() else {
            return vec![];
        };
        fs::read_to_string(dir.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }
}

/// Limits crust writes on a pod cgroup it owns (pod resources plus overhead).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpu_shares: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    /// Raw cgroup v2 files and values (CRI `unified`), keys already validated.
    pub unified: std::collections::BTreeMap<String, String>,
}

/// A CRI `unified` key must name a plain cgroup v2 interface file (`memory.high`), never a
/// path, and its value must be one line.
pub fn validate_unified(key: &str, value: &str) -> io::Result<()> {
    let key_ok = !key.is_empty()
        && key.contains('.')
        && !key.starts_with("cgroup.")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_'));
    if !key_ok || value.contains(['\n', '\r', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "unified {key:?}={value:?}: not a cgroup v2 interface file and a one-line value"
            ),
        ));
    }
    Ok(())
}

/// CPU shares (v1, 2..262144) to weight (v2, 1..10000) with the mapping current runc and
/// libcontainer use (log-quadratic, so the default 1024 shares is exactly weight 100), so pod
/// and resized limits agree with what libcontainer set at create.
pub fn shares_to_weight(shares: u64) -> u64 {
    match shares {
        0 => 0,
        1..=2 => 1,
        262_144.. => 10_000,
        s => {
            let l = (s as f64).log2();
            let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
            10f64.powf(exponent).ceil() as u64
        }
    }
}

impl Hierarchy {
    /// Writes `limits` on cgroup `path`.
    pub fn set_limits(&self, path: &str, l: &Limits) -> io::Result<()> {
        validate_path(path)?;
        let rel = path.trim_start_matches('/');
        let write = |p: PathBuf, v: String| {
            fs::write(&p, &v).map_err(|e| {
                // The value is the caller's and may be huge: the message shows its start.
                let shown: String = v.chars().take(64).collect();
                let more = if shown.len() < v.len() { "…" } else { "" };
                io::Error::new(
                    e.kind(),
                    format!("write {shown:?}{more} to {}: {e}", p.display()),
                )
            })
        };
        match self {
            Hierarchy::V2 { root } => {
                let d = root.join(rel);
                if let Some(m) = l.memory {
                    write(d.join("memory.max"), m.to_string())?;
                }
                if l.cpu_quota.is_some() || l.cpu_period.is_some() {
                    let quota = l
                        .cpu_quota
                        .filter(|q| *q > 0)
                        .map_or("max".to_string(), |q| q.to_string());
                    write(
                        d.join("cpu.max"),
                        format!("{quota} {}", l.cpu_period.unwrap_or(100_000)),
                    )?;
                }
                if let Some(s) = l.cpu_shares {
                    write(d.join("cpu.weight"), shares_to_weight(s).to_string())?;
                }
                if let Some(c) = &l.cpuset_cpus {
                    write(d.join("cpuset.cpus"), c.clone())?;
                }
                if let Some(m) = &l.cpuset_mems {
                    write(d.join("cpuset.mems"), m.clone())?;
                }
                for (k, v) in &l.unified {
                    validate_unified(k, v)?;
                    let f = d.join(k);
                    if !f.exists() {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("unified key {k:?}: no such file in {}", d.display()),
                        ));
                    }
                    write(f, v.clone())?;
                }
            }
            Hierarchy::V1 { mounts } => {
                let dir_of = |c: &str| v1_dir(mounts, c, rel);
                if let (Some(m), Some(d)) = (l.memory, dir_of("memory")) {
                    write(d.join("memory.limit_in_bytes"), m.to_string())?;
                }
                if let Some(d) = dir_of("cpu") {
                    if let Some(p) = l.cpu_period {
                        write(d.join("cpu.cfs_period_us"), p.to_string())?;
                    }
                    if let Some(q) = l.cpu_quota {
                        write(d.join("cpu.cfs_quota_us"), q.to_string())?;
                    }
                    if let Some(s) = l.cpu_shares {
                        write(d.join("cpu.shares"), s.to_string())?;
                    }
                }
                if let Some(d) = dir_of("cpuset") {
                    if let Some(c) = &l.cpuset_cpus {
                        write(d.join("cpuset.cpus"), c.clone())?;
                    }
                    if let Some(m) = &l.cpuset_mems {
                        write(d.join("cpuset.mems"), m.clone())?;
                    }
                }
                if !l.unified.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "unified cgroup v2 settings need a cgroup v2 host",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What a cgroup says about its processes' resource use. Fields the hierarchy lacks stay 0.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupStats {
    pub cpu_usage_ns: u64,
    pub memory_usage: u64,
    /// Usage minus inactive file pages: what the kernel cannot reclaim easily (kubelet's
    /// eviction signal).
    pub memory_working_set: u64,
    pub memory_rss: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    pub memory_limit: Option<u64>,
    pub swap_usage: u64,
    /// Pressure stall information (cgroup v2 with PSI in the kernel; None elsewhere).
    pub cpu_pressure: Option<Pressure>,
    pub memory_pressure: Option<Pressure>,
    pub io_pressure: Option<Pressure>,
}

/// One `*.pressure` file: the `some` and `full` lines.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pressure {
    pub some: PressureLine,
    pub full: PressureLine,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PressureLine {
    /// Total stall time in microseconds, as the kernel counts it.
    pub total_us: u64,
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
}

impl Pressure {
    /// Parses `some avg10=0.00 avg60=0.00 avg300=0.00 total=0` and its `full` line.
    pub fn parse(text: &str) -> Option<Pressure> {
        let mut p = Pressure::default();
        let mut seen = false;
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let target = match words.next() {
                Some("some") => &mut p.some,
                Some("full") => &mut p.full,
                _ => continue,
            };
            seen = true;
            for w in words {
                let Some((k, v)) = w.split_once('=') else {
                    continue;
                };
                match k {
                    "avg10" => target.avg10 = v.parse().unwrap_or(0.0),
                    "avg60" => target.avg60 = v.parse().unwrap_or(0.0),
                    "avg300" => target.avg300 = v.parse().unwrap_or(0.0),
                    "total" => target.total_us = v.parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        seen.then_some(p)
    }
}

/// The directory of cgroup `rel` in the v1 hierarchy that has `controller`.
fn v1_dir(mounts: &[(String, PathBuf)], controller: &str, rel: &str) -> Option<PathBuf> {
    mounts
        .iter()
        .find(|(n, _)| n == controller)
        .map(|(_, m)| m.join(rel))
}

/// Reads a cgroup's small files relative to its open directory: one path walk per cgroup, not
/// one per file, and one buffer for all of them (ListContainerStats reads thousands).
struct CgroupDir {
    dir: fs::File,
    buf: Vec<u8>,
}

impl CgroupDir {
    fn open(dir: &Path) -> Option<CgroupDir> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(dir)
            .ok()?;
        Some(CgroupDir {
            dir,
            buf: Vec::with_capacity(4096),
        })
    }

    /// The file's whole text (None when it is missing or unreadable).
    fn text(&mut self, name: &str) -> Option<&str> {
        use std::io::Read;
        use std::os::fd::{AsRawFd, FromRawFd};
        let fd = nix::fcntl::openat(
            Some(self.dir.as_raw_fd()),
            name,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ok()?;
        // SAFETY: openat just returned this fd, and nothing else owns it.
        let mut f = unsafe { fs::File::from_raw_fd(fd) };
        self.buf.clear();
        // Not read_to_end: it asks for the file's size first, which cgroupfs cannot tell.
        let mut chunk = [0u8; 4096];
        loop {
            match f.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        std::str::from_utf8(&self.buf).ok()
    }

    fn u64(&mut self, name: &str) -> Option<u64> {
        self.text(name)?.trim().parse().ok()
    }

    /// The values of `keys` in a `key value` file (memory.stat, cpu.stat); 0 where missing.
    fn keyed<const N: usize>(&mut self, name: &str, keys: [&str; N]) -> [u64; N] {
        let mut out = [0; N];
        for line in self.text(name).unwrap_or_default().lines() {
            let Some((k, v)) = line.split_once(' ') else {
                continue;
            };
            if let Some(i) = keys.iter().position(|w| *w == k) {
                out[i] = v.trim().parse().unwrap_or(0);
            }
        }
        out
    }

    /// Memory figures from the usage file and memory.stat, given the stat's key names for
    /// inactive file pages, rss, page faults and major page faults (v1 prefixes them with
    /// `total_` for the whole subtree).
    fn memory(&mut self, s: &mut CgroupStats, usage_file: &str, keys: [&str; 4]) {
        let usage = self.u64(usage_file).unwrap_or(0);
        let [inactive_file, rss, pgfault, pgmajfault] = self.keyed("memory.stat", keys);
        s.memory_usage = usage;
        s.memory_working_set = usage.saturating_sub(inactive_file);
        s.memory_rss = rss;
        s.page_faults = pgfault;
        s.major_page_faults = pgmajfault;
    }
}

impl Hierarchy {
    /// Resource use of cgroup `path` (zeros where the files are missing).
    pub fn stats(&self, path: &str) -> CgroupStats {
        let rel = path.trim_start_matches('/');
        let mut s = CgroupStats::default();
        match self {
            Hierarchy::V2 { root } => {
                let Some(mut d) = CgroupDir::open(&root.join(rel)) else {
                    return s;
                };
                s.cpu_usage_ns = d.keyed("cpu.stat", ["usage_usec"])[0] * 1000;
                d.memory(
                    &mut s,
                    "memory.current",
                    ["inactive_file", "anon", "pgfault", "pgmajfault"],
                );
                s.memory_limit = d.u64("memory.max");
                s.swap_usage = d.u64("memory.swap.current").unwrap_or(0);
                s.cpu_pressure = d.text("cpu.pressure").and_then(Pressure::parse);
                s.memory_pressure = d.text("memory.pressure").and_then(Pressure::parse);
                s.io_pressure = d.text("io.pressure").and_then(Pressure::parse);
            }
            Hierarchy::V1 { mounts } => {
                let dir_of = |c: &str| v1_dir(mounts, c, rel).and_then(|d| CgroupDir::open(&d));
                if let Some(mut d) = dir_of("cpuacct") {
                    s.cpu_usage_ns = d.u64("cpuacct.usage").unwrap_or(0);
                }
                if let Some(mut d) = dir_of("memory") {
                    d.memory(
                        &mut s,
                        "memory.usage_in_bytes",
                        [
                            "total_inactive_file",
                            "total_rss",
                            "total_pgfault",
                            "total_pgmajfault",
                        ],
                    );
                    // The v1 "no limit" value is a huge page-rounded number.
                    s.memory_limit = d.u64("memory.limit_in_bytes").filter(|l| *l < (1 << 62));
                    if let Some(memsw) = d.u64("memory.memsw.usage_in_bytes") {
                        s.swap_usage = memsw.saturating_sub(s.memory_usage);
                    }
                }
            }
        }
        s
    }
}

/// What cAdvisor reports about a container beyond [`CgroupStats`], read for ListPodSandboxMetrics
/// only: more files per cgroup, and a walk over its processes' descriptors, than the stats RPCs
/// should pay on every call. None (or empty) where the hierarchy or the kernel lacks the file,
/// so that the metric is left out rather than reported as a zero nobody measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupDetail {
    /// CPU time spent in user and in kernel mode, nanoseconds.
    pub cpu_user_ns: Option<u64>,
    pub cpu_system_ns: Option<u64>,
    /// CFS bandwidth counters; None unless a quota is set (cAdvisor reports them only then).
    pub cfs: Option<Cfs>,
    /// Page cache, file pages mapped by processes, and kernel memory, in bytes.
    pub memory_cache: Option<u64>,
    pub memory_mapped_file: Option<u64>,
    pub memory_kernel: Option<u64>,
    /// Swap in use: v1 memsw usage less memory usage, v2 memory.swap.current.
    pub memory_swap: Option<u64>,
    /// Highest usage recorded: v1 memory.max_usage_in_bytes, v2 memory.peak (kernel 5.19+).
    pub memory_max_usage: Option<u64>,
    /// Times usage hit the limit: v1 memory.failcnt, v2 the `max` count of memory.events.
    pub memory_failcnt: Option<u64>,
    /// (pgfault, pgmajfault) of the cgroup's own tasks, and of its whole subtree. v2 only
    /// counts subtrees, which for a container (no child cgroups) is the same thing.
    pub faults_container: Option<(u64, u64)>,
    pub faults_hierarchy: Option<(u64, u64)>,
    /// Processes the OOM killer killed in the cgroup (`oom_kill`).
    pub oom_kills: Option<u64>,
    /// Tasks (threads) in the cgroup, and its pids limit (0 when unlimited, as cAdvisor says).
    pub threads: Option<u64>,
    pub threads_max: Option<u64>,
    pub hugetlb: Vec<HugetlbUsage>,
    /// Bytes and operations per block device and operation (v1 blkio, v2 io.stat).
    pub io_bytes: Vec<DeviceIo>,
    pub io_ops: Vec<DeviceIo>,
    pub tasks: TaskStats,
    pub spec: CgroupSpec,
}

/// CFS bandwidth control: enforcement periods elapsed, periods throttled, time throttled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cfs {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
}

/// A cgroup's limits as cAdvisor's container spec reads them (memory: 0 when unlimited).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupSpec {
    pub cpu_period: Option<u64>,
    /// None when no quota is set.
    pub cpu_quota: Option<u64>,
    /// v1 cpu.shares; v2 cpu.weight mapped back onto shares the way cAdvisor maps it.
    pub cpu_shares: Option<u64>,
    pub memory_limit: Option<u64>,
    /// v1 memory.soft_limit_in_bytes, v2 memory.min.
    pub memory_reservation: Option<u64>,
    /// v1 memory.memsw.limit_in_bytes (memory plus swap), v2 memory.swap.max (swap alone).
    pub memory_swap_limit: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HugetlbUsage {
    /// As the cgroup files name it: `2MB`, `1GB`.
    pub pagesize: String,
    pub usage: u64,
    /// v1 only: v2 keeps no maximum.
    pub max_usage: Option<u64>,
}

/// One operation counter of one block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIo {
    pub major: u64,
    pub minor: u64,
    /// `/dev/<name>` of the device, or `major:minor` where sysfs names none.
    pub device: String,
    /// Read, Write, Discard, and on v1 also Sync, Async, Total.
    pub operation: String,
    pub value: u64,
}

/// A cgroup's processes as cAdvisor counts them: how many, their open file descriptors and the
/// sockets among them, and the soft open-files limit of the container's first process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskStats {
    pub processes: u64,
    pub file_descriptors: u64,
    pub sockets: u64,
    /// None when unlimited (a CRI value cannot say cAdvisor's -1) or unreadable.
    pub open_files_soft_limit: Option<u64>,
}

/// The value of `key` in a flat-keyed file: `key value` lines (memory.stat, cpu.stat,
/// memory.events, memory.oom_control).
fn flat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// A limit file as cAdvisor reads it: v2's `max`, and v1's huge page-rounded "no limit", are 0.
fn limit_value(text: &str) -> Option<u64> {
    match text.trim() {
        "max" => Some(0),
        t => t
            .parse::<u64>()
            .ok()
            .map(|v| if v >= 1 << 62 { 0 } else { v }),
    }
}

/// v2 `cpu.max`: (quota, period), the quota None for `max`.
fn parse_cpu_max(text: &str) -> Option<(Option<u64>, u64)> {
    let mut w = text.split_whitespace();
    let quota = match w.next()? {
        "max" => None,
        q => Some(q.parse().ok()?),
    };
    Some((quota, w.next()?.parse().ok()?))
}

/// cAdvisor's mapping of a cpu.weight (1..=10000) back onto shares (2..=262144).
fn weight_to_shares(weight: u64) -> Option<u64> {
    (1..=10_000)
        .contains(&weight)
        .then(|| 2 + (weight - 1) * 262_142 / 9_999)
}

/// `8:0` → (8, 0).
fn parse_dev(s: &str) -> Option<(u64, u64)> {
    let (major, minor) = s.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// A v1 blkio `*_recursive` file: `8:0 Read 4096` lines (the closing `Total N` names no device).
fn parse_blkio(text: &str) -> Vec<DeviceIo> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (major, minor) = parse_dev(w.next()?)?;
            let operation = w.next()?.to_string();
            let value = w.next()?.parse().ok()?;
            Some(DeviceIo {
                major,
                minor,
                device: String::new(),
                operation,
                value,
            })
        })
        .collect()
}

/// v2 io.stat (`8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0` lines): (bytes, operations).
fn parse_io_stat(text: &str) -> (Vec<DeviceIo>, Vec<DeviceIo>) {
    let mut bytes = Vec::new();
    let mut ops = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some((major, minor)) = words.next().and_then(parse_dev) else {
            continue;
        };
        for kv in words {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else { continue };
            let (to, operation) = match k {
                "rbytes" => (&mut bytes, "Read"),
                "wbytes" => (&mut bytes, "Write"),
                "dbytes" => (&mut bytes, "Discard"),
                "rios" => (&mut ops, "Read"),
                "wios" => (&mut ops, "Write"),
                "dios" => (&mut ops, "Discard"),
                _ => continue,
            };
            to.push(DeviceIo {
                major,
                minor,
                device: String::new(),
                operation: operation.to_string(),
                value,
            });
        }
    }
    (bytes, ops)
}

/// Names the devices (`/dev/sda` from sysfs, else `8:0`), looking each up once.
fn name_devices(ios: &mut [DeviceIo]) {
    let mut names: std::collections::HashMap<(u64, u64), String> = Default::default();
    for io in ios {
        io.device = names
            .entry((io.major, io.minor))
            .or_insert_with(|| {
                fs::read_to_string(format!("/sys/dev/block/{}:{}/uevent", io.major, io.minor))
                    .ok()
                    .and_then(|t| {
                        t.lines()
                            .find_map(|l| l.strip_prefix("DEVNAME=").map(|n| format!("/dev/{n}")))
                    })
                    .unwrap_or_else(|| format!("{}:{}", io.major, io.minor))
            })
            .clone();
    }
}

/// Page sizes that have a `hugetlb.<size><suffix>` file in cgroup directory `dir` (suffix
/// `.usage_in_bytes` on v1, `.current` on v2; the `.rsvd.` files are not usage).
fn hugetlb_sizes(dir: &Path, suffix: &str) -> Vec<String> {
    let Ok(rd) = fs::read_dir(dir) else {
        return vec![];
    };
    let mut sizes: Vec<String> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let size = name.strip_prefix("hugetlb.")?.strip_suffix(suffix)?;
            (!size.contains('.')).then(|| size.to_string())
        })
        .collect();
    sizes.sort();
    sizes
}

/// The soft `Max open files` limit in a /proc/<pid>/limits text (None when unlimited).
fn open_files_soft_limit(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// v2 memory.stat's `kernel` (5.18+), or on older kernels the sum of the kernel memory kinds
/// the cgroup v2 documentation says it includes.
fn v2_kernel_memory(stat: &str) -> Option<u64> {
    flat_value(stat, "kernel").or_else(|| {
        ["kernel_stack", "pagetables", "percpu", "vmalloc", "slab"]
            .iter()
            .filter_map(|k| flat_value(stat, k))
            .reduce(|a, b| a + b)
    })
}

impl CgroupDir {
    fn owned(&mut self, name: &str) -> Option<String> {
        self.text(name).map(str::to_owned)
    }
}

impl Hierarchy {
    /// PIDs in cgroup `path` and all its descendants (from the first hierarchy).
    pub fn all_procs(&self, path: &str) -> Vec<i32> {
        let Some(top) = self.dirs(path).into_iter().next() else {
            return vec![];
        };
        let mut pids = Vec::new();
        let mut stack = vec![top];
        while let Some(d) = stack.pop() {
            if let Ok(s) = fs::read_to_string(d.join("cgroup.procs")) {
                pids.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
            if let Ok(rd) = fs::read_dir(&d) {
                stack.extend(
                    rd.flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
        }
        pids
    }

    /// [`TaskStats`] of cgroup `path`, whose first process is `init_pid`.
    pub fn task_stats(&self, path: &str, init_pid: i32) -> TaskStats {
        use std::os::unix::ffi::OsStrExt;
        let pids = self.all_procs(path);
        let mut t = TaskStats {
            processes: pids.len() as u64,
            ..Default::default()
        };
        for pid in pids {
            let Ok(rd) = fs::read_dir(format!("/proc/{pid}/fd")) else {
                continue;
            };
            for e in rd.flatten() {
                t.file_descriptors += 1;
                if fs::read_link(e.path())
                    .is_ok_and(|l| l.as_os_str().as_bytes().starts_with(b"socket:"))
                {
                    t.sockets += 1;
                }
            }
        }
        if init_pid > 0 {
            t.open_files_soft_limit = fs::read_to_string(format!("/proc/{init_pid}/limits"))
                .ok()
                .and_then(|l| open_files_soft_limit(&l));
        }
        t
    }

    /// [`CgroupDetail`] of cgroup `path`, whose first process is `init_pid`.
    pub fn detail(&self, path: &str, init_pid: i32) -> CgroupDetail {
        let rel = path.trim_start_matches('/');
        let mut s = CgroupDetail {
            tasks: self.task_stats(path, init_pid),
            ..Default::default()
        };
        match self {
            Hierarchy::V2 { root } => {
                let dir = root.join(rel);
                let Some(mut d) = CgroupDir::open(&dir) else {
                    return s;
                };
                let cpu = d.owned("cpu.stat").unwrap_or_default();
                s.cpu_user_ns = flat_value(&cpu, "user_usec").map(|v| v.saturating_mul(1000));
                s.cpu_system_ns = flat_value(&cpu, "system_usec").map(|v| v.saturating_mul(1000));
                if let Some((quota, period)) = d.text("cpu.max").and_then(parse_cpu_max) {
                    s.spec.cpu_quota = quota;
                    s.spec.cpu_period = Some(period);
                }
                s.spec.cpu_shares = d.u64("cpu.weight").and_then(weight_to_shares);
                if s.spec.cpu_quota.is_some() {
                    s.cfs = cfs(&cpu, "throttled_usec", 1000);
                }
                if let Some(m) = d.owned("memory.stat") {
                    s.memory_cache = flat_value(&m, "file");
                    s.memory_mapped_file = flat_value(&m, "file_mapped");
                    s.memory_kernel = v2_kernel_memory(&m);
                    let faults = flat_value(&m, "pgfault").zip(flat_value(&m, "pgmajfault"));
                    s.faults_container = faults;
                    s.faults_hierarchy = faults;
                }
                s.memory_swap = d.u64("memory.swap.current");
                s.memory_max_usage = d.u64("memory.peak");
                if let Some(ev) = d.owned("memory.events") {
                    s.memory_failcnt = flat_value(&ev, "max");
                    s.oom_kills = flat_value(&ev, "oom_kill");
                }
                s.threads = d.u64("pids.current");
                s.threads_max = d.text("pids.max").and_then(limit_value);
                s.spec.memory_limit = d.text("memory.max").and_then(limit_value);
                s.spec.memory_reservation = d.text("memory.min").and_then(limit_value);
                s.spec.memory_swap_limit = d.text("memory.swap.max").and_then(limit_value);
                if let Some(io) = d.text("io.stat") {
                    (s.io_bytes, s.io_ops) = parse_io_stat(io);
                }
                s.hugetlb = hugetlb_sizes(&dir, ".current")
                    .into_iter()
                    .filter_map(|size| {
                        Some(HugetlbUsage {
                            usage: d.u64(&format!("hugetlb.{size}.current"))?,
                            max_usage: None,
                            pagesize: size,
                        })
                    })
                    .collect();
            }
            Hierarchy::V1 { mounts } => {
                let open = |c: &str| v1_dir(mounts, c, rel).and_then(|d| CgroupDir::open(&d));
                if let Some(mut d) = open("cpuacct") {
                    s.cpu_user_ns = d.u64("cpuacct.usage_user");
                    s.cpu_system_ns = d.u64("cpuacct.usage_sys");
                    if s.cpu_user_ns.is_none() {
                        // Older kernels: cpuacct.stat, in clock ticks.
                        // SAFETY: sysconf only reads a configuration value.
                        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
                        if let (Some(stat), true) = (d.owned("cpuacct.stat"), hz > 0) {
                            let ns = |ticks: u64| ticks.saturating_mul(1_000_000_000) / hz as u64;
                            s.cpu_user_ns = flat_value(&stat, "user").map(ns);
                            s.cpu_system_ns = flat_value(&stat, "system").map(ns);
                        }
                    }
                }
                if let Some(mut d) = open("cpu") {
                    s.spec.cpu_quota = d
                        .text("cpu.cfs_quota_us")
                        .and_then(|q| q.trim().parse::<i64>().ok())
                        .filter(|q| *q > 0)
                        .map(|q| q as u64);
                    s.spec.cpu_period = d.u64("cpu.cfs_period_us");
                    s.spec.cpu_shares = d.u64("cpu.shares");
                    if s.spec.cpu_quota.is_some() {
                        s.cfs = cfs(
                            &d.owned("cpu.stat").unwrap_or_default(),
                            "throttled_time",
                            1,
                        );
                    }
                }
                if let Some(mut d) = open("memory") {
                    if let Some(m) = d.owned("memory.stat") {
                        s.memory_cache = flat_value(&m, "total_cache");
                        s.memory_mapped_file = flat_value(&m, "total_mapped_file");
                        s.faults_container =
                            flat_value(&m, "pgfault").zip(flat_value(&m, "pgmajfault"));
                        s.faults_hierarchy =
                            flat_value(&m, "total_pgfault").zip(flat_value(&m, "total_pgmajfault"));
                    }
                    s.memory_kernel = d.u64("memory.kmem.usage_in_bytes");
                    s.memory_max_usage = d.u64("memory.max_usage_in_bytes");
                    s.memory_failcnt = d.u64("memory.failcnt");
                    s.oom_kills = d
                        .text("memory.oom_control")
                        .and_then(|t| flat_value(t, "oom_kill"));
                    let usage = d.u64("memory.usage_in_bytes");
                    s.memory_swap = d
                        .u64("memory.memsw.usage_in_bytes")
                        .zip(usage)
                        .map(|(memsw, usage)| memsw.saturating_sub(usage));
                    s.spec.memory_limit = d.text("memory.limit_in_bytes").and_then(limit_value);
                    s.spec.memory_reservation =
                        d.text("memory.soft_limit_in_bytes").and_then(limit_value);
                    s.spec.memory_swap_limit =
                        d.text("memory.memsw.limit_in_bytes").and_then(limit_value);
                }
                if let Some(mut d) = open("pids") {
                    s.threads = d.u64("pids.current");
                    s.threads_max = d.text("pids.max").and_then(limit_value);
                }
                if let Some(mut d) = open("blkio") {
                    // The CFQ/BFQ files where an I/O scheduler fills them, else the throttle
                    // layer's (which counts every bio, whatever the scheduler).
                    let mut first = |names: [&str; 2]| {
                        names
                            .iter()
                            .map(|n| d.text(n).map(parse_blkio).unwrap_or_default())
                            .find(|v| !v.is_empty())
                            .unwrap_or_default()
                    };
                    s.io_bytes = first([
                        "blkio.io_service_bytes_recursive",
                        "blkio.throttle.io_service_bytes_recursive",
                    ]);
                    s.io_ops = first([
                        "blkio.io_serviced_recursive",
                        "blkio.throttle.io_serviced_recursive",
                    ]);
                }
                if let Some(dir) = v1_dir(mounts, "hugetlb", rel)
                    && let Some(mut d) = CgroupDir::open(&dir)
                {
                    s.hugetlb = hugetlb_sizes(&dir, ".usage_in_bytes")
                        .into_iter()
                        .filter_map(|size| {
                            Some(HugetlbUsage {
                                usage: d.u64(&format!("hugetlb.{size}.usage_in_bytes"))?,
                                max_usage: d.u64(&format!("hugetlb.{size}.max_usage_in_bytes")),
                                pagesize: size,
                            })
                        })
                        .collect();
                }
            }
        }
        name_devices(&mut s.io_bytes);
        name_devices(&mut s.io_ops);
        s
    }
}

/// CFS counters from a cpu.stat text, its throttled-time key counted in units of `unit_ns`.
fn cfs(cpu_stat: &str, throttled_key: &str, unit_ns: u64) -> Option<Cfs> {
    Some(Cfs {
        periods: flat_value(cpu_stat, "nr_periods")?,
        throttled_periods: flat_value(cpu_stat, "nr_throttled")?,
        throttled_ns: flat_value(cpu_stat, throttled_key)?.saturating_mul(unit_ns),
    })
}

fn mkdir_new(p: &Path) -> io::Result<bool> {
    match fs::create_dir(p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Enables in `dir`'s subtree every controller crust uses that `dir` has. Failures are left to
/// surface when a limit is written, with a clearer message than this could give.
fn enable_v2_controllers(dir: &Path) {
    let Ok(available) = fs::read_to_string(dir.join("cgroup.controllers")) else {
        return;
    };
    let wanted: Vec<String> = available
        .split_whitespace()
        .filter(|c| matches!(*c, "cpu" | "cpuset" | "memory" | "pids" | "io" | "hugetlb"))
        .map(|c| format!("+{c}"))
        .collect();
    if !wanted.is_empty() {
        let _ = fs::write(dir.join("cgroup.subtree_control"), wanted.join(" "));
    }
}

/// The cgroup driver kubelet uses: cgroupfs paths, or systemd slice names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Driver {
    #[default]
    Cgroupfs,
    /// kubelet sends slice names (`kubepods-besteffort-pod<uid>.slice`); crust expands them
    /// to the cgroup tree systemd uses and names container cgroups `crust-<id>.scope`. The
    /// cgroups are made through cgroupfs: crust does not register units over D-Bus.
    Systemd,
}

impl Driver {
    /// The pod's cgroup path for a CRI `cgroup_parent` under this driver.
    pub fn pod_cgroup(self, cgroup_parent: &str) -> io::Result<String> {
        match self {
            Driver::Cgroupfs => {
                validate_path(cgroup_parent)?;
                Ok(cgroup_parent.to_string())
            }
            Driver::Systemd => expand_slice(cgroup_parent),
        }
    }

    /// A container's cgroup below its pod's.
    pub fn container_cgroup(self, pod_cgroup: &str, id: &str) -> String {
        match self {
            Driver::Cgroupfs => format!("{pod_cgroup}/{id}"),
            Driver::Systemd => format!("{pod_cgroup}/crust-{id}.scope"),
        }
    }
}

/// systemd's slice naming: `a-b-c.slice` lives at `/a.slice/a-b.slice/a-b-c.slice`.
pub fn expand_slice(slice: &str) -> io::Result<String> {
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("systemd slice {slice:?}: {why}"),
        )
    };
    let name = slice
        .strip_suffix(".slice")
        .ok_or_else(|| bad("must end in .slice"))?;
    if name == "-" {
        return Ok("/".to_string());
    }
    if name.is_empty()
        || name.starts_with('-')
        || name.ends_with('-')
        || name.contains("--")
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(bad("not a valid slice name"));
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in name.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push_str(&format!("/{prefix}.slice"));
    }
    validate_path(&path)?;
    Ok(path)
}

/// A cgroup path must be absolute with plain components: it becomes directories on the host.
pub fn validate_path(path: &str) -> io::Result<()> {
    let ok = path.starts_with('/')
        && path.len() > 1
        && path.len() <= MAX_PATH
        && path[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0') && c.len() <= 255);
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cgroup path {path:?} must be absolute, at most {MAX_PATH} bytes, with no empty, '.' or '..' components and none over 255 bytes"
            ),
        ))
    }
}

/// The longest cgroup path accepted: room under PATH_MAX for the hierarchy's mount point and
/// a container's own cgroup below it.
const MAX_PATH: usize = 2048;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_convert_to_weights_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(512), 59);
        assert_eq!(shares_to_weight(1024), 100);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(0), 0);
    }

    #[test]
    fn slices_expand_like_systemd() {
        assert_eq!(
            expand_slice("kubepods-besteffort-pod12_34.slice").unwrap(),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12_34.slice"
        );
        assert_eq!(expand_slice("system.slice").unwrap(), "/system.slice");
        for bad in [
            "kubepods",
            "-a.slice",
            "a--b.slice",
            "a/b.slice",
            "../x.slice",
            ".slice",
        ] {
            assert!(expand_slice(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Driver::Systemd.container_cgroup("/k.slice", "ab"),
            "/k.slice/crust-ab.scope"
        );
        assert_eq!(
            Driver::Cgroupfs.container_cgroup("/crust/p", "ab"),
            "/crust/p/ab"
        );
    }

    #[test]
    fn cgroup_paths_are_validated() {
        assert!(validate_path("/crust/abc").is_ok());
        for bad in ["", "/", "relative", "/a/../b", "/a//b", "/a/./b"] {
            assert!(validate_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pressure_files_parse() {
        let p = Pressure::parse(
            "some avg10=1.50 avg60=0.25 avg300=0.00 total=1234\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=56\n",
        )
        .unwrap();
        assert_eq!(p.some.total_us, 1234);
        assert_eq!(p.some.avg10, 1.5);
        assert_eq!(p.some.avg60, 0.25);
        assert_eq!(p.full.total_us, 56);
        assert_eq!(Pressure::parse(""), None);
    }

    #[test]
    fn flat_keyed_files_and_limits_parse() {
        let stat = "nr_periods 10\nnr_throttled 3\nthrottled_time 2500\nbad x\n";
        assert_eq!(flat_value(stat, "nr_throttled"), Some(3));
        assert_eq!(flat_value(stat, "nr_thr"), None);
        assert_eq!(flat_value(stat, "bad"), None);
        assert_eq!(
            cfs(stat, "throttled_time", 1),
            Some(Cfs {
                periods: 10,
                throttled_periods: 3,
                throttled_ns: 2500
            })
        );
        assert_eq!(cfs("nr_periods 1\n", "throttled_usec", 1000), None);
        assert_eq!(limit_value("max\n"), Some(0));
        assert_eq!(limit_value("9223372036854771712\n"), Some(0));
        assert_eq!(limit_value("67108864\n"), Some(64 << 20));
        assert_eq!(limit_value("-1"), None);
        assert_eq!(
            parse_cpu_max("20000 100000\n"),
            Some((Some(20_000), 100_000))
        );
        assert_eq!(parse_cpu_max("max 100000\n"), Some((None, 100_000)));
        assert_eq!(parse_cpu_max("max"), None);
        assert_eq!(weight_to_shares(1), Some(2));
        assert_eq!(weight_to_shares(10_000), Some(262_144));
        assert_eq!(weight_to_shares(0), None);
        assert_eq!(v2_kernel_memory("anon 5\nkernel 70\nslab 10\n"), Some(70));
        assert_eq!(
            v2_kernel_memory("kernel_stack 1\npagetables 2\npercpu 4\nslab 8\nsock 100\n"),
            Some(15)
        );
        assert_eq!(v2_kernel_memory("anon 5\n"), None);
    }

    #[test]
    fn block_io_files_parse() {
        let v1 = "8:0 Read 4096\n8:0 Write 512\n8:0 Total 4608\n253:1 Read 7\nTotal 4615\n";
        let ios = parse_blkio(v1);
        assert_eq!(ios.len(), 4);
        assert_eq!((ios[1].major, ios[1].minor), (8, 0));
        assert_eq!((ios[1].operation.as_str(), ios[1].value), ("Write", 512));
        assert_eq!((ios[3].major, ios[3].minor, ios[3].value), (253, 1, 7));
        let (bytes, ops) = parse_io_stat(
            "8:16 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n254:0 rbytes=5\n",
        );
        let view = |v: &[DeviceIo]| {
            v.iter()
                .map(|i| (i.minor, i.operation.clone(), i.value))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            view(&bytes),
            vec![
                (16, "Read".into(), 100),
                (16, "Write".into(), 200),
                (16, "Discard".into(), 0),
                (0, "Read".into(), 5),
            ]
        );
        assert_eq!(
            view(&ops),
            vec![
                (16, "Read".into(), 1),
                (16, "Write".into(), 2),
                (16, "Discard".into(), 0)
            ]
        );
        let mut unnamed = parse_blkio("4095:4095 Read 1\n");
        name_devices(&mut unnamed);
        assert_eq!(unnamed[0].device, "4095:4095");
    }

    #[test]
    fn limits_and_hugetlb_files_parse() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max cpu time              unlimited            unlimited            seconds\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(open_files_soft_limit(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(open_files_soft_limit(unlimited), None);
        assert_eq!(open_files_soft_limit(""), None);

        let dir = tempfile::tempdir().unwrap();
        for f in [
            "hugetlb.2MB.current",
            "hugetlb.2MB.rsvd.current",
            "hugetlb.1GB.current",
            "hugetlb.1GB.max",
            "memory.current",
        ] {
            fs::write(dir.path().join(f), "0\n").unwrap();
        }
        assert_eq!(hugetlb_sizes(dir.path(), ".current"), vec!["1GB", "2MB"]);
        assert!(hugetlb_sizes(dir.path(), ".usage_in_bytes").is_empty());
    }

    #[test]
    fn processes_are_counted_with_their_descriptors() {
        // A stand-in cgroup tree holding this test process, in a child cgroup too.
        let root = tempfile::tempdir().unwrap();
        let me = std::process::id();
        fs::create_dir_all(root.path().join("pod/ctr/sub")).unwrap();
        fs::write(root.path().join("pod/ctr/cgroup.procs"), format!("{me}\n")).unwrap();
        fs::write(
            root.path().join("pod/ctr/sub/cgroup.procs"),
            format!("{me}\n"),
        )
        .unwrap();
        let _socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let h = Hierarchy::V2 {
            root: root.path().to_path_buf(),
        };
        assert_eq!(h.all_procs("/pod/ctr"), vec![me as i32, me as i32]);
        assert_eq!(h.process_count("/pod"), 2);
        let t = h.task_stats("/pod/ctr", me as i32);
        assert_eq!(t.processes, 2);
        assert!(t.file_descriptors >= 6, "{t:?}");
        assert!(t.sockets >= 2, "{t:?}");
        assert!(t.sockets < t.file_descriptors, "{t:?}");
        assert!(t.open_files_soft_limit.is_some_and(|l| l > 0), "{t:?}");
        assert_eq!(h.task_stats("/pod/none", 0), TaskStats::default());
    }

    #[test]
    fn controllers_are_found_as_mounted() {
        let v1 = Hierarchy::V1 {
            mounts: vec![("memory".into(), PathBuf::from("/sys/fs/cgroup/memory"))],
        };
        assert!(v1.has_controller("memory"));
        assert!(!v1.has_controller("hugetlb"));
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        let v2 = Hierarchy::V2 {
            root: dir.path().to_path_buf(),
        };
        assert!(v2.has_controller("pids"));
        assert!(!v2.has_controller("hugetlb"));
    }

    #[test]
    fn detect_finds_a_hierarchy() {
        let h = Hierarchy::detect().unwrap();
        match &h {
            Hierarchy::V1 { mounts } => assert!(mounts.iter().any(|(c, _)| c == "memory")),
            Hierarchy::V2 { root } => assert!(root.join("cgroup.controllers").exists()),
        }
    }
}
