//! Small filesystem helpers: private directories and crash-safe record writes.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and parents) with mode 0700, and tightens it to 0700 if it already existed.
pub fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = fs::metadata(dir)?;
    if meta.permissions().mode() & 0o777 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Writes `data` to `path` so that readers see either the old or the new content, never a mix:
/// a temp file in the same dir, fsync, rename. A crash leaves at most a stray `.tmp` file.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_via_rename(path, data, true)
}

/// [`write_atomic`] without the fsync, for files nothing reads after a power loss: those in
/// the state dir (gone with the boot, by design) and those read back at once. Each fsync is
/// 0.3–1 ms on the pod-start path.
pub fn write_atomic_unsynced(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_via_rename(path, data, false)
}

fn write_via_rename(path: &Path, data: &[u8], sync: bool) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("record path has no parent"))?;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("record path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        rand::random::<u32>()
    ));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        if sync {
            f.sync_data()?;
        }
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Serialises `value` as JSON and writes it with [`write_atomic`].
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let data = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    write_atomic(path, &data)
}

/// Serialises `value` as JSON and writes it with [`write_atomic_unsynced`].
pub fn write_json_atomic_unsynced<T: serde::Serialize>(
    path: &Path,
    value: &T,
) -> std::io::Result<()> {
    let data = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    write_atomic_unsynced(path, &data)
}

/// Reads a JSON record; `Ok(None)` when the file does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match fs::read(path) {
        Ok(data) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `remove_dir_all` that treats a missing directory as done.
pub fn remove_dir_all_if_exists(dir: &Path) -> std::io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// `remove_file` that treats a missing file as done.
pub fn remove_file_if_exists(path: &Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Detaches whatever is mounted on `path` (lazily, so a busy mount cannot wedge teardown).
/// Not mounted, or missing, counts as done.
pub fn unmount_if_mounted(path: &Path) -> std::io::Result<()> {
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// True when something is mounted on `path` (its device differs from its parent's).
pub fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(me), Some(Ok(parent))) = (fs::metadata(path), path.parent().map(fs::metadata)) else {
        return false;
    };
    me.dev() != parent.dev()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rec.json");
        write_json_atomic(&p, &vec![1, 2, 3]).unwrap();
        write_json_atomic(&p, &vec![4]).unwrap();
        let got: Option<Vec<i32>> = read_json(&p).unwrap();
        assert_eq!(got, Some(vec![4]));
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn private_dir_is_0700() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b");
        ensure_private_dir(&p).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }

    #[test]
    fn missing_record_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let got: Option<u8> = read_json(&dir.path().join("nope")).unwrap();
        assert!(got.is_none());
    }
}
