//! `crustctl run`'s Docker flags for the container (volumes, limits, user, security) and how
//! they become CRI fields.

use anyhow::{Context, anyhow, bail};
use crust_proto::cri;

/// The container flags of `crustctl run` (and the limits of `crustctl update`).
#[derive(clap::Args, Debug, Default, Clone)]
pub struct ContainerFlags {
    /// Bind mount HOST:CONTAINER[:ro|rw] (repeatable); HOST must exist.
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    /// Host device HOST[:CONTAINER[:PERMISSIONS]] (repeatable), permissions from "rwm".
    #[arg(long = "device")]
    pub devices: Vec<String>,
    #[command(flatten)]
    pub limits: LimitFlags,
    /// USER[:GROUP]: a name from the image's /etc/passwd or a uid; the group as a gid.
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Extra supplementary group id (repeatable).
    #[arg(long = "group-add")]
    pub group_add: Vec<i64>,
    /// All capabilities and host devices, writable /sys, no seccomp or masked paths.
    #[arg(long)]
    pub privileged: bool,
    /// Capability to add, with or without CAP_, or ALL (repeatable).
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Capability to drop, with or without CAP_, or ALL (repeatable).
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// seccomp=unconfined|runtime/default|PROFILE.json, apparmor=unconfined|runtime/default|
    /// PROFILE, no-new-privileges[=true|false] (repeatable).
    #[arg(long = "security-opt")]
    pub security_opts: Vec<String>,
}

/// Resource limits, shared by `run` and `update`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct LimitFlags {
    /// Memory limit: bytes or a number with b, k, m or g (e.g. 64m).
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// CPUs as a decimal (e.g. 0.5): a CFS quota over a 100ms period.
    #[arg(long)]
    pub cpus: Option<String>,
    /// CPUs the container may run on (e.g. 0-1,3).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
}

/// `64m`, `1g`, `512k`, `1048576`.
pub fn parse_memory(s: &str) -> anyhow::Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').filter(|r| !r.is_empty()).unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow!("--memory {s}: expected bytes or a number with k, m or g"))?;
    // `is_nan` too: NaN compares false with everything.
    if n.is_nan() || n <= 0.0 || n * mult as f64 > i64::MAX as f64 {
        bail!("--memory {s}: must be positive");
    }
    Ok((n * mult as f64) as i64)
}

/// CFS period used for `--cpus`, as Docker.
pub const CPU_PERIOD: i64 = 100_000;

/// `--cpus 1.5` as a CFS quota over [`CPU_PERIOD`].
pub fn parse_cpus(s: &str) -> anyhow::Result<i64> {
    let n: f64 = s
        .trim()
        .parse()
        .map_err(|_| anyhow!("--cpus {s}: expected a decimal number of CPUs"))?;
    if n.is_nan() || !(0.01..=4096.0).contains(&n) {
        bail!("--cpus {s}: must be between 0.01 and 4096");
    }
    Ok((n * CPU_PERIOD as f64).round() as i64)
}

impl LimitFlags {
    pub fn is_empty(&self) -> bool {
        self.memory.is_none() && self.cpus.is_none() && self.cpuset_cpus.is_none()
    }

    /// Applies the flags over `r` (fields not given stay as they are).
    pub fn apply(&self, r: &mut cri::LinuxContainerResources) -> anyhow::Result<()> {
        if let Some(m) = &self.memory {
            r.memory_limit_in_bytes = parse_memory(m)?;
        }
        if let Some(c) = &self.cpus {
            r.cpu_quota = parse_cpus(c)?;
            r.cpu_period = CPU_PERIOD;
        }
        if let Some(c) = &self.cpuset_cpus {
            r.cpuset_cpus = c.clone();
        }
        Ok(())
    }
}

