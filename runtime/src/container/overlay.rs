//! Overlay mounts of any layer count overlayfs takes (500 lower layers).
//!
//! `mount(2)` passes every option in one page, so with absolute snapshot paths (about 90 bytes
//! each under crust's default root) an image of more than ~40 layers could not be mounted.
//! Kernels since 6.8 have the new mount API's `lowerdir+`, which adds one lower layer per
//! `fsconfig` call with no size limit: that is used where the kernel has it. Older kernels get
//! what Docker's overlay2 and containerd do: short names. Each snapshot gets a short symlink
//! under `<snapshots>/.l/` (a dot name, so image GC passes it by), and the mount is made from a
//! child process whose working directory is `<snapshots>`, so the option string holds
//! `.l/<16 hex>` per layer (~190 layers in a page).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// What to mount: lower layers bottom first (as images list them), an optional writable
/// upper with its work dir, and whether the whole mount is read-only.
pub struct Overlay<'a> {
    pub lowers: &'a [PathBuf],
    pub upper: Option<(&'a Path, &'a Path)>,
    pub read_only: bool,
}

/// overlayfs's own limit on lower layers (OVL_MAX_STACK).
pub const MAX_LAYERS: usize = 500;

/// How a mount was made (tests check both ways work).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// fsopen + fsconfig("lowerdir+") per layer + fsmount + move_mount.
    NewApi,
    /// mount(2) with the full paths.
    Classic,
    /// mount(2) from `<snapshots>` with short symlinks `.l/<id>`.
    ShortNames,
}

/// Mounts `o` on `target`: the new mount API where the kernel has `lowerdir+`, else mount(2),
/// with short names when the full paths do not fit a page. `snapshots` is the directory all
/// lower layers live in (for the short names).
pub fn mount(target: &Path, o: &Overlay<'_>, snapshots: &Path) -> Result<Method> {
    check(o)?;
    match mount_new_api(target, o) {
        Ok(()) => Ok(Method::NewApi),
        Err(NewApiError::Unsupported) => mount_classic(target, o, snapshots),
        Err(NewApiError::Failed(e)) => Err(e),
    }
}

fn check(o: &Overlay<'_>) -> Result<()> {
    if o.lowers.is_empty() {
        return Err(Error::Internal("an overlay needs a lower layer".into()));
    }
    if o.lowers.len() > MAX_LAYERS {
        return Err(Error::FailedPrecondition(format!(
            "image has {} layers; overlayfs stacks at most {MAX_LAYERS}",
            o.lowers.len()
        )));
    }
    if o.upper.is_none() && o.lowers.len() < 2 {
        // overlay wants two lowers when it has no upper; callers add an empty one.
        return Err(Error::Internal(
            "a read-only overlay needs two lower layers".into(),
        ));
    }
    for l in o.lowers {
        // mount(2)'s option syntax has no escape for these; keep one rule for both ways.
        if l.as_os_str().as_bytes().iter().any(|b| b",:".contains(b)) {
            return Err(Error::Internal(format!(
                "layer path {} contains ',' or ':'",
                l.display()
            )));
        }
    }
    Ok(())
}

enum NewApiError {
    /// No fsopen, or no `lowerdir+` (before Linux 6.8): use mount(2).
    Unsupported,
    Failed(Error),
}

fn cstr(s: &[u8]) -> CString {
    CString::new(s).expect("paths and keys hold no NUL")
}

fn fsconfig_string(fd: RawFd, key: &str, value: &[u8]) -> std::result::Result<(), nix::Error> {
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    let (key, value) = (cstr(key.as_bytes()), cstr(value));
    // SAFETY: fd is an open fs context; key and value are NUL-terminated and outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd,
            FSCONFIG_SET_STRING,
            key.as_ptr(),
            value.as_ptr(),
            0,
        )
    };
    if r < 0 {
        Err(nix::Error::last())
    } else {
        Ok(())
    }
}

