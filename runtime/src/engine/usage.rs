//! Resource usage of containers and pods: cgroup counters, CPU rates, writable layers.
//!
//! Cgroup files are read on every call (they are cheap and kubelet wants them current). The
//! writable layer is a directory walk, so lists use the size last measured: a background task
//! measures running containers every [`LAYER_SAMPLE_PERIOD`] (containerd's CRI plugin also
//! refreshes its snapshot sizes every 10 s) while stats lists are being asked for, and
//! ContainerStats of one container measures it anew. With 1,000 containers this keeps
//! ListContainerStats to the cgroup reads. Nobody asking for [`LAYER_SAMPLES_KEPT`] stops the
//! sampling and drops the samples: the next list measures what it needs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::cgroups::{CgroupDetail, CgroupStats};
use crate::error::{Error, Result};
use crate::now_nanos;
use crate::store::{ContainerRecord, ContainerState, PodRecord};

use super::{ContainerUsage, Engine, PodUsage, parse_net_dev};

pub const LAYER_SAMPLE_PERIOD: Duration = Duration::from_secs(10);
/// How long the samples are kept up to date after the last stats list.
pub const LAYER_SAMPLES_KEPT: Duration = Duration::from_secs(60);

/// Bytes and inodes of a writable layer.
type LayerUsage = (u64, u64);

/// A container and its usage.
type Measured = (ContainerRecord, ContainerUsage);

/// An interface's counters from /proc/<pid>/net/dev: receive bytes, packets, errors and drops,
/// then transmit bytes, packets, errors and drops.
pub type InterfaceCounters = (String, [u64; 8]);

/// A pod's usage with what ListPodSandboxMetrics reports beyond it: per running container (in
/// the order of [`PodUsage::containers`]) its [`CgroupDetail`], and the counters of the pod's
/// network interfaces (loopback left out, as cAdvisor leaves it).
pub type PodMetrics = (
    PodRecord,
    PodUsage,
    Vec<CgroupDetail>,
    Vec<InterfaceCounters>,
);

/// The filesystem holding the writable layers: device, size in bytes, inodes, free inodes.
pub type LayersFilesystem = (String, u64, u64, u64);

/// What measuring one container needs, gathered under its locks.
struct Target {
    record: ContainerRecord,
    /// None when the container is not running (its counters are zero).
    cgroup: Option<String>,
    upper: PathBuf,
}

impl Engine {
    /// Resource usage of a pod: its cgroup (all its containers), process count, the network
    /// interfaces of its namespace (read through a running container's /proc), and per
    /// running container usage.
    pub async fn pod_usage(self: &Arc<Self>, id: &str) -> Result<(PodRecord, PodUsage)> {
        let pod = self.pod(id).await?;
        self.pods_usage(vec![pod])
            .await
            .pop()
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {id} not found")))
    }

