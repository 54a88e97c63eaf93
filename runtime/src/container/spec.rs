//! The OCI runtime spec (config.json) for a CRI container, with Docker semantics for the
//! command: CRI `command` replaces the image Entrypoint and CRI `args` replaces its Cmd.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crust_proto::cri;
use serde_json::{Value, json};

use super::user::ResolvedUser;
use super::{devices, mounts, security};
use crate::error::{Error, Result};
use crate::image::oci::RunConfig;

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// containerd's default capability set.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Everything the spec depends on besides the CRI request.
pub struct SpecInput<'a> {
    pub config: &'a cri::ContainerConfig,
    pub image: &'a RunConfig,
    pub rootfs: &'a Path,
    pub pod_dir: &'a Path,
    pub hostname: &'a str,
    pub cgroups_path: &'a str,
    pub user: &'a ResolvedUser,
    /// The lowest oom_score_adj this process may set (we lack CAP_SYS_RESOURCE to go lower).
    pub min_oom_score_adj: i64,
    pub cgroup_v2: bool,
    /// The host's cgroup v1 mount points (empty on v2).
    pub cgroup_v1_mounts: &'a [PathBuf],
    /// Image volumes the engine mounted: container path and host source.
    pub image_volumes: &'a [(String, std::path::PathBuf)],
    /// The host has the hugetlb controller; without it hugepage limits are skipped, as runc
    /// skips them (kubelet sends them for every page size the kernel knows).
    pub hugetlb: bool,
    /// The pod namespaces crust pinned; those missing are the host's (host network / IPC).
    pub pod_namespaces: &'a [String],
    /// Validated pod sysctls, applied in every container's (shared) namespaces.
    pub sysctls: &'a std::collections::HashMap<String, String>,
    pub pid: PidNamespace,
    /// The pod sandbox asked to run privileged containers.
    pub pod_privileged: bool,
    /// The seccomp profile of containers that name none (crust's `seccomp_default`).
    pub seccomp_default: &'a super::security::SeccompChoice,
    pub apparmor_enabled: bool,
    /// Directories holding CDI spec files.
    pub cdi_spec_dirs: &'a [PathBuf],
    /// Where the image's VOLUME directories are created.
    pub volumes_dir: &'a Path,
}

/// Which PID namespace the container's processes live in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidNamespace {
    /// Its own (CRI PID mode CONTAINER): the container's process is PID 1.
    Own,
    /// An existing one by path: the pod's shared namespace (POD) or another container's
    /// (TARGET, for ephemeral debug containers).
    Join(PathBuf),
    /// The host's (NODE).
    Host,
}

/// The process args: Docker's Entrypoint/Cmd rules.
pub fn process_args(config: &cri::ContainerConfig, image: &RunConfig) -> Result<Vec<String>> {
    let args: Vec<String> = if !config.command.is_empty() {
        config
            .command
            .iter()
            .chain(config.args.iter())
            .cloned()
            .collect()
    } else {
        let cmd = if config.args.is_empty() {
            &image.cmd
        } else {
            &config.args
        };
        image.entrypoint.iter().chain(cmd.iter()).cloned().collect()
    };
    if args.is_empty() {
        return Err(Error::InvalidArgument(
            "no command: the request has no command or args and the image has no Entrypoint or Cmd"
                .into(),
        ));
    }
    Ok(args)
}

/// Image env, then CRI envs (which win), with PATH guaranteed and HOSTNAME set as Docker does.
pub fn process_env(
    config: &cri::ContainerConfig,
    image: &RunConfig,
    hostname: &str,
) -> Result<Vec<String>> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut set = |k: String, v: String| {
        if !env.contains_key(&k) {
            order.push(k.clone());
        }
        env.insert(k, v);
    };
    set("PATH".into(), DEFAULT_PATH.into());
    set("HOSTNAME".into(), hostname.into());
    for kv in &image.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        set(k.to_string(), v.to_string());
    }
    for kv in &config.envs {
        if kv.key.is_empty()
            || kv.key.contains('=')
            || kv.key.contains('\0')
            || kv.value.contains(&0)
        {
            return Err(Error::InvalidArgument(format!(
                "environment variable name {:?} is empty or contains '=' or NUL",
                kv.key
            )));
        }
        // CRI 1.36 made values bytes; an OCI spec holds strings.
        let value = String::from_utf8(kv.value.clone()).map_err(|_| {
            Error::InvalidArgument(format!(
                "environment variable {:?}: the value is not UTF-8",
                kv.key
            ))
        })?;
        set(kv.key.clone(), value);
    }
    Ok(order
        .into_iter()
        .map(|k| format!("{k}={}", env[&k]))
        .collect())
}

