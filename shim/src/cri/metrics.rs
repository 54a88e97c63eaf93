//! ListMetricDescriptors and ListPodSandboxMetrics: cAdvisor's container metrics, named,
//! labelled and measured as kubelet's /metrics/cadvisor shows them, for kubelet's
//! PodAndContainerStatsFromCRI mode (where kubelet serves what these RPCs return).
//!
//! CRI values are unsigned integers: seconds are whole seconds, and a figure cAdvisor gives as -1
//! (an unlimited ulimit) is left out. So is every figure this host cannot measure (PSI on cgroup
//! v1, memory.peak before kernel 5.19, CFS counters without a quota…): no sample rather than a
//! zero nobody measured.

use std::path::Path;
use std::sync::Arc;

use crust_proto::cri;
use crust_proto::cri::MetricType::{Counter, Gauge};
use crust_runtime::cgroups::{CgroupDetail, Hierarchy};
use crust_runtime::engine::{ContainerUsage, PodUsage};
use crust_runtime::store::{ContainerRecord, PodRecord, PodState};
use crust_runtime::{Engine, Result};

/// The labels of every metric, as kubelet's cAdvisor labels a container's.
const LABELS: &[&str] = &["container", "id", "image", "name", "namespace", "pod"];

/// What a host needs for crust to report a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    Nothing,
    /// Pressure stall information: cgroup v2 and a kernel with PSI on.
    Psi,
    Hugetlb,
    /// The hugetlb controller of cgroup v1 (v2 keeps no maximum).
    HugetlbV1,
}

struct Desc {
    name: &'static str,
    help: &'static str,
    kind: cri::MetricType,
    /// Labels after [`LABELS`].
    extra: &'static [&'static str],
    needs: Needs,
}

