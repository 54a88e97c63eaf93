//! Hostile input, property-tested through the real daemon: every CRI request type (all 34
//! RuntimeService and ImageService calls) with random ids, huge strings, NUL bytes, `..` and
//! absolute paths, unknown enum values and extreme numbers, aimed at made-up objects and at a
//! real pod, container and image. Every answer must be a success or a clean refusal (a code
//! that says the caller was wrong, with a short message), the daemon must keep serving, and its
//! state must stay whole. proptest shrinks a failing case to the smallest input that fails.
//! The short run is the default; `scripts/stress.sh` raises CRUST_STRESS_FUZZ.
//!
//! Strings that are not UTF-8 cannot be built with the generated types; a second test sends
//! them as raw protobuf.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crust_e2e::{
    Cri, Daemon, container_config, cri, ctr_security, eventually, footprint, pod_config,
    pod_namespaces, registry,
};
use crust_proto::cri::UpdatePodSandboxResourcesRequest;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tonic::Code;

/// The number of RPCs [`call`] knows: the 34 of the `k8s-cri` bindings and
/// UpdatePodSandboxResources, which crust serves beside them.
const RPCS: usize = 35;

/// Inputs of one call: which RPC, and the strings, numbers, enum values and flags its request
/// is built from.
#[derive(Debug, Clone)]
struct Case {
    rpc: usize,
    s: Vec<String>,
    n: Vec<i64>,
    e: Vec<i32>,
    b: Vec<bool>,
}

/// Strings an attacker (or a broken client) might send.
fn hostile() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        Just(" ".to_string()),
        Just("../../../../etc/passwd".to_string()),
        Just("/etc/shadow".to_string()),
        Just("a/../../b".to_string()),
        Just("\u{0}nul\u{0}".to_string()),
        Just("ünï©ødé/💥".to_string()),
        (256usize..300_000).prop_map(|n| "x".repeat(n)),
        "[a-f0-9]{12,64}",
        "\\PC{0,24}",
    ]
    .boxed()
}

/// [`hostile`], or a real object's id or name, whole or a prefix of it.
fn hostile_or_real(real: Vec<String>) -> BoxedStrategy<String> {
    let prefixes: Vec<String> = real
        .iter()
        .flat_map(|r| [r.clone(), r.chars().take(6).collect()])
        .collect();
    prop_oneof![2 => hostile(), 1 => proptest::sample::select(prefixes)].boxed()
}

fn number() -> BoxedStrategy<i64> {
    prop_oneof![
        any::<i64>(),
        -5i64..70_000,
        Just(0),
        Just(i64::MAX),
        Just(i64::MIN),
        Just(-1)
    ]
    .boxed()
}

/// Cases for one RPC (each RPC gets its own run, so every one is tried as often).
fn case(rpc: usize, real: Vec<String>) -> impl Strategy<Value = Case> {
    (
        Just(rpc),
        proptest::collection::vec(hostile_or_real(real), 6),
        proptest::collection::vec(number(), 6),
        proptest::collection::vec(any::<i32>(), 3),
        proptest::collection::vec(any::<bool>(), 3),
    )
        .prop_map(|(rpc, s, n, e, b)| Case { rpc, s, n, e, b })
}

/// The real objects the calls may hit.
struct Fixture {
    pod: String,
    pod_config: cri::PodSandboxConfig,
    container: String,
    image: String,
    /// Names pulled through: the test registry, or docker.io (mirrored to the test registry,
    /// never the internet).
    registry: String,
    cgroup_root: String,
    logs: std::path::PathBuf,
}

/// An id for a call that stops or removes things: never a real object's (a hostile string
/// that happens to be a real id's prefix would end the fixture, which is allowed).
fn made_up(c: &Case, i: usize, f: &Fixture) -> String {
    let s = &c.s[i];
    if !s.is_empty() && (f.pod.starts_with(s.as_str()) || f.container.starts_with(s.as_str())) {
        format!("gone-{s}")
    } else {
        s.clone()
    }
}

