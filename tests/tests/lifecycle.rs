//! Pods and containers end to end: the seed workflow, stops with and without a grace period,
//! namespaces shared in a pod, idempotent teardown, and error codes.

use std::time::{Duration, Instant};

use crust_e2e::{
    Daemon, PodFixture, cgroup_exists, container_config, cri, log_lines, pod_config, registry,
};
use tonic::Code;

const LONG: Duration = Duration::from_secs(30);

#[tokio::test]
async fn run_ls_with_a_command_override_and_read_its_log() {
    let d = Daemon::start().await.unwrap();
    let mut c = d.cri().await.unwrap();
    let image = registry().busybox();
    let image_id = c.pull(&image).await.unwrap();
    let pc = pod_config("seed", &d.logs);
    let pod = c.run_pod(&pc).await.unwrap();
    let before = crust_runtime_now();
    let ctr = c
        .run(&pod, &pc, container_config("ls", &image, &["ls", "/"]))
        .await
        .unwrap();
    let st = c.wait_exited(&ctr, LONG).await.unwrap();
    assert_eq!(st.exit_code, 0);
    assert_eq!(st.reason, "Completed");
    assert_eq!(st.image_ref, image_id);
    assert_eq!(st.image.as_ref().unwrap().image, image);
    assert!(
        st.created_at >= before
            && st.started_at >= st.created_at
            && st.finished_at >= st.started_at
    );
    assert_eq!(st.labels.get("ctr").map(String::as_str), Some("ls"));
    assert_eq!(
        st.annotations.get("ctr-note").map(String::as_str),
        Some("unchanged")
    );
    let expected_log = d.logs.join("seed").join("ls/0.log");
    assert_eq!(st.log_path, expected_log.display().to_string());
    let lines = log_lines(&st.log_path);
    let names: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    for want in ["bin", "dev", "etc", "proc", "sys", "tmp"] {
        assert!(names.contains(&want), "ls / output {names:?} lacks {want}");
    }
    assert!(lines.iter().all(|(s, _)| s == "stdout"));

    // The image's default command runs when the request gives none, with args replacing Cmd.
    let mut cfg = container_config("echo", &image, &[]);
    cfg.args = vec!["echo".into(), "from args".into()];
    let ctr2 = c.run(&pod, &pc, cfg).await.unwrap();
    let st2 = c.wait_exited(&ctr2, LONG).await.unwrap();
    // busybox's Cmd is ["sh"]; args replace it, so this ran `echo "from args"` directly.
    assert_eq!(
        log_lines(&st2.log_path),
        vec![("stdout".to_string(), "from args".to_string())]
    );

    // stderr, env and exit codes.
    let mut cfg = container_config(
        "fail",
        &image,
        &["sh", "-c", "echo oops >&2; echo $GREETING; exit 3"],
    );
    cfg.envs = vec![cri::KeyValue {
        key: "GREETING".into(),
        value: "hello env".into(),
    }];
    let ctr3 = c.run(&pod, &pc, cfg).await.unwrap();
    let st3 = c.wait_exited(&ctr3, LONG).await.unwrap();
    assert_eq!((st3.exit_code, st3.reason.as_str()), (3, "Error"));
    let lines = log_lines(&st3.log_path);
    assert!(
        lines.contains(&("stderr".to_string(), "oops".to_string())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&("stdout".to_string(), "hello env".to_string())),
        "{lines:?}"
    );
    drop(c);
    d.shutdown().await;
}

fn crust_runtime_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