/// Sets `KEY=VALUE` in `env`, replacing an earlier value of KEY in place.
fn set_env(env: &mut Vec<String>, kv: &str) {
    let key = kv.split_once('=').map_or(kv, |(k, _)| k);
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
    {
        Some(e) => *e = kv.to_string(),
        None => env.push(kv.to_string()),
    }
}

/// /sys/fs/cgroup on cgroup v1 for a container that joins an existing PID namespace (the
/// pod's, or a debug container's target): libcontainer's own v1 cgroup mount looks up the
/// container's parent in the host's /proc by the PID the container has in the joined
/// namespace, which names another process or none ("failed to prepare rootfs" for every
/// `kubectl debug --target`). Mounted here instead as runc does: a tmpfs, and on it each
/// hierarchy's directory of the container's own cgroup.
fn v1_cgroup_binds(mounts: &mut Vec<Value>, input: &SpecInput, writable: bool) {
    let Some(at) = mounts
        .iter()
        .position(|m| m["destination"] == "/sys/fs/cgroup")
    else {
        return;
    };
    let mut replacement = vec![json!({
        "destination": "/sys/fs/cgroup", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "noexec", "nodev", "mode=755"]
    })];
    let own = input.cgroups_path.trim_start_matches('/');
    for point in input.cgroup_v1_mounts {
        if let Some(dest) = point.to_str() {
            replacement.push(bind(dest, &point.join(own), !writable));
        }
    }
    mounts.splice(at..=at, replacement);
}

fn bind(dest: &str, src: &Path, readonly: bool) -> Value {
    let mut options = vec!["rbind", "rprivate"];
    if readonly {
        options.push("ro");
    }
    json!({"destination": dest, "type": "bind", "source": src, "options": options})
}

/// The deprecated string forms of the seccomp and AppArmor profiles, which older kubelets and
/// crictl still send (the `seccomp`/`apparmor` messages win when present).
#[allow(deprecated)]
fn deprecated_profiles(sc: Option<&cri::LinuxContainerSecurityContext>) -> (&str, &str) {
    sc.map_or(("", ""), |s| {
        (s.seccomp_profile_path.as_str(), s.apparmor_profile.as_str())
    })
}

