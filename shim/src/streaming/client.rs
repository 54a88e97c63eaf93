//! The client side of crust's streaming URLs, over SPDY/3.1 or WebSocket: what crustctl's
//! `exec -it`, `attach` and `port-forward` use, and what the tests drive each protocol with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::spdy::{self, Event, FLAG_FIN, Frame, Writer};
use super::{StreamOptions, read_head, ws};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Spdy,
    WebSocket,
}

impl std::str::FromStr for Transport {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "spdy" => Ok(Transport::Spdy),
            "websocket" | "ws" => Ok(Transport::WebSocket),
            _ => bail!("transport {s:?}: expected spdy or websocket"),
        }
    }
}

/// A remotecommand session from the client's side.
pub struct Session {
    /// Input for the remote stdin; dropping it closes stdin.
    pub stdin: Option<mpsc::Sender<Vec<u8>>>,
    pub resize: mpsc::Sender<(u16, u16)>,
    /// Output as (1 = stdout, 2 = stderr, data).
    pub output: mpsc::Receiver<(u8, Vec<u8>)>,
    /// The exit code, or the error the server reported.
    pub status: oneshot::Receiver<Result<i32, String>>,
    /// The negotiated subprotocol.
    pub protocol: String,
}

/// Reads the exit code out of an error-stream body (a Status object from v4 on, text before).
pub fn parse_status(body: &[u8]) -> Result<i32, String> {
    if body.is_empty() {
        return Ok(0);
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Err(String::from_utf8_lossy(body).into_owned());
    };
    if v["status"] == "Success" {
        return Ok(0);
    }
    if v["reason"] == "NonZeroExitCode"
        && let Some(code) = v["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["reason"] == "ExitCode")
            .and_then(|c| c["message"].as_str())
            .and_then(|m| m.parse().ok())
    {
        return Ok(code);
    }
    Err(v["message"]
        .as_str()
        .unwrap_or("remote command failed")
        .to_string())
}

/// (scheme, host:port, path) of a streaming URL.
fn split_url(url: &str) -> anyhow::Result<(String, String, String)> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| anyhow!("streaming URL {url} has no scheme"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    Ok((scheme.to_string(), host.to_string(), format!("/{path}")))
}

/// Connects and upgrades to SPDY/3.1, offering `protocols`; returns the negotiated one.
pub async fn spdy_connect(
    url: &str,
    protocols: &[&str],
) -> anyhow::Result<(String, Writer, mpsc::Receiver<Event>)> {
    let (scheme, host, path) = split_url(url)?;
    let mut tcp = super::tls::connect(&scheme, &host).await?;
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n"
    );
    for p in protocols {
        req.push_str(&format!("X-Stream-Protocol-Version: {p}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await?;
    let (head, leftover) = read_head(&mut tcp).await?;
    let status = head.lines().next().unwrap_or("");
    if !status.contains(" 101 ") {
        bail!("{url}: the server refused the upgrade: {status}");
    }
    let protocol = super::Request::parse(&format!(
        "GET / HTTP/1.1\r\n{}",
        head.split_once("\r\n").map_or("", |x| x.1)
    ))
    .and_then(|r| r.header("x-stream-protocol-version").map(str::to_string))
    .unwrap_or_default();
    let (writer, events) = spdy::session(tcp, leftover);
    Ok((protocol, writer, events))
}

async fn ws_connect(
    url: &str,
    protocols: &[&str],
) -> anyhow::Result<(
    String,
    tokio_tungstenite::WebSocketStream<Box<dyn super::tls::Io>>,
)> {
    let (scheme, host, path) = split_url(url)?;
    let tcp = super::tls::connect(&scheme, &host).await?;
    let mut req = format!("ws://{host}{path}").into_client_request()?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocols.join(", ").parse()?);
    let (socket, resp) = tokio_tungstenite::client_async(req, tcp)
        .await
        .with_context(|| format!("websocket upgrade at {url}"))?;
    let protocol = resp
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    Ok((protocol, socket))
}

/// Opens an exec or attach session at `url`.
pub async fn remotecommand(
    url: &str,
    transport: Transport,
    opts: StreamOptions,
) -> anyhow::Result<Session> {
    match transport {
        Transport::Spdy => spdy_remotecommand(url, opts).await,
        Transport::WebSocket => ws_remotecommand(url, opts).await,
    }
}

async fn spdy_remotecommand(url: &str, opts: StreamOptions) -> anyhow::Result<Session> {
    let (protocol, writer, mut events) =
        spdy_connect(url, &super::REMOTECOMMAND_PROTOCOLS[1..]).await?;
    let mut next_id = 1u32;
    let mut open = |kind: &str| {
        let id = next_id;
        next_id += 2;
        (
            id,
            Frame::SynStream {
                stream_id: id,
                associated: 0,
                priority: 0,
                flags: 0,
                headers: vec![("streamtype".into(), kind.into())],
            },
        )
    };
    let mut streams: HashMap<u32, u8> = HashMap::new();
    let (error_id, f) = open("error");
    writer.send(f).await;
    let mut stdin_id = None;
    for (wanted, kind, channel) in [
        (opts.stdin, "stdin", ws::STDIN),
        (opts.stdout, "stdout", ws::STDOUT),
        (opts.stderr && !opts.tty, "stderr", ws::STDERR),
        (opts.tty, "resize", ws::RESIZE),
    ] {
        if wanted {
            let (id, f) = open(kind);
            writer.send(f).await;
            streams.insert(id, channel);
            if channel == ws::STDIN {
                stdin_id = Some(id);
            }
        }
    }
    let resize_id = streams
        .iter()
        .find(|(_, c)| **c == ws::RESIZE)
        .map(|(id, _)| *id);
    let (out_tx, out_rx) = mpsc::channel(32);
    let (status_tx, status_rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut error_body = Vec::new();
        let mut status_tx = Some(status_tx);
        while let Some(ev) = events.recv().await {
            match ev {
                Event::Data {
                    stream_id,
                    data,
                    fin,
                    ..
                } if stream_id == error_id => {
                    error_body.extend_from_slice(&data);
                    if fin && let Some(tx) = status_tx.take() {
                        let _ = tx.send(parse_status(&error_body));
                    }
                }
                Event::Data {
                    stream_id, data, ..
                } => {
                    if let Some(ch) = streams.get(&stream_id)
                        && !data.is_empty()
                    {
                        let _ = out_tx.send((*ch, data)).await;
                    }
                }
                Event::Closed => break,
                _ => {}
            }
        }
        if let Some(tx) = status_tx.take() {
            let _ = tx.send(parse_status(&error_body));
        }
    });
    let stdin = stdin_id.map(|id| {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
        let w = writer.clone();
        tokio::spawn(async move {
            while let Some(d) = rx.recv().await {
                if !w.data(id, &d, false).await {
                    return;
                }
            }
            w.send(Frame::Data {
                stream_id: id,
                flags: FLAG_FIN,
                data: vec![],
            })
            .await;
        });
        tx
    });
    let (resize_tx, mut resize_rx) = mpsc::channel::<(u16, u16)>(4);
    tokio::spawn(async move {
        while let Some((w, h)) = resize_rx.recv().await {
            if let Some(id) = resize_id {
                let body = serde_json::json!({"Width": w, "Height": h}).to_string();
                writer.data(id, body.as_bytes(), false).await;
            }
        }
    });
    Ok(Session {
        stdin,
        resize: resize_tx,
        output: out_rx,
        status: status_rx,
        protocol,
    })
}

async fn ws_remotecommand(url: &str, opts: StreamOptions) -> anyhow::Result<Session> {
    let (protocol, socket) = ws_connect(
        url,
        &[
            "v5.channel.k8s.io",
            "v4.channel.k8s.io",
            super::BASE64_PROTOCOL,
        ],
    )
    .await?;
    let (mut sink, mut source) = socket.split();
    let (out_tx, out_rx) = mpsc::channel(32);
    let (status_tx, status_rx) = oneshot::channel();
    let proto = protocol.clone();
    tokio::spawn(async move {
        let mut error_body = Vec::new();
        while let Some(Ok(msg)) = source.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
            match ws::decode_message(&proto, &msg) {
                Some((ws::ERROR, d)) => error_body.extend_from_slice(&d),
                Some((ch @ (ws::STDOUT | ws::STDERR), d)) if !d.is_empty() => {
                    let _ = out_tx.send((ch, d)).await;
                }
                _ => {}
            }
        }
        let _ = status_tx.send(parse_status(&error_body));
    });
    let (msg_tx, mut msg_rx) = mpsc::channel::<Message>(16);
    tokio::spawn(async move {
        while let Some(m) = msg_rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        // The session was dropped: say goodbye, so the server ends (and kills) the command.
        let _ = sink.send(ws::normal_close()).await;
        let _ = sink.close().await;
    });
    let stdin = opts.stdin.then(|| {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
        let out = msg_tx.clone();
        let proto = protocol.clone();
        tokio::spawn(async move {
            while let Some(d) = rx.recv().await {
                if out
                    .send(ws::channel_message(&proto, ws::STDIN, &d))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            // v5 can say "stdin is done" without closing the socket.
            if proto == "v5.channel.k8s.io" {
                let _ = out.send(Message::binary(vec![ws::CLOSE, ws::STDIN])).await;
            }
        });
        tx
    });
    let (resize_tx, mut resize_rx) = mpsc::channel::<(u16, u16)>(4);
    let proto = protocol.clone();
    tokio::spawn(async move {
        while let Some((w, h)) = resize_rx.recv().await {
            let body = serde_json::json!({"Width": w, "Height": h}).to_string();
            if msg_tx
                .send(ws::channel_message(&proto, ws::RESIZE, body.as_bytes()))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    Ok(Session {
        stdin,
        resize: resize_tx,
        output: out_rx,
        status: status_rx,
        protocol,
    })
}

/// One forwarded connection from the client's side.
pub struct Forwarded {
    /// Bytes to the pod; dropping it half-closes the connection.
    pub tx: mpsc::Sender<Vec<u8>>,
    /// Bytes from the pod; ends when the pod side closes. Unbounded so one slow connection
    /// never stalls the session's other streams (TCP back-pressure is the pod's socket).
    pub rx: mpsc::UnboundedReceiver<Vec<u8>>,
    /// What the error stream said, if anything.
    pub error: oneshot::Receiver<String>,
}

/// A SPDY port-forward session: any number of connections to any of the request's ports.
pub struct PortForwarder {
    writer: Writer,
    routes: Arc<Mutex<HashMap<u32, Route>>>,
    next: Mutex<(u32, u64)>,
}

enum Route {
    Data(mpsc::UnboundedSender<Vec<u8>>),
    Error(Vec<u8>, Option<oneshot::Sender<String>>),
}

impl PortForwarder {
    pub async fn connect(url: &str) -> anyhow::Result<PortForwarder> {
        let (_, writer, mut events) = spdy_connect(url, &[super::PORTFORWARD_PROTOCOL]).await?;
        let routes: Arc<Mutex<HashMap<u32, Route>>> = Arc::default();
        let r = routes.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                match ev {
                    Event::Data {
                        stream_id,
                        data,
                        fin,
                        ..
                    } => {
                        let mut routes = r.lock().expect("routes lock");
                        match routes.get_mut(&stream_id) {
                            Some(Route::Data(tx)) => {
                                if !data.is_empty() {
                                    let _ = tx.send(data);
                                }
                                if fin {
                                    routes.remove(&stream_id);
                                }
                            }
                            Some(Route::Error(body, done)) => {
                                body.extend_from_slice(&data);
                                if fin {
                                    if let Some(tx) = done.take()
                                        && !body.is_empty()
                                    {
                                        let _ = tx.send(String::from_utf8_lossy(body).into_owned());
                                    }
                                    routes.remove(&stream_id);
                                }
                            }
                            None => {}
                        }
                    }
                    Event::Reset { stream_id } => {
                        r.lock().expect("routes lock").remove(&stream_id);
                    }
                    Event::Closed => {
                        r.lock().expect("routes lock").clear();
                        break;
                    }
                    _ => {}
                }
            }
        });
        Ok(PortForwarder {
            writer,
            routes,
            next: Mutex::new((1, 0)),
        })
    }

    /// Opens a connection to `port` in the pod.
    pub async fn open(&self, port: u16) -> Forwarded {
        let (error_id, data_id, request) = {
            let mut n = self.next.lock().expect("next lock");
            let ids = (n.0, n.0 + 2, n.1);
            n.0 += 4;
            n.1 += 1;
            ids
        };
        let (data_tx, data_rx) = mpsc::unbounded_channel();
        let (err_tx, err_rx) = oneshot::channel();
        {
            let mut routes = self.routes.lock().expect("routes lock");
            routes.insert(error_id, Route::Error(Vec::new(), Some(err_tx)));
            routes.insert(data_id, Route::Data(data_tx));
        }
        for (id, kind) in [(error_id, "error"), (data_id, "data")] {
            self.writer
                .send(Frame::SynStream {
                    stream_id: id,
                    associated: 0,
                    priority: 0,
                    flags: 0,
                    headers: vec![
                        ("streamtype".into(), kind.into()),
                        ("port".into(), port.to_string()),
                        ("requestid".into(), request.to_string()),
                    ],
                })
                .await;
        }
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
        let w = self.writer.clone();
        tokio::spawn(async move {
            while let Some(d) = rx.recv().await {
                if !w.data(data_id, &d, false).await {
                    return;
                }
            }
            w.data(data_id, &[], true).await;
        });
        Forwarded {
            tx,
            rx: data_rx,
            error: err_rx,
        }
    }
}

/// A WebSocket port-forward session for the ports named in the URL: one connection each.
pub async fn port_forward_ws(url: &str, ports: &[u16]) -> anyhow::Result<Vec<Forwarded>> {
    let query: Vec<String> = ports.iter().map(|p| format!("port={p}")).collect();
    let url = format!("{url}?{}", query.join("&"));
    let (_, socket) = ws_connect(&url, super::PORTFORWARD_WS_PROTOCOLS).await?;
    let (mut sink, mut source) = socket.split();
    let mut data_txs = Vec::new();
    let mut err_txs = Vec::new();
    let mut out = Vec::new();
    let (msg_tx, mut msg_rx) = mpsc::channel::<Message>(16);
    for i in 0..ports.len() {
        let (dtx, drx) = mpsc::unbounded_channel();
        let (etx, erx) = oneshot::channel();
        data_txs.push(dtx);
        err_txs.push(Some(etx));
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
        let m = msg_tx.clone();
        tokio::spawn(async move {
            while let Some(d) = rx.recv().await {
                let mut b = vec![(2 * i) as u8];
                b.extend_from_slice(&d);
                if m.send(Message::binary(b)).await.is_err() {
                    return;
                }
            }
        });
        out.push(Forwarded {
            tx,
            rx: drx,
            error: erx,
        });
    }
    drop(msg_tx);
    tokio::spawn(async move {
        while let Some(m) = msg_rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    tokio::spawn(async move {
        // The first message on each channel is its port number, not data.
        let mut announced = vec![false; 2 * data_txs.len()];
        while let Some(Ok(msg)) = source.next().await {
            let Message::Binary(b) = msg else { continue };
            let Some((&ch, data)) = b.split_first() else {
                continue;
            };
            let ch = ch as usize;
            if ch >= announced.len() {
                continue;
            }
            if !announced[ch] {
                announced[ch] = true;
                continue;
            }
            if ch.is_multiple_of(2) {
                let _ = data_txs[ch / 2].send(data.to_vec());
            } else if let Some(tx) = err_txs[ch / 2].take() {
                let _ = tx.send(String::from_utf8_lossy(data).into_owned());
            }
        }
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_from_status_bodies() {
        assert_eq!(parse_status(b""), Ok(0));
        assert_eq!(
            parse_status(br#"{"metadata":{},"status":"Success"}"#),
            Ok(0)
        );
        let body = super::super::remotecommand::status_json(
            &super::super::remotecommand::Outcome::Exit(7),
        );
        assert_eq!(parse_status(body.as_bytes()), Ok(7));
        assert_eq!(
            parse_status(b"command terminated"),
            Err("command terminated".into())
        );
    }
}
