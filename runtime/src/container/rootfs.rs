//! The container rootfs: an overlay of the image's layer snapshots with a private writable
//! upper dir per container.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use crate::error::{Error, IoContext, Result};

pub struct RootfsDirs {
    pub rootfs: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
}

impl RootfsDirs {
    pub fn in_bundle(bundle: &Path) -> Self {
        RootfsDirs {
            rootfs: bundle.join("rootfs"),
            upper: bundle.join("upper"),
            work: bundle.join("work"),
        }
    }
}

/// Mounts overlay(lowers, upper) on `dirs.rootfs`. `lowers` are bottom layer first, as images
/// list them; overlay wants the top one first. An image without layers gets an empty lower.
pub fn mount_overlay(dirs: &RootfsDirs, lowers: &[PathBuf], empty_lower: &Path) -> Result<()> {
    for d in [&dirs.rootfs, &dirs.upper, &dirs.work] {
        fs::create_dir_all(d).ctx(|| format!("create {}", d.display()))?;
    }
    let mut lowerdir: Vec<String> = lowers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    if lowerdir.is_empty() {
        fs::create_dir_all(empty_lower).ctx(|| format!("create {}", empty_lower.display()))?;
        lowerdir.push(empty_lower.display().to_string());
    }
    for l in &lowerdir {
        if l.contains([',', ':']) {
            return Err(Error::Internal(format!(
                "layer path {l} contains ',' or ':'"
            )));
        }
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowerdir.join(":"),
        dirs.upper.display(),
        dirs.work.display()
    );
    // The mount data is limited to a page; with long paths that caps the layer count.
    if opts.len() >= 4096 {
        return Err(Error::FailedPrecondition(format!(
            "image has too many layers ({}) for one overlay mount",
            lowers.len()
        )));
    }
    nix::mount::mount(
        Some("overlay"),
        &dirs.rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .ctx(|| format!("mount overlay on {}", dirs.rootfs.display()))
}

pub fn unmount(dirs: &RootfsDirs) -> Result<()> {
    crate::fsutil::unmount_if_mounted(&dirs.rootfs)
        .ctx(|| format!("unmount {}", dirs.rootfs.display()))
}
