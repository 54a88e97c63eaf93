//! crust's streaming server: the URLs that `Exec`, `Attach` and `PortForward` return, served
//! over plain HTTP/1.1 on a TCP address (loopback by default, never an abstract socket), with
//! the connection upgraded to SPDY/3.1 or WebSocket as the client asks.
//!
//! Each URL carries a single-use random token bound to its request; an unknown, reused or
//! expired token gets 404.

pub mod client;
mod portforward;
mod remotecommand;
pub mod spdy;
pub mod terminal;
pub mod tls;
pub mod ws;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crust_proto::cri;
use crust_runtime::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// remotecommand subprotocols crust speaks, most preferred first.
pub const REMOTECOMMAND_PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
/// The WebSocket-only variant with base64 text frames.
pub const BASE64_PROTOCOL: &str = "base64.channel.k8s.io";
pub const PORTFORWARD_PROTOCOL: &str = "portforward.k8s.io";
/// The port-forward WebSocket subprotocols (kubectl's tunnelling and the channel form).
pub const PORTFORWARD_WS_PROTOCOLS: &[&str] = &["v4.channel.k8s.io", "portforward.k8s.io"];

#[derive(Debug, Clone)]
pub struct StreamingConfig {
    /// Where to listen; port 0 picks a free port.
    pub addr: SocketAddr,
    /// How long an unused URL stays valid.
    pub token_ttl: Duration,
    /// A session with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Serve HTTPS with this PEM certificate chain and key (both or neither).
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            token_ttl: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(4 * 3600),
            tls: None,
        }
    }
}

/// What a token stands for.
#[derive(Debug, Clone)]
pub enum Pending {
    Exec(cri::ExecRequest),
    Attach(cri::AttachRequest),
    PortForward(cri::PortForwardRequest),
}

impl Pending {
    fn path(&self) -> &'static str {
        match self {
            Pending::Exec(_) => "exec",
            Pending::Attach(_) => "attach",
            Pending::PortForward(_) => "portforward",
        }
    }
}

pub struct StreamingServer {
    base_url: String,
    cfg: StreamingConfig,
    engine: Arc<Engine>,
    tokens: Mutex<HashMap<String, (Pending, Instant)>>,
}