/// An unknown value for enums whose known values would reach the host (namespace modes).
fn unknown_mode(v: i32) -> i32 {
    if (0..=3).contains(&v) { v + 4 } else { v }
}

fn labels(c: &Case) -> HashMap<String, String> {
    [(c.s[4].clone(), c.s[5].clone())].into()
}

/// The real pod's config with one field made hostile (chosen by the case).
fn hostile_pod(c: &Case, f: &Fixture) -> cri::PodSandboxConfig {
    let mut pc = pod_config(&format!("fz{:x}", c.n[5] as u16), &f.logs);
    match c.n[0].rem_euclid(11) {
        0 => pc.metadata.as_mut().unwrap().name = c.s[1].clone(),
        1 => pc.metadata.as_mut().unwrap().namespace = c.s[1].clone(),
        2 => pc.log_directory = c.s[1].clone(),
        3 => pc.hostname = c.s[1].clone(),
        4 => {
            pc.port_mappings = vec![cri::PortMapping {
                protocol: c.e[0],
                container_port: c.n[1] as i32,
                host_port: c.n[2] as i32,
                host_ip: c.s[2].clone(),
            }]
        }
        5 => {
            pc.dns_config = Some(cri::DnsConfig {
                servers: vec![c.s[1].clone()],
                searches: vec![c.s[2].clone()],
                options: vec![c.s[3].clone()],
            })
        }
        6 => pc.linux.as_mut().unwrap().sysctls = [(c.s[1].clone(), c.s[2].clone())].into(),
        7 => {
            let ns = pod_namespaces(&mut pc);
            ns.network = unknown_mode(c.e[0]);
            ns.pid = unknown_mode(c.e[1]);
            ns.ipc = unknown_mode(c.e[2]);
        }
        // Under the daemon's own cgroup parent: the test makes no cgroup anywhere else.
        8 => pc.linux.as_mut().unwrap().cgroup_parent = format!("{}/{}", f.cgroup_root, c.s[1]),
        9 => {
            pc.linux.as_mut().unwrap().resources = Some(cri::LinuxContainerResources {
                cpu_period: c.n[1],
                cpu_quota: c.n[2],
                cpu_shares: c.n[3],
                memory_limit_in_bytes: c.n[4],
                cpuset_cpus: c.s[1].clone(),
                ..Default::default()
            })
        }
        _ => {
            pc.labels = labels(c);
            pc.annotations = labels(c);
        }
    }
    pc
}

