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

mod exits;
mod monitor_cgroup;
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
}

/// A lifecycle change of a container, or of a pod sandbox (then `container_id` is the pod id,
/// as containerd reports them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub container_id: String,
    pub pod_id: String,
    pub at: i64,
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
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            (f.len() >= 11).then(|| (name.trim().to_string(), f[0], f[2], f[8], f[10]))
        })
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
            if let (Some(cni), false) = (&self.cfg.cni, rec.host_network())
                && let Ok(list) = cni.load()
                && let Err(e) = cni.del(&list, &self.cni_args(&rec), None).await
            {
                tracing::warn!(pod = %rec.id, err = %e, "CNI DEL of an interrupted pod failed");
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
        // No subscriber is not an error: events are only for those listening.
        let _ = self.events.send(Event {
            kind,
            container_id: container_id.to_string(),
            pod_id: pod_id.to_string(),
            at: now_nanos(),
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

    // ---------------------------------------------------------------- pods

    pub async fn run_pod(
        &self,
        config: cri::PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String> {
        let meta = require(config.metadata.clone(), "config.metadata")?;
        no_nul_in_pod(&config)?;
        for (field, v) in [
            ("name", &meta.name),
            ("namespace", &meta.namespace),
            ("uid", &meta.uid),
        ] {
            if v.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "config.metadata.{field} is required"
                )));
            }
        }
        if !runtime_handler.is_empty()
            && !self
                .cfg
                .runtime_handlers
                .iter()
                .any(|h| h == runtime_handler)
        {
            return Err(Error::InvalidArgument(format!(
                "unknown runtime handler {runtime_handler:?} (configured: {:?})",
                self.cfg.runtime_handlers
            )));
        }
        if config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .and_then(|n| n.userns_options.as_ref())
            .is_some_and(|u| u.mode != cri::NamespaceMode::Node as i32)
        {
            return Err(Error::Unimplemented(
                "user namespaces (hostUsers: false) are not supported by crust yet; RuntimeStatus reports user_namespaces: false"
                    .into(),
            ));
        }
        let cgroup_parent = config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default();
        let id = ids::new_id();
        let cgroup_path = if cgroup_parent.is_empty() {
            format!("{}/{}", self.cfg.cgroup_root, id)
        } else {
            self.cfg
                .cgroup_driver
                .pod_cgroup(&cgroup_parent)
                .map_err(|e| Error::InvalidArgument(format!("config.linux.cgroup_parent: {e}")))?
        };
        let key = pod_name_key(&meta);
        self.store.reserve_name(&key, &id, "pod sandbox")?;
        let mut rec = PodRecord {
            id: id.clone(),
            config,
            state: PodState::Ready,
            created_at: now_nanos(),
            hostname: String::new(),
            cgroup_path,
            owns_cgroup: false,
            monitor_pid: 0,
            runtime_handler: runtime_handler.to_string(),
            namespaces: vec![],
            network: None,
        };
        // kubelet's host network means the host's UTS namespace too.
        if !rec.host_network() {
            rec.namespaces
                .extend(["net".to_string(), "uts".to_string()]);
        }
        if !rec.host_ipc() {
            rec.namespaces.push("ipc".to_string());
        }
        if rec.shared_pid() {
            rec.namespaces.push("pid".to_string());
        }
        let checked = pod::hostname_for(&rec.config, rec.host_network()).and_then(|h| {
            let sysctls = rec
                .config
                .linux
                .as_ref()
                .map(|l| l.sysctls.clone())
                .unwrap_or_default();
            pod::validate_sysctls(&sysctls, rec.host_network(), rec.host_ipc())?;
            crate::network::cni::bandwidth_from_annotations(&rec.config.annotations)
                .map_err(Error::InvalidArgument)?;
            Ok(h)
        });
        rec.hostname = match checked {
            Ok(h) => h,
            Err(e) => {
                self.store.release_name(&key, &id);
                return Err(e);
            }
        };
        // Until the record is saved, a note in the pod's state dir says what setup may have
        // made, so a crash half way is undone at the next start. Not fsynced: state dirs do
        // not survive a power loss, and neither does anything the note describes.
        let pending = self.pod_dir(&rec.id).join(PENDING_FILE);
        let noted = fsutil::ensure_private_dir(&self.pod_dir(&rec.id)).and_then(|()| {
            let mut note = rec.clone();
            // A cgroup named after the pod is crust's own to remove.
            note.owns_cgroup = cgroup_parent.is_empty();
            std::fs::write(&pending, serde_json::to_vec(&note).unwrap_or_default())
        });
        if let Err(e) = noted {
            self.store.release_name(&key, &id);
            return Err(Error::Io {
                context: format!("write {}", pending.display()),
                source: e,
            });
        }
        match self.setup_pod(&mut rec).await {
            Ok(()) => {
                self.store.save_pod(&rec)?;
                let _ = std::fs::remove_file(&pending);
                self.store
                    .pods
                    .write()
                    .expect("pods lock")
                    .insert(id.clone(), Arc::new(tokio::sync::Mutex::new(rec)));
                self.emit(EventKind::Created, &id, &id);
                self.emit(EventKind::Started, &id, &id);
                Ok(id)
            }
            Err(e) => {
                self.teardown_pod_resources(&rec).await;
                self.store.release_name(&key, &id);
                Err(e)
            }
        }
    }

    async fn setup_pod(&self, rec: &mut PodRecord) -> Result<()> {
        let dir = self.pod_dir(&rec.id);
        fsutil::ensure_private_dir(&dir).ctx(|| format!("create {}", dir.display()))?;
        let dns = rec.config.dns_config.as_ref();
        pod::write_files(&dir, &rec.hostname, dns, rec.host_network(), None)?;
        if !rec.host_ipc() {
            pod::mount_shm(&dir, self.cfg.shm_size)?;
        }
        rec.owns_cgroup = self
            .hierarchy
            .create(&rec.cgroup_path)
            .ctx(|| format!("create pod cgroup {}", rec.cgroup_path))?;
        // kubelet sizes the pod cgroups it makes itself; a pod cgroup crust made gets the pod's
        // resources plus its overhead here.
        if rec.owns_cgroup
            && let Some(l) = &rec.config.linux
        {
            let limits = pod_limits(l.resources.as_ref(), l.overhead.as_ref());
            check_memory_limit(
                "config.linux resources plus overhead",
                limits.memory.unwrap_or(0),
            )?;
            if limits != Default::default() {
                self.hierarchy
                    .set_limits(&rec.cgroup_path, &limits)
                    .map_err(|e| {
                        limit_error(&format!("limit pod cgroup {}", rec.cgroup_path), e)
                    })?;
            }
        }
        rec.monitor_pid = self
            .cfg
            .launcher
            .spawn(&rec.id, &dir, &rec.hostname, &rec.namespaces)
            .instrument(tracing::info_span!("monitor.spawn"))
            .await?;
        self.place_monitor(&rec.id, rec.monitor_pid);
        if !rec.host_network() {
            self.network_add(rec).await?;
        }
        Ok(())
    }

    /// Whether pod networking is ready: the CNI network name, or why not.
    pub fn network_status(&self) -> std::result::Result<String, String> {
        let Some(cni) = &self.cfg.cni else {
            return Err(
                "CNI is not configured: pods get a private network namespace with loopback only"
                    .into(),
            );
        };
        cni.load().map(|l| l.name).map_err(|e| e.to_string())
    }

    fn cni_args(&self, rec: &PodRecord) -> crate::network::cni::PodArgs {
        let meta = rec.config.metadata.clone().unwrap_or_default();
        let port_mappings = rec
            .config
            .port_mappings
            .iter()
            .filter(|p| p.host_port > 0)
            .map(|p| crate::network::PortMapping {
                host_port: p.host_port,
                container_port: p.container_port,
                protocol: match cri::Protocol::try_from(p.protocol) {
                    Ok(cri::Protocol::Udp) => "udp".into(),
                    Ok(cri::Protocol::Sctp) => "sctp".into(),
                    _ => "tcp".into(),
                },
                host_ip: p.host_ip.clone(),
            })
            .collect();
        let dns = rec.config.dns_config.as_ref().map(|d| {
            serde_json::json!({"servers": d.servers, "searches": d.searches, "options": d.options})
        });
        // Validated in run_pod; a bad value here (an old record) just goes unlimited.
        let bandwidth = crate::network::cni::bandwidth_from_annotations(&rec.config.annotations)
            .ok()
            .flatten();
        crate::network::cni::PodArgs {
            bandwidth,
            pod_id: rec.id.clone(),
            pod_name: meta.name,
            pod_namespace: meta.namespace,
            pod_uid: meta.uid,
            // A netns that is gone (unmounted under the pod) is passed as none, which the CNI
            // spec lets DEL treat as "nothing left to tear down in the namespace".
            netns: {
                let path = self.netns_path(&rec.id);
                if crate::monitor::pin::is_pinned(&path) {
                    path.display().to_string()
                } else {
                    String::new()
                }
            },
            port_mappings,
            dns,
        }
    }

    /// CNI ADD into the pod's network namespace. Without any CNI configuration the pod keeps
    /// its loopback-only namespace (and Status reports NetworkReady=false).
    async fn network_add(&self, rec: &mut PodRecord) -> Result<()> {
        let Some(cni) = &self.cfg.cni else {
            return Ok(());
        };
        let list = match cni.load() {
            Ok(l) => l,
            Err(crate::network::CniError::NoConfig(dir)) => {
                tracing::warn!(pod = %rec.id, dir, "no CNI config; the pod gets loopback only");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let net = cni.add(&list, &self.cni_args(rec)).await?;
        tracing::info!(pod = %rec.id, network = %net.network, ips = ?net.ips, "pod network added");
        // Recorded before anything else can fail, so a failed setup still releases the IP.
        rec.network = Some(net);
        let ip = rec.network.as_ref().and_then(|n| n.ips.first().cloned());
        let dir = self.pod_dir(&rec.id);
        pod::write_files(
            &dir,
            &rec.hostname,
            rec.config.dns_config.as_ref(),
            false,
            ip.as_deref(),
        )
    }

    /// CNI CHECK of a pod's network: Ok(None) when the pod has none to check.
    pub async fn check_network(&self, id: &str) -> Result<Option<String>> {
        let rec = self.pod(id).await?;
        let (Some(cni), Some(net)) = (&self.cfg.cni, &rec.network) else {
            return Ok(None);
        };
        let list = cni.load()?;
        cni.check(&list, &self.cni_args(&rec), &net.result).await?;
        Ok(Some(list.name))
    }

    /// CNI DEL for a pod that has a network; forgets it once DEL succeeded.
    async fn network_del(&self, rec: &mut PodRecord) -> Result<()> {
        let (Some(cni), Some(net)) = (&self.cfg.cni, &rec.network) else {
            return Ok(());
        };
        let list = match cni.load() {
            Ok(l) if l.name == net.network => l,
            Ok(l) => {
                tracing::warn!(pod = %rec.id, was = %net.network, now = %l.name, "CNI network changed; DEL with the current config");
                l
            }
            Err(e) => return Err(e.into()),
        };
        cni.del(&list, &self.cni_args(rec), Some(&net.result))
            .await?;
        rec.network = None;
        Ok(())
    }

    /// Undoes setup_pod: network, monitor, mounts, cgroup, state dir. Each step tolerates
    /// "already gone".
    async fn teardown_pod_resources(&self, rec: &PodRecord) {
        let mut rec = rec.clone();
        if let Err(e) = self.network_del(&mut rec).await {
            tracing::warn!(pod = %rec.id, err = %e, "CNI DEL during teardown failed");
        }
        let dir = self.pod_dir(&rec.id);
        if client::is_alive(&dir).await {
            let _ = client::call(&dir, &Request::Shutdown, SHORT_TIMEOUT).await;
        }
        crate::monitor::pod_init::stop(&dir);
        if let Err(e) = pod::unmount_all(&dir) {
            tracing::warn!(pod = %rec.id, err = %e, "unmount pod state");
        }
        if rec.owns_cgroup {
            let _ = self.hierarchy.remove(&rec.cgroup_path);
        }
        let _ = fsutil::remove_dir_all_if_exists(&dir);
    }

    fn pod_containers(&self, pod_id: &str) -> Vec<crate::store::Shared<ContainerRecord>> {
        self.store
            .all_containers()
            .into_iter()
            .filter(|c| c.try_lock().map(|c| c.pod_id == pod_id).unwrap_or(true))
            .collect()
    }

    pub async fn stop_pod(&self, id: &str) -> Result<()> {
        let id = match Store::find_id(&self.store.pods, id, "pod sandbox") {
            Ok(id) => id,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some(pod) = self.store.pod(&id) else {
            return Ok(());
        };
        let mut p = pod.lock().await;
        for c in self.pod_containers(&id) {
            let mut c = c.lock().await;
            if c.pod_id == id {
                self.stop_locked(&mut c, 0).await?;
            }
        }
        let dir = self.pod_dir(&id);
        if client::is_alive(&dir).await {
            client::call(&dir, &Request::Shutdown, SHORT_TIMEOUT)
                .await
                .map_err(monitor_err)?;
        }
        // Release the pod's IP now (kubelet expects it on stop); the netns itself stays
        // pinned until the pod is removed. A failed DEL leaves the record for the next try.
        if p.network.is_some() {
            self.network_del(&mut p).await?;
            self.store.save_pod(&p)?;
        }
        if p.state != PodState::NotReady {
            p.state = PodState::NotReady;
            self.store.save_pod(&p)?;
            self.emit(EventKind::Stopped, &id, &id);
        }
        Ok(())
    }

    pub async fn remove_pod(&self, id: &str) -> Result<()> {
        let id = match Store::find_id(&self.store.pods, id, "pod sandbox") {
            Ok(id) => id,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        self.stop_pod(&id).await?;
        for c in self.pod_containers(&id) {
            let cid = c.lock().await.id.clone();
            let belongs = c.lock().await.pod_id == id;
            if belongs {
                self.remove_container(&cid).await?;
            }
        }
        let Some(pod) = self.store.pod(&id) else {
            return Ok(());
        };
        let p = pod.lock().await;
        self.teardown_pod_resources(&p).await;
        self.store.delete_pod(&id)?;
        self.emit(EventKind::Deleted, &id, &id);
        self.cpu_samples
            .lock()
            .expect("cpu samples lock")
            .remove(&format!("pod:{id}"));
        if let Some(m) = &p.config.metadata {
            self.store.release_name(&pod_name_key(m), &id);
        }
        Ok(())
    }

    /// The cgroup of a container's pod (by its full id).
    async fn pod_cgroup(&self, pod_id: &str) -> Result<String> {
        match self.store.pod(pod_id) {
            Some(p) => Ok(p.lock().await.cgroup_path.clone()),
            None => Err(Error::NotFound(format!("pod sandbox {pod_id} not found"))),
        }
    }

    pub async fn pod(&self, id: &str) -> Result<PodRecord> {
        let id = Store::find_id(&self.store.pods, id, "pod sandbox")?;
        let pod = self
            .store
            .pod(&id)
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {id} not found")))?;
        Ok(pod.lock().await.clone())
    }

    pub async fn list_pods(&self) -> Vec<PodRecord> {
        let mut out = Vec::new();
        for p in self.store.all_pods() {
            out.push(p.lock().await.clone());
        }
        out.sort_by_key(|p| p.created_at);
        out
    }

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

    // ---------------------------------------------------------------- containers

    pub async fn create_container(
        &self,
        pod_id: &str,
        config: cri::ContainerConfig,
        sandbox_config: Option<&cri::PodSandboxConfig>,
    ) -> Result<String> {
        let pod_id = Store::find_id(&self.store.pods, pod_id, "pod sandbox")?;
        let pod = self
            .store
            .pod(&pod_id)
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {pod_id} not found")))?;
        let pod = pod.lock().await.clone();
        if pod.state != PodState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {pod_id} is not ready; containers can only be created in a ready pod"
            )));
        }
        let meta = require(config.metadata.clone(), "config.metadata")?;
        if meta.name.is_empty() {
            return Err(Error::InvalidArgument(
                "config.metadata.name is required".into(),
            ));
        }
        no_nul_in_container(&config)?;
        exec_fits(&config)?;
        if let Some(r) = config.linux.as_ref().and_then(|l| l.resources.as_ref()) {
            check_memory_limit("config.linux.resources", r.memory_limit_in_bytes)?;
        }
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        if image_name.is_empty() {
            return Err(Error::InvalidArgument(
                "config.image.image is required".into(),
            ));
        }
        let image = self.images.resolve(&image_name)?.ok_or_else(|| {
            Error::NotFound(format!("image {image_name:?} not found; pull it first"))
        })?;
        // Early, so the kernel's cgroup-migration lock is ready when libcontainer moves the
        // container (monitor_cgroup.rs).
        self.place_monitor(&pod.id, pod.monitor_pid);
        let pod_meta = pod.config.metadata.clone().unwrap_or_default();
        let log_dir = sandbox_config
            .map(|s| s.log_directory.clone())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| pod.config.log_directory.clone());
        let log_path = if log_dir.is_empty() || config.log_path.is_empty() {
            String::new()
        } else {
            if config.log_path.starts_with('/') || config.log_path.split('/').any(|c| c == "..") {
                return Err(Error::InvalidArgument(format!(
                    "config.log_path {:?} must be relative to the pod's log_directory, without '..'",
                    config.log_path
                )));
            }
            if !log_dir.starts_with('/') {
                return Err(Error::InvalidArgument(format!(
                    "log_directory {log_dir:?} must be absolute"
                )));
            }
            let full = Path::new(&log_dir)
                .join(&config.log_path)
                .display()
                .to_string();
            // The kernel's limits, checked here so the answer names the field.
            if full.len() >= libc::PATH_MAX as usize
                || full.split('/').any(|c| c.len() > libc::NAME_MAX as usize)
            {
                return Err(Error::InvalidArgument(format!(
                    "config.log_path: {} bytes with log_directory, or a name over {} bytes",
                    full.len(),
                    libc::NAME_MAX
                )));
            }
            full
        };
        let stop_signal = parse_signal(&image.config.stop_signal).unwrap_or(libc::SIGTERM);

        let id = ids::new_id();
        let key = container_name_key(&meta, &pod_meta);
        self.store.reserve_name(&key, &id, "container")?;
        let bundle = self.store.container_dir(&id);
        let mut rec = ContainerRecord {
            id: id.clone(),
            pod_id: pod_id.clone(),
            config,
            image_id: image.id.clone(),
            image_name,
            state: ContainerState::Created,
            created_at: now_nanos(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            log_path,
            stop_signal,
            chain_ids: image.chain_ids.clone(),
            pid: 0,
            user: None,
        };
        match self.setup_container(&mut rec, &pod, &image, &bundle).await {
            Ok(()) => {
                self.emit(EventKind::Created, &id, &pod_id);
                self.store
                    .containers
                    .write()
                    .expect("containers lock")
                    .insert(id.clone(), Arc::new(tokio::sync::Mutex::new(rec)));
                Ok(id)
            }
            Err(e) => {
                let dirs = rootfs::RootfsDirs::in_bundle(&bundle);
                let _ = rootfs::unmount(&dirs);
                let _ = fsutil::remove_dir_all_if_exists(&bundle);
                let _ = fsutil::remove_file_if_exists(&self.exit_file(&id));
                self.store.release_name(&key, &id);
                Err(e)
            }
        }
    }

    async fn setup_container(
        &self,
        rec: &mut ContainerRecord,
        pod: &PodRecord,
        image: &ImageRecord,
        bundle: &Path,
    ) -> Result<()> {
        fsutil::ensure_private_dir(bundle).ctx(|| format!("create {}", bundle.display()))?;
        let dirs = rootfs::RootfsDirs::in_bundle(bundle);
        let lowers: Vec<PathBuf> = image
            .chain_ids
            .iter()
            .map(|c| self.images.snapshot_path(c))
            .collect();
        for l in &lowers {
            if !l.is_dir() {
                return Err(Error::FailedPrecondition(format!(
                    "image {} is missing layer snapshot {}; pull it again",
                    image.id,
                    l.display()
                )));
            }
        }
        rootfs::mount_overlay(&dirs, &lowers, &self.cfg.root.join("snapshots/.empty"))?;
        let cwd = if rec.config.working_dir.is_empty() {
            &image.config.working_dir
        } else {
            &rec.config.working_dir
        };
        if cwd.starts_with('/') {
            rootfs::ensure_working_dir(&dirs.rootfs, cwd)?;
        }

        let sc = rec
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref());
        let user_spec = match sc {
            Some(s) if !s.run_as_username.is_empty() => s.run_as_username.clone(),
            Some(s) if s.run_as_user.is_some() => {
                let uid = s.run_as_user.as_ref().map(|v| v.value).unwrap_or(0);
                match &s.run_as_group {
                    Some(g) => format!("{uid}:{}", g.value),
                    None => uid.to_string(),
                }
            }
            Some(s) if s.run_as_group.is_some() => {
                return Err(Error::InvalidArgument(
                    "security_context.run_as_group requires run_as_user or run_as_username".into(),
                ));
            }
            _ => image.config.user.clone(),
        };
        let mut resolved = user::resolve_in_rootfs(&dirs.rootfs, &user_spec)?;
        if sc.is_some_and(|s| {
            s.supplemental_groups_policy == cri::SupplementalGroupsPolicy::Strict as i32
        }) {
            // Strict: only the groups the request names, none from the image's /etc/group.
            resolved.additional_gids.clear();
        }
        if let Some(s) = sc {
            for g in &s.supplemental_groups {
                let g = u32::try_from(*g).map_err(|_| {
                    Error::InvalidArgument(format!("supplemental group {g} is out of range"))
                })?;
                if !resolved.additional_gids.contains(&g) {
                    resolved.additional_gids.push(g);
                }
            }
        }
        rec.user = Some(crate::store::ProcessUser {
            uid: resolved.uid,
            gid: resolved.gid,
            groups: resolved.additional_gids.clone(),
        });
        let cgroups_path = self
            .cfg
            .cgroup_driver
            .container_cgroup(&pod.cgroup_path, &rec.id);
        let pid = self.pid_namespace(rec, pod).await?;
        crate::container::mounts::check_dev_is_not_a_symlink(&dirs.rootfs)?;
        let spec = spec::build(&spec::SpecInput {
            config: &rec.config,
            image: &image.config,
            rootfs: &dirs.rootfs,
            pod_dir: &self.pod_dir(&pod.id),
            pod_namespaces: &pod.namespaces,
            sysctls: &pod
                .config
                .linux
                .as_ref()
                .map(|l| l.sysctls.clone())
                .unwrap_or_default(),
            pid,
            hostname: &pod.hostname,
            cgroups_path: &cgroups_path,
            user: &resolved,
            min_oom_score_adj: self.min_oom_score_adj,
            cgroup_v2: matches!(self.hierarchy, Hierarchy::V2 { .. }),
            pod_privileged: pod
                .config
                .linux
                .as_ref()
                .and_then(|l| l.security_context.as_ref())
                .is_some_and(|s| s.privileged),
            seccomp_default: &self.cfg.seccomp_default,
            apparmor_enabled: self.apparmor_enabled,
            cdi_spec_dirs: &self.cfg.cdi_spec_dirs,
            volumes_dir: &bundle.join("volumes"),
        })?;
        let spec_bytes =
            serde_json::to_vec_pretty(&spec).map_err(|e| Error::Internal(e.to_string()))?;
        // Read by libcontainer at once; after a power loss no container is created from it.
        fsutil::write_atomic_unsynced(&bundle.join("config.json"), &spec_bytes)
            .ctx(|| "write config.json".into())?;
        // The record exists before the monitor creates anything, so a crash in between leaves
        // a container the daemon knows about (and can remove), never an orphan.
        self.store.save_container_draft(rec)?;
        let reply = client::call(
            &self.pod_dir(&pod.id),
            &Request::Create(CreateRequest {
                id: rec.id.clone(),
                bundle: bundle.display().to_string(),
                log_path: rec.log_path.clone(),
                exit_file: self.exit_file(&rec.id).display().to_string(),
                tty: rec.config.tty,
                stdin: rec.config.stdin,
                stdin_once: rec.config.stdin_once,
            }),
            CREATE_TIMEOUT,
        )
        .await
        .map_err(monitor_err)?;
        if let Reply::Created { pid } = reply {
            rec.pid = pid;
        }
        self.store.save_container(rec)?;
        Ok(())
    }

    /// The container's PID namespace from its CRI namespace options.
    async fn pid_namespace(
        &self,
        rec: &ContainerRecord,
        pod: &PodRecord,
    ) -> Result<spec::PidNamespace> {
        let opts = rec
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
            .unwrap_or_default();
        let mode = cri::NamespaceMode::try_from(opts.pid).map_err(|_| {
            Error::InvalidArgument(format!(
                "namespace_options.pid {} is not a namespace mode",
                opts.pid
            ))
        })?;
        Ok(match mode {
            cri::NamespaceMode::Container => spec::PidNamespace::Own,
            cri::NamespaceMode::Node => spec::PidNamespace::Host,
            cri::NamespaceMode::Pod if pod.namespaces.iter().any(|n| n == "pid") => {
                spec::PidNamespace::Join(crate::monitor::pin::ns_path(
                    &self.pod_dir(&pod.id),
                    "pid",
                ))
            }
            cri::NamespaceMode::Pod => spec::PidNamespace::Own,
            cri::NamespaceMode::Target => {
                let target_id =
                    Store::find_id(&self.store.containers, &opts.target_id, "target container")?;
                let target = self.store.container(&target_id).ok_or_else(|| {
                    Error::NotFound(format!("target container {target_id} not found"))
                })?;
                let target = target.lock().await;
                if target.pod_id != pod.id {
                    return Err(Error::InvalidArgument(format!(
                        "target container {target_id} is in another pod sandbox"
                    )));
                }
                let ns = PathBuf::from(format!("/proc/{}/ns/pid", target.pid));
                if target.state != ContainerState::Running || target.pid <= 0 || !ns.exists() {
                    return Err(Error::FailedPrecondition(format!(
                        "target container {target_id} is not running"
                    )));
                }
                spec::PidNamespace::Join(ns)
            }
        })
    }

    async fn container_shared(&self, id: &str) -> Result<crate::store::Shared<ContainerRecord>> {
        let id = Store::find_id(&self.store.containers, id, "container")?;
        self.store
            .container(&id)
            .ok_or_else(|| Error::NotFound(format!("container {id} not found")))
    }

    pub async fn start_container(&self, id: &str) -> Result<()> {
        let c = self.container_shared(id).await?;
        let mut c = c.lock().await;
        if c.state != ContainerState::Created {
            return Err(Error::FailedPrecondition(format!(
                "container {} is {:?}; only a created container can be started",
                c.id, c.state
            )));
        }
        // Taken before the process is released: a command that exits at once must still show
        // started_at <= finished_at.
        let started_at = now_nanos();
        client::call(
            &self.pod_dir(&c.pod_id),
            &Request::Start { id: c.id.clone() },
            SHORT_TIMEOUT,
        )
        .await
        .map_err(monitor_err)?;
        c.state = ContainerState::Running;
        c.started_at = started_at;
        self.store.save_container(&c)?;
        self.emit(EventKind::Started, &c.id, &c.pod_id);
        Ok(())
    }

    /// Applies a recorded exit (from the monitor's exit file) to a running container's record.
    fn refresh(&self, c: &mut ContainerRecord) {
        if c.state != ContainerState::Running {
            return;
        }
        if let Ok(Some(exit)) = fsutil::read_json::<ExitRecord>(&self.exit_file(&c.id)) {
            self.mark_exited(c, &exit);
            if let Err(e) = self.store.save_container(c) {
                tracing::warn!(id = %c.id, err = %e, "cannot persist exit");
            }
        }
    }

    async fn stop_locked(&self, c: &mut ContainerRecord, timeout_secs: i64) -> Result<()> {
        self.refresh(c);
        if !matches!(c.state, ContainerState::Running | ContainerState::Created) {
            return Ok(());
        }
        let limit = Duration::from_secs(timeout_secs.max(0) as u64) + Duration::from_secs(40);
        let req = Request::Stop {
            id: c.id.clone(),
            signal: c.stop_signal,
            timeout_secs,
        };
        match client::call(&self.pod_dir(&c.pod_id), &req, limit).await {
            Ok(Reply::Exited(exit)) => self.mark_exited(c, &exit),
            Ok(other) => {
                return Err(Error::Internal(format!(
                    "unexpected monitor reply {other:?}"
                )));
            }
            Err(MonitorError::Connect { .. })
            | Err(MonitorError::Remote {
                kind: ErrorKind::NotFound,
                ..
            }) => {
                // The monitor is gone (pod stopped, or it died): whatever it recorded stands.
                self.refresh(c);
                if matches!(c.state, ContainerState::Running | ContainerState::Created) {
                    c.state = ContainerState::Exited;
                    c.finished_at = now_nanos();
                    c.exit_code = 255;
                    c.reason = "Unknown".into();
                    c.message =
                        "the pod monitor exited without recording the container's exit".into();
                }
            }
            Err(e) => return Err(monitor_err(e)),
        }
        self.store.save_container(c)?;
        Ok(())
    }

    pub async fn stop_container(&self, id: &str, timeout_secs: i64) -> Result<()> {
        let c = self.container_shared(id).await?;
        let mut c = c.lock().await;
        self.stop_locked(&mut c, timeout_secs).await
    }

    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let c = match self.container_shared(id).await {
            Ok(c) => c,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut c = c.lock().await;
        self.stop_locked(&mut c, 0).await?;
        let pod_dir = self.pod_dir(&c.pod_id);
        match client::call(
            &pod_dir,
            &Request::Delete { id: c.id.clone() },
            SHORT_TIMEOUT,
        )
        .await
        {
            Ok(_) | Err(MonitorError::Connect { .. }) => {}
            Err(e) => return Err(monitor_err(e)),
        }
        let bundle = self.store.container_dir(&c.id);
        rootfs::unmount(&rootfs::RootfsDirs::in_bundle(&bundle))?;
        fsutil::remove_dir_all_if_exists(&bundle).ctx(|| format!("remove {}", bundle.display()))?;
        let _ = fsutil::remove_file_if_exists(&self.exit_file(&c.id));
        self.forget_usage(&c.id);
        self.store
            .containers
            .write()
            .expect("containers lock")
            .remove(&c.id);
        let pod_meta = match self.store.pod(&c.pod_id) {
            Some(p) => p.lock().await.config.metadata.clone(),
            None => None,
        };
        if let (Some(m), Some(pm)) = (&c.config.metadata, pod_meta) {
            self.store.release_name(&container_name_key(m, &pm), &c.id);
        }
        c.state = ContainerState::Unknown;
        self.emit(EventKind::Deleted, &c.id, &c.pod_id);
        Ok(())
    }

    pub async fn container(&self, id: &str) -> Result<ContainerRecord> {
        let c = self.container_shared(id).await?;
        let mut c = c.lock().await;
        self.refresh(&mut c);
        Ok(c.clone())
    }

    /// What `pick` makes of each container (oldest first), for the ones it keeps; each record
    /// is looked at under its lock and never copied whole (lists run every second on a busy
    /// node). Records are as the exit watcher keeps them: no exit file is read per container.
    pub async fn select_containers<T>(
        &self,
        mut pick: impl FnMut(&ContainerRecord) -> Option<T>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for c in self.store.all_containers() {
            let c = c.lock().await;
            if let Some(v) = pick(&c) {
                out.push((c.created_at, v));
            }
        }
        out.sort_by_key(|(created, _)| *created);
        out.into_iter().map(|(_, v)| v).collect()
    }
}

