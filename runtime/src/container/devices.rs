//! Devices: the CRI `devices` list, every host device for privileged containers, and CDI
//! devices (`cdi_devices`) from Container Device Interface spec files.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crust_proto::cri;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// Devices and device-cgroup rules to add to the spec.
#[derive(Debug, Default)]
pub struct DeviceEdits {
    /// OCI `linux.devices` entries.
    pub nodes: Vec<Value>,
    /// OCI `linux.resources.devices` allow rules.
    pub rules: Vec<Value>,
    /// `KEY=VALUE` pairs from CDI specs.
    pub env: Vec<String>,
    /// OCI mounts from CDI specs.
    pub mounts: Vec<Value>,
}

fn dev_major(dev: u64) -> u64 {
    ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)
}

fn dev_minor(dev: u64) -> u64 {
    (dev & 0xff) | ((dev >> 12) & !0xff)
}

fn validate_permissions(p: &str, what: &str) -> Result<String> {
    if p.is_empty() {
        return Ok("rwm".into());
    }
    if p.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        Ok(p.to_string())
    } else {
        Err(Error::InvalidArgument(format!(
            "{what}: permissions {p:?} may only contain r, w and m"
        )))
    }
}

fn validate_container_path(p: &str, what: &str) -> Result<()> {
    if !p.starts_with("/dev/") || p.split('/').any(|c| c == "..") {
        return Err(Error::InvalidArgument(format!(
            "{what}: container path {p:?} must be under /dev without '..'"
        )));
    }
    Ok(())
}

impl DeviceEdits {
    /// Adds the device at `host` (following symlinks) as `container_path`; a directory adds
    /// every device below it. Returns how many devices were added.
    fn add_host(&mut self, host: &Path, container_path: &str, permissions: &str) -> Result<usize> {
        let meta = std::fs::metadata(host)
            .map_err(|e| Error::InvalidArgument(format!("device {}: {e}", host.display())))?;
        if meta.is_dir() {
            let mut added = 0;
            let entries = std::fs::read_dir(host).map_err(|e| {
                Error::InvalidArgument(format!("device directory {}: {e}", host.display()))
            })?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                let ft = entry.file_type().ok();
                if ft.is_some_and(|t| t.is_symlink()) {
                    continue;
                }
                added += self.add_host(
                    &entry.path(),
                    &format!("{}/{name}", container_path.trim_end_matches('/')),
                    permissions,
                )?;
            }
            return Ok(added);
        }
        let kind = if meta.file_type().is_char_device() {
            "c"
        } else if meta.file_type().is_block_device() {
            "b"
        } else {
            return Err(Error::InvalidArgument(format!(
                "{} is not a device",
                host.display()
            )));
        };
        self.push(
            container_path,
            kind,
            dev_major(meta.rdev()),
            dev_minor(meta.rdev()),
            meta.mode() & 0o7777,
            (meta.uid(), meta.gid()),
            permissions,
        );
        Ok(1)
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        path: &str,
        kind: &str,
        major: u64,
        minor: u64,
        mode: u32,
        (uid, gid): (u32, u32),
        permissions: &str,
    ) {
        self.nodes.retain(|n| n["path"] != json!(path));
        self.nodes.push(json!({
            "path": path, "type": kind, "major": major, "minor": minor,
            "fileMode": mode, "uid": uid, "gid": gid,
        }));
        self.rules.push(json!({
            "allow": true, "type": kind, "major": major, "minor": minor, "access": permissions,
        }));
    }
}

/// The CRI `devices` list.
pub fn cri_devices(devices: &[cri::Device], edits: &mut DeviceEdits) -> Result<()> {
    for d in devices {
        let what = format!("device {:?}", d.host_path);
        if !d.host_path.starts_with('/') {
            return Err(Error::InvalidArgument(format!(
                "{what}: host path must be absolute"
            )));
        }
        let container_path = if d.container_path.is_empty() {
            d.host_path.as_str()
        } else {
            d.container_path.as_str()
        };
        validate_container_path(container_path, &what)?;
        let perms = validate_permissions(&d.permissions, &what)?;
        edits.add_host(Path::new(&d.host_path), container_path, &perms)?;
    }
    Ok(())
}

