//! The executor of exec'd processes (ExecSync and streaming exec). libcontainer 0.7's tenant
//! builder rebuilds an exec's `linux` section from the namespaces and cgroup alone, so the
//! container's seccomp filter is dropped: `crictl exec` / `kubectl exec` would run
//! unconfined inside a confined container (critest's seccomp specs check it through exec).
//! This executor loads the container's own filter as the last step before execve, after
//! libcontainer has joined the namespaces, set the user and dropped capabilities.
//!
//! Loading a filter without CAP_SYS_ADMIN needs no_new_privs. runc loads it before dropping
//! capabilities instead; that point is not reachable from outside libcontainer, so when the
//! process may not load it as it is, no_new_privs is set first (the container's process
//! would have needed it too: a setuid program cannot gain privileges in an exec that runs
//! under the container's seccomp profile).

use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use oci_spec::runtime::{LinuxSeccomp, Spec};

/// A container's bundle spec (its config.json), or Null if it cannot be read.
pub fn bundle_spec(bundle: &std::path::Path) -> serde_json::Value {
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

#[derive(Clone, Default)]
pub struct ExecExecutor {
    seccomp: Option<LinuxSeccomp>,
}

impl ExecExecutor {
    /// The executor for a container whose bundle spec (config.json, as JSON) is `spec`.
    pub fn for_container(spec: &serde_json::Value) -> Result<Self, String> {
        let seccomp = match spec.pointer("/linux/seccomp") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(
                serde_json::from_value::<LinuxSeccomp>(v.clone())
                    .map_err(|e| format!("the container's seccomp profile: {e}"))?,
            ),
        };
        Ok(ExecExecutor { seccomp })
    }

    pub fn has_seccomp(&self) -> bool {
        self.seccomp.is_some()
    }
}

impl Executor for ExecExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        if let Some(seccomp) = &self.seccomp {
            let loaded = libcontainer::seccomp::initialize_seccomp(seccomp).or_else(|_| {
                // Without CAP_SYS_ADMIN the kernel wants no_new_privs first.
                nix::sys::prctl::set_no_new_privs()
                    .map_err(|e| ExecutorError::Other(format!("set no_new_privs: {e}")))?;
                libcontainer::seccomp::initialize_seccomp(seccomp)
                    .map_err(|e| ExecutorError::Other(format!("load the seccomp filter: {e}")))
            })?;
            // A notify fd would need a listener; crust's profiles have no notify action.
            if let Some(fd) = loaded {
                let _ = nix::unistd::close(fd);
            }
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_comes_from_the_container_spec() {
        let none = ExecExecutor::for_container(&serde_json::json!({"linux": {}})).unwrap();
        assert!(!none.has_seccomp());
        let spec = serde_json::json!({"linux": {"seccomp": {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"}]
        }}});
        assert!(ExecExecutor::for_container(&spec).unwrap().has_seccomp());
        let bad = serde_json::json!({"linux": {"seccomp": {"defaultAction": 7}}});
        assert!(ExecExecutor::for_container(&bad).is_err());
    }
}
