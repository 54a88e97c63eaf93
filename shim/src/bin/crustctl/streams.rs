//! exec -it, attach and port-forward: sessions through crustd's streaming server.

use anyhow::{Context, anyhow};
use crust_proto::cri;
use crust_shim::client::CriClient;
use crust_shim::streaming::StreamOptions;
use crust_shim::streaming::client::Transport;

use crate::common::resolve_pod;

/// Runs an exec or attach session at `url` on this terminal; the remote exit code.
pub(crate) async fn stream(
    url: &str,
    transport: Transport,
    stdin: bool,
    tty: bool,
    what: &str,
) -> anyhow::Result<i32> {
    let opts = StreamOptions {
        stdin,
        stdout: true,
        stderr: !tty,
        tty,
    };
    let session = crust_shim::streaming::client::remotecommand(url, transport, opts).await?;
    crust_shim::streaming::terminal::run(session, tty)
        .await
        .map_err(|e| anyhow!("{what}: {e}"))
}

/// `crustctl port-forward`: one listener per LOCAL:REMOTE pair, until interrupted.
pub(crate) async fn port_forward(
    c: &mut CriClient,
    transport: Transport,
    pod: &str,
    ports: &[String],
) -> anyhow::Result<i32> {
    let pod_id = resolve_pod(c, pod).await?;
    let mut pairs = Vec::new();
    for p in ports {
        let (local, remote) = p.split_once(':').unwrap_or((p, p));
        let parse = |v: &str| {
            v.parse::<u16>()
                .map_err(|_| anyhow!("port-forward {p}: expected LOCAL:REMOTE port numbers"))
        };
        pairs.push((parse(local)?, parse(remote)?));
    }
    let mut tasks = Vec::new();
    for (local, remote) in pairs {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", local))
            .await
            .with_context(|| format!("listen on 127.0.0.1:{local}"))?;
        println!("Forwarding from {} -> {remote}", listener.local_addr()?);
        let req = cri::PortForwardRequest {
            pod_sandbox_id: pod_id.clone(),
            port: vec![remote.into()],
        };
        let first = c.runtime.port_forward(req.clone()).await?.into_inner().url;
        let client = c.clone();
        let next = move || {
            let mut client = client.clone();
            let req = req.clone();
            async move { Ok(client.runtime.port_forward(req).await?.into_inner().url) }
        };
        tasks.push(tokio::spawn(crust_shim::streaming::terminal::forward(
            first, next, transport, listener, remote,
        )));
    }
    for t in tasks {
        t.await??;
    }
    Ok(0)
}
