//! crustd's own metrics: CRI calls (counted and timed as they happen) and the gauges sampled
//! before each scrape or push (objects by state, monitors, defunct processes, the daemon
//! process itself).

use std::sync::LazyLock;

use crust_runtime::Engine;
use crust_runtime::metrics::{meter, seconds_histogram};
use crust_runtime::store::{ContainerState, PodState};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram};

struct DaemonMetrics {
    cri_requests: Counter<u64>,
    cri_seconds: Histogram<f64>,
    pods: Gauge<u64>,
    containers: Gauge<u64>,
    monitors: Gauge<u64>,
    defunct: Gauge<u64>,
    rss: Gauge<u64>,
    fds: Gauge<u64>,
    threads: Gauge<u64>,
}

static METRICS: LazyLock<DaemonMetrics> = LazyLock::new(|| {
    let m = meter();
    let gauge =
        |name: &'static str, help: &'static str| m.u64_gauge(name).with_description(help).build();
    DaemonMetrics {
        cri_requests: m
            .u64_counter("crust_cri_requests_total")
            .with_description("CRI calls by method and gRPC code")
            .build(),
        cri_seconds: seconds_histogram(
            &m,
            "crust_cri_request_duration_seconds",
            "CRI call latency by method",
        ),
        pods: gauge("crust_pods", "Pod sandboxes by state"),
        containers: gauge("crust_containers", "Containers by state"),
        monitors: gauge(
            "crust_monitor_processes",
            "Pod monitor processes alive (one per pod)",
        ),
        defunct: gauge(
            "crust_defunct_processes",
            "Zombie processes on the node (no one reaped them)",
        ),
        rss: gauge(
            "crust_process_resident_memory_bytes",
            "Resident memory of crustd",
        ),
        fds: gauge("crust_process_open_fds", "Open file descriptors of crustd"),
        threads: gauge("crust_process_threads", "Threads of crustd"),
    }
});

/// Counts and times one CRI call.
pub fn cri_call(method: &'static str, code: tonic::Code, seconds: f64) {
    let m = &*METRICS;
    m.cri_requests.add(
        1,
        &[
            KeyValue::new("method", method),
            KeyValue::new("code", format!("{code:?}")),
        ],
    );
    m.cri_seconds
        .record(seconds, &[KeyValue::new("method", method)]);
}

/// Records the gauges as they are now.
pub async fn sample(engine: &Engine) {
    let m = &*METRICS;
    let pods = engine.list_pods().await;
    let ready = pods.iter().filter(|p| p.state == PodState::Ready).count();
    m.pods
        .record(ready as u64, &[KeyValue::new("state", "ready")]);
    m.pods.record(
        (pods.len() - ready) as u64,
        &[KeyValue::new("state", "notready")],
    );
    let monitors = pods
        .iter()
        .filter(|p| p.monitor_pid > 0 && process_alive(p.monitor_pid))
        .count();
    m.monitors.record(monitors as u64, &[]);

    let states = engine.select_containers(|c| Some(c.state)).await;
    for (state, label) in [
        (ContainerState::Created, "created"),
        (ContainerState::Running, "running"),
        (ContainerState::Exited, "exited"),
        (ContainerState::Unknown, "unknown"),
    ] {
        let n = states.iter().filter(|s| **s == state).count();
        m.containers
            .record(n as u64, &[KeyValue::new("state", label)]);
    }

    let (rss, threads) = self_status();
    m.rss.record(rss, &[]);
    m.threads.record(threads, &[]);
    m.fds.record(count_dir("/proc/self/fd"), &[]);
    m.defunct.record(count_zombies(), &[]);
}

/// A monitor counts as alive while its pid exists and is not a zombie.
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| stat_state(&s))
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// The state letter of a `/proc/<pid>/stat` line (after the parenthesised command name,
/// which may itself hold spaces and parentheses).
fn stat_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn self_status() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:") * 1024, field("Threads:"))
}

fn count_dir(dir: &str) -> u64 {
    std::fs::read_dir(dir).map_or(0, |d| d.count() as u64)
}

fn count_zombies() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter(|e| {
            std::fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|s| stat_state(&s))
                == Some('Z')
        })
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_state_skips_odd_command_names() {
        assert_eq!(stat_state("42 (a) b (c)) Z 1 2 3"), Some('Z'));
        assert_eq!(stat_state("1 (init) S 0"), Some('S'));
        assert_eq!(stat_state("garbage"), None);
    }

    #[test]
    fn own_process_is_alive_and_measured() {
        assert!(process_alive(std::process::id()));
        let (rss, threads) = self_status();
        assert!(rss > 0 && threads > 0);
    }
}
