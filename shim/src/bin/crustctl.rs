//! crustctl: Docker-like verbs over CRI. It speaks only CRI to the socket (reading container
//! logs from the CRI log path, as crictl does).

use std::collections::HashMap;
use std::io::{BufRead, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, anyhow, bail};
use clap::{Parser, Subcommand};
use crust_proto::cri;
use crust_shim::client::{CriClient, connect};
use crust_shim::run_options::{ContainerFlags, LimitFlags};
use crust_shim::streaming::StreamOptions;
use crust_shim::streaming::client::Transport;

const RUN_LABEL: &str = "io.crust.run";

#[derive(Parser)]
#[command(
    name = "crustctl",
    version,
    about = "Docker-like client for crust, over CRI"
)]
struct Cli {
    /// CRI socket of crustd.
    #[arg(
        long,
        global = true,
        env = "CRUST_SOCKET",
        default_value = "/run/crust/crust.sock"
    )]
    socket: PathBuf,
    /// Where `run` puts pod log directories.
    #[arg(
        long,
        global = true,
        env = "CRUST_LOG_ROOT",
        default_value = "/var/log/crust"
    )]
    log_root: PathBuf,
    /// CA certificate (PEM) that signed an https streaming server's certificate.
    #[arg(long, global = true, env = "CRUST_STREAMING_CA")]
    streaming_ca: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum KubeCmd {
    /// Set KEY=VALUE on the node's labels, or remove KEY with `KEY-`.
    LabelNode { node: String, label: String },
    /// Exit 0 if the DaemonSet is gone or being deleted, 1 if it is still there.
    DaemonsetDeleted { namespace: String, name: String },
}

#[derive(Subcommand)]
enum Cmd {
    /// Pull an image.
    Pull { image: String },
    /// List images.
    Images,
    /// Remove an image.
    Rmi { image: String },
    /// Import image archives (OCI layout or docker save tars) through crustd's import
    /// directory, for nodes without a registry.
    Load {
        /// crustd's `image.import_dir`.
        #[arg(long, default_value = "/var/lib/crust/import")]
        import_dir: PathBuf,
        #[arg(required = true)]
        archives: Vec<PathBuf>,
    },
    /// Remove exited containers (with the pods `run` made for them) and images no container
    /// uses; with --images-only / --containers-only, just one of them.
    Prune {
        #[arg(long, conflicts_with = "containers_only")]
        images_only: bool,
        #[arg(long)]
        containers_only: bool,
    },
    /// Run a command in a new pod with one container.
    Run {
        /// Remove the pod when the container exits (without -d).
        #[arg(long)]
        rm: bool,
        /// Start in the background and print the container id.
        #[arg(short = 'd', long)]
        detach: bool,
        #[arg(long)]
        name: Option<String>,
        /// Environment variable KEY=VALUE (repeatable).
        #[arg(short = 'e', long = "env")]
        env: Vec<String>,
        /// Publish a port: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp|sctp] (repeatable).
        #[arg(short = 'p', long = "publish")]
        publish: Vec<String>,
        /// `host` to use the host's network namespace.
        #[arg(long)]
        network: Option<String>,
        #[arg(long)]
        hostname: Option<String>,
        /// DNS server for the pod's resolv.conf (repeatable).
        #[arg(long)]
        dns: Vec<String>,
        #[command(flatten)]
        ctr: Box<ContainerFlags>,
        image: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// List pods with their IPs.
    Pods,
    /// Stop and remove pods (by id, id prefix or name) with all their containers.
    Rmp {
        /// Every pod.
        #[arg(short = 'a', long)]
        all: bool,
        pods: Vec<String>,
    },
    /// List containers (running only, unless -a).
    Ps {
        #[arg(short = 'a', long)]
        all: bool,
        /// Print ids only.
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Print a container's log.
    Logs {
        #[arg(short = 'f', long)]
        follow: bool,
        #[arg(long)]
        tail: Option<usize>,
        /// Prefix each line with its timestamp.
        #[arg(short = 't', long)]
        timestamps: bool,
        container: String,
    },
    /// Run a command in a running container (exits with its code). Without -i/-t it runs
    /// through ExecSync and prints the output; with them it streams (CRI Exec).
    Exec {
        /// Seconds before the command is killed (0: no limit; ExecSync only).
        #[arg(long, default_value_t = 0)]
        timeout: i64,
        /// Keep stdin open and send it to the command.
        #[arg(short = 'i', long)]
        interactive: bool,
        /// Allocate a terminal.
        #[arg(short = 't', long)]
        tty: bool,
        /// Streaming protocol: spdy or websocket.
        #[arg(long, default_value = "spdy")]
        transport: Transport,
        container: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Show containers' resource usage (a live table unless --no-stream).
    Stats {
        #[arg(long)]
        no_stream: bool,
        containers: Vec<String>,
    },
    /// Print container and pod lifecycle events as they happen.
    Events,
    /// Stop containers (SIGTERM, then SIGKILL after the timeout).
    Stop {
        #[arg(short = 't', long, default_value_t = 10)]
        time: i64,
        containers: Vec<String>,
    },
    /// Kill containers at once.
    Kill { containers: Vec<String> },
    /// Remove containers (and the pods `run` made for them).
    Rm {
        #[arg(short = 'f', long)]
        force: bool,
        containers: Vec<String>,
    },
    /// Attach to a running container's output (and its stdin, when it was created with one).
    Attach {
        /// Do not send this terminal's input.
        #[arg(long)]
        no_stdin: bool,
        #[arg(long, default_value = "spdy")]
        transport: Transport,
        container: String,
    },
    /// Forward local ports to ports in a pod: LOCAL:REMOTE (or PORT for both), repeatable.
    PortForward {
        #[arg(long, default_value = "spdy")]
        transport: Transport,
        /// Pod name or id.
        pod: String,
        #[arg(required = true)]
        ports: Vec<String>,
    },
    /// Show a container's status as JSON.
    Inspect { container: String },
    /// Change a running container's resource limits.
    Update {
        #[command(flatten)]
        limits: LimitFlags,
        container: String,
    },
    /// Show client and runtime versions.
    Version,
    /// Kubernetes API calls of the Helm chart's installer pods (in-cluster credentials).
    #[command(hide = true)]
    Kube {
        /// API server URL instead of the in-cluster one.
        #[arg(long)]
        server: Option<String>,
        /// Directory with the service account's token and ca.crt.
        #[arg(long)]
        sa_dir: Option<PathBuf>,
        #[command(subcommand)]
        what: KubeCmd,
    },
}

fn main() {
    // Like other command-line tools, end quietly when the reader of our output goes away
    // (`crustctl ps | head`) instead of panicking in println!.
    // SAFETY: setting a signal disposition to its default before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(dispatch(cli)) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("crustctl: {}", one_line(&e));
            std::process::exit(1);
        }
    }
}

/// One clear line: gRPC statuses print their message, not their debug form.
fn one_line(e: &anyhow::Error) -> String {
    if let Some(s) = e.downcast_ref::<tonic::Status>() {
        return format!("{:?}: {}", s.code(), s.message());
    }
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        if let Some(s) = cause.downcast_ref::<tonic::Status>() {
            msg = format!("{msg}: {:?}: {}", s.code(), s.message());
        } else {
            msg = format!("{msg}: {cause}");
        }
    }
    msg
}

async fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    if let Some(ca) = &cli.streaming_ca {
        crust_shim::streaming::tls::trust_ca_file(ca)?;
    }
    if let Cmd::Kube {
        server,
        sa_dir,
        what,
    } = cli.cmd
    {
        let kube = crust_shim::kube::KubeClient::in_cluster(server, sa_dir.as_deref())?;
        return match what {
            KubeCmd::LabelNode { node, label } => {
                match label.strip_suffix('-') {
                    Some(key) if !label.contains('=') => kube.label_node(&node, key, None).await?,
                    _ => {
                        let (k, v) = label.split_once('=').ok_or_else(|| {
                            anyhow::anyhow!("label {label:?}: expected KEY=VALUE or KEY-")
                        })?;
                        kube.label_node(&node, k, Some(v)).await?
                    }
                }
                Ok(0)
            }
            KubeCmd::DaemonsetDeleted { namespace, name } => {
                Ok(if kube.daemonset_deleted(&namespace, &name).await? {
                    0
                } else {
                    1
                })
            }
        };
    }
    let mut c = connect(&cli.socket).await?;
    match cli.cmd {
        Cmd::Pull { image } => {
            let r = pull_with_progress(&mut c, &image).await?;
            println!("{r}");
        }
        Cmd::Images => images(&mut c).await?,
        Cmd::Load {
            import_dir,
            archives,
        } => {
            for a in archives {
                for name in load(&import_dir, &a).await? {
                    println!("Loaded image: {name}");
                }
            }
        }
        Cmd::Prune {
            images_only,
            containers_only,
        } => prune(&mut c, !images_only, !containers_only).await?,
        Cmd::Rmi { image } => {
            c.image
                .remove_image(cri::RemoveImageRequest {
                    image: Some(spec(&image)),
                })
                .await?;
            println!("{image}");
        }
        Cmd::Run {
            rm,
            detach,
            name,
            env,
            publish,
            network,
            hostname,
            dns,
            ctr,
            image,
            command,
        } => {
            let pod = PodOptions::from_flags(&publish, network.as_deref(), hostname, &dns)?;
            return run(
                &mut c,
                &cli.log_root,
                RunFlags { rm, detach, name },
                env,
                pod,
                &ctr,
                image,
                command,
            )
            .await;
        }
        Cmd::Update { limits, container } => {
            if limits.is_empty() {
                bail!("update: give --memory, --cpus or --cpuset-cpus");
            }
            let id = resolve(&mut c, &container).await?;
            let mut resources = status(&mut c, &id)
                .await?
                .resources
                .and_then(|r| r.linux)
                .unwrap_or_default();
            limits.apply(&mut resources)?;
            c.runtime
                .update_container_resources(cri::UpdateContainerResourcesRequest {
                    container_id: id,
                    linux: Some(resources),
                    ..Default::default()
                })
                .await?;
            println!("{container}");
        }
        Cmd::Pods => pods(&mut c).await?,
        Cmd::Rmp { all, pods } => remove_pods(&mut c, all, pods).await?,
        Cmd::Ps { all, quiet } => ps(&mut c, all, quiet).await?,
        Cmd::Logs {
            follow,
            tail,
            timestamps,
            container,
        } => {
            let id = resolve(&mut c, &container).await?;
            let st = status(&mut c, &id).await?;
            follow_log(&mut c, &id, &st.log_path, follow, tail, timestamps).await?;
        }
        Cmd::Exec {
            interactive,
            tty,
            transport,
            container,
            command,
            ..
        } if interactive || tty => {
            let id = resolve(&mut c, &container).await?;
            let url = c
                .runtime
                .exec(cri::ExecRequest {
                    container_id: id,
                    cmd: command,
                    tty,
                    stdin: interactive,
                    stdout: true,
                    stderr: !tty,
                })
                .await?
                .into_inner()
                .url;
            return stream(&url, transport, interactive, tty, "exec").await;
        }
        Cmd::Exec {
            timeout,
            container,
            command,
            ..
        } => {
            let id = resolve(&mut c, &container).await?;
            let r = c
                .runtime
                .exec_sync(cri::ExecSyncRequest {
                    container_id: id,
                    cmd: command,
                    timeout,
                })
                .await?
                .into_inner();
            std::io::stdout().write_all(&r.stdout)?;
            std::io::stderr().write_all(&r.stderr)?;
            return Ok(r.exit_code);
        }
        Cmd::Stats {
            no_stream,
            containers,
        } => stats(&mut c, containers, no_stream).await?,
        Cmd::Events => events(&mut c).await?,
        Cmd::Stop { time, containers } => {
            for name in containers {
                let id = resolve(&mut c, &name).await?;
                c.runtime
                    .stop_container(cri::StopContainerRequest {
                        container_id: id.clone(),
                        timeout: time,
                    })
                    .await?;
                println!("{name}");
            }
        }
        Cmd::Kill { containers } => {
            for name in containers {
                let id = resolve(&mut c, &name).await?;
                c.runtime
                    .stop_container(cri::StopContainerRequest {
                        container_id: id,
                        timeout: 0,
                    })
                    .await?;
                println!("{name}");
            }
        }
        Cmd::Rm { force, containers } => {
            for name in containers {
                let id = resolve(&mut c, &name).await?;
                remove(&mut c, &id, force).await?;
                println!("{name}");
            }
        }
        Cmd::Attach {
            no_stdin,
            transport,
            container,
        } => {
            let id = resolve(&mut c, &container).await?;
            let verbose = c
                .runtime
                .container_status(cri::ContainerStatusRequest {
                    container_id: id.clone(),
                    verbose: true,
                })
                .await?
                .into_inner();
            let info: serde_json::Value = verbose
                .info
                .get("info")
                .and_then(|i| serde_json::from_str(i).ok())
                .unwrap_or_default();
            let tty = info["config"]["tty"].as_bool().unwrap_or(false);
            let stdin = !no_stdin && info["config"]["stdin"].as_bool().unwrap_or(false);
            let url = c
                .runtime
                .attach(cri::AttachRequest {
                    container_id: id,
                    stdin,
                    tty,
                    stdout: true,
                    stderr: !tty,
                })
                .await?
                .into_inner()
                .url;
            return stream(&url, transport, stdin, tty, "attach").await;
        }
        Cmd::PortForward {
            transport,
            pod,
            ports,
        } => return port_forward(&mut c, transport, &pod, &ports).await,
        Cmd::Inspect { container } => {
            let id = resolve(&mut c, &container).await?;
            let st = c
                .runtime
                .container_status(cri::ContainerStatusRequest {
                    container_id: id,
                    verbose: true,
                })
                .await?
                .into_inner();
            println!("{}", serde_json::to_string_pretty(&st.status)?);
        }
        Cmd::Kube { .. } => unreachable!("handled before connecting"),
        Cmd::Version => {
            let v = c
                .runtime
                .version(cri::VersionRequest {
                    version: "v1".into(),
                })
                .await?
                .into_inner();
            println!("Client:  crustctl {}", env!("CARGO_PKG_VERSION"));
            println!(
                "Runtime: {} {} (CRI {})",
                v.runtime_name, v.runtime_version, v.runtime_api_version
            );
        }
    }
    Ok(0)
}

