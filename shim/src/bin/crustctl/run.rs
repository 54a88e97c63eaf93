//! create, run, start and restart: a pod with one container, made from Docker's flags.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use crust_proto::cri;
use crust_shim::client::CriClient;
use crust_shim::run_options::ContainerFlags;
use crust_shim::streaming::StreamOptions;
use crust_shim::streaming::client::{Session, Transport, remotecommand};
use crust_shim::streaming::terminal;

use crate::common::{
    ExitError, RUN_LABEL, docker_name, list_all, resolve, spec, status, with_own_pids,
};
use crate::follow::Watch;
use crate::images::pull;
use crate::logs::follow_log_from;
use crate::names;

/// The flags of `create` (and so of `run`).
#[derive(clap::Args)]
pub(crate) struct CreateArgs {
    /// Remove the container (and its pod) when it exits (run without -d, start -a).
    #[arg(long)]
    pub(crate) rm: bool,
    /// The container's name, unique on this node (an adjective_name is made up otherwise).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Keep stdin open and send this terminal's input to the container.
    #[arg(short = 'i', long)]
    pub(crate) interactive: bool,
    /// Give the container a terminal.
    #[arg(short = 't', long)]
    pub(crate) tty: bool,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(short = 'e', long = "env")]
    pub(crate) env: Vec<String>,
    /// Label KEY=VALUE on the container (repeatable).
    #[arg(short = 'l', long = "label")]
    pub(crate) labels: Vec<String>,
    /// Publish a port: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp|sctp] (repeatable).
    #[arg(short = 'p', long = "publish")]
    pub(crate) publish: Vec<String>,
    /// `host` to use the host's network namespace.
    #[arg(long)]
    pub(crate) network: Option<String>,
    #[arg(long)]
    pub(crate) hostname: Option<String>,
    /// DNS server for the pod's resolv.conf (repeatable).
    #[arg(long)]
    pub(crate) dns: Vec<String>,
    /// Add HOST:IP to the container's /etc/hosts (repeatable).
    #[arg(long = "add-host")]
    pub(crate) add_hosts: Vec<String>,
    /// Reach another container by its name (and ALIAS): NAME[:ALIAS] (repeatable).
    #[arg(long = "link")]
    pub(crate) links: Vec<String>,
    #[command(flatten)]
    pub(crate) ctr: Box<ContainerFlags>,
    pub(crate) image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub(crate) command: Vec<String>,
}

/// A container `create` made.
pub(crate) struct Created {
    pub(crate) pod_id: String,
    pub(crate) id: String,
}

/// `crustctl run`: create, start, and (without -d) stream its output and exit with its code.
pub(crate) async fn run(
    c: &mut CriClient,
    log_root: &Path,
    detach: bool,
    args: CreateArgs,
) -> anyhow::Result<i32> {
    let (rm, interactive, tty) = (args.rm, args.interactive, args.tty);
    let created = create(c, log_root, args).await?;
    let session = if detach {
        None
    } else {
        attach_before_start(c, &created.id, interactive, tty).await?
    };
    start_one(c, &created.id).await?;
    if detach {
        println!("{}", created.id);
        return Ok(0);
    }
    let code = wait_attached(c, &created.id, session, tty, 0).await?;
    if rm {
        remove_run_pod(c, log_root, &created.pod_id).await?;
    }
    Ok(code)
}

/// Connects to a created container's stdio before it starts (so nothing it writes first is
/// missed): its terminal with `tty`, else its stdin alone with `interactive` (output then comes
/// from the log, which has all of it).
pub(crate) async fn attach_before_start(
    c: &mut CriClient,
    id: &str,
    interactive: bool,
    tty: bool,
) -> anyhow::Result<Option<Session>> {
    if !tty && !interactive {
        return Ok(None);
    }
    let url = c
        .runtime
        .attach(cri::AttachRequest {
            container_id: id.into(),
            stdin: interactive,
            tty,
            stdout: tty,
            stderr: false,
        })
        .await?
        .into_inner()
        .url;
    let opts = StreamOptions {
        stdin: interactive,
        stdout: tty,
        stderr: false,
        tty,
    };
    let session = remotecommand(&url, Transport::Spdy, opts).await?;
    // crustd subscribes to the monitor's output just after the upgrade: give it that moment
    // before the container may write.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    Ok(Some(session))
}

