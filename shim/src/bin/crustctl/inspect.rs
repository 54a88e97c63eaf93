//! inspect (containers, images, pods) and top.

use anyhow::{Context, bail};
use crust_proto::cri;
use crust_shim::client::CriClient;

use crate::common::{resolve, resolve_pod, spec};
use crate::images::find_image;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    Container,
    Image,
    Pod,
}

fn info_json(info: &std::collections::HashMap<String, String>) -> serde_json::Value {
    info.get("info")
        .and_then(|i| serde_json::from_str(i).ok())
        .unwrap_or_default()
}

/// One object as JSON: a container's CRI status, an image (with its config) or a pod (with
/// its config and containers), found in that order unless `kind` says which.
pub(crate) async fn inspect(
    c: &mut CriClient,
    name: &str,
    kind: Option<Kind>,
) -> anyhow::Result<serde_json::Value> {
    if kind.is_none_or(|k| k == Kind::Container)
        && let Ok(id) = resolve(c, name).await
    {
        let st = c
            .runtime
            .container_status(cri::ContainerStatusRequest {
                container_id: id,
                verbose: true,
            })
            .await?
            .into_inner();
        return Ok(serde_json::to_value(&st.status)?);
    }
    if kind.is_none_or(|k| k == Kind::Image)
        && let Ok(img) = find_image(c, name).await
    {
        let r = c
            .image
            .image_status(cri::ImageStatusRequest {
                image: Some(spec(&img.id)),
                verbose: true,
            })
            .await?
            .into_inner();
        let mut v = serde_json::to_value(&r.image)?;
        v["info"] = serde_json::to_value(
            r.info
                .iter()
                .map(|(k, v)| {
                    let parsed = serde_json::from_str(v)
                        .unwrap_or_else(|_| serde_json::Value::String(v.clone()));
                    (k.clone(), parsed)
                })
                .collect::<serde_json::Map<_, _>>(),
        )?;
        return Ok(v);
    }
    if kind.is_none_or(|k| k == Kind::Pod)
        && let Ok(id) = resolve_pod(c, name).await
    {
        let r = c
            .runtime
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id,
                verbose: true,
            })
            .await?
            .into_inner();
        let mut v = serde_json::to_value(&r.status)?;
        v["info"] = info_json(&r.info);
        v["containers_statuses"] = serde_json::to_value(&r.containers_statuses)?;
        return Ok(v);
    }
    let what = match kind {
        Some(Kind::Container) => "container",
        Some(Kind::Image) => "image",
        Some(Kind::Pod) => "pod",
        None => "object",
    };
    bail!("Error: No such {what}: {name}")
}

/// `crustctl top`: the container's processes (every process in its PID namespace), shown by
/// the host's ps(1) with `ps_args` (`-f` when none). crustctl runs on crustd's host, as for
/// `logs`.
pub(crate) async fn top(c: &mut CriClient, name: &str, ps_args: &[String]) -> anyhow::Result<()> {
    let id = resolve(c, name).await?;
    let r = c
        .runtime
        .container_status(cri::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: true,
        })
        .await?
        .into_inner();
    let running = r
        .status
        .as_ref()
        .is_some_and(|s| s.state == cri::ContainerState::ContainerRunning as i32);
    let pid = info_json(&r.info)["pid"].as_i64().unwrap_or(0);
    if !running || pid <= 0 {
        bail!("Error response from daemon: container {name} is not running");
    }
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
    let want = ns(&pid.to_string()).with_context(|| format!("read the PID namespace of {pid}"))?;
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| ns(&p.to_string()).as_ref() == Some(&want))
        .collect();
    pids.sort();
    let list = pids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-f".into()]
    } else {
        ps_args.to_vec()
    };
    let st = std::process::Command::new("ps")
        .args(&args)
        .args(["-p", &list])
        .status()
        .context("run ps(1)")?;
    if !st.success() {
        bail!("ps {} -p {list} failed ({st})", args.join(" "));
    }
    Ok(())
}