/// Runs an exec or attach session at `url` on this terminal; the remote exit code.
async fn stream(
    url: &str,
    transport: Transport,
    stdin: bool,
    tty: bool,
    what: &str,
) -> anyhow::Result<i32> {
    let opts = StreamOptions {
        stdin,
        stdout: true,
        stderr: !tty,
        tty,
    };
    let session = crust_shim::streaming::client::remotecommand(url, transport, opts).await?;
    crust_shim::streaming::terminal::run(session, tty)
        .await
        .map_err(|e| anyhow!("{what}: {e}"))
}

/// `crustctl port-forward`: one listener per LOCAL:REMOTE pair, until interrupted.
async fn port_forward(
    c: &mut CriClient,
    transport: Transport,
    pod: &str,
    ports: &[String],
) -> anyhow::Result<i32> {
    let pod_id = resolve_pod(c, pod).await?;
    let mut pairs = Vec::new();
    for p in ports {
        let (local, remote) = p.split_once(':').unwrap_or((p, p));
        let parse = |v: &str| {
            v.parse::<u16>()
                .map_err(|_| anyhow!("port-forward {p}: expected LOCAL:REMOTE port numbers"))
        };
        pairs.push((parse(local)?, parse(remote)?));
    }
    let mut tasks = Vec::new();
    for (local, remote) in pairs {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", local))
            .await
            .with_context(|| format!("listen on 127.0.0.1:{local}"))?;
        println!("Forwarding from {} -> {remote}", listener.local_addr()?);
        let req = cri::PortForwardRequest {
            pod_sandbox_id: pod_id.clone(),
            port: vec![remote.into()],
        };
        let first = c.runtime.port_forward(req.clone()).await?.into_inner().url;
        let client = c.clone();
        let next = move || {
            let mut client = client.clone();
            let req = req.clone();
            async move { Ok(client.runtime.port_forward(req).await?.into_inner().url) }
        };
        tasks.push(tokio::spawn(crust_shim::streaming::terminal::forward(
            first, next, transport, listener, remote,
        )));
    }
    for t in tasks {
        t.await??;
    }
    Ok(0)
}