    /// [`Engine::pod_usage`] of each of these pods: one pass over the containers and one
    /// batch of cgroup reads for all of them (ListPodSandboxStats on a full node).
    pub async fn pods_usage(self: &Arc<Self>, pods: Vec<PodRecord>) -> Vec<(PodRecord, PodUsage)> {
        let wanted: std::collections::HashSet<&str> = pods.iter().map(|p| p.id.as_str()).collect();
        let running = self
            .select_containers(|c| {
                (c.state == ContainerState::Running && wanted.contains(c.pod_id.as_str()))
                    .then(|| c.clone())
            })
            .await;
        let mut by_pod: HashMap<String, Vec<(ContainerRecord, ContainerUsage)>> = HashMap::new();
        for (c, u) in self.containers_usage(running).await {
            by_pod.entry(c.pod_id.clone()).or_default().push((c, u));
        }
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            pods.into_iter()
                .map(|pod| {
                    let containers = by_pod.remove(&pod.id).unwrap_or_default();
                    let usage = engine.measure_pod(&pod, containers);
                    (pod, usage)
                })
                .collect()
        })
        .await
        .unwrap_or_default()
    }

    /// Reads a pod's cgroup and network counters (blocking).
    fn measure_pod(
        &self,
        pod: &PodRecord,
        containers: Vec<(ContainerRecord, ContainerUsage)>,
    ) -> PodUsage {
        let timestamp = now_nanos();
        let cgroup = self.hierarchy.stats(&pod.cgroup_path);
        let nano_cores = self.cpu_rate(&format!("pod:{}", pod.id), timestamp, cgroup.cpu_usage_ns);
        let interfaces = if pod.host_network() {
            vec![]
        } else {
            containers
                .iter()
                .find_map(|(c, _)| std::fs::read_to_string(format!("/proc/{}/net/dev", c.pid)).ok())
                .map(|t| {
                    parse_net_dev(&t)
                        .into_iter()
                        .filter(|i| i.0 != "lo")
                        .collect()
                })
                .unwrap_or_default()
        };
        PodUsage {
            timestamp,
            process_count: self.hierarchy.process_count(&pod.cgroup_path),
            cgroup,
            nano_cores,
            interfaces,
            containers,
        }
    }

    /// [`Engine::pods_usage`] of these pods, with the figures of [`PodMetrics`].
    pub async fn pods_metrics(self: &Arc<Self>, pods: Vec<PodRecord>) -> Vec<PodMetrics> {
        let measured = self.pods_usage(pods).await;
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            measured
                .into_iter()
                .map(|(pod, usage)| {
                    let details = usage
                        .containers
                        .iter()
                        .map(|(c, _)| {
                            let path = engine
                                .cfg
                                .cgroup_driver
                                .container_cgroup(&pod.cgroup_path, &c.id);
                            engine.hierarchy.detail(&path, c.pid)
                        })
                        .collect();
                    let interfaces = if pod.host_network() {
                        vec![]
                    } else {
                        usage
                            .containers
                            .iter()
                            .find_map(|(c, _)| {
                                std::fs::read_to_string(format!("/proc/{}/net/dev", c.pid)).ok()
                            })
                            .map(|t| {
                                parse_net_dev_counters(&t)
                                    .into_iter()
                                    .filter(|(name, _)| name != "lo")
                                    .collect()
                            })
                            .unwrap_or_default()
                    };
                    (pod, usage, details, interfaces)
                })
                .collect()
        })
        .await
        .unwrap_or_default()
    }

    /// The filesystem of the containers' writable layers (None when statvfs fails).
    pub async fn layers_filesystem(&self) -> Option<LayersFilesystem> {
        let dir = self.cfg.root.join("containers");
        tokio::task::spawn_blocking(move || {
            let st = nix::sys::statvfs::statvfs(&dir).ok()?;
            let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
            let device = std::fs::read_to_string("/proc/self/mountinfo")
                .ok()
                .and_then(|m| mount_source(&m, &dir))
                .or_else(|| {
                    use std::os::unix::fs::MetadataExt;
                    let dev = std::fs::metadata(&dir).ok()?.dev();
                    Some(format!("{}:{}", libc::major(dev), libc::minor(dev)))
                })?;
            let size = st.blocks() as u64 * st.fragment_size() as u64;
            Some((device, size, st.files() as u64, st.files_free() as u64))
        })
        .await
        .ok()
        .flatten()
    }

    /// CPU rate in nanocores since the previous sample under `key` (None on the first).
    fn cpu_rate(&self, key: &str, timestamp: i64, usage_ns: u64) -> Option<u64> {
        let mut samples = self.cpu_samples.lock().expect("cpu samples lock");
        // Updated in place: a fresh key per call would scatter small long-lived allocations
        // over the heap (and keep pages from being returned after a big list).
        let prev = match samples.get_mut(key) {
            Some(prev) => Some(std::mem::replace(prev, (timestamp, usage_ns))),
            None => {
                samples.insert(key.to_string(), (timestamp, usage_ns));
                None
            }
        };
        prev.and_then(|(t, u)| {
            let dt = timestamp.saturating_sub(t);
            (dt > 0 && usage_ns >= u)
                .then(|| ((usage_ns - u) as u128 * 1_000_000_000 / dt as u128) as u64)
        })
    }

    /// Usage of one container, its writable layer measured now.
    pub async fn container_usage(
        self: &Arc<Self>,
        id: &str,
    ) -> Result<(ContainerRecord, ContainerUsage)> {
        let rec = self.container(id).await?;
        let target = self.target(rec).await?;
        let engine = self.clone();
        let (layer, usage) = tokio::task::spawn_blocking(move || {
            let layer = crate::image::unpack::disk_usage(&target.upper);
            let usage = engine.measure(target, layer);
            (layer, usage)
        })
        .await
        .map_err(|e| Error::Internal(format!("measure container: {e}")))?;
        self.layer_usage
            .lock()
            .expect("layer usage lock")
            .insert(usage.0.id.clone(), layer);
        Ok(usage)
    }

    /// Usage of these containers (those whose pod went away meanwhile are left out), writable
    /// layers as last sampled. One blocking task reads all the cgroups.
    pub async fn containers_usage(
        self: &Arc<Self>,
        records: Vec<ContainerRecord>,
    ) -> Vec<(ContainerRecord, ContainerUsage)> {
        let mut targets = Vec::with_capacity(records.len());
        for rec in records {
            if let Ok(t) = self.target(rec).await {
                targets.push(t);
            }
        }
        self.layer_usage_wanted.store(
            now_nanos().max(0) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            let layers = engine.layer_usage.lock().expect("layer usage lock").clone();
            // Cgroup reads are system calls through cgroupfs: spread a long list over the
            // cores (a thread each for at least 128 containers).
            let threads = std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(targets.len().div_ceil(128))
                .max(1);
            let chunk = targets.len().div_ceil(threads).max(1);
            let mut parts: Vec<Vec<Target>> = Vec::new();
            let mut rest = targets.into_iter().peekable();
            while rest.peek().is_some() {
                parts.push(rest.by_ref().take(chunk).collect());
            }
            let measured: Vec<_> = std::thread::scope(|scope| {
                let handles: Vec<_> = parts
                    .into_iter()
                    .map(|part| scope.spawn(|| engine.measure_all(part, &layers)))
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_default())
                    .collect()
            });
            let mut out = Vec::with_capacity(measured.len());
            let mut cache = engine.layer_usage.lock().expect("layer usage lock");
            for (usage, fresh) in measured {
                if let Some(l) = fresh {
                    cache.insert(usage.0.id.clone(), l);
                }
                out.push(usage);
            }
            out
        })
        .await
        .unwrap_or_default()
    }

    /// [`Engine::measure`] for each target, with its writable layer as sampled in `layers`
    /// (measured now where it is missing, and then handed back to be kept).
    fn measure_all(
        &self,
        targets: Vec<Target>,
        layers: &HashMap<String, (u64, u64)>,
    ) -> Vec<(Measured, Option<LayerUsage>)> {
        targets
            .into_iter()
            .map(|t| {
                let (layer, fresh) = match layers.get(&t.record.id) {
                    Some(l) => (*l, None),
                    None => {
                        let l = crate::image::unpack::disk_usage(&t.upper);
                        (l, Some(l))
                    }
                };
                (self.measure(t, layer), fresh)
            })
            .collect()
    }

    /// Measures the writable layers of running containers every [`LAYER_SAMPLE_PERIOD`] and
    /// forgets the ones of containers that are gone, while stats lists use them (see the
    /// module doc). Runs for the daemon's life.
    pub async fn sample_layer_usage(self: Arc<Self>) {
        loop {
            tokio::time::sleep(LAYER_SAMPLE_PERIOD).await;
            let wanted = self
                .layer_usage_wanted
                .load(std::sync::atomic::Ordering::Relaxed);
            let idle = (now_nanos().max(0) as u64).saturating_sub(wanted);
            if idle > LAYER_SAMPLES_KEPT.as_nanos() as u64 {
                self.layer_usage.lock().expect("layer usage lock").clear();
                continue;
            }
            let running = self
                .select_containers(|c| {
                    (c.state == ContainerState::Running)
                        .then(|| (c.id.clone(), self.store.container_dir(&c.id).join("upper")))
                })
                .await;
            let engine = self.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let measured: Vec<(String, LayerUsage)> = running
                    .into_iter()
                    .map(|(id, upper)| {
                        let usage = crate::image::unpack::disk_usage(&upper);
                        (id, usage)
                    })
                    .collect();
                // Gone containers are dropped with the old map.
                *engine.layer_usage.lock().expect("layer usage lock") =
                    measured.into_iter().collect();
            })
            .await;
        }
    }

    /// Forgets a removed container's samples.
    pub(super) fn forget_usage(&self, id: &str) {
        self.cpu_samples
            .lock()
            .expect("cpu samples lock")
            .remove(id);
        self.layer_usage
            .lock()
            .expect("layer usage lock")
            .remove(id);
    }

    async fn target(&self, record: ContainerRecord) -> Result<Target> {
        let pod_cgroup = self.pod_cgroup(&record.pod_id).await?;
        let cgroup = (record.state == ContainerState::Running).then(|| {
            self.cfg
                .cgroup_driver
                .container_cgroup(&pod_cgroup, &record.id)
        });
        let upper = self.store.container_dir(&record.id).join("upper");
        Ok(Target {
            record,
            cgroup,
            upper,
        })
    }

    /// Reads the cgroup counters (blocking) and puts the usage together.
    fn measure(&self, t: Target, (bytes, inodes): (u64, u64)) -> (ContainerRecord, ContainerUsage) {
        let timestamp = now_nanos();
        let cgroup: CgroupStats = t
            .cgroup
            .map(|path| self.hierarchy.stats(&path))
            .unwrap_or_default();
        let nano_cores = self.cpu_rate(&t.record.id, timestamp, cgroup.cpu_usage_ns);
        (
            t.record,
            ContainerUsage {
                timestamp,
                cgroup,
                nano_cores,
                writable_bytes: bytes,
                writable_inodes: inodes,
                writable_mountpoint: self.cfg.root.join("containers").display().to_string(),
            },
        )
    }
}

