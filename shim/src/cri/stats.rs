//! ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats (the metrics RPCs
//! are in metrics.rs).

use std::sync::Arc;

use crust_proto::cri;
use crust_runtime::cgroups::{CgroupStats, Pressure};
use crust_runtime::engine::{ContainerUsage, PodUsage};
use crust_runtime::store::{ContainerRecord, ContainerState, PodRecord};
use crust_runtime::{Engine, Result};

use super::labels_match;

fn u64v(v: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value: v })
}

/// A cgroup's pressure file as CRI reports it (stall totals in nanoseconds).
fn psi(p: Option<Pressure>) -> Option<cri::PsiStats> {
    let line = |l: crust_runtime::cgroups::PressureLine| cri::PsiData {
        total: l.total_us.saturating_mul(1000),
        avg10: l.avg10,
        avg60: l.avg60,
        avg300: l.avg300,
    };
    p.map(|p| cri::PsiStats {
        full: Some(line(p.full)),
        some: Some(line(p.some)),
    })
}

fn io_usage(timestamp: i64, g: &CgroupStats) -> Option<cri::IoUsage> {
    psi(g.io_pressure).map(|p| cri::IoUsage {
        timestamp,
        psi: Some(p),
    })
}

fn cpu_usage(timestamp: i64, g: &CgroupStats, nano_cores: Option<u64>) -> cri::CpuUsage {
    cri::CpuUsage {
        timestamp,
        usage_core_nano_seconds: u64v(g.cpu_usage_ns),
        usage_nano_cores: nano_cores.and_then(u64v),
        psi: psi(g.cpu_pressure),
    }
}

fn memory_usage(timestamp: i64, g: &CgroupStats) -> cri::MemoryUsage {
    cri::MemoryUsage {
        timestamp,
        working_set_bytes: u64v(g.memory_working_set),
        available_bytes: g
            .memory_limit
            .map(|l| l.saturating_sub(g.memory_working_set))
            .and_then(u64v),
        usage_bytes: u64v(g.memory_usage),
        rss_bytes: u64v(g.memory_rss),
        page_faults: u64v(g.page_faults),
        major_page_faults: u64v(g.major_page_faults),
        psi: psi(g.memory_pressure),
    }
}

fn to_cri(c: &ContainerRecord, u: &ContainerUsage) -> cri::ContainerStats {
    let g = &u.cgroup;
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: c.id.clone(),
            metadata: c.config.metadata.clone(),
            labels: c.config.labels.clone(),
            annotations: c.config.annotations.clone(),
        }),
        cpu: Some(cpu_usage(u.timestamp, g, u.nano_cores)),
        memory: Some(memory_usage(u.timestamp, g)),
        io: io_usage(u.timestamp, g),
        writable_layer: Some(cri::FilesystemUsage {
            timestamp: u.timestamp,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: u.writable_mountpoint.clone(),
            }),
            used_bytes: u64v(u.writable_bytes),
            inodes_used: u64v(u.writable_inodes),
        }),
        swap: Some(cri::SwapUsage {
            timestamp: u.timestamp,
            swap_available_bytes: None,
            swap_usage_bytes: u64v(g.swap_usage),
        }),
    }
}

pub fn container_stats_id(r: &cri::ContainerStatsRequest) -> String {
    r.container_id.clone()
}

pub async fn container_stats(
    e: &Arc<Engine>,
    req: cri::ContainerStatsRequest,
) -> Result<cri::ContainerStatsResponse> {
    let (c, u) = e.container_usage(&req.container_id).await?;
    Ok(cri::ContainerStatsResponse {
        stats: Some(to_cri(&c, &u)),
    })
}

pub fn list_container_stats_id(_: &cri::ListContainerStatsRequest) -> String {
    String::new()
}

