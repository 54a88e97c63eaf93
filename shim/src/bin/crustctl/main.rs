//! crustctl: Docker-like verbs over CRI, and over crust's own API (crust.v1) for what CRI
//! has not: tag, rename, push, build. It reads container logs from the CRI log path, as
//! crictl does.

mod build;
mod common;
mod cp;
mod follow;
mod format;
mod images;
mod inspect;
mod lifecycle;
mod logs;
mod names;
mod names_api;
mod pods;
mod ps;
mod push;
mod run;
mod stats;
mod streams;

use std::io::Write;
use std::path::PathBuf;

use common::ExitError;
use common::{resolve, status};
use images::{images, load, pull_with_progress};
use lifecycle::{prune, remove};
use logs::follow_log;
use pods::{pods, remove_pods};
use ps::ps;
use stats::{events, stats};
use streams::{port_forward, stream};

use anyhow::bail;
use clap::{Parser, Subcommand};
use crust_proto::cri;
use crust_shim::client::connect;
use crust_shim::run_options::LimitFlags;
use crust_shim::streaming::client::Transport;

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
enum SystemCmd {
    /// Remove stopped containers and dangling images (-a: every image no container uses).
    Prune {
        /// Every unused image, not only untagged ones.
        #[arg(short = 'a', long)]
        all: bool,
        /// Do not ask.
        #[arg(short = 'f', long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum Cmd {
    /// Build an image from a Dockerfile and a context directory.
    Build(build::BuildArgs),
    /// Pull an image.
    Pull { image: String },
    /// Push an image to the registry its name says (crustd's registry config and credentials).
    Push { image: String },
    /// List images.
    Images(images::ImagesArgs),
    /// Remove an image.
    /// Remove images (by name, id or id prefix); refused while a container uses one, unless -f.
    Rmi {
        /// Remove even when containers use the image.
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        images: Vec<String>,
    },
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
    /// Create a container (in a pod of its own) without starting it; prints its id.
    Create(Box<run::CreateArgs>),
    /// Run a command in a new container (in a pod of its own): create, then start.
    Run {
        /// Start in the background and print the container id.
        #[arg(short = 'd', long)]
        detach: bool,
        #[command(flatten)]
        args: Box<run::CreateArgs>,
    },
    /// Start created or stopped containers; with -a, show the output and exit with its code.
    Start {
        /// Show the container's output (and its terminal) and wait for it.
        #[arg(short = 'a', long)]
        attach: bool,
        /// Send this terminal's input to the container (created with -i).
        #[arg(short = 'i', long)]
        interactive: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop, then start again.
    Restart {
        #[arg(short = 't', long, default_value_t = 10)]
        time: i64,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Rename a container.
    Rename { old: String, new: String },
    /// Give an image another name: tag SOURCE TARGET.
    Tag { source: String, target: String },
    /// List pods with their IPs.
    Pods,
    /// Stop and remove pods (by id, id prefix or name) with all their containers.
    Rmp {
        /// Every pod.
        #[arg(short = 'a', long)]
        all: bool,
        pods: Vec<String>,
    },
    /// List containers (running only, unless -a), with Docker's columns.
    Ps(ps::PsArgs),
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
    /// Show containers, images or pods (by name, id or id prefix) as JSON.
    Inspect {
        /// Only this kind of object.
        #[arg(long = "type", value_enum)]
        kind: Option<inspect::Kind>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Show a container's processes (ps -f, or the ps options given).
    Top {
        container: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Change a running container's resource limits.
    Update {
        #[command(flatten)]
        limits: LimitFlags,
        container: String,
    },
    /// Copy files between the host and a container: cp CONTAINER:PATH HOSTPATH, or the other way.
    Cp { src: String, dst: String },
    /// Node-wide commands.
    System {
        #[command(subcommand)]
        what: SystemCmd,
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Docker's code for a bad flag of the verbs that make containers.
            let verbs: Vec<String> = <Cli as clap::CommandFactory>::command()
                .get_subcommands()
                .map(|s| s.get_name().to_string())
                .collect();
            let making = std::env::args()
                .skip(1)
                .find(|a| verbs.contains(a))
                .is_some_and(|v| matches!(v.as_str(), "run" | "create" | "start"));
            std::process::exit(match e.exit_code() {
                0 => 0,
                _ if making => 125,
                code => code,
            });
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(dispatch(cli)) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            if let Some(x) = e.downcast_ref::<ExitError>() {
                eprintln!("crustctl: {}", x.msg);
                std::process::exit(x.code);
            }
            eprintln!("crustctl: {}", one_line(&e));
            std::process::exit(1);
        }
    }
}

/// Docker's exit code for a failure of the verbs that make and start containers: 125 unless
/// the failure already carries its own (126, 127).
fn code_125(e: anyhow::Error) -> anyhow::Error {
    if e.is::<ExitError>() {
        return e;
    }
    ExitError::new(125, one_line(&e)).into()
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
        Cmd::Build(args) => build::build(&mut c, args).await?,
        Cmd::Push { image } => {
            push::push(&mut c, &image).await?;
        }
        Cmd::Images(args) => images(&mut c, args).await?,
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
        Cmd::Rmi { force, images } => {
            // As Docker: every name is tried; any failure makes the exit code 1.
            let mut failed = false;
            for image in images {
                if let Err(e) = images::rmi(&mut c, &image, force).await {
                    eprintln!("crustctl: {}", one_line(&e));
                    failed = true;
                }
            }
            if failed {
                return Ok(1);
            }
        }
        Cmd::Create(args) => {
            let created = run::create(&mut c, &cli.log_root, *args)
                .await
                .map_err(code_125)?;
            println!("{}", created.id);
        }
        Cmd::Run { detach, args } => {
            return run::run(&mut c, &cli.log_root, detach, *args)
                .await
                .map_err(code_125);
        }
        Cmd::Start {
            attach,
            interactive,
            containers,
        } => {
            return run::start(&mut c, &cli.log_root, &containers, attach, interactive)
                .await
                .map_err(code_125);
        }
        Cmd::Restart { time, containers } => {
            for name in containers {
                run::restart(&mut c, &name, time).await?;
                println!("{name}");
            }
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
        Cmd::Rename { old, new } => names_api::rename(&mut c, &old, &new).await?,
        Cmd::Tag { source, target } => names_api::tag(&mut c, &source, &target).await?,
        Cmd::Pods => pods(&mut c).await?,
        Cmd::Rmp { all, pods } => remove_pods(&mut c, all, pods).await?,
        Cmd::Ps(args) => ps(&mut c, args).await?,
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
        Cmd::Inspect { kind, names } => {
            for name in names {
                let v = inspect::inspect(&mut c, &name, kind).await?;
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
        }
        Cmd::Top { container, ps_args } => inspect::top(&mut c, &container, &ps_args).await?,
        Cmd::System {
            what: SystemCmd::Prune { all, force },
        } => lifecycle::system_prune(&mut c, all, force).await?,
        Cmd::Cp { src, dst } => cp::cp(&mut c, &src, &dst).await?,
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
