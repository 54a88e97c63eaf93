//! ps: Docker's columns, filters and `--format`.

use std::time::{Duration, SystemTime};

use anyhow::bail;
use crust_proto::cri;
use crust_shim::client::CriClient;

use crate::common::{ago, docker_name, list_all, status};
use crate::format::{Format, Row};

/// ps's flags.
#[derive(clap::Args)]
pub(crate) struct PsArgs {
    /// Every container, not only running ones.
    #[arg(short = 'a', long)]
    pub(crate) all: bool,
    /// Print ids only.
    #[arg(short = 'q', long)]
    pub(crate) quiet: bool,
    /// The N containers created last (any state).
    #[arg(short = 'n', long = "last")]
    pub(crate) last: Option<usize>,
    /// The container created last (any state).
    #[arg(short = 'l', long)]
    pub(crate) latest: bool,
    /// name=, status=, label=, ancestor= or id= (repeatable; all must match).
    #[arg(short = 'f', long = "filter")]
    pub(crate) filters: Vec<String>,
    /// Full ids and commands.
    #[arg(long)]
    pub(crate) no_trunc: bool,
    /// `table`, a Go-style template ({{.ID}}, {{.Image}}, {{.Command}}, {{.CreatedAt}},
    /// {{.RunningFor}}, {{.Status}}, {{.Ports}}, {{.Names}}, {{.Labels}}, {{.State}},
    /// {{.Pod}}), or `json`.
    #[arg(long)]
    pub(crate) format: Option<String>,
}

pub(crate) const FIELDS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Status", "STATUS"),
    ("Ports", "PORTS"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("State", "STATE"),
    ("Pod", "POD"),
];

const DEFAULT: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

/// One `--filter KEY=VALUE`.
enum Filter {
    Name(String),
    Status(i32),
    Label(String, Option<String>),
    Ancestor(String),
    Id(String),
}

fn parse_filter(f: &str) -> anyhow::Result<Filter> {
    let Some((k, v)) = f.split_once('=') else {
        bail!("--filter {f}: expected KEY=VALUE (name, status, label, ancestor, id)");
    };
    Ok(match k {
        "name" => Filter::Name(v.into()),
        "id" => Filter::Id(v.into()),
        "ancestor" => Filter::Ancestor(v.into()),
        "label" => match v.split_once('=') {
            Some((k, v)) => Filter::Label(k.into(), Some(v.into())),
            None => Filter::Label(v.into(), None),
        },
        "status" => Filter::Status(match v {
            "created" => cri::ContainerState::ContainerCreated as i32,
            "running" => cri::ContainerState::ContainerRunning as i32,
            "exited" => cri::ContainerState::ContainerExited as i32,
            _ => bail!("--filter {f}: status is created, running or exited"),
        }),
        _ => bail!("--filter {f}: unknown filter {k:?} (name, status, label, ancestor, id)"),
    })
}

/// Whether image reference `want` (as a user writes it) names the container's image.
fn same_image(x: &cri::Container, want: &str) -> bool {
    let have = x.image.as_ref().map(|i| i.image.as_str()).unwrap_or("");
    let with_tag = |s: &str| {
        let last = s.rsplit('/').next().unwrap_or(s);
        if last.contains(':') || s.contains('@') {
            s.to_string()
        } else {
            format!("{s}:latest")
        }
    };
    let id = want.trim_start_matches("sha256:");
    with_tag(have) == with_tag(want)
        || (id.len() >= 4
            && [&x.image_ref, &x.image_id]
                .iter()
                .any(|r| r.trim_start_matches("sha256:").starts_with(id)))
}

fn matches(x: &cri::Container, f: &Filter) -> bool {
    match f {
        Filter::Name(n) => docker_name(x).contains(n.as_str()),
        Filter::Id(p) => x.id.starts_with(p.as_str()),
        Filter::Status(s) => x.state == *s,
        Filter::Label(k, v) => x
            .labels
            .get(k)
            .is_some_and(|have| v.as_ref().is_none_or(|v| v == have)),
        Filter::Ancestor(img) => same_image(x, img),
    }
}

/// `2026-12-05 14:21:22 +0000 UTC`, as Docker's CreatedAt.
pub(crate) fn created_at(ns: i64) -> String {
    let t = SystemTime::UNIX_EPOCH + Duration::from_nanos(ns.max(0) as u64);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    format!(
        "{} +0000 UTC",
        s.trim_end_matches('Z').replacen('T', " ", 1)
    )
}

