//! The metrics address: `/metrics` (Prometheus text), `/healthz` (the daemon answers) and
//! `/readyz` (the CRI socket is served). Plain HTTP/1.1, one request per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crust_runtime::Engine;
use tokio::net::TcpListener;

use super::prometheus::PrometheusReader;
use crate::streaming::{Request, read_head, respond_with};

/// Whether crustd serves CRI calls: false while starting and once shutdown began.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Binds `addr` and serves until the process ends. Returns the bound address.
pub async fn serve(
    addr: &str,
    reader: PrometheusReader,
    engine: Arc<Engine>,
    ready: Readiness,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                continue;
            };
            let (reader, engine, ready) = (reader.clone(), engine.clone(), ready.clone());
            tokio::spawn(async move {
                if let Err(e) = handle(conn, &reader, &engine, &ready).await {
                    tracing::debug!(err = %e, "metrics connection");
                }
            });
        }
    });
    Ok(local)
}

async fn handle(
    mut conn: tokio::net::TcpStream,
    reader: &PrometheusReader,
    engine: &Engine,
    ready: &Readiness,
) -> std::io::Result<()> {
    let head = tokio::time::timeout(std::time::Duration::from_secs(10), read_head(&mut conn))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??
        .0;
    let Some(req) = Request::parse(&head) else {
        return respond_with(&mut conn, "400 Bad Request", "text/plain", "bad request\n").await;
    };
    if req.method != "GET" {
        return respond_with(
            &mut conn,
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n",
        )
        .await;
    }
    let path = req.path.split('?').next().unwrap_or("");
    match path {
        "/metrics" => {
            super::daemon::sample(engine).await;
            let page = reader.render();
            respond_with(
                &mut conn,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &page,
            )
            .await
        }
        "/healthz" | "/livez" => respond_with(&mut conn, "200 OK", "text/plain", "ok\n").await,
        "/readyz" if ready.get() => respond_with(&mut conn, "200 OK", "text/plain", "ok\n").await,
        "/readyz" => {
            respond_with(
                &mut conn,
                "503 Service Unavailable",
                "text/plain",
                "not serving CRI\n",
            )
            .await
        }
        _ => respond_with(&mut conn, "404 Not Found", "text/plain", "not found\n").await,
    }
}
