//! crust-bench: CRI workloads timed against any runtime socket (crust or containerd), so
//! `scripts/bench.sh` can run the same client against both and print the ratio.
//!
//! Workloads: `lifecycle` (each pod step alone and together, ExecSync, stop, removal),
//! `density` (N pods started at once over N connections, with the memory they cost), and
//! `list` (ListContainers and ListContainerStats with N containers). Every workload prints a
//! summary and, with --json, one JSON line with the raw samples.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use crust_proto::cri;
use crust_shim::client::{CriClient, connect};

#[derive(Parser)]
#[command(
    name = "crust-bench",
    about = "CRI benchmark workloads against any runtime socket"
)]
struct Cli {
    /// The runtime's CRI socket.
    #[arg(long)]
    socket: PathBuf,
    /// Image of the benchmark containers (runs `sleep`).
    #[arg(long)]
    image: String,
    /// Where pod log directories go.
    #[arg(long, default_value = "/tmp/crust-bench-logs")]
    log_root: PathBuf,
    /// Pods get cgroup_parent <this>/pod<i> (kubelet gives each pod its own).
    #[arg(long, default_value = "/crust-bench")]
    cgroup_parent: String,
    /// Pods in the host network namespace (for runtimes that need a CNI network otherwise).
    #[arg(long)]
    host_network: bool,
    /// Print one JSON line with the results.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Subcommand)]
enum Workload {
    /// One pod after another: RunPodSandbox, CreateContainer, StartContainer, ExecSync,
    /// StopContainer (timeout 0), StopPodSandbox + RemovePodSandbox.
    Lifecycle {
        #[arg(short = 'n', long, default_value_t = 30)]
        iterations: usize,
    },
    /// N pods started at once, each over its own connection; then their memory; then all
    /// removed at once.
    Density {
        #[arg(long, default_value_t = 20)]
        pods: usize,
        /// The daemon's pid, for its RSS with the pods running.
        #[arg(long)]
        daemon_pid: Option<u32>,
        /// Per-pod helper processes: argv[0]'s file name contains this
        /// (crust-monitor, containerd-shim).
        #[arg(long)]
        helper: Option<String>,
        /// ...and the command line contains this (the runtime's own state dir or socket),
        /// so other instances on the machine are not counted.
        #[arg(long, default_value = "")]
        helper_match: String,
    },
    /// ListContainers and ListContainerStats latency with N containers.
    List {
        /// Containers (each in a pod of its own) to make first; 0 lists what is there.
        #[arg(long, default_value_t = 100)]
        containers: usize,
        #[arg(short = 'n', long, default_value_t = 30)]
        iterations: usize,
        /// Leave the pods running afterwards (to measure a restart with them).
        #[arg(long)]
        keep: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut c = connect(&cli.socket).await?;
    let v = c
        .runtime
        .version(cri::VersionRequest {
            version: "v1".into(),
        })
        .await?
        .into_inner();
    ensure_image(&mut c, &cli.image).await?;
    let env = Env {
        socket: cli.socket.clone(),
        image: cli.image.clone(),
        log_root: cli.log_root.clone(),
        cgroup_parent: cli.cgroup_parent.clone(),
        host_network: cli.host_network,
        tag: std::process::id(),
    };
    std::fs::create_dir_all(&env.log_root)?;
    let result = match cli.workload {
        Workload::Lifecycle { iterations } => lifecycle(&mut c, &env, iterations).await?,
        Workload::Density {
            pods,
            daemon_pid,
            helper,
            helper_match,
        } => density(&env, pods, daemon_pid, helper.as_deref(), &helper_match).await?,
        Workload::List {
            containers,
            iterations,
            keep,
        } => list(&mut c, &env, containers, iterations, keep).await?,
    };
    if cli.json {
        let mut out = serde_json::json!({
            "runtime": v.runtime_name,
            "version": v.runtime_version,
        });
        out.as_object_mut()
            .unwrap()
            .extend(result.as_object().cloned().unwrap_or_default());
        println!("{out}");
    }
    Ok(())
}

/// What every workload needs to make pods.
struct Env {
    socket: PathBuf,
    image: String,
    log_root: PathBuf,
    cgroup_parent: String,
    host_network: bool,
    /// Keeps names unique across runs.
    tag: u32,
}

async fn ensure_image(c: &mut CriClient, image: &str) -> anyhow::Result<()> {
    let spec = cri::ImageSpec {
        image: image.into(),
        ..Default::default()
    };
    let present = c
        .image
        .image_status(cri::ImageStatusRequest {
            image: Some(spec.clone()),
            verbose: false,
        })
        .await?
        .into_inner()
        .image
        .is_some();
    if !present {
        c.image
            .pull_image(cri::PullImageRequest {
                image: Some(spec),
                ..Default::default()
            })
            .await
            .with_context(|| format!("pull {image}"))?;
    }
    Ok(())
}

fn pod_config(env: &Env, name: &str, i: usize) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: format!("{name}-uid"),
            namespace: "bench".into(),
            attempt: 0,
        }),
        // Host-network pods share the host's UTS namespace: no hostname of their own.
        hostname: if env.host_network {
            String::new()
        } else {
            "bench".into()
        },
        log_directory: env.log_root.join(name).display().to_string(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: format!("{}/{name}-{i}", env.cgroup_parent),
            // As kubelet sends them: a PID namespace per container (no shareProcessNamespace).
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: if env.host_network {
                        cri::NamespaceMode::Node
                    } else {
                        cri::NamespaceMode::Pod
                    } as i32,
                    pid: cri::NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config(env: &Env) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "sleeper".into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: env.image.clone(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "3600".into()],
        log_path: "sleeper.log".into(),
        ..Default::default()
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Pod ids and container ids of a started pod, with the time of each step (ms).
async fn start_pod(
    c: &mut CriClient,
    env: &Env,
    name: &str,
    i: usize,
) -> anyhow::Result<(String, String, [f64; 3])> {
    let config = pod_config(env, name, i);
    let t = Instant::now();
    let pod = c
        .runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    let runp = ms(t);
    let t = Instant::now();
    let ctr = c
        .runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config(env)),
            sandbox_config: Some(config),
        })
        .await?
        .into_inner()
        .container_id;
    let create = ms(t);
    let t = Instant::now();
    c.runtime
        .start_container(cri::StartContainerRequest {
            container_id: ctr.clone(),
        })
        .await?;
    Ok((pod, ctr, [runp, create, ms(t)]))
}

