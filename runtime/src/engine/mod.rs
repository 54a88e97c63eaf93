//! The engine: pods and containers over images, monitors, cgroups and records. Each object has
//! its own lock; the indexes are only held to look objects up.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use crust_proto::cri;
use crust_proto::monitor::{CreateRequest, ErrorKind, ExitRecord, Reply, Request};

use crate::cgroups::Hierarchy;
use crate::container::{rootfs, spec, user};
use crate::error::{Error, IoContext, Result};
use crate::image::{Credentials, ImageRecord, ImageStore, ImageStoreConfig, RegistryConfig};
use crate::monitor::MonitorError;
use crate::monitor::client::{self, MonitorLauncher};
use crate::store::{
    ContainerRecord, ContainerState, PodRecord, PodState, Store, container_name_key, pod_name_key,
};
use crate::{fsutil, ids, now_nanos, pod};

mod build_run;
mod container_create;
mod container_run;
mod exits;
mod monitor_cgroup;
mod pod_lifecycle;
mod pod_network;
mod rename;
pub mod signals;
mod streams;
mod usage;
pub use streams::{AttachSession, ExecSession};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Persistent data (images, records, container layers).
    pub root: PathBuf,
    /// Runtime state (monitor sockets, pinned namespaces, exit records).
    pub state: PathBuf,
    /// Parent cgroup of pods that arrive without a `cgroup_parent`.
    pub cgroup_root: String,
    /// How `cgroup_parent` is spelled (cgroupfs paths or systemd slices).
    pub cgroup_driver: crate::cgroups::Driver,
    pub registry: RegistryConfig,
    /// Size of each pod's /dev/shm tmpfs, in bytes.
    pub shm_size: u64,
    /// Names accepted as CRI runtime handlers (RuntimeClass), besides the default "".
    pub runtime_handlers: Vec<String>,
    /// CNI configuration; None runs every pod with loopback only.
    pub cni: Option<crate::network::CniConfig>,
    pub max_concurrent_downloads: usize,
    pub pinned_images: Vec<String>,
    pub launcher: MonitorLauncher,
    /// The seccomp profile of containers whose request names none.
    pub seccomp_default: crate::container::security::SeccompChoice,
    /// Directories searched for CDI device specs.
    pub cdi_spec_dirs: Vec<PathBuf>,
}

pub struct Engine {
    cfg: EngineConfig,
    pub images: ImageStore,
    pub store: Store,
    pub hierarchy: Hierarchy,
    min_oom_score_adj: i64,
    apparmor_enabled: bool,
    events: tokio::sync::broadcast::Sender<Event>,
    /// The pod CIDR kubelet last sent (UpdateRuntimeConfig), for status and CNI configs.
    pod_cidr: std::sync::Mutex<String>,
    /// Last CPU sample per container, to turn cumulative usage into a rate.
    cpu_samples: std::sync::Mutex<std::collections::HashMap<String, (i64, u64)>>,
    /// Writable-layer usage per container as last measured (see usage.rs).
    layer_usage: std::sync::Mutex<std::collections::HashMap<String, (u64, u64)>>,
    /// When a stats list last used those samples (nanoseconds since the epoch).
    layer_usage_wanted: std::sync::atomic::AtomicU64,
    /// Host ports of pods whose network has no portmap plugin.
    host_ports: crate::network::HostPorts,
    /// Which pod holds which host port (whoever publishes it).
    host_port_claims: crate::network::HostPortClaims,
}

/// A lifecycle change of a container, or of a pod sandbox (then `container_id` is the pod id,
/// as containerd reports them).
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    pub container_id: String,
    pub pod_id: String,
    pub at: i64,
    /// For Deleted events: the pod's record as it was, since it may be gone by the time a
    /// subscriber turns the event into statuses (kubelet's Evented PLEG drops its cache entry
    /// only on a sandbox's deletion that carries the sandbox's status).
    pub pod: Option<Box<PodRecord>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Started,
    Stopped,
    Deleted,
}