/// The messages the kernel left in an fs context (read(2) on it gives "e overlay: …" lines).
fn context_log(fd: RawFd) -> String {
    let mut all = String::new();
    let mut buf = [0u8; 512];
    loop {
        // SAFETY: reading into a local buffer of the given length from an fd we own.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return all;
        }
        all.push_str(String::from_utf8_lossy(&buf[..n as usize]).trim_end());
        all.push_str("; ");
    }
}

fn mount_new_api(target: &Path, o: &Overlay<'_>) -> std::result::Result<(), NewApiError> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
    const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    let name = cstr(b"overlay");
    // SAFETY: fsopen takes a NUL-terminated filesystem name and flags; it returns a new fd.
    let fd = unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) };
    if fd < 0 {
        return Err(NewApiError::Unsupported);
    }
    // SAFETY: fsopen just returned this fd and nothing else owns it.
    let fs = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let failed = |what: String, e: nix::Error| {
        NewApiError::Failed(Error::Io {
            context: format!(
                "mount overlay on {}: {what}: {}",
                target.display(),
                context_log(fs.as_raw_fd())
            ),
            source: e.into(),
        })
    };
    // Top layer first, as in lowerdir=.
    let mut layers = o.lowers.iter().rev();
    let top = layers.next().expect("checked: at least one lower");
    match fsconfig_string(fs.as_raw_fd(), "lowerdir+", top.as_os_str().as_bytes()) {
        Ok(()) => {}
        // Before 6.8 overlay does not know the key.
        Err(nix::Error::EINVAL) if context_log(fs.as_raw_fd()).contains("lowerdir+") => {
            return Err(NewApiError::Unsupported);
        }
        Err(nix::Error::EINVAL) => return Err(NewApiError::Unsupported),
        Err(e) => return Err(failed(format!("lower layer {}", top.display()), e)),
    }
    for l in layers {
        fsconfig_string(fs.as_raw_fd(), "lowerdir+", l.as_os_str().as_bytes())
            .map_err(|e| failed(format!("lower layer {}", l.display()), e))?;
    }
    if let Some((upper, work)) = o.upper {
        fsconfig_string(fs.as_raw_fd(), "upperdir", upper.as_os_str().as_bytes())
            .map_err(|e| failed("upperdir".into(), e))?;
        fsconfig_string(fs.as_raw_fd(), "workdir", work.as_os_str().as_bytes())
            .map_err(|e| failed("workdir".into(), e))?;
    }
    // SAFETY: a command on the fs context we own; the other arguments are unused (null/0).
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if r < 0 {
        let e = nix::Error::last();
        // Overlay before 6.5 takes new-API keys through the legacy parser, which accepts
        // "lowerdir+" blindly and fails here: mount(2) is the way on such kernels.
        if e == nix::Error::EINVAL {
            return Err(NewApiError::Unsupported);
        }
        return Err(failed("create".into(), e));
    }
    let mut attrs = 0;
    if o.read_only {
        attrs |= MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV;
    }
    // SAFETY: fsmount of the created context we own; returns a new mount fd.
    let m = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) };
    if m < 0 {
        return Err(failed("fsmount".into(), nix::Error::last()));
    }
    // SAFETY: fsmount just returned this fd and nothing else owns it.
    let mnt = unsafe { OwnedFd::from_raw_fd(m as RawFd) };
    let empty = cstr(b"");
    let to = cstr(target.as_os_str().as_bytes());
    // SAFETY: moves the detached mount we own onto `target`; both strings are NUL-terminated.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(failed("move_mount".into(), nix::Error::last()));
    }
    Ok(())
}

/// mount(2): the full paths when they fit a page, else the short names.
pub fn mount_classic(target: &Path, o: &Overlay<'_>, snapshots: &Path) -> Result<Method> {
    let full: Vec<String> = o
        .lowers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let opts = options(&full, o);
    if opts.len() < PAGE {
        mount_at(None, target, &opts, o.read_only)?;
        return Ok(Method::Classic);
    }
    mount_short_names(target, o, snapshots)?;
    Ok(Method::ShortNames)
}

