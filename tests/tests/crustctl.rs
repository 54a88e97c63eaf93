//! The Docker-like workflow through crustctl against a real crustd.

use std::process::Output;

use crust_e2e::{Daemon, registry};

fn ctl(d: &Daemon, args: &[&str]) -> Output {
    crust_e2e::crustctl(d, args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn docker_like_workflow() {
    let d = Daemon::start().await.unwrap();
    let image = registry().busybox();

    let v = ctl(&d, &["version"]);
    assert!(v.status.success());
    assert!(stdout(&v).contains("crust"));

    // run pulls when needed, prints the output and returns the exit code.
    let o = ctl(
        &d,
        &[
            "run",
            "--rm",
            "-e",
            "WHO=world",
            &image,
            "sh",
            "-c",
            "echo hello $WHO; echo warn >&2; exit 3",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert_eq!(stdout(&o), "hello world\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "warn\n");
    let images = stdout(&ctl(&d, &["images"]));
    assert!(images.contains("crust-test/busybox"), "{images}");
    // --rm left nothing behind.
    assert_eq!(stdout(&ctl(&d, &["ps", "-a", "-q"])), "");

    // Detached run, ps, logs, stop, rm.
    let o = ctl(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "web",
            &image,
            "sh",
            "-c",
            "echo started; exec sleep 1000",
        ],
    );
    assert!(o.status.success(), "{o:?}");
    let id = stdout(&o).trim().to_string();
    assert_eq!(id.len(), 64);
    let ps = stdout(&ctl(&d, &["ps"]));
    assert!(
        ps.contains("web") && ps.contains(&id[..12]) && ps.contains("Up"),
        "{ps}"
    );
    assert!(
        crust_e2e::eventually(std::time::Duration::from_secs(10), || async {
            stdout(&ctl(&d, &["logs", "web"])) == "started\n"
        })
        .await
    );
    // exec runs in the container and returns the command's code and output.
    let o = ctl(
        &d,
        &[
            "exec",
            "web",
            "sh",
            "-c",
            "echo in $(hostname); echo oops >&2; exit 4",
        ],
    );
    assert_eq!(o.status.code(), Some(4), "{o:?}");
    assert_eq!(stdout(&o), "in web\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "oops\n");
    // logs with timestamps, stats and a bounded event listener.
    let ts = stdout(&ctl(&d, &["logs", "--timestamps", "web"]));
    let (stamp, line) = ts.trim_end().split_once(' ').unwrap();
    assert!(stamp.ends_with('Z') && stamp.contains('T'), "{ts}");
    assert_eq!(line, "started");
    let stats = stdout(&ctl(&d, &["stats", "--no-stream"]));
    assert!(
        stats.contains("web") && stats.contains("WORKING SET"),
        "{stats}"
    );
    let o = ctl(&d, &["stop", "-t", "1", "web"]);
    assert!(o.status.success(), "{o:?}");
    let ps = stdout(&ctl(&d, &["ps"]));
    assert!(!ps.contains("web"), "{ps}");
    let psa = stdout(&ctl(&d, &["ps", "-a"]));
    assert!(
        psa.contains("Exited (143)") || psa.contains("Exited (137)"),
        "{psa}"
    );
    let inspect = stdout(&ctl(&d, &["inspect", &id[..12]]));
    assert!(inspect.contains(&id), "{inspect}");
    assert!(ctl(&d, &["rm", "web"]).status.success());
    assert_eq!(stdout(&ctl(&d, &["ps", "-a", "-q"])), "");

    // kill, and rm -f of a running container.
    let id = stdout(&ctl(&d, &["run", "-d", &image, "sleep", "1000"]))
        .trim()
        .to_string();
    let o = ctl(&d, &["rm", &id]);
    assert!(!o.status.success(), "rm of a running container needs -f");
    assert!(String::from_utf8_lossy(&o.stderr).contains("running"));
    assert!(ctl(&d, &["kill", &id]).status.success());
    assert!(stdout(&ctl(&d, &["ps", "-a"])).contains("Exited (137)"));
    assert!(ctl(&d, &["rm", "-f", &id]).status.success());
    let id = stdout(&ctl(&d, &["run", "-d", &image, "sleep", "1000"]))
        .trim()
        .to_string();
    assert!(ctl(&d, &["rm", "-f", &id]).status.success());
    assert_eq!(stdout(&ctl(&d, &["ps", "-a", "-q"])), "");

    // Errors are one line and a non-zero exit.
    let o = ctl(&d, &["logs", "nosuch"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("nosuch"));

    assert!(ctl(&d, &["rmi", &image]).status.success());
    assert!(!stdout(&ctl(&d, &["images"])).contains("crust-test/busybox"));
    d.shutdown().await;
}

/// `run`'s container flags (-v, --memory, --cpus, --user, --cap-add/--cap-drop, --read-only,
/// --security-opt, --privileged) reach the container, and `update` changes its limits.
#[tokio::test]
async fn run_flags_shape_the_container_and_update_changes_limits() {
    let d = Daemon::start().await.unwrap();
    let image = registry().busybox();
    let host = d.dir.path().join("vol");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("in"), "from-host").unwrap();
    let vol = format!("{}:/vol:ro", host.display());
    let o = ctl(
        &d,
        &[
            "run",
            "--rm",
            "-v",
            &vol,
            "--memory",
            "48m",
            "--cpus",
            "0.5",
            "--user",
            "app",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "net_raw",
            "--read-only",
            "--security-opt",
            "no-new-privileges",
            "--security-opt",
            "seccomp=unconfined",
            &image,
            "sh",
            "-c",
            "cat /vol/in; echo; touch /vol/x 2>/dev/null || echo vol-ro; touch /x 2>/dev/null || echo root-ro; \
             id -u; grep -E '^(CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; \
             cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max 2>/dev/null; \
             cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu.max 2>/dev/null; true",
        ],
    );
    let out = stdout(&o);
    assert!(o.status.success(), "{o:?}");
    for want in [
        "from-host",
        "vol-ro",
        "root-ro",
        "1000",
        "CapBnd:\t0000000000002000",
        "NoNewPrivs:\t1",
        "Seccomp:\t0",
        &(48u64 << 20).to_string(),
        "50000",
    ] {
        assert!(out.contains(want), "{want} missing in {out}");
    }

    // --privileged makes a privileged pod and container (host devices, full capabilities).
    let o = ctl(
        &d,
        &[
            "run",
            "--rm",
            "--privileged",
            &image,
            "sh",
            "-c",
            "grep Seccomp: /proc/self/status; ls /dev | wc -l",
        ],
    );
    let out = stdout(&o);
    assert!(o.status.success(), "{o:?}");
    assert!(out.contains("Seccomp:\t0"), "{out}");

    // update changes a running container's memory limit.
    let o = ctl(
        &d,
        &[
            "run", "-d", "--name", "limited", "--memory", "32m", &image, "sleep", "1000",
        ],
    );
    assert!(o.status.success(), "{o:?}");
    let o = ctl(&d, &["update", "--memory", "96m", "limited"]);
    assert!(o.status.success(), "{o:?}");
    let o = ctl(&d, &["inspect", "limited"]);
    let inspect: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        inspect["resources"]["linux"]["memory_limit_in_bytes"],
        serde_json::json!(96u64 << 20),
        "{inspect}"
    );
    let o = ctl(
        &d,
        &[
            "exec",
            "limited",
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max 2>/dev/null",
        ],
    );
    assert!(stdout(&o).contains(&(96u64 << 20).to_string()), "{o:?}");

    // Bad flags are refused before anything is made.
    let o = ctl(&d, &["run", "--rm", "--memory", "lots", &image, "true"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--memory"),
        "{o:?}"
    );
    let o = ctl(
        &d,
        &["run", "--rm", "-v", "/no/such/dir:/x", &image, "true"],
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("/no/such/dir"),
        "{o:?}"
    );
    let pods = stdout(&ctl(&d, &["pods"]));
    assert_eq!(
        pods.lines().count(),
        2,
        "only the header and `limited`: {pods}"
    );
    let o = ctl(&d, &["rm", "-f", "limited"]);
    assert!(o.status.success(), "{o:?}");
}

/// `images` shows digests; `prune` removes exited containers (and their pods), then the
/// images nothing uses any more, and leaves running containers and their images alone.
#[tokio::test]
async fn prune_removes_exited_containers_and_unused_images() {
    let d = Daemon::start().await.unwrap();
    let busybox = registry().busybox();
    let layered = registry().image("layered");
    assert!(
        ctl(&d, &["run", "--name", "done", &busybox, "true"])
            .status
            .success()
    );
    assert!(
        ctl(
            &d,
            &["run", "-d", "--name", "live", &busybox, "sleep", "1000"]
        )
        .status
        .success()
    );
    assert!(ctl(&d, &["pull", &layered]).status.success());
    let images = stdout(&ctl(&d, &["images"]));
    assert!(
        images.contains("DIGEST") && images.contains("sha256:"),
        "{images}"
    );

    let o = ctl(&d, &["prune"]);
    assert!(o.status.success(), "{o:?}");
    assert!(
        stdout(&o).contains("pruned 1 containers and 1 images"),
        "{}",
        stdout(&o)
    );
    let ps = stdout(&ctl(&d, &["ps", "-a"]));
    assert!(ps.contains("live") && !ps.contains("done"), "{ps}");
    let images = stdout(&ctl(&d, &["images"]));
    assert!(
        images.contains("crust-test/busybox") && !images.contains("layered"),
        "{images}"
    );
    let pods = stdout(&ctl(&d, &["pods"]));
    assert!(
        !pods.contains("done"),
        "the exited container's pod went with it: {pods}"
    );

    assert!(ctl(&d, &["rm", "-f", "live"]).status.success());
    let o = ctl(&d, &["prune", "--images-only"]);
    assert!(
        stdout(&o).contains("pruned 0 containers and 1 images"),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        stdout(&ctl(&d, &["images"])).lines().count(),
        1,
        "only the header left"
    );
}

/// `crustctl pull` reports each layer as it completes (plain lines when not on a terminal)
/// and a summary, and prints the image id on stdout. Multi-threaded: the slow proxy runs
/// in this process while the test waits for crustctl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_reports_progress() {
    use std::sync::atomic::Ordering::SeqCst;
    let proxy = crust_e2e::faultproxy::FaultProxy::start(&registry().addr).await;
    proxy.faults.slow_blob_ms.store(700, SeqCst);
    let d = Daemon::start_config(
        "",
        &format!(
            "[image.registries.\"slow.test\"]\nmirrors = [\"http://{}\"]\nskip_upstream = true",
            proxy.addr
        ),
    )
    .await
    .unwrap();
    let o = ctl(&d, &["pull", "slow.test/crust-test/layered:latest"]);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).starts_with("sha256:"), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches(" done").count(), 2, "a line per layer: {err}");
    assert!(
        err.contains("pulled slow.test/crust-test/layered:latest"),
        "{err}"
    );
}