#[tokio::test]
async fn stop_honours_sigterm_grace_and_kills_when_ignored() {
    let PodFixture {
        d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start("stopper").await;
    let polite = c
        .run(
            &pod,
            &pc,
            container_config(
                "polite",
                &image,
                &[
                    "sh",
                    "-c",
                    "trap 'echo bye; exit 0' TERM; echo ready; while true; do sleep 0.1; done",
                ],
            ),
        )
        .await
        .unwrap();
    let stubborn = c
        .run(
            &pod,
            &pc,
            container_config(
                "stubborn",
                &image,
                &[
                    "sh",
                    "-c",
                    "trap '' TERM; echo ready; while true; do sleep 0.1; done",
                ],
            ),
        )
        .await
        .unwrap();
    // Both run, and the list shows them with filters applied.
    let running = c
        .list_containers(cri::ContainerFilter {
            state: Some(cri::ContainerStateValue {
                state: cri::ContainerState::ContainerRunning as i32,
            }),
            pod_sandbox_id: pod.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(running.len(), 2);
    let by_label = c
        .list_containers(cri::ContainerFilter {
            label_selector: [("ctr".to_string(), "polite".to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        by_label.iter().map(|x| x.id.clone()).collect::<Vec<_>>(),
        vec![polite.clone()]
    );
    for id in [&polite, &stubborn] {
        let path = c.status(id).await.unwrap().log_path;
        assert!(
            crust_e2e::eventually(LONG, || async {
                log_lines(&path).iter().any(|(_, l)| l == "ready")
            })
            .await
        );
    }

    let t = Instant::now();
    c.stop(&polite, 10).await.unwrap();
    let st = c.status(&polite).await.unwrap();
    assert_eq!(st.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!(st.exit_code, 0, "the TERM trap exits 0");
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "a polite container must not wait for the timeout"
    );
    assert!(log_lines(&st.log_path).iter().any(|(_, l)| l == "bye"));

    // While a stop waits out its grace period, lists and status answer (kubelet lists every
    // second; a list stuck behind a 30 s stop stalls every pod on the node).
    let t = Instant::now();
    let mut stopper = c.clone();
    let stub = stubborn.clone();
    let stop = tokio::spawn(async move { stopper.stop(&stub, 4).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let listed = c.list_containers(Default::default()).await.unwrap();
    let during = c.status(&stubborn).await.unwrap();
    assert!(
        !stop.is_finished(),
        "the stop ended before the list was answered"
    );
    assert_eq!(listed.len(), 2);
    assert_eq!(during.state, cri::ContainerState::ContainerRunning as i32);
    stop.await.unwrap().unwrap();
    let st = c.status(&stubborn).await.unwrap();
    assert_eq!(st.exit_code, 137, "SIGKILL after the grace period");
    assert!(t.elapsed() >= Duration::from_secs(4));

    // Stop is idempotent.
    c.stop(&stubborn, 1).await.unwrap();
    assert_eq!(c.status(&stubborn).await.unwrap().exit_code, 137);
    drop(c);
    d.shutdown().await;
}

#[tokio::test]
async fn image_stop_signal_is_used() {
    let d = Daemon::start().await.unwrap();
    let mut c = d.cri().await.unwrap();
    let image = registry().stopsig();
    c.pull(&image).await.unwrap();
    let pc = pod_config("sig", &d.logs);
    let pod = c.run_pod(&pc).await.unwrap();
    // Only SIGUSR1 (the image's StopSignal) ends this one cleanly; SIGTERM is ignored by PID 1.
    let id = c
        .run(
            &pod,
            &pc,
            container_config(
                "usr1",
                &image,
                &[
                    "sh",
                    "-c",
                    "trap 'exit 0' USR1; echo ready; while true; do sleep 0.1; done",
                ],
            ),
        )
        .await
        .unwrap();
    let path = c.status(&id).await.unwrap().log_path;
    assert!(crust_e2e::eventually(LONG, || async { !log_lines(&path).is_empty() }).await);
    c.stop(&id, 20).await.unwrap();
    assert_eq!(c.status(&id).await.unwrap().exit_code, 0);
    drop(c);
    d.shutdown().await;
}

#[tokio::test]
async fn containers_share_the_pod_namespaces_but_not_pids() {
    let PodFixture {
        d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start("shared").await;
    let probe = "echo host=$(hostname); echo net=$(readlink /proc/self/ns/net); echo ipc=$(readlink /proc/self/ns/ipc); echo pid=$(readlink /proc/self/ns/pid); echo pid1=$(cat /proc/1/cmdline | tr '\\0' ' '); ip -o link 2>/dev/null | cut -d: -f2; cat /etc/hostname";
    // Both run at once: namespace inode numbers are recycled once a namespace dies, so only
    // live namespaces can be compared. Each probes, then waits for a stop file from the other.
    let mut ids = Vec::new();
    for name in ["a", "b"] {
        let script =
            format!("{probe}; echo done; while [ ! -e /dev/shm/stop ]; do sleep 0.05; done");
        let id = c
            .run(
                &pod,
                &pc,
                container_config(name, &image, &["sh", "-c", &script]),
            )
            .await
            .unwrap();
        let path = c.status(&id).await.unwrap().log_path;
        assert!(
            crust_e2e::eventually(LONG, || async {
                log_lines(&path).iter().any(|(_, l)| l == "done")
            })
            .await
        );
        ids.push((id, path));
    }
    // /dev/shm is the pod's: a file made in one container is seen by the other.
    let toucher = c
        .run(
            &pod,
            &pc,
            container_config("stopper", &image, &["touch", "/dev/shm/stop"]),
        )
        .await
        .unwrap();
    assert_eq!(c.wait_exited(&toucher, LONG).await.unwrap().exit_code, 0);
    let mut outs = Vec::new();
    for (id, path) in &ids {
        let st = c.wait_exited(id, LONG).await.unwrap();
        assert_eq!(st.exit_code, 0, "{:?}", log_lines(path));
        outs.push(
            log_lines(path)
                .into_iter()
                .map(|(_, l)| l)
                .collect::<Vec<_>>(),
        );
    }
    let get = |o: &Vec<String>, k: &str| {
        o.iter()
            .find(|l| l.starts_with(k))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(get(&outs[0], "host="), "host=shared");
    assert_eq!(get(&outs[0], "net="), get(&outs[1], "net="));
    assert_eq!(get(&outs[0], "ipc="), get(&outs[1], "ipc="));
    assert_ne!(
        get(&outs[0], "pid="),
        get(&outs[1], "pid="),
        "each container has its own PID namespace"
    );
    assert!(
        get(&outs[0], "pid1=").starts_with("pid1=sh"),
        "the container's process is PID 1: {outs:?}"
    );
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(
        get(&outs[0], "net="),
        format!("net={}", host_net.display()),
        "pod has its own netns"
    );
    // Only loopback in the pod network, and it is up.
    assert!(outs[0].iter().any(|l| l.trim() == "lo"), "{:?}", outs[0]);
    assert!(
        outs[0].contains(&"shared".to_string()),
        "/etc/hostname is the pod's"
    );
    drop(c);
    d.shutdown().await;
}

/// A list that arrives while a container is being removed (RemoveContainer holds the record
/// for the whole removal: kill, unmount, delete its writable layer) never names it: kubelet asks
/// the status of every listed container (its image GC does, for image volumes), and one
/// NotFound fails that whole round.
#[tokio::test]
async fn a_list_during_a_removal_does_not_name_the_removed_container() {
    let PodFixture {
        d: _d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start("listremove").await;
    // Thousands of files in its writable layer make the removal take a while.
    let script = "mkdir /many && cd /many && i=0; while [ $i -lt 4000 ]; do : > f$i; \
        i=$((i+1)); done; echo ready; exec sleep 1000";
    let deadline = Instant::now() + 3 * LONG;
    for round in 0..3 {
        let name = format!("many{round}");
        let victim = c
            .run(
                &pod,
                &pc,
                container_config(&name, &image, &["sh", "-c", script]),
            )
            .await
            .unwrap();
        let log = format!("{}/{name}/0.log", pc.log_directory);
        while !log_lines(&log).iter().any(|(_, l)| l == "ready") {
            assert!(Instant::now() < deadline, "{name} never filled its layer");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut rt = c.rt.clone();
        let removing = victim.clone();
        let removal = tokio::spawn(async move {
            rt.remove_container(cri::RemoveContainerRequest {
                container_id: removing,
            })
            .await
        });
        // Lists back to back until the removal is done: some arrive while it holds the record.
        // One served before it took the record shows the container running; one that waited
        // must not show it at all (it used to, as removed: state unknown, status NotFound).
        let mut lists = 0;
        while !removal.is_finished() || lists == 0 {
            let listed = c.list_containers(Default::default()).await.unwrap();
            lists += 1;
            for l in listed.iter().filter(|l| l.id == victim) {
                assert_ne!(
                    l.state,
                    cri::ContainerState::ContainerUnknown as i32,
                    "round {round}: listed after its removal"
                );
            }
        }
        removal.await.unwrap().unwrap();
        eprintln!("round {round}: {lists} lists during the removal");
        let listed = c.list_containers(Default::default()).await.unwrap();
        assert!(listed.iter().all(|l| l.id != victim), "round {round}");
    }
}

#[tokio::test]
async fn pod_stop_and_remove_are_idempotent_and_leave_nothing() {
    let PodFixture {
        d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start("teardown").await;
    let ctr = c
        .run(
            &pod,
            &pc,
            container_config("sleeper", &image, &["sleep", "1000"]),
        )
        .await
        .unwrap();
    let pod_cgroup = format!("{}/{pod}", d.cgroup_root);
    assert!(cgroup_exists(&format!("{pod_cgroup}/{ctr}")));

    let status =
        c.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let s = status.status.unwrap();
    assert_eq!(s.state, cri::PodSandboxState::SandboxReady as i32);
    assert_eq!(s.labels, pc.labels);
    assert_eq!(s.annotations, pc.annotations);
    assert!(status.info["info"].contains("netns"));

    for _ in 0..2 {
        c.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
    }
    let st = c.status(&ctr).await.unwrap();
    assert_eq!(st.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!(st.exit_code, 137);
    let pods =
        c.rt.list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                state: Some(cri::PodSandboxStateValue {
                    state: cri::PodSandboxState::SandboxNotready as i32,
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(pods.len(), 1);
    // A stopped pod takes no new containers.
    let err = c
        .create(&pod, &pc, container_config("late", &image, &["true"]))
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<tonic::Status>().unwrap().code(),
        Code::FailedPrecondition
    );

    for _ in 0..2 {
        c.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
    }
    // Stopping or removing a container that never existed is done already (critest's
    // Idempotence specs; kubelet retries both).
    let never = "e".repeat(64);
    c.rt.stop_container(cri::StopContainerRequest {
        container_id: never.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    c.rt.remove_container(cri::RemoveContainerRequest {
        container_id: never,
    })
    .await
    .unwrap();
    let err =
        c.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        c.list_containers(cri::ContainerFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !cgroup_exists(&pod_cgroup),
        "pod cgroup {pod_cgroup} is left behind"
    );
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(&*d.dir.path().display().to_string()),
        "mounts left under the daemon's dirs"
    );
    assert!(!d.state.join("pods").join(&pod).exists());
    assert!(!d.root.join("containers").join(&ctr).exists());
    // The name is free again.
    let again = c.run_pod(&pc).await.unwrap();
    assert_ne!(again, pod);
    drop(c);
    d.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_the_right_codes_and_leave_state_intact() {
    let PodFixture {
        d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start("errs").await;

    let code = |e: anyhow::Error| e.downcast_ref::<tonic::Status>().map(|s| s.code());
    // Same pod name and attempt again.
    assert_eq!(
        code(c.run_pod(&pc).await.unwrap_err()),
        Some(Code::AlreadyExists)
    );
    // Missing metadata.
    let err =
        c.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cri::PodSandboxConfig::default()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("metadata"), "{}", err.message());
    // Unknown pod, unknown image, bad log path, no command.
    let mut unknown_pod = "f".repeat(64);
    unknown_pod.replace_range(..1, "0");
    assert_eq!(
        code(
            c.create(&unknown_pod, &pc, container_config("x", &image, &["true"]))
                .await
                .unwrap_err()
        ),
        Some(Code::NotFound)
    );
    let absent = format!("{}/crust-test/absent:1", registry().addr);
    assert_eq!(
        code(
            c.create(&pod, &pc, container_config("x", &absent, &["true"]))
                .await
                .unwrap_err()
        ),
        Some(Code::NotFound)
    );
    let mut cfg = container_config("x", &image, &["true"]);
    cfg.log_path = "../../escape.log".into();
    assert_eq!(
        code(c.create(&pod, &pc, cfg).await.unwrap_err()),
        Some(Code::InvalidArgument)
    );
    // Start twice.
    let id = c
        .create(
            &pod,
            &pc,
            container_config("once", &image, &["sleep", "100"]),
        )
        .await
        .unwrap();
    c.start(&id).await.unwrap();
    assert_eq!(
        code(c.start(&id).await.unwrap_err()),
        Some(Code::FailedPrecondition)
    );
    // Same container name in the pod.
    assert_eq!(
        code(
            c.create(&pod, &pc, container_config("once", &image, &["true"]))
                .await
                .unwrap_err()
        ),
        Some(Code::AlreadyExists)
    );
    // Runtime handlers: a configured one works, an unknown one is refused by name.
    for (handler, ok) in [("crust", true), ("no-such-handler", false)] {
        let r =
            c.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(crust_e2e::pod_config(&format!("h-{ok}"), &d.logs)),
                runtime_handler: handler.into(),
            })
            .await;
        match (r, ok) {
            (Ok(_), true) => {}
            (Err(e), false) => {
                assert_eq!(e.code(), Code::InvalidArgument);
                assert!(e.message().contains(handler));
            }
            (r, _) => panic!("handler {handler}: {r:?}"),
        }
    }
    // Unknown container for status; remove of unknown is idempotent.
    assert!(c.status(&unknown_pod).await.is_err());
    c.rt.remove_container(cri::RemoveContainerRequest {
        container_id: unknown_pod.clone(),
    })
    .await
    .unwrap();
    // Attach with no stream asked for is refused by name.
    let err =
        c.rt.attach(cri::AttachRequest {
            container_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("stdin"), "{}", err.message());
    // RPCs not built yet answer UNIMPLEMENTED naming themselves.
    let err =
        c.rt.checkpoint_container(cri::CheckpointContainerRequest {
            container_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert!(
        err.message().contains("CheckpointContainer"),
        "{}",
        err.message()
    );

    // After all that, exactly the one good container exists and still runs.
    let all = c
        .list_containers(cri::ContainerFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(
        c.status(&id).await.unwrap().state,
        cri::ContainerState::ContainerRunning as i32
    );

    // Version, Status and RuntimeConfig.
    let v =
        c.rt.version(cri::VersionRequest::default())
            .await
            .unwrap()
            .into_inner();
    assert_eq!(
        (v.runtime_name.as_str(), v.runtime_api_version.as_str()),
        ("crust", "v1")
    );
    let s =
        c.rt.status(cri::StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner();
    let handlers: Vec<String> = s.runtime_handlers.iter().map(|h| h.name.clone()).collect();
    assert_eq!(handlers, vec!["".to_string(), "crust".to_string()]);
    assert!(
        s.runtime_handlers
            .iter()
            .all(|h| !h.features.as_ref().unwrap().user_namespaces)
    );
    let conds = s.status.unwrap().conditions;
    assert!(conds.iter().any(|x| x.r#type == "RuntimeReady" && x.status));
    assert!(
        conds
            .iter()
            .any(|x| x.r#type == "NetworkReady" && !x.status && !x.reason.is_empty())
    );
    let rc =
        c.rt.runtime_config(cri::RuntimeConfigRequest {})
            .await
            .unwrap()
            .into_inner();
    assert_eq!(
        rc.linux.unwrap().cgroup_driver,
        cri::CgroupDriver::Cgroupfs as i32
    );
    drop(c);
    d.shutdown().await;
}

#[tokio::test]
async fn pid_namespace_modes_pod_target_and_node() {
    use crust_e2e::{namespaces, pod_config};
    let (d, mut c, image) = crust_e2e::with_busybox().await;
    // A pod with shareProcessNamespace: its containers see each other, and PID 1 is the pod's
    // init, not any container's process.
    let mut pc = pod_config("sharedpid", &d.logs);
    pc.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options = Some(namespaces(cri::NamespaceMode::Pod));
    let pod = c.run_pod(&pc).await.unwrap();
    let pod_mode = |name: &str, cmd: &[&str]| {
        let mut cfg = container_config(name, &image, cmd);
        cfg.linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
            .namespace_options = Some(namespaces(cri::NamespaceMode::Pod));
        cfg
    };
    let sleeper = c
        .run(&pod, &pc, pod_mode("sleeper", &["sleep", "1000"]))
        .await
        .unwrap();
    let looker = c
        .run(
            &pod,
            &pc,
            pod_mode(
                "looker",
                &[
                    "sh",
                    "-c",
                    "cat /proc/1/comm; ps -o args | grep -c '^sleep 1000'",
                ],
            ),
        )
        .await
        .unwrap();
    let st = c.wait_exited(&looker, LONG).await.unwrap();
    let out: Vec<String> = log_lines(&st.log_path)
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    assert_eq!(
        out,
        vec!["crust-pod-init".to_string(), "1".to_string()],
        "{out:?}"
    );

    // TARGET: an ephemeral-style container joins the sleeper's PID namespace.
    let mut other = pod_config("targeted", &d.logs);
    other.hostname = "targeted".into();
    let pod2 = c.run_pod(&other).await.unwrap();
    let target = c
        .run(
            &pod2,
            &other,
            container_config("target", &image, &["sleep", "999"]),
        )
        .await
        .unwrap();
    let mut dbg = container_config(
        "debug",
        &image,
        &["sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '"],
    );
    dbg.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options = Some(cri::NamespaceOption {
        pid: cri::NamespaceMode::Target as i32,
        target_id: target.clone(),
        ..Default::default()
    });
    let dbg_id = c.run(&pod2, &other, dbg.clone()).await.unwrap();
    let st = c.wait_exited(&dbg_id, LONG).await.unwrap();
    assert_eq!(log_lines(&st.log_path)[0].1, "sleep 999 ");
    // A target in another pod is refused.
    dbg.metadata.as_mut().unwrap().name = "debug2".into();
    dbg.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap()
        .target_id = sleeper.clone();
    let err = c.create(&pod2, &other, dbg).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<tonic::Status>().unwrap().code(),
        Code::InvalidArgument
    );

    // NODE: the host's PID namespace.
    let mut host = container_config("hostpid", &image, &["readlink", "/proc/self/ns/pid"]);
    host.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options = Some(namespaces(cri::NamespaceMode::Node));
    let id = c.run(&pod2, &other, host).await.unwrap();
    let st = c.wait_exited(&id, LONG).await.unwrap();
    let host_pid_ns = std::fs::read_link("/proc/self/ns/pid")
        .unwrap()
        .display()
        .to_string();
    assert_eq!(log_lines(&st.log_path)[0].1, host_pid_ns);

    // Removing the shared-PID pod ends its init too.
    let init_pid: i32 =
        std::fs::read_to_string(d.state.join("pods").join(&pod).join("pod-init.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
    c.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    assert!(
        crust_e2e::eventually(LONG, || async {
            !std::path::Path::new(&format!("/proc/{init_pid}")).exists()
        })
        .await,
        "pod init {init_pid} outlived its pod"
    );
    drop(c);
    d.shutdown().await;
}

#[tokio::test]
async fn sysctls_apply_in_the_pod_and_injection_is_refused() {
    use crust_e2e::pod_config;
    let (d, mut c, image) = crust_e2e::with_busybox().await;
    let mut pc = pod_config("sysctl", &d.logs);
    let linux = pc.linux.as_mut().unwrap();
    linux.sysctls = [
        ("kernel.shm_rmid_forced".to_string(), "1".to_string()),
        (
            "net.ipv4.ip_local_port_range".to_string(),
            "20000 30000".to_string(),
        ),
    ]
    .into();
    let pod = c.run_pod(&pc).await.unwrap();
    let id = c
        .run(
            &pod,
            &pc,
            container_config(
                "read",
                &image,
                &[
                    "sh",
                    "-c",
                    "cat /proc/sys/kernel/shm_rmid_forced /proc/sys/net/ipv4/ip_local_port_range",
                ],
            ),
        )
        .await
        .unwrap();
    let st = c.wait_exited(&id, LONG).await.unwrap();
    let out: Vec<String> = log_lines(&st.log_path)
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    assert_eq!(out, vec!["1".to_string(), "20000\t30000".to_string()]);
    // The host's values are untouched.
    let host_range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    assert_ne!(host_range.trim(), "20000\t30000");

    let core_pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    for (k, v) in [
        ("kernel.shm_rmid_forced", "1+kernel.core_pattern=|/tmp/pwn"),
        ("kernel.core_pattern", "|/tmp/pwn"),
        ("kernel.shm_rmid_forced", "1\nkernel.core_pattern=x"),
    ] {
        let mut bad = pod_config(&format!("bad{}", rand_suffix()), &d.logs);
        bad.linux.as_mut().unwrap().sysctls = [(k.to_string(), v.to_string())].into();
        let err = c.run_pod(&bad).await.unwrap_err();
        let s = err.downcast_ref::<tonic::Status>().unwrap();
        assert_eq!(s.code(), Code::InvalidArgument, "{k}={v:?}");
        assert!(s.message().contains(k), "{}", s.message());
    }
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        core_pattern
    );
    let pods = c.list_pods().await.unwrap();
    assert_eq!(pods.len(), 1, "refused pods left records");
    drop(c);
    d.shutdown().await;
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

#[tokio::test]
async fn pod_resources_and_overhead_limit_the_pod_cgroup() {
    use crust_e2e::{Daemon, cgroup_mounts, pod_config};
    let d = Daemon::start().await.unwrap();
    let mut c = d.cri().await.unwrap();
    let mut pc = pod_config("sized", &d.logs);
    let linux = pc.linux.as_mut().unwrap();
    linux.resources = Some(cri::LinuxContainerResources {
        memory_limit_in_bytes: 64 << 20,
        cpu_quota: 50_000,
        cpu_period: 100_000,
        cpu_shares: 512,
        // memory + swap, as CRI and OCI count it.
        memory_swap_limit_in_bytes: 96 << 20,
        cpuset_cpus: "0".into(),
        ..Default::default()
    });
    linux.overhead = Some(cri::LinuxContainerResources {
        memory_limit_in_bytes: 16 << 20,
        cpu_quota: 10_000,
        cpu_shares: 10,
        ..Default::default()
    });
    let pod = c.run_pod(&pc).await.unwrap();
    let rel = format!("{}/{pod}", d.cgroup_root.trim_start_matches('/'));
    let read = |file: &str| {
        cgroup_mounts()
            .iter()
            .map(|m| m.join(&rel).join(file))
            .find(|p| p.exists())
            .map(|p| std::fs::read_to_string(p).unwrap().trim().to_string())
    };
    if let Some(mem) = read("memory.limit_in_bytes") {
        assert_eq!(mem, (80u64 << 20).to_string());
        assert_eq!(read("cpu.cfs_quota_us").unwrap(), "60000");
        assert_eq!(read("cpu.cfs_period_us").unwrap(), "100000");
        assert_eq!(read("cpu.shares").unwrap(), "522");
    } else {
        assert_eq!(read("memory.max").unwrap(), (80u64 << 20).to_string());
        assert_eq!(read("cpu.max").unwrap(), "60000 100000");
    }
    drop(c);
    d.shutdown().await;
}

#[tokio::test]
async fn shm_size_comes_from_the_config_and_pod_cidr_is_recorded() {
    use crust_e2e::{Daemon, pod_config, registry};
    let d = Daemon::start_with("shm_size = 8388608").await.unwrap();
    let mut c = d.cri().await.unwrap();
    let image = registry().busybox();
    c.pull(&image).await.unwrap();
    let pc = pod_config("shm", &d.logs);
    let pod = c.run_pod(&pc).await.unwrap();
    let id = c
        .run(
            &pod,
            &pc,
            container_config("df", &image, &["sh", "-c", "df -k /dev/shm | tail -n 1"]),
        )
        .await
        .unwrap();
    let st = c.wait_exited(&id, LONG).await.unwrap();
    let line = log_lines(&st.log_path)[0].1.clone();
    assert_eq!(line.split_whitespace().nth(1), Some("8192"), "{line}");

    let update = |cidr: &str| cri::UpdateRuntimeConfigRequest {
        runtime_config: Some(cri::RuntimeConfig {
            network_config: Some(cri::NetworkConfig {
                pod_cidr: cidr.into(),
            }),
        }),
    };
    c.rt.update_runtime_config(update("10.244.1.0/24"))
        .await
        .unwrap();
    let info =
        c.rt.status(cri::StatusRequest { verbose: true })
            .await
            .unwrap()
            .into_inner()
            .info;
    assert!(info["config"].contains("10.244.1.0/24"), "{info:?}");
    for bad in ["10.244.1.0", "nonsense/24", "10.0.0.0/40"] {
        let err = c.rt.update_runtime_config(update(bad)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}");
    }
    drop(c);
    d.shutdown().await;
}

use crust_proto::cri::UpdatePodSandboxResourcesRequest;

#[tokio::test]
async fn update_pod_sandbox_resources_resizes_a_pod_cgroup_crust_owns() {
    use crust_e2e::{Daemon, cgroup_mounts, pod_config};
    let d = Daemon::start().await.unwrap();
    let mut c = d.cri().await.unwrap();
    let pc = pod_config("resized", &d.logs);
    let pod = c.run_pod(&pc).await.unwrap();
    let call = |id: String, mem: i64| {
        c.update_pod_resources(UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: id,
            overhead: None,
            resources: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: mem,
                ..Default::default()
            }),
        })
    };
    call(pod.clone(), 48 << 20).await.unwrap();
    let rel = format!("{}/{pod}", d.cgroup_root.trim_start_matches('/'));
    let limit = cgroup_mounts()
        .iter()
        .flat_map(|m| {
            [
                m.join(&rel).join("memory.limit_in_bytes"),
                m.join(&rel).join("memory.max"),
            ]
        })
        .find(|p| p.exists())
        .map(|p| std::fs::read_to_string(p).unwrap().trim().to_string());
    assert_eq!(limit, Some((48u64 << 20).to_string()));
    let err = call("f".repeat(64), 1 << 20).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // The other RPCs still route to their services.
    assert!(c.rt.version(cri::VersionRequest::default()).await.is_ok());
    drop(c);
    d.shutdown().await;
}

#[tokio::test]
async fn systemd_driver_expands_slices_and_names_scopes() {
    use crust_e2e::{Daemon, cgroup_exists, cgroup_mounts, pod_config, registry};
    let d = Daemon::start_with("cgroup_driver = \"systemd\"")
        .await
        .unwrap();
    let mut c = d.cri().await.unwrap();
    let rc =
        c.rt.runtime_config(cri::RuntimeConfigRequest {})
            .await
            .unwrap()
            .into_inner();
    assert_eq!(
        rc.linux.unwrap().cgroup_driver,
        cri::CgroupDriver::Systemd as i32
    );
    let image = registry().busybox();
    c.pull(&image).await.unwrap();
    let top = format!("crustE2E{:08x}", rand::random::<u32>());
    let mut pc = pod_config("slice", &d.logs);
    pc.linux.as_mut().unwrap().cgroup_parent = format!("{top}-pod1.slice");
    let pod = c.run_pod(&pc).await.unwrap();
    let id = c
        .run(&pod, &pc, container_config("s", &image, &["sleep", "100"]))
        .await
        .unwrap();
    let scope = format!("/{top}.slice/{top}-pod1.slice/crust-{id}.scope");
    assert!(cgroup_exists(&scope), "{scope} missing");
    // A cgroupfs path is not a slice name.
    let mut bad = pod_config("notslice", &d.logs);
    bad.linux.as_mut().unwrap().cgroup_parent = "/some/path".into();
    let err = c.run_pod(&bad).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<tonic::Status>().unwrap().code(),
        Code::InvalidArgument
    );
    c.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
    assert!(!cgroup_exists(&format!("/{top}.slice/{top}-pod1.slice")));
    for m in cgroup_mounts() {
        let _ = std::fs::remove_dir(m.join(format!("{top}.slice")));
    }
    drop(c);
    d.shutdown().await;
}

#[tokio::test]
async fn memory_limits_hold_and_oom_kills_are_reported() {
    let PodFixture {
        d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start("oom").await;
    let limited = |name: &str, script: &str| {
        let mut cfg = container_config(name, &image, &["sh", "-c", script]);
        cfg.linux.as_mut().unwrap().resources = Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 32 << 20,
            ..Default::default()
        });
        cfg
    };
    // The container's own process grows past its limit: killed, 137, OOMKilled.
    let id = c
        .run(
            &pod,
            &pc,
            limited(
                "hog",
                "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
            ),
        )
        .await
        .unwrap();
    let st = c.wait_exited(&id, LONG).await.unwrap();
    assert_eq!(
        (st.exit_code, st.reason.as_str()),
        (137, "OOMKilled"),
        "{:?}",
        log_lines(&st.log_path)
    );
    // Only a child is killed and the container exits 0: still reported OOMKilled, as containerd
    // reports it.
    let id = c
        .run(
            &pod,
            &pc,
            limited(
                "child",
                "dd if=/dev/zero of=/dev/null bs=100M count=1 2>/dev/null; echo after",
            ),
        )
        .await
        .unwrap();
    let st = c.wait_exited(&id, LONG).await.unwrap();
    assert_eq!(st.reason, "OOMKilled");
    assert_eq!(
        log_lines(&st.log_path).last().map(|l| l.1.clone()),
        Some("after".to_string())
    );
    // Within the limit: nothing of the sort.
    let id = c
        .run(
            &pod,
            &pc,
            limited(
                "fits",
                "dd if=/dev/zero of=/dev/null bs=1M count=4 2>/dev/null",
            ),
        )
        .await
        .unwrap();
    let st = c.wait_exited(&id, LONG).await.unwrap();
    assert_eq!((st.exit_code, st.reason.as_str()), (0, "Completed"));
    drop(c);
    d.shutdown().await;
}

#[tokio::test]
async fn update_container_resources_changes_limits_live() {
    let PodFixture {
        d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start("resize").await;
    let mut cfg = container_config("app", &image, &["sleep", "1000"]);
    cfg.linux.as_mut().unwrap().resources = Some(cri::LinuxContainerResources {
        memory_limit_in_bytes: 64 << 20,
        cpu_quota: 50_000,
        cpu_period: 100_000,
        cpu_shares: 512,
        // memory + swap, as CRI and OCI count it.
        memory_swap_limit_in_bytes: 96 << 20,
        cpuset_cpus: "0".into(),
        ..Default::default()
    });
    let id = c.run(&pod, &pc, cfg).await.unwrap();
    let rel = format!("{}/{pod}/{id}", d.cgroup_root.trim_start_matches('/'));
    let read = |file: &str| {
        crust_e2e::cgroup_mounts()
            .iter()
            .map(|m| m.join(&rel).join(file))
            .find(|p| p.exists())
            .map(|p| std::fs::read_to_string(p).unwrap().trim().to_string())
    };
    let v2 = read("memory.max").is_some();
    // Limits set at create: CPU shares become cgroup v2's weight the way current runc and
    // libcontainer convert them (512 shares → weight 59).
    if v2 {
        assert_eq!(read("memory.max").unwrap(), (64u64 << 20).to_string());
        assert_eq!(read("cpu.max").unwrap(), "50000 100000");
        assert_eq!(read("cpu.weight").unwrap(), "59");
        // v2 counts swap alone.
        assert_eq!(read("memory.swap.max").unwrap(), (32u64 << 20).to_string());
    } else {
        assert_eq!(
            read("memory.limit_in_bytes").unwrap(),
            (64u64 << 20).to_string()
        );
        assert_eq!(read("cpu.shares").unwrap(), "512");
        assert_eq!(
            read("memory.memsw.limit_in_bytes").unwrap(),
            (96u64 << 20).to_string()
        );
    }
    assert_eq!(read("cpuset.cpus").unwrap(), "0");
    let update = |res: cri::LinuxContainerResources| cri::UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(res),
        ..Default::default()
    };
    let ncpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let all_cpus = if ncpus > 1 {
        format!("0-{}", ncpus - 1)
    } else {
        "0".to_string()
    };
    let new = cri::LinuxContainerResources {
        memory_limit_in_bytes: 48 << 20,
        cpu_quota: 20_000,
        cpu_period: 100_000,
        cpuset_cpus: all_cpus.clone(),
        ..Default::default()
    };
    c.rt.update_container_resources(update(new.clone()))
        .await
        .unwrap();
    if v2 {
        assert_eq!(read("memory.max").unwrap(), (48u64 << 20).to_string());
        assert_eq!(read("cpu.max").unwrap(), "20000 100000");
    } else {
        assert_eq!(
            read("memory.limit_in_bytes").unwrap(),
            (48u64 << 20).to_string()
        );
        assert_eq!(read("cpu.cfs_quota_us").unwrap(), "20000");
    }
    assert_eq!(read("cpuset.cpus").unwrap(), all_cpus);
    let st = c.status(&id).await.unwrap();
    let in_force = st.resources.unwrap().linux.unwrap();
    assert_eq!(in_force.memory_limit_in_bytes, 48 << 20);
    assert_eq!(in_force.cpu_quota, 20_000);

    // unified: raw cgroup v2 files, only on v2; never a path.
    let mut raw = new.clone();
    raw.unified = [("memory.high".to_string(), (40u64 << 20).to_string())].into();
    let r = c.rt.update_container_resources(update(raw)).await;
    if v2 {
        r.unwrap();
        assert_eq!(read("memory.high").unwrap(), (40u64 << 20).to_string());
    } else {
        assert_eq!(r.unwrap_err().code(), Code::InvalidArgument);
    }
    let mut evil = new.clone();
    evil.unified = [("../../cgroup.procs".to_string(), "1".to_string())].into();
    assert_eq!(
        c.rt.update_container_resources(update(evil))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    c.stop(&id, 0).await.unwrap();
    assert_eq!(
        c.rt.update_container_resources(update(new))
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
    drop(c);
    d.shutdown().await;
}

/// The gRPC health service answers on the CRI socket, for the server and both CRI services.
#[tokio::test]
async fn grpc_health_service_reports_serving() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let d = Daemon::start().await.unwrap();
    let c = d.cri().await.unwrap();
    let mut h = HealthClient::new(c.channel.clone());
    for service in ["", "runtime.v1.RuntimeService", "runtime.v1.ImageService"] {
        let r = h
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service:?}");
    }
    let e = h
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

/// kubelet puts a hugepage limit (0) in every container's resources for each page size the
/// kernel knows, whether or not the hugetlb controller is there (on this host it is not).
/// runc skips limits of missing controllers; so must crust, or kubelet runs no container.
/// A pod name longer than a hostname (critest's are) gets a hostname cut to a DNS label.
#[tokio::test]
async fn kubelet_hugepage_limits_and_long_pod_names_are_accepted() {
    let d = Daemon::start().await.unwrap();
    let mut c = d.cri().await.unwrap();
    let image = registry().busybox();
    c.pull(&image).await.unwrap();
    let long_name = format!("pod-with-a-name-longer-than-a-hostname-{}", "x".repeat(40));
    let mut pc = pod_config(&long_name, &d.logs);
    // critest sends no hostname (kubelet always does, cut to 63 bytes already).
    pc.hostname.clear();
    let pod = c.run_pod(&pc).await.unwrap();

    let mut page_sizes: Vec<String> = std::fs::read_dir("/sys/kernel/mm/hugepages")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().to_string();
                    let kb: u64 = n
                        .strip_prefix("hugepages-")?
                        .strip_suffix("kB")?
                        .parse()
                        .ok()?;
                    // kubelet's spelling: 2MB, 1GB.
                    Some(if kb >= 1 << 20 {
                        format!("{}GB", kb >> 20)
                    } else {
                        format!("{}MB", kb >> 10)
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    if page_sizes.is_empty() {
        page_sizes.push("2MB".into());
    }
    let mut cfg = container_config("hostname", &image, &["hostname"]);
    let linux = cfg.linux.get_or_insert_with(Default::default);
    linux.resources = Some(cri::LinuxContainerResources {
        cpu_period: 100_000,
        cpu_shares: 2,
        oom_score_adj: 1000,
        hugepage_limits: page_sizes
            .iter()
            .map(|p| cri::HugepageLimit {
                page_size: p.clone(),
                limit: 0,
            })
            .collect(),
        ..Default::default()
    });
    let ctr = c.run(&pod, &pc, cfg).await.unwrap();
    let st = c.wait_exited(&ctr, LONG).await.unwrap();
    assert_eq!(st.exit_code, 0, "{st:?}");
    let lines = log_lines(&st.log_path);
    let hostname = &lines[0].1;
    assert_eq!(hostname.len(), 63, "{hostname}");
    assert!(long_name.starts_with(hostname.as_str()));
    c.remove_pod(&pod).await.unwrap();
    d.shutdown().await;
}

/// kubelet's ImageVolume: an image mounted read-only at a path of another container, whole or
/// a sub path of it; its snapshots stay while the container exists, and removing the container
/// unmounts it.
#[tokio::test]
async fn image_volumes_mount_read_only_and_go_with_the_container() {
    let PodFixture {
        d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start("image-volume").await;
    let volume_image = registry().image("layered");
    let image_ref = c.pull(&volume_image).await.unwrap();
    let mount = |path: &str, sub: &str| cri::Mount {
        container_path: path.into(),
        readonly: true,
        image: Some(cri::ImageSpec {
            image: image_ref.clone(),
            ..Default::default()
        }),
        image_sub_path: sub.into(),
        ..Default::default()
    };
    let mut cfg = container_config(
        "reader",
        &image,
        &[
            "sh",
            "-c",
            "cat /vol/var/new.txt /sub/new.txt; touch /vol/x 2>&1; /vol/bin/true && echo EXEC-OK",
        ],
    );
    cfg.mounts = vec![mount("/vol", ""), mount("/sub", "var")];
    let ctr = c.run(&pod, &pc, cfg).await.unwrap();
    let st = c.wait_exited(&ctr, LONG).await.unwrap();
    let out: Vec<String> = log_lines(&st.log_path)
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    assert_eq!(out[0], "new", "{out:?}");
    assert_eq!(out[1], "new", "{out:?}");
    assert!(out[2].contains("Read-only file system"), "{out:?}");
    assert_eq!(out[3], "EXEC-OK", "{out:?}");
    // ContainerStatus names the image's id in the mounts, as kubelet reads it.
    assert!(
        st.mounts
            .iter()
            .all(|m| m.image.as_ref().is_some_and(|i| i.image_ref == image_ref)),
        "{:?}",
        st.mounts
    );
    // In use: RemoveImage keeps its layers (the container may still start again).
    let mounted = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&ctr) && l.contains("image-volumes"))
            .count()
    };
    assert_eq!(mounted(), 2);

    // A sub path that is not in the image, and a writable image volume, are refused.
    let mut missing = container_config("missing", &image, &["true"]);
    missing.mounts = vec![mount("/vol", "no/such/dir")];
    let err = c.create(&pod, &pc, missing).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<tonic::Status>().unwrap().code(),
        Code::InvalidArgument
    );
    let mut writable = container_config("writable", &image, &["true"]);
    writable.mounts = vec![cri::Mount {
        readonly: false,
        ..mount("/vol", "")
    }];
    let err = c.create(&pod, &pc, writable).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<tonic::Status>().unwrap().code(),
        Code::InvalidArgument
    );

    c.rt.remove_container(cri::RemoveContainerRequest {
        container_id: ctr.clone(),
    })
    .await
    .unwrap();
    assert_eq!(mounted(), 0, "image volumes left mounted");
    c.remove_pod(&pod).await.unwrap();
    d.shutdown().await;
}

/// The Stream* list RPCs (kubelet's CRIListStreaming) answer what their List* twins answer.
#[tokio::test]
async fn streamed_lists_match_the_lists() {
    use tokio_stream::StreamExt;
    let PodFixture {
        d,
        mut c,
        image,
        pod,
        pc,
    } = PodFixture::start("streamed").await;
    let ctr = c
        .run(
            &pod,
            &pc,
            container_config("sleeper", &image, &["sleep", "60"]),
        )
        .await
        .unwrap();

    let mut pods = Vec::new();
    let mut s =
        c.rt.stream_pod_sandboxes(cri::StreamPodSandboxesRequest::default())
            .await
            .unwrap()
            .into_inner();
    while let Some(chunk) = s.next().await {
        pods.extend(chunk.unwrap().pod_sandboxes.into_iter().map(|p| p.id));
    }
    assert_eq!(pods, vec![pod.clone()]);

    let mut ctrs = Vec::new();
    let mut s =
        c.rt.stream_containers(cri::StreamContainersRequest::default())
            .await
            .unwrap()
            .into_inner();
    while let Some(chunk) = s.next().await {
        ctrs.extend(chunk.unwrap().containers.into_iter().map(|c| c.id));
    }
    assert_eq!(ctrs, vec![ctr.clone()]);

    let mut stats = Vec::new();
    let mut s =
        c.rt.stream_container_stats(cri::StreamContainerStatsRequest::default())
            .await
            .unwrap()
            .into_inner();
    while let Some(chunk) = s.next().await {
        stats.extend(chunk.unwrap().container_stats);
    }
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].attributes.as_ref().unwrap().id, ctr);

    let mut images = Vec::new();
    let mut s = c
        .img
        .stream_images(cri::StreamImagesRequest::default())
        .await
        .unwrap()
        .into_inner();
    while let Some(chunk) = s.next().await {
        images.extend(chunk.unwrap().images.into_iter().map(|i| i.id));
    }
    let listed: Vec<String> = c
        .img
        .list_images(cri::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(images, listed);
    assert!(!images.is_empty());
    c.remove_pod(&pod).await.unwrap();
    d.shutdown().await;
}