/// A container config for the real pod with one field made hostile.
fn hostile_container(c: &Case, f: &Fixture) -> cri::ContainerConfig {
    let mut cfg = container_config(
        &format!("fz{:x}", c.n[5] as u16),
        &f.image,
        &["sleep", "60"],
    );
    match c.n[0].rem_euclid(12) {
        0 => cfg.metadata.as_mut().unwrap().name = c.s[1].clone(),
        1 => cfg.image.as_mut().unwrap().image = c.s[1].clone(),
        2 => cfg.log_path = c.s[1].clone(),
        3 => cfg.working_dir = c.s[1].clone(),
        4 => {
            cfg.command = vec![c.s[1].clone()];
            cfg.args = vec![c.s[2].clone()];
        }
        5 => {
            cfg.envs = vec![cri::KeyValue {
                key: c.s[1].clone(),
                value: c.s[2].clone().into(),
            }]
        }
        6 => {
            cfg.mounts = vec![cri::Mount {
                container_path: c.s[1].clone(),
                host_path: c.s[2].clone(),
                propagation: c.e[0],
                readonly: c.b[0],
                selinux_relabel: c.b[1],
                ..Default::default()
            }]
        }
        7 => {
            cfg.devices = vec![cri::Device {
                container_path: c.s[1].clone(),
                host_path: c.s[2].clone(),
                permissions: c.s[3].clone(),
            }]
        }
        8 => {
            cfg.linux.as_mut().unwrap().resources = Some(cri::LinuxContainerResources {
                cpu_period: c.n[1],
                cpu_quota: c.n[2],
                cpu_shares: c.n[3],
                memory_limit_in_bytes: c.n[4],
                oom_score_adj: c.n[5],
                cpuset_cpus: c.s[1].clone(),
                cpuset_mems: c.s[2].clone(),
                unified: [(c.s[3].clone(), c.s[4].clone())].into(),
                ..Default::default()
            })
        }
        9 => {
            let sc = ctr_security(&mut cfg);
            sc.capabilities = Some(cri::Capability {
                add_capabilities: vec![c.s[1].clone()],
                drop_capabilities: vec![c.s[2].clone()],
                ..Default::default()
            });
            sc.run_as_user = Some(cri::Int64Value { value: c.n[1] });
            sc.run_as_username = c.s[3].clone();
            sc.supplemental_groups = vec![c.n[2]];
        }
        10 => {
            let sc = ctr_security(&mut cfg);
            sc.seccomp = Some(cri::SecurityProfile {
                profile_type: c.e[0],
                localhost_ref: c.s[1].clone(),
            });
            sc.apparmor = Some(cri::SecurityProfile {
                profile_type: c.e[1],
                localhost_ref: c.s[2].clone(),
            });
            sc.masked_paths = vec![c.s[3].clone()];
            sc.readonly_paths = vec![c.s[4].clone()];
            sc.namespace_options.as_mut().unwrap().pid = unknown_mode(c.e[2]);
        }
        _ => {
            cfg.labels = labels(c);
            cfg.annotations = labels(c);
            cfg.tty = c.b[0];
            cfg.stdin = c.b[1];
        }
    }
    cfg
}

/// An image name that cannot send the daemon off the machine: names of other registries are
/// moved under the test registry (docker.io names go to its mirror).
fn local_image(s: &str, f: &Fixture) -> String {
    let host = s.split('/').next().unwrap_or("");
    if s.contains('/') && (host.contains('.') || host.contains(':') || host == "localhost") {
        format!("{}/{s}", f.registry)
    } else {
        s.to_string()
    }
}

fn spec(image: String) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image,
        ..Default::default()
    })
}

/// What an accepted call made, to be undone.
enum Made {
    Nothing,
    Pod(String),
    Container(String),
}

fn nothing<T>(_: T) -> Made {
    Made::Nothing
}