/// A pod id from an id, an id prefix or a pod name.
async fn resolve_pod(c: &mut CriClient, name: &str) -> anyhow::Result<String> {
    let items = c
        .runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    let hits: Vec<&cri::PodSandbox> = items
        .iter()
        .filter(|p| p.id.starts_with(name) || p.metadata.as_ref().is_some_and(|m| m.name == name))
        .collect();
    match hits.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => bail!("no pod named {name}"),
        _ => bail!("{name} matches several pods; use a longer id"),
    }
}

fn spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}

async fn pull(c: &mut CriClient, image: &str) -> anyhow::Result<String> {
    let r = c
        .image
        .pull_image(cri::PullImageRequest {
            image: Some(spec(image)),
            auth: None,
            sandbox_config: None,
        })
        .await?;
    Ok(r.into_inner().image_ref)
}

/// Pulls while showing per-layer progress on stderr (read from ImageStatus's verbose info
/// while the pull runs): redrawn bars on a terminal, a line per finished layer otherwise.
async fn pull_with_progress(c: &mut CriClient, image: &str) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut puller = c.clone();
    let name = image.to_string();
    let mut task = tokio::spawn(async move { pull(&mut puller, &name).await });
    let mut reported: std::collections::HashSet<String> = Default::default();
    let (mut drawn, mut total) = (0usize, 0u64);
    let mut last: Option<serde_json::Value> = None;
    let mut err = std::io::stderr();
    loop {
        let finished = tokio::select! {
            r = &mut task => Some(r??),
            _ = tokio::time::sleep(Duration::from_millis(200)) => None,
        };
        let mut progress: Option<serde_json::Value> = if finished.is_none() {
            c.image
                .image_status(cri::ImageStatusRequest {
                    image: Some(spec(image)),
                    verbose: true,
                })
                .await
                .ok()
                .and_then(|r| r.into_inner().info.get("progress").cloned())
                .and_then(|p| serde_json::from_str(&p).ok())
        } else {
            // Done: every layer the last report showed is complete now.
            last.take().map(|mut p: serde_json::Value| {
                for l in p["layers"].as_array_mut().into_iter().flatten() {
                    l["downloaded"] = l["size"].clone();
                }
                p
            })
        };
        if let Some(p) = &progress {
            last = Some(p.clone());
        }
        if let Some(p) = progress.take() {
            let p = &p;
            let secs = p["elapsed_ms"].as_f64().unwrap_or(0.0) / 1000.0;
            let layers = p["layers"].as_array().cloned().unwrap_or_default();
            total = layers.iter().filter_map(|l| l["size"].as_u64()).sum();
            if tty && drawn > 0 {
                let _ = write!(err, "\x1b[{drawn}A");
            }
            drawn = 0;
            for l in &layers {
                let digest = l["digest"].as_str().unwrap_or("");
                let short: String = digest
                    .trim_start_matches("sha256:")
                    .chars()
                    .take(12)
                    .collect();
                let (done, size) = (
                    l["downloaded"].as_u64().unwrap_or(0),
                    l["size"].as_u64().unwrap_or(0),
                );
                if tty {
                    let pct = (done * 100).checked_div(size).unwrap_or(100);
                    let bar: String = (0..20)
                        .map(|i| if i * 5 < pct { '#' } else { '.' })
                        .collect();
                    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
                    let _ = writeln!(
                        err,
                        "\x1b[2K{short}  [{bar}] {:>9} / {:<9} {:>9}/s",
                        human_size(done),
                        human_size(size),
                        human_size(rate as u64)
                    );
                    drawn += 1;
                } else if size > 0 && done >= size && reported.insert(digest.to_string()) {
                    let _ = writeln!(err, "{short}: {} done", human_size(size));
                }
            }
        }
        if let Some(id) = finished {
            let secs = started.elapsed().as_secs_f64();
            if total > 0 {
                let _ = writeln!(
                    err,
                    "pulled {image}: {} in {secs:.1}s ({}/s)",
                    human_size(total),
                    human_size((total as f64 / secs.max(0.001)) as u64)
                );
            }
            return Ok(id);
        }
    }
}

async fn images(c: &mut CriClient) -> anyhow::Result<()> {
    let imgs = c
        .image
        .list_images(cri::ListImagesRequest { filter: None })
        .await?
        .into_inner()
        .images;
    println!(
        "{:<50} {:<15} {:<14} {:<20} {:>10}",
        "IMAGE", "TAG", "IMAGE ID", "DIGEST", "SIZE"
    );
    for i in imgs {
        let short =
            i.id.trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect::<String>();
        let tags = if i.repo_tags.is_empty() {
            vec!["<none>:<none>".to_string()]
        } else {
            i.repo_tags.clone()
        };
        for t in tags {
            let (repo, tag) = t.rsplit_once(':').unwrap_or((&t, ""));
            // The manifest digest this name was pulled at.
            let digest = i
                .repo_digests
                .iter()
                .find(|d| d.split('@').next() == Some(repo))
                .or(i.repo_digests.first())
                .and_then(|d| d.split_once('@'))
                .map(|(_, d)| d.chars().take(19).collect::<String>())
                .unwrap_or_else(|| "<none>".into());
            println!(
                "{repo:<50} {tag:<15} {short:<14} {digest:<20} {:>10}",
                human_size(i.size)
            );
        }
    }
    Ok(())
}