/// What ExecSync returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// A container's resource usage at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerUsage {
    pub timestamp: i64,
    pub cgroup: crate::cgroups::CgroupStats,
    /// CPU rate since the previous sample, in nanocores (None on the first sample).
    pub nano_cores: Option<u64>,
    pub writable_bytes: u64,
    pub writable_inodes: u64,
    pub writable_mountpoint: String,
}

/// A pod's resource usage: its cgroup, its network interfaces, and its running containers.
#[derive(Debug, Clone, Default)]
pub struct PodUsage {
    pub timestamp: i64,
    pub cgroup: crate::cgroups::CgroupStats,
    pub nano_cores: Option<u64>,
    pub process_count: u64,
    /// (interface, rx bytes, rx errors, tx bytes, tx errors) from the pod's network namespace.
    pub interfaces: Vec<(String, u64, u64, u64, u64)>,
    pub containers: Vec<(ContainerRecord, ContainerUsage)>,
}

/// Parses /proc/<pid>/net/dev: per interface (rx bytes, rx errors, tx bytes, tx errors).
pub fn parse_net_dev(text: &str) -> Vec<(String, u64, u64, u64, u64)> {
    usage::parse_net_dev_counters(text)
        .into_iter()
        .map(|(name, c)| (name, c[0], c[2], c[4], c[6]))
        .collect()
}

/// Subscribers that fall this far behind lose the oldest events rather than slow the runtime.
const EVENT_BUFFER: usize = 1024;

const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
const SHORT_TIMEOUT: Duration = Duration::from_secs(30);
/// In a pod's state dir while RunPodSandbox runs: the record-to-be (see `run_pod`).
const PENDING_FILE: &str = "pending.json";

fn require<T>(v: Option<T>, field: &str) -> Result<T> {
    v.ok_or_else(|| Error::InvalidArgument(format!("{field} is required")))
}

fn monitor_err(e: MonitorError) -> Error {
    match e {
        MonitorError::Remote {
            kind: ErrorKind::NotFound,
            message,
        } => Error::NotFound(message),
        MonitorError::Remote {
            kind: ErrorKind::InvalidState,
            message,
        } => Error::FailedPrecondition(message),
        MonitorError::Remote {
            kind: ErrorKind::InvalidArgument,
            message,
        } => Error::InvalidArgument(message),
        other => Error::Monitor(other),
    }
}

impl Engine {
    pub fn open(cfg: EngineConfig) -> Result<Self> {
        for d in [
            &cfg.root,
            &cfg.state,
            &cfg.state.join("pods"),
            &cfg.state.join("exits"),
        ] {
            fsutil::ensure_private_dir(d).ctx(|| format!("create {}", d.display()))?;
        }
        crate::cgroups::validate_path(&cfg.cgroup_root)
            .map_err(|e| Error::InvalidArgument(format!("cgroup_root: {e}")))?;
        let images = ImageStore::open(ImageStoreConfig {
            root: cfg.root.clone(),
            registry: cfg.registry.clone(),
            max_concurrent_downloads: cfg.max_concurrent_downloads,
            pinned: cfg.pinned_images.clone(),
        })?;
        let store = Store::open(&cfg.root)?;
        let hierarchy = Hierarchy::detect().ctx(|| "detect cgroup hierarchy".into())?;
        let engine = Engine {
            cfg,
            images,
            store,
            hierarchy,
            min_oom_score_adj: spec::min_oom_score_adj(),
            apparmor_enabled: crate::container::security::apparmor_enabled(),
            events: tokio::sync::broadcast::channel(EVENT_BUFFER).0,
            pod_cidr: std::sync::Mutex::new(String::new()),
            cpu_samples: std::sync::Mutex::new(std::collections::HashMap::new()),
            layer_usage: std::sync::Mutex::new(std::collections::HashMap::new()),
            layer_usage_wanted: std::sync::atomic::AtomicU64::new(0),
            host_ports: Default::default(),
            host_port_claims: Default::default(),
        };
        engine.make_monitors_cgroup();
        Ok(engine)
    }

