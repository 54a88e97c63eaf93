//! ContainerStats, ListContainerStats, ListMetricDescriptors, ListPodSandboxMetrics.

use std::sync::Arc;

use crust_proto::cri;
use crust_runtime::cgroups::CgroupStats;
use crust_runtime::engine::{ContainerUsage, PodUsage};
use crust_runtime::store::{ContainerRecord, ContainerState, PodRecord};
use crust_runtime::{Engine, Result};

use super::labels_match;

fn u64v(v: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value: v })
}

fn cpu_usage(timestamp: i64, g: &CgroupStats, nano_cores: Option<u64>) -> cri::CpuUsage {
    cri::CpuUsage {
        timestamp,
        usage_core_nano_seconds: u64v(g.cpu_usage_ns),
        usage_nano_cores: nano_cores.and_then(u64v),
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

/// The cAdvisor-named metrics crust reports for kubelet's CRI-only metrics mode.
const METRICS: &[(&str, &str, cri::MetricType)] = &[
    (
        "container_cpu_usage_seconds_total",
        "Cumulative cpu time consumed in seconds.",
        cri::MetricType::Counter,
    ),
    (
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed.",
        cri::MetricType::Gauge,
    ),
    (
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
        cri::MetricType::Gauge,
    ),
    (
        "container_memory_rss",
        "Size of RSS in bytes.",
        cri::MetricType::Gauge,
    ),
    (
        "container_memory_failures_total",
        "Cumulative count of memory allocation failures (page faults).",
        cri::MetricType::Counter,
    ),
    (
        "container_fs_usage_bytes",
        "Number of bytes that are consumed by the container on this filesystem.",
        cri::MetricType::Gauge,
    ),
    (
        "container_fs_inodes_total",
        "Number of inodes used by the container on this filesystem.",
        cri::MetricType::Gauge,
    ),
];
const LABELS: &[&str] = &["container", "id", "image", "name", "namespace", "pod"];

pub fn list_metric_descriptors_id(_: &cri::ListMetricDescriptorsRequest) -> String {
    String::new()
}

/// Pod network metrics, per interface of the pod's network namespace.
const NETWORK_METRICS: &[(&str, &str)] = &[
    (
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received.",
    ),
    (
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving.",
    ),
    (
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted.",
    ),
    (
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting.",
    ),
];

fn descriptor(name: &str, help: &str, extra_label: Option<&str>) -> cri::MetricDescriptor {
    cri::MetricDescriptor {
        name: name.to_string(),
        help: help.to_string(),
        label_keys: LABELS
            .iter()
            .copied()
            .chain(extra_label)
            .map(str::to_string)
            .collect(),
    }
}

pub async fn list_metric_descriptors(
    _e: &Engine,
    _req: cri::ListMetricDescriptorsRequest,
) -> Result<cri::ListMetricDescriptorsResponse> {
    let descriptors = METRICS
        .iter()
        .map(|(name, help, _)| descriptor(name, help, None))
        .chain(
            NETWORK_METRICS
                .iter()
                .map(|(name, help)| descriptor(name, help, Some("interface"))),
        )
        .collect();
    Ok(cri::ListMetricDescriptorsResponse { descriptors })
}

pub fn list_pod_sandbox_metrics_id(_: &cri::ListPodSandboxMetricsRequest) -> String {
    String::new()
}

fn metric(
    name: &str,
    kind: cri::MetricType,
    timestamp: i64,
    labels: Vec<String>,
    value: u64,
) -> cri::Metric {
    cri::Metric {
        name: name.to_string(),
        timestamp,
        metric_type: kind as i32,
        label_values: labels,
        value: u64v(value),
    }
}

pub async fn list_pod_sandbox_metrics(
    e: &Arc<Engine>,
    _req: cri::ListPodSandboxMetricsRequest,
) -> Result<cri::ListPodSandboxMetricsResponse> {
    let mut pod_metrics = Vec::new();
    let ready = e
        .list_pods()
        .await
        .into_iter()
        .filter(|p| p.state == crust_runtime::store::PodState::Ready)
        .collect();
    for (p, pu) in e.pods_usage(ready).await {
        let meta = p.config.metadata.clone().unwrap_or_default();
        let container_metrics = pu
            .containers
            .iter()
            .map(|(c, u)| {
                let name = c
                    .config
                    .metadata
                    .as_ref()
                    .map(|m| m.name.clone())
                    .unwrap_or_default();
                let labels = vec![
                    name.clone(),
                    c.id.clone(),
                    c.image_name.clone(),
                    name,
                    meta.namespace.clone(),
                    meta.name.clone(),
                ];
                let values = [
                    u.cgroup.cpu_usage_ns / 1_000_000_000,
                    u.cgroup.memory_usage,
                    u.cgroup.memory_working_set,
                    u.cgroup.memory_rss,
                    u.cgroup.page_faults,
                    u.writable_bytes,
                    u.writable_inodes,
                ];
                cri::ContainerMetrics {
                    container_id: c.id.clone(),
                    metrics: METRICS
                        .iter()
                        .zip(values)
                        .map(|((name, _, kind), v)| {
                            metric(name, *kind, u.timestamp, labels.clone(), v)
                        })
                        .collect(),
                }
            })
            .collect();
        // cAdvisor reports pod network under the pause container, named "POD".
        let mut metrics = Vec::new();
        for (iface, rx, rxe, tx, txe) in &pu.interfaces {
            let labels = vec![
                "POD".to_string(),
                p.id.clone(),
                String::new(),
                String::new(),
                meta.namespace.clone(),
                meta.name.clone(),
                iface.clone(),
            ];
            for ((name, _), v) in NETWORK_METRICS.iter().zip([rx, rxe, tx, txe]) {
                metrics.push(metric(
                    name,
                    cri::MetricType::Counter,
                    pu.timestamp,
                    labels.clone(),
                    *v,
                ));
            }
        }
        pod_metrics.push(cri::PodSandboxMetrics {
            pod_sandbox_id: p.id.clone(),
            metrics,
            container_metrics,
        });
    }
    Ok(cri::ListPodSandboxMetricsResponse { pod_metrics })
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
