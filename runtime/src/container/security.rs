//! The container's security context: capabilities, seccomp, AppArmor, masked and read-only
//! paths, with the semantics containerd gives the CRI fields.

use std::path::{Path, PathBuf};

use crust_proto::cri;
use serde_json::{Value, json};

use super::seccomp_default;
use super::spec::{DEFAULT_CAPABILITIES, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS};
use crate::error::{Error, Result};

/// Every Linux capability, in kernel number order (index = capability number).
pub const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capabilities crust itself holds (its permitted set), as containerd's "all": a
/// container cannot be given one its runtime lacks (root on some hosts has no
/// CAP_SYS_RESOURCE), and the kernel may know fewer than this list.
pub fn host_capabilities() -> Vec<String> {
    let permitted = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapPrm:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| permitted & (1 << bit) != 0)
        .map(|(_, s)| s.to_string())
        .collect()
}

/// The OCI capability sets of the container's process.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CapabilitySets {
    pub bounding: Vec<String>,
    pub ambient: Vec<String>,
}

impl CapabilitySets {
    pub fn to_oci(&self) -> Value {
        // Inheritable holds only the ambient set (the kernel requires it there); a wider
        // inheritable set would let file capabilities of a non-root exec gain privileges
        // (CVE-2022-24769).
        json!({
            "bounding": self.bounding,
            "effective": self.bounding,
            "permitted": self.bounding,
            "inheritable": self.ambient,
            "ambient": self.ambient,
        })
    }
}

/// `NET_ADMIN`, `cap_net_admin` and `CAP_NET_ADMIN` all name CAP_NET_ADMIN; `ALL` stays `ALL`.
fn normalize_capability(name: &str, field: &str) -> Result<String> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if ALL_CAPABILITIES.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(Error::InvalidArgument(format!(
            "unknown capability {name:?} in security_context.capabilities.{field}"
        )))
    }
}

fn normalize_all(names: &[String], field: &str) -> Result<Vec<String>> {
    names
        .iter()
        .map(|n| normalize_capability(n, field))
        .collect()
}

/// containerd's rules: start from the default set (or every capability when privileged);
/// `ALL` in add grants every capability, `ALL` in drop clears the set before named adds; named
/// drops win over named adds. Ambient capabilities are added to every set.
pub fn capabilities(
    sc: Option<&cri::LinuxContainerSecurityContext>,
    privileged: bool,
) -> Result<CapabilitySets> {
    let host = host_capabilities();
    let on_host = |c: &String| host.contains(c);
    let mut set: Vec<String> = if privileged {
        host.clone()
    } else {
        DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect()
    };
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    let Some(caps) = caps else {
        return Ok(CapabilitySets {
            bounding: set,
            ambient: Vec::new(),
        });
    };
    let add = normalize_all(&caps.add_capabilities, "add_capabilities")?;
    let drop = normalize_all(&caps.drop_capabilities, "drop_capabilities")?;
    let ambient = normalize_all(&caps.add_ambient_capabilities, "add_ambient_capabilities")?;
    if ambient.iter().any(|c| c == "ALL") {
        return Err(Error::InvalidArgument(
            "security_context.capabilities.add_ambient_capabilities may not contain ALL".into(),
        ));
    }
    if !privileged {
        if add.iter().any(|c| c == "ALL") {
            set = host.clone();
        }
        if drop.iter().any(|c| c == "ALL") {
            set.clear();
        }
        for c in add.iter().chain(ambient.iter()).filter(|c| *c != "ALL") {
            if !set.contains(c) && on_host(c) {
                set.push(c.clone());
            }
        }
        set.retain(|c| !drop.contains(c) || ambient.contains(c));
    }
    let ambient: Vec<String> = ambient.into_iter().filter(|c| set.contains(c)).collect();
    Ok(CapabilitySets {
        bounding: set,
        ambient,
    })
}

/// Which seccomp profile a container runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompChoice {
    Unconfined,
    RuntimeDefault,
    /// An OCI or Docker seccomp JSON file on the host.
    Localhost(PathBuf),
}

