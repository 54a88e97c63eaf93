//! The daemon ↔ pod monitor protocol.
//!
//! One request per connection over the monitor's unix socket (a path in the pod's 0700 state
//! dir, never an abstract socket). A frame is a 4-byte big-endian length followed by that many
//! bytes of JSON. JSON keeps the protocol inspectable with `socat` while it is young; the framing
//! lets us swap the encoding without touching the transport.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame either side accepts: an ExecSync reply carries up to 2 × 16 MiB of output,
/// base64-encoded.
pub const MAX_FRAME: u32 = 48 << 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Create (but do not start) a container from an OCI bundle whose config.json is on disk.
    Create(CreateRequest),
    /// Start a created container.
    Start { id: String },
    /// Send `signal`, wait up to `timeout_secs` for the exit, then SIGKILL and wait for the reap.
    Stop {
        id: String,
        signal: i32,
        timeout_secs: i64,
    },
    /// Forget a container: kill it if it still runs, remove libcontainer's state and cgroup.
    Delete { id: String },
    /// Run a command in a running container and collect its output (CRI ExecSync).
    ExecSync {
        id: String,
        cmd: Vec<String>,
        /// 0 = no timeout.
        timeout_secs: i64,
        /// Each of stdout and stderr is cut at this many bytes.
        max_output: usize,
    },
    /// Reopen the container's log file at its path (after kubelet rotated it).
    ReopenLog { id: String },
    /// Run a command in a running container with its stdio handed to the daemon (CRI Exec).
    /// The monitor replies `ExecStarted`, then sends the command's fds in one SCM_RIGHTS
    /// message (see [`send_fds`]): the pty master under `tty`, otherwise stdout and stderr
    /// read ends followed by stdin's write end when `stdin`. `ExecExited` follows when the
    /// command ends; closing the connection before that kills it.
    ExecStream {
        id: String,
        cmd: Vec<String>,
        tty: bool,
        stdin: bool,
    },
    /// Attach to a running container's stdio (CRI Attach). After `Attached` the connection
    /// carries [`AttachFrame`]s both ways until the container exits or the daemon closes it.
    Attach { id: String, stdin: bool },
    /// Liveness and identity check.
    Ping,
    /// Stop every container and exit; the pod is going away.
    Shutdown,
}