/// Shows a started container's output (its terminal, or its log from byte `log_from`), feeds
/// it this side's stdin through `session`, and returns its exit code once it has exited.
pub(crate) async fn wait_attached(
    c: &mut CriClient,
    id: &str,
    session: Option<Session>,
    tty: bool,
    log_from: u64,
) -> anyhow::Result<i32> {
    match session {
        Some(s) if tty => {
            // The session ends when the container does (or this side hangs up); its exit may
            // reach crustd's state a moment later, so the events say when.
            let mut watch = Watch::new(c, id, "").await;
            let _ = terminal::run(s, true).await;
            loop {
                let st = status(c, id).await?;
                if st.state == cri::ContainerState::ContainerExited as i32 {
                    return Ok(st.exit_code);
                }
                watch.changed().await;
            }
        }
        session => {
            let feeder = session.map(|s| tokio::spawn(terminal::run(s, false)));
            let st = status(c, id).await?;
            follow_log_from(c, id, &st.log_path, true, None, false, log_from).await?;
            if let Some(f) = feeder {
                f.abort();
            }
        }
    }
    // The log was followed until the container had exited.
    Ok(status(c, id).await?.exit_code)
}

/// Marks a container `create --rm` made: `start -a` removes it when it exits.
const RM_LABEL: &str = "io.crust.rm";

/// `crustctl start`: created containers start, exited ones start again (as a new container in
/// the same pod, with the same name and config), running ones stay as they are. With
/// `attach`, shows the one container's output and returns its exit code.
pub(crate) async fn start(
    c: &mut CriClient,
    log_root: &Path,
    names: &[String],
    attach: bool,
    interactive: bool,
) -> anyhow::Result<i32> {
    if (attach || interactive) && names.len() > 1 {
        bail!("you cannot start and attach multiple containers at once");
    }
    for name in names {
        let mut id = resolve(c, name).await?;
        let st = status(c, &id).await?;
        // Only what this start writes is shown: the log file is kept across restarts.
        let log_from = std::fs::metadata(&st.log_path).map_or(0, |m| m.len());
        let running = st.state == cri::ContainerState::ContainerRunning as i32;
        if !running && st.state != cri::ContainerState::ContainerCreated as i32 {
            id = recreate(c, &id).await?;
        }
        let (config, pod_id) = container_config(c, &id).await?;
        let attaching = attach || interactive;
        let session = if attaching {
            attach_before_start(c, &id, interactive && config.stdin, config.tty).await?
        } else {
            None
        };
        if !running {
            start_one(c, &id).await?;
        }
        if !attaching {
            println!("{name}");
            continue;
        }
        let code = wait_attached(c, &id, session, config.tty, log_from).await?;
        if config.labels.get(RM_LABEL).is_some_and(|v| v == "true") {
            remove_run_pod(c, log_root, &pod_id).await?;
        }
        return Ok(code);
    }
    Ok(0)
}

/// `crustctl restart`: stop (SIGTERM, SIGKILL after `timeout`), then start again.
pub(crate) async fn restart(c: &mut CriClient, name: &str, timeout: i64) -> anyhow::Result<()> {
    let id = resolve(c, name).await?;
    c.runtime
        .stop_container(cri::StopContainerRequest {
            container_id: id.clone(),
            timeout,
        })
        .await?;
    let id = recreate(c, &id).await?;
    start_one(c, &id).await
}