/// Parses the deprecated string form (`runtime/default`, `docker/default`, `unconfined`,
/// `localhost/<absolute path>`); `field` names it in errors.
pub fn parse_seccomp_string(s: &str, field: &str) -> Result<SeccompChoice> {
    match s {
        "unconfined" => Ok(SeccompChoice::Unconfined),
        "runtime/default" | "docker/default" => Ok(SeccompChoice::RuntimeDefault),
        _ => match s.strip_prefix("localhost/") {
            Some(path) => localhost_path(path, field).map(SeccompChoice::Localhost),
            None => Err(Error::InvalidArgument(format!(
                "{field} {s:?} is not unconfined, runtime/default, docker/default or localhost/<absolute path>"
            ))),
        },
    }
}

fn localhost_path(path: &str, field: &str) -> Result<PathBuf> {
    if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return Err(Error::InvalidArgument(format!(
            "{field}: seccomp profile path {path:?} must be absolute without '..'"
        )));
    }
    Ok(PathBuf::from(path))
}

/// The profile the CRI request asks for: the `seccomp` message wins over the deprecated
/// `seccomp_profile_path`; with neither, `default` (crust's `seccomp_default` setting).
pub fn seccomp_choice(
    profile: Option<&cri::SecurityProfile>,
    deprecated: &str,
    default: &SeccompChoice,
) -> Result<SeccompChoice> {
    if let Some(p) = profile {
        return match cri::security_profile::ProfileType::try_from(p.profile_type) {
            Ok(cri::security_profile::ProfileType::RuntimeDefault) => {
                Ok(SeccompChoice::RuntimeDefault)
            }
            Ok(cri::security_profile::ProfileType::Unconfined) => Ok(SeccompChoice::Unconfined),
            Ok(cri::security_profile::ProfileType::Localhost) => {
                localhost_path(&p.localhost_ref, "security_context.seccomp.localhost_ref")
                    .map(SeccompChoice::Localhost)
            }
            Err(_) => Err(Error::InvalidArgument(format!(
                "security_context.seccomp.profile_type {} is not a profile type",
                p.profile_type
            ))),
        };
    }
    if deprecated.is_empty() {
        return Ok(default.clone());
    }
    parse_seccomp_string(deprecated, "security_context.seccomp_profile_path")
}

/// The OCI `linux.seccomp` object for `choice`, or None for unconfined. Docker-format files
/// (`archMap`, `includes`/`excludes` by capability) are accepted and evaluated against the
/// container's capabilities.
pub fn seccomp_profile(choice: &SeccompChoice, capabilities: &[String]) -> Result<Option<Value>> {
    let profile = match choice {
        SeccompChoice::Unconfined => return Ok(None),
        SeccompChoice::RuntimeDefault => seccomp_default::profile(capabilities),
        SeccompChoice::Localhost(path) => {
            let bytes = std::fs::read(path).map_err(|e| {
                Error::InvalidArgument(format!(
                    "seccomp profile {} cannot be read: {e}",
                    path.display()
                ))
            })?;
            let raw: Value = serde_json::from_slice(&bytes).map_err(|e| {
                Error::InvalidArgument(format!(
                    "seccomp profile {} is not JSON: {e}",
                    path.display()
                ))
            })?;
            from_file_profile(&raw, capabilities).map_err(|e| {
                Error::InvalidArgument(format!("seccomp profile {}: {e}", path.display()))
            })?
        }
    };
    Ok(Some(libcontainer_seccomp(profile)))
}

fn caps_condition_holds(cond: &Value, capabilities: &[String], include: bool) -> bool {
    let Some(caps) = cond.get("caps").and_then(Value::as_array) else {
        return true;
    };
    let held = |c: &Value| {
        c.as_str()
            .is_some_and(|c| capabilities.iter().any(|x| x == c))
    };
    if include {
        caps.iter().all(held)
    } else {
        !caps.iter().any(held)
    }
}