async fn remove_pod(c: &mut CriClient, env: &Env, pod: &str, name: &str) -> anyhow::Result<()> {
    c.remove_pod(pod).await?;
    let _ = std::fs::remove_dir_all(env.log_root.join(name));
    Ok(())
}

/// min / median / p99 of samples, printed and returned with the samples.
fn summarize(step: &str, mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    let (min, median, p99) = (pick(0.0), pick(0.5), pick(0.99));
    println!("{step:<34} min {min:>9.2} ms   median {median:>9.2} ms   p99 {p99:>9.2} ms");
    serde_json::json!({"step": step, "min_ms": min, "median_ms": median, "p99_ms": p99, "samples_ms": v})
}

async fn lifecycle(c: &mut CriClient, env: &Env, n: usize) -> anyhow::Result<serde_json::Value> {
    if n == 0 {
        bail!("--iterations must be at least 1");
    }
    let (mut runp, mut create, mut start, mut total) = (vec![], vec![], vec![], vec![]);
    let (mut exec, mut stop, mut remove) = (vec![], vec![], vec![]);
    for i in 0..n {
        let name = format!("bench-{}-{i}", env.tag);
        let (pod, ctr, steps) = start_pod(c, env, &name, i).await?;
        runp.push(steps[0]);
        create.push(steps[1]);
        start.push(steps[2]);
        total.push(steps.iter().sum());
        let t = Instant::now();
        c.runtime
            .exec_sync(cri::ExecSyncRequest {
                container_id: ctr.clone(),
                cmd: vec!["echo".into(), "hi".into()],
                timeout: 10,
            })
            .await?;
        exec.push(ms(t));
        let t = Instant::now();
        c.runtime
            .stop_container(cri::StopContainerRequest {
                container_id: ctr,
                timeout: 0,
            })
            .await?;
        stop.push(ms(t));
        let t = Instant::now();
        remove_pod(c, env, &pod, &name).await?;
        remove.push(ms(t));
    }
    Ok(serde_json::json!({"workload": "lifecycle", "results": [
        summarize("pod start (runp+create+start)", total),
        summarize("RunPodSandbox", runp),
        summarize("CreateContainer", create),
        summarize("StartContainer", start),
        summarize("ExecSync echo", exec),
        summarize("StopContainer (timeout 0)", stop),
        summarize("StopPodSandbox+RemovePodSandbox", remove),
    ]}))
}

