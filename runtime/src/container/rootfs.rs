//! The container rootfs: an overlay of the image's layer snapshots with a private writable
//! upper dir per container.

use std::fs;
use std::path::{Path, PathBuf};

use super::overlay;
use crate::error::{Error, IoContext, Result};

pub struct RootfsDirs {
    pub rootfs: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// One read-only overlay per image volume (`mount.image`), numbered by mount.
    pub image_volumes: PathBuf,
}

impl RootfsDirs {
    pub fn in_bundle(bundle: &Path) -> Self {
        RootfsDirs {
            rootfs: bundle.join("rootfs"),
            upper: bundle.join("upper"),
            work: bundle.join("work"),
            image_volumes: bundle.join("image-volumes"),
        }
    }
}

/// Mounts overlay(lowers, upper) on `dirs.rootfs`. `lowers` are bottom layer first, as images
/// list them, all in `snapshots`; an image without layers gets the empty lower
/// `<snapshots>/.empty`.
pub fn mount_overlay(dirs: &RootfsDirs, lowers: &[PathBuf], snapshots: &Path) -> Result<()> {
    for d in [&dirs.rootfs, &dirs.upper, &dirs.work] {
        fs::create_dir_all(d).ctx(|| format!("create {}", d.display()))?;
    }
    let mut lowers = lowers.to_vec();
    if lowers.is_empty() {
        lowers.push(empty_lower(snapshots)?);
    }
    let o = overlay::Overlay {
        lowers: &lowers,
        upper: Some((&dirs.upper, &dirs.work)),
        read_only: false,
    };
    overlay::mount(&dirs.rootfs, &o, snapshots).map(drop)
}

fn empty_lower(snapshots: &Path) -> Result<PathBuf> {
    let empty = snapshots.join(".empty");
    fs::create_dir_all(&empty).ctx(|| format!("create {}", empty.display()))?;
    Ok(empty)
}

/// Mounts an image's layers read-only on `target` (an overlay without an upper dir; the empty
/// dir at the bottom makes two lowers even for a one-layer image, as overlay wants).
pub fn mount_image_volume(target: &Path, lowers: &[PathBuf], snapshots: &Path) -> Result<()> {
    fs::create_dir_all(target).ctx(|| format!("create {}", target.display()))?;
    let mut all = vec![empty_lower(snapshots)?];
    all.extend_from_slice(lowers);
    let o = overlay::Overlay {
        lowers: &all,
        upper: None,
        read_only: true,
    };
    overlay::mount(target, &o, snapshots).map(drop)
}

/// The directory of an image volume to bind: `root` itself, or `sub_path` below it, which
/// must exist in the image and stay inside it (symlinks resolved in the mounted image).
pub fn image_sub_path(root: &Path, sub_path: &str) -> Result<PathBuf> {
    if sub_path.is_empty() {
        return Ok(root.to_path_buf());
    }
    if sub_path.starts_with('/') || sub_path.split('/').any(|c| c == "..") {
        return Err(Error::InvalidArgument(format!(
            "image_sub_path {sub_path:?} must be relative, without '..'"
        )));
    }
    let wanted = root.join(sub_path);
    let real = fs::canonicalize(&wanted).map_err(|e| {
        Error::InvalidArgument(format!(
            "image_sub_path {sub_path:?} does not exist in the image: {e}"
        ))
    })?;
    if !real.starts_with(root) {
        return Err(Error::InvalidArgument(format!(
            "image_sub_path {sub_path:?} leads outside the image"
        )));
    }
    Ok(real)
}

/// Unmounts the rootfs and every image volume of the bundle.
pub fn unmount(dirs: &RootfsDirs) -> Result<()> {
    if let Ok(rd) = fs::read_dir(&dirs.image_volumes) {
        for e in rd.flatten() {
            crate::fsutil::unmount_if_mounted(&e.path())
                .ctx(|| format!("unmount {}", e.path().display()))?;
        }
    }
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