pub fn build(input: &SpecInput<'_>) -> Result<Value> {
    let c = input.config;
    let args = process_args(c, input.image)?;
    let mut env = process_env(c, input.image, input.hostname)?;
    let cwd = if !c.working_dir.is_empty() {
        c.working_dir.clone()
    } else if !input.image.working_dir.is_empty() {
        input.image.working_dir.clone()
    } else {
        "/".to_string()
    };
    if !cwd.starts_with('/') {
        return Err(Error::InvalidArgument(format!(
            "working_dir {cwd:?} must be an absolute path"
        )));
    }
    let linux = c.linux.as_ref();
    let sc = linux.and_then(|l| l.security_context.as_ref());
    let readonly_root = sc.is_some_and(|s| s.readonly_rootfs);
    let res = linux.and_then(|l| l.resources.as_ref());
    let privileged = sc.is_some_and(|s| s.privileged);
    if privileged && !input.pod_privileged {
        return Err(Error::InvalidArgument(
            "security_context.privileged: the pod sandbox is not privileged, so its containers may not be"
                .into(),
        ));
    }
    if sc
        .and_then(|s| s.namespace_options.as_ref())
        .and_then(|n| n.userns_options.as_ref())
        .is_some_and(|u| u.mode != cri::NamespaceMode::Node as i32)
    {
        return Err(Error::Unimplemented(
            "user namespaces are not supported by crust yet (no idmapped mounts in libcontainer)"
                .into(),
        ));
    }
    let caps = security::capabilities(sc, privileged)?;
    let (masked_paths, readonly_paths) = security::masked_and_readonly_paths(sc, privileged)?;
    let seccomp = if privileged {
        None
    } else {
        let choice = security::seccomp_choice(
            sc.and_then(|s| s.seccomp.as_ref()),
            deprecated_profiles(sc).0,
            input.seccomp_default,
        )?;
        security::seccomp_profile(&choice, &caps.bounding)?
    };
    let apparmor = if privileged {
        None
    } else {
        security::apparmor_profile(
            sc.and_then(|s| s.apparmor.as_ref()),
            deprecated_profiles(sc).1,
            privileged,
            input.apparmor_enabled,
        )?
    };
    let mut device_edits = devices::DeviceEdits::default();
    if privileged {
        devices::host_devices(&mut device_edits);
    }
    devices::cri_devices(&c.devices, &mut device_edits)?;
    devices::cdi_devices(&c.cdi_devices, input.cdi_spec_dirs, &mut device_edits)?;
    for kv in &device_edits.env {
        set_env(&mut env, kv);
    }
    let sys_ro: &[&str] = if privileged { &[] } else { &["ro"] };

    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ([&["nosuid", "noexec", "nodev"], sys_ro].concat())}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ([&["nosuid", "noexec", "nodev", "relatime"], sys_ro].concat())}),
        if input.pod_namespaces.iter().any(|n| n == "ipc") {
            bind("/dev/shm", &input.pod_dir.join(crate::pod::SHM_DIR), false)
        } else {
            bind("/dev/shm", Path::new("/dev/shm"), false)
        },
        bind(
            "/etc/hostname",
            &input.pod_dir.join(crate::pod::HOSTNAME_FILE),
            readonly_root,
        ),
        bind(
            "/etc/hosts",
            &input.pod_dir.join(crate::pod::HOSTS_FILE),
            readonly_root,
        ),
        bind(
            "/etc/resolv.conf",
            &input.pod_dir.join(crate::pod::RESOLV_FILE),
            readonly_root,
        ),
    ];
    if !input.cgroup_v2 && matches!(input.pid, PidNamespace::Join(_)) {
        v1_cgroup_binds(&mut mounts, input, sys_ro.is_empty());
    }
    let binds = mounts::cri_mounts(&c.mounts, input.image_volumes)?;
    let taken: Vec<String> = binds
        .mounts
        .iter()
        .chain(device_edits.mounts.iter())
        .filter_map(|m| m["destination"].as_str().map(str::to_string))
        .collect();
    let volumes = mounts::image_volumes(input.image, input.volumes_dir, &taken)?;
    // Later entries replace earlier ones at the same destination, as in Docker.
    for m in volumes
        .into_iter()
        .chain(binds.mounts)
        .chain(device_edits.mounts)
    {
        mounts.retain(|x| x["destination"] != m["destination"]);
        mounts.push(m);
    }

    let mut namespaces = vec![json!({"type": "mount"})];
    match &input.pid {
        PidNamespace::Own => namespaces.push(json!({"type": "pid"})),
        PidNamespace::Join(path) => namespaces.push(json!({"type": "pid", "path": path})),
        PidNamespace::Host => {}
    }
    for ns in input.pod_namespaces.iter().filter(|n| *n != "pid") {
        let kind = if ns == "net" { "network" } else { ns.as_str() };
        namespaces
            .push(json!({"type": kind, "path": crate::monitor::pin::ns_path(input.pod_dir, ns)}));
    }
    if input.cgroup_v2 {
        namespaces.push(json!({"type": "cgroup"}));
    }

    let mut resources = json!({
        "devices": if privileged { json!([{"allow": true, "access": "rwm"}]) } else { json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
            {"allow": true, "type": "c", "major": 136, "access": "rwm"}
        ]) }
    });
    if let Some(rules) = resources["devices"].as_array_mut() {
        rules.extend(device_edits.rules);
    }
    let mut oom_score_adj = None;
    if let Some(r) = res {
        if r.memory_limit_in_bytes > 0 {
            resources["memory"] = json!({"limit": r.memory_limit_in_bytes});
            // CRI's swap limit is memory+swap, as OCI's memory.swap is.
            if r.memory_swap_limit_in_bytes > 0 {
                resources["memory"]["swap"] = json!(r.memory_swap_limit_in_bytes);
            }
        }
        if !r.hugepage_limits.is_empty() && input.hugetlb {
            let limits: Vec<_> = r
                .hugepage_limits
                .iter()
                .map(|h| json!({"pageSize": h.page_size, "limit": h.limit}))
                .collect();
            resources["hugepageLimits"] = json!(limits);
        }
        let mut cpu = serde_json::Map::new();
        if r.cpu_shares > 0 {
            cpu.insert("shares".into(), json!(r.cpu_shares));
        }
        if r.cpu_quota > 0 {
            cpu.insert("quota".into(), json!(r.cpu_quota));
        }
        if r.cpu_period > 0 {
            cpu.insert("period".into(), json!(r.cpu_period));
        }
        if !r.cpuset_cpus.is_empty() {
            cpu.insert("cpus".into(), json!(r.cpuset_cpus));
        }
        if !r.cpuset_mems.is_empty() {
            cpu.insert("mems".into(), json!(r.cpuset_mems));
        }
        if !cpu.is_empty() {
            resources["cpu"] = Value::Object(cpu);
        }
        if !r.unified.is_empty() {
            if !input.cgroup_v2 {
                return Err(Error::InvalidArgument(
                    "linux.resources.unified needs a cgroup v2 host".into(),
                ));
            }
            for (k, v) in &r.unified {
                crate::cgroups::validate_unified(k, v)
                    .map_err(|e| Error::InvalidArgument(e.to_string()))?;
            }
            resources["unified"] = json!(r.unified);
        }
        if r.oom_score_adj != 0 {
            oom_score_adj = Some(r.oom_score_adj.clamp(input.min_oom_score_adj, 1000));
        }
    }

    let mut process = json!({
        "terminal": c.tty,
        "user": {
            "uid": input.user.uid,
            "gid": input.user.gid,
            "additionalGids": input.user.additional_gids,
        },
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": caps.to_oci(),
    });
    // Only when set: libcontainer tests the field's presence, not its value, to decide to
    // load seccomp after dropping capabilities, which fails without no_new_privs.
    if sc.is_some_and(|s| s.no_new_privs) {
        process["noNewPrivileges"] = json!(true);
    }
    if let Some(adj) = oom_score_adj {
        process["oomScoreAdj"] = json!(adj);
    }
    if let Some(profile) = apparmor {
        process["apparmorProfile"] = json!(profile);
    }
    let mut annotations = serde_json::Map::new();
    for (k, v) in &c.annotations {
        annotations.insert(k.clone(), json!(v));
    }
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": input.rootfs, "readonly": readonly_root},
        "mounts": mounts,
        "annotations": annotations,
        "linux": {
            "cgroupsPath": input.cgroups_path,
            "namespaces": namespaces,
            "resources": resources,
            "maskedPaths": masked_paths,
            "readonlyPaths": readonly_paths,
            "sysctl": input.sysctls,
            "devices": device_edits.nodes,
        }
    });
    if let Some(seccomp) = seccomp {
        spec["linux"]["seccomp"] = seccomp;
    }
    if let Some(p) = binds.rootfs_propagation {
        spec["linux"]["rootfsPropagation"] = json!(p);
    }
    Ok(spec)
}

