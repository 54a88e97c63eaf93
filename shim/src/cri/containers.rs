//! CreateContainer, StartContainer, StopContainer, RemoveContainer, ContainerStatus,
//! ListContainers.

use crust_proto::cri;
use crust_runtime::store::{ContainerRecord, ContainerState};
use crust_runtime::{Engine, Result};

use super::labels_match;

fn state(s: ContainerState) -> cri::ContainerState {
    match s {
        ContainerState::Created => cri::ContainerState::ContainerCreated,
        ContainerState::Running => cri::ContainerState::ContainerRunning,
        ContainerState::Exited => cri::ContainerState::ContainerExited,
        ContainerState::Unknown => cri::ContainerState::ContainerUnknown,
    }
}

fn image_spec(c: &ContainerRecord) -> cri::ImageSpec {
    cri::ImageSpec {
        image: c.image_name.clone(),
        annotations: c
            .config
            .image
            .as_ref()
            .map(|i| i.annotations.clone())
            .unwrap_or_default(),
        ..Default::default()
    }
}

fn to_cri(c: &ContainerRecord) -> cri::Container {
    cri::Container {
        id: c.id.clone(),
        pod_sandbox_id: c.pod_id.clone(),
        metadata: c.config.metadata.clone(),
        image: Some(image_spec(c)),
        image_ref: c.image_id.clone(),
        state: state(c.state) as i32,
        created_at: c.created_at,
        labels: c.config.labels.clone(),
        annotations: c.config.annotations.clone(),
        image_id: c.image_id.clone(),
    }
}

pub fn create_id(r: &cri::CreateContainerRequest) -> String {
    let name = r
        .config
        .as_ref()
        .and_then(|c| c.metadata.as_ref())
        .map(|m| m.name.as_str())
        .unwrap_or("");
    format!("{}/{name}", r.pod_sandbox_id)
}

pub async fn create(
    e: &Engine,
    req: cri::CreateContainerRequest,
) -> Result<cri::CreateContainerResponse> {
    let config = req
        .config
        .ok_or_else(|| crust_runtime::Error::InvalidArgument("config is required".into()))?;
    let container_id = e
        .create_container(&req.pod_sandbox_id, config, req.sandbox_config.as_ref())
        .await?;
    Ok(cri::CreateContainerResponse { container_id })
}

pub fn start_id(r: &cri::StartContainerRequest) -> String {
    r.container_id.clone()
}

pub async fn start(
    e: &Engine,
    req: cri::StartContainerRequest,
) -> Result<cri::StartContainerResponse> {
    e.start_container(&req.container_id).await?;
    Ok(cri::StartContainerResponse {})
}

pub fn stop_id(r: &cri::StopContainerRequest) -> String {
    r.container_id.clone()
}

pub async fn stop(
    e: &Engine,
    req: cri::StopContainerRequest,
) -> Result<cri::StopContainerResponse> {
    e.stop_container(&req.container_id, req.timeout).await?;
    Ok(cri::StopContainerResponse {})
}

pub fn remove_id(r: &cri::RemoveContainerRequest) -> String {
    r.container_id.clone()
}

pub async fn remove(
    e: &Engine,
    req: cri::RemoveContainerRequest,
) -> Result<cri::RemoveContainerResponse> {
    e.remove_container(&req.container_id).await?;
    Ok(cri::RemoveContainerResponse {})
}

pub fn status_id(r: &cri::ContainerStatusRequest) -> String {
    r.container_id.clone()
}

