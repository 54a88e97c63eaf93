//! The daemon's side of the monitor: starting one for a pod and sending it requests.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::Instrument;

use crust_proto::monitor::{self, Reply, Request};
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;

use super::{MonitorError, SOCKET_FILE};

/// How to exec crust's own binary as a monitor.
#[derive(Debug, Clone)]
pub struct MonitorLauncher {
    /// The binary to exec: a sealed copy of crustd (see the shim's `sealed_exe`), or crustd.
    pub exe: PathBuf,
    /// Arguments before the monitor's own (e.g. `["monitor"]`).
    pub prefix_args: Vec<String>,
    pub max_log_line: usize,
    /// Kept open so `exe` (a /proc/self/fd path) stays valid; inherited by the fork only long
    /// enough to be exec'd.
    pub exe_fd: Option<std::sync::Arc<OwnedFd>>,
}

impl MonitorLauncher {
    /// Starts a monitor for `pod_id` with state in `dir` and waits until it reports ready.
    /// Returns its pid.
    pub async fn spawn(
        &self,
        pod_id: &str,
        dir: &Path,
        hostname: &str,
        namespaces: &[String],
    ) -> Result<u32, MonitorError> {
        let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| MonitorError::Spawn(e.into()))?;
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.arg0("crust-monitor")
            .args(&self.prefix_args)
            .arg("--pod-id")
            .arg(pod_id)
            .arg("--dir")
            .arg(dir)
            .arg("--hostname")
            .arg(hostname)
            .arg("--namespaces")
            .arg(namespaces.join(","))
            .arg("--ready-fd")
            .arg("3")
            .arg("--max-log-line")
            .arg(self.max_log_line.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(false);
        let ready_raw = ready_w.as_raw_fd();
        // SAFETY: the closure runs in the forked child before exec and only calls
        // async-signal-safe functions (setsid, dup2), allocating nothing.
        unsafe {
            cmd.pre_exec(move || {
                // Own session: a signal to the daemon's process group must not reach the monitor.
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // dup2 clears close-on-exec on fd 3, so only the ready pipe is inherited.
                if libc::dup2(ready_raw, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(MonitorError::Spawn)?;
        drop(ready_w);
        let pid = child.id().unwrap_or(0);
        // Reap the monitor when it exits while this daemon is its parent.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        let mut msg = Vec::new();
        let reader = async {
            let mut rx = tokio::net::unix::pipe::Receiver::from_owned_fd(ready_r)?;
            rx.read_to_end(&mut msg).await
        };
        match tokio::time::timeout(Duration::from_secs(30), reader).await {
            Err(_) => {
                return Err(MonitorError::Startup(
                    "no readiness report within 30s".into(),
                ));
            }
            Ok(Err(e)) => return Err(MonitorError::Spawn(e)),
            Ok(Ok(_)) => {}
        }
        if msg == b"ok" {
            Ok(pid)
        } else if msg.is_empty() {
            Err(MonitorError::Startup(format!(
                "exited before reporting (see {})",
                dir.join(super::LOG_FILE).display()
            )))
        } else {
            Err(MonitorError::Startup(
                String::from_utf8_lossy(&msg).into_owned(),
            ))
        }
    }
}

/// Sends one request to the monitor of the pod whose state dir is `dir`.
pub async fn call(dir: &Path, req: &Request, limit: Duration) -> Result<Reply, MonitorError> {
    // A child span of the CRI call being served (the monitor's libcontainer create/start is
    // where a pod's time goes); background calls outside any CRI call are not traced.
    let span = if tracing::Span::current().is_disabled() {
        tracing::Span::none()
    } else {
        tracing::info_span!(
            "monitor.call",
            otel.name = format!("monitor.{}", req.name())
        )
    };
    open(dir, req, limit)
        .instrument(span)
        .await
        .map(|(_, reply)| reply)
}

/// Sends a request and returns its first reply with the connection, for the requests whose
/// session continues on it (streaming exec, attach).
pub async fn open(
    dir: &Path,
    req: &Request,
    limit: Duration,
) -> Result<(UnixStream, Reply), MonitorError> {
    let socket = dir.join(SOCKET_FILE);
    let exchange = async {
        let connect_err = |e| MonitorError::Connect {
            socket: socket.display().to_string(),
            source: e,
        };
        let (addr, _dir_handle) = super::socket_addr(dir, SOCKET_FILE).map_err(connect_err)?;
        let mut stream = UnixStream::connect(&addr).await.map_err(connect_err)?;
        monitor::write_frame(&mut stream, req).await?;
        let reply: Reply = monitor::read_frame(&mut stream).await?;
        Ok::<_, MonitorError>((stream, reply))
    };
    let (stream, reply) = tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| MonitorError::Timeout(limit))??;
    if let Reply::Error { kind, message } = reply {
        return Err(MonitorError::Remote { kind, message });
    }
    Ok((stream, reply))
}

/// True when a monitor answers on `dir`'s socket.
pub async fn is_alive(dir: &Path) -> bool {
    call(dir, &Request::Ping, Duration::from_secs(2))
        .await
        .is_ok()
}
