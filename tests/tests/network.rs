//! Pod networking through the real CNI plugins (Debian's containernetworking-plugins): a bridge
//! on a private subnet with no gateway, no masquerading and ip_forward left off, so nothing is
//! routed anywhere but between the test's own pods and this host.

use std::process::Command;
use std::time::Duration;

use crust_e2e::bridge::{Bridge, network_ready};
use crust_e2e::{PodFixture, container_config, cri, eventually, log_lines, pod_config};
use tonic::Code;

const LONG: Duration = Duration::from_secs(30);

fn ip_forward() -> String {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
        .unwrap()
        .trim()
        .to_string()
}

async fn pod_ip(c: &mut crust_e2e::Cri, pod: &str) -> String {
    c.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
        pod_sandbox_id: pod.into(),
        verbose: false,
    })
    .await
    .unwrap()
    .into_inner()
    .status
    .unwrap()
    .network
    .unwrap()
    .ip
}

#[tokio::test]
async fn pods_get_ips_reach_each_other_and_host_ports_work() {
    let forward_before = ip_forward();
    let PodFixture {
        d,
        mut c,
        image,
        pod: lo_only,
        pc: _,
    } = PodFixture::start("before-cni").await;
    // No CNI config yet: NetworkReady is false, and the pod that exists has no IP.
    assert!(!network_ready(&mut c).await);
    assert_eq!(pod_ip(&mut c, &lo_only).await, "");
    let bridge = Bridge::new(&d);
    assert!(
        network_ready(&mut c).await,
        "NetworkReady must follow the conf dir"
    );

    let host_port = 20000 + (rand::random::<u16>() % 20000) as i32;
    let mut web_cfg = pod_config("web", &d.logs);
    web_cfg.port_mappings = vec![cri::PortMapping {
        protocol: cri::Protocol::Tcp as i32,
        container_port: 8080,
        host_port,
        host_ip: String::new(),
    }];
    let web = c.run_pod(&web_cfg).await.unwrap();
    let web_ip = pod_ip(&mut c, &web).await;
    assert!(
        web_ip.starts_with(&format!("{}.", bridge.subnet_prefix)),
        "web pod ip {web_ip:?}"
    );
    let server = c
        .run(&web, &web_cfg, container_config("httpd", &image, &["sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html && cat /etc/hosts && exec httpd -f -p 8080 -h /www"]))
        .await
        .unwrap();
    let server_log = c.status(&server).await.unwrap().log_path;
    assert!(
        eventually(LONG, || async {
            log_lines(&server_log)
                .iter()
                .any(|(_, l)| l.contains("web"))
        })
        .await
    );
    // /etc/hosts names the pod's own IP.
    assert!(
        log_lines(&server_log)
            .iter()
            .any(|(_, l)| l.starts_with(&web_ip) && l.ends_with("web")),
        "{:?}",
        log_lines(&server_log)
    );

    // Another pod reaches it over the bridge.
    let client_cfg = pod_config("client", &d.logs);
    let client = c.run_pod(&client_cfg).await.unwrap();
    let client_ip = pod_ip(&mut c, &client).await;
    assert_ne!(client_ip, web_ip);
    // busybox-static's wget resolves through glibc NSS, which a static binary cannot load (it
    // crashes); nc with a numeric address needs no resolver.
    let fetch = c
        .run(&client, &client_cfg, container_config("wget", &image, &["sh", "-c", &format!("for i in 1 2 3 4 5 6 7 8 9 10; do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {web_ip} 8080 | tail -n 1 | grep . && exit 0; sleep 0.3; done; exit 1")]))
        .await
        .unwrap();
    let st = c.wait_exited(&fetch, LONG).await.unwrap();
    assert_eq!(st.exit_code, 0, "{:?}", log_lines(&st.log_path));
    assert_eq!(log_lines(&st.log_path).last().unwrap().1, "hello-from-web");

    // The host port reaches the pod from the host: give the bridge an address on the pod
    // subnet (local delivery over the bridge, no forwarding), then connect to that address.
    let host_side = format!("{}.254", bridge.subnet_prefix);
    assert!(
        Command::new("ip")
            .args([
                "addr",
                "add",
                &format!("{host_side}/24"),
                "dev",
                &bridge.name
            ])
            .status()
            .unwrap()
            .success()
    );
    let got = eventually(LONG, || async {
        Command::new("curl")
            .args([
                "-fsS",
                "--max-time",
                "2",
                &format!("http://{host_side}:{host_port}/"),
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "hello-from-web")
            .unwrap_or(false)
    })
    .await;
    assert!(got, "hostPort {host_port} did not reach the web pod");
    assert_eq!(
        ip_forward(),
        forward_before,
        "ip_forward must stay as it was"
    );

    // Stopping releases the IP (host-local's lease file) and is idempotent.
    let lease = d.dir.path().join("ipam/crust-e2e").join(&web_ip);
    assert!(lease.exists());
    let ports_on_bridge = || {
        Command::new("ip")
            .args(["-o", "link", "show", "master", &bridge.name])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
            .unwrap_or(0)
    };
    let ports_before = ports_on_bridge();
    for _ in 0..2 {
        c.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: web.clone(),
        })
        .await
        .unwrap();
    }
    assert!(!lease.exists(), "the pod's IP was not released");
    // The pod's veth goes with its network namespace, which crust drops before the DEL (the
    // kernel frees the pair in the background).
    let veth_gone = eventually(Duration::from_secs(10), || async {
        ports_on_bridge() == ports_before - 1
    })
    .await;
    assert!(veth_gone, "the pod's veth is still on {}", bridge.name);
    for _ in 0..2 {
        c.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: web.clone(),
        })
        .await
        .unwrap();
    }
    drop(c);
    d.shutdown().await;
    drop(bridge);
}