/// The lowest oom_score_adj this process could give a child: it cannot go below its own value
/// without CAP_SYS_RESOURCE, so the spec is clamped rather than failing the create.
pub fn min_oom_score_adj() -> i64 {
    let own = std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if has_cap_sys_resource() { -1000 } else { own }
}

fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| {
                    l.strip_prefix("CapEff:")
                        .map(|v| u64::from_str_radix(v.trim(), 16).ok())
                })
                .flatten()
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> RunConfig {
        RunConfig {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["default".into()],
            env: vec!["A=image".into(), "B=image".into()],
            ..Default::default()
        }
    }

    #[test]
    fn command_replaces_entrypoint_and_args_replace_cmd() {
        let mut c = cri::ContainerConfig::default();
        assert_eq!(
            process_args(&c, &image()).unwrap(),
            vec!["/entry", "default"]
        );
        c.args = vec!["x".into()];
        assert_eq!(process_args(&c, &image()).unwrap(), vec!["/entry", "x"]);
        c.command = vec!["ls".into()];
        c.args = vec!["/".into()];
        assert_eq!(process_args(&c, &image()).unwrap(), vec!["ls", "/"]);
        let empty = RunConfig::default();
        assert!(process_args(&cri::ContainerConfig::default(), &empty).is_err());
    }

    #[test]
    fn cri_env_overrides_image_env() {
        let c = cri::ContainerConfig {
            envs: vec![cri::KeyValue {
                key: "B".into(),
                value: "cri".into(),
            }],
            ..Default::default()
        };
        let env = process_env(&c, &image(), "h").unwrap();
        assert!(env.contains(&"A=image".to_string()));
        assert!(env.contains(&"B=cri".to_string()));
        assert!(env.contains(&"HOSTNAME=h".to_string()));
        assert!(env.iter().any(|e| e.starts_with("PATH=")));
        let bad = cri::ContainerConfig {
            envs: vec![cri::KeyValue {
                key: "A=B".into(),
                value: "x".into(),
            }],
            ..Default::default()
        };
        assert!(process_env(&bad, &image(), "h").is_err());
    }

    #[test]
    fn spec_joins_pod_namespaces_and_clamps_oom_score() {
        let c = cri::ContainerConfig {
            linux: Some(cri::LinuxContainerConfig {
                resources: Some(cri::LinuxContainerResources {
                    oom_score_adj: -999,
                    memory_limit_in_bytes: 1 << 26,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let user = ResolvedUser::default();
        let spec = build(&SpecInput {
            config: &c,
            image: &image(),
            rootfs: Path::new("/r"),
            pod_dir: Path::new("/p"),
            hostname: "h",
            cgroups_path: "/crust/p/c",
            user: &user,
            min_oom_score_adj: 0,
            cgroup_v2: false,
            cgroup_v1_mounts: &[],
            hugetlb: true,
            image_volumes: &[],
            pod_namespaces: &["net".into(), "ipc".into(), "uts".into()],
            sysctls: &Default::default(),
            pid: PidNamespace::Own,
            pod_privileged: false,
            seccomp_default: &super::super::security::SeccompChoice::RuntimeDefault,
            apparmor_enabled: false,
            cdi_spec_dirs: &[],
            volumes_dir: Path::new("/nonexistent"),
        })
        .unwrap();
        assert_eq!(spec["process"]["oomScoreAdj"], json!(0));
        assert_eq!(
            spec["linux"]["resources"]["memory"]["limit"],
            json!(1 << 26)
        );
        let ns = spec["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.contains(&json!({"type": "network", "path": "/p/ns/net"})));
        assert!(ns.contains(&json!({"type": "pid"})));
    }

    #[test]
    fn a_joined_pid_namespace_on_cgroup_v1_gets_its_own_cgroup_bind_mounted() {
        let c = cri::ContainerConfig::default();
        let user = ResolvedUser::default();
        let points = [
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"),
            PathBuf::from("/sys/fs/cgroup/memory"),
        ];
        let spec_with = |pid: PidNamespace| {
            build(&SpecInput {
                config: &c,
                image: &image(),
                rootfs: Path::new("/r"),
                pod_dir: Path::new("/p"),
                hostname: "h",
                cgroups_path: "/crust/p/c",
                user: &user,
                min_oom_score_adj: 0,
                cgroup_v2: false,
                cgroup_v1_mounts: &points,
                hugetlb: true,
                image_volumes: &[],
                pod_namespaces: &["net".into()],
                sysctls: &Default::default(),
                pid,
                pod_privileged: false,
                seccomp_default: &super::super::security::SeccompChoice::Unconfined,
                apparmor_enabled: false,
                cdi_spec_dirs: &[],
                volumes_dir: Path::new("/nonexistent"),
            })
            .unwrap()
        };
        let under_cgroup = |spec: &Value| -> Vec<(String, String)> {
            spec["mounts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| {
                    m["destination"]
                        .as_str()
                        .unwrap()
                        .starts_with("/sys/fs/cgroup")
                })
                .map(|m| {
                    (
                        m["type"].as_str().unwrap().to_string(),
                        m["source"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        };
        let joined = spec_with(PidNamespace::Join("/proc/7/ns/pid".into()));
        assert_eq!(
            under_cgroup(&joined),
            [
                ("tmpfs".to_string(), "tmpfs".to_string()),
                ("bind".into(), "/sys/fs/cgroup/cpu,cpuacct/crust/p/c".into()),
                ("bind".into(), "/sys/fs/cgroup/memory/crust/p/c".into()),
            ]
        );
        // Its own PID namespace keeps libcontainer's cgroup mount.
        let own = spec_with(PidNamespace::Own);
        assert_eq!(
            under_cgroup(&own),
            [("cgroup".to_string(), "cgroup".to_string())]
        );
    }
}
