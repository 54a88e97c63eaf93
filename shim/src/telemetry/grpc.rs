//! The span of every gRPC call on the CRI socket. A W3C `traceparent` arriving in the call's
//! metadata becomes its parent; [`crate::cri::instrument`] fills in the object, the gRPC code
//! and the error, and the engine's steps hang below it as child spans.

use std::task::{Context, Poll};

use opentelemetry::propagation::Extractor;
use tonic::codegen::{BoxFuture, http};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Reads propagation fields from HTTP/2 headers (gRPC metadata).
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Wraps every call in a `cri` span.
#[derive(Clone, Default)]
pub struct TraceLayer;

impl<S> tower::Layer<S> for TraceLayer {
    type Service = TraceService<S>;

    fn layer(&self, inner: S) -> TraceService<S> {
        TraceService { inner }
    }
}

#[derive(Clone)]
pub struct TraceService<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for TraceService<S>
where
    S: tower::Service<http::Request<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        // Health probes arrive every few seconds and say nothing about the runtime's work.
        if path.starts_with("/grpc.health.") {
            return Box::pin(self.inner.call(req));
        }
        let rpc = path.trim_start_matches('/');
        let (service, method) = rpc.rsplit_once('/').unwrap_or(("", rpc));
        let span = tracing::info_span!(
            "cri",
            otel.name = rpc,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            crust.object = tracing::field::Empty,
            rpc.grpc.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            otel.status_message = tracing::field::Empty,
        );
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&HeaderExtractor(req.headers()))
        });
        // Without an OpenTelemetry layer (no exporter configured) there is nothing to attach.
        let _ = span.set_parent(parent);
        Box::pin(self.inner.call(req).instrument(span))
    }
}

/// Records the outcome of the CRI call on its span.
pub fn record_outcome(object: &str, code: tonic::Code, error: Option<&str>) {
    let span = tracing::Span::current();
    if !object.is_empty() {
        span.record("crust.object", object);
    }
    span.record("rpc.grpc.status_code", code as i32);
    if let Some(e) = error {
        span.record("otel.status_code", "ERROR");
        span.record("otel.status_message", e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;

    #[test]
    fn traceparent_in_metadata_is_extracted() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                .parse()
                .unwrap(),
        );
        let cx = opentelemetry_sdk::propagation::TraceContextPropagator::new()
            .extract(&HeaderExtractor(&headers));
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid());
        assert_eq!(
            sc.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
    }
}