/// mount(2) from `snapshots` with a short symlink per lower layer.
pub fn mount_short_names(target: &Path, o: &Overlay<'_>, snapshots: &Path) -> Result<()> {
    let links = snapshots.join(".l");
    std::fs::create_dir_all(&links).ctx(|| format!("create {}", links.display()))?;
    let mut short = Vec::with_capacity(o.lowers.len());
    for l in o.lowers.iter().rev() {
        let name = short_name(l);
        let link = links.join(&name);
        match std::fs::read_link(&link) {
            Ok(to) if to == *l => {}
            Ok(_) => {
                // Another layer's name (a 64-bit hash collision) or a stale link: replace it
                // only if its layer is gone; otherwise refuse rather than mount the wrong one.
                if std::fs::read_link(&link).is_ok_and(|to| to.exists()) {
                    return Err(Error::Internal(format!(
                        "short layer name {} is taken by another layer",
                        link.display()
                    )));
                }
                std::fs::remove_file(&link).ctx(|| format!("remove {}", link.display()))?;
                std::os::unix::fs::symlink(l, &link).ctx(|| format!("link {}", link.display()))?;
            }
            Err(_) => {
                std::os::unix::fs::symlink(l, &link).ctx(|| format!("link {}", link.display()))?;
            }
        }
        short.push(format!(".l/{name}"));
    }
    let opts = options(&short, o);
    if opts.len() >= PAGE {
        return Err(Error::FailedPrecondition(format!(
            "image has too many layers ({}) for one overlay mount on this kernel (before \
             Linux 6.8 the layer list must fit a page)",
            o.lowers.len()
        )));
    }
    mount_at(Some(snapshots), target, &opts, o.read_only)
}

const PAGE: usize = 4096;

fn options(lowers: &[String], o: &Overlay<'_>) -> String {
    let mut opts = format!("lowerdir={}", lowers.join(":"));
    if let Some((upper, work)) = o.upper {
        opts.push_str(&format!(
            ",upperdir={},workdir={}",
            upper.display(),
            work.display()
        ));
    }
    opts
}

/// 16 hex digits of the layer path's hash: unique enough, short enough for ~200 layers.
fn short_name(layer: &Path) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(layer.as_os_str().as_bytes());
    hex::encode(&d[..8])
}

