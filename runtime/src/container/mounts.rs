//! The container's bind mounts: CRI mounts with propagation and recursive read-only, the
//! image's VOLUMEs, and the checks that keep mount targets inside the rootfs.
//!
//! Targets are resolved by libcontainer through libpathrs (`Root::resolve`, an fd walk that
//! never leaves the rootfs), which is the CVE-2021-30465 defence; crust adds the checks
//! libcontainer does not make: an image whose `/dev` is a symlink is refused
//! (CVE-2026-41579), and paths from requests and image configs are validated here.

use std::path::{Component, Path, PathBuf};

use crust_proto::cri;
use serde_json::{Value, json};

use super::security::mount_propagation_of;
use crate::error::{Error, Result};
use crate::image::oci::RunConfig;

/// What the CRI mounts add to the spec.
#[derive(Debug, Default)]
pub struct BindMounts {
    pub mounts: Vec<Value>,
    /// `linux.rootfsPropagation` (applied recursively by libcontainer), when a mount needs the
    /// rootfs to receive or send events.
    pub rootfs_propagation: Option<&'static str>,
}

impl BindMounts {
    /// A bind mount of `source` at `destination`; a later mount over a default or earlier one
    /// replaces it, as in Docker.
    fn bind(&mut self, destination: &str, source: &Path, options: Vec<String>) {
        self.mounts
            .retain(|x| x["destination"] != json!(destination));
        self.mounts.push(json!({
            "destination": destination,
            "type": "bind",
            "source": source,
            "options": options,
        }));
    }
}

/// `path` is absolute and has no `..` component; `what` names the field in the error.
pub fn validate_container_path(path: &str, what: &str) -> Result<()> {
    let p = Path::new(path);
    if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) || path.contains('\0')
    {
        return Err(Error::InvalidArgument(format!(
            "{what} {path:?} must be an absolute path without '..'"
        )));
    }
    Ok(())
}

/// Whether this kernel has mount_setattr(2) (5.12+), which recursive read-only needs.
pub fn recursive_read_only_supported() -> bool {
    // SAFETY: mount_setattr with an invalid fd and null attr only probes for the syscall; it
    // cannot change any mount.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            c"".as_ptr(),
            0,
            std::ptr::null::<u8>(),
            0,
        )
    };
    !(r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS))
}

/// The options a CRI mount's `mount_options` may add (CRI 1.36): flags of the bind mount
/// itself, nothing that changes what is mounted or its propagation.
const EXTRA_BIND_OPTIONS: &[&str] = &[
    "noexec",
    "exec",
    "nodev",
    "dev",
    "nosuid",
    "suid",
    "noatime",
    "atime",
    "nodiratime",
    "diratime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
];

/// The OCI mounts for the request's `mounts`. Image volumes (`mount.image`) are bound from
/// `image_sources`: the container path and the host directory the engine mounted the image
/// (and its `image_sub_path`) on.
pub fn cri_mounts(
    mounts: &[cri::Mount],
    image_sources: &[(String, PathBuf)],
) -> Result<BindMounts> {
    use cri::MountPropagation as P;
    let mut out = BindMounts::default();
    for m in mounts {
        validate_container_path(&m.container_path, "mount container_path")?;
        if m.image.is_some() {
            let source = image_sources
                .iter()
                .find(|(path, _)| *path == m.container_path)
                .map(|(_, source)| source)
                .ok_or_else(|| {
                    Error::Internal(format!(
                        "mount {:?}: the image volume was not prepared",
                        m.container_path
                    ))
                })?;
            let mut options = vec!["rbind".to_string(), "rprivate".into(), "ro".into()];
            options.extend(m.mount_options.iter().cloned());
            out.bind(&m.container_path, source, options);
            continue;
        }
        if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "mount {:?}: idmapped mounts need user namespaces, which crust does not support yet",
                m.container_path
            )));
        }
        if m.host_path.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "mount {:?} has no host_path",
                m.container_path
            )));
        }
        // Symlinks on the host side are resolved now; a missing host path is an error rather
        // than a directory silently created on the node.
        let host = std::fs::canonicalize(&m.host_path).map_err(|e| {
            Error::InvalidArgument(format!(
                "mount host_path {:?} cannot be used: {e}",
                m.host_path
            ))
        })?;
        let propagation = P::try_from(m.propagation).map_err(|_| {
            Error::InvalidArgument(format!(
                "mount {:?}: propagation {} is not a propagation mode",
                m.container_path, m.propagation
            ))
        })?;
        let mut options = vec!["rbind".to_string()];
        match propagation {
            P::PropagationPrivate => options.push("rprivate".into()),
            P::PropagationHostToContainer => {
                require_propagation(&host, &["shared", "slave"], &m.host_path)?;
                options.push("rslave".into());
                if out.rootfs_propagation.is_none() {
                    out.rootfs_propagation = Some("slave");
                }
            }
            P::PropagationBidirectional => {
                require_propagation(&host, &["shared"], &m.host_path)?;
                options.push("rshared".into());
                out.rootfs_propagation = Some("shared");
            }
        }
        if m.recursive_read_only {
            if !m.readonly || propagation != P::PropagationPrivate {
                return Err(Error::InvalidArgument(format!(
                    "mount {:?}: recursive_read_only needs readonly and private propagation",
                    m.container_path
                )));
            }
            if !recursive_read_only_supported() {
                return Err(Error::FailedPrecondition(format!(
                    "mount {:?}: recursive read-only mounts need Linux 5.12 or later",
                    m.container_path
                )));
            }
            options.push("rro".into());
        }
        if m.readonly {
            options.push("ro".into());
        }
        for o in &m.mount_options {
            if !EXTRA_BIND_OPTIONS.contains(&o.as_str()) {
                return Err(Error::InvalidArgument(format!(
                    "mount {:?}: mount option {o:?} is not one of {}",
                    m.container_path,
                    EXTRA_BIND_OPTIONS.join(", ")
                )));
            }
            options.push(o.clone());
        }
        out.bind(&m.container_path, &host, options);
    }
    Ok(out)
}

