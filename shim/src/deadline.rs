//! A call whose deadline (the client's `grpc-timeout`) passes is answered DEADLINE_EXCEEDED, as
//! the gRPC spec and gRPC-Go servers (containerd, CRI-O) answer it. tonic's server enforces the
//! header too, but answers CANCELLED; critest's "public image should timeout if requested"
//! pulls with a 1 ms deadline and wants DeadlineExceeded, which a client gets from its own timer
//! unless, on a busy machine, the server's answer reaches it first.
//!
//! This layer sits inside tonic's and so starts its timer a few microseconds later; it fires a
//! millisecond before the deadline (tokio's timers tick in milliseconds) so that it always
//! answers before tonic's does. The client, whose timer started before it sent the call, sees
//! the answer no earlier than its deadline minus that millisecond.

use std::task::{Context, Poll};
use std::time::Duration;

use tonic::codegen::{BoxFuture, http};

/// How much earlier than the header's deadline this layer answers.
const AHEAD: Duration = Duration::from_millis(1);

/// The `grpc-timeout` header's duration: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_timeout(value: &str) -> Option<Duration> {
    let split = value.len().checked_sub(1)?;
    let (digits, unit) = value.split_at_checked(split)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

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

impl<S, ReqBody, B> tower::Service<http::Request<ReqBody>> for Service<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<B>>,
    S::Future: Send + 'static,
    B: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let timeout = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_timeout);
        let path = req.uri().path().to_string();
        let fut = self.inner.call(req);
        let Some(timeout) = timeout else {
            return Box::pin(fut);
        };
        let sleep = tokio::time::sleep(timeout.saturating_sub(AHEAD));
        Box::pin(async move {
            tokio::select! {
                biased;
                resp = fut => resp,
                () = sleep => Ok(tonic::Status::deadline_exceeded(format!(
                    "{path}: the caller's deadline of {timeout:?} passed"
                ))
                .into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_values_parse_as_the_spec_spells_them() {
        assert_eq!(parse_timeout("1m"), Some(Duration::from_millis(1)));
        assert_eq!(parse_timeout("999u"), Some(Duration::from_micros(999)));
        assert_eq!(parse_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(
            parse_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "m", "123456789S", "1x", "-1S", "1.5S", "１S"] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_is_answered_deadline_exceeded() {
        use tower::{Layer as _, ServiceExt};
        let slow = tower::service_fn(|_: http::Request<()>| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        });
        let req = http::Request::builder()
            .uri("/runtime.v1.ImageService/PullImage")
            .header("grpc-timeout", "20m")
            .body(())
            .unwrap();
        let resp = Layer.layer(slow).oneshot(req).await.unwrap();
        assert_eq!(resp.headers()["grpc-status"], "4");
        let message = resp.headers()["grpc-message"].to_str().unwrap();
        assert!(message.contains("PullImage"), "{message}");

        // Without a deadline, or within it, the answer is the handler's.
        let quick = tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new("done".to_string()))
        });
        let req = http::Request::builder()
            .header("grpc-timeout", "1S")
            .body(())
            .unwrap();
        let resp = Layer.layer(quick).oneshot(req).await.unwrap();
        assert_eq!(resp.into_body(), "done");
    }
}