/// Runs the case's RPC. Ok is the call's success (and what it made).
async fn call(cr: &mut Cri, c: &Case, f: &Fixture) -> Result<Made, tonic::Status> {
    let (rt, img) = (&mut cr.rt, &mut cr.img);
    let s = |i: usize| c.s[i].clone();
    match c.rpc {
        0 => rt
            .version(cri::VersionRequest { version: s(0) })
            .await
            .map(nothing),
        1 => rt
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(hostile_pod(c, f)),
                runtime_handler: if c.b[0] { s(2) } else { String::new() },
            })
            .await
            .map(|r| Made::Pod(r.into_inner().pod_sandbox_id)),
        2 => rt
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: made_up(c, 0, f),
            })
            .await
            .map(nothing),
        3 => rt
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: made_up(c, 0, f),
            })
            .await
            .map(nothing),
        4 => rt
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: s(0),
                verbose: c.b[0],
            })
            .await
            .map(nothing),
        5 => rt
            .list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    id: s(0),
                    state: c.b[0].then_some(cri::PodSandboxStateValue { state: c.e[0] }),
                    label_selector: labels(c),
                }),
            })
            .await
            .map(nothing),
        6 => rt
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: if c.b[0] { f.pod.clone() } else { s(0) },
                config: Some(hostile_container(c, f)),
                sandbox_config: if c.b[1] {
                    Some(f.pod_config.clone())
                } else {
                    Some(hostile_pod(c, f))
                },
            })
            .await
            .map(|r| Made::Container(r.into_inner().container_id)),
        7 => rt
            .start_container(cri::StartContainerRequest { container_id: s(0) })
            .await
            .map(nothing),
        8 => rt
            .stop_container(cri::StopContainerRequest {
                container_id: made_up(c, 0, f),
                timeout: c.n[0],
            })
            .await
            .map(nothing),
        9 => rt
            .remove_container(cri::RemoveContainerRequest {
                container_id: made_up(c, 0, f),
            })
            .await
            .map(nothing),
        10 => rt
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    id: s(0),
                    state: c.b[0].then_some(cri::ContainerStateValue { state: c.e[0] }),
                    pod_sandbox_id: s(1),
                    label_selector: labels(c),
                }),
            })
            .await
            .map(nothing),
        11 => rt
            .container_status(cri::ContainerStatusRequest {
                container_id: s(0),
                verbose: c.b[0],
            })
            .await
            .map(nothing),
        12 => rt
            .update_container_resources(cri::UpdateContainerResourcesRequest {
                container_id: s(0),
                linux: Some(cri::LinuxContainerResources {
                    cpu_period: c.n[0],
                    cpu_quota: c.n[1],
                    cpu_shares: c.n[2],
                    memory_limit_in_bytes: c.n[3],
                    oom_score_adj: c.n[4],
                    cpuset_cpus: s(1),
                    cpuset_mems: s(2),
                    unified: [(s(3), s(4))].into(),
                    ..Default::default()
                }),
                windows: None,
                annotations: labels(c),
            })
            .await
            .map(nothing),
        13 => rt
            .reopen_container_log(cri::ReopenContainerLogRequest { container_id: s(0) })
            .await
            .map(nothing),
        14 => rt
            .exec_sync(cri::ExecSyncRequest {
                container_id: s(0),
                cmd: vec![s(1), s(2)],
                timeout: c.n[0].clamp(-1, 2),
            })
            .await
            .map(nothing),
        15 => rt
            .exec(cri::ExecRequest {
                container_id: s(0),
                cmd: vec![s(1)],
                tty: c.b[0],
                stdin: c.b[1],
                stdout: c.b[2],
                stderr: c.b[0] && c.b[2],
            })
            .await
            .map(nothing),
        16 => rt
            .attach(cri::AttachRequest {
                container_id: s(0),
                stdin: c.b[0],
                tty: c.b[1],
                stdout: c.b[2],
                stderr: c.b[0],
            })
            .await
            .map(nothing),
        17 => rt
            .port_forward(cri::PortForwardRequest {
                pod_sandbox_id: s(0),
                port: vec![c.n[0] as i32, c.e[0]],
            })
            .await
            .map(nothing),
        18 => rt
            .container_stats(cri::ContainerStatsRequest { container_id: s(0) })
            .await
            .map(nothing),
        19 => rt
            .list_container_stats(cri::ListContainerStatsRequest {
                filter: Some(cri::ContainerStatsFilter {
                    id: s(0),
                    pod_sandbox_id: s(1),
                    label_selector: labels(c),
                }),
            })
            .await
            .map(nothing),
        20 => rt
            .pod_sandbox_stats(cri::PodSandboxStatsRequest {
                pod_sandbox_id: s(0),
            })
            .await
            .map(nothing),
        21 => rt
            .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest {
                filter: Some(cri::PodSandboxStatsFilter {
                    id: s(0),
                    label_selector: labels(c),
                }),
            })
            .await
            .map(nothing),
        22 => rt
            .update_runtime_config(cri::UpdateRuntimeConfigRequest {
                runtime_config: Some(cri::RuntimeConfig {
                    network_config: Some(cri::NetworkConfig { pod_cidr: s(0) }),
                }),
            })
            .await
            .map(nothing),
        23 => rt
            .status(cri::StatusRequest { verbose: c.b[0] })
            .await
            .map(nothing),
        24 => rt
            .checkpoint_container(cri::CheckpointContainerRequest {
                container_id: s(0),
                location: s(1),
                timeout: c.n[0],
            })
            .await
            .map(nothing),
        25 => {
            // A stream: opening it must work; its first event need not come.
            let mut events = rt
                .get_container_events(cri::GetEventsRequest {})
                .await?
                .into_inner();
            let _ =
                tokio::time::timeout(std::time::Duration::from_millis(5), events.message()).await;
            Ok(Made::Nothing)
        }
        26 => rt
            .list_metric_descriptors(cri::ListMetricDescriptorsRequest {})
            .await
            .map(nothing),
        27 => rt
            .list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest {})
            .await
            .map(nothing),
        28 => rt
            .runtime_config(cri::RuntimeConfigRequest {})
            .await
            .map(nothing),
        29 => img
            .list_images(cri::ListImagesRequest {
                filter: Some(cri::ImageFilter { image: spec(s(0)) }),
            })
            .await
            .map(nothing),
        30 => img
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: s(0),
                    annotations: labels(c),
                    user_specified_image: s(1),
                    runtime_handler: s(2),
                    image_ref: s(3),
                }),
                verbose: c.b[0],
            })
            .await
            .map(nothing),
        31 => img
            .pull_image(cri::PullImageRequest {
                image: spec(local_image(&s(0), f)),
                auth: c.b[0].then(|| cri::AuthConfig {
                    username: s(1),
                    password: s(2),
                    auth: s(3),
                    server_address: s(4),
                    identity_token: s(5),
                    registry_token: s(1),
                }),
                sandbox_config: c.b[1].then(|| hostile_pod(c, f)),
            })
            .await
            .map(nothing),
        32 => img
            .remove_image(cri::RemoveImageRequest {
                image: spec(if s(0) == f.image {
                    format!("{}x", f.image)
                } else {
                    s(0)
                }),
            })
            .await
            .map(nothing),
        33 => img
            .image_fs_info(cri::ImageFsInfoRequest {})
            .await
            .map(nothing),
        _ => {
            let resources = |i: usize| cri::LinuxContainerResources {
                cpu_period: c.n[i],
                cpu_quota: c.n[i + 1],
                memory_limit_in_bytes: c.n[i + 2],
                cpuset_cpus: s(i),
                ..Default::default()
            };
            let req = UpdatePodSandboxResourcesRequest {
                pod_sandbox_id: s(0),
                overhead: c.b[0].then(|| resources(0)),
                resources: c.b[1].then(|| resources(3)),
            };
            cr.update_pod_resources(req).await.map(nothing)
        }
    }
}