fn parse_volume(v: &str) -> anyhow::Result<cri::Mount> {
    let parts: Vec<&str> = v.split(':').collect();
    let (host, ctr, readonly) = match parts.as_slice() {
        [h, c] => (*h, *c, false),
        [h, c, "ro"] => (*h, *c, true),
        [h, c, "rw"] => (*h, *c, false),
        _ => bail!("-v {v}: expected HOST:CONTAINER[:ro|rw]"),
    };
    if !host.starts_with('/') || !ctr.starts_with('/') {
        bail!("-v {v}: both paths must be absolute (named volumes are not supported)");
    }
    let host_path = std::fs::canonicalize(host)
        .with_context(|| format!("-v {v}: host path {host}"))?
        .display()
        .to_string();
    Ok(cri::Mount {
        container_path: ctr.into(),
        host_path,
        readonly,
        ..Default::default()
    })
}

fn parse_device(v: &str) -> anyhow::Result<cri::Device> {
    let parts: Vec<&str> = v.split(':').collect();
    let (host, ctr, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] => (*h, *c, *p),
        _ => bail!("--device {v}: expected HOST[:CONTAINER[:PERMISSIONS]]"),
    };
    Ok(cri::Device {
        container_path: ctr.into(),
        host_path: host.into(),
        permissions: perms.into(),
    })
}

fn profile(kind: cri::security_profile::ProfileType, localhost: &str) -> cri::SecurityProfile {
    cri::SecurityProfile {
        profile_type: kind as i32,
        localhost_ref: localhost.into(),
    }
}

/// `unconfined`, `runtime/default` (or `default`), or a localhost profile.
fn parse_profile(value: &str, opt: &str) -> anyhow::Result<cri::SecurityProfile> {
    use cri::security_profile::ProfileType;
    Ok(match value {
        "unconfined" => profile(ProfileType::Unconfined, ""),
        "runtime/default" | "default" | "docker/default" => {
            profile(ProfileType::RuntimeDefault, "")
        }
        "" => bail!("--security-opt {opt}: a value is required"),
        other => profile(ProfileType::Localhost, other),
    })
}

impl ContainerFlags {
    /// Sets the flags' fields in the container config; returns whether the pod must be
    /// privileged.
    pub fn apply(&self, cfg: &mut cri::ContainerConfig) -> anyhow::Result<bool> {
        for v in &self.volumes {
            cfg.mounts.push(parse_volume(v)?);
        }
        for d in &self.devices {
            cfg.devices.push(parse_device(d)?);
        }
        let linux = cfg.linux.get_or_insert_with(Default::default);
        if !self.limits.is_empty() {
            self.limits
                .apply(linux.resources.get_or_insert_with(Default::default))?;
        }
        let sc = linux.security_context.get_or_insert_with(Default::default);
        if let Some(u) = &self.user {
            let (user, group) = match u.split_once(':') {
                Some((u, g)) => (u, Some(g)),
                None => (u.as_str(), None),
            };
            match user.parse::<i64>() {
                Ok(uid) => sc.run_as_user = Some(cri::Int64Value { value: uid }),
                Err(_) => sc.run_as_username = user.to_string(),
            }
            if let Some(g) = group {
                let gid = g.parse::<i64>().map_err(|_| {
                    anyhow!("--user {u}: CRI takes the group as a number (a gid), not {g:?}")
                })?;
                sc.run_as_group = Some(cri::Int64Value { value: gid });
            }
        }
        sc.supplemental_groups
            .extend(self.group_add.iter().copied());
        sc.privileged = self.privileged;
        sc.readonly_rootfs = self.read_only;
        if !self.cap_add.is_empty() || !self.cap_drop.is_empty() {
            sc.capabilities = Some(cri::Capability {
                add_capabilities: self.cap_add.clone(),
                drop_capabilities: self.cap_drop.clone(),
                add_ambient_capabilities: vec![],
            });
        }
        // Docker's default: the runtime's seccomp profile unless the user says otherwise (a
        // CRI request without one means unconfined). Privileged containers go without, as in
        // Docker.
        if !self.privileged {
            sc.seccomp = Some(cri::SecurityProfile {
                profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
                localhost_ref: String::new(),
            });
        }
        for opt in &self.security_opts {
            let (key, value) = opt.split_once(['=', ':']).unwrap_or((opt, ""));
            match key {
                "seccomp" => sc.seccomp = Some(parse_profile(value, opt)?),
                "apparmor" => sc.apparmor = Some(parse_profile(value, opt)?),
                "no-new-privileges" => {
                    sc.no_new_privs = match value {
                        "" | "true" => true,
                        "false" => false,
                        _ => bail!("--security-opt {opt}: expected no-new-privileges[=true|false]"),
                    }
                }
                _ => bail!(
                    "--security-opt {opt}: supported are seccomp=, apparmor= and no-new-privileges"
                ),
            }
        }
        Ok(self.privileged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_and_cpus() {
        assert_eq!(parse_memory("64m").unwrap(), 64 << 20);
        assert_eq!(parse_memory("1G").unwrap(), 1 << 30);
        assert_eq!(parse_memory("512kb").unwrap(), 512 << 10);
        assert_eq!(parse_memory("1000").unwrap(), 1000);
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("-1m").is_err());
        assert_eq!(parse_cpus("0.5").unwrap(), 50_000);
        assert_eq!(parse_cpus("2").unwrap(), 200_000);
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("x").is_err());
    }

