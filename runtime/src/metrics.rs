//! The engine's metrics: image pulls, layers, CNI, container exits.
//!
//! Instruments come from the global OpenTelemetry meter. crustd installs a meter provider
//! (Prometheus endpoint and/or OTLP) before it opens the engine; without one they are no-ops
//! and cost nothing. Names follow Prometheus conventions, so the `/metrics` page shows them
//! as they are and OTLP backends receive the same series.

use std::sync::LazyLock;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};

/// Bucket bounds (seconds) for operations from a millisecond to a few minutes.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
];

pub struct EngineMetrics {
    image_pulls: Counter<u64>,
    image_pull_bytes: Counter<u64>,
    image_pull_seconds: Histogram<f64>,
    layers_unpacked: Counter<u64>,
    cni_seconds: Histogram<f64>,
    container_exits: Counter<u64>,
    container_oom_kills: Counter<u64>,
}

/// The meter every crust instrument hangs off.
pub fn meter() -> Meter {
    opentelemetry::global::meter("crust")
}

/// A histogram of durations in seconds with [`SECONDS_BUCKETS`].
pub fn seconds_histogram(meter: &Meter, name: &'static str, help: &'static str) -> Histogram<f64> {
    meter
        .f64_histogram(name)
        .with_description(help)
        .with_unit("s")
        .with_boundaries(SECONDS_BUCKETS.to_vec())
        .build()
}

static METRICS: LazyLock<EngineMetrics> = LazyLock::new(|| {
    let m = meter();
    let counter =
        |name: &'static str, help: &'static str| m.u64_counter(name).with_description(help).build();
    EngineMetrics {
        image_pulls: counter(
            "crust_image_pulls_total",
            "Image pulls by result, and failures by reason",
        ),
        image_pull_bytes: counter(
            "crust_image_pull_bytes_total",
            "Bytes of layers downloaded from registries",
        ),
        image_pull_seconds: seconds_histogram(
            &m,
            "crust_image_pull_duration_seconds",
            "Time to pull an image (resolve, fetch, unpack)",
        ),
        layers_unpacked: counter(
            "crust_image_layers_unpacked_total",
            "Layers unpacked into snapshots",
        ),
        cni_seconds: seconds_histogram(
            &m,
            "crust_cni_operation_duration_seconds",
            "Time of a CNI ADD, CHECK or DEL through the whole plugin chain",
        ),
        container_exits: counter(
            "crust_container_exits_total",
            "Containers that exited, by reason (Completed, Error, OOMKilled)",
        ),
        container_oom_kills: counter(
            "crust_container_oom_kills_total",
            "Containers killed by the kernel's OOM killer",
        ),
    }
});

/// The engine's instruments (created on first use, from the meter provider installed then).
pub fn engine() -> &'static EngineMetrics {
    &METRICS
}

impl EngineMetrics {
    /// One finished pull: `failure` is None on success, else a short reason label.
    pub fn image_pull(&self, took: Duration, failure: Option<&'static str>) {
        let result = if failure.is_some() {
            "failure"
        } else {
            "success"
        };
        self.image_pulls.add(
            1,
            &[
                KeyValue::new("result", result),
                KeyValue::new("reason", failure.unwrap_or("")),
            ],
        );
        self.image_pull_seconds
            .record(took.as_secs_f64(), &[KeyValue::new("result", result)]);
    }

    pub fn pulled_bytes(&self, n: u64) {
        self.image_pull_bytes.add(n, &[]);
    }

    pub fn layer_unpacked(&self) {
        self.layers_unpacked.add(1, &[]);
    }

    pub fn cni_operation(&self, operation: &'static str, took: Duration, ok: bool) {
        self.cni_seconds.record(
            took.as_secs_f64(),
            &[
                KeyValue::new("operation", operation),
                KeyValue::new("result", if ok { "success" } else { "failure" }),
            ],
        );
    }

    pub fn container_exit(&self, reason: &str, oom_killed: bool) {
        self.container_exits
            .add(1, &[KeyValue::new("reason", reason.to_string())]);
        if oom_killed {
            self.container_oom_kills.add(1, &[]);
        }
    }
}