fn human_size(b: u64) -> String {
    let (v, u) = if b >= 1 << 30 {
        (b as f64 / (1u64 << 30) as f64, "GB")
    } else if b >= 1 << 20 {
        (b as f64 / (1u64 << 20) as f64, "MB")
    } else if b >= 1 << 10 {
        (b as f64 / 1024.0, "kB")
    } else {
        (b as f64, "B")
    };
    format!("{v:.1}{u}")
}

fn random_name() -> String {
    format!("crust-{:06x}", rand::random::<u32>() & 0xff_ffff)
}

/// `run`'s flags about the run itself.
struct RunFlags {
    rm: bool,
    detach: bool,
    name: Option<String>,
}

#[allow(clippy::too_many_arguments)]
async fn run(
    c: &mut CriClient,
    log_root: &Path,
    RunFlags { rm, detach, name }: RunFlags,
    env: Vec<String>,
    pod: PodOptions,
    ctr: &ContainerFlags,
    image: String,
    command: Vec<String>,
) -> anyhow::Result<i32> {
    let name = name.unwrap_or_else(random_name);
    let has_image = c
        .image
        .image_status(cri::ImageStatusRequest {
            image: Some(spec(&image)),
            verbose: false,
        })
        .await?
        .into_inner()
        .image
        .is_some();
    if !has_image {
        pull(c, &image)
            .await
            .with_context(|| format!("pull {image}"))?;
    }
    let envs = env
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok(cri::KeyValue {
                key: k.into(),
                value: v.into(),
            }),
            None => std::env::var(kv)
                .map(|v| cri::KeyValue {
                    key: kv.clone(),
                    value: v,
                })
                .map_err(|_| anyhow!("-e {kv}: not KEY=VALUE and not set in this environment")),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (pod_id, ctr_id) =
        create_pod_and_container(c, log_root, &name, &image, command, envs, pod, ctr).await?;
    c.runtime
        .start_container(cri::StartContainerRequest {
            container_id: ctr_id.clone(),
        })
        .await?;
    if detach {
        println!("{ctr_id}");
        return Ok(0);
    }
    let st = status(c, &ctr_id).await?;
    follow_log(c, &ctr_id, &st.log_path, true, None, false).await?;
    let st = status(c, &ctr_id).await?;
    if rm {
        c.runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod_id,
            })
            .await?;
        let _ = std::fs::remove_dir_all(log_root.join(&name));
    }
    Ok(st.exit_code)
}

/// A pod named `name` holding one container named `name`, as `run` makes them.
#[allow(clippy::too_many_arguments)]
async fn create_pod_and_container(
    c: &mut CriClient,
    log_root: &Path,
    name: &str,
    image: &str,
    command: Vec<String>,
    envs: Vec<cri::KeyValue>,
    pod: PodOptions,
    ctr: &ContainerFlags,
) -> anyhow::Result<(String, String)> {
    let labels: HashMap<String, String> = [(RUN_LABEL.to_string(), "true".to_string())].into();
    let mut config = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(spec(image)),
        command,
        envs,
        labels: labels.clone(),
        log_path: format!("{name}.log"),
        // Docker semantics: the container's command is PID 1 of its own namespace.
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    pid: cri::NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    // Flags are checked before anything is made.
    let privileged = ctr.apply(&mut config)?;
    let mut linux = pod.linux;
    if privileged {
        linux
            .get_or_insert_with(Default::default)
            .security_context
            .get_or_insert_with(Default::default)
            .privileged = true;
    }
    // A pod in the host network (and UTS) namespace keeps the host's hostname, as kubelet sends it.
    let host_network = linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .is_some_and(|n| n.network == cri::NamespaceMode::Node as i32);
    let pod_config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: format!("{:016x}", rand::random::<u64>()),
            namespace: "crustctl".into(),
            attempt: 0,
        }),
        hostname: match (host_network, pod.hostname) {
            (true, _) => String::new(),
            (false, Some(h)) => h,
            (false, None) => name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .take(63)
                .collect(),
        },
        port_mappings: pod.port_mappings,
        dns_config: pod.dns,
        log_directory: log_root.join(name).display().to_string(),
        labels: labels.clone(),
        linux: Some(with_own_pids(linux.unwrap_or_default())),
        ..Default::default()
    };
    let pod_id = c
        .runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: String::new(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    let created = c
        .runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod_id.clone(),
            config: Some(config),
            sandbox_config: Some(pod_config),
        })
        .await;
    match created {
        Ok(r) => Ok((pod_id, r.into_inner().container_id)),
        Err(e) => {
            let _ = c
                .runtime
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: pod_id,
                })
                .await;
            Err(e.into())
        }
    }
}

/// What `run` puts in the pod besides names: network mode, ports, hostname, DNS.
#[derive(Default)]
struct PodOptions {
    linux: Option<cri::LinuxPodSandboxConfig>,
    hostname: Option<String>,
    port_mappings: Vec<cri::PortMapping>,
    dns: Option<cri::DnsConfig>,
}

