//! Version, Status, RuntimeConfig, UpdateRuntimeConfig.

use crust_proto::cri;
use crust_runtime::{Engine, Result};

pub fn version_id(_: &cri::VersionRequest) -> String {
    String::new()
}

pub async fn version(_e: &Engine, _req: cri::VersionRequest) -> Result<cri::VersionResponse> {
    Ok(cri::VersionResponse {
        version: "0.1.0".into(),
        runtime_name: "crust".into(),
        runtime_version: env!("CARGO_PKG_VERSION").into(),
        runtime_api_version: "v1".into(),
    })
}

pub fn status_id(_: &cri::StatusRequest) -> String {
    String::new()
}

pub async fn status(e: &Engine, req: cri::StatusRequest) -> Result<cri::StatusResponse> {
    let conditions = vec![
        cri::RuntimeCondition {
            r#type: "RuntimeReady".into(),
            status: true,
            reason: String::new(),
            message: String::new(),
        },
        match e.network_status() {
            Ok(_) => cri::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
            Err(why) => cri::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: "NetworkPluginNotReady".into(),
                message: why,
            },
        },
    ];
    let mut info = std::collections::HashMap::new();
    if req.verbose {
        info.insert(
            "config".into(),
            serde_json::json!({
                "root": e.config().root,
                "state": e.config().state,
                "cgroup_root": e.config().cgroup_root,
                "cgroup_version": e.hierarchy.version(),
                "pod_cidr": e.pod_cidr(),
                "network": e.network_status().ok(),
            })
            .to_string(),
        );
    }
    Ok(cri::StatusResponse {
        status: Some(cri::RuntimeStatus { conditions }),
        info,
        runtime_handlers: std::iter::once(String::new())
            .chain(e.config().runtime_handlers.iter().cloned())
            .map(|name| cri::RuntimeHandler {
                name,
                // No idmapped mounts in libcontainer yet, so no user namespaces; recursive
                // read-only mounts need mount_setattr (Linux 5.12).
                features: Some(cri::RuntimeHandlerFeatures {
                    recursive_read_only_mounts:
                        crust_runtime::container::mounts::recursive_read_only_supported(),
                    user_namespaces: false,
                }),
            })
            .collect(),
        features: Some(cri::RuntimeFeatures {
            supplemental_groups_policy: true,
            user_namespaces_host_network: false,
            mount_options: true,
        }),
    })
}

pub fn runtime_config_id(_: &cri::RuntimeConfigRequest) -> String {
    String::new()
}

pub async fn runtime_config(
    e: &Engine,
    _req: cri::RuntimeConfigRequest,
) -> Result<cri::RuntimeConfigResponse> {
    let driver = match e.config().cgroup_driver {
        crust_runtime::cgroups::Driver::Cgroupfs => cri::CgroupDriver::Cgroupfs,
        crust_runtime::cgroups::Driver::Systemd => cri::CgroupDriver::Systemd,
    };
    Ok(cri::RuntimeConfigResponse {
        linux: Some(cri::LinuxRuntimeConfiguration {
            cgroup_driver: driver as i32,
        }),
    })
}

pub fn update_runtime_config_id(_: &cri::UpdateRuntimeConfigRequest) -> String {
    String::new()
}

pub async fn update_runtime_config(
    e: &Engine,
    req: cri::UpdateRuntimeConfigRequest,
) -> Result<cri::UpdateRuntimeConfigResponse> {
    // Only the pod CIDR travels here today.
    if let Some(net) = req.runtime_config.and_then(|c| c.network_config) {
        e.set_pod_cidr(&net.pod_cidr)?;
        tracing::info!(pod_cidr = %net.pod_cidr, "runtime config updated");
    }
    Ok(cri::UpdateRuntimeConfigResponse {})
}
