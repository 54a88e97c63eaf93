//! Logs, traces and metrics of crustd.
//!
//! - Logs: `tracing` to stderr (journald picks them up under systemd).
//! - Traces: every CRI call is a span ([`grpc::TraceLayer`]), the engine's expensive steps
//!   are its children; exported over OTLP (gRPC or HTTP) by a batch processor on its own
//!   thread, so a slow or dead collector costs dropped spans and never a CRI call's time.
//! - Metrics: OpenTelemetry instruments read by a Prometheus pull reader
//!   ([`prometheus::PrometheusReader`], served by [`http`]) and/or pushed over OTLP.
//!
//! Nothing is set up that is not configured: without a metrics address and an OTLP endpoint
//! the instruments are OpenTelemetry's no-ops.

pub mod daemon;
pub mod grpc;
pub mod http;
pub mod prometheus;

use std::time::Duration;

use anyhow::Context;
use opentelemetry::trace::TracerProvider;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::TelemetrySection;

/// What [`init`] set up; [`Telemetry::shutdown`] flushes the exporters.
pub struct Telemetry {
    /// Present when `metrics_address` is set.
    pub prometheus: Option<prometheus::PrometheusReader>,
    /// Whether metrics are pushed over OTLP (then gauges are sampled in the background).
    pub otlp_metrics: Option<Duration>,
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
}

impl Telemetry {
    pub fn shutdown(self) {
        if let Some(p) = self.tracer_provider
            && let Err(e) = p.shutdown()
        {
            tracing::debug!(err = %e, "trace exporter shutdown");
        }
        if let Some(p) = self.meter_provider
            && let Err(e) = p.shutdown()
        {
            tracing::debug!(err = %e, "metrics exporter shutdown");
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// Where OTLP goes, from the config file and the standard environment variables.
#[derive(Debug, Clone, PartialEq)]
struct OtlpTarget {
    /// None: the exporter reads `OTEL_EXPORTER_OTLP_*ENDPOINT` itself (which it resolves per
    /// signal, as the specification says).
    endpoint: Option<String>,
    protocol: Protocol,
    traces: bool,
    metrics: bool,
}

fn otlp_target(
    cfg: &TelemetrySection,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<OtlpTarget>> {
    let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let from_env = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    ]
    .iter()
    .any(|k| env(k).is_some());
    if !from_env && cfg.otlp_endpoint.is_empty() {
        return Ok(None);
    }
    let protocol_name = env("OTEL_EXPORTER_OTLP_PROTOCOL").unwrap_or(cfg.otlp_protocol.clone());
    let protocol = match protocol_name.trim() {
        "grpc" | "" => Protocol::Grpc,
        "http/protobuf" => Protocol::HttpProtobuf,
        other => anyhow::bail!(
            "telemetry.otlp_protocol / OTEL_EXPORTER_OTLP_PROTOCOL {other:?}: expected \"grpc\" or \"http/protobuf\""
        ),
    };
    let off = |k: &str| env(k).is_some_and(|v| v.eq_ignore_ascii_case("none"));
    Ok(Some(OtlpTarget {
        endpoint: (!from_env).then(|| cfg.otlp_endpoint.trim_end_matches('/').to_string()),
        protocol,
        traces: !off("OTEL_TRACES_EXPORTER"),
        metrics: !off("OTEL_METRICS_EXPORTER"),
    }))
}

fn resource(cfg: &TelemetrySection) -> Resource {
    // Resource::builder() already reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME.
    let mut b = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    ));
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        b = b.with_service_name(cfg.service_name.clone());
    }
    b.build()
}

fn span_exporter(t: &OtlpTarget) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    let b = opentelemetry_otlp::SpanExporter::builder();
    let exporter = match (t.protocol, &t.endpoint) {
        (Protocol::Grpc, Some(e)) => b.with_tonic().with_endpoint(e).build(),
        (Protocol::Grpc, None) => b.with_tonic().build(),
        (Protocol::HttpProtobuf, Some(e)) => b
            .with_http()
            .with_endpoint(format!("{e}/v1/traces"))
            .build(),
        (Protocol::HttpProtobuf, None) => b.with_http().build(),
    };
    exporter.context("OTLP trace exporter")
}

fn metric_exporter(t: &OtlpTarget) -> anyhow::Result<opentelemetry_otlp::MetricExporter> {
    let b = opentelemetry_otlp::MetricExporter::builder();
    let exporter = match (t.protocol, &t.endpoint) {
        (Protocol::Grpc, Some(e)) => b.with_tonic().with_endpoint(e).build(),
        (Protocol::Grpc, None) => b.with_tonic().build(),
        (Protocol::HttpProtobuf, Some(e)) => b
            .with_http()
            .with_endpoint(format!("{e}/v1/metrics"))
            .build(),
        (Protocol::HttpProtobuf, None) => b.with_http().build(),
    };
    exporter.context("OTLP metric exporter")
}