/// An OCI or Docker profile file as the OCI object (runc's operand order).
fn from_file_profile(raw: &Value, capabilities: &[String]) -> std::result::Result<Value, String> {
    let default_action = raw
        .get("defaultAction")
        .and_then(Value::as_str)
        .ok_or("defaultAction is missing")?;
    let mut out = json!({"defaultAction": default_action});
    if let Some(e) = raw.get("defaultErrnoRet") {
        out["defaultErrnoRet"] = e.clone();
    }
    let mut arches: Vec<Value> = raw
        .get("architectures")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for m in raw
        .get("archMap")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        arches.extend(m.get("architecture").cloned());
        arches.extend(
            m.get("subArchitectures")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        );
    }
    if !arches.is_empty() {
        out["architectures"] = Value::Array(arches);
    }
    if let Some(f) = raw.get("flags") {
        out["flags"] = f.clone();
    }
    let mut rules = Vec::new();
    for rule in raw
        .get("syscalls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if !caps_condition_holds(
            rule.get("includes").unwrap_or(&Value::Null),
            capabilities,
            true,
        ) || !caps_condition_holds(
            rule.get("excludes").unwrap_or(&Value::Null),
            capabilities,
            false,
        ) {
            continue;
        }
        let names = match (rule.get("names"), rule.get("name")) {
            (Some(n), _) => n.clone(),
            (None, Some(n)) => json!([n]),
            (None, None) => return Err("a syscall rule has no names".into()),
        };
        let action = rule
            .get("action")
            .cloned()
            .ok_or("a syscall rule has no action")?;
        let mut r = json!({"names": names, "action": action});
        for key in ["errnoRet", "args"] {
            if let Some(v) = rule.get(key).filter(|v| !v.is_null()) {
                r[key] = v.clone();
            }
        }
        rules.push(r);
    }
    out["syscalls"] = Value::Array(rules);
    // Validate every name and enum now, so a bad file fails CreateContainer with its own
    // message rather than inside the monitor.
    serde_json::from_value::<libcontainer::oci_spec::runtime::LinuxSeccomp>(out.clone())
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// libcontainer reads SCMP_CMP_MASKED_EQ as `(arg & valueTwo) == value`, the other way round
/// from runc (and every profile written for Docker): swap the operands in one place.
pub fn libcontainer_seccomp(mut profile: Value) -> Value {
    if let Some(rules) = profile.get_mut("syscalls").and_then(Value::as_array_mut) {
        for arg in rules
            .iter_mut()
            .filter_map(|r| r.get_mut("args").and_then(Value::as_array_mut))
            .flatten()
        {
            if arg["op"] == "SCMP_CMP_MASKED_EQ" {
                let mask = arg.get("value").cloned().unwrap_or(json!(0));
                let datum = arg.get("valueTwo").cloned().unwrap_or(json!(0));
                arg["value"] = datum;
                arg["valueTwo"] = mask;
            }
        }
    }
    profile
}

/// Whether the host enforces AppArmor.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

/// crust's default AppArmor profile name (loaded by `apparmor_parser` when first needed).
pub const APPARMOR_DEFAULT_PROFILE: &str = "crust-default";

