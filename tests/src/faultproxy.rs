//! An HTTP proxy in front of the test registry that misbehaves on request: 500s, 429s with
//! Retry-After, blob transfers cut halfway, blob transfers that stall. It counts what it saw,
//! so tests can check crust retried, resumed with a Range request, and fetched each blob once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
pub struct Faults {
    /// Answer this many manifest requests with 500.
    pub manifest_500: AtomicU32,
    /// Answer this many requests (any) with 429 and Retry-After: 1.
    pub throttle: AtomicU32,
    /// Cut this many whole-layer transfers (blobs over 64 KiB) after half the body.
    pub cut_blobs: AtomicU32,
    /// Blob transfers (any size) send half the body, then nothing.
    pub stall_blobs: AtomicBool,
    /// Range requests seen.
    pub range_requests: AtomicU32,
    /// Whole-blob GETs seen, by digest.
    pub blob_gets: Mutex<HashMap<String, u32>>,
    /// When set, requests need `Authorization: Basic base64(this)` (else 401 with a Basic
    /// challenge), as a registry with htpasswd auth answers.
    pub basic_auth: Mutex<Option<String>>,
    /// Requests need a bearer token from the proxy's own token endpoint (`/token`), as
    /// Docker Hub-style registries do.
    pub bearer: AtomicBool,
    /// Tokens handed out.
    pub token_requests: AtomicU32,
    /// Pause this many milliseconds halfway through each blob (a slow link).
    pub slow_blob_ms: AtomicU32,
    /// Serve `crust-test/foreign:latest` as this manifest, its config from
    /// `crust-test/busybox`, and `/foreign/<digest>` as that repository's blobs: the layer
    /// itself is only reachable through the URL the manifest gives.
    pub foreign: Mutex<Option<(Vec<u8>, String)>>,
}

pub struct FaultProxy {
    pub addr: String,
    pub faults: Arc<Faults>,
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap().to_string();
        let faults = Arc::new(Faults::default());
        let f = faults.clone();
        let upstream = upstream.to_string();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let f = f.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let _ = serve(conn, &upstream, &f).await;
                });
            }
        });
        FaultProxy { addr, faults }
    }
}

fn take(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

async fn serve(mut conn: TcpStream, upstream: &str, f: &Faults) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let head = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
                buf.drain(..end + 4);
                break head;
            }
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let first = head.lines().next().unwrap_or("").to_string();
        let mut path = first.split(' ').nth(1).unwrap_or("").to_string();
        let foreign = f.foreign.lock().unwrap().clone();
        if let Some((manifest, config)) = foreign {
            if path == "/v2/crust-test/foreign/manifests/latest" {
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.distribution.manifest.v2+json\r\nContent-Length: {}\r\n\r\n",
                    manifest.len()
                );
                conn.write_all(resp.as_bytes()).await?;
                conn.write_all(&manifest).await?;
                continue;
            }
            if path == format!("/v2/crust-test/foreign/blobs/{config}") {
                path = format!("/v2/crust-test/busybox/blobs/{config}");
            } else if let Some(d) = path.strip_prefix("/foreign/") {
                path = format!("/v2/crust-test/busybox/blobs/{d}");
            }
        }
        let lower = head.to_ascii_lowercase();
        let is_blob = path.contains("/blobs/sha256:") && first.starts_with("GET");
        let ranged = lower.contains("\r\nrange:");
        if f.bearer.load(Ordering::SeqCst) {
            if path.starts_with("/token") {
                let n = f.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
                let body = format!(r#"{{"token":"tok-{n}","expires_in":300}}"#);
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                conn.write_all(resp.as_bytes()).await?;
                continue;
            }
            if !lower.contains("\r\nauthorization: bearer tok-") {
                let host = lower
                    .lines()
                    .find_map(|l| l.strip_prefix("host:"))
                    .map(str::trim)
                    .unwrap_or("")
                    .to_string();
                let resp = format!(
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{host}/token\",service=\"crust-test\"\r\nContent-Length: 0\r\n\r\n"
                );
                conn.write_all(resp.as_bytes()).await?;
                continue;
            }
        }
        let wanted = f.basic_auth.lock().unwrap().clone();
        if let Some(userpass) = wanted {
            use base64::Engine as _;
            let expected = format!(
                "authorization: basic {}",
                base64::engine::general_purpose::STANDARD.encode(userpass)
            )
            .to_ascii_lowercase();
            if !lower.lines().any(|l| l.trim() == expected) {
                conn.write_all(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"crust-test\"\r\nContent-Length: 0\r\n\r\n").await?;
                continue;
            }
        }
        if take(&f.throttle) {
            conn.write_all(
                b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n",
            )
            .await?;
            continue;
        }
        if path.contains("/manifests/") && take(&f.manifest_500) {
            conn.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
                .await?;
            continue;
        }
        if is_blob {
            if ranged {
                f.range_requests.fetch_add(1, Ordering::SeqCst);
            } else {
                let digest = path.rsplit('/').next().unwrap_or("").to_string();
                *f.blob_gets.lock().unwrap().entry(digest).or_default() += 1;
            }
        }
        // Forward on a fresh upstream connection that closes after the response.
        let mut up = TcpStream::connect(upstream).await?;
        let mut fwd = String::new();
        let method = first.split(' ').next().unwrap_or("GET");
        let head = head.replacen(&first, &format!("{method} {path} HTTP/1.1"), 1);
        for line in head.split("\r\n").filter(|l| !l.is_empty()) {
            if !line.to_ascii_lowercase().starts_with("connection:") {
                fwd.push_str(line);
                fwd.push_str("\r\n");
            }
        }
        fwd.push_str("Connection: close\r\n\r\n");
        up.write_all(fwd.as_bytes()).await?;
        let mut resp = Vec::new();
        up.read_to_end(&mut resp).await?;
        let split = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(resp.len(), |p| p + 4);
        let (rhead, body) = resp.split_at(split);
        let ok = rhead.starts_with(b"HTTP/1.1 200");
        let pause = f.slow_blob_ms.load(Ordering::SeqCst);
        if is_blob && ok && body.len() > 1 && pause > 0 {
            let half = body.len() / 2;
            conn.write_all(rhead).await?;
            conn.write_all(&body[..half]).await?;
            tokio::time::sleep(std::time::Duration::from_millis(pause.into())).await;
            conn.write_all(&body[half..]).await?;
            continue;
        }
        if is_blob && ok && !ranged && body.len() > 1 && f.stall_blobs.load(Ordering::SeqCst) {
            conn.write_all(rhead).await?;
            conn.write_all(&body[..body.len() / 2]).await?;
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            return Ok(());
        }
        // Cuts hit layers only (image configs are a few hundred bytes).
        if is_blob && ok && !ranged && body.len() > 64 * 1024 {
            let half = body.len() / 2;
            if take(&f.cut_blobs) {
                conn.write_all(rhead).await?;
                conn.write_all(&body[..half]).await?;
                return Ok(()); // dropped mid-body
            }
        }
        conn.write_all(&resp).await?;
        if lower.contains("\r\nconnection: close") {
            return Ok(());
        }
    }
}
