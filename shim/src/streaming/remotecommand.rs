//! Exec and attach sessions: Kubernetes' remotecommand protocol on one side (SPDY streams or
//! WebSocket channels, both turned into [`RemoteIo`]), the engine's exec or attach on the other.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use crust_proto::monitor::AttachFrame;
use crust_runtime::Engine;
use crust_runtime::monitor::console::{FdIo, set_window_size};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

use super::spdy::{self, Event, Writer};
use super::{Pending, StreamOptions};

/// How a session ended, for the error stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Exit(i32),
    Failed(String),
}

/// A remotecommand session's streams as exec and attach use them, independent of the wire
/// protocol.
pub struct Streams {
    /// Client input; the channel closes when the client closes stdin.
    pub stdin: Option<mpsc::Receiver<Vec<u8>>>,
    pub resize: mpsc::Receiver<(u16, u16)>,
    pub stdout: Option<mpsc::Sender<Vec<u8>>>,
    pub stderr: Option<mpsc::Sender<Vec<u8>>>,
    /// Becomes true when the client disconnects or the session idles out.
    pub gone: watch::Receiver<bool>,
}

/// The streams and where the session's outcome goes.
pub struct RemoteIo {
    pub streams: Streams,
    pub done: oneshot::Sender<Outcome>,
}

/// The transport's ends of a [`RemoteIo`].
pub struct TransportEnds {
    pub stdin: mpsc::Sender<Vec<u8>>,
    pub resize: mpsc::Sender<(u16, u16)>,
    pub done: oneshot::Receiver<Outcome>,
    pub gone: watch::Sender<bool>,
}

impl RemoteIo {
    /// New channels for a session whose output goes to `stdout`/`stderr`.
    pub fn pair(
        opts: StreamOptions,
        stdout: Option<mpsc::Sender<Vec<u8>>>,
        stderr: Option<mpsc::Sender<Vec<u8>>>,
    ) -> (RemoteIo, TransportEnds) {
        let (stdin_tx, stdin_rx) = mpsc::channel::<Vec<u8>>(16);
        let (resize_tx, resize_rx) = mpsc::channel::<(u16, u16)>(4);
        let (done_tx, done_rx) = oneshot::channel::<Outcome>();
        let (gone_tx, gone_rx) = watch::channel(false);
        let io = RemoteIo {
            streams: Streams {
                stdin: opts.stdin.then_some(stdin_rx),
                resize: resize_rx,
                stdout,
                stderr,
                gone: gone_rx,
            },
            done: done_tx,
        };
        let ends = TransportEnds {
            stdin: stdin_tx,
            resize: resize_tx,
            done: done_rx,
            gone: gone_tx,
        };
        (io, ends)
    }
}

/// The v4+ error-stream body: a Kubernetes `Status` object.
pub fn status_json(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Exit(0) => r#"{"metadata":{},"status":"Success"}"#.to_string(),
        Outcome::Exit(code) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        })
        .to_string(),
        Outcome::Failed(msg) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": msg,
            "reason": "InternalError",
        })
        .to_string(),
    }
}

/// The error-stream body for `protocol`: a Status object from v4 on, plain text before (and
/// nothing for success).
pub fn error_body(protocol: &str, outcome: &Outcome) -> Option<Vec<u8>> {
    let structured = matches!(protocol, "v4.channel.k8s.io" | "v5.channel.k8s.io");
    match outcome {
        _ if structured => Some(status_json(outcome).into_bytes()),
        Outcome::Exit(0) => None,
        Outcome::Exit(code) => {
            Some(format!("command terminated with exit code {code}").into_bytes())
        }
        Outcome::Failed(m) => Some(m.clone().into_bytes()),
    }
}

