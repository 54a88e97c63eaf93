//! The container boundary, observed from inside containers: capabilities, seccomp,
//! no_new_privs, privileged, users and groups, masked and read-only paths, mounts, volumes,
//! devices, CDI, and the runtime escapes crust must not allow.

use std::path::Path;
use std::time::Duration;

use crust_e2e::{
    Cri, Daemon, PodFixture, container_config, cri, crustctl, log_lines, pod_config, registry,
};
use tonic::Code;

const LONG: Duration = Duration::from_secs(30);

fn code_of(e: &anyhow::Error) -> Option<Code> {
    e.downcast_ref::<tonic::Status>().map(|s| s.code())
}

use crust_e2e::ctr_security as security;

fn profile(kind: cri::security_profile::ProfileType, localhost: &str) -> cri::SecurityProfile {
    cri::SecurityProfile {
        profile_type: kind as i32,
        localhost_ref: localhost.into(),
    }
}

fn caps(add: &[&str], drop: &[&str], ambient: &[&str]) -> Option<cri::Capability> {
    let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
    Some(cri::Capability {
        add_capabilities: v(add),
        drop_capabilities: v(drop),
        add_ambient_capabilities: v(ambient),
    })
}

/// Runs `script` under `sh -c` in a new container shaped by `shape`, waits for it to exit and
/// returns its stdout+stderr lines; Err carries the gRPC code when create or start fails.
async fn run_script(
    c: &mut Cri,
    pod: &str,
    pc: &cri::PodSandboxConfig,
    image: &str,
    name: &str,
    script: &str,
    shape: impl FnOnce(&mut cri::ContainerConfig),
) -> Result<String, (Option<Code>, String)> {
    let mut cfg = container_config(name, image, &["sh", "-c", script]);
    shape(&mut cfg);
    let id = c
        .run(pod, pc, cfg)
        .await
        .map_err(|e| (code_of(&e), format!("{e:#}")))?;
    c.wait_exited(&id, LONG).await.expect("container exits");
    let log = format!("{}/{name}/0.log", pc.log_directory);
    Ok(log_lines(&log)
        .into_iter()
        .map(|(_, l)| l)
        .collect::<Vec<_>>()
        .join("\n"))
}

/// The value of `field` in /proc/self/status output.
fn status_field<'a>(out: &'a str, field: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("{field} missing in {out}"))
}

fn cap_mask(bits: &[u32]) -> String {
    format!("{:016x}", bits.iter().fold(0u64, |m, b| m | (1 << b)))
}

/// The capability bits this test process (root, like crustd) holds: "all" for a container.
fn own_capabilities() -> Vec<u32> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let mask = u64::from_str_radix(status_field(&status, "CapPrm"), 16).unwrap();
    (0..64).filter(|b| mask & (1 << b) != 0).collect()
}

/// Bits of containerd's default capability set.
const DEFAULT_CAP_BITS: &[u32] = &[0, 1, 4, 3, 27, 13, 6, 7, 31, 8, 10, 18, 5, 29];
const STATUS: &str =
    "grep -E '^(CapEff|CapBnd|CapAmb|CapInh|NoNewPrivs|Seccomp):' /proc/self/status";

