//! Resolving users and groups inside an image: `/etc/passwd` and `/etc/group` are read through
//! `openat2(RESOLVE_IN_ROOT)`, so an image whose `/etc/passwd` is a symlink to a host file reads
//! its own file tree, never the host's.

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: Option<String>,
}

/// Opens `rel` (absolute inside the root, or relative) with every component resolved inside
/// `root`. Returns None when it does not exist.
pub fn open_in_root(root: &Path, rel: &str) -> std::io::Result<Option<File>> {
    let root_c = CString::new(root.as_os_str().as_bytes())?;
    let rel_c = CString::new(rel.trim_start_matches('/'))?;
    // SAFETY: root_c is a valid C string; open returns a new fd we take ownership of below.
    let root_fd = unsafe {
        libc::open(
            root_c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if root_fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: root_fd is a fresh, valid fd owned by no one else.
    let root_fd = unsafe { OwnedFd::from_raw_fd(root_fd) };
    // SAFETY: open_how is plain old data; all-zero is valid and the fields are set below.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_XDEV;
    // SAFETY: openat2 with a valid dirfd, C string and a properly sized open_how.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            std::os::fd::AsRawFd::as_raw_fd(&root_fd),
            rel_c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::NotFound {
            return Ok(None);
        }
        return Err(e);
    }
    // SAFETY: openat2 returned a new fd that nothing else owns.
    Ok(Some(File::from(unsafe { OwnedFd::from_raw_fd(fd as i32) })))
}

fn read_in_root(root: &Path, rel: &str) -> String {
    let mut s = String::new();
    if let Ok(Some(mut f)) = open_in_root(root, rel) {
        let _ = f.by_ref().take(4 << 20).read_to_string(&mut s);
    }
    s
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

fn parse_passwd(s: &str) -> Vec<PasswdEntry> {
    s.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f.get(5).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// (name, gid, members)
fn parse_group(s: &str) -> Vec<(String, u32, Vec<String>)> {
    s.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            let members = f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .filter(|x| !x.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            Some((f[0].to_string(), f[2].parse().ok()?, members))
        })
        .collect()
}

/// Resolves a Docker-style user spec (`name`, `uid`, `name:group`, `uid:gid`, or empty for
/// root) against the image's passwd/group files.
pub fn resolve(passwd: &str, group: &str, spec: &str) -> Result<ResolvedUser> {
    let users = parse_passwd(passwd);
    let groups = parse_group(group);
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, mut gid, name, home) = if user_part.is_empty() {
        (0, 0, Some("root".to_string()), None)
    } else if let Ok(uid) = user_part.parse::<u32>() {
        match users.iter().find(|u| u.uid == uid) {
            Some(u) => (uid, u.gid, Some(u.name.clone()), Some(u.home.clone())),
            None => (uid, 0, None, None),
        }
    } else {
        let u = users.iter().find(|u| u.name == user_part).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "user {user_part:?} is not in the image's /etc/passwd"
            ))
        })?;
        (u.uid, u.gid, Some(u.name.clone()), Some(u.home.clone()))
    };
    if let Some(g) = group_part {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                groups
                    .iter()
                    .find(|(n, _, _)| n == g)
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "group {g:?} is not in the image's /etc/group"
                        ))
                    })?
                    .1
            }
        };
    }
    let mut additional_gids = Vec::new();
    if let Some(name) = &name {
        for (_, g, members) in &groups {
            if members.iter().any(|m| m == name) && *g != gid && !additional_gids.contains(g) {
                additional_gids.push(*g);
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

/// [`resolve`] against the files of the mounted rootfs.
pub fn resolve_in_rootfs(rootfs: &Path, spec: &str) -> Result<ResolvedUser> {
    resolve(
        &read_in_root(rootfs, "/etc/passwd"),
        &read_in_root(rootfs, "/etc/group"),
        spec,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nwheel:x:10:app,root\n";

    #[test]
    fn resolves_names_numbers_and_groups() {
        assert_eq!(resolve(PASSWD, GROUP, "").unwrap().uid, 0);
        let u = resolve(PASSWD, GROUP, "app").unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone()),
            (1000, 1000, vec![10])
        );
        let u = resolve(PASSWD, GROUP, "1000:nogroup").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 65534));
        let u = resolve(PASSWD, GROUP, "4242").unwrap();
        assert_eq!((u.uid, u.gid), (4242, 0));
        assert!(resolve(PASSWD, GROUP, "ghost").is_err());
        assert!(resolve(PASSWD, GROUP, "app:ghosts").is_err());
    }

    #[test]
    fn reads_stay_inside_the_root() {
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("secret"), "root:x:0:0:HOST:/:/bin/sh\n").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(host.path().join("secret"), root.path().join("etc/passwd"))
            .unwrap();
        // The absolute symlink resolves inside the root, where the target does not exist.
        assert!(open_in_root(root.path(), "/etc/passwd").unwrap().is_none());
        assert_eq!(read_in_root(root.path(), "/etc/passwd"), "");
    }
}