    /// After a restart: containers that exited while the daemon was away get their recorded
    /// exit; pods whose state dir is gone (a reboot) become NotReady.
    pub async fn recover(&self) {
        self.undo_interrupted_pod_setups().await;
        self.undo_interrupted_container_setups();
        let mut orphaned = std::collections::HashSet::new();
        for pod in self.store.all_pods() {
            let mut p = pod.lock().await;
            if p.state == PodState::Ready && !client::is_alive(&self.pod_dir(&p.id)).await {
                tracing::warn!(pod = %p.id, "pod monitor is gone; marking the pod NotReady");
                p.state = PodState::NotReady;
                let _ = self.store.save_pod(&p);
            }
            if p.state == PodState::NotReady {
                orphaned.insert(p.id.clone());
            }
        }
        for c in self.store.all_containers() {
            let mut c = c.lock().await;
            self.refresh(&mut c);
            if orphaned.contains(&c.pod_id) {
                self.reap_orphan(&mut c).await;
            }
        }
    }

    /// Pods whose RunPodSandbox never finished (the daemon died during it) have a note and no
    /// record: whatever setup made for them (network, monitor, mounts, cgroup) is undone.
    async fn undo_interrupted_pod_setups(&self) {
        let Ok(dirs) = std::fs::read_dir(self.cfg.state.join("pods")) else {
            return;
        };
        for dir in dirs.flatten() {
            let note = dir.path().join(PENDING_FILE);
            let Ok(Some(rec)) = fsutil::read_json::<PodRecord>(&note) else {
                continue;
            };
            if self.store.pod(&rec.id).is_some() {
                // Saved just before the crash: only the note was left.
                let _ = std::fs::remove_file(&note);
                continue;
            }
            tracing::warn!(pod = %rec.id, "undoing a RunPodSandbox the daemon did not finish");
            // ADD may have run without its result being kept: DEL by the pod's identity, which
            // is what IPAM plugins key their allocations on.
            if let (Some(cni), false) = (&self.cfg.cni, rec.host_network()) {
                self.remove_host_ports(&rec).await;
                if let Ok(list) = cni.load()
                    && let Err(e) = cni.del(&list, &self.cni_args(&rec), None).await
                {
                    tracing::warn!(pod = %rec.id, err = %e, "CNI DEL of an interrupted pod failed");
                }
            }
            self.teardown_pod_resources(&rec).await;
        }
    }

    /// Container directories without a record: CreateContainer was cut short before it saved
    /// one (the record is written before the monitor creates anything, so no process exists).
    /// Their rootfs mount and directories go.
    fn undo_interrupted_container_setups(&self) {
        let Ok(dirs) = std::fs::read_dir(self.store.containers_root()) else {
            return;
        };
        for dir in dirs.flatten() {
            let id = dir.file_name().to_string_lossy().into_owned();
            if self.store.container(&id).is_some() || !dir.path().is_dir() {
                continue;
            }
            tracing::warn!(container = %id, "undoing a CreateContainer the daemon did not finish");
            let _ = rootfs::unmount(&rootfs::RootfsDirs::in_bundle(&dir.path()));
            let _ = fsutil::remove_dir_all_if_exists(&dir.path());
            let _ = fsutil::remove_file_if_exists(&self.exit_file(&id));
        }
    }