#[tokio::test]
async fn host_network_pods_use_the_host_namespaces_without_cni() {
    let PodFixture {
        d,
        mut c,
        image,
        pod: _,
        pc: _,
    } = PodFixture::start("plain").await;
    let _bridge = Bridge::new(&d);
    let mut cfg = pod_config("hostnet", &d.logs);
    cfg.hostname = String::new();
    cfg.linux = Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(cri::NamespaceOption {
                network: cri::NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let pod = c.run_pod(&cfg).await.unwrap();
    assert_eq!(
        pod_ip(&mut c, &pod).await,
        "",
        "host-network pods get no CNI address"
    );
    let id = c
        .run(
            &pod,
            &cfg,
            container_config(
                "probe",
                &image,
                &["sh", "-c", "readlink /proc/self/ns/net; hostname"],
            ),
        )
        .await
        .unwrap();
    let st = c.wait_exited(&id, LONG).await.unwrap();
    let out: Vec<String> = log_lines(&st.log_path)
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    let host_net = std::fs::read_link("/proc/self/ns/net")
        .unwrap()
        .display()
        .to_string();
    let host_name = nix::unistd::gethostname()
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert_eq!(out, vec![host_net, host_name]);
    drop(c);
    d.shutdown().await;
}

#[tokio::test]
async fn a_failing_cni_plugin_fails_the_pod_cleanly() {
    let PodFixture {
        d,
        mut c,
        image: _,
        pod: first,
        pc: _,
    } = PodFixture::start("ok").await;
    std::fs::create_dir_all(d.cni_dir()).unwrap();
    std::fs::create_dir_all(d.cni_bin_dir()).unwrap();
    let plugin = d.cni_bin_dir().join("crust-e2e-fail");
    std::fs::write(
        &plugin,
        "#!/bin/sh\nif [ \"$CNI_COMMAND\" = ADD ]; then echo '{\"cniVersion\":\"0.4.0\",\"code\":11,\"msg\":\"no addresses left\"}'; exit 1; fi\nexit 0\n",
    )
    .unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&plugin).unwrap().permissions(),
        0o755,
    );
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // A real bridge + host-local first, then the failing plugin: the bridge's veth and the
    // address host-local handed out must both be undone.
    let bridge_name = format!("crust{:08x}", rand::random::<u32>());
    let conf = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "failing",
        "plugins": [
            {"type": "bridge", "bridge": bridge_name, "isGateway": false, "ipMasq": false,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.252.7.0/24"}]], "dataDir": d.dir.path().join("ipam")}},
            {"type": "crust-e2e-fail"}
        ]
    });
    std::fs::write(d.cni_dir().join("10-fail.conflist"), conf.to_string()).unwrap();
    let err = c.run_pod(&pod_config("doomed", &d.logs)).await.unwrap_err();
    let status = err.downcast_ref::<tonic::Status>().unwrap();
    assert_eq!(status.code(), Code::Internal);
    let leases: Vec<String> = std::fs::read_dir(d.dir.path().join("ipam/failing"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !leases.iter().any(|l| l.starts_with("10.252.7.")),
        "leaked lease: {leases:?}"
    );
    let ports = Command::new("ip")
        .args(["-o", "link", "show", "master", &bridge_name])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&ports.stdout).trim().is_empty(),
        "leaked veth on the bridge"
    );
    let _ = Command::new("ip")
        .args(["link", "del", &bridge_name])
        .status();
    assert!(
        status.message().contains("no addresses left"),
        "{}",
        status.message()
    );
    // Nothing of the failed pod is left: no record, no state dir, no mounts.
    let pods = c.list_pods().await.unwrap();
    assert_eq!(
        pods.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        vec![first.clone()]
    );
    let dirs: Vec<_> = std::fs::read_dir(d.state.join("pods"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(dirs.len(), 1);
    // The same name can be used again once the network works.
    std::fs::remove_file(d.cni_dir().join("10-fail.conflist")).unwrap();
    c.run_pod(&pod_config("doomed", &d.logs)).await.unwrap();
    drop(c);
    d.shutdown().await;
}

#[tokio::test]
async fn crustctl_publishes_ports_and_sets_dns() {
    let PodFixture {
        d,
        c,
        image,
        pod: _,
        pc: _,
    } = PodFixture::start("unused").await;
    let bridge = Bridge::new(&d);
    let ctl = |args: &[&str]| crust_e2e::crustctl(&d, args);
    let host_port = (20000 + rand::random::<u16>() % 20000).to_string();
    let o = ctl(&[
        "run",
        "-d",
        "--name",
        "pub",
        "-p",
        &format!("{host_port}:8080"),
        "--dns",
        "10.0.0.53",
        "--hostname",
        "webby",
        &image,
        "sh",
        "-c",
        "mkdir /www && echo published > /www/index.html && cat /etc/resolv.conf && hostname && exec httpd -f -p 8080 -h /www",
    ]);
    assert!(o.status.success(), "{o:?}");
    let pods = String::from_utf8_lossy(&ctl(&["pods"]).stdout).to_string();
    let line = pods
        .lines()
        .find(|l| l.contains("pub"))
        .expect("pod listed");
    assert!(
        line.contains(&format!("{}.", bridge.subnet_prefix)),
        "{pods}"
    );
    assert!(
        eventually(LONG, || async {
            let logs = String::from_utf8_lossy(&ctl(&["logs", "pub"]).stdout).to_string();
            logs.contains("nameserver 10.0.0.53") && logs.contains("webby")
        })
        .await
    );
    let host_side = format!("{}.254", bridge.subnet_prefix);
    assert!(
        Command::new("ip")
            .args([
                "addr",
                "add",
                &format!("{host_side}/24"),
                "dev",
                &bridge.name
            ])
            .status()
            .unwrap()
            .success()
    );
    assert!(
        eventually(LONG, || async {
            Command::new("curl")
                .args([
                    "-fsS",
                    "--max-time",
                    "2",
                    &format!("http://{host_side}:{host_port}/"),
                ])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "published")
                .unwrap_or(false)
        })
        .await
    );
    assert!(ctl(&["rm", "-f", "pub"]).status.success());
    // --network host: the container is in the host's network namespace.
    let o = ctl(&[
        "run",
        "--rm",
        "--network",
        "host",
        &image,
        "readlink",
        "/proc/self/ns/net",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        std::fs::read_link("/proc/self/ns/net")
            .unwrap()
            .display()
            .to_string()
    );
    drop(c);
    d.shutdown().await;
}

#[tokio::test]
async fn pod_stats_cover_cgroup_processes_network_and_containers() {
    let PodFixture {
        d,
        mut c,
        image,
        pod: _,
        pc: _,
    } = PodFixture::start("unused").await;
    let _bridge = Bridge::new(&d);
    let pc = pod_config("statted", &d.logs);
    let pod = c.run_pod(&pc).await.unwrap();
    let a = c
        .run(&pod, &pc, container_config("mem", &image, &["sh", "-c", "dd if=/dev/zero of=/dev/shm/x bs=1M count=24 2>/dev/null; echo ready; exec sleep 1000"]))
        .await
        .unwrap();
    let b = c
        .run(
            &pod,
            &pc,
            container_config("idle", &image, &["sleep", "1000"]),
        )
        .await
        .unwrap();
    let path = c.status(&a).await.unwrap().log_path;
    assert!(
        eventually(LONG, || async {
            log_lines(&path).iter().any(|(_, l)| l == "ready")
        })
        .await
    );
    let s =
        c.rt.pod_sandbox_stats(cri::PodSandboxStatsRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    assert_eq!(s.attributes.as_ref().unwrap().id, pod);
    let l = s.linux.unwrap();
    assert!(l.memory.unwrap().usage_bytes.unwrap().value >= 24 << 20);
    assert!(l.cpu.unwrap().usage_core_nano_seconds.unwrap().value > 0);
    assert_eq!(
        l.process.unwrap().process_count.unwrap().value,
        2,
        "two sleeps"
    );
    let net = l.network.unwrap();
    assert_eq!(net.default_interface.as_ref().unwrap().name, "eth0");
    let mut ids: Vec<String> = l
        .containers
        .iter()
        .map(|c| c.attributes.as_ref().unwrap().id.clone())
        .collect();
    ids.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(ids, want);
    // The pod's interfaces also come out as cAdvisor-named CRI metrics.
    let metrics =
        c.rt.list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest {})
            .await
            .unwrap()
            .into_inner()
            .pod_metrics;
    let pm = metrics.iter().find(|m| m.pod_sandbox_id == pod).unwrap();
    let rx = pm
        .metrics
        .iter()
        .find(|m| m.name == "container_network_receive_bytes_total")
        .expect("pod network metric");
    assert_eq!(rx.label_values.last().map(String::as_str), Some("eth0"));
    assert_eq!(pm.container_metrics.len(), 2);
    let list =
        c.rt.list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest {
            filter: Some(cri::PodSandboxStatsFilter {
                id: pod.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert_eq!(list.len(), 1);
    drop(c);
    d.shutdown().await;
}

#[tokio::test]
async fn a_netns_deleted_under_the_pod_still_tears_down() {
    let PodFixture {
        d,
        mut c,
        image: _,
        pod: _,
        pc: _,
    } = PodFixture::start("unused").await;
    let _bridge = Bridge::new(&d);
    let pc = pod_config("netnsgone", &d.logs);
    let pod = c.run_pod(&pc).await.unwrap();
    let ip = pod_ip(&mut c, &pod).await;
    let lease = d.dir.path().join("ipam/crust-e2e").join(&ip);
    assert!(lease.exists());
    // Someone removes the pod's network namespace behind crust's back.
    let netns = d.state.join("pods").join(&pod).join("ns/net");
    assert!(
        Command::new("umount")
            .arg("-l")
            .arg(&netns)
            .status()
            .unwrap()
            .success()
    );
    c.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    assert!(
        !lease.exists(),
        "the IP must be released even without the netns"
    );
    c.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    assert!(c.list_pods().await.unwrap().len() == 1);
    drop(c);
    d.shutdown().await;
}

#[tokio::test]
async fn cni_gets_pod_identity_capability_args_and_its_prev_result() {
    let PodFixture {
        d,
        mut c,
        image: _,
        pod: _,
        pc: _,
    } = PodFixture::start("unused").await;
    let records = d.dir.path().join("cni-records");
    std::fs::create_dir_all(&records).unwrap();
    std::fs::create_dir_all(d.cni_bin_dir()).unwrap();
    std::fs::create_dir_all(d.cni_dir()).unwrap();
    // A plugin that records what it is given and answers a fixed CNI 1.0.0 result.
    let plugin = d.cni_bin_dir().join("crust-e2e-record");
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\ncat > {dir}/$CNI_COMMAND.json\nenv | grep ^CNI_ | sort > {dir}/$CNI_COMMAND.env\nif [ \"$CNI_COMMAND\" = ADD ]; then echo '{{\"cniVersion\":\"1.0.0\",\"interfaces\":[{{\"name\":\"eth0\"}}],\"ips\":[{{\"address\":\"10.99.0.7/24\",\"interface\":0}},{{\"address\":\"fd00:99::7/64\",\"interface\":0}}]}}'; fi\n",
            dir = records.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(
        d.cni_dir().join("10-record.conflist"),
        r#"{"cniVersion":"1.0.0","name":"recorded","plugins":[{"type":"crust-e2e-record","capabilities":{"portMappings":true,"dns":true,"bandwidth":true}}]}"#,
    )
    .unwrap();

    let mut pc = pod_config("identified", &d.logs);
    pc.port_mappings = vec![
        cri::PortMapping {
            protocol: cri::Protocol::Tcp as i32,
            container_port: 80,
            host_port: 8080,
            host_ip: String::new(),
        },
        cri::PortMapping {
            protocol: cri::Protocol::Udp as i32,
            container_port: 53,
            host_port: 5353,
            host_ip: "127.0.0.1".into(),
        },
        cri::PortMapping {
            protocol: cri::Protocol::Sctp as i32,
            container_port: 9,
            host_port: 9999,
            host_ip: String::new(),
        },
        // No host port: nothing to publish.
        cri::PortMapping {
            protocol: cri::Protocol::Tcp as i32,
            container_port: 81,
            host_port: 0,
            host_ip: String::new(),
        },
    ];
    pc.dns_config = Some(cri::DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec!["e2e.svc.cluster.local".into()],
        options: vec!["ndots:5".into()],
    });
    pc.annotations
        .insert("kubernetes.io/ingress-bandwidth".into(), "10M".into());
    pc.annotations
        .insert("kubernetes.io/egress-bandwidth".into(), "1Mi".into());
    let pod = c.run_pod(&pc).await.unwrap();

    let status =
        c.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .network
        .unwrap();
    assert_eq!(status.ip, "10.99.0.7");
    assert_eq!(
        status
            .additional_ips
            .iter()
            .map(|i| i.ip.clone())
            .collect::<Vec<_>>(),
        vec!["fd00:99::7"]
    );

    let add: serde_json::Value =
        serde_json::from_slice(&std::fs::read(records.join("ADD.json")).unwrap()).unwrap();
    assert_eq!(add["name"], "recorded");
    assert_eq!(add["cniVersion"], "1.0.0");
    let rc = &add["runtimeConfig"];
    assert_eq!(
        rc["portMappings"],
        serde_json::json!([
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"},
            {"hostPort": 9999, "containerPort": 9, "protocol": "sctp"}
        ])
    );
    assert_eq!(rc["dns"]["servers"], serde_json::json!(["10.96.0.10"]));
    assert_eq!(
        rc["dns"]["searches"],
        serde_json::json!(["e2e.svc.cluster.local"])
    );
    assert_eq!(rc["bandwidth"]["ingressRate"], 10_000_000);
    assert_eq!(rc["bandwidth"]["egressRate"], 1 << 20);
    let env = std::fs::read_to_string(records.join("ADD.env")).unwrap();
    let meta = pc.metadata.as_ref().unwrap();
    for want in [
        "CNI_COMMAND=ADD".to_string(),
        format!("CNI_CONTAINERID={pod}"),
        "CNI_IFNAME=eth0".to_string(),
        format!(
            "CNI_NETNS={}",
            d.state.join("pods").join(&pod).join("ns/net").display()
        ),
        format!(
            "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=e2e;K8S_POD_NAME=identified;K8S_POD_INFRA_CONTAINER_ID={pod};K8S_POD_UID={}",
            meta.uid
        ),
    ] {
        assert!(env.lines().any(|l| l == want), "{want} not in\n{env}");
    }

    // CHECK is available: verbose status runs it with the ADD result.
    let info =
        c.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner()
        .info;
    assert!(info["info"].contains("ok (recorded)"), "{info:?}");
    let check: serde_json::Value =
        serde_json::from_slice(&std::fs::read(records.join("CHECK.json")).unwrap()).unwrap();
    assert_eq!(check["prevResult"]["ips"][0]["address"], "10.99.0.7/24");

    // DEL gets the ADD result as prevResult.
    c.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    let del: serde_json::Value =
        serde_json::from_slice(&std::fs::read(records.join("DEL.json")).unwrap()).unwrap();
    assert_eq!(del["prevResult"]["ips"][0]["address"], "10.99.0.7/24");

    // A bandwidth annotation that is not a quantity is refused before anything is set up.
    let mut bad = pod_config("badbw", &d.logs);
    bad.annotations
        .insert("kubernetes.io/ingress-bandwidth".into(), "fast".into());
    let err = c.run_pod(&bad).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<tonic::Status>().unwrap().code(),
        Code::InvalidArgument
    );
    drop(c);
    d.shutdown().await;
}
