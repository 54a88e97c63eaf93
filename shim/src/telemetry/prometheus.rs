//! The Prometheus text exposition of the OpenTelemetry metrics: a pull reader on the meter
//! provider and an encoder of what it collects (text format 0.0.4).

use std::fmt::Write;
use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{
    AggregatedMetrics, HistogramDataPoint, Metric, MetricData, ResourceMetrics,
};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, Pipeline, Temporality};

/// A pull reader that can be both registered with the meter provider and kept for scrapes.
#[derive(Debug, Clone)]
pub struct PrometheusReader(Arc<ManualReader>);

impl Default for PrometheusReader {
    fn default() -> Self {
        // Cumulative: Prometheus counters and histograms only ever grow.
        PrometheusReader(Arc::new(
            ManualReader::builder()
                .with_temporality(Temporality::Cumulative)
                .build(),
        ))
    }
}

impl MetricReader for PrometheusReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

impl PrometheusReader {
    /// Collects every instrument now and renders the exposition page.
    pub fn render(&self) -> String {
        let mut rm = ResourceMetrics::default();
        if let Err(e) = self.0.collect(&mut rm) {
            tracing::warn!(err = %e, "metrics collection failed");
        }
        encode(&rm)
    }
}

/// Renders collected metrics in the Prometheus text format.
pub fn encode(rm: &ResourceMetrics) -> String {
    let mut out = String::new();
    let mut metrics: Vec<&Metric> = rm.scope_metrics().flat_map(|s| s.metrics()).collect();
    metrics.sort_by(|a, b| a.name().cmp(b.name()));
    for m in metrics {
        match m.data() {
            AggregatedMetrics::F64(d) => encode_metric(&mut out, m, d),
            AggregatedMetrics::U64(d) => encode_metric(&mut out, m, d),
            AggregatedMetrics::I64(d) => encode_metric(&mut out, m, d),
        }
    }
    out
}

fn encode_metric<T: Number>(out: &mut String, m: &Metric, data: &MetricData<T>) {
    let name = sanitize(m.name());
    let kind = match data {
        MetricData::Sum(s) if s.is_monotonic() => "counter",
        MetricData::Histogram(_) => "histogram",
        MetricData::Gauge(_) | MetricData::Sum(_) => "gauge",
        // Never configured by crust; nothing to show.
        MetricData::ExponentialHistogram(_) => return,
    };
    let _ = writeln!(out, "# HELP {name} {}", escape_help(m.description()));
    let _ = writeln!(out, "# TYPE {name} {kind}");
    match data {
        MetricData::Sum(s) => {
            for p in s.data_points() {
                plain_sample(out, &name, p.attributes(), p.value());
            }
        }
        MetricData::Gauge(g) => {
            for p in g.data_points() {
                plain_sample(out, &name, p.attributes(), p.value());
            }
        }
        MetricData::Histogram(h) => {
            for p in h.data_points() {
                encode_histogram_point(out, &name, p);
            }
        }
        MetricData::ExponentialHistogram(_) => {}
    }
}

fn encode_histogram_point<T: Number>(out: &mut String, name: &str, p: &HistogramDataPoint<T>) {
    // OpenTelemetry counts per bucket; Prometheus buckets are cumulative ("le").
    let mut cumulative = 0u64;
    let bounds: Vec<f64> = p.bounds().collect();
    for (i, count) in p.bucket_counts().enumerate() {
        cumulative += count;
        let le = bounds
            .get(i)
            .map_or_else(|| "+Inf".to_string(), |b| format_float(*b));
        let l = labels(p.attributes(), Some(&le));
        sample(out, name, "_bucket", &l, cumulative as f64);
    }
    let l = labels(p.attributes(), None);
    sample(out, name, "_sum", &l, p.sum().as_f64());
    sample(out, name, "_count", &l, p.count() as f64);
}

/// The value types OpenTelemetry aggregates; Prometheus samples are floats.
pub trait Number: Copy {
    fn as_f64(self) -> f64;
}

impl Number for f64 {
    fn as_f64(self) -> f64 {
        self
    }
}

impl Number for u64 {
    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl Number for i64 {
    fn as_f64(self) -> f64 {
        self as f64
    }
}

/// One counter or gauge series.
fn plain_sample<'a, T: Number>(
    out: &mut String,
    name: &str,
    attrs: impl Iterator<Item = &'a KeyValue>,
    value: T,
) {
    sample(out, name, "", &labels(attrs, None), value.as_f64());
}

fn sample(out: &mut String, name: &str, suffix: &str, labels: &str, value: f64) {
    let _ = writeln!(out, "{name}{suffix}{labels} {}", format_float(value));
}

fn labels<'a>(attrs: impl Iterator<Item = &'a KeyValue>, le: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = attrs
        .map(|kv| (sanitize(kv.key.as_str()), kv.value.to_string()))
        .collect();
    pairs.sort();
    if let Some(le) = le {
        pairs.push(("le".into(), le.into()));
    }
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// Metric and label names allow `[a-zA-Z0-9_:]`; OpenTelemetry's dots become underscores.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn format_float(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.is_nan() {
        "NaN".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::metrics::MeterProvider;
    use opentelemetry_sdk::metrics::SdkMeterProvider;

    #[test]
    fn renders_counters_gauges_and_cumulative_histograms() {
        let reader = PrometheusReader::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader.clone())
            .build();
        let meter = provider.meter("test");
        let c = meter
            .u64_counter("crust_things_total")
            .with_description("Things")
            .build();
        c.add(2, &[KeyValue::new("kind", "a\"b")]);
        c.add(1, &[KeyValue::new("kind", "a\"b")]);
        let g = meter.u64_gauge("crust_level").build();
        g.record(7, &[]);
        let h = meter
            .f64_histogram("crust_op_seconds")
            .with_boundaries(vec![0.1, 1.0])
            .build();
        for v in [0.05, 0.5, 0.7, 5.0] {
            h.record(v, &[KeyValue::new("op", "x")]);
        }
        let page = reader.render();
        assert!(
            page.contains("# TYPE crust_things_total counter\n"),
            "{page}"
        );
        assert!(
            page.contains("crust_things_total{kind=\"a\\\"b\"} 3\n"),
            "{page}"
        );
        assert!(
            page.contains("# TYPE crust_level gauge\ncrust_level 7\n"),
            "{page}"
        );
        assert!(
            page.contains("crust_op_seconds_bucket{op=\"x\",le=\"0.1\"} 1\n"),
            "{page}"
        );
        assert!(
            page.contains("crust_op_seconds_bucket{op=\"x\",le=\"1\"} 3\n"),
            "{page}"
        );
        assert!(
            page.contains("crust_op_seconds_bucket{op=\"x\",le=\"+Inf\"} 4\n"),
            "{page}"
        );
        assert!(
            page.contains("crust_op_seconds_count{op=\"x\"} 4\n"),
            "{page}"
        );
        assert!(
            page.contains("crust_op_seconds_sum{op=\"x\"} 6.25\n"),
            "{page}"
        );
    }

    #[test]
    fn names_are_sanitized() {
        assert_eq!(sanitize("rpc.grpc-code"), "rpc_grpc_code");
    }
}