/// Installs logging, and the trace and metric pipelines `cfg` and the environment ask for.
/// Runs inside the tokio runtime (the gRPC exporter's channel lives on it).
pub fn init(cfg: &TelemetrySection, log_level: &str) -> anyhow::Result<Telemetry> {
    let target = otlp_target(cfg, |k| std::env::var(k).ok())?;
    let resource = resource(cfg);

    let tracer_provider = match &target {
        Some(t) if t.traces => {
            let mut b = SdkTracerProvider::builder()
                .with_batch_exporter(span_exporter(t)?)
                .with_resource(resource.clone());
            // OTEL_TRACES_SAMPLER, when set, is read by the SDK itself.
            if std::env::var_os("OTEL_TRACES_SAMPLER").is_none() {
                let ratio = cfg.sample_ratio.clamp(0.0, 1.0);
                b = b.with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                    ratio,
                ))));
            }
            opentelemetry::global::set_text_map_propagator(
                opentelemetry_sdk::propagation::TraceContextPropagator::new(),
            );
            Some(b.build())
        }
        _ => None,
    };

    let prometheus = (!cfg.metrics_address.is_empty()).then(prometheus::PrometheusReader::default);
    let otlp_metrics = match &target {
        Some(t) if t.metrics => Some(
            humantime::parse_duration(&cfg.otlp_metrics_interval).map_err(|e| {
                anyhow::anyhow!(
                    "telemetry.otlp_metrics_interval {:?}: {e}",
                    cfg.otlp_metrics_interval
                )
            })?,
        ),
        _ => None,
    };
    let meter_provider = if prometheus.is_some() || otlp_metrics.is_some() {
        let mut b = SdkMeterProvider::builder().with_resource(resource);
        if let Some(r) = &prometheus {
            b = b.with_reader(r.clone());
        }
        if let (Some(t), Some(every)) = (&target, otlp_metrics) {
            b = b.with_reader(
                opentelemetry_sdk::metrics::PeriodicReader::builder(metric_exporter(t)?)
                    .with_interval(every)
                    .build(),
            );
        }
        let provider = b.build();
        opentelemetry::global::set_meter_provider(provider.clone());
        Some(provider)
    } else {
        None
    };

    let filter = tracing_subscriber::EnvFilter::try_from_env("CRUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_level));
    // Colours only on a terminal: journald and log files get plain text.
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        // The CRI call's span carries its fields for the exporters; log lines already name the
        // method, object and outcome, so the span stays out of them.
        .with_filter(filter.and(tracing_subscriber::filter::filter_fn(|meta| {
            !(meta.is_span() && meta.name() == "cri")
        })));
    // Only crust's own spans are exported (not h2's or tonic's), whatever the log level.
    let otel = tracer_provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("crust"))
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("crust_shim", tracing::Level::INFO)
                    .with_target("crust_runtime", tracing::Level::INFO),
            )
    });
    tracing_subscriber::registry().with(fmt).with(otel).init();
    if let Some(t) = &target {
        tracing::info!(
            endpoint = t.endpoint.as_deref().unwrap_or("(from OTEL_EXPORTER_OTLP_*)"),
            protocol = ?t.protocol,
            traces = t.traces,
            metrics = t.metrics,
            "exporting telemetry over OTLP"
        );
    }
    Ok(Telemetry {
        prometheus,
        otlp_metrics,
        tracer_provider,
        meter_provider,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(cfg: &TelemetrySection, vars: &[(&str, &str)]) -> anyhow::Result<Option<OtlpTarget>> {
        let vars: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        otlp_target(cfg, |k| vars.get(k).cloned())
    }

    #[test]
    fn off_unless_an_endpoint_is_configured() {
        let cfg = TelemetrySection::default();
        assert_eq!(target(&cfg, &[]).unwrap(), None);
        let t = target(&cfg, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")])
            .unwrap()
            .unwrap();
        assert_eq!(t.endpoint, None);
        assert_eq!(t.protocol, Protocol::Grpc);
    }

    #[test]
    fn environment_overrides_the_file_and_can_switch_parts_off() {
        let cfg = TelemetrySection {
            otlp_endpoint: "http://file:4317/".into(),
            ..Default::default()
        };
        let t = target(&cfg, &[]).unwrap().unwrap();
        assert_eq!(t.endpoint.as_deref(), Some("http://file:4317"));
        let t = target(
            &cfg,
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_METRICS_EXPORTER", "none"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(t.protocol, Protocol::HttpProtobuf);
        assert!(t.traces && !t.metrics);
        assert_eq!(
            target(&cfg, &[("OTEL_SDK_DISABLED", "true")]).unwrap(),
            None
        );
        let err = target(&cfg, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")]).unwrap_err();
        assert!(err.to_string().contains("carrier-pigeon"), "{err}");
    }
}