impl PodOptions {
    fn from_flags(
        publish: &[String],
        network: Option<&str>,
        hostname: Option<String>,
        dns: &[String],
    ) -> anyhow::Result<Self> {
        let mut o = PodOptions {
            hostname,
            ..Default::default()
        };
        match network {
            None | Some("pod") | Some("bridge") => {}
            Some("host") => {
                o.linux = Some(cri::LinuxPodSandboxConfig {
                    security_context: Some(cri::LinuxSandboxSecurityContext {
                        namespace_options: Some(cri::NamespaceOption {
                            network: cri::NamespaceMode::Node as i32,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
            }
            Some(other) => {
                bail!("--network {other}: only `host` (or the default pod network) is supported")
            }
        }
        for p in publish {
            o.port_mappings.push(parse_publish(p)?);
        }
        if !dns.is_empty() {
            o.dns = Some(cri::DnsConfig {
                servers: dns.to_vec(),
                ..Default::default()
            });
        }
        Ok(o)
    }
}

/// `[HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]`, as Docker's `-p`.
fn parse_publish(spec: &str) -> anyhow::Result<cri::PortMapping> {
    let bad = || anyhow!("-p {spec}: expected [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp|sctp]");
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let protocol = match proto {
        "tcp" => cri::Protocol::Tcp,
        "udp" => cri::Protocol::Udp,
        "sctp" => cri::Protocol::Sctp,
        _ => return Err(bad()),
    };
    let parts: Vec<&str> = ports.rsplitn(3, ':').collect();
    let (container, host, host_ip) = match parts.as_slice() {
        [c, h] => (*c, *h, ""),
        [c, h, ip] => (*c, *h, *ip),
        _ => return Err(bad()),
    };
    let port = |v: &str| {
        v.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .map(i32::from)
            .ok_or_else(bad)
    };
    Ok(cri::PortMapping {
        protocol: protocol as i32,
        container_port: port(container)?,
        host_port: port(host)?,
        host_ip: host_ip.to_string(),
    })
}

async fn remove_pods(c: &mut CriClient, all: bool, names: Vec<String>) -> anyhow::Result<()> {
    if all != names.is_empty() {
        anyhow::bail!("rmp: name pods or pass --all, not both");
    }
    let mut ids = Vec::new();
    if all {
        ids = c
            .runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await?
            .into_inner()
            .items
            .into_iter()
            .map(|p| p.id)
            .collect();
    }
    for name in &names {
        ids.push(resolve_pod(c, name).await?);
    }
    for id in ids {
        c.remove_pod(&id).await?;
        println!("{id}");
    }
    Ok(())
}

async fn pods(c: &mut CriClient) -> anyhow::Result<()> {
    let mut items = c
        .runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    items.sort_by_key(|p| std::cmp::Reverse(p.created_at));
    println!(
        "{:<13} {:<24} {:<12} {:<9} {:<16} {:<16}",
        "POD ID", "NAME", "NAMESPACE", "STATE", "IP", "CREATED"
    );
    for p in items {
        let ip = c
            .runtime
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: p.id.clone(),
                verbose: false,
            })
            .await
            .ok()
            .and_then(|r| r.into_inner().status)
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .filter(|ip| !ip.is_empty())
            .unwrap_or_else(|| "-".into());
        let meta = p.metadata.unwrap_or_default();
        let state = if p.state == cri::PodSandboxState::SandboxReady as i32 {
            "Ready"
        } else {
            "NotReady"
        };
        println!(
            "{:<13} {:<24} {:<12} {:<9} {:<16} {:<16}",
            &p.id[..12.min(p.id.len())],
            meta.name,
            meta.namespace,
            state,
            ip,
            ago(p.created_at)
        );
    }
    Ok(())
}

/// Pod options as kubelet sends them for a pod without a shared process namespace.
fn with_own_pids(mut linux: cri::LinuxPodSandboxConfig) -> cri::LinuxPodSandboxConfig {
    let sc = linux.security_context.get_or_insert_with(Default::default);
    sc.namespace_options
        .get_or_insert_with(Default::default)
        .pid = cri::NamespaceMode::Container as i32;
    linux
}

async fn status(c: &mut CriClient, id: &str) -> anyhow::Result<cri::ContainerStatus> {
    c.runtime
        .container_status(cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .ok_or_else(|| anyhow!("container {id} has no status"))
}

/// Prints the CRI log: stdout records to stdout, stderr records to stderr. With `follow`, keeps
/// reading until the container has exited and the log is drained.
async fn follow_log(
    c: &mut CriClient,
    id: &str,
    path: &str,
    follow: bool,
    tail: Option<usize>,
    timestamps: bool,
) -> anyhow::Result<()> {
    if path.is_empty() {
        bail!("container {id} has no log file");
    }
    let mut pos = 0u64;
    let mut first = true;
    loop {
        let exited =
            !follow || status(c, id).await?.state == cri::ContainerState::ContainerExited as i32;
        if let Ok(mut f) = std::fs::File::open(path) {
            f.seek(std::io::SeekFrom::Start(pos))?;
            let mut reader = std::io::BufReader::new(f);
            let mut lines = Vec::new();
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let n = reader.read_until(b'\n', &mut buf)?;
                if n == 0 || buf.last() != Some(&b'\n') {
                    break;
                }
                pos += n as u64;
                lines.push(buf.clone());
            }
            if first && let Some(t) = tail {
                let skip = lines.len().saturating_sub(t);
                lines.drain(..skip);
            }
            first = false;
            let mut out = std::io::stdout().lock();
            let mut err = std::io::stderr().lock();
            for l in lines {
                print_record(&l, timestamps, &mut out, &mut err)?;
            }
            out.flush()?;
        }
        if exited {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn print_record(
    line: &[u8],
    timestamps: bool,
    out: &mut impl Write,
    err: &mut impl Write,
) -> std::io::Result<()> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut parts = line.splitn(4, |&b| b == b' ');
    let (ts, stream, tag, content) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next().unwrap_or(b""),
    );
    let w: &mut dyn Write = if stream == Some(b"stderr") { err } else { out };
    if timestamps && let Some(ts) = ts {
        w.write_all(ts)?;
        w.write_all(b" ")?;
    }
    w.write_all(content)?;
    if tag != Some(b"P") {
        w.write_all(b"\n")?;
    }
    Ok(())
}

async fn list_all(c: &mut CriClient) -> anyhow::Result<Vec<cri::Container>> {
    Ok(c.runtime
        .list_containers(cri::ListContainersRequest { filter: None })
        .await?
        .into_inner()
        .containers)
}

/// A container by id, id prefix or name.
async fn resolve(c: &mut CriClient, name: &str) -> anyhow::Result<String> {
    let all = list_all(c).await?;
    if let Some(x) = all.iter().find(|x| x.id == name) {
        return Ok(x.id.clone());
    }
    let by_name: Vec<_> = all
        .iter()
        .filter(|x| x.metadata.as_ref().is_some_and(|m| m.name == name))
        .collect();
    if by_name.len() == 1 {
        return Ok(by_name[0].id.clone());
    }
    let by_prefix: Vec<_> = all.iter().filter(|x| x.id.starts_with(name)).collect();
    match by_prefix.len() {
        1 => Ok(by_prefix[0].id.clone()),
        0 if by_name.is_empty() => bail!("no such container: {name}"),
        _ => bail!("{name} matches more than one container; use a longer id"),
    }
}

/// Copies `archive` into the import directory under a hidden name, reveals it with a rename
/// (so crustd never reads half a file), and waits for crustd's verdict.
async fn load(import_dir: &Path, archive: &Path) -> anyhow::Result<Vec<String>> {
    use crust_shim::import_dir::{DONE, FAILED};
    let name = format!(
        "load-{}-{:08x}.tar",
        std::process::id(),
        rand::random::<u32>()
    );
    let hidden = import_dir.join(format!(".{name}"));
    std::fs::copy(archive, &hidden).with_context(|| {
        format!(
            "copy {} into {} (is crustd's image.import_dir there?)",
            archive.display(),
            import_dir.display()
        )
    })?;
    std::fs::rename(&hidden, import_dir.join(&name))?;
    let done = import_dir.join(DONE).join(format!("{name}.json"));
    let failed = import_dir.join(FAILED).join(format!("{name}.error"));
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Ok(b) = std::fs::read(&done) {
            let _ = std::fs::remove_file(&done);
            let _ = std::fs::remove_file(import_dir.join(DONE).join(&name));
            return Ok(serde_json::from_slice(&b)?);
        }
        if let Ok(msg) = std::fs::read_to_string(&failed) {
            bail!("load {}: {msg}", archive.display());
        }
        if Instant::now() > deadline {
            bail!(
                "crustd did not import {} within 10 minutes",
                archive.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `crustctl prune`: exited containers first (so their images become unused), then images
/// that no remaining container was created from. Pinned images stay.
async fn prune(c: &mut CriClient, containers: bool, images: bool) -> anyhow::Result<()> {
    let (mut n_ctr, mut n_img) = (0, 0);
    if containers {
        for ctr in list_all(c).await? {
            if ctr.state == cri::ContainerState::ContainerExited as i32 {
                remove(c, &ctr.id, false).await?;
                println!("deleted container {}", &ctr.id[..12.min(ctr.id.len())]);
                n_ctr += 1;
            }
        }
    }
    if images {
        let used: std::collections::HashSet<String> = list_all(c)
            .await?
            .into_iter()
            .map(|x| x.image_ref)
            .collect();
        let all = c
            .image
            .list_images(cri::ListImagesRequest { filter: None })
            .await?
            .into_inner()
            .images;
        for img in all {
            if img.pinned || used.contains(&img.id) {
                continue;
            }
            c.image
                .remove_image(cri::RemoveImageRequest {
                    image: Some(spec(&img.id)),
                })
                .await?;
            let name = img.repo_tags.first().cloned().unwrap_or(img.id.clone());
            println!("deleted image {name}");
            n_img += 1;
        }
    }
    println!("pruned {n_ctr} containers and {n_img} images");
    Ok(())
}

async fn remove(c: &mut CriClient, id: &str, force: bool) -> anyhow::Result<()> {
    let st = status(c, id).await?;
    if !force && st.state == cri::ContainerState::ContainerRunning as i32 {
        bail!("container {id} is running: stop it first or use rm -f");
    }
    let ctr = list_all(c)
        .await?
        .into_iter()
        .find(|x| x.id == id)
        .ok_or_else(|| anyhow!("no such container: {id}"))?;
    c.runtime
        .remove_container(cri::RemoveContainerRequest {
            container_id: id.into(),
        })
        .await?;
    if ctr.labels.get(RUN_LABEL).is_some_and(|v| v == "true") {
        c.runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: ctr.pod_sandbox_id,
            })
            .await?;
    }
    Ok(())
}

async fn stats(c: &mut CriClient, names: Vec<String>, no_stream: bool) -> anyhow::Result<()> {
    let mut ids = Vec::new();
    for n in &names {
        ids.push(resolve(c, n).await?);
    }
    let all = list_all(c).await?;
    let name_of = |id: &str| {
        all.iter()
            .find(|x| x.id == id)
            .and_then(|x| x.metadata.as_ref().map(|m| m.name.clone()))
            .unwrap_or_default()
    };
    loop {
        let stats = c
            .runtime
            .list_container_stats(cri::ListContainerStatsRequest { filter: None })
            .await?
            .into_inner()
            .stats;
        if !no_stream {
            print!("\x1b[2J\x1b[H");
        }
        println!(
            "{:<13} {:<20} {:>8} {:>12} {:>12} {:>12}",
            "CONTAINER ID", "NAME", "CPU %", "MEM USAGE", "WORKING SET", "WRITABLE"
        );
        for s in stats {
            let Some(a) = &s.attributes else { continue };
            if !ids.is_empty() && !ids.contains(&a.id) {
                continue;
            }
            let val = |v: &Option<cri::UInt64Value>| v.as_ref().map(|v| v.value).unwrap_or(0);
            let cpu = s
                .cpu
                .as_ref()
                .map(|c| val(&c.usage_nano_cores))
                .unwrap_or(0) as f64
                / 1e7;
            let mem = s
                .memory
                .as_ref()
                .map(|m| (val(&m.usage_bytes), val(&m.working_set_bytes)))
                .unwrap_or_default();
            let fs = s
                .writable_layer
                .as_ref()
                .map(|w| val(&w.used_bytes))
                .unwrap_or(0);
            println!(
                "{:<13} {:<20} {:>7.2}% {:>12} {:>12} {:>12}",
                &a.id[..12.min(a.id.len())],
                name_of(&a.id),
                cpu,
                human_size(mem.0),
                human_size(mem.1),
                human_size(fs)
            );
        }
        if no_stream {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn events(c: &mut CriClient) -> anyhow::Result<()> {
    let mut stream = c
        .runtime
        .get_container_events(cri::GetEventsRequest {})
        .await?
        .into_inner();
    while let Some(ev) = stream.message().await? {
        let kind = cri::ContainerEventType::try_from(ev.container_event_type)
            .map(|k| {
                k.as_str_name()
                    .trim_start_matches("CONTAINER_")
                    .trim_end_matches("_EVENT")
                    .to_lowercase()
            })
            .unwrap_or_else(|_| "unknown".into());
        let pod = ev
            .pod_sandbox_status
            .as_ref()
            .map(|p| p.id.as_str())
            .unwrap_or("");
        let what = if ev.container_id == pod {
            "pod"
        } else {
            "container"
        };
        let ts = humantime::format_rfc3339_nanos(
            SystemTime::UNIX_EPOCH + Duration::from_nanos(ev.created_at.max(0) as u64),
        );
        println!("{ts} {what} {kind} {}", ev.container_id);
        std::io::stdout().flush()?;
    }
    Ok(())
}

fn ago(ns: i64) -> String {
    let then = SystemTime::UNIX_EPOCH + Duration::from_nanos(ns.max(0) as u64);
    let secs = SystemTime::now()
        .duration_since(then)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match secs {
        0..=59 => format!("{secs} seconds ago"),
        60..=3599 => format!("{} minutes ago", secs / 60),
        3600..=86399 => format!("{} hours ago", secs / 3600),
        _ => format!("{} days ago", secs / 86400),
    }
}

async fn ps(c: &mut CriClient, all: bool, quiet: bool) -> anyhow::Result<()> {
    let mut ctrs = list_all(c).await?;
    if !all {
        ctrs.retain(|x| x.state == cri::ContainerState::ContainerRunning as i32);
    }
    ctrs.sort_by_key(|x| std::cmp::Reverse(x.created_at));
    if quiet {
        for x in ctrs {
            println!("{}", x.id);
        }
        return Ok(());
    }
    println!(
        "{:<13} {:<36} {:<22} {:<16} {:<26} {:<20} {:<13}",
        "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAME", "POD"
    );
    for x in ctrs {
        let st = status(c, &x.id).await?;
        let cmd = c
            .runtime
            .container_status(cri::ContainerStatusRequest {
                container_id: x.id.clone(),
                verbose: true,
            })
            .await
            .ok()
            .and_then(|r| r.into_inner().info.get("info").cloned())
            .and_then(|i| serde_json::from_str::<serde_json::Value>(&i).ok())
            .map(|v| {
                let c = &v["config"];
                let parts: Vec<String> = c["command"]
                    .as_array()
                    .into_iter()
                    .chain(c["args"].as_array())
                    .flatten()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect();
                parts.join(" ")
            })
            .unwrap_or_default();
        let state = match cri::ContainerState::try_from(st.state) {
            Ok(cri::ContainerState::ContainerRunning) => {
                format!("Up {}", ago(st.started_at).trim_end_matches(" ago"))
            }
            Ok(cri::ContainerState::ContainerExited) => {
                format!("Exited ({}) {}", st.exit_code, ago(st.finished_at))
            }
            Ok(cri::ContainerState::ContainerCreated) => "Created".into(),
            _ => "Unknown".into(),
        };
        let image = x
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let cmd: String = format!("\"{}\"", cmd.chars().take(18).collect::<String>());
        println!(
            "{:<13} {:<36} {:<22} {:<16} {:<26} {:<20} {:<13}",
            &x.id[..12.min(x.id.len())],
            image.chars().take(36).collect::<String>(),
            cmd,
            ago(x.created_at),
            state,
            x.metadata.map(|m| m.name).unwrap_or_default(),
            &x.pod_sandbox_id[..12.min(x.pod_sandbox_id.len())]
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_flags_parse_like_docker() {
        let p = parse_publish("8080:80").unwrap();
        assert_eq!(
            (p.host_port, p.container_port, p.protocol),
            (8080, 80, cri::Protocol::Tcp as i32)
        );
        let p = parse_publish("127.0.0.1:53:5353/udp").unwrap();
        assert_eq!(p.host_ip, "127.0.0.1");
        assert_eq!(
            (p.host_port, p.container_port, p.protocol),
            (53, 5353, cri::Protocol::Udp as i32)
        );
        for bad in ["80", "a:b", "0:80", "70000:80", "1:2/icmp", ""] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
    }
}