/// A container's CRI config and its pod's id, from its verbose status.
async fn container_config(
    c: &mut CriClient,
    id: &str,
) -> anyhow::Result<(cri::ContainerConfig, String)> {
    let info = c
        .runtime
        .container_status(cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        })
        .await?
        .into_inner()
        .info;
    let (config, v) = config_in_info(&info, &format!("container {id}"))?;
    Ok((config, v["pod_id"].as_str().unwrap_or_default().to_string()))
}

/// The `config` crust puts in a verbose status's `info`, and the whole info object.
fn config_in_info<T: serde::de::DeserializeOwned>(
    info: &std::collections::HashMap<String, String>,
    what: &str,
) -> anyhow::Result<(T, serde_json::Value)> {
    let v: serde_json::Value = serde_json::from_str(info.get("info").map_or("{}", |s| s))?;
    let config = serde_json::from_value(v["config"].clone())
        .with_context(|| format!("{what}: no config in its status"))?;
    Ok((config, v))
}

/// CRI cannot start an exited container again: a new one takes its place in the same pod,
/// with the same config (so the same name and log file); returns its id.
async fn recreate(c: &mut CriClient, id: &str) -> anyhow::Result<String> {
    let (config, pod_id) = container_config(c, id).await?;
    let pod_info = c
        .runtime
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod_id.clone(),
            verbose: true,
        })
        .await?
        .into_inner()
        .info;
    let (pod_config, _): (cri::PodSandboxConfig, _) =
        config_in_info(&pod_info, &format!("pod {pod_id}"))?;
    c.runtime
        .remove_container(cri::RemoveContainerRequest {
            container_id: id.into(),
        })
        .await?;
    Ok(c.runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod_id,
            config: Some(config),
            sandbox_config: Some(pod_config),
        })
        .await
        .map_err(exec_failure)?
        .into_inner()
        .container_id)
}

/// Starts a created container; a start failure is Docker's 125/126/127.
async fn start_one(c: &mut CriClient, id: &str) -> anyhow::Result<()> {
    c.runtime
        .start_container(cri::StartContainerRequest {
            container_id: id.into(),
        })
        .await
        .map_err(exec_failure)?;
    Ok(())
}

/// Stops and removes a pod `run` made, with its log directory.
pub(crate) async fn remove_run_pod(
    c: &mut CriClient,
    log_root: &Path,
    pod_id: &str,
) -> anyhow::Result<()> {
    let log_dir = c
        .runtime
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod_id.into(),
            verbose: false,
        })
        .await
        .ok()
        .and_then(|r| r.into_inner().status)
        .and_then(|s| s.metadata)
        .map(|m| log_root.join(m.name));
    c.remove_pod(pod_id).await?;
    if let Some(d) = log_dir {
        let _ = std::fs::remove_dir_all(d);
    }
    Ok(())
}

/// What a create or start failure means for Docker's exit codes: the command cannot be found
/// (127), cannot be run (126), anything else is the daemon's failure (125).
pub(crate) fn exec_failure(s: tonic::Status) -> anyhow::Error {
    let msg = s.message();
    let what = msg
        .split("executable '")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .unwrap_or("")
        .to_string();
    if msg.contains("not found in $PATH") || msg.contains("No such file") {
        return ExitError::new(127, format!("{what}: executable file not found in $PATH")).into();
    }
    if msg.contains("does not have correct permissions") || msg.contains("ermission denied") {
        return ExitError::new(
            126,
            format!("{what}: permission denied (not an executable file)"),
        )
        .into();
    }
    ExitError::new(125, format!("{:?}: {msg}", s.code())).into()
}