/// Codes that say the caller was wrong (or asked for what crust does not do).
fn clean_refusal(rpc: usize, s: &tonic::Status) -> bool {
    let refusal = matches!(
        s.code(),
        Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::FailedPrecondition
            | Code::Unimplemented
            | Code::OutOfRange
    );
    // A name that parses but no registry has is the registry's answer, not bad input.
    let registry_answer =
        rpc == 31 && matches!(s.code(), Code::Unavailable | Code::Unauthenticated);
    refusal || registry_answer
}

#[tokio::test(flavor = "multi_thread")]
async fn every_cri_call_refuses_hostile_input_cleanly_and_keeps_state_whole() {
    let reg = registry();
    // docker.io goes to the test registry and nowhere else.
    let d = Daemon::start_config(
        "",
        &format!(
            "[image.registries.\"docker.io\"]\nmirrors = [\"http://{}\"]\nskip_upstream = true",
            reg.addr
        ),
    )
    .await
    .unwrap();
    let mut c = d.cri().await.unwrap();
    let image = reg.busybox();
    c.pull(&image).await.unwrap();
    let empty = footprint(&d, None);
    let pc = pod_config("target", &d.logs);
    let pod = c.run_pod(&pc).await.unwrap();
    let container = c
        .run(
            &pod,
            &pc,
            container_config("target", &image, &["sleep", "600"]),
        )
        .await
        .unwrap();
    let fixture = Fixture {
        pod: pod.clone(),
        pod_config: pc.clone(),
        container: container.clone(),
        image: image.clone(),
        registry: reg.addr.clone(),
        cgroup_root: d.cgroup_root.clone(),
        logs: d.logs.clone(),
    };
    let real = vec![
        pod.clone(),
        container.clone(),
        image.clone(),
        "target".into(),
    ];
    let cases: u32 = std::env::var("CRUST_STRESS_FUZZ")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let client = d.cri().await.unwrap();
    let handle = tokio::runtime::Handle::current();
    let seen = Mutex::new([0usize; RPCS]);
    let slowest = Mutex::new(vec![std::time::Duration::ZERO; RPCS]);
    for rpc in 0..RPCS {
        let mut runner = TestRunner::new(Config {
            cases: cases.div_ceil(RPCS as u32).max(3),
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&case(rpc, real.clone()), |case| {
            tokio::task::block_in_place(|| {
                handle.block_on(async {
                    let mut cr = client.clone();
                    seen.lock().unwrap()[case.rpc] += 1;
                    let t0 = std::time::Instant::now();
                    let answer = call(&mut cr, &case, &fixture).await;
                    let took = t0.elapsed();
                    {
                        let mut slowest = slowest.lock().unwrap();
                        slowest[case.rpc] = slowest[case.rpc].max(took);
                    }
                    match answer {
                        Ok(Made::Nothing) => {}
                        // Accepted: it must be whole, and it goes again cleanly.
                        Ok(Made::Pod(id)) => cr.remove_pod(&id).await.map_err(|e| {
                            TestCaseError::fail(format!("remove accepted pod: {e}"))
                        })?,
                        Ok(Made::Container(id)) => {
                            cr.rt
                                .remove_container(cri::RemoveContainerRequest { container_id: id })
                                .await
                                .map_err(|e| {
                                    TestCaseError::fail(format!("remove accepted container: {e}"))
                                })?;
                        }
                        Err(s) => {
                            prop_assert!(
                                clean_refusal(case.rpc, &s),
                                "{:?}: {}",
                                s.code(),
                                s.message()
                            );
                            prop_assert!(!s.message().is_empty(), "an error without a message");
                            prop_assert!(
                                s.message().len() <= 2048,
                                "a {} byte message",
                                s.message().len()
                            );
                        }
                    }
                    // Still serving after each call.
                    cr.rt
                        .version(cri::VersionRequest::default())
                        .await
                        .map_err(|e| {
                            TestCaseError::fail(format!("daemon stopped answering: {e}"))
                        })?;
                    Ok(())
                })
            })
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    }
    let seen = seen.into_inner().unwrap();
    let mut slowest: Vec<(usize, std::time::Duration)> = slowest
        .into_inner()
        .unwrap()
        .into_iter()
        .enumerate()
        .collect();
    slowest.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
    println!("calls per RPC: {seen:?}; slowest: {:?}", &slowest[..5]);
    // The same name and attempt twice is AlreadyExists.
    let again = c.run_pod(&pc).await.unwrap_err();
    assert_eq!(
        again.downcast_ref::<tonic::Status>().map(|s| s.code()),
        Some(Code::AlreadyExists)
    );
    // Only the fixture is left, whole.
    let pods = c.list_pods().await.unwrap();
    assert_eq!(
        pods.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        vec![pod.clone()]
    );
    let ctrs = c
        .list_containers(cri::ContainerFilter::default())
        .await
        .unwrap();
    assert_eq!(
        ctrs.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        vec![container.clone()]
    );
    c.pod_status(&pod).await.unwrap();
    c.status(&container).await.unwrap();
    // Nothing the refused or undone calls made is left on the machine.
    c.remove_pod(&pod).await.unwrap();
    // (A removed pod's monitor exits just after the answer.)
    let settled = eventually(Duration::from_secs(30), || async {
        footprint(&d, None) == empty
    })
    .await;
    assert!(settled, "left behind: {:?}", footprint(&d, None));
    d.shutdown().await;
}

/// Protobuf strings must be UTF-8; a client that sends other bytes gets InvalidArgument, not
/// an internal error, and the daemon keeps serving.
mod raw {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ImageSpec {
        #[prost(bytes = "vec", tag = "1")]
        pub image: Vec<u8>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ImageRequest {
        #[prost(message, optional, tag = "1")]
        pub image: Option<ImageSpec>,
    }
    /// StopContainerRequest, ContainerStatusRequest, RemoveContainerRequest… (id at tag 1).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct IdRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub id: Vec<u8>,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn strings_that_are_not_utf8_are_invalid_argument() {
    let d = Daemon::start().await.unwrap();
    let mut c = d.cri().await.unwrap();
    let bad = b"/var/log/\xff\xfe/../x".to_vec();
    let id_calls = [
        "/runtime.v1.RuntimeService/ContainerStatus",
        "/runtime.v1.RuntimeService/StopContainer",
        "/runtime.v1.RuntimeService/RemovePodSandbox",
    ];
    for path in id_calls {
        let st = raw_call::<raw::IdRequest>(&c, path, raw::IdRequest { id: bad.clone() })
            .await
            .unwrap_err();
        assert_eq!(st.code(), Code::InvalidArgument, "{path}: {st:?}");
        assert!(st.message().contains("UTF-8"), "{path}: {}", st.message());
    }
    for path in [
        "/runtime.v1.ImageService/PullImage",
        "/runtime.v1.ImageService/RemoveImage",
    ] {
        let req = raw::ImageRequest {
            image: Some(raw::ImageSpec { image: bad.clone() }),
        };
        let st = raw_call(&c, path, req).await.unwrap_err();
        assert_eq!(st.code(), Code::InvalidArgument, "{path}: {st:?}");
    }
    c.rt.version(cri::VersionRequest::default()).await.unwrap();
    d.shutdown().await;
}

/// A client newer than crust: an RPC crust has never heard of answers UNIMPLEMENTED (the
/// connection stays usable), and fields it does not know are ignored.
#[tokio::test]
async fn a_newer_clients_unknown_rpcs_and_fields_get_sensible_answers() {
    let d = Daemon::start().await.unwrap();
    let mut c = d.cri().await.unwrap();
    for path in [
        "/runtime.v1.RuntimeService/SomeRpcOfCri2030",
        "/runtime.v1.ImageService/SomeRpcOfCri2030",
        "/runtime.v2.RuntimeService/Version",
    ] {
        let st = raw_call(&c, path, cri::VersionRequest::default())
            .await
            .unwrap_err();
        assert_eq!(st.code(), Code::Unimplemented, "{path}: {st:?}");
    }
    // VersionRequest with its own field 1 and an unknown field 99 (a string).
    #[derive(Clone, PartialEq, prost::Message)]
    struct FutureVersionRequest {
        #[prost(string, tag = "1")]
        version: String,
        #[prost(string, tag = "99")]
        from_the_future: String,
    }
    raw_call(
        &c,
        "/runtime.v1.RuntimeService/Version",
        FutureVersionRequest {
            version: "v1".into(),
            from_the_future: "ignored".into(),
        },
    )
    .await
    .unwrap();
    c.rt.version(cri::VersionRequest::default()).await.unwrap();
    d.shutdown().await;
}

/// A unary call with a hand-made request message; the answer is not decoded.
async fn raw_call<M: prost::Message + Default + 'static>(
    c: &Cri,
    path: &'static str,
    req: M,
) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(c.channel.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<M, cri::VersionResponse>::default();
    grpc.unary(
        tonic::Request::new(req),
        tonic::codegen::http::uri::PathAndQuery::from_static(path),
        codec,
    )
    .await
    .map(drop)
}
