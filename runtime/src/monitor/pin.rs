//! Pins a pod's network, IPC and UTS namespaces without an infra process: a short-lived child
//! unshares them, sets the hostname, brings loopback up, and bind-mounts its namespace files
//! onto files in the pod's state dir. The bind mounts keep the namespaces alive for as long as
//! the pod exists, and containers join them by path (what CRI-O's pinns does).
//!
//! Must run while the caller is single-threaded: it forks.

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::ForkResult;

use super::{NS_DIR, POD_NAMESPACES};

pub fn ns_path(pod_dir: &Path, ns: &str) -> PathBuf {
    pod_dir.join(NS_DIR).join(ns)
}

/// Creates and pins the given pod namespaces (a subset of `net`, `ipc`, `uts`; the others stay
/// the host's, for host-network or host-IPC pods) under `pod_dir/ns/`. Idempotent: already
/// pinned namespaces (a monitor restarted for the same pod) are kept.
pub fn pin_namespaces(
    pod_dir: &Path,
    hostname: &str,
    namespaces: &[String],
) -> std::io::Result<()> {
    let ns_dir = pod_dir.join(NS_DIR);
    fs::create_dir_all(&ns_dir)?;
    if let Some(bad) = namespaces
        .iter()
        .find(|n| !POD_NAMESPACES.contains(&n.as_str()))
    {
        return Err(std::io::Error::other(format!(
            "cannot pin namespace {bad:?}"
        )));
    }
    if namespaces.iter().all(|n| is_pinned(&ns_path(pod_dir, n))) {
        return Ok(());
    }
    for n in namespaces {
        let p = ns_path(pod_dir, n);
        if !p.exists() {
            fs::File::create(&p)?;
        }
    }
    // SAFETY: the caller is single-threaded (the monitor pins before it starts its runtime), so
    // the child may allocate and call anything; it only makes syscalls and then _exits.
    match unsafe { nix::unistd::fork() }.map_err(std::io::Error::from)? {
        ForkResult::Child => {
            let code = match pin_in_child(pod_dir, hostname, namespaces) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            // SAFETY: _exit ends the forked child without running the parent's atexit handlers
            // or destructors, which belong to the parent.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => match waitpid(child, None).map_err(std::io::Error::from)? {
            WaitStatus::Exited(_, 0) => Ok(()),
            other => Err(std::io::Error::other(format!(
                "pinning the pod namespaces failed ({other:?}); see the monitor log"
            ))),
        },
    }
}

fn pin_in_child(pod_dir: &Path, hostname: &str, namespaces: &[String]) -> nix::Result<()> {
    let mut flags = CloneFlags::empty();
    for n in namespaces {
        flags |= match n.as_str() {
            "net" => CloneFlags::CLONE_NEWNET,
            "ipc" => CloneFlags::CLONE_NEWIPC,
            _ => CloneFlags::CLONE_NEWUTS,
        };
    }
    nix::sched::unshare(flags)?;
    if flags.contains(CloneFlags::CLONE_NEWUTS) && !hostname.is_empty() {
        nix::unistd::sethostname(hostname)?;
    }
    if flags.contains(CloneFlags::CLONE_NEWNET) {
        loopback_up()?;
    }
    for n in namespaces {
        let src = format!("/proc/self/ns/{n}");
        nix::mount::mount(
            Some(src.as_str()),
            &ns_path(pod_dir, n),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )?;
    }
    Ok(())
}

/// `ip link set lo up`, with the SIOCSIFFLAGS ioctl.
fn loopback_up() -> nix::Result<()> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq naming "lo"; SIOCGIFFLAGS fills ifru_flags.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: the union member written by SIOCGIFFLAGS is ifru_flags.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above; SIOCSIFFLAGS reads ifru_flags.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok(())
}

/// True when `path` has an nsfs bind mount on it.
pub fn is_pinned(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == NSFS_MAGIC)
}

/// Unmounts and deletes the pinned namespace files. Missing ones are fine.
pub fn unpin_namespaces(pod_dir: &Path) -> std::io::Result<()> {
    for n in POD_NAMESPACES.iter().chain(&["pid"]) {
        unpin_namespace(pod_dir, n)?;
    }
    Ok(())
}

/// Unpins one of the pod's namespaces (`net`, `ipc`, …) and removes its file, so its path no
/// longer exists; the namespace ends with its last process.
pub fn unpin_namespace(pod_dir: &Path, name: &str) -> std::io::Result<()> {
    let p = ns_path(pod_dir, name);
    crate::fsutil::unmount_if_mounted(&p)?;
    match fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