    #[test]
    fn flags_become_cri_fields() {
        let flags = ContainerFlags {
            volumes: vec!["/tmp:/data:ro".into()],
            devices: vec!["/dev/null:/dev/xnull:r".into()],
            limits: LimitFlags {
                memory: Some("32m".into()),
                cpus: Some("1.5".into()),
                cpuset_cpus: None,
            },
            user: Some("app:44".into()),
            group_add: vec![2000],
            privileged: false,
            cap_add: vec!["NET_ADMIN".into()],
            cap_drop: vec!["ALL".into()],
            read_only: true,
            security_opts: vec!["seccomp=unconfined".into(), "no-new-privileges".into()],
        };
        let mut cfg = cri::ContainerConfig::default();
        assert!(!flags.apply(&mut cfg).unwrap());
        assert_eq!(cfg.mounts[0].container_path, "/data");
        assert!(cfg.mounts[0].readonly);
        assert_eq!(cfg.devices[0].permissions, "r");
        let linux = cfg.linux.unwrap();
        let r = linux.resources.unwrap();
        assert_eq!(
            (r.memory_limit_in_bytes, r.cpu_quota, r.cpu_period),
            (32 << 20, 150_000, 100_000)
        );
        let sc = linux.security_context.unwrap();
        assert_eq!(sc.run_as_username, "app");
        assert_eq!(sc.run_as_group.unwrap().value, 44);
        assert_eq!(sc.supplemental_groups, vec![2000]);
        assert!(sc.readonly_rootfs && sc.no_new_privs);
        assert_eq!(sc.capabilities.unwrap().drop_capabilities, vec!["ALL"]);
        assert_eq!(
            sc.seccomp.unwrap().profile_type,
            cri::security_profile::ProfileType::Unconfined as i32
        );
    }

    #[test]
    fn bad_flags_say_which() {
        for (flags, needle) in [
            (
                ContainerFlags {
                    volumes: vec!["data:/x".into()],
                    ..Default::default()
                },
                "-v",
            ),
            (
                ContainerFlags {
                    user: Some("app:video".into()),
                    ..Default::default()
                },
                "--user",
            ),
            (
                ContainerFlags {
                    security_opts: vec!["label=x".into()],
                    ..Default::default()
                },
                "--security-opt",
            ),
            (
                ContainerFlags {
                    devices: vec!["a:b:c:d".into()],
                    ..Default::default()
                },
                "--device",
            ),
        ] {
            let e = flags
                .apply(&mut cri::ContainerConfig::default())
                .unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
        }
    }
}