/// Every device under the host's /dev, for a privileged container (as containerd: not the
/// per-container pseudo filesystems, the console or ptmx, which the runtime sets up itself).
pub fn host_devices(edits: &mut DeviceEdits) {
    fn walk(dir: &Path, edits: &mut DeviceEdits) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                if !matches!(
                    name.as_str(),
                    "pts" | "shm" | "mqueue" | "fd" | ".udev" | ".lxc"
                ) {
                    walk(&path, edits);
                }
            } else if (ft.is_char_device() || ft.is_block_device())
                && !matches!(name.as_str(), "console" | "ptmx")
            {
                let _ = edits.add_host(&path, &path.display().to_string(), "rwm");
            }
        }
    }
    walk(Path::new("/dev"), edits);
}

/// A CDI spec file (the subset of the CDI 0.x schema crust applies).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CdiSpec {
    kind: String,
    #[serde(default)]
    devices: Vec<CdiDevice>,
    #[serde(default)]
    container_edits: CdiEdits,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CdiDevice {
    name: String,
    #[serde(default)]
    container_edits: CdiEdits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CdiEdits {
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    device_nodes: Vec<CdiDeviceNode>,
    #[serde(default)]
    mounts: Vec<CdiMount>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CdiDeviceNode {
    path: String,
    #[serde(default)]
    host_path: Option<String>,
    #[serde(default)]
    permissions: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CdiMount {
    host_path: String,
    container_path: String,
    #[serde(default)]
    options: Vec<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// Every spec in `dirs`, and for each fully qualified device name the spec that defines it
/// (a later directory overrides an earlier one, as in the CDI reference implementation).
/// Files that do not parse are skipped with a warning.
fn load_cdi_specs(dirs: &[PathBuf]) -> (Vec<(PathBuf, CdiSpec)>, HashMap<String, usize>) {
    let mut specs = Vec::new();
    let mut by_name = HashMap::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let parsed: std::result::Result<CdiSpec, String> = match ext {
                "json" => serde_json::from_str(&text).map_err(|e| e.to_string()),
                "yaml" | "yml" => serde_yaml::from_str(&text).map_err(|e| e.to_string()),
                _ => continue,
            };
            match parsed {
                Ok(spec) => {
                    for d in &spec.devices {
                        by_name.insert(format!("{}={}", spec.kind, d.name), specs.len());
                    }
                    specs.push((path, spec));
                }
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "skipping CDI spec"),
            }
        }
    }
    (specs, by_name)
}

fn apply_cdi_edits(e: &CdiEdits, source: &Path, edits: &mut DeviceEdits) -> Result<()> {
    let what = format!("CDI spec {}", source.display());
    edits.env.extend(e.env.iter().cloned());
    for n in &e.device_nodes {
        validate_container_path(&n.path, &what)?;
        let perms = validate_permissions(n.permissions.as_deref().unwrap_or(""), &what)?;
        let host = n.host_path.as_deref().unwrap_or(&n.path);
        edits.add_host(Path::new(host), &n.path, &perms)?;
    }
    for m in &e.mounts {
        if !m.container_path.starts_with('/') || !m.host_path.starts_with('/') {
            return Err(Error::InvalidArgument(format!(
                "{what}: mount {:?} -> {:?} needs absolute paths",
                m.host_path, m.container_path
            )));
        }
        edits.mounts.push(json!({
            "destination": m.container_path,
            "source": m.host_path,
            "type": m.kind.clone().unwrap_or_else(|| "bind".into()),
            "options": if m.options.is_empty() { vec!["rbind".to_string(), "rprivate".to_string()] } else { m.options.clone() },
        }));
    }
    Ok(())
}

/// The CRI `cdi_devices` (fully qualified `vendor.com/class=name`) resolved against the specs
/// in `dirs`; an unknown device is an error naming it.
pub fn cdi_devices(
    names: &[cri::CdiDevice],
    dirs: &[PathBuf],
    edits: &mut DeviceEdits,
) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let (specs, by_name) = load_cdi_specs(dirs);
    let mut applied_spec_edits: Vec<usize> = Vec::new();
    for d in names {
        let (kind, dev) = d.name.split_once('=').ok_or_else(|| {
            Error::InvalidArgument(format!(
                "CDI device {:?} is not a fully qualified name (vendor.com/class=name)",
                d.name
            ))
        })?;
        if !kind.contains('/') || dev.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "CDI device {:?} is not a fully qualified name (vendor.com/class=name)",
                d.name
            )));
        }
        let index = *by_name.get(&d.name).ok_or_else(|| {
            Error::NotFound(format!(
                "CDI device {:?} is not in any spec under {}",
                d.name,
                dirs.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let (path, spec) = &specs[index];
        if !applied_spec_edits.contains(&index) {
            apply_cdi_edits(&spec.container_edits, path, edits)?;
            applied_spec_edits.push(index);
        }
        let device = spec
            .devices
            .iter()
            .find(|x| x.name == dev)
            .expect("indexed device is in its spec");
        apply_cdi_edits(&device.container_edits, path, edits)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_device_from_host_node() {
        let mut e = DeviceEdits::default();
        cri_devices(
            &[cri::Device {
                container_path: "/dev/xnull".into(),
                host_path: "/dev/null".into(),
                permissions: "r".into(),
            }],
            &mut e,
        )
        .unwrap();
        assert_eq!(e.nodes[0]["path"], "/dev/xnull");
        assert_eq!(
            (e.nodes[0]["major"].as_u64(), e.nodes[0]["minor"].as_u64()),
            (Some(1), Some(3))
        );
        assert_eq!(e.rules[0]["access"], "r");
        for (host, ctr, perms) in [
            ("/dev/null", "/etc/x", "r"),
            ("/dev/null", "/dev/x", "rx"),
            ("/no/such/dev", "/dev/x", "r"),
            ("/etc/hostname", "/dev/x", "r"),
        ] {
            let r = cri_devices(
                &[cri::Device {
                    container_path: ctr.into(),
                    host_path: host.into(),
                    permissions: perms.into(),
                }],
                &mut DeviceEdits::default(),
            );
            assert!(
                matches!(r, Err(Error::InvalidArgument(_))),
                "{host} {ctr} {perms}: {r:?}"
            );
        }
    }

    #[test]
    fn cdi_yaml_and_json_specs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("vendor.yaml"),
            "cdiVersion: 0.6.0\nkind: example.com/dev\ncontainerEdits:\n  env: [SPEC=1]\ndevices:\n- name: one\n  containerEdits:\n    env: [ONE=1]\n    deviceNodes:\n    - path: /dev/example-null\n      hostPath: /dev/null\n      permissions: rw\n    mounts:\n    - hostPath: /etc/hostname\n      containerPath: /etc/example\n      options: [ro, bind]\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("other.json"),
            r#"{"cdiVersion":"0.6.0","kind":"example.com/other","devices":[{"name":"two","containerEdits":{"env":["TWO=2"]}}]}"#,
        )
        .unwrap();
        let mut e = DeviceEdits::default();
        let dirs = [dir.path().to_path_buf()];
        cdi_devices(
            &[
                cri::CdiDevice {
                    name: "example.com/dev=one".into(),
                },
                cri::CdiDevice {
                    name: "example.com/other=two".into(),
                },
            ],
            &dirs,
            &mut e,
        )
        .unwrap();
        assert_eq!(e.env, vec!["SPEC=1", "ONE=1", "TWO=2"]);
        assert_eq!(e.nodes[0]["path"], "/dev/example-null");
        assert_eq!(e.rules[0]["access"], "rw");
        assert_eq!(e.mounts[0]["destination"], "/etc/example");
        let err = cdi_devices(
            &[cri::CdiDevice {
                name: "example.com/dev=nope".into(),
            }],
            &dirs,
            &mut e,
        )
        .unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err}");
        let err = cdi_devices(
            &[cri::CdiDevice {
                name: "nope".into(),
            }],
            &dirs,
            &mut e,
        )
        .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }
}
