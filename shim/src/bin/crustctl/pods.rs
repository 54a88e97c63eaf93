//! pods and rmp.

use crust_proto::cri;
use crust_shim::client::CriClient;

use crate::common::{ago, resolve_pod};

pub(crate) async fn remove_pods(
    c: &mut CriClient,
    all: bool,
    names: Vec<String>,
) -> anyhow::Result<()> {
    if all != names.is_empty() {
        anyhow::bail!("rmp: name pods or pass --all, not both");
    }
    let mut ids = Vec::new();
    if all {
        ids = c
            .runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await?
            .into_inner()
            .items
            .into_iter()
            .map(|p| p.id)
            .collect();
    }
    for name in &names {
        ids.push(resolve_pod(c, name).await?);
    }
    for id in ids {
        c.remove_pod(&id).await?;
        println!("{id}");
    }
    Ok(())
}

pub(crate) async fn pods(c: &mut CriClient) -> anyhow::Result<()> {
    let mut items = c
        .runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    items.sort_by_key(|p| std::cmp::Reverse(p.created_at));
    println!(
        "{:<13} {:<24} {:<12} {:<9} {:<16} {:<16}",
        "POD ID", "NAME", "NAMESPACE", "STATE", "IP", "CREATED"
    );
    for p in items {
        let ip = c
            .runtime
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: p.id.clone(),
                verbose: false,
            })
            .await
            .ok()
            .and_then(|r| r.into_inner().status)
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .filter(|ip| !ip.is_empty())
            .unwrap_or_else(|| "-".into());
        let meta = p.metadata.unwrap_or_default();
        let state = if p.state == cri::PodSandboxState::SandboxReady as i32 {
            "Ready"
        } else {
            "NotReady"
        };
        println!(
            "{:<13} {:<24} {:<12} {:<9} {:<16} {:<16}",
            &p.id[..12.min(p.id.len())],
            meta.name,
            meta.namespace,
            state,
            ip,
            ago(p.created_at)
        );
    }
    Ok(())
}