/// Reads a client's resize stream: concatenated JSON objects `{"Width":w,"Height":h}`.
pub fn parse_resizes(buf: &mut Vec<u8>) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(buf).into_iter::<serde_json::Value>();
    let mut consumed = 0;
    while let Some(Ok(v)) = de.next() {
        consumed = de.byte_offset();
        let w = v["Width"]
            .as_u64()
            .or_else(|| v["width"].as_u64())
            .unwrap_or(0);
        let h = v["Height"]
            .as_u64()
            .or_else(|| v["height"].as_u64())
            .unwrap_or(0);
        if w > 0 && h > 0 {
            out.push((w.min(u16::MAX as u64) as u16, h.min(u16::MAX as u64) as u16));
        }
    }
    buf.drain(..consumed);
    out
}

/// Waits for the client's SPDY streams, answers them, and bridges them to a [`RemoteIo`].
/// None when the client did not open the streams it must within 30 seconds.
pub async fn spdy_streams(
    protocol: &str,
    opts: StreamOptions,
    writer: Writer,
    mut events: mpsc::Receiver<Event>,
    idle: Duration,
) -> Option<RemoteIo> {
    let mut roles: HashMap<u32, String> = HashMap::new();
    let mut wanted = vec!["error"];
    if opts.stdin {
        wanted.push("stdin");
    }
    if opts.stdout {
        wanted.push("stdout");
    }
    if opts.stderr {
        wanted.push("stderr");
    }
    if opts.tty && protocol != "channel.k8s.io" && protocol != "v2.channel.k8s.io" {
        wanted.push("resize");
    }
    let mut early: Vec<Event> = Vec::new();
    let collect = async {
        while !wanted.iter().all(|w| roles.values().any(|r| r == w)) {
            match events.recv().await? {
                Event::Opened {
                    stream_id, headers, ..
                } => {
                    let role = spdy::header(&headers, "streamtype")
                        .unwrap_or("")
                        .to_string();
                    writer.reply(stream_id).await;
                    roles.insert(stream_id, role);
                }
                Event::Closed => return None,
                other => early.push(other),
            }
        }
        Some(())
    };
    tokio::time::timeout(Duration::from_secs(30), collect)
        .await
        .ok()
        .flatten()?;
    let id_of = |role: &str| roles.iter().find(|(_, r)| *r == role).map(|(id, _)| *id);
    let error_id = id_of("error")?;
    let mut outputs = Vec::new();
    let mut out_sender = |role: &str| -> Option<mpsc::Sender<Vec<u8>>> {
        let id = id_of(role)?;
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
        let w = writer.clone();
        outputs.push(tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                if !w.data(id, &chunk, false).await {
                    return;
                }
            }
            w.data(id, &[], true).await;
        }));
        Some(tx)
    };
    let stdout = out_sender("stdout");
    let stderr = out_sender("stderr");
    let (io, ends) = RemoteIo::pair(opts, stdout, stderr);
    let TransportEnds {
        stdin: stdin_tx,
        resize: resize_tx,
        done: done_rx,
        gone: gone_tx,
    } = ends;
    let stdin_id = id_of("stdin");
    let resize_id = id_of("resize");
    // Input: stdin and resize data until the client closes or the session goes quiet for
    // `idle` (no traffic either way).
    let activity = writer.activity.clone();
    tokio::spawn(async move {
        let mut stdin_tx = Some(stdin_tx);
        let mut resize_buf = Vec::new();
        let mut pending = early.into_iter();
        loop {
            let ev = match pending.next() {
                Some(e) => e,
                None => match activity.or_idle(idle, events.recv()).await {
                    Some(Some(e)) => e,
                    _ => break,
                },
            };
            match ev {
                Event::Data {
                    stream_id,
                    data,
                    fin,
                } if Some(stream_id) == stdin_id => {
                    if !data.is_empty()
                        && let Some(tx) = &stdin_tx
                        && tx.send(data).await.is_err()
                    {
                        stdin_tx = None;
                    }
                    if fin {
                        stdin_tx = None;
                    }
                }
                Event::Data {
                    stream_id, data, ..
                } if Some(stream_id) == resize_id => {
                    resize_buf.extend_from_slice(&data);
                    for r in parse_resizes(&mut resize_buf) {
                        let _ = resize_tx.send(r).await;
                    }
                }
                Event::Reset { stream_id } if Some(stream_id) == stdin_id => stdin_tx = None,
                Event::Closed => break,
                _ => {}
            }
        }
        let _ = gone_tx.send(true);
    });
    // Completion: once the backend is done and the output is flushed, report and hang up.
    let protocol = protocol.to_string();
    tokio::spawn(async move {
        let outcome = done_rx
            .await
            .unwrap_or(Outcome::Failed("the session ended without a result".into()));
        for o in outputs {
            let _ = o.await;
        }
        if let Some(body) = error_body(&protocol, &outcome) {
            writer.data(error_id, &body, false).await;
        }
        writer.data(error_id, &[], true).await;
        // Give the client a moment to read the status before the session goes away.
        tokio::time::sleep(Duration::from_millis(100)).await;
        writer
            .send(spdy::Frame::GoAway {
                last_stream_id: 0,
                status: 0,
            })
            .await;
    });
    Some(io)
}

