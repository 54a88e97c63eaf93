//! stats and events.

use std::io::Write;
use std::time::{Duration, SystemTime};

use crust_proto::cri;
use crust_shim::client::CriClient;

use crate::common::{human_size, list_all, resolve};

pub(crate) async fn stats(
    c: &mut CriClient,
    names: Vec<String>,
    no_stream: bool,
) -> anyhow::Result<()> {
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

pub(crate) async fn events(c: &mut CriClient) -> anyhow::Result<()> {
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