const fn counter(name: &'static str, help: &'static str) -> Desc {
    Desc {
        name,
        help,
        kind: Counter,
        extra: &[],
        needs: Needs::Nothing,
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Desc {
    Desc {
        kind: Gauge,
        ..counter(name, help)
    }
}

impl Desc {
    const fn by(self, extra: &'static [&'static str]) -> Desc {
        Desc { extra, ..self }
    }

    const fn needs(self, needs: Needs) -> Desc {
        Desc { needs, ..self }
    }
}

const DESCRIPTORS: &[Desc] = &[
    gauge(
        "container_last_seen",
        "Last time a container was seen by the exporter",
    ),
    gauge(
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds.",
    ),
    counter(
        "container_cpu_user_seconds_total",
        "Cumulative user cpu time consumed in seconds.",
    ),
    counter(
        "container_cpu_system_seconds_total",
        "Cumulative system cpu time consumed in seconds.",
    ),
    counter(
        "container_cpu_usage_seconds_total",
        "Cumulative cpu time consumed in seconds.",
    )
    .by(&["cpu"]),
    counter(
        "container_cpu_cfs_periods_total",
        "Number of elapsed enforcement period intervals.",
    ),
    counter(
        "container_cpu_cfs_throttled_periods_total",
        "Number of throttled period intervals.",
    ),
    counter(
        "container_cpu_cfs_throttled_seconds_total",
        "Total time duration the container has been throttled.",
    ),
    counter(
        "container_pressure_cpu_stalled_seconds_total",
        "Total time duration no tasks in the container could make progress due to CPU congestion.",
    )
    .needs(Needs::Psi),
    counter(
        "container_pressure_cpu_waiting_seconds_total",
        "Total time duration tasks in the container have waited due to CPU congestion.",
    )
    .needs(Needs::Psi),
    counter(
        "container_pressure_memory_stalled_seconds_total",
        "Total time duration no tasks in the container could make progress due to memory congestion.",
    )
    .needs(Needs::Psi),
    counter(
        "container_pressure_memory_waiting_seconds_total",
        "Total time duration tasks in the container have waited due to memory congestion.",
    )
    .needs(Needs::Psi),
    counter(
        "container_pressure_io_stalled_seconds_total",
        "Total time duration no tasks in the container could make progress due to IO congestion.",
    )
    .needs(Needs::Psi),
    counter(
        "container_pressure_io_waiting_seconds_total",
        "Total time duration tasks in the container have waited due to IO congestion.",
    )
    .needs(Needs::Psi),
    gauge(
        "container_hugetlb_usage_bytes",
        "Current hugepage usage in bytes",
    )
    .by(&["pagesize"])
    .needs(Needs::Hugetlb),
    gauge(
        "container_hugetlb_max_usage_bytes",
        "Maximum hugepage usage recorded in bytes",
    )
    .by(&["pagesize"])
    .needs(Needs::HugetlbV1),
    gauge(
        "container_memory_cache",
        "Number of bytes of page cache memory.",
    ),
    gauge("container_memory_rss", "Size of RSS in bytes."),
    gauge(
        "container_memory_kernel_usage",
        "Size of kernel memory allocated in bytes.",
    ),
    gauge(
        "container_memory_mapped_file",
        "Size of memory mapped files in bytes.",
    ),
    gauge("container_memory_swap", "Container swap usage in bytes."),
    counter(
        "container_memory_failcnt",
        "Number of memory usage hits limits",
    ),
    gauge(
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
    ),
    gauge(
        "container_memory_max_usage_bytes",
        "Maximum memory usage recorded in bytes",
    ),
    gauge(
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
    ),
    counter(
        "container_memory_failures_total",
        "Cumulative count of memory allocation failures.",
    )
    .by(&["failure_type", "scope"]),
    counter(
        "container_oom_events_total",
        "Count of out of memory events observed for the container",
    ),
    gauge("container_fs_inodes_free", "Number of available Inodes").by(&["device"]),
    gauge("container_fs_inodes_total", "Number of Inodes").by(&["device"]),
    gauge(
        "container_fs_limit_bytes",
        "Number of bytes that can be consumed by the container on this filesystem.",
    )
    .by(&["device"]),
    gauge(
        "container_fs_usage_bytes",
        "Number of bytes that are consumed by the container on this filesystem.",
    )
    .by(&["device"]),
    counter(
        "container_fs_reads_bytes_total",
        "Cumulative count of bytes read",
    )
    .by(&["device"]),
    counter(
        "container_fs_reads_total",
        "Cumulative count of reads completed",
    )
    .by(&["device"]),
    counter(
        "container_fs_writes_bytes_total",
        "Cumulative count of bytes written",
    )
    .by(&["device"]),
    counter(
        "container_fs_writes_total",
        "Cumulative count of writes completed",
    )
    .by(&["device"]),
    counter(
        "container_blkio_device_usage_total",
        "Blkio Device bytes usage",
    )
    .by(&["device", "major", "minor", "operation"]),
    counter(
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received",
    )
    .by(&["interface"]),
    counter(
        "container_network_receive_packets_total",
        "Cumulative count of packets received",
    )
    .by(&["interface"]),
    counter(
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving",
    )
    .by(&["interface"]),
    counter(
        "container_network_receive_packets_dropped_total",
        "Cumulative count of packets dropped while receiving",
    )
    .by(&["interface"]),
    counter(
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted",
    )
    .by(&["interface"]),
    counter(
        "container_network_transmit_packets_total",
        "Cumulative count of packets transmitted",
    )
    .by(&["interface"]),
    counter(
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting",
    )
    .by(&["interface"]),
    counter(
        "container_network_transmit_packets_dropped_total",
        "Cumulative count of packets dropped while transmitting",
    )
    .by(&["interface"]),
    gauge(
        "container_processes",
        "Number of processes running inside the container.",
    ),
    gauge(
        "container_file_descriptors",
        "Number of open file descriptors for the container.",
    ),
    gauge(
        "container_sockets",
        "Number of open sockets for the container.",
    ),
    gauge(
        "container_threads",
        "Number of threads running inside the container",
    ),
    gauge(
        "container_threads_max",
        "Maximum number of threads allowed inside the container, infinity if value is zero",
    ),
    gauge(
        "container_ulimits_soft",
        "Soft ulimit values for the container root process. Unlimited if -1, except priority and nice",
    )
    .by(&["ulimit"]),
    gauge("container_spec_cpu_period", "CPU period of the container."),
    gauge("container_spec_cpu_quota", "CPU quota of the container."),
    gauge("container_spec_cpu_shares", "CPU share of the container."),
    gauge(
        "container_spec_memory_limit_bytes",
        "Memory limit for the container.",
    ),
    gauge(
        "container_spec_memory_reservation_limit_bytes",
        "Memory reservation limit for the container.",
    ),
    gauge(
        "container_spec_memory_swap_limit_bytes",
        "Memory swap limit for the container.",
    ),
];

/// The network metrics, in the order of the engine's interface counters.
const NETWORK: [&str; 8] = [
    "container_network_receive_bytes_total",
    "container_network_receive_packets_total",
    "container_network_receive_errors_total",
    "container_network_receive_packets_dropped_total",
    "container_network_transmit_bytes_total",
    "container_network_transmit_packets_total",
    "container_network_transmit_errors_total",
    "container_network_transmit_packets_dropped_total",
];

/// Which of the needs this host meets.
fn host_has(h: &Hierarchy, needs: Needs) -> bool {
    match needs {
        Needs::Nothing => true,
        Needs::Psi => matches!(h, Hierarchy::V2 { .. }) && Path::new("/proc/pressure/cpu").exists(),
        Needs::Hugetlb => h.has_controller("hugetlb"),
        Needs::HugetlbV1 => matches!(h, Hierarchy::V1 { .. }) && h.has_controller("hugetlb"),
    }
}

pub fn list_metric_descriptors_id(_: &cri::ListMetricDescriptorsRequest) -> String {
    String::new()
}

pub async fn list_metric_descriptors(
    e: &Engine,
    _req: cri::ListMetricDescriptorsRequest,
) -> Result<cri::ListMetricDescriptorsResponse> {
    let descriptors = DESCRIPTORS
        .iter()
        .filter(|d| host_has(&e.hierarchy, d.needs))
        .map(|d| cri::MetricDescriptor {
            name: d.name.to_string(),
            help: d.help.to_string(),
            label_keys: LABELS
                .iter()
                .chain(d.extra)
                .map(|l| l.to_string())
                .collect(),
        })
        .collect();
    Ok(cri::ListMetricDescriptorsResponse { descriptors })
}

pub fn list_pod_sandbox_metrics_id(_: &cri::ListPodSandboxMetricsRequest) -> String {
    String::new()
}

pub async fn list_pod_sandbox_metrics(
    e: &Arc<Engine>,
    _req: cri::ListPodSandboxMetricsRequest,
) -> Result<cri::ListPodSandboxMetricsResponse> {
    let ready = e
        .list_pods()
        .await
        .into_iter()
        .filter(|p| p.state == PodState::Ready)
        .collect();
    let fs = e.layers_filesystem().await;
    let now = crust_runtime::now_nanos();
    let pod_metrics = e
        .pods_metrics(ready)
        .await
        .into_iter()
        .map(|(p, pu, details, interfaces)| {
            let container_metrics = pu
                .containers
                .iter()
                .zip(&details)
                .map(|((c, u), d)| cri::ContainerMetrics {
                    container_id: c.id.clone(),
                    metrics: container_samples(&p, c, u, d, fs.as_ref(), now),
                })
                .collect();
            cri::PodSandboxMetrics {
                pod_sandbox_id: p.id.clone(),
                metrics: network_samples(&p, &pu, &interfaces),
                container_metrics,
            }
        })
        .collect();
    Ok(cri::ListPodSandboxMetricsResponse { pod_metrics })
}

/// Samples of one container or pod: its labels, and the time they were measured.
struct Samples {
    labels: Vec<String>,
    timestamp: i64,
    out: Vec<cri::Metric>,
}

impl Samples {
    fn new(labels: Vec<String>, timestamp: i64) -> Samples {
        Samples {
            labels,
            timestamp,
            out: Vec::new(),
        }
    }

    /// A sample of metric `name` (one of [`DESCRIPTORS`]) with its extra label values.
    fn add(&mut self, name: &'static str, value: u64, extra: &[&str]) {
        let desc = DESCRIPTORS.iter().find(|d| d.name == name);
        debug_assert!(
            desc.is_some_and(|d| d.extra.len() == extra.len()),
            "{name}: not described with {} extra labels",
            extra.len()
        );
        let mut label_values = self.labels.clone();
        label_values.extend(extra.iter().map(|v| v.to_string()));
        self.out.push(cri::Metric {
            name: name.to_string(),
            timestamp: self.timestamp,
            metric_type: desc.map_or(Gauge, |d| d.kind) as i32,
            label_values,
            value: Some(cri::UInt64Value { value }),
        });
    }

    fn add_some(&mut self, name: &'static str, value: Option<u64>) {
        if let Some(v) = value {
            self.add(name, v, &[]);
        }
    }
}

const NANOS: u64 = 1_000_000_000;

fn container_samples(
    pod: &PodRecord,
    c: &ContainerRecord,
    u: &ContainerUsage,
    d: &CgroupDetail,
    fs: Option<&(String, u64, u64, u64)>,
    now: i64,
) -> Vec<cri::Metric> {
    let meta = pod.config.metadata.clone().unwrap_or_default();
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
        meta.namespace,
        meta.name,
    ];
    let g = &u.cgroup;
    let mut s = Samples::new(labels, u.timestamp);
    s.add("container_last_seen", now.max(0) as u64 / NANOS, &[]);
    s.add(
        "container_start_time_seconds",
        c.started_at.max(0) as u64 / NANOS,
        &[],
    );

    s.add_some(
        "container_cpu_user_seconds_total",
        d.cpu_user_ns.map(|v| v / NANOS),
    );
    s.add_some(
        "container_cpu_system_seconds_total",
        d.cpu_system_ns.map(|v| v / NANOS),
    );
    s.add(
        "container_cpu_usage_seconds_total",
        g.cpu_usage_ns / NANOS,
        &["total"],
    );
    if let Some(cfs) = d.cfs {
        s.add("container_cpu_cfs_periods_total", cfs.periods, &[]);
        s.add(
            "container_cpu_cfs_throttled_periods_total",
            cfs.throttled_periods,
            &[],
        );
        s.add(
            "container_cpu_cfs_throttled_seconds_total",
            cfs.throttled_ns / NANOS,
            &[],
        );
    }
    let pressure = [
        (
            g.cpu_pressure,
            "container_pressure_cpu_stalled_seconds_total",
            "container_pressure_cpu_waiting_seconds_total",
        ),
        (
            g.memory_pressure,
            "container_pressure_memory_stalled_seconds_total",
            "container_pressure_memory_waiting_seconds_total",
        ),
        (
            g.io_pressure,
            "container_pressure_io_stalled_seconds_total",
            "container_pressure_io_waiting_seconds_total",
        ),
    ];
    for (p, stalled, waiting) in pressure {
        if let Some(p) = p {
            // Stalled: no task could run ("full"); waiting: some task waited ("some").
            s.add(stalled, p.full.total_us / 1_000_000, &[]);
            s.add(waiting, p.some.total_us / 1_000_000, &[]);
        }
    }
    for h in &d.hugetlb {
        s.add("container_hugetlb_usage_bytes", h.usage, &[&h.pagesize]);
        if let Some(max) = h.max_usage {
            s.add("container_hugetlb_max_usage_bytes", max, &[&h.pagesize]);
        }
    }

    s.add_some("container_memory_cache", d.memory_cache);
    s.add("container_memory_rss", g.memory_rss, &[]);
    s.add_some("container_memory_kernel_usage", d.memory_kernel);
    s.add_some("container_memory_mapped_file", d.memory_mapped_file);
    s.add_some("container_memory_swap", d.memory_swap);
    s.add_some("container_memory_failcnt", d.memory_failcnt);
    s.add("container_memory_usage_bytes", g.memory_usage, &[]);
    s.add_some("container_memory_max_usage_bytes", d.memory_max_usage);
    s.add(
        "container_memory_working_set_bytes",
        g.memory_working_set,
        &[],
    );
    for (scope, faults) in [
        ("container", d.faults_container),
        ("hierarchy", d.faults_hierarchy),
    ] {
        if let Some((minor, major)) = faults {
            s.add(
                "container_memory_failures_total",
                minor,
                &["pgfault", scope],
            );
            s.add(
                "container_memory_failures_total",
                major,
                &["pgmajfault", scope],
            );
        }
    }
    s.add_some("container_oom_events_total", d.oom_kills);

    if let Some((device, size, inodes, inodes_free)) = fs {
        s.add("container_fs_inodes_free", *inodes_free, &[device]);
        s.add("container_fs_inodes_total", *inodes, &[device]);
        s.add("container_fs_limit_bytes", *size, &[device]);
        s.add("container_fs_usage_bytes", u.writable_bytes, &[device]);
    }
    for (ios, read, write) in [
        (
            &d.io_bytes,
            "container_fs_reads_bytes_total",
            "container_fs_writes_bytes_total",
        ),
        (
            &d.io_ops,
            "container_fs_reads_total",
            "container_fs_writes_total",
        ),
    ] {
        for io in ios.iter() {
            match io.operation.as_str() {
                "Read" => s.add(read, io.value, &[&io.device]),
                "Write" => s.add(write, io.value, &[&io.device]),
                _ => {}
            }
        }
    }
    for io in &d.io_bytes {
        let (major, minor) = (io.major.to_string(), io.minor.to_string());
        s.add(
            "container_blkio_device_usage_total",
            io.value,
            &[&io.device, &major, &minor, &io.operation],
        );
    }

    let t = &d.tasks;
    s.add("container_processes", t.processes, &[]);
    s.add("container_file_descriptors", t.file_descriptors, &[]);
    s.add("container_sockets", t.sockets, &[]);
    s.add_some("container_threads", d.threads);
    s.add_some("container_threads_max", d.threads_max);
    if let Some(limit) = t.open_files_soft_limit {
        s.add("container_ulimits_soft", limit, &["max_open_files"]);
    }

    let spec = &d.spec;
    s.add_some("container_spec_cpu_period", spec.cpu_period);
    s.add_some("container_spec_cpu_quota", spec.cpu_quota);
    s.add_some("container_spec_cpu_shares", spec.cpu_shares);
    s.add_some("container_spec_memory_limit_bytes", spec.memory_limit);
    s.add_some(
        "container_spec_memory_reservation_limit_bytes",
        spec.memory_reservation,
    );
    s.add_some(
        "container_spec_memory_swap_limit_bytes",
        spec.memory_swap_limit,
    );
    s.out
}