    /// A container whose monitor is gone can be neither logged nor reaped: end whatever is
    /// left of it (its own cgroup holds only its processes) and record it as exited.
    async fn reap_orphan(&self, c: &mut ContainerRecord) {
        if !matches!(c.state, ContainerState::Running | ContainerState::Created) {
            return;
        }
        let pod_cgroup = match self.store.pod(&c.pod_id) {
            Some(p) => p.lock().await.cgroup_path.clone(),
            None => return,
        };
        let cgroup = self.cfg.cgroup_driver.container_cgroup(&pod_cgroup, &c.id);
        for _ in 0..50 {
            let pids = self.hierarchy.procs(&cgroup);
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::warn!(id = %c.id, "container lost its monitor; killed and marked exited");
        c.state = ContainerState::Exited;
        c.finished_at = now_nanos();
        c.exit_code = 255;
        c.reason = "Unknown".into();
        c.message =
            "the pod monitor died; the container was killed because nothing could supervise it"
                .into();
        if let Err(e) = self.store.save_container(c) {
            tracing::warn!(id = %c.id, err = %e, "cannot persist exit");
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// kubelet resized the pod (UpdatePodSandboxResources): remember the new resources and,
    /// for a pod cgroup crust owns, apply them.
    pub async fn update_pod_resources(
        &self,
        id: &str,
        overhead: Option<cri::LinuxContainerResources>,
        resources: Option<cri::LinuxContainerResources>,
    ) -> Result<()> {
        let id = Store::find_id(&self.store.pods, id, "pod sandbox")?;
        let pod = self
            .store
            .pod(&id)
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {id} not found")))?;
        let mut p = pod.lock().await;
        // Worked out on a copy: a refused limit leaves the record as it was.
        let mut linux = p.config.linux.clone().unwrap_or_default();
        if overhead.is_some() {
            linux.overhead = overhead;
        }
        if resources.is_some() {
            linux.resources = resources;
        }
        let limits = pod_limits(linux.resources.as_ref(), linux.overhead.as_ref());
        check_memory_limit("resources plus overhead", limits.memory.unwrap_or(0))?;
        if p.owns_cgroup && p.state == PodState::Ready && limits != Default::default() {
            self.hierarchy
                .set_limits(&p.cgroup_path, &limits)
                .map_err(|e| limit_error(&format!("limit pod cgroup {}", p.cgroup_path), e))?;
        }
        p.config.linux = Some(linux);
        self.store.save_pod(&p)
    }

    /// Changes a created or running container's limits in place (kubelet's in-place resize),
    /// writing its cgroup directly, then records them for ContainerStatus.
    pub async fn update_container_resources(
        &self,
        id: &str,
        res: cri::LinuxContainerResources,
    ) -> Result<()> {
        let c = self.container_shared(id).await?;
        let mut c = c.lock().await;
        self.refresh(&mut c);
        if !matches!(c.state, ContainerState::Created | ContainerState::Running) {
            return Err(Error::FailedPrecondition(format!(
                "container {} is {:?}; only a created or running container can be updated",
                c.id, c.state
            )));
        }
        let pod_cgroup = self.pod_cgroup(&c.pod_id).await?;
        check_memory_limit("linux", res.memory_limit_in_bytes)?;
        for (k, v) in &res.unified {
            crate::cgroups::validate_unified(k, v)
                .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        }
        let positive = |v: i64| (v > 0).then_some(v);
        let limits = crate::cgroups::Limits {
            memory: positive(res.memory_limit_in_bytes),
            cpu_quota: positive(res.cpu_quota),
            cpu_period: positive(res.cpu_period).map(|p| p as u64),
            cpu_shares: positive(res.cpu_shares).map(|s| s as u64),
            cpuset_cpus: (!res.cpuset_cpus.is_empty()).then(|| res.cpuset_cpus.clone()),
            cpuset_mems: (!res.cpuset_mems.is_empty()).then(|| res.cpuset_mems.clone()),
            unified: res.unified.clone().into_iter().collect(),
        };
        let path = self.cfg.cgroup_driver.container_cgroup(&pod_cgroup, &c.id);
        self.hierarchy
            .set_limits(&path, &limits)
            .map_err(|e| limit_error(&format!("update cgroup {path}"), e))?;
        c.config
            .linux
            .get_or_insert_with(Default::default)
            .resources = Some(res);
        self.store.save_container(&c)
    }

    /// Records the node's pod CIDR (kubelet's UpdateRuntimeConfig). Empty clears it.
    pub fn set_pod_cidr(&self, cidr: &str) -> Result<()> {
        if !cidr.is_empty() {
            let (ip, prefix) = cidr.split_once('/').ok_or_else(|| {
                Error::InvalidArgument(format!("pod CIDR {cidr:?} is not ADDRESS/PREFIX"))
            })?;
            let ip: std::net::IpAddr = ip.parse().map_err(|_| {
                Error::InvalidArgument(format!("pod CIDR {cidr:?} has no valid address"))
            })?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            if !prefix.parse::<u8>().is_ok_and(|p| p <= max) {
                return Err(Error::InvalidArgument(format!(
                    "pod CIDR {cidr:?} has no valid prefix length"
                )));
            }
        }
        *self.pod_cidr.lock().expect("pod cidr lock") = cidr.to_string();
        Ok(())
    }

    pub fn pod_cidr(&self) -> String {
        self.pod_cidr.lock().expect("pod cidr lock").clone()
    }

    /// A stream of lifecycle events from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn emit(&self, kind: EventKind, container_id: &str, pod_id: &str) {
        self.emit_with(kind, container_id, pod_id, None);
    }

    fn emit_with(&self, kind: EventKind, container_id: &str, pod_id: &str, pod: Option<PodRecord>) {
        // No subscriber is not an error: events are only for those listening.
        let _ = self.events.send(Event {
            kind,
            container_id: container_id.to_string(),
            pod_id: pod_id.to_string(),
            at: now_nanos(),
            pod: pod.map(Box::new),
        });
    }

    /// Records an exit and tells subscribers.
    fn mark_exited(&self, c: &mut ContainerRecord, exit: &ExitRecord) {
        apply_exit(c, exit);
        crate::metrics::engine().container_exit(&c.reason, exit.oom_killed);
        self.emit(EventKind::Stopped, &c.id, &c.pod_id);
    }

    pub fn pod_dir(&self, id: &str) -> PathBuf {
        self.cfg.state.join("pods").join(id)
    }

    /// Where monitors record exits: one dir for all, so one inotify watch sees them all.
    fn exits_dir(&self) -> PathBuf {
        self.cfg.state.join("exits")
    }

    fn exit_file(&self, id: &str) -> PathBuf {
        self.exits_dir().join(format!("{id}.json"))
    }

    // ---------------------------------------------------------------- images

    pub async fn pull_image(&self, name: &str, creds: Credentials) -> Result<ImageRecord> {
        Ok(self.images.pull(name, creds).await?)
    }

    pub fn image_status(&self, name: &str) -> Result<Option<ImageRecord>> {
        Ok(self.images.resolve(name)?)
    }

    pub async fn remove_image(&self, name: &str) -> Result<()> {
        let mut in_use = Vec::new();
        for c in self.store.all_containers() {
            in_use.extend(c.lock().await.chain_ids.clone());
        }
        self.images.remove(name, &in_use)?;
        Ok(())
    }

    // ---------------------------------------------------------------- pods and containers
    // (their lifecycles: pod_lifecycle.rs, pod_network.rs, container_create.rs,
    // container_run.rs)

    /// Bytes and inodes of all containers' writable layers and image volumes (never their
    /// mounted rootfs, which is image content), with the directory holding them.
    pub fn writable_layers_usage(&self) -> (PathBuf, (u64, u64)) {
        let root = self.store.containers_root().to_path_buf();
        let mut total = (0, 0);
        if let Ok(rd) = std::fs::read_dir(&root) {
            for e in rd.flatten() {
                for part in ["upper", "volumes"] {
                    let (b, i) = crate::image::unpack::disk_usage(&e.path().join(part));
                    total.0 += b;
                    total.1 += i;
                }
            }
        }
        (root, total)
    }

    /// The pod's pinned network namespace path (for status and CNI).
    pub fn netns_path(&self, pod_id: &str) -> PathBuf {
        crate::monitor::pin::ns_path(&self.pod_dir(pod_id), "net")
    }
}

/// The kernel's limits on what a process is started with: each argument or environment
/// string at most MAX_ARG_STRLEN (32 pages), all of them well under ARG_MAX, and the executable
/// a path the kernel can take. Checked up front: past them the container's init cannot even
/// report its failure (its message no longer fits libcontainer's channel).
fn exec_fits(c: &cri::ContainerConfig) -> Result<()> {
    const MAX_ARG_STRLEN: usize = 32 * 4096;
    const MAX_TOTAL: usize = 1 << 20;
    let strings = c
        .command
        .iter()
        .map(|s| ("config.command", s.len()))
        .chain(c.args.iter().map(|s| ("config.args", s.len())))
        .chain(
            c.envs
                .iter()
                .map(|kv| ("config.envs", kv.key.len() + kv.value.len() + 1)),
        );
    let mut total = 0;
    for (field, len) in strings {
        if len > MAX_ARG_STRLEN {
            return Err(Error::InvalidArgument(format!(
                "{field} has a {len}-byte string; the kernel takes at most {MAX_ARG_STRLEN}"
            )));
        }
        total += len + 1;
    }
    if total > MAX_TOTAL {
        return Err(Error::InvalidArgument(format!(
            "config.command, args and envs come to {total} bytes; at most {MAX_TOTAL} are taken"
        )));
    }
    if let Some(exe) = c.command.first()
        && (exe.len() >= libc::PATH_MAX as usize
            || exe.split('/').any(|p| p.len() > libc::NAME_MAX as usize))
    {
        return Err(Error::InvalidArgument(format!(
            "the executable name is {} bytes or has a component over {} bytes",
            exe.len(),
            libc::NAME_MAX
        )));
    }
    Ok(())
}

/// The smallest container memory limit accepted (Docker's minimum too): below it a container's
/// init is OOM-killed while it starts, which libcontainer can only report as a broken channel.
const MIN_MEMORY_LIMIT: i64 = 6 << 20;

fn check_memory_limit(field: &str, limit: i64) -> Result<()> {
    if limit > 0 && limit < MIN_MEMORY_LIMIT {
        return Err(Error::InvalidArgument(format!(
            "{field}.memory_limit_in_bytes {limit} is below the minimum of {MIN_MEMORY_LIMIT} bytes"
        )));
    }
    Ok(())
}

/// A limit the kernel refused as malformed or out of range (EINVAL, or E2BIG for a value
/// longer than a cgroup file takes) is the caller's value; one below what the cgroup already
/// uses (EBUSY) cannot be set now; anything else failed.
fn limit_error(what: &str, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::ArgumentListTooLong => {
            Error::InvalidArgument(format!("{what}: {e}"))
        }
        std::io::ErrorKind::ResourceBusy => Error::FailedPrecondition(format!(
            "{what}: {e} (a memory limit below what the cgroup already uses)"
        )),
        _ => Error::io(what.to_string(), e),
    }
}

/// Pod cgroup limits: the pod's resources plus its overhead (RuntimeClass pod overhead).
fn pod_limits(
    resources: Option<&cri::LinuxContainerResources>,
    overhead: Option<&cri::LinuxContainerResources>,
) -> crate::cgroups::Limits {
    // Saturating: the values are the caller's, and resources + overhead may not fit an i64
    // (a plain sum panicked in debug builds and wrapped to "no limit" in release ones).
    let pick = |f: fn(&cri::LinuxContainerResources) -> i64| {
        let v: i64 = [resources, overhead]
            .into_iter()
            .flatten()
            .map(f)
            .filter(|v| *v > 0)
            .fold(0i64, i64::saturating_add);
        (v > 0).then_some(v)
    };
    let period = [resources, overhead]
        .into_iter()
        .flatten()
        .map(|r| r.cpu_period)
        .find(|p| *p > 0);
    crate::cgroups::Limits {
        memory: pick(|r| r.memory_limit_in_bytes),
        cpu_quota: pick(|r| r.cpu_quota),
        cpu_period: period.map(|p| p as u64),
        cpu_shares: pick(|r| r.cpu_shares).map(|s| s as u64),
        ..Default::default()
    }
}

/// Strings that become paths, file contents or a process's argv can't hold a NUL byte: the
/// kernel would cut them short (or refuse them) somewhere deep inside; say so up front. The
/// field's name is only spelled out for the answer.
fn no_nul(value: &str, field: impl FnOnce() -> String) -> Result<()> {
    if value.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "{} contains a NUL byte",
            field()
        )));
    }
    Ok(())
}