/// The CRI status of a container record (also used for pod status and events).
pub fn to_cri_status(c: &ContainerRecord) -> cri::ContainerStatus {
    let mounts = c
        .config
        .mounts
        .iter()
        .map(|m| cri::Mount {
            container_path: m.container_path.clone(),
            host_path: m.host_path.clone(),
            readonly: m.readonly,
            propagation: m.propagation,
            recursive_read_only: m.recursive_read_only,
            image: m.image.clone(),
            image_sub_path: m.image_sub_path.clone(),
            mount_options: m.mount_options.clone(),
            ..Default::default()
        })
        .collect();
    cri::ContainerStatus {
        id: c.id.clone(),
        stop_signal: crust_runtime::engine::signals::to_cri(c.stop_signal) as i32,
        metadata: c.config.metadata.clone(),
        state: state(c.state) as i32,
        created_at: c.created_at,
        started_at: c.started_at,
        finished_at: c.finished_at,
        exit_code: c.exit_code,
        image: Some(image_spec(c)),
        image_ref: c.image_id.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        labels: c.config.labels.clone(),
        annotations: c.config.annotations.clone(),
        mounts,
        log_path: c.log_path.clone(),
        resources: c
            .config
            .linux
            .as_ref()
            .and_then(|l| l.resources.clone())
            .map(|r| cri::ContainerResources {
                linux: Some(r),
                windows: None,
            }),
        image_id: c.image_id.clone(),
        user: c.user.as_ref().map(|u| cri::ContainerUser {
            linux: Some(cri::LinuxContainerUser {
                uid: u.uid.into(),
                gid: u.gid.into(),
                supplemental_groups: std::iter::once(u.gid)
                    .chain(u.groups.iter().copied().filter(|g| *g != u.gid))
                    .map(i64::from)
                    .collect(),
            }),
        }),
    }
}

pub async fn status(
    e: &Engine,
    req: cri::ContainerStatusRequest,
) -> Result<cri::ContainerStatusResponse> {
    let c = e.container(&req.container_id).await?;
    let mut info = std::collections::HashMap::new();
    if req.verbose {
        info.insert(
            "info".into(),
            serde_json::json!({
                "pid": c.pid,
                "pod_id": c.pod_id,
                "config": c.config,
                "stop_signal": c.stop_signal,
            })
            .to_string(),
        );
    }
    Ok(cri::ContainerStatusResponse {
        status: Some(to_cri_status(&c)),
        info,
    })
}

pub fn list_id(_: &cri::ListContainersRequest) -> String {
    String::new()
}

pub async fn list(
    e: &Engine,
    req: cri::ListContainersRequest,
) -> Result<cri::ListContainersResponse> {
    let f = req.filter.unwrap_or_default();
    let containers = e
        .select_containers(|c| {
            let keep = (f.id.is_empty() || c.id.starts_with(&f.id))
                && (f.pod_sandbox_id.is_empty() || c.pod_id.starts_with(&f.pod_sandbox_id))
                && f.state
                    .as_ref()
                    .is_none_or(|s| s.state == state(c.state) as i32)
                && labels_match(&f.label_selector, &c.config.labels);
            keep.then(|| to_cri(c))
        })
        .await;
    Ok(cri::ListContainersResponse { containers })
}

pub fn exec_sync_id(r: &cri::ExecSyncRequest) -> String {
    r.container_id.clone()
}

pub async fn exec_sync(e: &Engine, req: cri::ExecSyncRequest) -> Result<cri::ExecSyncResponse> {
    let out = e.exec_sync(&req.container_id, req.cmd, req.timeout).await?;
    Ok(cri::ExecSyncResponse {
        stdout: out.stdout,
        stderr: out.stderr,
        exit_code: out.exit_code,
    })
}

pub fn reopen_log_id(r: &cri::ReopenContainerLogRequest) -> String {
    r.container_id.clone()
}

pub async fn reopen_log(
    e: &Engine,
    req: cri::ReopenContainerLogRequest,
) -> Result<cri::ReopenContainerLogResponse> {
    e.reopen_log(&req.container_id).await?;
    Ok(cri::ReopenContainerLogResponse {})
}

pub fn update_resources_id(r: &cri::UpdateContainerResourcesRequest) -> String {
    r.container_id.clone()
}

pub async fn update_resources(
    e: &Engine,
    req: cri::UpdateContainerResourcesRequest,
) -> Result<cri::UpdateContainerResourcesResponse> {
    let linux = req.linux.ok_or_else(|| {
        crust_runtime::Error::InvalidArgument("linux resources are required".into())
    })?;
    e.update_container_resources(&req.container_id, linux)
        .await?;
    Ok(cri::UpdateContainerResourcesResponse {})
}
