//! The CRI gRPC services. `service.rs` routes every RPC of RuntimeService and ImageService
//! through [`instrument`], the one place that logs each call and maps engine errors to gRPC
//! codes; the per-group modules hold the handlers and the record → CRI conversions.

mod containers;
mod events;
mod images;
mod list_streams;
mod metrics;
mod pods;
mod runtime_info;
pub use images::credentials;
mod service;
mod stats;
mod streams;
pub mod undecodable;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crust_runtime::Engine;
use crust_runtime::error::Error;
use crust_runtime::image::ImageError;
use crust_runtime::monitor::MonitorError;
use crust_runtime::network::{CniError, HostPortError};
use tonic::{Code, Response, Status};

#[derive(Clone)]
pub struct CriService {
    pub engine: Arc<Engine>,
    /// Serves the URLs Exec, Attach and PortForward return.
    pub streaming: Option<Arc<crate::streaming::StreamingServer>>,
}

/// Maps an engine error to the gRPC status kubelet and crictl act on.
pub fn to_status(e: &Error) -> Status {
    let code = match e {
        Error::InvalidArgument(_) => Code::InvalidArgument,
        Error::NotFound(_) => Code::NotFound,
        Error::AlreadyExists(_) => Code::AlreadyExists,
        Error::FailedPrecondition(_) => Code::FailedPrecondition,
        Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
        Error::ResourceExhausted(_) => Code::ResourceExhausted,
        Error::Unavailable(_) => Code::Unavailable,
        Error::Unimplemented(_) => Code::Unimplemented,
        Error::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
            Code::ResourceExhausted
        }
        Error::Io { .. } | Error::Internal(_) => Code::Internal,
        Error::Image(ie) => match ie {
            ImageError::Reference(_) => Code::InvalidArgument,
            ImageError::NotFound(_) => Code::NotFound,
            ImageError::Unauthorized(_) => Code::Unauthenticated,
            ImageError::Registry { .. } => Code::Unavailable,
            ImageError::Unsupported(_) | ImageError::BadManifest(_) => Code::FailedPrecondition,
            ImageError::Stalled(_) => Code::DeadlineExceeded,
            ImageError::DigestMismatch { .. } | ImageError::BadLayer(_) => Code::DataLoss,
            ImageError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                Code::ResourceExhausted
            }
            ImageError::Io { .. } => Code::Internal,
        },
        Error::Network(ne) => match ne {
            CniError::NoConfig(_) | CniError::BadConfig { .. } | CniError::PluginMissing { .. } => {
                Code::FailedPrecondition
            }
            CniError::Timeout { .. } => Code::DeadlineExceeded,
            CniError::Plugin { .. } | CniError::Io { .. } => Code::Internal,
        },
        Error::HostPorts(he) => match he {
            HostPortError::Invalid { .. } => Code::InvalidArgument,
            HostPortError::Missing { .. } => Code::FailedPrecondition,
            HostPortError::Rules { .. } | HostPortError::Io { .. } => Code::Internal,
        },
        Error::Monitor(me) => match me {
            MonitorError::Timeout(_) => Code::DeadlineExceeded,
            MonitorError::Connect { .. } => Code::Unavailable,
            _ => Code::Internal,
        },
    };
    Status::new(code, bounded(e.to_string()))
}

/// Longest error message sent back (and logged): messages quote the request, and a hostile
/// request must not become a response header bigger than the client accepts.
const MAX_MESSAGE: usize = 1024;

fn bounded(mut msg: String) -> String {
    if msg.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        let cut = msg.len() - end;
        msg.truncate(end);
        msg.push_str(&format!("… ({cut} more bytes)"));
    }
    msg
}

static INFLIGHT: AtomicUsize = AtomicUsize::new(0);

/// CRI calls being served right now (the daemon waits for them on shutdown).
pub fn inflight() -> usize {
    INFLIGHT.load(Ordering::SeqCst)
}

struct InflightGuard;

impl InflightGuard {
    fn new() -> Self {
        INFLIGHT.fetch_add(1, Ordering::SeqCst);
        InflightGuard
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        INFLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs one RPC: logs method, object id, duration and outcome, and maps the error.
pub async fn instrument<T, F>(method: &'static str, id: &str, fut: F) -> Result<Response<T>, Status>
where
    F: Future<Output = Result<T, Error>>,
{
    let _inflight = InflightGuard::new();
    let id: std::borrow::Cow<str> = if id.len() > MAX_MESSAGE {
        bounded(id.to_string()).into()
    } else {
        id.into()
    };
    let id = id.as_ref();
    let start = Instant::now();
    let result = fut.await;
    crate::heap::worked();
    let secs = start.elapsed().as_secs_f64();
    let ms = secs * 1000.0;
    match result {
        Ok(v) => {
            tracing::debug!(method, id, ms, code = "OK", "cri call");
            crate::telemetry::grpc::record_outcome(id, Code::Ok, None);
            crate::telemetry::daemon::cri_call(method, Code::Ok, secs);
            Ok(Response::new(v))
        }
        Err(e) => {
            let status = to_status(&e);
            crate::telemetry::grpc::record_outcome(id, status.code(), Some(status.message()));
            crate::telemetry::daemon::cri_call(method, status.code(), secs);
            if matches!(
                status.code(),
                Code::Internal | Code::Unavailable | Code::DataLoss
            ) {
                tracing::error!(method, ms, code = ?status.code(), err = status.message(), "cri call failed");
            } else {
                tracing::info!(method, ms, code = ?status.code(), err = status.message(), "cri call refused");
            }
            Err(status)
        }
    }
}

/// Label selectors: every key/value in `selector` must be in `labels`.
pub fn labels_match(
    selector: &std::collections::HashMap<String, String>,
    labels: &std::collections::HashMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}
