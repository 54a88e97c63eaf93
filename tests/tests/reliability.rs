//! Reliability under faults and load: crustd killed with SIGKILL at random points and stopped
//! with SIGTERM under load, a simulated reboot, many clients at once, churn, a full disk.
//! Hostile input has its own property test, fuzz.rs.
//! These are the short versions; `scripts/stress.sh` runs them long (CRUST_STRESS_* below).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use crust_e2e::bridge::{Bridge, network_ready};
use crust_e2e::{
    Cri, Daemon, PodFixture, container_config, cri, eventually, footprint, pod_config, registry,
};
use rand::Rng;
use tonic::Code;

const LONG: Duration = Duration::from_secs(60);

/// A count from the environment (the stress script raises them), or the short default.
fn scale(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Every pod and container the daemon lists answers its status call, and every container's
/// pod exists: nothing is half there.
async fn assert_consistent(c: &mut Cri) {
    let pods = c.list_pods().await.unwrap();
    let pod_ids: BTreeSet<String> = pods.iter().map(|p| p.id.clone()).collect();
    for p in &pods {
        c.pod_status(&p.id)
            .await
            .unwrap_or_else(|e| panic!("listed pod {} has no status: {e}", p.id));
    }
    let ctrs = c
        .list_containers(cri::ContainerFilter::default())
        .await
        .unwrap();
    for ct in ctrs {
        assert!(
            pod_ids.contains(&ct.pod_sandbox_id),
            "container {} of a pod that is gone",
            ct.id
        );
        c.status(&ct.id)
            .await
            .unwrap_or_else(|e| panic!("listed container {} has no status: {e}", ct.id));
    }
}

async fn remove_all_pods(c: &mut Cri) {
    let pods = c.list_pods().await.unwrap();
    for p in pods {
        c.remove_pod(&p.id)
            .await
            .unwrap_or_else(|e| panic!("remove pod {} after a crash: {e}", p.id));
    }
}

/// One pod's whole life, as kubelet drives it.
async fn pod_life(c: &mut Cri, d_logs: &Path, name: &str, image: &str) -> anyhow::Result<()> {
    let pc = pod_config(name, d_logs);
    let pod = c.run_pod(&pc).await?;
    let ctr = c
        .create(&pod, &pc, container_config("c", image, &["sleep", "60"]))
        .await?;
    c.start(&ctr).await?;
    c.stop(&ctr, 0).await?;
    c.remove_pod(&pod).await
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_points_leaves_objects_whole_or_gone_and_nothing_orphaned() {
    let mut d = Daemon::start().await.unwrap();
    let net = Bridge::new(&d);
    let image = registry().busybox();
    let layered = registry().image("layered");
    let mut c = d.cri().await.unwrap();
    assert!(network_ready(&mut c).await);
    c.pull(&image).await.unwrap();
    let empty = footprint(&d, Some(&net));
    // The kills land anywhere in a pod's life (and the pull after it): time one first.
    let t0 = std::time::Instant::now();
    pod_life(&mut c, &d.logs.clone(), "timing", &image)
        .await
        .unwrap();
    let life_ms = (t0.elapsed().as_millis() as u64).max(20) * 3 / 2;
    let rounds = scale("CRUST_STRESS_KILLS", 8);
    let mut rng = rand::rng();
    for round in 0..rounds {
        // Work in flight: a pod's life, and a pull of an image that is not there yet.
        let mut work = d.cri().await.unwrap();
        let logs = d.logs.clone();
        let (img, img2) = (image.clone(), layered.clone());
        let name = format!("kill{round}");
        let life = tokio::spawn(async move {
            let _ = pod_life(&mut work, &logs, &name, &img).await;
            let _ = work.pull(&img2).await;
        });
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..life_ms))).await;
        d.kill9();
        let _ = life.await;
        d.spawn().await.unwrap();
        let mut c = d.cri().await.unwrap();
        assert_consistent(&mut c).await;
        remove_all_pods(&mut c).await;
        // A pull cut short is either complete or absent, and pulls again either way.
        let st = c
            .img
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: layered.clone(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner();
        if st.image.is_some() {
            c.img
                .remove_image(cri::RemoveImageRequest {
                    image: Some(cri::ImageSpec {
                        image: layered.clone(),
                        ..Default::default()
                    }),
                })
                .await
                .unwrap();
        }
        let settled = eventually(LONG, || async { footprint(&d, Some(&net)) == empty }).await;
        assert!(
            settled,
            "round {round}: left behind {:?} (started with {empty:?})",
            footprint(&d, Some(&net))
        );
    }
    let mut c = d.cri().await.unwrap();
    c.pull(&layered).await.unwrap();
    pod_life(&mut c, &d.logs.clone(), "after-kills", &layered)
        .await
        .unwrap();
    // Nothing half-written is left in the content store.
    let tmp = d.root.join("content/tmp");
    let partial: Vec<_> = std::fs::read_dir(&tmp)
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(partial.is_empty(), "partial downloads left: {partial:?}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_finishes_calls_in_flight_and_leaves_containers_running() {
    let mut d = Daemon::start().await.unwrap();
    let net = Bridge::new(&d);
    let image = registry().busybox();
    let mut c = d.cri().await.unwrap();
    c.pull(&image).await.unwrap();
    let empty = footprint(&d, Some(&net));
    let pc = pod_config("steady", &d.logs);
    let pod = c.run_pod(&pc).await.unwrap();
    let keeper = c
        .run(
            &pod,
            &pc,
            container_config("keeper", &image, &["sleep", "600"]),
        )
        .await
        .unwrap();
    let keeper_pid = c.container_pid(&keeper).await.unwrap();
    // Ignores SIGTERM, so stopping it takes the whole grace period.
    let stubborn = c
        .run(
            &pod,
            &pc,
            container_config(
                "stubborn",
                &image,
                &["sh", "-c", "trap '' TERM; while true; do sleep 1; done"],
            ),
        )
        .await
        .unwrap();

    // Load: clients running pods through their whole lives until the daemon stops answering.
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let lives = std::sync::Arc::new(AtomicUsize::new(0));
    let mut load = tokio::task::JoinSet::new();
    for w in 0..scale("CRUST_STRESS_TERM_CLIENTS", 6) {
        let mut c = d.cri().await.unwrap();
        let (logs, image) = (d.logs.clone(), image.clone());
        let (stop, lives) = (stop.clone(), lives.clone());
        load.spawn(async move {
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if let Err(e) = pod_life(&mut c, &logs, &format!("load{w}-{i}"), &image).await {
                    return Some(e.downcast::<tonic::Status>().expect("a gRPC status"));
                }
                lives.fetch_add(1, Ordering::Relaxed);
            }
            None
        });
    }
    // The load is under way: some pods have been through their whole lives.
    assert!(eventually(LONG, || async { lives.load(Ordering::Relaxed) >= 3 }).await);
    // Calls in flight when SIGTERM comes: a stop with a 3 s grace period and a 2 s exec.
    let mut c1 = d.cri().await.unwrap();
    let (stubborn1, keeper1) = (stubborn.clone(), keeper.clone());
    let stopping = tokio::spawn(async move { c1.stop(&stubborn1, 3).await });
    let mut c2 = d.cri().await.unwrap();
    let execing = tokio::spawn(async move {
        c2.rt
            .exec_sync(cri::ExecSyncRequest {
                container_id: keeper1,
                cmd: vec!["sh".into(), "-c".into(), "sleep 2; echo finished".into()],
                timeout: 0,
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let code = tokio::task::block_in_place(|| d.terminate());
    assert_eq!(code, Some(0), "crustd's exit after SIGTERM");
    stop.store(true, Ordering::Relaxed);

    stopping
        .await
        .unwrap()
        .expect("the StopContainer in flight finished");
    let exec = execing
        .await
        .unwrap()
        .expect("the ExecSync in flight finished")
        .into_inner();
    assert_eq!(String::from_utf8_lossy(&exec.stdout).trim(), "finished");
    // The load's calls either completed or were turned away whole: no call was cut short.
    while let Some(r) = load.join_next().await {
        if let Some(s) = r.unwrap() {
            assert!(
                matches!(s.code(), Code::Unavailable | Code::Cancelled),
                "a call during shutdown: {s:?}"
            );
        }
    }
    // Containers outlive the daemon.
    // SAFETY: kill(pid, 0) only checks that the process exists.
    assert_eq!(
        unsafe { libc::kill(keeper_pid, 0) },
        0,
        "keeper died with crustd"
    );

    d.spawn().await.unwrap();
    let mut c = d.cri().await.unwrap();
    assert_consistent(&mut c).await;
    let st = c.status(&keeper).await.unwrap();
    assert_eq!(st.state, cri::ContainerState::ContainerRunning as i32);
    assert_eq!(c.container_pid(&keeper).await.unwrap(), keeper_pid);
    let st = c.status(&stubborn).await.unwrap();
    assert_eq!(st.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!(st.exit_code, 137, "killed after its grace period");
    println!(
        "SIGTERM under load: {} pod lives completed by the load",
        lives.load(Ordering::Relaxed)
    );
    remove_all_pods(&mut c).await;
    let settled = eventually(LONG, || async { footprint(&d, Some(&net)) == empty }).await;
    assert!(settled, "left behind: {:?}", footprint(&d, Some(&net)));
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reboot_keeps_records_and_reports_pods_notready_and_containers_exited() {
    let mut d = Daemon::start().await.unwrap();
    let mut c = d.cri().await.unwrap();
    let image = registry().busybox();
    c.pull(&image).await.unwrap();
    let pc = pod_config("reboot", &d.logs);
    let pod = c.run_pod(&pc).await.unwrap();
    let ctr = c
        .run(&pod, &pc, container_config("c", &image, &["sleep", "600"]))
        .await
        .unwrap();
    drop(c);

    // Power off: every process of the daemon's goes, /run (the state dir) is lost, /var/lib
    // (the root) stays.
    d.kill9();
    let monitor_pids: Vec<i32> = std::fs::read_dir(d.state.join("pods"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("monitor.pid")).ok())
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    for pid in monitor_pids
        .iter()
        .copied()
        .chain(crust_e2e::cgroup_pids(&d.cgroup_root))
    {
        // SAFETY: pids of this test's own monitors and of processes in its own cgroups.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let cleared = eventually(LONG, || async {
        crust_e2e::cgroup_pids(&d.cgroup_root).is_empty()
    })
    .await;
    assert!(cleared);
    crust_e2e::unmount_under(d.dir.path());
    std::fs::remove_dir_all(&d.state).unwrap();

    d.spawn().await.unwrap();
    let mut c = d.cri().await.unwrap();
    let p = c.pod_status(&pod).await.unwrap();
    assert_eq!(p.state, cri::PodSandboxState::SandboxNotready as i32);
    let st = c.status(&ctr).await.unwrap();
    assert_eq!(st.state, cri::ContainerState::ContainerExited as i32);
    // kubelet's next move: a new attempt of the same pod, then the old one removed.
    let mut pc2 = pc.clone();
    pc2.metadata.as_mut().unwrap().attempt = 1;
    let pod2 = c.run_pod(&pc2).await.unwrap();
    // ...and the container again, with its restart count as the attempt.
    let mut again = container_config("c", &image, &["sleep", "600"]);
    again.metadata.as_mut().unwrap().attempt = 1;
    c.run(&pod2, &pc2, again).await.unwrap();
    c.remove_pod(&pod).await.unwrap();
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn many_clients_at_once_get_their_own_pods_and_churn_leaks_nothing() {
    let d = Daemon::start().await.unwrap();
    let net = Bridge::new(&d);
    let image = registry().busybox();
    let mut c = d.cri().await.unwrap();
    assert!(network_ready(&mut c).await);
    c.pull(&image).await.unwrap();
    let pid = d.pid().unwrap();
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let status = |key: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
            .unwrap()
    };
    let rss = || status("VmRSS:");
    // tokio's blocking pool grows and shrinks on its own: threads are reported, not asserted.
    let threads = || status("Threads:");
    // Warm up the daemon's pools and caches before taking the baseline.
    pod_life(&mut c, &d.logs, "warm", &image).await.unwrap();
    let (empty, fds0, rss0, threads0) = (footprint(&d, Some(&net)), fds(), rss(), threads());

    // N clients, each on its own connection, start a pod with a container at the same time.
    let n = scale("CRUST_STRESS_CONCURRENT", 50);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let mut c = d.cri().await.unwrap();
        let (logs, image) = (d.logs.clone(), image.clone());
        tasks.spawn(async move {
            let name = format!("many{i}");
            let pc = pod_config(&name, &logs);
            let pod = c.run_pod(&pc).await?;
            let ctr = c
                .run(
                    &pod,
                    &pc,
                    container_config(&name, &image, &["sleep", "600"]),
                )
                .await?;
            anyhow::Ok((name, pod, ctr))
        });
    }
    let mut started = Vec::new();
    while let Some(r) = tasks.join_next().await {
        started.push(r.unwrap().expect("a concurrent pod start failed"));
    }
    // Nothing mixed up: each container belongs to its own client's pod and is named for it.
    for (name, pod, ctr) in &started {
        let st = c.status(ctr).await.unwrap();
        assert_eq!(st.metadata.unwrap().name, *name);
        assert_eq!(st.state, cri::ContainerState::ContainerRunning as i32);
        let ps = c.pod_status(pod).await.unwrap();
        assert_eq!(ps.metadata.unwrap().name, *name);
    }
    let busy = footprint(&d, Some(&net));
    assert_eq!(
        (busy.monitors, busy.veths.len(), busy.leases.len()),
        (n, n, n),
        "a monitor, a veth and an address per pod"
    );
    // Every monitor lives in crust's own cgroup (moved there in the background).
    let monitors_cgroup = format!("{}/crust-monitors", d.cgroup_root);
    let placed = eventually(LONG, || async {
        crust_e2e::cgroup_pids(&monitors_cgroup).len() == n
    })
    .await;
    assert!(
        placed,
        "{} of {n} monitors in {monitors_cgroup}",
        crust_e2e::cgroup_pids(&monitors_cgroup).len()
    );
    let mut tasks = tokio::task::JoinSet::new();
    for (_, pod, _) in started {
        let mut c = d.cri().await.unwrap();
        tasks.spawn(async move {
            c.remove_pod(&pod).await?;
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().expect("a concurrent pod removal failed");
    }

    // Churn: pods made and destroyed one after another.
    let cycles = scale("CRUST_STRESS_CHURN", 30);
    for i in 0..cycles {
        pod_life(&mut c, &d.logs, &format!("churn{i}"), &image)
            .await
            .unwrap();
    }
    let settled = eventually(LONG, || async { footprint(&d, Some(&net)) == empty }).await;
    assert!(
        settled,
        "left behind: {:?} vs {empty:?}",
        footprint(&d, Some(&net))
    );
    // The daemon's own descriptors are back where they were (a few for connections in
    // flight may come and go).
    let fds1 = fds();
    assert!(
        fds1 <= fds0 + 4,
        "fds grew from {fds0} to {fds1} over {cycles} cycles"
    );
    println!(
        "{n} concurrent pods and {cycles} churn cycles: fds {fds0} -> {fds1}, RSS {rss0} -> {}, threads {threads0} -> {}, veths and leases {} -> {}",
        rss(),
        threads(),
        empty.veths.len() + empty.leases.len(),
        footprint(&d, Some(&net)).veths.len() + footprint(&d, Some(&net)).leases.len(),
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crust_has_no_abstract_sockets_and_serves_streams_on_loopback() {
    let PodFixture {
        d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start("sockets").await;
    let ctr = c
        .run(&pod, &pc, container_config("c", &image, &["sleep", "600"]))
        .await
        .unwrap();
    // The socket inodes crustd and the pod's monitor hold.
    let info = c.pod_info(&pod).await;
    let pids = [
        d.pid().unwrap(),
        info["monitor_pid"].as_u64().unwrap() as u32,
    ];
    let mut inodes = BTreeSet::new();
    for pid in pids {
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
        {
            if let Ok(target) = std::fs::read_link(fd.path())
                && let Some(n) = target
                    .to_string_lossy()
                    .strip_prefix("socket:[")
                    .and_then(|s| s.strip_suffix(']'))
            {
                inodes.insert(n.to_string());
            }
        }
    }
    assert!(!inodes.is_empty());
    let unix = std::fs::read_to_string("/proc/net/unix").unwrap();
    for line in unix.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 8 && inodes.contains(f[6]) {
            assert!(!f[7].starts_with('@'), "abstract socket of crust: {line}");
        }
    }
    let url =
        c.rt.exec(cri::ExecRequest {
            container_id: ctr,
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_fails_pulls_and_creates_cleanly_and_recovers() {
    let mut d = Daemon::start().await.unwrap();
    // The root on a small tmpfs of the test's own.
    d.kill9();
    let root = d.root.display().to_string();
    let size = |s: &str| {
        let target = std::ffi::CString::new(root.clone()).unwrap();
        let data = std::ffi::CString::new(format!("size={s},mode=0700")).unwrap();
        (target, data)
    };
    let (target, data) = size("256k");
    // SAFETY: valid C strings; a fresh tmpfs on the test's own directory.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            data.as_ptr() as *const libc::c_void,
        )
    };
    assert_eq!(rc, 0, "mount tmpfs: {}", std::io::Error::last_os_error());
    d.spawn().await.unwrap();
    let mut c = d.cri().await.unwrap();
    let image = registry().busybox();
    let err = c.pull(&image).await.unwrap_err();
    let code = err.downcast_ref::<tonic::Status>().map(|s| s.code());
    assert_eq!(code, Some(Code::ResourceExhausted), "{err:#}");
    let leftovers = |d: &Daemon| -> Vec<String> {
        let mut v = Vec::new();
        for dir in ["content/tmp", "snapshots"] {
            if let Ok(rd) = std::fs::read_dir(d.root.join(dir)) {
                v.extend(
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.contains("tmp") || n.ends_with(".partial")),
                );
            }
        }
        v
    };
    assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));

    // Space returns: the same pull works.
    let (target, data) = size("64m");
    // SAFETY: remounting the tmpfs this test mounted above, with a bigger size.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_REMOUNT,
            data.as_ptr() as *const libc::c_void,
        )
    };
    assert_eq!(rc, 0, "remount: {}", std::io::Error::last_os_error());
    c.pull(&image).await.unwrap();

    // Full again (a filler file), and a container cannot be created; none is half there.
    let pc = pod_config("full", &d.logs);
    let pod = c.run_pod(&pc).await.unwrap();
    let filler = d.root.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 1 << 20];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.flush();
    }
    let err = c
        .create(&pod, &pc, container_config("c", &image, &["sleep", "60"]))
        .await
        .unwrap_err();
    let code = err.downcast_ref::<tonic::Status>().map(|s| s.code());
    assert_eq!(code, Some(Code::ResourceExhausted), "{err:#}");
    let listed = c
        .list_containers(cri::ContainerFilter::default())
        .await
        .unwrap();
    assert!(listed.is_empty(), "{listed:?}");
    std::fs::remove_file(&filler).unwrap();
    c.run(&pod, &pc, container_config("c", &image, &["sleep", "60"]))
        .await
        .unwrap();
    d.shutdown().await;
}

/// Random and hostile requests for every CRI call that takes input: each answers a clean
/// status naming what was wrong, the daemon never falls over, and no state is left behind.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_working_dir_is_made_and_a_file_in_its_way_is_refused() {
    let PodFixture {
        d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start("cwd").await;
    let mut cfg = container_config("made", &image, &["sh", "-c", "pwd"]);
    cfg.working_dir = "/srv/app/data".into();
    let id = c.run(&pod, &pc, cfg).await.unwrap();
    let st = c.wait_exited(&id, LONG).await.unwrap();
    assert_eq!(st.exit_code, 0);
    let lines = crust_e2e::log_lines(&st.log_path);
    assert_eq!(lines.last().map(|l| l.1.as_str()), Some("/srv/app/data"));
    let mut cfg = container_config("blocked", &image, &["true"]);
    cfg.working_dir = "/bin/busybox/sub".into();
    let err = c.create(&pod, &pc, cfg).await.unwrap_err();
    let status = err.downcast_ref::<tonic::Status>().unwrap();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("not a directory"), "{status:?}");
    c.remove_pod(&pod).await.unwrap();
    d.shutdown().await;
}