/// Per interface of a /proc/<pid>/net/dev text, its [`InterfaceCounters`].
pub(super) fn parse_net_dev_counters(text: &str) -> Vec<InterfaceCounters> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|v| v.parse().ok())
                .collect::<Option<_>>()?;
            (f.len() >= 12).then(|| {
                let c = [f[0], f[1], f[2], f[3], f[8], f[9], f[10], f[11]];
                (name.trim().to_string(), c)
            })
        })
        .collect()
}

/// The source of the mount that holds `path`, from a /proc/self/mountinfo text: the mount with
/// the longest mount point above `path`, the last mounted where several share it.
fn mount_source(mountinfo: &str, path: &std::path::Path) -> Option<String> {
    let mut best: Option<(usize, &str)> = None;
    for line in mountinfo.lines() {
        // id parent major:minor root mountpoint opts... - fstype source superopts
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let (Some(mount_point), Some(source)) = (
            left.split_whitespace().nth(4),
            right.split_whitespace().nth(1),
        ) else {
            continue;
        };
        let mount_point = unescape_mountinfo(mount_point);
        if path.starts_with(&mount_point) && best.is_none_or(|(len, _)| mount_point.len() >= len) {
            best = Some((mount_point.len(), source));
        }
    }
    best.map(|(_, source)| unescape_mountinfo(source))
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) if b[i] == b'\\' => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_counters_keep_packets_and_drops() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  eth0:    5000      40    2    3    0     0          0         0     3000      30    1    4    0     0       0          0\n";
        assert_eq!(
            parse_net_dev_counters(text),
            vec![
                ("lo".to_string(), [100, 1, 0, 0, 100, 1, 0, 0]),
                ("eth0".to_string(), [5000, 40, 2, 3, 3000, 30, 1, 4]),
            ]
        );
        assert!(parse_net_dev_counters("a\nb\n  eth0: 1 2 x\n").is_empty());
    }

    #[test]
    fn mount_source_is_the_deepest_mount_above_the_path() {
        let mi = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                  30 22 0:40 / /var/lib rw shared:2 - xfs /dev/sdb rw\n\
                  31 22 0:41 / /var/lib/my\\040dir rw - tmpfs tmp\\040fs rw\n\
                  32 30 0:42 / /var/lib rw - xfs /dev/sdc rw\n";
        let p = std::path::Path::new;
        assert_eq!(
            mount_source(mi, p("/var/lib/crust/containers")).as_deref(),
            Some("/dev/sdc")
        );
        assert_eq!(
            mount_source(mi, p("/var/library")).as_deref(),
            Some("/dev/sda1")
        );
        assert_eq!(
            mount_source(mi, p("/var/lib/my dir/x")).as_deref(),
            Some("tmp fs")
        );
        assert_eq!(mount_source("", p("/x")), None);
    }
}
