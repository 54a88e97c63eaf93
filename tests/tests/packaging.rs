//! The node installer (`packaging/install.sh`, which the Helm chart's installer pods run too)
//! against a temporary root: what it writes, that it switches kubelet and restores it, and
//! which systemctl commands it runs (through a recording stand-in).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crust_e2e::bin_dir;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn install(root: &Path, systemctl: &Path, args: &[&str]) -> String {
    let out = Command::new("sh")
        .arg(repo().join("packaging/install.sh"))
        .arg("--root")
        .arg(root)
        .arg("--bin")
        .arg(bin_dir())
        .arg("--systemctl")
        .arg(systemctl)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "install.sh {args:?} failed:\n{text}");
    text
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn install_switches_kubelet_and_uninstall_restores_the_node() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("host");
    let kubelet = root.join("var/lib/kubelet");
    std::fs::create_dir_all(&kubelet).unwrap();
    let kubelet_cfg = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\ncontainerRuntimeEndpoint: unix:///run/containerd/containerd.sock\n";
    let flags = "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///run/containerd/containerd.sock --pod-infra-container-image=pause\"\n";
    std::fs::write(kubelet.join("config.yaml"), kubelet_cfg).unwrap();
    std::fs::write(kubelet.join("kubeadm-flags.env"), flags).unwrap();
    let calls = tmp.path().join("systemctl.log");
    let systemctl = tmp.path().join("systemctl");
    std::fs::write(
        &systemctl,
        format!("#!/bin/sh\necho \"$*\" >> {}\n", calls.display()),
    )
    .unwrap();
    std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();

    let out = install(&root, &systemctl, &["--switch-kubelet", "install"]);
    assert!(out.contains("WARNING: kubelet now uses crust"), "{out}");
    for b in ["crustd", "crustctl", "crust-monitor"] {
        assert_eq!(mode(&root.join("usr/local/bin").join(b)), 0o755);
    }
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/crust.service")).unwrap();
    assert!(unit.contains("Delegate=yes") && unit.contains("KillMode=process"));
    assert_eq!(
        std::fs::read_link(root.join("etc/systemd/system/multi-user.target.wants/crust.service"))
            .unwrap(),
        Path::new("/etc/systemd/system/crust.service")
    );
    let config = root.join("etc/crust/config.toml");
    assert_eq!(mode(&config), 0o600);
    assert_eq!(mode(&root.join("etc/crust")), 0o700);
    assert_eq!(mode(&root.join("var/lib/crust")), 0o700);
    assert!(root.join("etc/crictl.yaml").is_file());
    let now = std::fs::read_to_string(kubelet.join("config.yaml")).unwrap();
    assert!(
        now.contains("containerRuntimeEndpoint: unix:///run/crust/crust.sock"),
        "{now}"
    );
    assert!(
        now.contains("cgroupDriver: systemd"),
        "the rest is kept: {now}"
    );
    let now = std::fs::read_to_string(kubelet.join("kubeadm-flags.env")).unwrap();
    assert!(
        now.contains("--container-runtime-endpoint=unix:///run/crust/crust.sock --pod-infra"),
        "{now}"
    );
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        "daemon-reload\nenable crust.service\nrestart crust.service\nrestart kubelet\n"
    );

    // Again, as an upgrade: an operator's edited config stays, the backups stay the originals.
    std::fs::write(&config, "log_level = \"debug\"\n").unwrap();
    let out = install(&root, &systemctl, &["--switch-kubelet", "install"]);
    assert!(out.contains("kept"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "log_level = \"debug\"\n"
    );
    assert_eq!(
        std::fs::read_to_string(kubelet.join("config.yaml.crust-backup")).unwrap(),
        kubelet_cfg
    );

    // A bad config is refused before anything on the node changes.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "cgroup_driver = \"upstart\"\n").unwrap();
    let st = Command::new("sh")
        .arg(repo().join("packaging/install.sh"))
        .args(["--root".as_ref(), root.as_os_str()])
        .args(["--bin".as_ref(), bin_dir().as_os_str()])
        .args(["--config".as_ref(), bad.as_os_str()])
        .args(["--force-config", "--no-start", "install"])
        .output()
        .unwrap();
    assert!(!st.status.success());
    assert!(String::from_utf8_lossy(&st.stderr).contains("cgroup_driver"));

    std::fs::write(&calls, "").unwrap();
    install(&root, &systemctl, &["--purge", "uninstall"]);
    assert_eq!(
        std::fs::read_to_string(kubelet.join("config.yaml")).unwrap(),
        kubelet_cfg
    );
    assert_eq!(
        std::fs::read_to_string(kubelet.join("kubeadm-flags.env")).unwrap(),
        flags
    );
    for gone in [
        "usr/local/bin/crustd",
        "usr/local/bin/crustctl",
        "usr/local/bin/crust-monitor",
        "etc/systemd/system/crust.service",
        "etc/systemd/system/multi-user.target.wants/crust.service",
        "etc/crictl.yaml",
        "etc/crust",
        "var/lib/crust",
        "var/lib/kubelet/config.yaml.crust-backup",
    ] {
        assert!(!root.join(gone).exists(), "{gone} left behind");
    }
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        "restart kubelet\ndisable --now crust.service\ndaemon-reload\n"
    );
}

