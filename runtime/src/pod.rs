//! Pod sandbox files: hostname, hosts, resolv.conf and the pod's /dev/shm, all kept in the pod's
//! state dir and bind-mounted into each of its containers.

use std::fs;
use std::path::Path;

use crust_proto::cri;
use nix::mount::MsFlags;

use crate::error::{Error, IoContext, Result};

pub const HOSTNAME_FILE: &str = "hostname";
pub const HOSTS_FILE: &str = "hosts";
pub const RESOLV_FILE: &str = "resolv.conf";
pub const SHM_DIR: &str = "shm";
/// Docker's and containerd's default /dev/shm size.
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// The hostname a pod gets: the CRI one (kubelet always sends one), else the pod name as
/// kubelet would make it a hostname: characters a hostname cannot hold become '-', cut to 63
/// bytes (a DNS label) without a trailing '-' or '.'. Only an explicit hostname is refused.
pub fn hostname_for(config: &cri::PodSandboxConfig, host_network: bool) -> Result<String> {
    if host_network {
        return Ok(nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default());
    }
    let valid = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.';
    if !config.hostname.is_empty() {
        let name = &config.hostname;
        if name.len() > 64 || !name.bytes().all(valid) {
            return Err(Error::InvalidArgument(format!(
                "hostname {name:?} is not a valid hostname (at most 64 of a-z, 0-9, '-', '.')"
            )));
        }
        return Ok(name.clone());
    }
    let pod_name = config.metadata.as_ref().map_or("", |m| m.name.as_str());
    let mut name: String = pod_name
        .chars()
        .map(|c| {
            if c.is_ascii() && valid(c as u8) {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    while name.ends_with(['-', '.']) {
        name.pop();
    }
    Ok(name)
}

/// Writes hostname, hosts and resolv.conf for the pod.
/// Writes hostname, hosts and resolv.conf for the pod. A host-network pod sees the host's
/// hosts file; other pods get their own, naming their IP (or 127.0.1.1 before they have one).
pub fn write_files(
    dir: &Path,
    hostname: &str,
    dns: Option<&cri::DnsConfig>,
    host_network: bool,
    pod_ip: Option<&str>,
) -> Result<()> {
    fs::write(dir.join(HOSTNAME_FILE), format!("{hostname}\n"))
        .ctx(|| "write pod hostname".into())?;
    let hosts = if host_network {
        fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n{}\t{hostname}\n",
            pod_ip.unwrap_or("127.0.1.1")
        )
    };
    // In the pod's state dir: rewritten atomically (containers may be reading it), not fsynced.
    crate::fsutil::write_atomic_unsynced(&dir.join(HOSTS_FILE), hosts.as_bytes())
        .ctx(|| "write pod hosts".into())?;
    let resolv = match dns {
        Some(d) if !(d.servers.is_empty() && d.searches.is_empty() && d.options.is_empty()) => {
            resolv_conf(d)?
        }
        _ => fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    };
    fs::write(dir.join(RESOLV_FILE), resolv).ctx(|| "write pod resolv.conf".into())?;
    Ok(())
}

fn resolv_conf(d: &cri::DnsConfig) -> Result<String> {
    let bad = |what: &str, v: &str| {
        Error::InvalidArgument(format!(
            "dns_config {what} {v:?} contains whitespace or control characters"
        ))
    };
    let clean = |v: &str| !v.is_empty() && !v.chars().any(|c| c.is_whitespace() || c.is_control());
    let mut out = String::new();
    for s in &d.servers {
        if !clean(s) {
            return Err(bad("server", s));
        }
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !d.searches.is_empty() {
        for s in &d.searches {
            if !clean(s) {
                return Err(bad("search", s));
            }
        }
        out.push_str(&format!("search {}\n", d.searches.join(" ")));
    }
    if !d.options.is_empty() {
        for s in &d.options {
            if !clean(s) {
                return Err(bad("option", s));
            }
        }
        out.push_str(&format!("options {}\n", d.options.join(" ")));
    }
    Ok(out)
}

/// IPC-namespaced sysctls a pod may set (besides `fs.mqueue.*`).
const IPC_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "kernel.shmmax",
    "kernel.shmall",
    "kernel.shmmni",
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
];

/// Checks pod sysctls: only namespaced ones, and only for namespaces the pod owns (no `net.*`
/// on the host network, no IPC ones on host IPC). Values are checked strictly: a `+`, `=`, or
/// line break could smuggle a second sysctl (CVE-2022-0811), so they are refused.
pub fn validate_sysctls(
    sysctls: &std::collections::HashMap<String, String>,
    host_network: bool,
    host_ipc: bool,
) -> Result<()> {
    for (key, value) in sysctls {
        let bad = |why: &str| Error::InvalidArgument(format!("sysctl {key:?}={value:?}: {why}"));
        if key.is_empty()
            || key.len() > 256
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
            || key.contains("..")
            || key.starts_with(['.', '/'])
        {
            return Err(bad("not a valid sysctl name"));
        }
        let key = key.replace('/', ".");
        let ipc = IPC_SYSCTLS.contains(&key.as_str()) || key.starts_with("fs.mqueue.");
        let net = key.starts_with("net.");
        if !ipc && !net {
            return Err(bad("not a namespaced sysctl a pod may set"));
        }
        if ipc && host_ipc {
            return Err(bad(
                "IPC sysctls cannot be set on a pod that uses the host's IPC namespace",
            ));
        }
        if net && host_network {
            return Err(bad(
                "net.* sysctls cannot be set on a pod that uses the host's network",
            ));
        }
        if value.is_empty()
            || value.len() > 1024
            || value.contains(['+', '=', '\n', '\r', '\0', ';'])
        {
            return Err(bad(
                "the value is empty, too long, or contains '+', '=', ';' or a line break",
            ));
        }
    }
    Ok(())
}

/// Mounts the pod's shared /dev/shm (a tmpfs, shared through the pod's IPC namespace).
pub fn mount_shm(dir: &Path, size: u64) -> Result<()> {
    let shm = dir.join(SHM_DIR);
    fs::create_dir_all(&shm).ctx(|| format!("create {}", shm.display()))?;
    if crate::fsutil::is_mount_point(&shm) {
        return Ok(());
    }
    nix::mount::mount(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOEXEC | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(format!("mode=1777,size={size}").as_str()),
    )
    .ctx(|| format!("mount tmpfs on {}", shm.display()))
}

/// Unmounts everything the pod mounted in its state dir. Missing mounts are fine.
pub fn unmount_all(dir: &Path) -> Result<()> {
    crate::fsutil::unmount_if_mounted(&dir.join(SHM_DIR)).ctx(|| "unmount pod shm".into())?;
    crate::monitor::pin::unpin_namespaces(dir).ctx(|| "unpin pod namespaces".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_config_renders_and_rejects_injection() {
        let d = cri::DnsConfig {
            servers: vec!["10.0.0.10".into()],
            searches: vec!["ns.svc.cluster.local".into(), "svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(&d).unwrap(),
            "nameserver 10.0.0.10\nsearch ns.svc.cluster.local svc.cluster.local\noptions ndots:5\n"
        );
        let evil = cri::DnsConfig {
            servers: vec!["1.1.1.1\nnameserver 6.6.6.6".into()],
            ..Default::default()
        };
        assert!(resolv_conf(&evil).is_err());
    }

    #[test]
    fn sysctls_are_namespaced_and_injection_is_refused() {
        let ok: std::collections::HashMap<String, String> = [
            ("kernel.shm_rmid_forced".to_string(), "1".to_string()),
            (
                "net.ipv4.ip_local_port_range".to_string(),
                "1024 65000".to_string(),
            ),
            ("fs.mqueue.msg_max".to_string(), "20".to_string()),
            ("kernel/sem".to_string(), "250 32000 32 128".to_string()),
        ]
        .into();
        validate_sysctls(&ok, false, false).unwrap();
        for (k, v) in [
            ("kernel.shm_rmid_forced", "1+kernel.core_pattern=|/tmp/x"),
            ("kernel.shm_rmid_forced", "1\nkernel.core_pattern=x"),
            ("kernel.core_pattern", "|/tmp/x"),
            ("vm.swappiness", "0"),
            ("net.ipv4.../../../core_pattern", "x"),
            ("", "1"),
        ] {
            let m = [(k.to_string(), v.to_string())].into();
            assert!(
                validate_sysctls(&m, false, false).is_err(),
                "{k}={v:?} accepted"
            );
        }
        let net = [("net.core.somaxconn".to_string(), "1024".to_string())].into();
        assert!(validate_sysctls(&net, true, false).is_err());
        let ipc = [("kernel.msgmax".to_string(), "8192".to_string())].into();
        assert!(validate_sysctls(&ipc, false, true).is_err());
    }

    #[test]
    fn hostname_defaults_to_pod_name_and_is_validated() {
        let mut c = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "web-0".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(hostname_for(&c, false).unwrap(), "web-0");
        c.hostname = "bad host".into();
        assert!(hostname_for(&c, false).is_err());
        // Without a hostname, a long pod name is cut to a DNS label, as kubelet cuts it.
        c.hostname.clear();
        c.metadata.as_mut().unwrap().name = format!("{}-x", "a".repeat(62));
        assert_eq!(hostname_for(&c, false).unwrap(), "a".repeat(62));
        c.metadata.as_mut().unwrap().name = "web_0:é".into();
        assert_eq!(hostname_for(&c, false).unwrap(), "web-0");
        let node = nix::unistd::gethostname().unwrap();
        assert_eq!(hostname_for(&c, true).unwrap(), node.to_string_lossy());
    }
}