#[tokio::test]
async fn capabilities_follow_add_drop_all_and_ambient() {
    let PodFixture {
        d: _d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start("caps").await;

    let out = run_script(&mut c, &pod, &pc, &image, "default", STATUS, |_| {})
        .await
        .unwrap();
    assert_eq!(
        status_field(&out, "CapEff"),
        cap_mask(DEFAULT_CAP_BITS),
        "{out}"
    );
    assert_eq!(
        status_field(&out, "CapBnd"),
        cap_mask(DEFAULT_CAP_BITS),
        "{out}"
    );
    assert_eq!(status_field(&out, "CapInh"), cap_mask(&[]), "{out}");
    assert_eq!(status_field(&out, "NoNewPrivs"), "0");

    // Names with and without CAP_, in any case; drop wins over the defaults.
    let out = run_script(&mut c, &pod, &pc, &image, "adddrop", STATUS, |cfg| {
        let s = security(cfg);
        s.capabilities = caps(&["net_admin", "CAP_SYS_TIME"], &["CHOWN"], &[]);
        s.no_new_privs = true;
    })
    .await
    .unwrap();
    let mut bits: Vec<u32> = DEFAULT_CAP_BITS
        .iter()
        .copied()
        .filter(|b| *b != 0)
        .collect();
    bits.extend([12, 25]);
    assert_eq!(status_field(&out, "CapEff"), cap_mask(&bits), "{out}");
    assert_eq!(status_field(&out, "NoNewPrivs"), "1");

    let out = run_script(&mut c, &pod, &pc, &image, "dropall", STATUS, |cfg| {
        security(cfg).capabilities = caps(&["NET_RAW"], &["ALL"], &[]);
    })
    .await
    .unwrap();
    assert_eq!(status_field(&out, "CapEff"), cap_mask(&[13]), "{out}");

    let out = run_script(&mut c, &pod, &pc, &image, "addall", STATUS, |cfg| {
        security(cfg).capabilities = caps(&["ALL"], &["SYS_ADMIN"], &[]);
    })
    .await
    .unwrap();
    let all: Vec<u32> = own_capabilities()
        .into_iter()
        .filter(|b| *b != 21)
        .collect();
    assert_eq!(status_field(&out, "CapEff"), cap_mask(&all), "{out}");

    // Ambient: a non-root process keeps NET_BIND_SERVICE in its effective set.
    let out = run_script(&mut c, &pod, &pc, &image, "ambient", STATUS, |cfg| {
        let s = security(cfg);
        s.run_as_user = Some(cri::Int64Value { value: 1000 });
        s.capabilities = caps(&[], &["ALL"], &["NET_BIND_SERVICE"]);
    })
    .await
    .unwrap();
    assert_eq!(status_field(&out, "CapAmb"), cap_mask(&[10]), "{out}");
    assert_eq!(status_field(&out, "CapEff"), cap_mask(&[10]), "{out}");

    // A non-root process without ambient capabilities has none effective.
    let out = run_script(&mut c, &pod, &pc, &image, "nonroot", STATUS, |cfg| {
        security(cfg).run_as_user = Some(cri::Int64Value { value: 1000 });
    })
    .await
    .unwrap();
    assert_eq!(status_field(&out, "CapEff"), cap_mask(&[]), "{out}");

    let (code, msg) = run_script(&mut c, &pod, &pc, &image, "badcap", "true", |cfg| {
        security(cfg).capabilities = caps(&["CAP_MAKE_COFFEE"], &[], &[]);
    })
    .await
    .unwrap_err();
    assert_eq!(code, Some(Code::InvalidArgument), "{msg}");
    assert!(msg.contains("CAP_MAKE_COFFEE"), "{msg}");
}

const PROBE: &str = "grep Seccomp: /proc/self/status; \
    unshare -U true 2>/dev/null && echo UNSHARE-OK || echo UNSHARE-DENIED; \
    hostname probe-name 2>/dev/null && echo HOSTNAME-OK || echo HOSTNAME-DENIED; \
    mkdir /tmp/probe-dir 2>/dev/null && echo MKDIR-OK || echo MKDIR-DENIED";

#[tokio::test]
async fn seccomp_profiles_default_unconfined_localhost_and_strings() {
    use cri::security_profile::ProfileType;
    let PodFixture {
        d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start("seccomp").await;

    // Unconfined: a user namespace can be created (proves the probe can succeed).
    let out = run_script(&mut c, &pod, &pc, &image, "unconfined", PROBE, |cfg| {
        security(cfg).seccomp = Some(profile(ProfileType::Unconfined, ""));
    })
    .await
    .unwrap();
    assert!(out.contains("Seccomp:\t0"), "{out}");
    assert!(out.contains("UNSHARE-OK"), "{out}");

    // RuntimeDefault: filter on, user namespaces refused, fork/exec/mkdir fine.
    let out = run_script(&mut c, &pod, &pc, &image, "default", PROBE, |cfg| {
        security(cfg).seccomp = Some(profile(ProfileType::RuntimeDefault, ""));
    })
    .await
    .unwrap();
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(out.contains("UNSHARE-DENIED"), "{out}");
    assert!(out.contains("HOSTNAME-DENIED"), "{out}");
    assert!(out.contains("MKDIR-OK"), "{out}");

    // With CAP_SYS_ADMIN the default profile allows what that capability governs.
    let out = run_script(&mut c, &pod, &pc, &image, "sysadmin", PROBE, |cfg| {
        let s = security(cfg);
        s.seccomp = Some(profile(ProfileType::RuntimeDefault, ""));
        s.capabilities = caps(&["SYS_ADMIN"], &[], &[]);
    })
    .await
    .unwrap();
    assert!(out.contains("HOSTNAME-OK"), "{out}");

    // No profile named: crust's seccomp_default, unconfined unless configured (CRI's meaning,
    // which critest checks); the knob is tested below with a daemon of its own.
    let out = run_script(&mut c, &pod, &pc, &image, "unnamed", PROBE, |_| {})
        .await
        .unwrap();
    assert!(
        out.contains("Seccomp:\t0") && out.contains("UNSHARE-OK"),
        "{out}"
    );

    // A process exec'd into a confined container is confined too (libcontainer's tenant
    // builder drops the filter; crust's executor loads it): ExecSync and streaming exec.
    let mut cfg = container_config("confined", &image, &["sleep", "60"]);
    security(&mut cfg).seccomp = Some(profile(ProfileType::RuntimeDefault, ""));
    security(&mut cfg).run_as_user = Some(cri::Int64Value { value: 1000 });
    let confined = c.run(&pod, &pc, cfg).await.unwrap();
    let r = c.exec(&confined, &["sh", "-c", PROBE], 10).await.unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(
        out.contains("Seccomp:\t2") && out.contains("UNSHARE-DENIED"),
        "ExecSync in a confined container: {out}"
    );
    let streamed = crustctl(&d, &["exec", "-i", &confined, "sh", "-c", PROBE]);
    let out = String::from_utf8_lossy(&streamed.stdout);
    assert!(
        out.contains("Seccomp:\t2") && out.contains("UNSHARE-DENIED"),
        "streaming exec in a confined container: {out}"
    );

    // The deprecated strings mean the same.
    #[allow(deprecated)]
    let out = run_script(
        &mut c,
        &pod,
        &pc,
        &image,
        "string-unconfined",
        PROBE,
        |cfg| {
            security(cfg).seccomp_profile_path = "unconfined".into();
        },
    )
    .await
    .unwrap();
    assert!(out.contains("UNSHARE-OK"), "{out}");

    // Localhost: a Docker-format profile that denies mkdir with EACCES.
    let profile_path = d.dir.path().join("deny-mkdir.json");
    std::fs::write(
        &profile_path,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86"]}],
            "syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
    )
    .unwrap();
    let path = profile_path.display().to_string();
    let out = run_script(&mut c, &pod, &pc, &image, "localhost", PROBE, |cfg| {
        security(cfg).seccomp = Some(profile(ProfileType::Localhost, &path));
    })
    .await
    .unwrap();
    assert!(
        out.contains("Seccomp:\t2") && out.contains("MKDIR-DENIED"),
        "{out}"
    );
    assert!(out.contains("UNSHARE-OK"), "{out}");
    #[allow(deprecated)]
    let out = run_script(
        &mut c,
        &pod,
        &pc,
        &image,
        "string-localhost",
        PROBE,
        |cfg| {
            security(cfg).seccomp_profile_path = format!("localhost/{path}");
        },
    )
    .await
    .unwrap();
    assert!(out.contains("MKDIR-DENIED"), "{out}");

    // Bad requests name what was wrong.
    #[allow(deprecated)]
    for (name, shape) in [
        (
            "rel",
            Box::new(|cfg: &mut cri::ContainerConfig| {
                security(cfg).seccomp = Some(profile(ProfileType::Localhost, "deny-mkdir.json"))
            }) as Box<dyn FnOnce(&mut cri::ContainerConfig)>,
        ),
        (
            "nolocalhost",
            Box::new(move |cfg: &mut cri::ContainerConfig| {
                security(cfg).seccomp_profile_path = path.clone();
            }),
        ),
        (
            "missing",
            Box::new(|cfg: &mut cri::ContainerConfig| {
                security(cfg).seccomp =
                    Some(profile(ProfileType::Localhost, "/no/such/profile.json"))
            }),
        ),
    ] {
        let (code, msg) = run_script(&mut c, &pod, &pc, &image, name, "true", shape)
            .await
            .unwrap_err();
        assert_eq!(code, Some(Code::InvalidArgument), "{name}: {msg}");
        assert!(msg.contains("seccomp"), "{name}: {msg}");
    }

    // AppArmor: this host has none, so a named profile cannot be honoured.
    if !Path::new("/sys/module/apparmor").exists() {
        let (code, msg) = run_script(&mut c, &pod, &pc, &image, "apparmor", "true", |cfg| {
            security(cfg).apparmor = Some(profile(ProfileType::Localhost, "my-profile"));
        })
        .await
        .unwrap_err();
        assert_eq!(code, Some(Code::FailedPrecondition), "{msg}");
        assert!(msg.contains("AppArmor"), "{msg}");
    }

    // seccomp_default names the profile of requests that name none.
    let confined =
        PodFixture::start_with("seccomp-default", "seccomp_default = \"runtime/default\"").await;
    let PodFixture {
        d: _d2,
        c: mut c2,
        pod: pod2,
        pc: pc2,
        ..
    } = confined;
    let out = run_script(&mut c2, &pod2, &pc2, &image, "unnamed", PROBE, |_| {})
        .await
        .unwrap();
    assert!(
        out.contains("Seccomp:\t2") && out.contains("UNSHARE-DENIED"),
        "{out}"
    );
}

fn privileged_pod(name: &str, d: &Daemon) -> cri::PodSandboxConfig {
    let mut pc = pod_config(name, &d.logs);
    crust_e2e::pod_security(&mut pc).privileged = true;
    pc
}

#[tokio::test]
async fn privileged_needs_a_privileged_pod_and_gets_the_host_devices() {
    let PodFixture {
        d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start("unpriv").await;
    let script = "grep -E '^(CapEff|Seccomp):' /proc/self/status; \
        test -b /dev/loop0 && echo HAS-LOOP0 || echo NO-LOOP0; \
        grep ' /sys ' /proc/self/mountinfo; \
        head -c 1 /proc/timer_list 2>/dev/null | wc -c";
    let (code, msg) = run_script(&mut c, &pod, &pc, &image, "priv", script, |cfg| {
        security(cfg).privileged = true;
    })
    .await
    .unwrap_err();
    assert_eq!(code, Some(Code::InvalidArgument), "{msg}");
    assert!(msg.contains("privileged"), "{msg}");

    let out = run_script(&mut c, &pod, &pc, &image, "plain", script, |_| {})
        .await
        .unwrap();
    assert!(out.contains("NO-LOOP0"), "{out}");
    assert!(out.contains(" /sys ro,"), "/sys read-only: {out}");
    assert!(
        out.lines().last() == Some("0"),
        "/proc/timer_list masked: {out}"
    );

    let ppc = privileged_pod("priv", &d);
    let ppod = c.run_pod(&ppc).await.unwrap();
    let out = run_script(&mut c, &ppod, &ppc, &image, "priv", script, |cfg| {
        security(cfg).privileged = true;
    })
    .await
    .unwrap();
    assert_eq!(
        status_field(&out, "CapEff"),
        cap_mask(&own_capabilities()),
        "{out}"
    );
    assert!(out.contains("Seccomp:\t0"), "{out}");
    if Path::new("/dev/loop0").exists() {
        assert!(out.contains("HAS-LOOP0"), "{out}");
    }
    assert!(out.contains(" /sys rw,"), "/sys writable: {out}");
    assert!(
        out.lines().last() == Some("1"),
        "/proc/timer_list readable: {out}"
    );
}

#[tokio::test]
async fn users_groups_readonly_rootfs_and_paths() {
    let (d, mut c, _) = crust_e2e::with_busybox().await;
    let image = registry().image("hostile");
    c.pull(&image).await.unwrap();
    let pc = pod_config("users", &d.logs);
    let pod = c.run_pod(&pc).await.unwrap();

    let out = run_script(&mut c, &pod, &pc, &image, "byname", "id", |cfg| {
        let s = security(cfg);
        s.run_as_username = "app".into();
        s.supplemental_groups = vec![2000];
    })
    .await
    .unwrap();
    assert!(out.contains("uid=1000(app) gid=1000(app)"), "{out}");
    for g in ["10(wheel)", "44(video)", "2000"] {
        assert!(out.contains(g), "{g} missing: {out}");
    }

    // Strict: only the request's groups, none from the image's /etc/group.
    let mut cfg = container_config("strict", &image, &["id"]);
    {
        let s = security(&mut cfg);
        s.run_as_user = Some(cri::Int64Value { value: 1000 });
        s.run_as_group = Some(cri::Int64Value { value: 3000 });
        s.supplemental_groups = vec![2000];
        s.supplemental_groups_policy = cri::SupplementalGroupsPolicy::Strict as i32;
    }
    let id = c.run(&pod, &pc, cfg).await.unwrap();
    c.wait_exited(&id, LONG).await.unwrap();
    let out = log_lines(&format!("{}/strict/0.log", pc.log_directory))
        .into_iter()
        .map(|(_, l)| l)
        .collect::<String>();
    assert!(out.contains("uid=1000(app) gid=3000"), "{out}");
    assert!(out.contains("2000") && !out.contains("wheel"), "{out}");
    let user = c.status(&id).await.unwrap().user.unwrap().linux.unwrap();
    assert_eq!((user.uid, user.gid), (1000, 3000));
    assert_eq!(user.supplemental_groups, vec![3000, 2000]);

    for (name, shape) in [
        (
            "ghost",
            Box::new(|cfg: &mut cri::ContainerConfig| {
                security(cfg).run_as_username = "ghost".into()
            }) as Box<dyn FnOnce(&mut cri::ContainerConfig)>,
        ),
        (
            "grouponly",
            Box::new(|cfg: &mut cri::ContainerConfig| {
                security(cfg).run_as_group = Some(cri::Int64Value { value: 10 })
            }),
        ),
    ] {
        let (code, msg) = run_script(&mut c, &pod, &pc, &image, name, "true", shape)
            .await
            .unwrap_err();
        assert_eq!(code, Some(Code::InvalidArgument), "{name}: {msg}");
    }

    // Read-only rootfs, default read-only paths, and the request's own masked/readonly lists.
    let script = "touch /rootfs-write 2>/dev/null && echo ROOT-RW || echo ROOT-RO; \
        echo x > /proc/sys/kernel/domainname 2>/dev/null && echo SYS-RW || echo SYS-RO; \
        echo masked:$(cat /etc/group | wc -c); \
        touch /data/v 2>/dev/null && echo VOLUME-RW || echo VOLUME-RO";
    let out = run_script(&mut c, &pod, &pc, &image, "readonly", script, |cfg| {
        security(cfg).readonly_rootfs = true;
    })
    .await
    .unwrap();
    assert!(out.contains("ROOT-RO") && out.contains("SYS-RO"), "{out}");
    assert!(!out.contains("masked:0"), "{out}");
    assert!(
        out.contains("VOLUME-RW"),
        "the image VOLUME stays writable: {out}"
    );
    let out = run_script(&mut c, &pod, &pc, &image, "masked", script, |cfg| {
        security(cfg).masked_paths = vec!["/etc/group".into()];
    })
    .await
    .unwrap();
    assert!(out.contains("ROOT-RW") && out.contains("masked:0"), "{out}");
}

/// A host directory bind-mounted onto itself with the given propagation, unmounted on drop.
struct HostMount(std::path::PathBuf);

impl HostMount {
    fn new(path: &Path, propagation: &str) -> HostMount {
        std::fs::create_dir_all(path).unwrap();
        sh(&format!(
            "mount --bind {0} {0} && mount --make-{propagation} {0}",
            path.display()
        ));
        HostMount(path.to_path_buf())
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .args(["-R", "-l"])
            .arg(&self.0)
            .status();
    }
}

fn sh(script: &str) {
    let st = std::process::Command::new("sh")
        .args(["-c", script])
        .status()
        .unwrap();
    assert!(st.success(), "{script}");
}

fn host_mounted(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(&path.display().to_string()))
}

#[tokio::test]
async fn mounts_propagation_recursive_read_only_volumes_and_escapes() {
    let (d, mut c, busybox) = crust_e2e::with_busybox().await;
    let hostile = registry().image("hostile");
    let devlink = registry().image("devlink");
    c.pull(&hostile).await.unwrap();
    c.pull(&devlink).await.unwrap();
    let pc = privileged_pod("mounts", &d);
    let pod = c.run_pod(&pc).await.unwrap();
    let base = d.dir.path().join("host");
    std::fs::create_dir_all(base.join("rw")).unwrap();
    std::fs::write(base.join("rw/from-host"), "hello").unwrap();
    let bind = |ctr: &str, host: &Path| cri::Mount {
        container_path: ctr.into(),
        host_path: host.display().to_string(),
        ..Default::default()
    };

    // Read-write and read-only binds.
    let rw = base.join("rw");
    let out = run_script(
        &mut c,
        &pod,
        &pc,
        &busybox,
        "binds",
        "cat /rw/from-host; echo; echo x > /rw/from-ctr && echo RW-OK; echo x > /ro/nope 2>/dev/null && echo RO-BROKEN || echo RO-OK",
        |cfg| {
            let mut ro = bind("/ro", &rw);
            ro.readonly = true;
            cfg.mounts = vec![bind("/rw", &rw), ro];
        },
    )
    .await
    .unwrap();
    assert!(
        out.contains("hello") && out.contains("RW-OK") && out.contains("RO-OK"),
        "{out}"
    );
    assert!(base.join("rw/from-ctr").exists());

    // Recursive read-only covers a submount that plain read-only leaves writable.
    let sub = base.join("rro/sub");
    std::fs::create_dir_all(&sub).unwrap();
    sh(&format!(
        "mount -t tmpfs -o size=1m crust-e2e {}",
        sub.display()
    ));
    let _sub_mount = HostMount(sub.clone());
    let rro_host = base.join("rro");
    let script = "echo x > /m/sub/f 2>/dev/null && echo SUB-RW || echo SUB-RO";
    let out = run_script(&mut c, &pod, &pc, &busybox, "ro-sub", script, |cfg| {
        let mut m = bind("/m", &rro_host);
        m.readonly = true;
        cfg.mounts = vec![m];
    })
    .await
    .unwrap();
    assert!(out.contains("SUB-RW"), "plain ro is not recursive: {out}");
    let out = run_script(&mut c, &pod, &pc, &busybox, "rro-sub", script, |cfg| {
        let mut m = bind("/m", &rro_host);
        m.readonly = true;
        m.recursive_read_only = true;
        cfg.mounts = vec![m];
    })
    .await
    .unwrap();
    assert!(out.contains("SUB-RO"), "{out}");

    // Bidirectional needs a shared host mount; then a mount made inside reaches the host.
    let private = base.join("private");
    let _private = HostMount::new(&private, "private");
    let (code, msg) = run_script(
        &mut c,
        &pod,
        &pc,
        &busybox,
        "bidir-private",
        "true",
        |cfg| {
            let mut m = bind("/shared", &private);
            m.propagation = cri::MountPropagation::PropagationBidirectional as i32;
            cfg.mounts = vec![m];
        },
    )
    .await
    .unwrap_err();
    assert_eq!(code, Some(Code::FailedPrecondition), "{msg}");
    assert!(msg.contains("private"), "{msg}");
    let shared = base.join("shared");
    let _shared = HostMount::new(&shared, "shared");
    std::fs::create_dir_all(shared.join("inner")).unwrap();
    std::fs::create_dir_all(shared.join("late")).unwrap();
    let mut cfg = container_config(
        "bidir",
        &busybox,
        &[
            "sh",
            "-c",
            "mount -t tmpfs ctr-made /shared/inner && touch /shared/inner/made-inside; \
             while ! grep -q ' /shared/late ' /proc/self/mountinfo; do sleep 0.1; done; echo SAW-HOST-MOUNT; sleep 1000",
        ],
    );
    {
        let s = security(&mut cfg);
        s.privileged = true;
        let mut m = bind("/shared", &shared);
        m.propagation = cri::MountPropagation::PropagationBidirectional as i32;
        cfg.mounts = vec![m];
    }
    let id = c.run(&pod, &pc, cfg).await.unwrap();
    let inner = shared.join("inner");
    assert!(
        crust_e2e::eventually(LONG, || async { inner.join("made-inside").exists() }).await,
        "the container's mount did not propagate to the host"
    );
    assert!(host_mounted(&inner));
    sh(&format!(
        "mount -t tmpfs host-made {}",
        shared.join("late").display()
    ));
    let log = format!("{}/bidir/0.log", pc.log_directory);
    assert!(
        crust_e2e::eventually(LONG, || async {
            log_lines(&log).iter().any(|(_, l)| l == "SAW-HOST-MOUNT")
        })
        .await,
        "the host's mount did not propagate into the container"
    );
    c.stop(&id, 0).await.unwrap();
    let _ = std::process::Command::new("umount").arg(&inner).status();
    let _ = std::process::Command::new("umount")
        .arg(shared.join("late"))
        .status();

    // A missing host path is an error, not a directory created on the node.
    let missing = base.join("not-there");
    let (code, msg) = run_script(&mut c, &pod, &pc, &busybox, "missing", "true", |cfg| {
        cfg.mounts = vec![bind("/x", &missing)];
    })
    .await
    .unwrap_err();
    assert_eq!(code, Some(Code::InvalidArgument), "{msg}");
    assert!(!missing.exists());

    // The image's VOLUME is an empty writable directory of its own; a mount target through
    // the image's symlink to a host path stays inside the rootfs (CVE-2021-30465).
    let target = Path::new("/tmp/crust-escape-target");
    let _ = std::fs::remove_dir_all(target);
    let out = run_script(
        &mut c,
        &pod,
        &pc,
        &hostile,
        "volume",
        "grep -c ' /data ' /proc/self/mountinfo; ls -A /data | wc -l; touch /data/f && echo VOL-RW; cat /escape/in/from-host",
        |cfg| cfg.mounts = vec![bind("/escape/in", &rw)],
    )
    .await
    .unwrap();
    assert!(out.starts_with("1\n0\nVOL-RW"), "{out}");
    assert!(out.contains("hello"), "{out}");
    assert!(
        !target.exists(),
        "a mount target escaped the rootfs to {}",
        target.display()
    );
    // Through a dangling link the mount is refused (libpathrs will not create the target)
    // and nothing appears on the host either.
    let dangling = Path::new("/tmp/crust-dangling-target");
    let _ = std::fs::remove_dir_all(dangling);
    let r = run_script(&mut c, &pod, &pc, &hostile, "dangling", "true", |cfg| {
        cfg.mounts = vec![bind("/dangling/in", &rw)]
    })
    .await;
    assert!(r.is_err(), "a mount through a dangling symlink was made");
    assert!(
        !dangling.exists(),
        "a mount target escaped to {}",
        dangling.display()
    );

    // An image whose /dev is a symlink is refused (CVE-2026-41579).
    let (code, msg) = run_script(&mut c, &pod, &pc, &devlink, "devlink", "true", |_| {})
        .await
        .unwrap_err();
    assert_eq!(code, Some(Code::FailedPrecondition), "{msg}");
    assert!(msg.contains("/dev"), "{msg}");
}

#[tokio::test]
async fn devices_and_cdi_devices() {
    // Two block devices no container gets by default.
    if !Path::new("/dev/loop7").exists() || !Path::new("/dev/loop6").exists() {
        eprintln!("SKIP: this host has no /dev/loop6 and /dev/loop7");
        return;
    }
    let cdi = tempfile::tempdir().unwrap();
    std::fs::write(
        cdi.path().join("example.yaml"),
        "cdiVersion: 0.6.0\nkind: example.com/test\ndevices:\n- name: one\n  containerEdits:\n    env: [EXAMPLE_DEVICE=one]\n    deviceNodes:\n    - path: /dev/example-loop\n      hostPath: /dev/loop6\n      permissions: r\n",
    )
    .unwrap();
    let d = Daemon::start_with(&format!("cdi_spec_dirs = [{:?}]", cdi.path()))
        .await
        .unwrap();
    let mut c = d.cri().await.unwrap();
    let image = registry().busybox();
    c.pull(&image).await.unwrap();
    let pc = pod_config("devices", &d.logs);
    let pod = c.run_pod(&pc).await.unwrap();

    let probe = |dev: &str| {
        format!(
            "ls -l {dev} | cut -c1; dd if={dev} of=/dev/null count=1 2>/dev/null && echo READ-OK || echo READ-DENIED; \
             dd if=/dev/zero of={dev} count=1 2>/dev/null && echo WRITE-OK || echo WRITE-DENIED; echo env=$EXAMPLE_DEVICE"
        )
    };
    let out = run_script(
        &mut c,
        &pod,
        &pc,
        &image,
        "device",
        &probe("/dev/xloop"),
        |cfg| {
            cfg.devices = vec![cri::Device {
                container_path: "/dev/xloop".into(),
                host_path: "/dev/loop7".into(),
                permissions: "r".into(),
            }];
        },
    )
    .await
    .unwrap();
    assert!(out.starts_with('b'), "a block device node: {out}");
    assert!(
        out.contains("READ-OK") && out.contains("WRITE-DENIED"),
        "{out}"
    );

    let out = run_script(
        &mut c,
        &pod,
        &pc,
        &image,
        "nodevice",
        &probe("/dev/loop7"),
        |_| {},
    )
    .await
    .unwrap();
    assert!(
        out.contains("READ-DENIED"),
        "no device without a request: {out}"
    );

    let out = run_script(
        &mut c,
        &pod,
        &pc,
        &image,
        "cdi",
        &probe("/dev/example-loop"),
        |cfg| {
            cfg.cdi_devices = vec![cri::CdiDevice {
                name: "example.com/test=one".into(),
            }];
        },
    )
    .await
    .unwrap();
    assert!(
        out.contains("READ-OK") && out.contains("WRITE-DENIED"),
        "{out}"
    );
    assert!(out.contains("env=one"), "{out}");

    let (code, msg) = run_script(&mut c, &pod, &pc, &image, "nocdi", "true", |cfg| {
        cfg.cdi_devices = vec![cri::CdiDevice {
            name: "example.com/test=two".into(),
        }];
    })
    .await
    .unwrap_err();
    assert_eq!(code, Some(Code::NotFound), "{msg}");
    assert!(msg.contains("example.com/test=two"), "{msg}");
    let (code, msg) = run_script(&mut c, &pod, &pc, &image, "baddev", "true", |cfg| {
        cfg.devices = vec![cri::Device {
            container_path: "/etc/x".into(),
            host_path: "/dev/loop7".into(),
            permissions: "rw".into(),
        }];
    })
    .await
    .unwrap_err();
    assert_eq!(code, Some(Code::InvalidArgument), "{msg}");
}

/// CVE-2024-21626: a working directory of /proc/self/fd/N must never leave the process in a
/// host directory through a descriptor leaked into the container's init.
#[tokio::test]
async fn workdir_through_leaked_fds_does_not_escape() {
    let PodFixture {
        d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start("cve").await;
    let mut started = 0;
    for fd in 3..=12 {
        let name = format!("fd{fd}");
        let mut cfg = container_config(&name, &image, &["sleep", "1000"]);
        cfg.working_dir = format!("/proc/self/fd/{fd}");
        let Ok(id) = c.run(&pod, &pc, cfg).await else {
            continue; // refused: nothing escaped
        };
        let pid = c.container_pid(&id).await.unwrap();
        if let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) {
            started += 1;
            assert!(
                cwd.starts_with(&d.root),
                "fd {fd}: the container's cwd {} is outside its rootfs",
                cwd.display()
            );
        }
        c.stop(&id, 0).await.unwrap();
    }
    eprintln!("{started} of 10 /proc/self/fd workdirs started (inside the rootfs)");
}

#[tokio::test]
async fn user_namespaces_are_reported_unsupported() {
    let (d, mut c, _image) = crust_e2e::with_busybox().await;
    let mut pc = pod_config("userns", &d.logs);
    pc.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap()
        .userns_options = Some(cri::UserNamespace {
        mode: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    });
    let e = c.run_pod(&pc).await.unwrap_err();
    assert_eq!(code_of(&e), Some(Code::Unimplemented), "{e:#}");
    let st =
        c.rt.status(cri::StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner();
    let features = st.runtime_handlers[0].features.unwrap();
    assert!(!features.user_namespaces);
    assert!(features.recursive_read_only_mounts);
    assert!(st.features.unwrap().supplemental_groups_policy);
}