fn require_propagation(host: &Path, allowed: &[&str], given: &str) -> Result<()> {
    match mount_propagation_of(host) {
        Some((_, p)) if allowed.contains(&p.as_str()) => Ok(()),
        Some((mount_point, p)) => Err(Error::FailedPrecondition(format!(
            "mount host_path {given:?} is on mount {} which is {p}; the requested propagation needs a {} mount",
            mount_point.display(),
            allowed.join(" or ")
        ))),
        None => Err(Error::FailedPrecondition(format!(
            "mount host_path {given:?}: its mount is not in /proc/self/mountinfo"
        ))),
    }
}

/// One empty, writable directory under `volumes_dir` for each image VOLUME that no CRI mount
/// covers. Paths are cleaned (the config comes from whoever built the image).
pub fn image_volumes(
    image: &RunConfig,
    volumes_dir: &Path,
    taken: &[String],
) -> Result<Vec<Value>> {
    let mut paths: Vec<&String> = image.volumes.keys().collect();
    paths.sort();
    let mut out = Vec::new();
    for (i, path) in paths.into_iter().enumerate() {
        validate_container_path(path, "image VOLUME")?;
        let clean = clean_path(path);
        if taken.iter().any(|t| clean_path(t) == clean) {
            continue;
        }
        let dir = volumes_dir.join(i.to_string());
        crate::fsutil::ensure_private_dir(&dir)
            .map_err(|e| Error::Internal(format!("create volume dir {}: {e}", dir.display())))?;
        // The volume belongs to whoever runs in the container, as a fresh Docker volume does.
        let _ = std::fs::set_permissions(
            &dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o777 | 0o1000),
        );
        out.push(json!({
            "destination": clean.display().to_string(),
            "type": "bind",
            "source": dir,
            "options": ["rbind", "rprivate"],
        }));
    }
    Ok(out)
}

fn clean_path(p: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in Path::new(p).components() {
        if let Component::Normal(n) = c {
            out.push(n);
        }
    }
    out
}

/// Refuses a rootfs whose `/dev` is a symlink: the runtime creates device nodes and mounts
/// under /dev before the container runs, and through such a link they land on the host
/// (CVE-2026-41579).
pub fn check_dev_is_not_a_symlink(rootfs: &Path) -> Result<()> {
    match std::fs::symlink_metadata(rootfs.join("dev")) {
        Ok(m) if m.file_type().is_symlink() => Err(Error::FailedPrecondition(
            "the image's /dev is a symlink; crust refuses it (CVE-2026-41579)".into(),
        )),
        Ok(m) if !m.is_dir() => Err(Error::FailedPrecondition(
            "the image's /dev is not a directory".into(),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(ctr: &str, host: &str) -> cri::Mount {
        cri::Mount {
            container_path: ctr.into(),
            host_path: host.into(),
            ..Default::default()
        }
    }

    #[test]
    fn bind_options_follow_the_request() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().display().to_string();
        let mut ro = mount("/data", &host);
        ro.readonly = true;
        let b = cri_mounts(&[ro.clone()], &[]).unwrap();
        assert_eq!(b.mounts[0]["options"], json!(["rbind", "rprivate", "ro"]));
        assert_eq!(b.rootfs_propagation, None);
        ro.recursive_read_only = true;
        if recursive_read_only_supported() {
            let b = cri_mounts(&[ro.clone()], &[]).unwrap();
            assert_eq!(
                b.mounts[0]["options"],
                json!(["rbind", "rprivate", "rro", "ro"])
            );
        }
        ro.readonly = false;
        assert!(matches!(
            cri_mounts(&[ro], &[]),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn bad_mounts_are_refused_with_the_field() {
        for (ctr, host) in [
            ("rel", "/tmp"),
            ("/a/../b", "/tmp"),
            ("/x", "/no/such/host/path"),
        ] {
            let e = cri_mounts(&[mount(ctr, host)], &[]).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{ctr} {host}: {e}");
        }
        let mut m = mount("/x", "/tmp");
        m.propagation = 7;
        assert!(cri_mounts(&[m], &[]).is_err());
    }

    #[test]
    fn volumes_skip_paths_a_mount_covers_and_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let mut image = RunConfig::default();
        image.volumes.insert("/data/".into(), json!({}));
        image.volumes.insert("/cache".into(), json!({}));
        let v = image_volumes(&image, dir.path(), &["/cache".into()]).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0]["destination"], "/data");
        image.volumes.insert("../etc".into(), json!({}));
        assert!(image_volumes(&image, dir.path(), &[]).is_err());
    }

    #[test]
    fn dev_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/tmp", dir.path().join("dev")).unwrap();
        assert!(matches!(
            check_dev_is_not_a_symlink(dir.path()),
            Err(Error::FailedPrecondition(_))
        ));
        let ok = tempfile::tempdir().unwrap();
        std::fs::create_dir(ok.path().join("dev")).unwrap();
        check_dev_is_not_a_symlink(ok.path()).unwrap();
    }
}
