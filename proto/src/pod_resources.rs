//! CRI messages newer than the `k8s-cri` bindings (Kubernetes 1.32), declared from the
//! published cri-api interface: same package, field names, numbers and types, so they are
//! wire-compatible with what kubelet 1.33+ sends.

/// `runtime.v1.UpdatePodSandboxResourcesRequest` (kubelet calls it after resizing a pod).
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdatePodSandboxResourcesRequest {
    /// ID of the PodSandbox to update.
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
    /// Optional overhead associated with this sandbox.
    #[prost(message, optional, tag = "2")]
    pub overhead: Option<crate::cri::LinuxContainerResources>,
    /// Optional sum of container resources for this sandbox.
    #[prost(message, optional, tag = "3")]
    pub resources: Option<crate::cri::LinuxContainerResources>,
    /// Unstructured extra information.
    #[prost(map = "string, string", tag = "4")]
    pub annotations: std::collections::HashMap<String, String>,
}

/// `runtime.v1.UpdatePodSandboxResourcesResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdatePodSandboxResourcesResponse {}

/// The gRPC method path kubelet calls.
pub const UPDATE_POD_SANDBOX_RESOURCES_PATH: &str =
    "/runtime.v1.RuntimeService/UpdatePodSandboxResources";

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn encodes_with_the_published_field_numbers() {
        let m = UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: "p".into(),
            resources: Some(crate::cri::LinuxContainerResources {
                memory_limit_in_bytes: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        let bytes = m.encode_to_vec();
        // field 1, wire type 2 (length-delimited) = 0x0a; field 3, wire type 2 = 0x1a.
        assert_eq!(&bytes[..3], &[0x0a, 0x01, b'p']);
        assert_eq!(bytes[3], 0x1a);
        assert_eq!(
            UpdatePodSandboxResourcesRequest::decode(bytes.as_slice()).unwrap(),
            m
        );
    }
}
