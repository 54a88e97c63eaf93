//! The per-pod monitor: a single-threaded process, started by the daemon with a fresh exec of
//! crust's own binary, that owns what must outlive the daemon — the pod's pinned namespaces, its
//! containers' stdio and CRI logs, reaping, and the exit records.
//!
//! - [`server`]: the monitor process itself (request loop, container lifecycle);
//! - [`reaper`]: reaps children and turns wait statuses into exit records;
//! - [`log_writer`]: the CRI log format;
//! - [`oom`]: OOM kills read from the container's memory cgroup;
//! - [`exec`]: ExecSync output collection and process trees;
//! - [`console`]: the console socket and pty reads for TTY containers;
//! - [`pin`]: namespace pinning for the pod sandbox;
//! - [`pod_init`]: PID 1 of a pod's shared PID namespace;
//! - [`client`]: the daemon's side (spawn, requests).

pub mod attach;
pub mod client;
pub mod console;
pub mod exec;
pub mod exec_seccomp;
pub mod exec_stream;
mod fds;
pub mod log_writer;
pub mod oom;
pub mod pin;
pub mod pod_init;
pub mod reaper;
pub mod server;

use crust_proto::monitor::{ErrorKind, FrameError};

/// File names inside a pod's state dir.
pub const SOCKET_FILE: &str = "monitor.sock";
pub const LOG_FILE: &str = "monitor.log";
pub const PID_FILE: &str = "monitor.pid";
pub const NS_DIR: &str = "ns";
/// Namespaces a pod shares among its containers, pinned by bind mounts in `NS_DIR`.
pub const POD_NAMESPACES: &[&str] = &["net", "ipc", "uts"];

/// A unix socket address for `dir/file` that fits in `sun_path` (108 bytes): the path itself
/// when short enough, else `/proc/self/fd/<dirfd>/file` through an O_PATH handle on `dir`,
/// which must be kept alive while the address is used.
pub fn socket_addr(
    dir: &std::path::Path,
    file: &str,
) -> std::io::Result<(std::path::PathBuf, Option<std::fs::File>)> {
    let full = dir.join(file);
    if full.as_os_str().len() < 100 {
        return Ok((full, None));
    }
    use std::os::unix::fs::OpenOptionsExt;
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)?;
    let short = std::path::PathBuf::from(format!(
        "/proc/self/fd/{}/{file}",
        std::os::fd::AsRawFd::as_raw_fd(&handle)
    ));
    Ok((short, Some(handle)))
}

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("cannot start the pod monitor: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("the pod monitor failed to start: {0}")]
    Startup(String),
    #[error("cannot reach the pod monitor at {socket}: {source}")]
    Connect {
        socket: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Protocol(#[from] FrameError),
    #[error("the pod monitor did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("{message}")]
    Remote { kind: ErrorKind, message: String },
    #[error("unexpected reply from the pod monitor: {0}")]
    Unexpected(String),
}
