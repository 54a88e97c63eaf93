//! Kubernetes' channel protocols over WebSocket: each binary message starts with a channel
//! byte (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize); `base64.channel.k8s.io` sends text
//! messages with an ASCII channel digit and base64 data; v5 adds a close signal (255, channel)
//! so a client can end stdin without closing the socket.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::StreamOptions;
use super::remotecommand::{Outcome, RemoteIo, TransportEnds, error_body, parse_resizes};

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5's close signal channel.
pub const CLOSE: u8 = 255;

/// A close frame with status 1000: Go's websocket clients treat any other close (including
/// one without a status) as an error on every channel still being read.
pub fn normal_close() -> Message {
    Message::Close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "".into(),
    }))
}

/// A stream that first yields bytes read past the HTTP head.
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(inner: S, prefix: Vec<u8>) -> Self {
        Prefixed { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.drain(..n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Encodes one channel message for `protocol`.
pub fn channel_message(protocol: &str, channel: u8, data: &[u8]) -> Message {
    if protocol == super::BASE64_PROTOCOL {
        let text = format!(
            "{}{}",
            (b'0' + channel) as char,
            base64::engine::general_purpose::STANDARD.encode(data)
        );
        Message::text(text)
    } else {
        let mut m = Vec::with_capacity(1 + data.len());
        m.push(channel);
        m.extend_from_slice(data);
        Message::binary(m)
    }
}

/// Decodes a channel message: its channel and data (None for control or malformed ones).
pub fn decode_message(protocol: &str, msg: &Message) -> Option<(u8, Vec<u8>)> {
    match msg {
        Message::Binary(b) if !b.is_empty() => Some((b[0], b[1..].to_vec())),
        Message::Text(t) if protocol == super::BASE64_PROTOCOL && !t.is_empty() => {
            let t = t.as_str();
            let channel = t.as_bytes()[0].checked_sub(b'0')?;
            let data = base64::engine::general_purpose::STANDARD
                .decode(&t[1..])
                .ok()?;
            Some((channel, data))
        }
        _ => None,
    }
}

/// Bridges a remotecommand WebSocket to a [`RemoteIo`].
pub fn remotecommand<S>(
    socket: WebSocketStream<S>,
    protocol: &str,
    opts: StreamOptions,
    idle: Duration,
) -> RemoteIo
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut source) = socket.split();
    let activity = super::Activity::default();
    let out_activity = activity.clone();
    let (out_tx, mut out_rx) = mpsc::channel::<(u8, Vec<u8>)>(32);
    let stdout_proto = protocol.to_string();
    let mut senders = Vec::new();
    let mut output = |channel: u8, wanted: bool| -> Option<mpsc::Sender<Vec<u8>>> {
        if !wanted {
            return None;
        }
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
        let out = out_tx.clone();
        senders.push(tokio::spawn(async move {
            while let Some(d) = rx.recv().await {
                if out.send((channel, d)).await.is_err() {
                    return;
                }
            }
        }));
        Some(tx)
    };
    let stdout = output(STDOUT, opts.stdout);
    let stderr = output(STDERR, opts.stderr);
    drop(out_tx);
    let (io, ends) = RemoteIo::pair(opts, stdout, stderr);
    let TransportEnds {
        stdin: stdin_tx,
        resize: resize_tx,
        done: done_rx,
        gone: gone_tx,
    } = ends;
    // Writer: output, then the status on the error channel, then a close frame.
    tokio::spawn(async move {
        while let Some((channel, data)) = out_rx.recv().await {
            out_activity.touch();
            if sink
                .send(channel_message(&stdout_proto, channel, &data))
                .await
                .is_err()
            {
                return;
            }
        }
        for s in senders {
            let _ = s.await;
        }
        let outcome = done_rx
            .await
            .unwrap_or(Outcome::Failed("the session ended without a result".into()));
        if let Some(body) = error_body(&stdout_proto, &outcome) {
            let _ = sink
                .send(channel_message(&stdout_proto, ERROR, &body))
                .await;
        }
        let _ = sink.send(normal_close()).await;
        let _ = sink.close().await;
    });
    let protocol = protocol.to_string();
    tokio::spawn(async move {
        let mut stdin_tx = Some(stdin_tx);
        let mut resize_buf = Vec::new();
        loop {
            let msg = match activity.or_idle(idle, source.next()).await {
                Some(Some(Ok(m))) => m,
                _ => break,
            };
            activity.touch();
            if matches!(msg, Message::Close(_)) {
                break;
            }
            let Some((channel, data)) = decode_message(&protocol, &msg) else {
                continue;
            };
            match channel {
                STDIN => {
                    if !data.is_empty()
                        && let Some(tx) = &stdin_tx
                        && tx.send(data).await.is_err()
                    {
                        stdin_tx = None;
                    }
                }
                RESIZE => {
                    resize_buf.extend_from_slice(&data);
                    for r in parse_resizes(&mut resize_buf) {
                        let _ = resize_tx.send(r).await;
                    }
                }
                CLOSE if data.first() == Some(&STDIN) => stdin_tx = None,
                _ => {}
            }
        }
        let _ = gone_tx.send(true);
    });
    io
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_messages_round_trip() {
        for proto in ["v4.channel.k8s.io", super::super::BASE64_PROTOCOL] {
            let m = channel_message(proto, STDOUT, b"hi\n");
            assert_eq!(decode_message(proto, &m), Some((STDOUT, b"hi\n".to_vec())));
        }
        assert_eq!(
            decode_message("v4.channel.k8s.io", &Message::binary(vec![])),
            None
        );
        assert_eq!(
            decode_message(
                super::super::BASE64_PROTOCOL,
                &Message::text("1!!notbase64")
            ),
            None
        );
    }
}