/// Runs the exec or attach behind `pending` with the client's streams `io`.
pub async fn run(engine: Arc<Engine>, pending: Pending, io: RemoteIo) {
    let RemoteIo { streams, done } = io;
    let outcome = match pending {
        Pending::Exec(r) => exec(&engine, &r.container_id, r.cmd, r.tty, r.stdin, streams).await,
        Pending::Attach(r) => attach(&engine, &r.container_id, r.stdin, streams).await,
        Pending::PortForward(_) => Outcome::Failed("not a remotecommand request".into()),
    };
    let _ = done.send(outcome);
}

/// Copies a reader into an output channel until EOF (or the channel closes).
async fn copy_out(mut r: impl tokio::io::AsyncRead + Unpin, tx: Option<mpsc::Sender<Vec<u8>>>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Some(tx) = &tx
                    && tx.send(buf[..n].to_vec()).await.is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Copies the client's stdin into `w` and closes it at the client's EOF.
async fn copy_in(mut rx: mpsc::Receiver<Vec<u8>>, mut w: impl tokio::io::AsyncWrite + Unpin) {
    while let Some(chunk) = rx.recv().await {
        if w.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}

async fn exec(
    engine: &Engine,
    id: &str,
    cmd: Vec<String>,
    tty: bool,
    stdin: bool,
    streams: Streams,
) -> Outcome {
    let Streams {
        stdin: stdin_rx,
        mut resize,
        stdout,
        stderr,
        mut gone,
    } = streams;
    let mut session = match engine.exec_stream(id, cmd, tty, stdin).await {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let mut tasks = Vec::new();
    if let Some(pty) = session.pty.take() {
        // Its own handle on the master for resizes, valid for as long as that task runs.
        let resize_fd = match pty.try_clone() {
            Ok(fd) => fd,
            Err(e) => return Outcome::Failed(format!("exec terminal: {e}")),
        };
        let io = match FdIo::new(pty) {
            Ok(io) => io,
            Err(e) => return Outcome::Failed(format!("exec terminal: {e}")),
        };
        let (r, w) = tokio::io::split(io);
        tasks.push(tokio::spawn(copy_out(r, stdout)));
        if let Some(rx) = stdin_rx {
            tasks.push(tokio::spawn(copy_in(rx, w)));
        }
        tokio::spawn(async move {
            while let Some((w, h)) = resize.recv().await {
                let _ = set_window_size(resize_fd.as_raw_fd(), w, h);
            }
        });
    } else {
        let pipes = (|| -> std::io::Result<_> {
            let out = session
                .stdout
                .take()
                .map(tokio::net::unix::pipe::Receiver::from_owned_fd)
                .transpose()?;
            let err = session
                .stderr
                .take()
                .map(tokio::net::unix::pipe::Receiver::from_owned_fd)
                .transpose()?;
            let inp = session
                .stdin
                .take()
                .map(tokio::net::unix::pipe::Sender::from_owned_fd)
                .transpose()?;
            Ok((out, err, inp))
        })();
        let (out, err, inp) = match pipes {
            Ok(p) => p,
            Err(e) => return Outcome::Failed(format!("exec stdio: {e}")),
        };
        if let Some(out) = out {
            tasks.push(tokio::spawn(copy_out(out, stdout)));
        }
        if let Some(err) = err {
            tasks.push(tokio::spawn(copy_out(err, stderr)));
        }
        if let (Some(rx), Some(inp)) = (stdin_rx, inp) {
            tokio::spawn(copy_in(rx, inp));
        }
    }
    let exit = tokio::select! {
        r = session.wait() => r,
        _ = gone.wait_for(|g| *g) => {
            // Dropping the session makes the monitor kill the command.
            return Outcome::Failed("client disconnected".into());
        }
    };
    // The output is complete at EOF, unless a background child still holds it.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        for t in tasks {
            let _ = t.await;
        }
    })
    .await;
    match exit {
        Ok(code) => Outcome::Exit(code),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

async fn attach(engine: &Engine, id: &str, stdin: bool, streams: Streams) -> Outcome {
    let Streams {
        stdin: stdin_rx,
        mut resize,
        stdout,
        stderr,
        mut gone,
    } = streams;
    let session = match engine.attach(id, stdin).await {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let tty = session.tty;
    let (mut rd, wr) = session.conn.into_split();
    let wr = Arc::new(tokio::sync::Mutex::new(wr));
    let input = {
        let wr = wr.clone();
        async move {
            let mut stdin_rx = stdin_rx;
            loop {
                let frame = tokio::select! {
                    chunk = async { match &mut stdin_rx { Some(rx) => rx.recv().await, None => std::future::pending().await } } => match chunk {
                        Some(d) => AttachFrame::Stdin(d),
                        None => { stdin_rx = None; AttachFrame::StdinClose }
                    },
                    size = resize.recv() => match size {
                        Some((width, height)) if tty => AttachFrame::Resize { width, height },
                        Some(_) => continue,
                        None => std::future::pending().await,
                    },
                };
                if wr.lock().await.write_all(&frame.encode()).await.is_err() {
                    break;
                }
            }
            // A write fails once the monitor has closed the connection, which it does right
            // after the exit frame (stdin_once: the last input can make the container exit).
            // The output side reads that frame and ends the session; ending here would race
            // it and lose the output and the exit code.
            std::future::pending::<std::convert::Infallible>().await
        }
    };
    let output = async move {
        loop {
            match AttachFrame::read(&mut rd).await {
                Ok(AttachFrame::Stdout(d)) => {
                    if let Some(tx) = &stdout {
                        let _ = tx.send(d).await;
                    }
                }
                Ok(AttachFrame::Stderr(d)) => {
                    if let Some(tx) = stderr.as_ref().or(stdout.as_ref()).filter(|_| !tty) {
                        let _ = tx.send(d).await;
                    }
                }
                Ok(AttachFrame::Exited(code)) => return Outcome::Exit(code),
                Ok(_) => {}
                Err(e) => return Outcome::Failed(format!("lost the container's stdio: {e}")),
            }
        }
    };
    tokio::select! {
        o = output => o,
        never = input => match never {},
        _ = gone.wait_for(|g| *g) => Outcome::Failed("client disconnected".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_objects_are_parsed_as_they_complete() {
        let mut buf = br#"{"Width":80,"Height":24}{"Width":100,"#.to_vec();
        assert_eq!(parse_resizes(&mut buf), vec![(80, 24)]);
        buf.extend_from_slice(br#""Height":40}"#);
        assert_eq!(parse_resizes(&mut buf), vec![(100, 40)]);
        assert!(buf.is_empty());
    }

    #[test]
    fn status_bodies_per_protocol() {
        let ok = error_body("v4.channel.k8s.io", &Outcome::Exit(0)).unwrap();
        assert_eq!(
            String::from_utf8(ok).unwrap(),
            r#"{"metadata":{},"status":"Success"}"#
        );
        let failed: serde_json::Value =
            serde_json::from_slice(&error_body("v4.channel.k8s.io", &Outcome::Exit(3)).unwrap())
                .unwrap();
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
        assert_eq!(error_body("v3.channel.k8s.io", &Outcome::Exit(0)), None);
        assert!(error_body("channel.k8s.io", &Outcome::Exit(2)).is_some());
    }
}
