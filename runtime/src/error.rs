//! The engine's error type. Each variant says what went wrong in terms a caller can act on; the
//! shim maps the variant to a gRPC code in one place.

use crate::image::ImageError;
use crate::monitor::MonitorError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Unavailable(String),
    /// A valid request for something crust does not do (yet).
    #[error("{0}")]
    Unimplemented(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Monitor(#[from] MonitorError),
    #[error("pod network: {0}")]
    Network(#[from] crate::network::CniError),
    #[error("host ports: {0}")]
    HostPorts(#[from] crate::network::HostPortError),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// True when the error means "there is no such thing" (callers of idempotent removals ignore it).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound(_)) || matches!(self, Error::Image(ImageError::NotFound(_)))
    }
}

/// Adds a context string to `std::io::Result`s, turning them into engine errors.
pub trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), std::io::Error::from(e)))
    }
}