pub(crate) async fn ps(c: &mut CriClient, args: PsArgs) -> anyhow::Result<()> {
    let filters = args
        .filters
        .iter()
        .map(|f| parse_filter(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let format = match &args.format {
        Some(f) if !args.quiet => Format::parse(f, FIELDS)?,
        _ => Format::parse(DEFAULT, FIELDS)?,
    };
    let mut ctrs = list_all(c).await?;
    ctrs.sort_by_key(|x| std::cmp::Reverse(x.created_at));
    let last = if args.latest { Some(1) } else { args.last };
    if !args.all && last.is_none() {
        ctrs.retain(|x| x.state == cri::ContainerState::ContainerRunning as i32);
    }
    ctrs.retain(|x| filters.iter().all(|f| matches(x, f)));
    if let Some(n) = last {
        ctrs.truncate(n);
    }
    let short = |id: &str| -> String {
        if args.no_trunc {
            id.to_string()
        } else {
            id.chars().take(12).collect()
        }
    };
    if args.quiet {
        for x in ctrs {
            println!("{}", short(&x.id));
        }
        return Ok(());
    }
    let mut rows = Vec::new();
    for x in ctrs {
        rows.push(row(c, &x, args.no_trunc, &short).await?);
    }
    print!("{}", format.render(&rows, FIELDS));
    Ok(())
}

/// A container's fields for ps.
async fn row(
    c: &mut CriClient,
    x: &cri::Container,
    no_trunc: bool,
    short: &dyn Fn(&str) -> String,
) -> anyhow::Result<Row> {
    let st = status(c, &x.id).await?;
    let info: serde_json::Value = c
        .runtime
        .container_status(cri::ContainerStatusRequest {
            container_id: x.id.clone(),
            verbose: true,
        })
        .await
        .ok()
        .and_then(|r| r.into_inner().info.get("info").cloned())
        .and_then(|i| serde_json::from_str(&i).ok())
        .unwrap_or_default();
    let cfg = &info["config"];
    let words: Vec<String> = cfg["command"]
        .as_array()
        .into_iter()
        .chain(cfg["args"].as_array())
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    let mut cmd = words.join(" ");
    if !no_trunc && cmd.chars().count() > 20 {
        cmd = cmd.chars().take(19).collect::<String>() + "…";
    }
    let (state, status_text) = match cri::ContainerState::try_from(st.state) {
        Ok(cri::ContainerState::ContainerRunning) => (
            "running",
            format!("Up {}", ago(st.started_at).trim_end_matches(" ago")),
        ),
        Ok(cri::ContainerState::ContainerExited) => (
            "exited",
            format!("Exited ({}) {}", st.exit_code, ago(st.finished_at)),
        ),
        Ok(cri::ContainerState::ContainerCreated) => ("created", "Created".into()),
        _ => ("unknown", "Unknown".into()),
    };
    let ports = ports(c, &x.pod_sandbox_id).await;
    let mut labels: Vec<String> = x
        .labels
        .iter()
        .filter(|(k, _)| !k.starts_with("io.crust."))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    labels.sort();
    let image = x
        .image
        .as_ref()
        .map(|i| i.image.clone())
        .unwrap_or_default();
    Ok([
        ("ID", short(&x.id)),
        ("Image", image),
        ("Command", format!("\"{cmd}\"")),
        ("CreatedAt", created_at(x.created_at)),
        ("RunningFor", ago(x.created_at)),
        ("Status", status_text),
        ("Ports", ports),
        ("Names", docker_name(x)),
        ("Labels", labels.join(",")),
        ("State", state.to_string()),
        ("Pod", short(&x.pod_sandbox_id)),
    ]
    .into())
}

/// The pod's published ports as Docker shows them: `0.0.0.0:8080->80/tcp, …`.
pub(crate) async fn ports(c: &mut CriClient, pod_id: &str) -> String {
    let info: serde_json::Value = c
        .runtime
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod_id.into(),
            verbose: true,
        })
        .await
        .ok()
        .and_then(|r| r.into_inner().info.get("info").cloned())
        .and_then(|i| serde_json::from_str(&i).ok())
        .unwrap_or_default();
    let Ok(cfg) = serde_json::from_value::<cri::PodSandboxConfig>(info["config"].clone()) else {
        return String::new();
    };
    cfg.port_mappings
        .iter()
        .map(|p| {
            let ip = if p.host_ip.is_empty() {
                "0.0.0.0"
            } else {
                &p.host_ip
            };
            let proto = cri::Protocol::try_from(p.protocol)
                .map(|p| p.as_str_name().to_lowercase())
                .unwrap_or_else(|_| "tcp".into());
            format!("{ip}:{}->{}/{proto}", p.host_port, p.container_port)
        })
        .collect::<Vec<_>>()
        .join(", ")
}