const APPARMOR_DEFAULT_TEXT: &str = r#"#include <tunables/global>
profile crust-default flags=(attach_disconnected,mediate_deleted) {
  #include <abstractions/base>
  network,
  capability,
  file,
  umount,
  signal (receive) peer=unconfined,
  signal (send,receive) peer=crust-default,
  deny @{PROC}/* w,
  deny @{PROC}/{[^1-9],[^1-9][^0-9],[^1-9s][^0-9y][^0-9s],[^1-9][^0-9][^0-9][^0-9]*}/** w,
  deny @{PROC}/sys/[^k]** w,
  deny @{PROC}/sys/kernel/{?,??,[^s][^h][^m]**} w,
  deny @{PROC}/sysrq-trigger rwklx,
  deny @{PROC}/kcore rwklx,
  deny mount,
  deny /sys/[^f]*/** wklx,
  deny /sys/f[^s]*/** wklx,
  deny /sys/fs/[^c]*/** wklx,
  deny /sys/fs/c[^g]*/** wklx,
  deny /sys/fs/cg[^r]*/** wklx,
  deny /sys/firmware/** rwklx,
  deny /sys/kernel/security/** rwklx,
  ptrace (trace,read,tracedby,readby) peer=crust-default,
}
"#;

/// The AppArmor profile to apply: None when unconfined. A host without AppArmor runs every
/// container unconfined, but refuses a request for a named profile it cannot enforce.
pub fn apparmor_profile(
    profile: Option<&cri::SecurityProfile>,
    deprecated: &str,
    privileged: bool,
    host_enabled: bool,
) -> Result<Option<String>> {
    use cri::security_profile::ProfileType;
    // Nothing named: the default applies where it can be, as containerd does it.
    let implicit = profile.is_none() && deprecated.is_empty();
    let requested: Option<String> = match profile {
        Some(p) => match ProfileType::try_from(p.profile_type) {
            Ok(ProfileType::RuntimeDefault) => Some(APPARMOR_DEFAULT_PROFILE.into()),
            Ok(ProfileType::Unconfined) => None,
            Ok(ProfileType::Localhost) if !p.localhost_ref.is_empty() => Some(
                p.localhost_ref
                    .strip_prefix("localhost/")
                    .unwrap_or(&p.localhost_ref)
                    .to_string(),
            ),
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "security_context.apparmor: profile type {} with localhost_ref {:?} is not valid",
                    p.profile_type, p.localhost_ref
                )));
            }
        },
        None => match deprecated {
            "" | "runtime/default" => (!privileged).then(|| APPARMOR_DEFAULT_PROFILE.to_string()),
            "unconfined" => None,
            s => match s.strip_prefix("localhost/") {
                Some(name) if !name.is_empty() => Some(name.to_string()),
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "security_context.apparmor_profile {s:?} is not runtime/default, unconfined or localhost/<profile>"
                    )));
                }
            },
        },
    };
    let Some(name) = requested else {
        return Ok(None);
    };
    if !host_enabled {
        if name == APPARMOR_DEFAULT_PROFILE {
            // The default is best effort, as in containerd: nothing to apply here.
            return Ok(None);
        }
        return Err(Error::FailedPrecondition(format!(
            "AppArmor profile {name:?} requested, but AppArmor is not enabled on this host"
        )));
    }
    if name == APPARMOR_DEFAULT_PROFILE {
        if let Err(e) = ensure_default_apparmor_loaded() {
            if implicit {
                tracing::debug!(err = %e, "running without the default AppArmor profile");
                return Ok(None);
            }
            return Err(e);
        }
    } else if !apparmor_profile_loaded(&name) {
        return Err(Error::FailedPrecondition(format!(
            "AppArmor profile {name:?} is not loaded on this host"
        )));
    }
    Ok(Some(name))
}

fn apparmor_profile_loaded(name: &str) -> bool {
    std::fs::read_to_string("/sys/kernel/security/apparmor/profiles").is_ok_and(|s| {
        s.lines()
            .any(|l| l.split(" (").next().is_some_and(|n| n == name))
    })
}

/// Loads crust's default profile once per daemon (a failure is remembered too, so the warning
/// and the parser run are not repeated for every container).
fn ensure_default_apparmor_loaded() -> Result<()> {
    static LOADED: std::sync::OnceLock<std::result::Result<(), String>> =
        std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            load_default_apparmor().map_err(|e| {
                tracing::warn!(err = %e, "the default AppArmor profile is unavailable");
                e.to_string()
            })
        })
        .clone()
        .map_err(Error::FailedPrecondition)
}

fn load_default_apparmor() -> Result<()> {
    if apparmor_profile_loaded(APPARMOR_DEFAULT_PROFILE) {
        return Ok(());
    }
    use std::io::Write;
    let mut child = std::process::Command::new("apparmor_parser")
        .arg("-Kr")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::FailedPrecondition(format!(
                "AppArmor is enabled but apparmor_parser cannot run to load {APPARMOR_DEFAULT_PROFILE}: {e}"
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(APPARMOR_DEFAULT_TEXT.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Internal(format!("apparmor_parser: {e}")))?;
    if !out.status.success() {
        return Err(Error::Internal(format!(
            "apparmor_parser could not load {APPARMOR_DEFAULT_PROFILE}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Masked and read-only paths: the request's lists, or the defaults when it sends none;
/// nothing for a privileged container.
pub fn masked_and_readonly_paths(
    sc: Option<&cri::LinuxContainerSecurityContext>,
    privileged: bool,
) -> Result<(Vec<String>, Vec<String>)> {
    if privileged {
        return Ok((Vec::new(), Vec::new()));
    }
    let pick =
        |given: Option<&Vec<String>>, default: &[&str], field: &str| -> Result<Vec<String>> {
            match given.filter(|g| !g.is_empty()) {
                Some(g) => {
                    for p in g {
                        if !p.starts_with('/') || p.split('/').any(|c| c == "..") {
                            return Err(Error::InvalidArgument(format!(
                                "security_context.{field} entry {p:?} must be absolute without '..'"
                            )));
                        }
                    }
                    Ok(g.clone())
                }
                None => Ok(default.iter().map(|s| s.to_string()).collect()),
            }
        };
    Ok((
        pick(
            sc.map(|s| &s.masked_paths),
            DEFAULT_MASKED_PATHS,
            "masked_paths",
        )?,
        pick(
            sc.map(|s| &s.readonly_paths),
            DEFAULT_READONLY_PATHS,
            "readonly_paths",
        )?,
    ))
}

/// Whether `path` is a directory whose mount is shared (for rshared bind sources).
pub fn mount_propagation_of(path: &Path) -> Option<(PathBuf, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<(PathBuf, String)> = None;
    for line in info.lines() {
        let mut parts = line.split(" - ").next()?.split(' ');
        let mount_point = PathBuf::from(unescape_mountinfo(parts.nth(4)?));
        let optional: Vec<&str> = parts.skip(1).collect();
        if path.starts_with(&mount_point)
            && best
                .as_ref()
                .is_none_or(|(b, _)| mount_point.as_os_str().len() >= b.as_os_str().len())
        {
            let prop = if optional.iter().any(|o| o.starts_with("shared:")) {
                "shared"
            } else if optional.iter().any(|o| o.starts_with("master:")) {
                "slave"
            } else {
                "private"
            };
            best = Some((mount_point, prop.to_string()));
        }
    }
    best
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sc_caps(
        add: &[&str],
        drop: &[&str],
        ambient: &[&str],
    ) -> cri::LinuxContainerSecurityContext {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        cri::LinuxContainerSecurityContext {
            capabilities: Some(cri::Capability {
                add_capabilities: v(add),
                drop_capabilities: v(drop),
                add_ambient_capabilities: v(ambient),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn capability_names_with_or_without_prefix() {
        let c = capabilities(
            Some(&sc_caps(&["net_admin", "CAP_SYS_TIME"], &["CHOWN"], &[])),
            false,
        )
        .unwrap();
        assert!(c.bounding.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(c.bounding.contains(&"CAP_SYS_TIME".to_string()));
        assert!(!c.bounding.contains(&"CAP_CHOWN".to_string()));
        assert!(c.ambient.is_empty());
        let e = capabilities(Some(&sc_caps(&["NOT_A_CAP"], &[], &[])), false).unwrap_err();
        assert!(e.to_string().contains("NOT_A_CAP"), "{e}");
    }

    #[test]
    fn all_in_add_and_drop() {
        let all = capabilities(Some(&sc_caps(&["ALL"], &[], &[])), false).unwrap();
        assert_eq!(all.bounding, host_capabilities());
        let none = capabilities(Some(&sc_caps(&["NET_RAW"], &["ALL"], &[])), false).unwrap();
        assert_eq!(none.bounding, vec!["CAP_NET_RAW".to_string()]);
        let amb =
            capabilities(Some(&sc_caps(&[], &["ALL"], &["NET_BIND_SERVICE"])), false).unwrap();
        assert_eq!(amb.bounding, vec!["CAP_NET_BIND_SERVICE".to_string()]);
        assert_eq!(amb.ambient, vec!["CAP_NET_BIND_SERVICE".to_string()]);
        let oci = amb.to_oci();
        assert_eq!(oci["inheritable"], json!(["CAP_NET_BIND_SERVICE"]));
    }

    #[test]
    fn privileged_gets_every_host_capability() {
        let c = capabilities(Some(&sc_caps(&[], &["ALL"], &[])), true).unwrap();
        assert_eq!(c.bounding, host_capabilities());
    }

    #[test]
    fn seccomp_strings_and_profiles() {
        let d = SeccompChoice::RuntimeDefault;
        assert_eq!(seccomp_choice(None, "", &d).unwrap(), d);
        assert_eq!(
            seccomp_choice(None, "docker/default", &SeccompChoice::Unconfined).unwrap(),
            d
        );
        assert_eq!(
            seccomp_choice(None, "localhost//etc/p.json", &d).unwrap(),
            SeccompChoice::Localhost("/etc/p.json".into())
        );
        for bad in [
            "/etc/p.json",
            "localhost/rel.json",
            "localhost//a/../b",
            "default",
        ] {
            let e = seccomp_choice(None, bad, &d).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{bad}: {e}");
        }
        let p = cri::SecurityProfile {
            profile_type: cri::security_profile::ProfileType::Localhost as i32,
            localhost_ref: "relative.json".into(),
        };
        assert!(seccomp_choice(Some(&p), "", &d).is_err());
    }

    #[test]
    fn docker_format_profiles_are_converted() {
        let raw = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["sethostname"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]
        });
        let p = from_file_profile(&raw, &[]).unwrap();
        assert_eq!(
            p["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
        );
        assert_eq!(p["syscalls"].as_array().unwrap().len(), 2);
        let p = libcontainer_seccomp(p);
        assert_eq!(p["syscalls"][1]["args"][0]["value"], json!(0));
        assert_eq!(p["syscalls"][1]["args"][0]["valueTwo"], json!(2114060288));
        assert!(from_file_profile(&json!({"syscalls": []}), &[]).is_err());
        let bad = json!({"defaultAction": "SCMP_ACT_NOPE"});
        assert!(from_file_profile(&bad, &[]).is_err());
    }

    #[test]
    fn apparmor_without_host_support() {
        let local = cri::SecurityProfile {
            profile_type: cri::security_profile::ProfileType::Localhost as i32,
            localhost_ref: "localhost/my-profile".into(),
        };
        let e = apparmor_profile(Some(&local), "", false, false).unwrap_err();
        assert!(matches!(e, Error::FailedPrecondition(_)), "{e}");
        assert_eq!(apparmor_profile(None, "", false, false).unwrap(), None);
        assert_eq!(
            apparmor_profile(None, "runtime/default", false, false).unwrap(),
            None
        );
        assert!(apparmor_profile(None, "bogus", false, false).is_err());
    }

    #[test]
    fn masked_paths_default_when_empty_and_vanish_when_privileged() {
        let (m, r) = masked_and_readonly_paths(None, false).unwrap();
        assert_eq!(m.len(), DEFAULT_MASKED_PATHS.len());
        assert_eq!(r.len(), DEFAULT_READONLY_PATHS.len());
        let sc = cri::LinuxContainerSecurityContext {
            masked_paths: vec!["/proc/foo".into()],
            ..Default::default()
        };
        assert_eq!(
            masked_and_readonly_paths(Some(&sc), false).unwrap().0,
            vec!["/proc/foo"]
        );
        assert_eq!(
            masked_and_readonly_paths(Some(&sc), true).unwrap(),
            (vec![], vec![])
        );
    }
}