async fn density(
    env: &Env,
    pods: usize,
    daemon_pid: Option<u32>,
    helper: Option<&str>,
    helper_match: &str,
) -> anyhow::Result<serde_json::Value> {
    let env = std::sync::Arc::new(Env {
        socket: env.socket.clone(),
        image: env.image.clone(),
        log_root: env.log_root.clone(),
        cgroup_parent: env.cgroup_parent.clone(),
        host_network: env.host_network,
        tag: env.tag,
    });
    // Connections first, so the timed part is the runtime's work.
    let mut clients = Vec::with_capacity(pods);
    for _ in 0..pods {
        clients.push(connect(&env.socket).await?);
    }
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        let env = env.clone();
        tasks.spawn(async move {
            let name = format!("density-{}-{i}", env.tag);
            let r = start_pod(&mut c, &env, &name, i).await;
            (c, name, r)
        });
    }
    let mut started = Vec::new();
    let mut failures = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (c, name, r) = done?;
        match r {
            Ok((pod, _, _)) => started.push((c, name, pod)),
            Err(e) => failures.push(format!("{name}: {e:#}")),
        }
    }
    let start_wall = ms(t);
    println!(
        "density {pods}: started {} in {start_wall:.0} ms, {} failed",
        started.len(),
        failures.len()
    );
    for f in failures.iter().take(5) {
        println!("  failure: {f}");
    }
    // Let the runtime settle (lazy allocations, exec'd helpers finishing their start).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let daemon_rss = daemon_pid.map(rss_kib);
    let helpers = helper.map(|h| helper_pss_kib(h, helper_match));
    if let Some(r) = daemon_rss {
        println!("daemon RSS with {pods} pods: {:.1} MiB", r as f64 / 1024.0);
    }
    if let Some((n, pss)) = helpers {
        println!(
            "helpers: {n} processes, {:.2} MiB PSS in all, {:.3} MiB per pod",
            pss as f64 / 1024.0,
            pss as f64 / 1024.0 / pods.max(1) as f64
        );
    }
    let t = Instant::now();
    let env2 = env.clone();
    let mut tasks = tokio::task::JoinSet::new();
    for (mut c, name, pod) in started {
        let env = env2.clone();
        tasks.spawn(async move { remove_pod(&mut c, &env, &pod, &name).await });
    }
    let mut remove_failures = 0;
    while let Some(done) = tasks.join_next().await {
        if done?.is_err() {
            remove_failures += 1;
        }
    }
    let remove_wall = ms(t);
    println!("density {pods}: removed in {remove_wall:.0} ms, {remove_failures} failed");
    Ok(serde_json::json!({
        "workload": "density",
        "pods": pods,
        "start_wall_ms": start_wall,
        "failures": failures.len(),
        "failure_messages": failures,
        "remove_wall_ms": remove_wall,
        "remove_failures": remove_failures,
        "daemon_rss_kib": daemon_rss,
        "helper_processes": helpers.map(|h| h.0),
        "helper_pss_kib": helpers.map(|h| h.1),
    }))
}

async fn list(
    c: &mut CriClient,
    env: &Env,
    containers: usize,
    n: usize,
    keep: bool,
) -> anyhow::Result<serde_json::Value> {
    let mut pods = Vec::with_capacity(containers);
    for i in 0..containers {
        let name = format!("list-{}-{i}", env.tag);
        let (pod, _, _) = start_pod(c, env, &name, i).await?;
        pods.push((pod, name));
    }
    let (mut lc, mut lcs) = (vec![], vec![]);
    let mut listed = containers;
    for _ in 0..n {
        let t = Instant::now();
        let got = c
            .runtime
            .list_containers(cri::ListContainersRequest { filter: None })
            .await?
            .into_inner()
            .containers
            .len();
        lc.push(ms(t));
        if got < containers {
            bail!("ListContainers returned {got} of {containers}");
        }
        listed = got;
        let t = Instant::now();
        c.runtime
            .list_container_stats(cri::ListContainerStatsRequest { filter: None })
            .await?;
        lcs.push(ms(t));
    }
    let results = [
        summarize(&format!("ListContainers ({listed})"), lc),
        summarize(&format!("ListContainerStats ({listed})"), lcs),
    ];
    if !keep {
        for (pod, name) in pods {
            remove_pod(c, env, &pod, &name).await?;
        }
    }
    Ok(serde_json::json!({"workload": "list", "containers": containers, "results": results}))
}

fn rss_kib(pid: u32) -> u64 {
    status_field(&format!("/proc/{pid}/status"), "VmRSS:")
}

fn status_field(path: &str, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Helper processes (argv[0]'s file name contains `name`, the command line `matching`) and the
/// sum of their proportional set sizes.
fn helper_pss_kib(name: &str, matching: &str) -> (usize, u64) {
    let mut count = 0;
    let mut pss = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let dir = entry.path();
        let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let Some(argv0) = args.first() else { continue };
        let base = Path::new(argv0)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        if base.contains(name) && args.join(" ").contains(matching) {
            count += 1;
            pss += status_field(&dir.join("smaps_rollup").display().to_string(), "Pss:");
        }
    }
    (count, pss)
}