/// `crustctl create`: the pod and the container, not started; returns what was made.
pub(crate) async fn create(
    c: &mut CriClient,
    log_root: &Path,
    args: CreateArgs,
) -> anyhow::Result<Created> {
    let all = list_all(c).await?;
    let name = match args.name {
        Some(n) => {
            names::check(&n)?;
            if let Some(holder) = all.iter().find(|x| docker_name(x) == n) {
                return Err(ExitError::new(
                    125,
                    format!(
                        "Conflict. The container name \"/{n}\" is already in use by container \"{}\". \
                         You have to remove (or rename) that container to be able to reuse that name.",
                        holder.id
                    ),
                )
                .into());
            }
            n
        }
        None => names::generate(|n| all.iter().any(|x| docker_name(x) == n)),
    };
    let pod = PodOptions::from_flags(
        &args.publish,
        args.network.as_deref(),
        args.hostname,
        &args.dns,
    )?;
    if !pod.port_mappings.is_empty() && !network_ready(c).await? {
        bail!(
            "-p {}: crustd has no CNI network config (see `crustctl info`; put a .conflist in \
             its cni.conf_dir, e.g. packaging/cni/10-crust-bridge.conflist), so no port can be \
             published",
            args.publish.join(" -p ")
        );
    }
    let mut labels: HashMap<String, String> = HashMap::new();
    for l in &args.labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        if k.is_empty() {
            bail!("--label {l}: expected KEY=VALUE");
        }
        labels.insert(k.into(), v.into());
    }
    if args.rm {
        labels.insert(RM_LABEL.into(), "true".into());
    }
    let extra_hosts = extra_hosts(c, &all, &args.add_hosts, &args.links).await?;
    let image = args.image;
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
    let envs = args
        .env
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok(cri::KeyValue {
                key: k.into(),
                value: v.into(),
            }),
            None => std::env::var(kv)
                .map(|v| cri::KeyValue {
                    key: kv.clone(),
                    value: v.into(),
                })
                .map_err(|_| anyhow!("-e {kv}: not KEY=VALUE and not set in this environment")),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let opts = CtrOptions {
        name: &name,
        image: &image,
        command: args.command,
        envs,
        labels,
        interactive: args.interactive,
        tty: args.tty,
        extra_hosts,
    };
    let (pod_id, id) = create_pod_and_container(c, log_root, opts, pod, &args.ctr).await?;
    Ok(Created { pod_id, id })
}

/// Whether crustd found a CNI network config (its NetworkReady condition).
async fn network_ready(c: &mut CriClient) -> anyhow::Result<bool> {
    Ok(c.runtime
        .status(cri::StatusRequest { verbose: false })
        .await?
        .into_inner()
        .status
        .is_some_and(|s| {
            s.conditions
                .iter()
                .any(|x| x.r#type == "NetworkReady" && x.status)
        }))
}

/// `--add-host HOST:IP` and `--link NAME[:ALIAS]` as /etc/hosts lines.
async fn extra_hosts(
    c: &mut CriClient,
    all: &[cri::Container],
    add_hosts: &[String],
    links: &[String],
) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    for h in add_hosts {
        let (host, ip) = h
            .split_once([':', '='])
            .ok_or_else(|| anyhow!("--add-host {h}: expected HOST:IP"))?;
        let ip: std::net::IpAddr = ip
            .trim_matches(|c| c == '[' || c == ']')
            .parse()
            .map_err(|_| anyhow!("--add-host {h}: {ip:?} is not an IP address"))?;
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bail!("--add-host {h}: {host:?} is not a host name");
        }
        lines.push(format!("{ip}\t{host}"));
    }
    for l in links {
        let (name, alias) = l.split_once(':').unwrap_or((l, l));
        let target = all
            .iter()
            .find(|x| docker_name(x) == name || x.id.starts_with(name))
            .ok_or_else(|| anyhow!("--link {l}: no such container: {name}"))?;
        let ip = c
            .runtime
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: target.pod_sandbox_id.clone(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .filter(|ip| !ip.is_empty())
            .ok_or_else(|| {
                anyhow!(
                    "--link {l}: {name} has no IP address (crustd has no CNI network, or it \
                     runs in the host network)"
                )
            })?;
        let real = docker_name(target);
        if alias == real {
            lines.push(format!("{ip}\t{real}"));
        } else {
            lines.push(format!("{ip}\t{alias} {real}"));
        }
    }
    Ok(lines)
}