/// mount(2) of overlay on `target`, from a child process whose working directory is `cwd`
/// when one is given (crustd is multi-threaded, so it never changes its own).
fn mount_at(cwd: Option<&Path>, target: &Path, opts: &str, read_only: bool) -> Result<()> {
    use nix::mount::MsFlags;
    let mut flags = MsFlags::empty();
    if read_only {
        flags |= MsFlags::MS_RDONLY | MsFlags::MS_NODEV;
    }
    let Some(cwd) = cwd else {
        return nix::mount::mount(Some("overlay"), target, Some("overlay"), flags, Some(opts))
            .ctx(|| format!("mount overlay on {}", target.display()));
    };
    // Everything the child needs is made before fork: after it only chdir, mount and _exit
    // run, which are async-signal-safe.
    let (c_cwd, c_target, c_opts, c_overlay) = (
        cstr(cwd.as_os_str().as_bytes()),
        cstr(target.as_os_str().as_bytes()),
        cstr(opts.as_bytes()),
        cstr(b"overlay"),
    );
    // SAFETY: the child calls only async-signal-safe functions (chdir, mount, _exit) on
    // memory prepared before the fork, so the parent's threads and locks do not matter.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            // SAFETY: async-signal-safe syscalls on NUL-terminated strings made before fork.
            let code = unsafe {
                let failed = libc::chdir(c_cwd.as_ptr()) != 0
                    || libc::mount(
                        c_overlay.as_ptr(),
                        c_target.as_ptr(),
                        c_overlay.as_ptr(),
                        flags.bits(),
                        c_opts.as_ptr().cast(),
                    ) != 0;
                if failed { *libc::__errno_location() } else { 0 }
            };
            // SAFETY: ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(code.clamp(0, 255)) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            let status = nix::sys::wait::waitpid(child, None)
                .ctx(|| format!("wait for the overlay mount of {}", target.display()))?;
            match status {
                nix::sys::wait::WaitStatus::Exited(_, 0) => Ok(()),
                nix::sys::wait::WaitStatus::Exited(_, errno) => Err(Error::Io {
                    context: format!(
                        "mount overlay on {} (short layer names from {})",
                        target.display(),
                        cwd.display()
                    ),
                    source: std::io::Error::from_raw_os_error(errno),
                }),
                other => Err(Error::Internal(format!(
                    "the overlay mount of {} ended with {other:?}",
                    target.display()
                ))),
            }
        }
        Err(e) => Err(Error::Io {
            context: "fork for an overlay mount".into(),
            source: e.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` one-file layers under `snapshots/<long name>`, bottom first.
    fn layers(snapshots: &Path, n: usize) -> Vec<PathBuf> {
        (0..n)
            .map(|i| {
                // As long as a real snapshot path: a 64-hex chain id.
                let dir = snapshots.join(format!("{i:064x}"));
                std::fs::create_dir_all(dir.join("layers")).unwrap();
                std::fs::write(dir.join("layers").join(i.to_string()), "x").unwrap();
                std::fs::write(dir.join("top"), i.to_string()).unwrap();
                dir
            })
            .collect()
    }

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    fn check_stack(target: &Path, n: usize) {
        assert_eq!(std::fs::read_dir(target.join("layers")).unwrap().count(), n);
        // The last layer listed is the top one.
        assert_eq!(
            std::fs::read_to_string(target.join("top")).unwrap(),
            (n - 1).to_string()
        );
        nix::mount::umount(target).unwrap();
    }

    #[test]
    fn every_way_mounts_many_layers_in_order() {
        if !root() {
            eprintln!("SKIP: mounting needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let snapshots = dir.path().join("snapshots");
        let target = dir.path().join("mnt");
        std::fs::create_dir_all(&target).unwrap();
        let all = layers(&snapshots, MAX_LAYERS);
        let upper = dir.path().join("upper");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::create_dir_all(&work).unwrap();

        // This kernel (6.18) has lowerdir+: overlayfs's whole stack, writable.
        let o = Overlay {
            lowers: &all,
            upper: Some((&upper, &work)),
            read_only: false,
        };
        assert_eq!(mount(&target, &o, &snapshots).unwrap(), Method::NewApi);
        std::fs::write(target.join("written"), "up").unwrap();
        check_stack(&target, MAX_LAYERS);
        assert!(upper.join("written").exists());

        // The older kernels' way: 127 layers do not fit a page as full paths.
        let some = &all[..127];
        let o = Overlay {
            lowers: some,
            upper: None,
            read_only: true,
        };
        assert_eq!(
            mount_classic(&target, &o, &snapshots).unwrap(),
            Method::ShortNames
        );
        assert!(std::fs::write(target.join("x"), "").is_err(), "read-only");
        check_stack(&target, 127);
        // Again: the links are there already.
        mount_short_names(&target, &o, &snapshots).unwrap();
        check_stack(&target, 127);

        // Few layers: the plain mount(2).
        let o = Overlay {
            lowers: &all[..3],
            upper: None,
            read_only: true,
        };
        assert_eq!(
            mount_classic(&target, &o, &snapshots).unwrap(),
            Method::Classic
        );
        check_stack(&target, 3);

        // Past overlayfs's limit: refused with the reason.
        let too_many: Vec<PathBuf> = all.iter().chain(&all[..1]).cloned().collect();
        let o = Overlay {
            lowers: &too_many,
            upper: None,
            read_only: true,
        };
        let e = mount(&target, &o, &snapshots).unwrap_err();
        assert!(matches!(e, Error::FailedPrecondition(_)), "{e}");
    }
}