fn no_nul_in_pod(c: &cri::PodSandboxConfig) -> Result<()> {
    if let Some(m) = &c.metadata {
        no_nul(&m.name, || "config.metadata.name".into())?;
        no_nul(&m.namespace, || "config.metadata.namespace".into())?;
        no_nul(&m.uid, || "config.metadata.uid".into())?;
    }
    no_nul(&c.hostname, || "config.hostname".into())?;
    no_nul(&c.log_directory, || "config.log_directory".into())?;
    if let Some(dns) = &c.dns_config {
        for v in dns.servers.iter().chain(&dns.searches).chain(&dns.options) {
            no_nul(v, || format!("config.dns_config entry {v:?}"))?;
        }
    }
    if let Some(l) = &c.linux {
        no_nul(&l.cgroup_parent, || "config.linux.cgroup_parent".into())?;
        for (k, v) in &l.sysctls {
            no_nul(k, || format!("config.linux.sysctls[{k:?}]"))?;
            no_nul(v, || format!("config.linux.sysctls[{k:?}]"))?;
        }
    }
    Ok(())
}

fn no_nul_in_container(c: &cri::ContainerConfig) -> Result<()> {
    if let Some(m) = &c.metadata {
        no_nul(&m.name, || "config.metadata.name".into())?;
    }
    no_nul(&c.log_path, || "config.log_path".into())?;
    no_nul(&c.working_dir, || "config.working_dir".into())?;
    for v in &c.command {
        no_nul(v, || "config.command".into())?;
    }
    for v in &c.args {
        no_nul(v, || "config.args".into())?;
    }
    for e in &c.envs {
        no_nul(&e.key, || format!("config.envs[{:?}]", e.key))?;
        if e.value.contains(&0) {
            return Err(Error::InvalidArgument(format!(
                "config.envs[{:?}] contains a NUL byte",
                e.key
            )));
        }
    }
    for m in &c.mounts {
        no_nul(&m.container_path, || "config.mounts.container_path".into())?;
        no_nul(&m.host_path, || "config.mounts.host_path".into())?;
    }
    for d in &c.devices {
        no_nul(&d.container_path, || "config.devices.container_path".into())?;
        no_nul(&d.host_path, || "config.devices.host_path".into())?;
    }
    Ok(())
}

