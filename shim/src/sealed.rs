//! CVE-2019-5736 defence. Monitors run from a sealed, read-only memfd copy of crustd rather than
//! the file on disk: a process inside a container that reaches the monitor's (or its forked
//! init's) `/proc/<pid>/exe` gets a memfd it cannot write, so it can never overwrite the host
//! binary. youki does the same in its own `main`; a daemon embedding libcontainer must do it
//! itself. The copy is made once per daemon start and shared by every monitor. The monitor is
//! its own small binary (`crust-monitor`, installed next to crustd); without it, crustd seals
//! itself and runs `crustd monitor`.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

pub struct SealedExe {
    pub fd: OwnedFd,
    pub path: PathBuf,
}

pub fn seal_self() -> std::io::Result<SealedExe> {
    seal_file(std::path::Path::new("/proc/self/exe"), c"crust")
}

/// A sealed memfd copy of the executable at `path`, named `name` in /proc/<pid>/maps.
pub fn seal_file(path: &std::path::Path, name: &std::ffi::CStr) -> std::io::Result<SealedExe> {
    // SAFETY: a valid C string name and flags; returns a new fd or -1.
    let raw =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut src = std::fs::File::open(path)?;
    let mut dst = std::fs::File::from(fd.try_clone()?);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n])?;
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on our own fd with an integer argument.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    Ok(SealedExe { fd, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_copy_cannot_be_written() {
        let s = seal_self().unwrap();
        let err = std::fs::OpenOptions::new()
            .write(true)
            .open(&s.path)
            .map(|mut f| f.write_all(b"x"));
        assert!(
            matches!(err, Err(_) | Ok(Err(_))),
            "sealed exe accepted a write"
        );
        let seals = unsafe { libc::fcntl(s.fd.as_raw_fd(), libc::F_GET_SEALS) };
        assert!(seals & libc::F_SEAL_WRITE != 0);
    }
}
