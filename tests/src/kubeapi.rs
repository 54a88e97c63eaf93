//! Just enough of a Kubernetes API server for `kubectl exec` and `kubectl port-forward` to
//! reach crust the way they reach any runtime: discovery and one pod object, and the exec and
//! port-forward subresources answered by asking crust over CRI for a streaming URL and
//! splicing the client's upgraded connection onto it, as kubelet's streaming proxy does.
//! This makes kubectl's real Go SPDY and WebSocket code the peer of crust's streaming server.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{Cri, cri};

/// The pod kubectl sees, backed by a crust pod and one container.
#[derive(Clone)]
pub struct FakePod {
    pub name: String,
    pub pod_id: String,
    pub container_id: String,
}

/// Starts the fake API server on a loopback port; returns its URL.
pub async fn serve(cri: Cri, pod: FakePod) -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fake API server");
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shared = Arc::new((tokio::sync::Mutex::new(cri), pod));
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let shared = shared.clone();
            tokio::spawn(async move {
                let _ = connection(conn, shared).await;
            });
        }
    });
    url
}

async fn read_head(conn: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<String>> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            buf.drain(..end + 4);
            return Ok(Some(head));
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn query_values(query: &str, key: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
        .collect()
}

fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(x) = u8::from_str_radix(&v[i + 1..i + 3], 16)
        {
            out.push(x);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn json(conn: &mut TcpStream, body: serde_json::Value) -> std::io::Result<()> {
    let body = body.to_string();
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(resp.as_bytes()).await
}

async fn connection(
    mut conn: TcpStream,
    shared: Arc<(tokio::sync::Mutex<Cri>, FakePod)>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    while let Some(head) = read_head(&mut conn, &mut buf).await? {
        let first = head.lines().next().unwrap_or("").to_string();
        let mut parts = first.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let pod = &shared.1;
        let pod_path = format!("/api/v1/namespaces/default/pods/{}", pod.name);
        match path {
            "/api" => {
                json(&mut conn, serde_json::json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})).await?
            }
            "/apis" => json(&mut conn, serde_json::json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})).await?,
            "/api/v1" => {
                json(&mut conn, serde_json::json!({
                    "kind": "APIResourceList", "groupVersion": "v1",
                    "resources": [
                        {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod", "verbs": ["get", "list"], "shortNames": ["po"]},
                        {"name": "pods/exec", "singularName": "", "namespaced": true, "kind": "PodExecOptions", "verbs": ["create", "get"]},
                        {"name": "pods/attach", "singularName": "", "namespaced": true, "kind": "PodAttachOptions", "verbs": ["create", "get"]},
                        {"name": "pods/portforward", "singularName": "", "namespaced": true, "kind": "PodPortForwardOptions", "verbs": ["create", "get"]}
                    ]
                })).await?
            }
            p if p == pod_path => {
                json(&mut conn, serde_json::json!({
                    "kind": "Pod", "apiVersion": "v1",
                    "metadata": {"name": pod.name, "namespace": "default", "uid": "fake-uid"},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                    "status": {"phase": "Running", "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "image": "busybox", "imageID": "", "state": {"running": {}}}]}
                })).await?
            }
            p if p == format!("{pod_path}/exec") || p == format!("{pod_path}/attach") || p == format!("{pod_path}/portforward") => {
                let flag = |k: &str| query_values(query, k).first().is_some_and(|v| v == "true" || v == "1");
                let url = {
                    let mut cri = shared.0.lock().await;
                    if p.ends_with("/exec") {
                        cri.rt.exec(cri::ExecRequest {
                            container_id: pod.container_id.clone(),
                            cmd: query_values(query, "command"),
                            tty: flag("tty"),
                            stdin: flag("stdin"),
                            stdout: flag("stdout"),
                            stderr: flag("stderr"),
                        }).await.map(|r| r.into_inner().url)
                    } else if p.ends_with("/attach") {
                        cri.rt.attach(cri::AttachRequest {
                            container_id: pod.container_id.clone(),
                            tty: flag("tty"),
                            stdin: flag("stdin"),
                            stdout: flag("stdout"),
                            stderr: flag("stderr"),
                        }).await.map(|r| r.into_inner().url)
                    } else {
                        cri.rt.port_forward(cri::PortForwardRequest {
                            pod_sandbox_id: pod.pod_id.clone(),
                            port: query_values(query, "ports").iter().filter_map(|p| p.parse().ok()).collect(),
                        }).await.map(|r| r.into_inner().url)
                    }
                };
                let url = match url {
                    Ok(u) => u,
                    Err(e) => {
                        let body = e.message().to_string();
                        let resp = format!("HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                        conn.write_all(resp.as_bytes()).await?;
                        continue;
                    }
                };
                let rest = url.strip_prefix("http://").unwrap();
                let (host, upath) = rest.split_once('/').unwrap();
                let mut upstream = TcpStream::connect(host).await?;
                // The client's request, re-aimed at crust's URL (kubelet's proxy does the same).
                let mut new_head = format!("{method} /{upath} HTTP/1.1\r\n");
                for line in head.split("\r\n").skip(1).filter(|l| !l.is_empty()) {
                    if line.to_ascii_lowercase().starts_with("host:") {
                        new_head.push_str(&format!("Host: {host}\r\n"));
                    } else {
                        new_head.push_str(line);
                        new_head.push_str("\r\n");
                    }
                }
                new_head.push_str("\r\n");
                upstream.write_all(new_head.as_bytes()).await?;
                upstream.write_all(&buf).await?;
                let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                return Ok(());
            }
            _ => {
                let body = format!("{method} {path} is not served by the fake API server");
                let resp = format!("HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                conn.write_all(resp.as_bytes()).await?;
            }
        }
    }
    Ok(())
}