impl Request {
    /// The operation's name, as on the wire (for logs and trace spans).
    pub fn name(&self) -> &'static str {
        match self {
            Request::Create(_) => "create",
            Request::Start { .. } => "start",
            Request::Stop { .. } => "stop",
            Request::Delete { .. } => "delete",
            Request::ExecSync { .. } => "exec_sync",
            Request::ReopenLog { .. } => "reopen_log",
            Request::ExecStream { .. } => "exec_stream",
            Request::Attach { .. } => "attach",
            Request::Ping => "ping",
            Request::Shutdown => "shutdown",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CreateRequest {
    pub id: String,
    /// Bundle directory holding config.json.
    pub bundle: String,
    /// Absolute path of the CRI log file ("" for no log).
    pub log_path: String,
    /// Where the monitor writes the container's exit record (atomically: a rename into
    /// place, which crustd watches for).
    pub exit_file: String,
    /// The container has a terminal (its output comes from a pty, logged as stdout).
    #[serde(default)]
    pub tty: bool,
    /// Keep the container's stdin open for attach (CRI `stdin`).
    #[serde(default)]
    pub stdin: bool,
    /// Close the container's stdin when the first attach that wrote to it ends.
    #[serde(default)]
    pub stdin_once: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Reply {
    Ok,
    Created { pid: i32 },
    Exited(ExitRecord),
    Pong { pid: i32, containers: Vec<String> },
    ExecResult(ExecResult),
    ExecStarted { pid: i32 },
    ExecExited { exit_code: i32 },
    Attached,
    Error { kind: ErrorKind, message: String },
}

/// The binary frames of an attach connection: a kind byte, a 4-byte big-endian length, data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachFrame {
    /// Daemon → monitor: bytes for the container's stdin.
    Stdin(Vec<u8>),
    /// Daemon → monitor: the attach client closed its stdin.
    StdinClose,
    /// Daemon → monitor: terminal size (columns, rows).
    Resize {
        width: u16,
        height: u16,
    },
    /// Monitor → daemon: container output.
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// Monitor → daemon: the container exited with this code.
    Exited(i32),
}

impl AttachFrame {
    pub fn encode(&self) -> Vec<u8> {
        let (kind, data): (u8, Vec<u8>) = match self {
            AttachFrame::Stdin(d) => (0, d.clone()),
            AttachFrame::StdinClose => (5, vec![]),
            AttachFrame::Resize { width, height } => {
                (4, [width.to_be_bytes(), height.to_be_bytes()].concat())
            }
            AttachFrame::Stdout(d) => (1, d.clone()),
            AttachFrame::Stderr(d) => (2, d.clone()),
            AttachFrame::Exited(c) => (3, c.to_be_bytes().to_vec()),
        };
        let mut out = Vec::with_capacity(5 + data.len());
        out.push(kind);
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(&data);
        out
    }

    pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> Result<AttachFrame, FrameError> {
        let mut head = [0u8; 5];
        r.read_exact(&mut head).await?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        if len > 1 << 20 {
            return Err(FrameError::TooLarge(len));
        }
        let mut data = vec![0u8; len as usize];
        r.read_exact(&mut data).await?;
        let bad = || FrameError::Io(std::io::Error::other("malformed attach frame"));
        Ok(match head[0] {
            0 => AttachFrame::Stdin(data),
            5 => AttachFrame::StdinClose,
            4 if data.len() == 4 => AttachFrame::Resize {
                width: u16::from_be_bytes([data[0], data[1]]),
                height: u16::from_be_bytes([data[2], data[3]]),
            },
            1 => AttachFrame::Stdout(data),
            2 => AttachFrame::Stderr(data),
            3 if data.len() == 4 => {
                AttachFrame::Exited(i32::from_be_bytes([data[0], data[1], data[2], data[3]]))
            }
            _ => return Err(bad()),
        })
    }
}

/// Sends `fds` over a unix socket in one SCM_RIGHTS message (with one byte of data, which
/// the kernel requires). The socket may be non-blocking: the message is tiny and sent on an
/// otherwise idle connection.
pub fn send_fds(
    sock: std::os::fd::BorrowedFd<'_>,
    fds: &[std::os::fd::RawFd],
) -> std::io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    use std::os::fd::AsRawFd;
    let iov = [std::io::IoSlice::new(b"F")];
    let cmsg = [ControlMessage::ScmRights(fds)];
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EAGAIN) => {
                std::thread::sleep(std::time::Duration::from_millis(1))
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives up to `max` fds sent with [`send_fds`]; they are close-on-exec.
pub async fn recv_fds(
    sock: &tokio::net::UnixStream,
    max: usize,
) -> std::io::Result<Vec<std::os::fd::OwnedFd>> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::os::fd::{AsRawFd, FromRawFd};
    loop {
        sock.readable().await?;
        let mut byte = [0u8; 1];
        let mut iov = [std::io::IoSliceMut::new(&mut byte)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
        let res = sock.try_io(tokio::io::Interest::READABLE, || {
            recvmsg::<()>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .map(|msg| {
                let mut fds = Vec::new();
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            fds.extend(raw);
                        }
                    }
                }
                (msg.bytes, fds)
            })
            .map_err(std::io::Error::from)
        });
        match res {
            Ok((0, _)) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok((_, raw)) => {
                let fds: Vec<std::os::fd::OwnedFd> = raw
                    .into_iter()
                    // SAFETY: the kernel just installed these fds in our table for us alone.
                    .map(|fd| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
                    .collect();
                if fds.len() > max {
                    return Err(std::io::Error::other("too many fds in the message"));
                }
                return Ok(fds);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    NotFound,
    InvalidState,
    /// The request itself cannot work (a command that is not in the image, no command).
    InvalidArgument,
    Failed,
}

/// What the monitor records when it reaps a container's init process. Written atomically as
/// `exit.json` in the container's exit dir, so it survives the monitor and the daemon.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExitRecord {
    pub exit_code: i32,
    /// Unix time in nanoseconds.
    pub finished_at: i64,
    /// Set when the kernel's OOM killer ended the container.
    #[serde(default)]
    pub oom_killed: bool,
    /// Set when the code is 128+signal.
    #[serde(default)]
    pub signal: Option<i32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExecResult {
    pub exit_code: i32,
    #[serde(with = "b64")]
    pub stdout: Vec<u8>,
    #[serde(with = "b64")]
    pub stderr: Vec<u8>,
    /// The timeout expired: the process was killed and the output is what came before.
    pub timed_out: bool,
}

/// Bytes as base64 strings, so command output stays compact in JSON frames.
mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("monitor connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("monitor frame of {0} bytes exceeds the limit")]
    TooLarge(u32),
    #[error("monitor frame is not valid: {0}")]
    Decode(#[from] serde_json::Error),
}

pub async fn write_frame<W, T>(w: &mut W, msg: &T) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let body = serde_json::to_vec(msg)?;
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge(u32::MAX))?;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf).await?;
    w.flush().await?;
    Ok(())
}

pub async fn read_frame<R, T>(r: &mut R) -> Result<T, FrameError>
where
    R: AsyncRead + Unpin,
    T: for<'de> Deserialize<'de>,
{
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len);
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body).await?;
    Ok(serde_json::from_slice(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let req = Request::Stop {
            id: "abc".into(),
            signal: 15,
            timeout_secs: 3,
        };
        write_frame(&mut a, &req).await.unwrap();
        let got: Request = read_frame(&mut b).await.unwrap();
        assert_eq!(got, req);
    }

    #[tokio::test]
    async fn exec_output_round_trips_as_base64() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let reply = Reply::ExecResult(ExecResult {
            exit_code: 1,
            stdout: vec![0, 159, 255, b'\n'],
            stderr: b"err".to_vec(),
            timed_out: false,
        });
        write_frame(&mut a, &reply).await.unwrap();
        let got: Reply = read_frame(&mut b).await.unwrap();
        assert_eq!(got, reply);
    }

    #[tokio::test]
    async fn oversized_frame_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&(MAX_FRAME + 1).to_be_bytes()).await.unwrap();
        let got: Result<Request, _> = read_frame(&mut b).await;
        assert!(matches!(got, Err(FrameError::TooLarge(_))));
    }
}
