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
        let Some(top) = self.dirs(path).into_iter().next() else {
            return 0;
        };
        let mut count = 0;
        let mut stack = vec![top];
        while let Some(d) = stack.pop() {
            if let Ok(s) = fs::read_to_string(d.join("cgroup.procs")) {
                count += s.lines().filter(|l| !l.trim().is_empty()).count() as u64;
            }
            if let Ok(rd) = fs::read_dir(&d) {
                stack.extend(
                    rd.flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
        }
        count
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
    fn detect_finds_a_hierarchy() {
        let h = Hierarchy::detect().unwrap();
        match &h {
            Hierarchy::V1 { mounts } => assert!(mounts.iter().any(|(c, _)| c == "memory")),
            Hierarchy::V2 { root } => assert!(root.join("cgroup.controllers").exists()),
        }
    }
}