/// The pod's network, per interface of its namespace. cAdvisor reports it under the pause
/// container, named "POD".
fn network_samples(
    p: &PodRecord,
    pu: &PodUsage,
    interfaces: &[(String, [u64; 8])],
) -> Vec<cri::Metric> {
    let meta = p.config.metadata.clone().unwrap_or_default();
    let labels = vec![
        "POD".to_string(),
        p.id.clone(),
        String::new(),
        String::new(),
        meta.namespace,
        meta.name,
    ];
    let mut s = Samples::new(labels, pu.timestamp);
    for (iface, counters) in interfaces {
        for (name, v) in NETWORK.iter().zip(counters) {
            s.add(name, *v, &[iface]);
        }
    }
    s.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crust_runtime::cgroups::{
        Cfs, CgroupSpec, CgroupStats, DeviceIo, HugetlbUsage, Pressure, TaskStats,
    };

    /// Every figure measured, so that every metric has samples.
    fn everything() -> (PodRecord, ContainerRecord, ContainerUsage, CgroupDetail) {
        let pod = PodRecord {
            id: "pod1".into(),
            config: cri::PodSandboxConfig {
                metadata: Some(cri::PodSandboxMetadata {
                    name: "p".into(),
                    namespace: "ns".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            state: PodState::Ready,
            created_at: 0,
            hostname: String::new(),
            cgroup_path: String::new(),
            owns_cgroup: false,
            monitor_pid: 0,
            runtime_handler: String::new(),
            namespaces: vec![],
            network: None,
        };
        let c = ContainerRecord {
            id: "c1".into(),
            pod_id: "pod1".into(),
            config: cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "ctr".into(),
                    attempt: 0,
                }),
                ..Default::default()
            },
            image_id: String::new(),
            image_name: "busybox".into(),
            state: crust_runtime::store::ContainerState::Running,
            created_at: 0,
            started_at: 2 * NANOS as i64,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            log_path: String::new(),
            stop_signal: 0,
            chain_ids: vec![],
            pid: 1,
            user: None,
        };
        let p = Some(Pressure::default());
        let u = ContainerUsage {
            timestamp: 5,
            cgroup: CgroupStats {
                cpu_usage_ns: 3 * NANOS,
                cpu_pressure: p,
                memory_pressure: p,
                io_pressure: p,
                ..Default::default()
            },
            ..Default::default()
        };
        let io = |operation: &str| DeviceIo {
            major: 8,
            minor: 0,
            device: "/dev/sda".into(),
            operation: operation.into(),
            value: 1,
        };
        let d = CgroupDetail {
            cpu_user_ns: Some(1),
            cpu_system_ns: Some(1),
            cfs: Some(Cfs::default()),
            memory_cache: Some(1),
            memory_mapped_file: Some(1),
            memory_kernel: Some(1),
            memory_swap: Some(1),
            memory_max_usage: Some(1),
            memory_failcnt: Some(1),
            faults_container: Some((1, 2)),
            faults_hierarchy: Some((3, 4)),
            oom_kills: Some(0),
            threads: Some(1),
            threads_max: Some(0),
            hugetlb: vec![HugetlbUsage {
                pagesize: "2MB".into(),
                usage: 0,
                max_usage: Some(0),
            }],
            io_bytes: vec![io("Read"), io("Write"), io("Total")],
            io_ops: vec![io("Read"), io("Write")],
            tasks: TaskStats {
                processes: 1,
                file_descriptors: 3,
                sockets: 0,
                open_files_soft_limit: Some(1024),
            },
            spec: CgroupSpec {
                cpu_period: Some(100_000),
                cpu_quota: Some(20_000),
                cpu_shares: Some(1024),
                memory_limit: Some(1),
                memory_reservation: Some(0),
                memory_swap_limit: Some(1),
            },
        };
        (pod, c, u, d)
    }

    #[test]
    fn every_described_metric_has_samples_with_its_labels() {
        let (pod, c, u, d) = everything();
        let fs = ("/dev/sda1".to_string(), 10, 20, 30);
        let mut samples = container_samples(&pod, &c, &u, &d, Some(&fs), 7 * NANOS as i64);
        samples.extend(network_samples(
            &pod,
            &PodUsage::default(),
            &[("eth0".into(), [1; 8])],
        ));
        for desc in DESCRIPTORS {
            let of: Vec<_> = samples.iter().filter(|m| m.name == desc.name).collect();
            assert!(!of.is_empty(), "{} has no sample", desc.name);
            for m in of {
                assert_eq!(
                    m.label_values.len(),
                    LABELS.len() + desc.extra.len(),
                    "{}",
                    desc.name
                );
                assert_eq!(m.metric_type, desc.kind as i32, "{}", desc.name);
            }
        }
        for m in &samples {
            assert!(
                DESCRIPTORS.iter().any(|d| d.name == m.name),
                "{} is not described",
                m.name
            );
        }
        let value = |name: &str, extra: &[&str]| {
            samples
                .iter()
                .find(|m| m.name == name && m.label_values[LABELS.len()..] == *extra)
                .and_then(|m| m.value.as_ref())
                .map(|v| v.value)
        };
        assert_eq!(
            value("container_cpu_usage_seconds_total", &["total"]),
            Some(3)
        );
        assert_eq!(value("container_last_seen", &[]), Some(7));
        assert_eq!(value("container_start_time_seconds", &[]), Some(2));
        assert_eq!(
            value(
                "container_memory_failures_total",
                &["pgmajfault", "hierarchy"]
            ),
            Some(4)
        );
        assert_eq!(value("container_fs_inodes_free", &["/dev/sda1"]), Some(30));
        assert_eq!(
            value("container_network_transmit_packets_total", &["eth0"]),
            Some(1)
        );
        assert_eq!(
            value(
                "container_blkio_device_usage_total",
                &["/dev/sda", "8", "0", "Total"]
            ),
            Some(1)
        );
        let first = &samples[0].label_values;
        assert_eq!(first, &["ctr", "c1", "busybox", "ctr", "ns", "p"]);
    }

    #[test]
    fn unmeasured_figures_are_left_out() {
        let (pod, c, _, _) = everything();
        let samples = container_samples(
            &pod,
            &c,
            &ContainerUsage::default(),
            &CgroupDetail::default(),
            None,
            0,
        );
        for absent in [
            "container_cpu_cfs_periods_total",
            "container_pressure_cpu_stalled_seconds_total",
            "container_memory_max_usage_bytes",
            "container_ulimits_soft",
            "container_spec_cpu_quota",
            "container_fs_usage_bytes",
            "container_blkio_device_usage_total",
        ] {
            assert!(samples.iter().all(|m| m.name != absent), "{absent}");
        }
    }

    #[test]
    fn descriptors_need_what_the_host_has() {
        let v1 = Hierarchy::V1 {
            mounts: vec![("memory".into(), "/sys/fs/cgroup/memory".into())],
        };
        assert!(!host_has(&v1, Needs::Psi));
        assert!(!host_has(&v1, Needs::Hugetlb));
        assert!(host_has(&v1, Needs::Nothing));
        let with_hugetlb = Hierarchy::V1 {
            mounts: vec![("hugetlb".into(), "/sys/fs/cgroup/hugetlb".into())],
        };
        assert!(host_has(&with_hugetlb, Needs::HugetlbV1));
    }
}
