//! Port forwarding into a pod's network namespace. Over SPDY (`portforward.k8s.io`) the client
//! opens an error stream and a data stream per connection, paired by their `requestid` and
//! naming a `port`; over WebSocket the ports are fixed by the URL and each gets a data channel
//! (2i) and an error channel (2i+1), both announced with the port in two little-endian bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crust_runtime::Engine;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::spdy::{self, Event, Frame, Writer};

/// Error stream ids by request id, shared with the connection tasks.
type ErrorStreams = Arc<Mutex<HashMap<String, u32>>>;

pub async fn serve_spdy(
    engine: Arc<Engine>,
    pod_id: String,
    writer: Writer,
    mut events: mpsc::Receiver<Event>,
    idle: Duration,
) {
    let errors: ErrorStreams = Arc::default();
    let mut inputs: HashMap<u32, mpsc::Sender<Option<Vec<u8>>>> = HashMap::new();
    loop {
        let ev = match writer.activity.or_idle(idle, events.recv()).await {
            Some(Some(e)) => e,
            _ => break,
        };
        match ev {
            Event::Opened {
                stream_id, headers, ..
            } => {
                writer.reply(stream_id).await;
                let kind = spdy::header(&headers, "streamtype").unwrap_or("");
                let request = spdy::header(&headers, "requestid")
                    .unwrap_or("")
                    .to_string();
                let port = spdy::header(&headers, "port").and_then(|p| p.parse::<u16>().ok());
                match (kind, port) {
                    ("error", _) => {
                        errors
                            .lock()
                            .expect("errors lock")
                            .insert(request, stream_id);
                    }
                    ("data", Some(port)) if port > 0 => {
                        let (tx, rx) = mpsc::channel(16);
                        inputs.insert(stream_id, tx);
                        tokio::spawn(forward_spdy(
                            engine.clone(),
                            pod_id.clone(),
                            port,
                            stream_id,
                            request,
                            errors.clone(),
                            writer.clone(),
                            rx,
                        ));
                    }
                    _ => {
                        writer
                            .send(Frame::RstStream {
                                stream_id,
                                status: spdy::RST_PROTOCOL_ERROR,
                            })
                            .await;
                    }
                }
            }
            Event::Data {
                stream_id,
                data,
                fin,
            } => {
                if let Some(tx) = inputs.get(&stream_id) {
                    if !data.is_empty() && tx.send(Some(data)).await.is_err() {
                        inputs.remove(&stream_id);
                    } else if fin {
                        let _ = tx.send(None).await;
                        inputs.remove(&stream_id);
                    }
                }
            }
            Event::Reset { stream_id } => {
                inputs.remove(&stream_id);
            }
            Event::Replied { .. } => {}
            Event::Closed => break,
        }
    }
}

/// One forwarded connection: TCP to `port` in the pod, bridged to SPDY stream `data_id`.
#[allow(clippy::too_many_arguments)]
async fn forward_spdy(
    engine: Arc<Engine>,
    pod_id: String,
    port: u16,
    data_id: u32,
    request: String,
    errors: ErrorStreams,
    writer: Writer,
    mut input: mpsc::Receiver<Option<Vec<u8>>>,
) {
    let tcp = match engine.port_forward(&pod_id, port).await {
        Ok(t) => t,
        Err(e) => {
            // The client opens the error stream first; give it a moment if it raced.
            let mut error_id = None;
            for _ in 0..20 {
                error_id = errors.lock().expect("errors lock").get(&request).copied();
                if error_id.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let msg = format!("error forwarding port {port} to pod {pod_id}: {e}");
            if let Some(id) = error_id {
                writer.data(id, msg.as_bytes(), true).await;
            }
            writer.data(data_id, &[], true).await;
            return;
        }
    };
    let (mut rd, mut wr) = tcp.into_split();
    let w = writer.clone();
    let upstream = tokio::spawn(async move {
        while let Some(chunk) = input.recv().await {
            match chunk {
                Some(d) => {
                    if wr.write_all(&d).await.is_err() {
                        return;
                    }
                }
                None => break,
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !w.data(data_id, &buf[..n], false).await {
                    break;
                }
            }
        }
    }
    w.data(data_id, &[], true).await;
    let _ = upstream.await;
    if let Some(id) = errors.lock().expect("errors lock").remove(&request) {
        let w = writer.clone();
        tokio::spawn(async move { w.data(id, &[], true).await });
    }
}

pub async fn serve_ws<S>(
    engine: Arc<Engine>,
    pod_id: String,
    ports: Vec<u16>,
    socket: WebSocketStream<S>,
    idle: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut source) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(32);
    let activity = super::Activity::default();
    let out_activity = activity.clone();
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            out_activity.touch();
            let close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let frame = |channel: u8, data: &[u8]| {
        let mut m = vec![channel];
        m.extend_from_slice(data);
        Message::binary(m)
    };
    let mut inputs: HashMap<u8, mpsc::Sender<Vec<u8>>> = HashMap::new();
    // The channel protocol has no per-connection end: when the last pod connection closes,
    // the session closes, which is how its client learns the response is complete.
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for (i, port) in ports.iter().copied().enumerate().take(127) {
        let (data_ch, err_ch) = ((2 * i) as u8, (2 * i + 1) as u8);
        for ch in [data_ch, err_ch] {
            let _ = out_tx.send(frame(ch, &port.to_le_bytes())).await;
        }
        match engine.port_forward(&pod_id, port).await {
            Ok(tcp) => {
                let (mut rd, mut wr) = tcp.into_split();
                let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
                inputs.insert(data_ch, tx);
                tokio::spawn(async move {
                    while let Some(d) = rx.recv().await {
                        if wr.write_all(&d).await.is_err() {
                            return;
                        }
                    }
                    let _ = wr.shutdown().await;
                });
                let out = out_tx.clone();
                let open = open.clone();
                open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    loop {
                        match rd.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if out.send(frame(data_ch, &buf[..n])).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    if open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                        let _ = out.send(super::ws::normal_close()).await;
                    }
                });
            }
            Err(e) => {
                let msg = format!("error forwarding port {port} to pod {pod_id}: {e}");
                let _ = out_tx.send(frame(err_ch, msg.as_bytes())).await;
            }
        }
    }
    loop {
        let msg = match activity.or_idle(idle, source.next()).await {
            Some(Some(Ok(m))) => m,
            _ => break,
        };
        activity.touch();
        match msg {
            Message::Binary(b) if !b.is_empty() => {
                if let Some(tx) = inputs.get(&b[0])
                    && tx.send(b[1..].to_vec()).await.is_err()
                {
                    inputs.remove(&b[0]);
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    drop(inputs);
    let _ = out_tx.send(super::ws::normal_close()).await;
    drop(out_tx);
    let _ = writer.await;
}
