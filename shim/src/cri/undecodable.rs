//! A request that is not a valid message of its type (a string field that is not UTF-8,
//! truncated or mangled protobuf) is the caller's mistake. tonic's generated services answer
//! it with Internal before any handler runs; this layer turns that answer into
//! InvalidArgument, keeping tonic's message, which names the message, field and problem.

use std::task::{Context, Poll};

use tonic::codegen::{BoxFuture, http};

/// The start of the message tonic gives a request it could not decode (percent-encoded, as
/// grpc-message is on the wire).
const DECODE_FAILURE: &str = "failed%20to%20decode%20Protobuf%20message";

#[derive(Clone, Default)]
pub struct Layer;

impl<S> tower::Layer<S> for Layer {
    type Service = Service<S>;

    fn layer(&self, inner: S) -> Service<S> {
        Service { inner }
    }
}

#[derive(Clone)]
pub struct Service<S> {
    inner: S,
}

impl<S, Req, B> tower::Service<Req> for Service<S>
where
    S: tower::Service<Req, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            reclassify(resp.headers_mut());
            Ok(resp)
        })
    }
}

/// Internal + a decode failure in the (trailers-only) headers becomes InvalidArgument.
fn reclassify(headers: &mut http::HeaderMap) {
    let internal = headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"13");
    let undecodable = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| m.starts_with(DECODE_FAILURE) || m.starts_with("failed to decode"));
    if internal && undecodable {
        headers.insert(
            "grpc-status",
            http::HeaderValue::from_static("3"), // InvalidArgument
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(status: &'static str, message: &'static str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", http::HeaderValue::from_static(status));
        h.insert("grpc-message", http::HeaderValue::from_static(message));
        h
    }

    #[test]
    fn only_internal_decode_failures_become_invalid_argument() {
        let mut h = headers(
            "13",
            "failed%20to%20decode%20Protobuf%20message:%20ImageSpec.image:%20invalid%20string",
        );
        reclassify(&mut h);
        assert_eq!(h["grpc-status"], "3");
        // Other Internal errors, and decode words in other codes, are left alone.
        let mut h = headers("13", "monitor%20died");
        reclassify(&mut h);
        assert_eq!(h["grpc-status"], "13");
        let mut h = headers("5", "failed%20to%20decode%20Protobuf%20message");
        reclassify(&mut h);
        assert_eq!(h["grpc-status"], "5");
    }
}
