//! Helpers every verb uses: finding containers and pods by id, prefix or name, and formatting.

use anyhow::{anyhow, bail};
use crust_proto::cri;
use crust_shim::client::CriClient;
use std::time::{Duration, SystemTime};

pub(crate) const RUN_LABEL: &str = "io.crust.run";

pub(crate) fn spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}

/// A pod id from an id, an id prefix or a pod name.
pub(crate) async fn resolve_pod(c: &mut CriClient, name: &str) -> anyhow::Result<String> {
    let items = c
        .runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    let hits: Vec<&cri::PodSandbox> = items
        .iter()
        .filter(|p| p.id.starts_with(name) || p.metadata.as_ref().is_some_and(|m| m.name == name))
        .collect();
    match hits.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => bail!("no pod named {name}"),
        _ => bail!("{name} matches several pods; use a longer id"),
    }
}

/// Pod options as kubelet sends them for a pod without a shared process namespace.
pub(crate) fn with_own_pids(mut linux: cri::LinuxPodSandboxConfig) -> cri::LinuxPodSandboxConfig {
    let sc = linux.security_context.get_or_insert_with(Default::default);
    sc.namespace_options
        .get_or_insert_with(Default::default)
        .pid = cri::NamespaceMode::Container as i32;
    linux
}

pub(crate) async fn status(c: &mut CriClient, id: &str) -> anyhow::Result<cri::ContainerStatus> {
    c.runtime
        .container_status(cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .ok_or_else(|| anyhow!("container {id} has no status"))
}

pub(crate) async fn list_all(c: &mut CriClient) -> anyhow::Result<Vec<cri::Container>> {
    Ok(c.runtime
        .list_containers(cri::ListContainersRequest { filter: None })
        .await?
        .into_inner()
        .containers)
}

/// A container by id, id prefix or name.
pub(crate) async fn resolve(c: &mut CriClient, name: &str) -> anyhow::Result<String> {
    let all = list_all(c).await?;
    if let Some(x) = all.iter().find(|x| x.id == name) {
        return Ok(x.id.clone());
    }
    let by_name: Vec<_> = all
        .iter()
        .filter(|x| x.metadata.as_ref().is_some_and(|m| m.name == name))
        .collect();
    if by_name.len() == 1 {
        return Ok(by_name[0].id.clone());
    }
    let by_prefix: Vec<_> = all.iter().filter(|x| x.id.starts_with(name)).collect();
    match by_prefix.len() {
        1 => Ok(by_prefix[0].id.clone()),
        0 if by_name.is_empty() => bail!("no such container: {name}"),
        _ => bail!("{name} matches more than one container; use a longer id"),
    }
}

pub(crate) fn ago(ns: i64) -> String {
    let then = SystemTime::UNIX_EPOCH + Duration::from_nanos(ns.max(0) as u64);
    let secs = SystemTime::now()
        .duration_since(then)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match secs {
        0..=59 => format!("{secs} seconds ago"),
        60..=3599 => format!("{} minutes ago", secs / 60),
        3600..=86399 => format!("{} hours ago", secs / 3600),
        _ => format!("{} days ago", secs / 86400),
    }
}

pub(crate) fn human_size(b: u64) -> String {
    let (v, u) = if b >= 1 << 30 {
        (b as f64 / (1u64 << 30) as f64, "GB")
    } else if b >= 1 << 20 {
        (b as f64 / (1u64 << 20) as f64, "MB")
    } else if b >= 1 << 10 {
        (b as f64 / 1024.0, "kB")
    } else {
        (b as f64, "B")
    };
    format!("{v:.1}{u}")
}

/// A failure with Docker's exit code for it (125: the daemon or a flag failed, 126: the
/// command cannot run, 127: it was not found), printed as one line.
#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
pub(crate) struct ExitError {
    pub(crate) code: i32,
    pub(crate) msg: String,
}

impl ExitError {
    pub(crate) fn new(code: i32, msg: impl Into<String>) -> Self {
        ExitError {
            code,
            msg: msg.into(),
        }
    }
}

/// A container's name as Docker shows it (the CRI metadata name).
pub(crate) fn docker_name(x: &cri::Container) -> String {
    x.metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default()
}
