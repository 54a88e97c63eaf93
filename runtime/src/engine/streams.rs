//! The engine's side of CRI's streaming calls: an exec whose stdio the monitor hands over, an
//! attach session to a container's stdio, and TCP connections into a pod's network namespace.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use crust_proto::monitor::{self, Reply, Request};
use tokio::net::UnixStream;

use super::{Engine, monitor_err};
use crate::error::{Error, Result};
use crate::monitor::client;
use crate::store::ContainerState;

const OPEN_TIMEOUT: Duration = Duration::from_secs(60);

/// A running streaming exec: the command's stdio and the monitor connection that reports its
/// exit. Dropping it before the exit makes the monitor kill the command.
pub struct ExecSession {
    pub pid: i32,
    pub tty: bool,
    /// Under a terminal: the pty master (read and write). Otherwise stdout, stderr and, when
    /// asked for, stdin's write end.
    pub pty: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub stdin: Option<OwnedFd>,
    conn: UnixStream,
}

impl ExecSession {
    /// Waits for the command to exit; its code, or an error when the monitor went away.
    pub async fn wait(mut self) -> Result<i32> {
        match monitor::read_frame::<_, Reply>(&mut self.conn).await {
            Ok(Reply::ExecExited { exit_code }) => Ok(exit_code),
            Ok(other) => Err(Error::Internal(format!(
                "unexpected monitor reply {other:?}"
            ))),
            Err(e) => Err(Error::Unavailable(format!(
                "lost the pod monitor during exec: {e}"
            ))),
        }
    }
}

/// An attach session: [`monitor::AttachFrame`]s both ways on `conn`.
pub struct AttachSession {
    pub conn: UnixStream,
    pub tty: bool,
}

impl Engine {
    /// The running container `id`'s id, pod and TTY flag, or the CRI error.
    pub(super) async fn running(
        &self,
        id: &str,
        what: &str,
    ) -> Result<(String, String, bool, bool)> {
        self.live(id, what, false).await
    }

    /// [`Self::running`], or with `created_too` also a container created and not yet
    /// started (its monitor holds its stdio from the create on).
    async fn live(
        &self,
        id: &str,
        what: &str,
        created_too: bool,
    ) -> Result<(String, String, bool, bool)> {
        let c = self.container_shared(id).await?;
        let mut c = c.lock().await;
        self.refresh(&mut c);
        let created = created_too && c.state == ContainerState::Created;
        if c.state != ContainerState::Running && !created {
            return Err(Error::FailedPrecondition(format!(
                "container {} is {:?}; {what} needs a running container",
                c.id, c.state
            )));
        }
        Ok((c.id.clone(), c.pod_id.clone(), c.config.tty, c.config.stdin))
    }

    pub async fn exec_stream(
        &self,
        id: &str,
        cmd: Vec<String>,
        tty: bool,
        stdin: bool,
    ) -> Result<ExecSession> {
        if cmd.is_empty() || cmd[0].is_empty() {
            return Err(Error::InvalidArgument("cmd is required".into()));
        }
        let (cid, pod_id, _, _) = self.running(id, "exec").await?;
        let req = Request::ExecStream {
            id: cid,
            cmd,
            tty,
            stdin,
        };
        let (conn, reply) = client::open(&self.pod_dir(&pod_id), &req, OPEN_TIMEOUT)
            .await
            .map_err(monitor_err)?;
        let Reply::ExecStarted { pid } = reply else {
            return Err(Error::Internal(format!(
                "unexpected monitor reply {reply:?}"
            )));
        };
        let fds = tokio::time::timeout(OPEN_TIMEOUT, monitor::recv_fds(&conn, 3))
            .await
            .map_err(|_| Error::Unavailable("the pod monitor sent no exec stdio".into()))?
            .map_err(|e| Error::Unavailable(format!("exec stdio from the pod monitor: {e}")))?;
        let mut fds = fds.into_iter();
        let mut s = ExecSession {
            pid,
            tty,
            pty: None,
            stdout: None,
            stderr: None,
            stdin: None,
            conn,
        };
        if tty {
            s.pty = fds.next();
        } else {
            s.stdout = fds.next();
            s.stderr = fds.next();
            if stdin {
                s.stdin = fds.next();
            }
        }
        if (tty && s.pty.is_none())
            || (!tty && s.stderr.is_none())
            || (stdin && !tty && s.stdin.is_none())
        {
            return Err(Error::Internal(
                "the pod monitor sent too few exec fds".into(),
            ));
        }
        Ok(s)
    }

    pub async fn attach(&self, id: &str, stdin: bool) -> Result<AttachSession> {
        let (cid, pod_id, tty, has_stdin) = self.live(id, "attach", true).await?;
        if stdin && !has_stdin {
            return Err(Error::FailedPrecondition(format!(
                "container {cid} was not created with stdin, so attach cannot write to it"
            )));
        }
        let req = Request::Attach { id: cid, stdin };
        let (conn, reply) = client::open(&self.pod_dir(&pod_id), &req, OPEN_TIMEOUT)
            .await
            .map_err(monitor_err)?;
        match reply {
            Reply::Attached => Ok(AttachSession { conn, tty }),
            other => Err(Error::Internal(format!(
                "unexpected monitor reply {other:?}"
            ))),
        }
    }

    /// Checks that pod `pod_id` exists and is ready for port forwarding.
    pub async fn port_forward_check(&self, pod_id: &str) -> Result<String> {
        let pod = self.pod(pod_id).await?;
        if pod.state != crate::store::PodState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                pod.id
            )));
        }
        Ok(pod.id.clone())
    }

    /// A TCP connection to `port` on the pod's loopback, made from inside its network
    /// namespace (the host's for a host-network pod).
    pub async fn port_forward(&self, pod_id: &str, port: u16) -> Result<tokio::net::TcpStream> {
        let pod = self.pod(pod_id).await?;
        let netns = if pod.host_network() {
            None
        } else {
            Some(self.netns_path(&pod.id))
        };
        let std_stream = tokio::task::spawn_blocking(move || connect_in_netns(netns, port))
            .await
            .map_err(|e| Error::Internal(format!("port-forward thread: {e}")))??;
        std_stream
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpStream::from_std(std_stream))
            .map_err(|e| Error::Internal(format!("port-forward socket: {e}")))
    }
}

/// Connects to 127.0.0.1:`port` from a short-lived thread that entered `netns`: the socket
/// belongs to the namespace it was created in, and only that thread ever changes namespace.
fn connect_in_netns(netns: Option<std::path::PathBuf>, port: u16) -> Result<std::net::TcpStream> {
    let connect = move || -> Result<std::net::TcpStream> {
        if let Some(path) = &netns {
            let f = std::fs::File::open(path).map_err(|e| {
                Error::FailedPrecondition(format!("pod network namespace {}: {e}", path.display()))
            })?;
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::Internal(format!("enter the pod network namespace: {e}")))?;
        }
        std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(10),
        )
        .map_err(|e| Error::Unavailable(format!("connect to port {port} in the pod: {e}")))
    };
    // A fresh thread: a thread that entered another namespace must never go back to a pool.
    std::thread::spawn(connect)
        .join()
        .map_err(|_| Error::Internal("port-forward thread panicked".into()))?
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSession")
            .field("pid", &self.pid)
            .field("tty", &self.tty)
            .field("conn", &self.conn.as_raw_fd())
            .finish()
    }
}
