//! pull (with progress), images, load.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use crust_proto::cri;
use crust_shim::client::CriClient;

use crate::common::{human_size, spec};
use crate::format::{Format, Row};

pub(crate) async fn pull(c: &mut CriClient, image: &str) -> anyhow::Result<String> {
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
pub(crate) async fn pull_with_progress(c: &mut CriClient, image: &str) -> anyhow::Result<String> {
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

/// images's flags.
#[derive(clap::Args)]
pub(crate) struct ImagesArgs {
    /// Print image ids only.
    #[arg(short = 'q', long)]
    pub(crate) quiet: bool,
    /// Full image ids.
    #[arg(long)]
    pub(crate) no_trunc: bool,
    /// `table`, a Go-style template ({{.Repository}}, {{.Tag}}, {{.ID}}, {{.Digest}},
    /// {{.Size}}, {{.Pinned}}), or `json`.
    #[arg(long)]
    pub(crate) format: Option<String>,
}

const IMAGE_FIELDS: &[(&str, &str)] = &[
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("ID", "IMAGE ID"),
    ("Digest", "DIGEST"),
    ("Size", "SIZE"),
    ("Pinned", "PINNED"),
];

const IMAGES_DEFAULT: &str = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Digest}}\t{{.Size}}";

/// The image id as `images` shows it: 12 hex digits, or all of it with `no_trunc`.
pub(crate) fn short_image_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.trim_start_matches("sha256:").chars().take(12).collect()
    }
}

pub(crate) async fn images(c: &mut CriClient, args: ImagesArgs) -> anyhow::Result<()> {
    let format = Format::parse(
        args.format.as_deref().unwrap_or(IMAGES_DEFAULT),
        IMAGE_FIELDS,
    )?;
    let imgs = c
        .image
        .list_images(cri::ListImagesRequest { filter: None })
        .await?
        .into_inner()
        .images;
    if args.quiet {
        for i in imgs {
            println!("{}", short_image_id(&i.id, args.no_trunc));
        }
        return Ok(());
    }
    let mut rows = Vec::new();
    for i in imgs {
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
                .map(|(_, d)| d.to_string())
                .unwrap_or_else(|| "<none>".into());
            let row: Row = [
                ("Repository", repo.to_string()),
                ("Tag", tag.to_string()),
                ("ID", short_image_id(&i.id, args.no_trunc)),
                ("Digest", digest),
                ("Size", human_size(i.size)),
                ("Pinned", i.pinned.to_string()),
            ]
            .into();
            rows.push(row);
        }
    }
    print!("{}", format.render(&rows, IMAGE_FIELDS));
    Ok(())
}

/// Copies `archive` into the import directory under a hidden name, reveals it with a rename
/// (so crustd never reads half a file), and waits for crustd's verdict.
pub(crate) async fn load(import_dir: &Path, archive: &Path) -> anyhow::Result<Vec<String>> {
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

/// An image by name (as crustd normalises it), full id, or id prefix.
pub(crate) async fn find_image(c: &mut CriClient, name: &str) -> anyhow::Result<cri::Image> {
    if let Some(img) = c
        .image
        .image_status(cri::ImageStatusRequest {
            image: Some(spec(name)),
            verbose: false,
        })
        .await?
        .into_inner()
        .image
    {
        return Ok(img);
    }
    let short = name.trim_start_matches("sha256:");
    let mut hits: Vec<cri::Image> =
        if short.len() >= 4 && short.chars().all(|c| c.is_ascii_hexdigit()) {
            c.image
                .list_images(cri::ListImagesRequest { filter: None })
                .await?
                .into_inner()
                .images
                .into_iter()
                .filter(|i| i.id.trim_start_matches("sha256:").starts_with(short))
                .collect()
        } else {
            Vec::new()
        };
    match hits.len() {
        1 => Ok(hits.remove(0)),
        0 => bail!("Error response from daemon: No such image: {name}"),
        _ => bail!("{name} matches more than one image; use a longer id"),
    }
}

/// `crustctl rmi`: refuses an image a container (running or not) uses, naming it, unless
/// `force`.
pub(crate) async fn rmi(c: &mut CriClient, name: &str, force: bool) -> anyhow::Result<()> {
    let img = find_image(c, name).await?;
    let short = |s: &str| {
        s.trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect::<String>()
    };
    // A name of an image with other tags only takes that tag off (even with -f); its id
    // with several tags needs -f, as Docker has it.
    let by_id = img
        .id
        .trim_start_matches("sha256:")
        .starts_with(name.trim_start_matches("sha256:"));
    if img.repo_tags.len() > 1 {
        if !by_id {
            let r = c
                .crust
                .untag_image(crust_proto::crust::UntagImageRequest { name: name.into() })
                .await?
                .into_inner();
            println!("Untagged: {}", r.tag);
            return Ok(());
        }
        if !force {
            bail!(
                "Error response from daemon: conflict: unable to delete {} (must be forced) - \
                 image is referenced in multiple repositories",
                short(&img.id)
            );
        }
    }
    if !force
        && let Some(user) = crate::common::list_all(c)
            .await?
            .into_iter()
            .find(|x| x.image_ref == img.id || x.image_id == img.id)
    {
        bail!(
            "Error response from daemon: conflict: unable to remove repository reference \"{name}\" \
             (must force) - container {} is using its referenced image {}",
            short(&user.id),
            short(&img.id)
        );
    }
    c.image
        .remove_image(cri::RemoveImageRequest {
            image: Some(spec(&img.id)),
        })
        .await?;
    for t in &img.repo_tags {
        println!("Untagged: {t}");
    }
    println!("Deleted: {}", img.id);
    Ok(())
}
