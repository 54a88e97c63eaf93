//! RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus, ListPodSandbox,
//! UpdatePodSandboxResources.

use crust_proto::cri;
use crust_runtime::store::{PodRecord, PodState};
use crust_runtime::{Engine, Error, Result};

use super::labels_match;

fn state(s: PodState) -> cri::PodSandboxState {
    match s {
        PodState::Ready => cri::PodSandboxState::SandboxReady,
        PodState::NotReady => cri::PodSandboxState::SandboxNotready,
    }
}

fn to_cri(p: &PodRecord) -> cri::PodSandbox {
    cri::PodSandbox {
        id: p.id.clone(),
        metadata: p.config.metadata.clone(),
        state: state(p.state) as i32,
        created_at: p.created_at,
        labels: p.config.labels.clone(),
        annotations: p.config.annotations.clone(),
        runtime_handler: p.runtime_handler.clone(),
    }
}

pub fn run_id(r: &cri::RunPodSandboxRequest) -> String {
    r.config
        .as_ref()
        .and_then(|c| c.metadata.as_ref())
        .map(|m| format!("{}/{}", m.namespace, m.name))
        .unwrap_or_default()
}

pub async fn run(e: &Engine, req: cri::RunPodSandboxRequest) -> Result<cri::RunPodSandboxResponse> {
    let config = req
        .config
        .ok_or_else(|| Error::InvalidArgument("config is required".into()))?;
    let pod_sandbox_id = e.run_pod(config, &req.runtime_handler).await?;
    Ok(cri::RunPodSandboxResponse { pod_sandbox_id })
}

pub fn stop_id(r: &cri::StopPodSandboxRequest) -> String {
    r.pod_sandbox_id.clone()
}

pub async fn stop(
    e: &Engine,
    req: cri::StopPodSandboxRequest,
) -> Result<cri::StopPodSandboxResponse> {
    e.stop_pod(&req.pod_sandbox_id).await?;
    Ok(cri::StopPodSandboxResponse {})
}

pub fn remove_id(r: &cri::RemovePodSandboxRequest) -> String {
    r.pod_sandbox_id.clone()
}

pub async fn remove(
    e: &Engine,
    req: cri::RemovePodSandboxRequest,
) -> Result<cri::RemovePodSandboxResponse> {
    e.remove_pod(&req.pod_sandbox_id).await?;
    Ok(cri::RemovePodSandboxResponse {})
}

pub fn status_id(r: &cri::PodSandboxStatusRequest) -> String {
    r.pod_sandbox_id.clone()
}

pub async fn status(
    e: &Engine,
    req: cri::PodSandboxStatusRequest,
) -> Result<cri::PodSandboxStatusResponse> {
    let p = e.pod(&req.pod_sandbox_id).await?;
    status_of(e, p, req.verbose).await
}

/// The full status response for a pod record (also sent with events).
pub async fn status_of(
    e: &Engine,
    p: PodRecord,
    verbose: bool,
) -> Result<cri::PodSandboxStatusResponse> {
    let netns = e.netns_path(&p.id).display().to_string();
    let linux_ns = p
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone());
    let mut info = std::collections::HashMap::new();
    if verbose {
        // CNI CHECK: whether the pod's network is still as ADD left it.
        let network_check = match e.check_network(&p.id).await {
            Ok(Some(net)) => format!("ok ({net})"),
            Ok(None) => "no CNI network".to_string(),
            Err(err) => format!("failed: {err}"),
        };
        info.insert(
            "info".into(),
            serde_json::json!({
                "network_check": network_check,
                "netns": netns,
                "cgroup": p.cgroup_path,
                "monitor_pid": p.monitor_pid,
                "hostname": p.hostname,
                "config": p.config,
            })
            .to_string(),
        );
    }
    let containers_statuses = e
        .select_containers(|c| (c.pod_id == p.id).then(|| super::containers::to_cri_status(c)))
        .await;
    Ok(cri::PodSandboxStatusResponse {
        status: Some(cri::PodSandboxStatus {
            id: p.id.clone(),
            metadata: p.config.metadata.clone(),
            state: state(p.state) as i32,
            created_at: p.created_at,
            network: Some(cri::PodSandboxNetworkStatus {
                ip: p
                    .network
                    .as_ref()
                    .and_then(|n| n.ips.first().cloned())
                    .unwrap_or_default(),
                additional_ips: p
                    .network
                    .as_ref()
                    .map(|n| {
                        n.ips
                            .iter()
                            .skip(1)
                            .map(|ip| cri::PodIp { ip: ip.clone() })
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            linux: Some(cri::LinuxPodSandboxStatus {
                namespaces: Some(cri::Namespace { options: linux_ns }),
            }),
            labels: p.config.labels.clone(),
            annotations: p.config.annotations.clone(),
            runtime_handler: p.runtime_handler.clone(),
        }),
        info,
        containers_statuses,
        timestamp: crust_runtime::now_nanos(),
    })
}

pub fn update_resources_id(r: &cri::UpdatePodSandboxResourcesRequest) -> String {
    r.pod_sandbox_id.clone()
}

/// kubelet calls it after resizing a pod's cgroup, best-effort: the pod's record keeps the new
/// resources (and the pod cgroup follows them where crust made it).
pub async fn update_resources(
    e: &Engine,
    req: cri::UpdatePodSandboxResourcesRequest,
) -> Result<cri::UpdatePodSandboxResourcesResponse> {
    e.update_pod_resources(&req.pod_sandbox_id, req.overhead, req.resources)
        .await
        .map(|()| cri::UpdatePodSandboxResourcesResponse {})
}

pub fn list_id(_: &cri::ListPodSandboxRequest) -> String {
    String::new()
}

pub async fn list(
    e: &Engine,
    req: cri::ListPodSandboxRequest,
) -> Result<cri::ListPodSandboxResponse> {
    let f = req.filter.unwrap_or_default();
    let items: Vec<cri::PodSandbox> = e
        .list_pods()
        .await
        .iter()
        .filter(|p| f.id.is_empty() || p.id.starts_with(&f.id))
        .filter(|p| {
            f.state
                .as_ref()
                .is_none_or(|s| s.state == state(p.state) as i32)
        })
        .filter(|p| labels_match(&f.label_selector, &p.config.labels))
        .map(to_cri)
        .collect();
    Ok(cri::ListPodSandboxResponse { items })
}
