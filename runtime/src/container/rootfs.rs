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

/// Creates the working directory `cwd` (absolute, inside the container) in the mounted rootfs
/// when it is missing, as Docker and containerd do. Walks one component at a time without
/// following symlinks, so an image's symlink can never lead it outside the rootfs; a component
/// that is a symlink is left for the container's own resolution at chdir.
pub fn ensure_working_dir(rootfs: &Path, cwd: &str) -> Result<()> {
    use nix::fcntl::{OFlag, openat};
    use nix::sys::stat::{Mode, mkdirat};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let bad = |msg: String| crate::error::Error::InvalidArgument(msg);
    let own = |fd: std::os::fd::RawFd| {
        // SAFETY: `fd` was just returned by open/openat and nothing else owns it.
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
    let mut dir = own(nix::fcntl::open(
        rootfs,
        OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_PATH,
        Mode::empty(),
    )
    .map_err(|e| crate::error::Error::Internal(format!("open {}: {e}", rootfs.display())))?);
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_PATH;
    for comp in cwd.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if comp == ".." {
            return Err(bad(format!("working_dir {cwd:?} must not contain '..'")));
        }
        let at = Some(dir.as_raw_fd());
        let next = match openat(at, comp, flags, Mode::empty()) {
            Ok(fd) => own(fd),
            Err(nix::errno::Errno::ENOENT) => {
                match mkdirat(at, comp, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                    Err(e) => {
                        return Err(crate::error::Error::Io {
                            context: format!("create working_dir {cwd:?}"),
                            source: e.into(),
                        });
                    }
                }
                own(openat(at, comp, flags, Mode::empty()).map_err(|e| {
                    crate::error::Error::Io {
                        context: format!("open working_dir {cwd:?}"),
                        source: e.into(),
                    }
                })?)
            }
            // A symlink (ELOOP with O_NOFOLLOW): the container resolves it itself.
            Err(nix::errno::Errno::ELOOP) => return Ok(()),
            Err(nix::errno::Errno::ENOTDIR) => {
                return Err(bad(format!(
                    "working_dir {cwd:?}: {comp:?} is not a directory in the image"
                )));
            }
            Err(e) => {
                return Err(crate::error::Error::Io {
                    context: format!("open working_dir {cwd:?}"),
                    source: e.into(),
                });
            }
        };
        dir = next;
    }
    Ok(())
}