impl StreamingServer {
    /// Binds the listener and starts serving.
    pub async fn start(cfg: StreamingConfig, engine: Arc<Engine>) -> std::io::Result<Arc<Self>> {
        let acceptor = match &cfg.tls {
            Some((cert, key)) => Some(tls::acceptor(cert, key)?),
            None => None,
        };
        let listener = TcpListener::bind(cfg.addr).await?;
        let local = listener.local_addr()?;
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        let server = Arc::new(StreamingServer {
            base_url: format!("{scheme}://{local}"),
            cfg,
            engine,
            tokens: Mutex::new(HashMap::new()),
        });
        let s = server.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((conn, peer)) => {
                        let s = s.clone();
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            let _ = conn.set_nodelay(true);
                            let result = match acceptor {
                                Some(a) => match tokio::time::timeout(
                                    Duration::from_secs(30),
                                    a.accept(conn),
                                )
                                .await
                                {
                                    Ok(Ok(tls)) => s.handle(tls).await,
                                    Ok(Err(e)) => Err(e),
                                    Err(_) => Ok(()),
                                },
                                None => s.handle(conn).await,
                            };
                            if let Err(e) = result {
                                tracing::debug!(%peer, err = %e, "streaming connection ended");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(err = %e, "streaming accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        tracing::info!(url = %server.base_url, "streaming server listening");
        Ok(server)
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Registers a request and returns its single-use URL.
    pub fn url_for(&self, req: Pending) -> String {
        let token: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        let path = req.path();
        let mut tokens = self.tokens.lock().expect("tokens lock");
        let now = Instant::now();
        tokens.retain(|_, (_, t)| now.duration_since(*t) < self.cfg.token_ttl);
        tokens.insert(token.clone(), (req, now));
        format!("{}/{path}/{token}", self.base_url)
    }

    fn take(&self, kind: &str, token: &str) -> Option<Pending> {
        let mut tokens = self.tokens.lock().expect("tokens lock");
        let (p, created) = tokens.remove(token)?;
        (p.path() == kind && created.elapsed() < self.cfg.token_ttl).then_some(p)
    }

    async fn handle<S>(self: Arc<Self>, mut conn: S) -> std::io::Result<()>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (head, leftover) =
            match tokio::time::timeout(Duration::from_secs(30), read_head(&mut conn)).await {
                Ok(r) => r?,
                Err(_) => return Ok(()),
            };
        let Some(req) = Request::parse(&head) else {
            return respond(&mut conn, "400 Bad Request", "malformed request\n").await;
        };
        let mut parts = req.path.trim_start_matches('/').splitn(2, '/');
        let kind = parts.next().unwrap_or("");
        let token = parts.next().unwrap_or("").split('?').next().unwrap_or("");
        let Some(pending) = self.take(kind, token) else {
            return respond(
                &mut conn,
                "404 Not Found",
                "unknown or expired stream URL\n",
            )
            .await;
        };
        let upgrade = req.header("upgrade").unwrap_or("").to_ascii_lowercase();
        let idle = self.cfg.idle_timeout;
        if upgrade == "websocket" {
            let offered = req.header_list("sec-websocket-protocol");
            let supported: Vec<&str> = match &pending {
                Pending::PortForward(_) => PORTFORWARD_WS_PROTOCOLS.to_vec(),
                _ => REMOTECOMMAND_PROTOCOLS
                    .iter()
                    .copied()
                    .chain([BASE64_PROTOCOL])
                    .collect(),
            };
            let Some(protocol) = negotiate(&offered, &supported) else {
                return respond(
                    &mut conn,
                    "400 Bad Request",
                    &format!(
                        "no supported subprotocol among {offered:?}; crust speaks {supported:?}\n"
                    ),
                )
                .await;
            };
            let Some(key) = req.header("sec-websocket-key") else {
                return respond(&mut conn, "400 Bad Request", "missing Sec-WebSocket-Key\n").await;
            };
            let accept =
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            let resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"
            );
            conn.write_all(resp.as_bytes()).await?;
            let io = ws::Prefixed::new(conn, leftover);
            let socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
                io,
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            match pending {
                Pending::PortForward(r) => {
                    let ports = query_ports(&req.path).unwrap_or_else(|| {
                        r.port
                            .iter()
                            .filter_map(|p| u16::try_from(*p).ok())
                            .collect()
                    });
                    portforward::serve_ws(
                        self.engine.clone(),
                        r.pod_sandbox_id,
                        ports,
                        socket,
                        idle,
                    )
                    .await;
                }
                other => {
                    let io = ws::remotecommand(socket, &protocol, options(&other), idle);
                    remotecommand::run(self.engine.clone(), other, io).await;
                }
            }
            return Ok(());
        }
        if upgrade.starts_with("spdy/3") {
            let offered = req.header_list("x-stream-protocol-version");
            let supported: Vec<&str> = match &pending {
                Pending::PortForward(_) => vec![PORTFORWARD_PROTOCOL],
                _ => REMOTECOMMAND_PROTOCOLS[1..].to_vec(),
            };
            // Clients that send no version get the original protocol, as with kubelet.
            let protocol = if offered.is_empty() {
                supported.last().map(|s| s.to_string()).unwrap_or_default()
            } else {
                match negotiate(&offered, &supported) {
                    Some(p) => p,
                    None => {
                        return respond(
                            &mut conn,
                            "403 Forbidden",
                            &format!("no supported protocol version among {offered:?}; crust speaks {supported:?}\n"),
                        )
                        .await;
                    }
                }
            };
            let resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\n\r\n"
            );
            conn.write_all(resp.as_bytes()).await?;
            let (writer, events) = spdy::session(conn, leftover);
            match pending {
                Pending::PortForward(r) => {
                    portforward::serve_spdy(
                        self.engine.clone(),
                        r.pod_sandbox_id,
                        writer,
                        events,
                        idle,
                    )
                    .await
                }
                other => {
                    let opts = options(&other);
                    match remotecommand::spdy_streams(&protocol, opts, writer, events, idle).await {
                        Some(io) => remotecommand::run(self.engine.clone(), other, io).await,
                        None => tracing::debug!("spdy client did not open its streams"),
                    }
                }
            }
            return Ok(());
        }
        respond(
            &mut conn,
            "400 Bad Request",
            "this URL needs an upgrade to SPDY/3.1 or websocket\n",
        )
        .await
    }
}

/// When a session last carried traffic, in either direction.
#[derive(Clone)]
pub struct Activity(Arc<(Instant, std::sync::atomic::AtomicU64)>);

impl Default for Activity {
    fn default() -> Self {
        Activity(Arc::new((
            Instant::now(),
            std::sync::atomic::AtomicU64::new(0),
        )))
    }
}

impl Activity {
    pub fn touch(&self) {
        let ms = self.0.0.elapsed().as_millis() as u64;
        self.0.1.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn idle_for(&self) -> Duration {
        let last = self.0.1.load(std::sync::atomic::Ordering::Relaxed);
        self.0
            .0
            .elapsed()
            .saturating_sub(Duration::from_millis(last))
    }

    /// Runs `fut`; None when the session saw no traffic either way for `idle` first.
    pub async fn or_idle<T>(
        &self,
        idle: Duration,
        fut: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        tokio::pin!(fut);
        loop {
            let remaining = idle.saturating_sub(self.idle_for());
            if remaining.is_zero() {
                return None;
            }
            tokio::select! {
                v = &mut fut => return Some(v),
                _ = tokio::time::sleep(remaining) => {}
            }
        }
    }
}

/// Which streams a remotecommand session carries.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

fn options(p: &Pending) -> StreamOptions {
    match p {
        Pending::Exec(r) => StreamOptions {
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr && !r.tty,
            tty: r.tty,
        },
        Pending::Attach(r) => StreamOptions {
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr && !r.tty,
            tty: r.tty,
        },
        Pending::PortForward(_) => StreamOptions::default(),
    }
}

/// The first protocol the client offers that crust supports (client preference wins, as in
/// Kubernetes' handshake).
fn negotiate(offered: &[String], supported: &[&str]) -> Option<String> {
    offered
        .iter()
        .find(|o| supported.contains(&o.as_str()))
        .cloned()
}

fn query_ports(path: &str) -> Option<Vec<u16>> {
    let query = path.split_once('?')?.1;
    let ports: Vec<u16> = query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("port="))
        .filter_map(|p| p.parse().ok())
        .collect();
    (!ports.is_empty()).then_some(ports)
}

async fn respond<S: tokio::io::AsyncWrite + Unpin>(
    conn: &mut S,
    status: &str,
    body: &str,
) -> std::io::Result<()> {
    respond_with(conn, status, "text/plain", body).await
}

/// A complete HTTP/1.1 response, then the connection's end.
pub(crate) async fn respond_with<S: tokio::io::AsyncWrite + Unpin>(
    conn: &mut S,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(resp.as_bytes()).await?;
    conn.shutdown().await
}

/// Reads an HTTP request or response head (up to the blank line); returns it and any bytes
/// that came after it.
pub async fn read_head<R: tokio::io::AsyncRead + Unpin>(
    conn: &mut R,
) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let leftover = buf.split_off(end + 4);
            return Ok((String::from_utf8_lossy(&buf).into_owned(), leftover));
        }
        if buf.len() > 16 * 1024 {
            return Err(std::io::Error::other("request head too large"));
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The parts of an HTTP/1.1 request head the server looks at.
pub struct Request {
    pub method: String,
    pub path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    pub fn parse(head: &str) -> Option<Request> {
        let mut lines = head.split("\r\n");
        let mut first = lines.next()?.split(' ');
        let method = first.next()?.to_string();
        let path = first.next()?.to_string();
        first.next().filter(|v| v.starts_with("HTTP/1."))?;
        let headers = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Some(Request {
            method,
            path,
            headers,
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header that may repeat or hold a comma-separated list.
    pub fn header_list(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads_and_negotiation() {
        let r = Request::parse(
            "POST /exec/abc HTTP/1.1\r\nHost: x\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nX-Stream-Protocol-Version: v3.channel.k8s.io, channel.k8s.io\r\nUpgrade: SPDY/3.1\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/exec/abc"));
        assert_eq!(r.header("upgrade"), Some("SPDY/3.1"));
        let offered = r.header_list("x-stream-protocol-version");
        assert_eq!(offered.len(), 3);
        assert_eq!(
            negotiate(&offered, &REMOTECOMMAND_PROTOCOLS[1..]).as_deref(),
            Some("v4.channel.k8s.io")
        );
        assert_eq!(negotiate(&["v9".into()], REMOTECOMMAND_PROTOCOLS), None);
        assert!(Request::parse("garbage").is_none());
        assert_eq!(
            query_ports("/portforward/t?port=80&port=8080"),
            Some(vec![80, 8080])
        );
        assert_eq!(query_ports("/portforward/t"), None);
    }
}