fn apply_exit(c: &mut ContainerRecord, exit: &ExitRecord) {
    c.state = ContainerState::Exited;
    c.exit_code = exit.exit_code;
    c.finished_at = exit.finished_at;
    c.reason = if exit.oom_killed {
        "OOMKilled".into()
    } else if exit.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_limits_saturate_instead_of_overflowing() {
        let big = cri::LinuxContainerResources {
            memory_limit_in_bytes: i64::MAX,
            cpu_quota: i64::MAX - 1,
            ..Default::default()
        };
        let more = cri::LinuxContainerResources {
            memory_limit_in_bytes: 1 << 60,
            cpu_quota: 5,
            ..Default::default()
        };
        let l = pod_limits(Some(&big), Some(&more));
        assert_eq!(l.memory, Some(i64::MAX));
        assert_eq!(l.cpu_quota, Some(i64::MAX));
    }

    #[test]
    fn nul_bytes_are_refused_naming_the_field() {
        let mut c = cri::ContainerConfig::default();
        no_nul_in_container(&c).unwrap();
        c.envs.push(cri::KeyValue {
            key: "K".into(),
            value: "a\0b".into(),
        });
        let e = no_nul_in_container(&c).unwrap_err().to_string();
        assert!(e.contains("config.envs[\"K\"]"), "{e}");
        let mut p = cri::PodSandboxConfig::default();
        no_nul_in_pod(&p).unwrap();
        p.log_directory = "/var/log/\0".into();
        let e = no_nul_in_pod(&p).unwrap_err().to_string();
        assert!(e.contains("config.log_directory"), "{e}");
    }

    #[test]
    fn net_dev_parses_per_interface_counters() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  eth0:    5000      40    2    0    0     0          0         0     3000      30    1    0    0     0       0          0\n";
        assert_eq!(
            parse_net_dev(text),
            vec![
                ("lo".to_string(), 100, 0, 100, 0),
                ("eth0".to_string(), 5000, 2, 3000, 1)
            ]
        );
    }
}
