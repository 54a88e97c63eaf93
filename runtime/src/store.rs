//! Persisted records of pods and containers, and the name reservations that make
//! (name, namespace, uid, attempt) unique. Records are JSON written atomically, so a crash at
//! any point leaves either the old or the new record.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex, RwLock};

use crust_proto::cri;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodState {
    Ready,
    NotReady,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodRecord {
    pub id: String,
    pub config: cri::PodSandboxConfig,
    pub state: PodState,
    pub created_at: i64,
    pub hostname: String,
    /// The pod's cgroup (cgroupfs path); containers live below it.
    pub cgroup_path: String,
    /// Whether crust created that cgroup (and so removes it).
    pub owns_cgroup: bool,
    pub monitor_pid: u32,
    pub runtime_handler: String,
    /// Pod namespaces crust created and pinned (the rest are the host's).
    #[serde(default = "all_pod_namespaces")]
    pub namespaces: Vec<String>,
    /// What CNI gave the pod; None for host-network pods, pods without CNI, and after DEL.
    #[serde(default)]
    pub network: Option<crate::network::PodNetwork>,
}

fn all_pod_namespaces() -> Vec<String> {
    crate::monitor::POD_NAMESPACES
        .iter()
        .map(|s| s.to_string())
        .collect()
}

impl PodRecord {
    fn ns_mode(&self, pick: impl Fn(&cri::NamespaceOption) -> i32) -> i32 {
        self.config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .map(pick)
            .unwrap_or(0)
    }

    pub fn host_network(&self) -> bool {
        self.ns_mode(|n| n.network) == cri::NamespaceMode::Node as i32
    }

    /// The pod asked for one PID namespace shared by its containers (CRI PID mode POD).
    pub fn shared_pid(&self) -> bool {
        self.ns_mode(|n| n.pid) == cri::NamespaceMode::Pod as i32
    }

    pub fn host_ipc(&self) -> bool {
        self.ns_mode(|n| n.ipc) == cri::NamespaceMode::Node as i32
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub pod_id: String,
    pub config: cri::ContainerConfig,
    /// The image id (config digest).
    pub image_id: String,
    /// The image as the request named it.
    pub image_name: String,
    pub state: ContainerState,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    /// Absolute CRI log path, or empty when the container has no log.
    pub log_path: String,
    pub stop_signal: i32,
    /// Snapshots the rootfs and image volumes mount, kept from garbage collection while the
    /// container exists.
    pub chain_ids: Vec<String>,
    pub pid: i32,
    /// The user the process runs as, once resolved against the image at create.
    #[serde(default)]
    pub user: Option<ProcessUser>,
}

/// Uid, gid and supplemental groups of a container's process, as ContainerStatus reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessUser {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

pub type Shared<T> = Arc<tokio::sync::Mutex<T>>;

/// In-memory indexes over the records on disk.
pub struct Store {
    pods_dir: PathBuf,
    containers_dir: PathBuf,
    pub pods: RwLock<HashMap<String, Shared<PodRecord>>>,
    pub containers: RwLock<HashMap<String, Shared<ContainerRecord>>>,
    names: StdMutex<HashMap<String, String>>,
}

pub fn pod_name_key(m: &cri::PodSandboxMetadata) -> String {
    format!("{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
}

pub fn container_name_key(m: &cri::ContainerMetadata, pod: &cri::PodSandboxMetadata) -> String {
    format!(
        "{}_{}_{}_{}_{}",
        m.name, pod.name, pod.namespace, pod.uid, m.attempt
    )
}

impl Store {
    pub fn open(root: &Path) -> Result<Self> {
        let pods_dir = root.join("pods");
        let containers_dir = root.join("containers");
        for d in [&pods_dir, &containers_dir] {
            fsutil::ensure_private_dir(d).ctx(|| format!("create {}", d.display()))?;
        }
        let store = Store {
            pods_dir,
            containers_dir,
            pods: RwLock::new(HashMap::new()),
            containers: RwLock::new(HashMap::new()),
            names: StdMutex::new(HashMap::new()),
        };
        store.load()?;
        Ok(store)
    }

    fn load(&self) -> Result<()> {
        let mut names = self.names.lock().expect("names lock");
        let mut pods = self.pods.write().expect("pods lock");
        for e in std::fs::read_dir(&self.pods_dir)
            .ctx(|| "read pod records".into())?
            .flatten()
        {
            let p = e.path();
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            match fsutil::read_json::<PodRecord>(&p) {
                Ok(Some(rec)) => {
                    if let Some(m) = &rec.config.metadata {
                        names.insert(pod_name_key(m), rec.id.clone());
                    }
                    pods.insert(rec.id.clone(), Arc::new(tokio::sync::Mutex::new(rec)));
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(path = %p.display(), %err, "skipping unreadable pod record")
                }
            }
        }
        let mut ctrs = self.containers.write().expect("containers lock");
        for e in std::fs::read_dir(&self.containers_dir)
            .ctx(|| "read container records".into())?
            .flatten()
        {
            let p = e.path().join("record.json");
            match fsutil::read_json::<ContainerRecord>(&p) {
                Ok(Some(rec)) => {
                    let pod_meta = pods.get(&rec.pod_id).and_then(|pod| {
                        pod.try_lock().ok().and_then(|p| p.config.metadata.clone())
                    });
                    if let (Some(m), Some(pm)) = (&rec.config.metadata, pod_meta) {
                        names.insert(container_name_key(m, &pm), rec.id.clone());
                    }
                    ctrs.insert(rec.id.clone(), Arc::new(tokio::sync::Mutex::new(rec)));
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(path = %p.display(), %err, "skipping unreadable container record")
                }
            }
        }
        Ok(())
    }

    /// Reserves `key` for `id`; AlreadyExists names the holder.
    pub fn reserve_name(&self, key: &str, id: &str, what: &str) -> Result<()> {
        let mut names = self.names.lock().expect("names lock");
        if let Some(holder) = names.get(key) {
            return Err(Error::AlreadyExists(format!(
                "{what} name {key:?} is already reserved by {holder}"
            )));
        }
        names.insert(key.to_string(), id.to_string());
        Ok(())
    }

    pub fn release_name(&self, key: &str, id: &str) {
        let mut names = self.names.lock().expect("names lock");
        if names.get(key).is_some_and(|h| h == id) {
            names.remove(key);
        }
    }

    /// Where container bundles (config, writable layer, volumes) live.
    pub fn containers_root(&self) -> &Path {
        &self.containers_dir
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.containers_dir.join(id)
    }

    pub fn save_pod(&self, rec: &PodRecord) -> Result<()> {
        let p = self.pods_dir.join(format!("{}.json", rec.id));
        fsutil::write_json_atomic(&p, rec).ctx(|| format!("write {}", p.display()))
    }

    pub fn delete_pod(&self, id: &str) -> Result<()> {
        let p = self.pods_dir.join(format!("{id}.json"));
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io(format!("remove {}", p.display()), e))
            }
            _ => {
                self.pods.write().expect("pods lock").remove(id);
                Ok(())
            }
        }
    }

    pub fn save_container(&self, rec: &ContainerRecord) -> Result<()> {
        let p = self.container_dir(&rec.id).join("record.json");
        fsutil::write_json_atomic(&p, rec).ctx(|| format!("write {}", p.display()))
    }

    /// The record of a container whose CreateContainer is under way, not fsynced: it guards
    /// against a crash of crustd (the page cache survives that); after a power loss, when it
    /// may be missing, no process of the container is left either and the start-up sweep
    /// removes a bundle without a record. The record is saved durably once created.
    pub fn save_container_draft(&self, rec: &ContainerRecord) -> Result<()> {
        let p = self.container_dir(&rec.id).join("record.json");
        fsutil::write_json_atomic_unsynced(&p, rec).ctx(|| format!("write {}", p.display()))
    }

    pub fn pod_count(&self) -> usize {
        self.pods.read().expect("pods lock").len()
    }

    pub fn pod(&self, id: &str) -> Option<Shared<PodRecord>> {
        self.pods.read().expect("pods lock").get(id).cloned()
    }

    pub fn container(&self, id: &str) -> Option<Shared<ContainerRecord>> {
        self.containers
            .read()
            .expect("containers lock")
            .get(id)
            .cloned()
    }

    /// Whether the pod is still in the store (a list that waited on its record's lock while it
    /// was being removed must not report it).
    pub fn has_pod(&self, id: &str) -> bool {
        self.pods.read().expect("pods lock").contains_key(id)
    }

    /// Whether the container is still in the store (see [`Store::has_pod`]).
    pub fn has_container(&self, id: &str) -> bool {
        self.containers
            .read()
            .expect("containers lock")
            .contains_key(id)
    }

    pub fn all_pods(&self) -> Vec<Shared<PodRecord>> {
        self.pods
            .read()
            .expect("pods lock")
            .values()
            .cloned()
            .collect()
    }

    pub fn all_containers(&self) -> Vec<Shared<ContainerRecord>> {
        self.containers
            .read()
            .expect("containers lock")
            .values()
            .cloned()
            .collect()
    }

    /// Resolves a full id or a unique prefix (as crictl allows).
    pub fn find_id<T>(map: &RwLock<HashMap<String, T>>, id: &str, what: &str) -> Result<String> {
        if id.is_empty() {
            return Err(Error::InvalidArgument(format!("{what} id is empty")));
        }
        let map = map.read().expect("index lock");
        if map.contains_key(id) {
            return Ok(id.to_string());
        }
        let matches: Vec<&String> = map.keys().filter(|k| k.starts_with(id)).collect();
        match matches.len() {
            1 => Ok(matches[0].clone()),
            0 => Err(Error::NotFound(format!("{what} {id:?} not found"))),
            _ => Err(Error::InvalidArgument(format!(
                "{what} id prefix {id:?} is ambiguous"
            ))),
        }
    }
}
