//! crustd dies with SIGKILL and comes back: containers keep running and logging under their
//! monitors, exits that happened meanwhile are reported with their real codes, and nothing is
//! lost or duplicated.

use std::time::Duration;

use crust_e2e::{PodFixture, container_config, cri, eventually, log_lines};

const LONG: Duration = Duration::from_secs(30);

#[tokio::test]
async fn containers_survive_a_daemon_kill_and_exits_are_not_lost() {
    let PodFixture {
        mut d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start("survivor").await;
    let ticker = c
        .run(
            &pod,
            &pc,
            container_config(
                "ticker",
                &image,
                &[
                    "sh",
                    "-c",
                    "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
                ],
            ),
        )
        .await
        .unwrap();
    let short = c
        .run(
            &pod,
            &pc,
            container_config("short", &image, &["sh", "-c", "sleep 1; exit 42"]),
        )
        .await
        .unwrap();
    let created_only = c
        .create(
            &pod,
            &pc,
            container_config("later", &image, &["sleep", "100"]),
        )
        .await
        .unwrap();
    let ticker_pid = c.container_pid(&ticker).await.unwrap();
    let log = c.status(&ticker).await.unwrap().log_path;
    drop(c);

    d.kill9();
    // While the daemon is down: `short` exits, and `ticker` goes on logging.
    let lines_at_kill = log_lines(&log).len();
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert!(
        log_lines(&log).len() > lines_at_kill + 5,
        "the ticker stopped logging without the daemon"
    );
    // SAFETY: kill(pid, 0) only checks that the process exists.
    assert_eq!(
        unsafe { libc::kill(ticker_pid, 0) },
        0,
        "the ticker died with the daemon"
    );

    d.spawn().await.unwrap();
    let mut c = d.cri().await.unwrap();
    let pods = c.list_pods().await.unwrap();
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].state, cri::PodSandboxState::SandboxReady as i32);
    let all = c
        .list_containers(cri::ContainerFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    let state = |id: &str| all.iter().find(|x| x.id == id).unwrap().state;
    assert_eq!(state(&ticker), cri::ContainerState::ContainerRunning as i32);
    assert_eq!(state(&short), cri::ContainerState::ContainerExited as i32);
    assert_eq!(
        state(&created_only),
        cri::ContainerState::ContainerCreated as i32
    );
    let st = c.status(&short).await.unwrap();
    assert_eq!((st.exit_code, st.reason.as_str()), (42, "Error"));

    // The ticker still logs after the restart, with no duplicated or lost sequence numbers.
    let n = log_lines(&log).len();
    assert!(eventually(LONG, || async { log_lines(&log).len() > n + 3 }).await);
    // The created container can still be started after the restart.
    c.start(&created_only).await.unwrap();
    assert_eq!(
        c.status(&created_only).await.unwrap().state,
        cri::ContainerState::ContainerRunning as i32
    );
    c.stop(&ticker, 0).await.unwrap();
    let seq: Vec<u64> = log_lines(&log)
        .iter()
        .filter_map(|(_, l)| l.strip_prefix("tick ").and_then(|n| n.parse().ok()))
        .collect();
    assert!(!seq.is_empty());
    for (i, v) in seq.iter().enumerate() {
        assert_eq!(*v, i as u64, "tick log has gaps or repeats");
    }
    assert_eq!(c.status(&ticker).await.unwrap().exit_code, 137);
    drop(c);
    d.shutdown().await;
}

#[tokio::test]
async fn sigterm_stops_the_daemon_cleanly_and_leaves_containers_running() {
    let PodFixture {
        mut d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start("term").await;
    let id = c
        .run(
            &pod,
            &pc,
            container_config("sleeper", &image, &["sleep", "1000"]),
        )
        .await
        .unwrap();
    // The socket is 0660 in a 0700 dir; root and state dirs are 0700 (CVE-2021-41103).
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&d.socket), 0o660);
    assert_eq!(mode(d.socket.parent().unwrap()), 0o700);
    assert_eq!(mode(&d.root), 0o700);
    assert_eq!(mode(&d.state), 0o700);
    assert_eq!(mode(&d.state.join("pods").join(&pod)), 0o700);
    // The client keeps its connection open, as kubelet does; SIGTERM must not wait for it.
    let started = std::time::Instant::now();
    assert_eq!(d.terminate(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!d.socket.exists(), "the socket is removed on a clean stop");
    // The pod's monitor keeps its place in crust's monitors cgroup.
    let monitors = format!("{}/crust-monitors", d.cgroup_root);
    assert!(crust_e2e::cgroup_exists(&monitors));
    drop(c);
    d.spawn().await.unwrap();
    let mut c = d.cri().await.unwrap();
    assert_eq!(
        c.status(&id).await.unwrap().state,
        cri::ContainerState::ContainerRunning as i32
    );
    // With no pod left, a clean stop takes the monitors cgroup away too.
    c.remove_pod(&pod).await.unwrap();
    drop(c);
    assert_eq!(d.terminate(), Some(0));
    assert!(
        !crust_e2e::cgroup_exists(&monitors),
        "{monitors} left after the last pod and a clean stop"
    );
    d.spawn().await.unwrap();
    d.shutdown().await;
}

#[tokio::test]
async fn a_dead_monitor_means_exited_containers_not_stuck_running_ones() {
    let PodFixture {
        mut d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start("orphan").await;
    let id = c
        .run(
            &pod,
            &pc,
            container_config("sleeper", &image, &["sleep", "1000"]),
        )
        .await
        .unwrap();
    let info = c.pod_info(&pod).await;
    let monitor = info["monitor_pid"].as_i64().unwrap() as i32;
    assert!(monitor > 0);
    drop(c);
    d.kill9();
    // SAFETY: the monitor pid comes from this test's own daemon.
    assert_eq!(unsafe { libc::kill(monitor, libc::SIGKILL) }, 0);
    tokio::time::sleep(Duration::from_millis(200)).await;

    d.spawn().await.unwrap();
    let mut c = d.cri().await.unwrap();
    let p =
        c.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(p.state, cri::PodSandboxState::SandboxNotready as i32);
    let st = c.status(&id).await.unwrap();
    assert_eq!(st.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!(st.reason, "Unknown");
    assert!(!st.message.is_empty());
    let cgroup = format!("{}/{pod}/{id}", d.cgroup_root);
    let procs: Vec<String> = crust_e2e::cgroup_mounts()
        .iter()
        .filter_map(|m| {
            std::fs::read_to_string(m.join(cgroup.trim_start_matches('/')).join("cgroup.procs"))
                .ok()
        })
        .filter(|s| !s.trim().is_empty())
        .collect();
    assert!(
        procs.is_empty(),
        "the orphaned container still has processes: {procs:?}"
    );
    // The pod can still be torn down completely.
    c.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    c.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    assert!(!crust_e2e::cgroup_exists(&format!(
        "{}/{pod}",
        d.cgroup_root
    )));
    assert!(
        c.list_containers(cri::ContainerFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    drop(c);
    d.shutdown().await;
}