/// The container's side of a `create`.
pub(crate) struct CtrOptions<'a> {
    pub(crate) name: &'a str,
    pub(crate) image: &'a str,
    pub(crate) command: Vec<String>,
    pub(crate) envs: Vec<cri::KeyValue>,
    pub(crate) labels: HashMap<String, String>,
    pub(crate) interactive: bool,
    pub(crate) tty: bool,
    /// /etc/hosts lines beyond the pod's own.
    pub(crate) extra_hosts: Vec<String>,
}

/// A pod named `name` holding one container named `name`, as `run` makes them. The pod's uid
/// comes from the name, so crustd itself refuses a second pod of the same name.
pub(crate) async fn create_pod_and_container(
    c: &mut CriClient,
    log_root: &Path,
    o: CtrOptions<'_>,
    pod: PodOptions,
    ctr: &ContainerFlags,
) -> anyhow::Result<(String, String)> {
    let name = o.name;
    let run_labels: HashMap<String, String> = [(RUN_LABEL.to_string(), "true".to_string())].into();
    let mut labels = o.labels;
    labels.extend(run_labels.clone());
    let mut config = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(spec(o.image)),
        command: o.command,
        envs: o.envs,
        labels,
        log_path: format!("{name}.log"),
        stdin: o.interactive,
        stdin_once: o.interactive,
        tty: o.tty,
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
            uid: format!("crustctl-{name}"),
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
        labels: run_labels,
        linux: Some(with_own_pids(linux.unwrap_or_default())),
        ..Default::default()
    };
    let pod_id = c
        .runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .map_err(|e| {
            if e.code() == tonic::Code::AlreadyExists {
                ExitError::new(
                    125,
                    format!("Conflict. The container name \"/{name}\" is already in use."),
                )
                .into()
            } else {
                anyhow::Error::from(e)
            }
        })?
        .into_inner()
        .pod_sandbox_id;
    let created = async {
        if !o.extra_hosts.is_empty() && !host_network {
            let m = hosts_file(c, log_root, name, &pod_config, &pod_id, &o.extra_hosts).await?;
            config.mounts.push(m);
        }
        c.runtime
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod_id.clone(),
                config: Some(config),
                sandbox_config: Some(pod_config.clone()),
            })
            .await
            .map_err(exec_failure)
    }
    .await;
    match created {
        Ok(r) => Ok((pod_id, r.into_inner().container_id)),
        Err(e) => {
            let _ = c.remove_pod(&pod_id).await;
            let _ = std::fs::remove_dir_all(log_root.join(name));
            Err(e)
        }
    }
}

/// The container's /etc/hosts: what crustd writes for every pod (localhost, the pod's own IP
/// and hostname) and the `--add-host`/`--link` lines, kept in the pod's log directory.
async fn hosts_file(
    c: &mut CriClient,
    log_root: &Path,
    name: &str,
    pod_config: &cri::PodSandboxConfig,
    pod_id: &str,
    extra: &[String],
) -> anyhow::Result<cri::Mount> {
    let ip = c
        .runtime
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod_id.into(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| "127.0.1.1".into());
    let mut text = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{}\n",
        pod_config.hostname
    );
    for l in extra {
        text.push_str(l);
        text.push('\n');
    }
    let dir = log_root.join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join("hosts");
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    Ok(cri::Mount {
        container_path: "/etc/hosts".into(),
        host_path: path.display().to_string(),
        ..Default::default()
    })
}

/// What `run` puts in the pod besides names: network mode, ports, hostname, DNS.
#[derive(Default)]
pub(crate) struct PodOptions {
    linux: Option<cri::LinuxPodSandboxConfig>,
    hostname: Option<String>,
    port_mappings: Vec<cri::PortMapping>,
    dns: Option<cri::DnsConfig>,
}

impl PodOptions {
    pub(crate) fn from_flags(
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
pub(crate) fn parse_publish(spec: &str) -> anyhow::Result<cri::PortMapping> {
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