/// Stats of running containers (as kubelet expects), after the filter.
async fn running_usage(
    e: &Arc<Engine>,
    f: &cri::ContainerStatsFilter,
) -> Vec<(ContainerRecord, ContainerUsage)> {
    let running = e
        .select_containers(|c| {
            let keep = c.state == ContainerState::Running
                && (f.id.is_empty() || c.id.starts_with(&f.id))
                && (f.pod_sandbox_id.is_empty() || c.pod_id.starts_with(&f.pod_sandbox_id))
                && labels_match(&f.label_selector, &c.config.labels);
            keep.then(|| c.clone())
        })
        .await;
    e.containers_usage(running).await
}

pub async fn list_container_stats(
    e: &Arc<Engine>,
    req: cri::ListContainerStatsRequest,
) -> Result<cri::ListContainerStatsResponse> {
    let f = req.filter.unwrap_or_default();
    let stats: Vec<cri::ContainerStats> = running_usage(e, &f)
        .await
        .iter()
        .map(|(c, u)| to_cri(c, u))
        .collect();
    Ok(cri::ListContainerStatsResponse { stats })
}

fn pod_to_cri(p: &PodRecord, u: &PodUsage) -> cri::PodSandboxStats {
    let g = &u.cgroup;
    let iface =
        |(name, rx, rxe, tx, txe): &(String, u64, u64, u64, u64)| cri::NetworkInterfaceUsage {
            name: name.clone(),
            rx_bytes: u64v(*rx),
            rx_errors: u64v(*rxe),
            tx_bytes: u64v(*tx),
            tx_errors: u64v(*txe),
        };
    let mut ifaces: Vec<cri::NetworkInterfaceUsage> = u.interfaces.iter().map(iface).collect();
    // kubelet reads eth0 (the CNI interface) as the default.
    let default_at = ifaces.iter().position(|i| i.name == "eth0").unwrap_or(0);
    let default_interface = (!ifaces.is_empty()).then(|| ifaces.remove(default_at));
    cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: p.id.clone(),
            metadata: p.config.metadata.clone(),
            labels: p.config.labels.clone(),
            annotations: p.config.annotations.clone(),
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: Some(cpu_usage(u.timestamp, g, u.nano_cores)),
            memory: Some(memory_usage(u.timestamp, g)),
            io: io_usage(u.timestamp, g),
            network: Some(cri::NetworkUsage {
                timestamp: u.timestamp,
                default_interface,
                interfaces: ifaces,
            }),
            process: Some(cri::ProcessUsage {
                timestamp: u.timestamp,
                process_count: u64v(u.process_count),
            }),
            containers: u.containers.iter().map(|(c, cu)| to_cri(c, cu)).collect(),
        }),
        windows: None,
    }
}

pub fn pod_sandbox_stats_id(r: &cri::PodSandboxStatsRequest) -> String {
    r.pod_sandbox_id.clone()
}

pub async fn pod_sandbox_stats(
    e: &Arc<Engine>,
    req: cri::PodSandboxStatsRequest,
) -> Result<cri::PodSandboxStatsResponse> {
    let (p, u) = e.pod_usage(&req.pod_sandbox_id).await?;
    Ok(cri::PodSandboxStatsResponse {
        stats: Some(pod_to_cri(&p, &u)),
    })
}

pub fn list_pod_sandbox_stats_id(_: &cri::ListPodSandboxStatsRequest) -> String {
    String::new()
}

pub async fn list_pod_sandbox_stats(
    e: &Arc<Engine>,
    req: cri::ListPodSandboxStatsRequest,
) -> Result<cri::ListPodSandboxStatsResponse> {
    let f = req.filter.unwrap_or_default();
    let pods = e
        .list_pods()
        .await
        .into_iter()
        .filter(|p| {
            p.state == crust_runtime::store::PodState::Ready
                && (f.id.is_empty() || p.id.starts_with(&f.id))
                && labels_match(&f.label_selector, &p.config.labels)
        })
        .collect();
    let stats: Vec<cri::PodSandboxStats> = e
        .pods_usage(pods)
        .await
        .iter()
        .map(|(p, u)| pod_to_cri(p, u))
        .collect();
    Ok(cri::ListPodSandboxStatsResponse { stats })
}