#[test]
fn the_unit_keeps_containers_across_restarts_and_points_at_the_installed_paths() {
    let unit = std::fs::read_to_string(repo().join("packaging/crust.service")).unwrap();
    for line in [
        "ExecStart=/usr/local/bin/crustd --config /etc/crust/config.toml",
        "Delegate=yes",
        "KillMode=process",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line}");
    }
}

/// The installer image as the Helm chart runs it: built by build-installer-image.sh, pushed to
/// the test registry, run by crust itself with a fake host root at /host.
#[tokio::test(flavor = "multi_thread")]
async fn the_installer_image_installs_crust_into_a_host_root() {
    use crust_e2e::{Daemon, container_config, cri, pod_config, registry};
    let image = format!("{}/crust-test/installer:e2e", registry().addr);
    let (ok, out) = {
        let o = Command::new("bash")
            .arg(repo().join("packaging/build-installer-image.sh"))
            .arg("--bin")
            .arg(bin_dir())
            .arg("--push")
            .arg(&image)
            .output()
            .unwrap();
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    };
    assert!(ok, "build-installer-image.sh:\n{out}");

    let d = Daemon::start().await.unwrap();
    let mut c = d.cri().await.unwrap();
    c.pull(&image).await.unwrap();
    let host = d.dir.path().join("fake-host");
    std::fs::create_dir_all(&host).unwrap();
    let pc = pod_config("installer", &d.logs);
    let pod = c.run_pod(&pc).await.unwrap();
    let mut cfg = container_config(
        "install",
        &image,
        &[
            "/opt/crust/install.sh",
            "--root",
            "/host",
            "--no-start",
            "install",
        ],
    );
    cfg.mounts = vec![cri::Mount {
        container_path: "/host".into(),
        host_path: host.display().to_string(),
        ..Default::default()
    }];
    let ctr = c.run(&pod, &pc, cfg).await.unwrap();
    let st = c
        .wait_exited(&ctr, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let log = std::fs::read_to_string(&st.log_path).unwrap_or_default();
    assert_eq!(st.exit_code, 0, "install.sh in the image failed:\n{log}");
    assert!(log.contains("installed crust"), "{log}");
    for f in [
        "usr/local/bin/crustd",
        "usr/local/bin/crustctl",
        "usr/local/bin/crust-monitor",
        "etc/systemd/system/crust.service",
        "etc/crust/config.toml",
        "etc/crictl.yaml",
    ] {
        assert!(host.join(f).is_file(), "{f} not installed");
    }
    // The installed crustd is a working binary on this host.
    let (ok, out) = {
        let o = Command::new(host.join("usr/local/bin/crustd"))
            .args(["config", "check"])
            .arg(host.join("etc/crust/config.toml"))
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert!(ok, "{out}");
    c.remove_pod(&pod).await.unwrap();
    d.shutdown().await;
}

/// Uninstalling takes crust's pods down with it: containers survive a restart of crustd by
/// design, so without this they would outlive the runtime.
#[tokio::test(flavor = "multi_thread")]
async fn uninstall_removes_the_pods_crust_runs() {
    use crust_e2e::{Daemon, container_config, cri, pod_config, registry};
    let d = Daemon::start().await.unwrap();
    let mut c = d.cri().await.unwrap();
    let image = registry().busybox();
    c.pull(&image).await.unwrap();
    for name in ["one", "two"] {
        let pc = pod_config(name, &d.logs);
        let pod = c.run_pod(&pc).await.unwrap();
        c.run(&pod, &pc, container_config(name, &image, &["sleep", "300"]))
            .await
            .unwrap();
    }
    let root = d.dir.path().join("host");
    std::fs::create_dir_all(root.join("run/crust")).unwrap();
    std::os::unix::fs::symlink(&d.socket, root.join("run/crust/crust.sock")).unwrap();
    let st = Command::new("sh")
        .arg(repo().join("packaging/install.sh"))
        .arg("--root")
        .arg(&root)
        .arg("--bin")
        .arg(bin_dir())
        .args(["--no-start", "uninstall"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&st.stdout).into_owned();
    assert!(st.status.success(), "{out}");
    assert!(out.contains("removing crust's pods"), "{out}");
    let left = c.list_pods().await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    let ctrs = c
        .list_containers(cri::ContainerFilter::default())
        .await
        .unwrap();
    assert!(ctrs.is_empty(), "{ctrs:?}");
    d.shutdown().await;
}