impl Engine {
    /// Runs `cmd` in a running container and returns its output (each stream capped at
    /// 16 MiB). A timeout > 0 that expires kills the command and answers DeadlineExceeded.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout_secs: i64,
    ) -> Result<ExecOutput> {
        if cmd.is_empty() || cmd[0].is_empty() {
            return Err(Error::InvalidArgument("cmd is required".into()));
        }
        let (cid, pod_id, _, _) = self.running(id, "exec").await?;
        // Not holding the container's lock: probes run while the container is stopped or
        // inspected, as with other runtimes.
        // The monitor enforces the command's timeout; this bound only covers a monitor that
        // stops answering (a day when the command has no timeout of its own).
        let limit = if timeout_secs > 0 {
            Duration::from_secs(timeout_secs as u64 + 30)
        } else {
            Duration::from_secs(24 * 3600)
        };
        let req = Request::ExecSync {
            id: cid.clone(),
            cmd: cmd.clone(),
            timeout_secs,
            max_output: crate::monitor::exec::MAX_EXEC_OUTPUT,
        };
        match client::call(&self.pod_dir(&pod_id), &req, limit)
            .await
            .map_err(monitor_err)?
        {
            Reply::ExecResult(r) if r.timed_out => Err(Error::DeadlineExceeded(format!(
                "command {:?} in container {cid} timed out after {timeout_secs}s",
                cmd.join(" ")
            ))),
            Reply::ExecResult(r) => Ok(ExecOutput {
                stdout: r.stdout,
                stderr: r.stderr,
                exit_code: r.exit_code,
            }),
            other => Err(Error::Internal(format!(
                "unexpected monitor reply {other:?}"
            ))),
        }
    }

    /// Makes the monitor reopen the container's log file (kubelet renamed it to rotate).
    pub async fn reopen_log(&self, id: &str) -> Result<()> {
        let c = self.container_shared(id).await?;
        let mut c = c.lock().await;
        self.refresh(&mut c);
        if c.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {} is {:?}; only a running container's log can be reopened",
                c.id, c.state
            )));
        }
        client::call(
            &self.pod_dir(&c.pod_id),
            &Request::ReopenLog { id: c.id.clone() },
            SHORT_TIMEOUT,
        )
        .await
        .map_err(monitor_err)?;
        Ok(())
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
        no_nul(&e.value, || format!("config.envs[{:?}]", e.key))?;
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

/// Parses an image StopSignal: `SIGTERM`, `TERM` or a number.
pub fn parse_signal(s: &str) -> Option<i32> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let name = s.to_ascii_uppercase();
    let name = if name.starts_with("SIG") {
        name
    } else {
        format!("SIG{name}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
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

    #[test]
    fn stop_signals_parse() {
        assert_eq!(parse_signal("SIGQUIT"), Some(3));
        assert_eq!(parse_signal("term"), Some(15));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal(""), None);
        assert_eq!(parse_signal("SIGNOPE"), None);
        assert_eq!(parse_signal("99"), None);
    }
}
