//! rm and prune.

use anyhow::{anyhow, bail};
use crust_proto::cri;
use crust_shim::client::CriClient;

use crate::common::{RUN_LABEL, list_all, spec, status};

/// `crustctl prune`: exited containers first (so their images become unused), then images
/// that no remaining container was created from. Pinned images stay.
pub(crate) async fn prune(c: &mut CriClient, containers: bool, images: bool) -> anyhow::Result<()> {
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

pub(crate) async fn remove(c: &mut CriClient, id: &str, force: bool) -> anyhow::Result<()> {
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

/// `crustctl system prune`: stopped containers (created or exited, with the pods `run` made),
/// then dangling images (no tag), or with `all` every image no container uses. Asks first
/// unless `force`.
pub(crate) async fn system_prune(c: &mut CriClient, all: bool, force: bool) -> anyhow::Result<()> {
    if !force {
        use std::io::{BufRead, Write};
        let images = if all {
            "all images without at least one container associated to them"
        } else {
            "all dangling images"
        };
        print!(
            "WARNING! This will remove:\n  - all stopped containers\n  - {images}\n\nAre you sure you want to continue? [y/N] "
        );
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(());
        }
    }
    let mut deleted = Vec::new();
    for ctr in list_all(c).await? {
        if ctr.state != cri::ContainerState::ContainerRunning as i32 {
            remove(c, &ctr.id, true).await?;
            deleted.push(ctr.id);
        }
    }
    if !deleted.is_empty() {
        println!("Deleted Containers:");
        for id in &deleted {
            println!("{id}");
        }
        println!();
    }
    let used: std::collections::HashSet<String> = list_all(c)
        .await?
        .into_iter()
        .flat_map(|x| [x.image_ref, x.image_id])
        .collect();
    let mut reclaimed = 0u64;
    let mut lines = Vec::new();
    for img in c
        .image
        .list_images(cri::ListImagesRequest { filter: None })
        .await?
        .into_inner()
        .images
    {
        let dangling = img.repo_tags.is_empty();
        if img.pinned || used.contains(&img.id) || !(all || dangling) {
            continue;
        }
        c.image
            .remove_image(cri::RemoveImageRequest {
                image: Some(spec(&img.id)),
            })
            .await?;
        lines.extend(img.repo_tags.iter().map(|t| format!("untagged: {t}")));
        lines.push(format!("deleted: {}", img.id));
        reclaimed += img.size;
    }
    if !lines.is_empty() {
        println!("Deleted Images:");
        for l in lines {
            println!("{l}");
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        crate::common::human_size(reclaimed)
    );
    Ok(())
}
