//! Layer extraction into an overlayfs lower directory.
//!
//! Each layer becomes its own directory; whiteouts are converted to overlayfs's form (a 0/0
//! character device for `.wh.NAME`, `trusted.overlay.opaque=y` for `.wh..wh..opq`) so nothing is
//! ever deleted while unpacking. Every entry is confined to the layer directory: paths with `..`
//! are refused, parents are created as real directories, and an entry whose parent is a symlink
//! (a "symlink then write through it" layer) is refused, so no write can land outside the
//! snapshot whatever the tar says. The directory is private to this unpack while it runs, so the
//! checks cannot race with another writer.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ImageError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const FILE_BUFFER: usize = 1 << 20;

/// Reader that hashes what passes through it (the layer's uncompressed digest, its diff id).
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A zstd stream of one or more frames (the format allows concatenation, and some tools
/// write one frame per chunk), decoded by the pure-Rust `ruzstd`.
struct ZstdFrames<R: io::BufRead> {
    decoder: Option<ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>>,
}

impl<R: io::BufRead> ZstdFrames<R> {
    fn new(source: R) -> io::Result<Self> {
        let decoder = ruzstd::decoding::StreamingDecoder::new(source)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        Ok(ZstdFrames {
            decoder: Some(decoder),
        })
    }
}

impl<R: io::BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(d) = self.decoder.as_mut() else {
                return Ok(0);
            };
            let n = d.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // End of a frame: another may follow.
            let mut source = self.decoder.take().expect("decoder").into_inner();
            if source.fill_buf()?.is_empty() {
                return Ok(0);
            }
            self.decoder = Some(
                ruzstd::decoding::StreamingDecoder::new(source)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?,
            );
        }
    }
}

/// Unpacks the (gzip, zstd or plain) tar at `blob` into the empty directory `dest` and
/// returns the `sha256:` digest of the uncompressed tar stream.
pub fn unpack_layer(blob: &Path, dest: &Path) -> Result<String, ImageError> {
    let file =
        fs::File::open(blob).map_err(|e| ImageError::io(format!("open {}", blob.display()), e))?;
    unpack_stream(file, &blob.display().to_string(), dest)
}

/// [`unpack_layer`] from any reader (a file, or a download as it arrives); `what` names it
/// in errors.
pub fn unpack_stream(src: impl Read, what: &str, dest: &Path) -> Result<String, ImageError> {
    let blob = Path::new(what);
    let mut buffered = io::BufReader::with_capacity(256 << 10, src);
    let magic = {
        use std::io::BufRead;
        let head = buffered
            .fill_buf()
            .map_err(|e| ImageError::io(format!("read {}", blob.display()), e))?;
        head.get(..4).map(<[u8]>::to_vec).unwrap_or_default()
    };
    let decompressed: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            ZstdFrames::new(buffered)
                .map_err(|e| ImageError::BadLayer(format!("zstd layer {}: {e}", blob.display())))?,
        )
    } else {
        Box::new(buffered)
    };
    let mut reader = HashingReader {
        inner: decompressed,
        hasher: Sha256::new(),
    };
    {
        let mut archive = tar::Archive::new(&mut reader);
        archive.set_preserve_ownerships(true);
        let entries = archive
            .entries()
            .map_err(|e| ImageError::BadLayer(format!("not a tar stream: {e}")))?;
        // File contents go through one buffer, written a megabyte at a time: the tar crate's
        // own unpack writes 8 KiB at a time (3x the system time for a 55 MB image here).
        let mut buf = vec![0u8; FILE_BUFFER];
        // Directory mtimes are set once everything is in place: creating a child changes its
        // parent's mtime (containerd does the same).
        let mut dirs = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| ImageError::BadLayer(format!("corrupt tar entry: {e}")))?;
            apply_entry(entry, dest, &mut buf, &mut dirs)?;
        }
        for (dir, mtime) in dirs {
            // Only what is still that directory (a later entry may have replaced it).
            if fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                set_times(&dir, mtime, false)
                    .map_err(|e| ImageError::io(format!("set mtime of {}", dir.display()), e))?;
            }
        }
    }
    // The tar end marker may be followed by padding that is part of the digested stream.
    io::copy(&mut reader, &mut io::sink())
        .map_err(|e| ImageError::BadLayer(format!("corrupt layer stream: {e}")))?;
    Ok(format!("sha256:{}", hex::encode(reader.hasher.finalize())))
}

/// Turns a tar path into a relative path with only normal components; `..` is refused.
fn clean_path(raw: &Path) -> Result<PathBuf, ImageError> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                return Err(ImageError::BadLayer(format!(
                    "entry {:?} climbs out of the layer with '..'",
                    raw
                )));
            }
            Component::Prefix(_) => unreachable!("no prefixes on unix"),
        }
    }
    Ok(out)
}

/// Makes sure every parent of `rel` under `root` is a real directory (creating missing ones),
/// never a symlink: writes through a symlink could leave the layer directory.
fn ensure_parents(root: &Path, rel: &Path) -> Result<(), ImageError> {
    let mut cur = root.to_path_buf();
    let parents: Vec<_> = rel
        .parent()
        .map(|p| p.components().collect())
        .unwrap_or_default();
    for c in parents {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => {
                return Err(ImageError::BadLayer(format!(
                    "entry {:?} passes through {:?}, which is not a directory",
                    rel,
                    cur.strip_prefix(root).unwrap_or(&cur)
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&cur)
                    .map_err(|e| ImageError::io(format!("mkdir {}", cur.display()), e))?;
            }
            Err(e) => return Err(ImageError::io(format!("stat {}", cur.display()), e)),
        }
    }
    Ok(())
}

/// Removes what is at `path` unless it is a directory and the new entry is one too.
fn clear_target(path: &Path, keep_dir: bool) -> Result<(), ImageError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => {
            if keep_dir {
                Ok(())
            } else {
                fs::remove_dir_all(path)
                    .map_err(|e| ImageError::io(format!("replace {}", path.display()), e))
            }
        }
        Ok(_) => fs::remove_file(path)
            .map_err(|e| ImageError::io(format!("replace {}", path.display()), e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ImageError::io(format!("stat {}", path.display()), e)),
    }
}

/// A modification time: seconds and nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Mtime {
    secs: i64,
    nanos: u32,
}

/// An entry's metadata: its ustar/GNU header fields, overridden by its PAX records where
/// they have them (as Go's archive/tar reads them, and so containerd and Docker): times with
/// nanoseconds, owners too large for the header's fields, xattrs, and GNU's sparse-file maps.
/// The tar crate itself applies only PAX `path`, `linkpath` and `size`.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Mtime,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    sparse: Option<PaxSparse>,
}

/// A sparse file as GNU tar stores it in the POSIX format.
struct PaxSparse {
    /// The file's real name (the header's is `…/GNUSparseFile.N/name`).
    name: Option<Vec<u8>>,
    real_size: u64,
    /// Format 1.0 keeps the map at the start of the data; 0.0 and 0.1 in the records.
    map: Option<Vec<(u64, u64)>>,
}

fn parse_number<T: std::str::FromStr>(key: &str, value: &[u8]) -> io::Result<T> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            io::Error::other(format!(
                "PAX record {key}={:?} is not a number",
                String::from_utf8_lossy(value)
            ))
        })
}

/// A PAX time (`secs[.fraction]`, maybe negative) with nanoseconds; times before the epoch
/// become the epoch, as containerd bounds them.
fn parse_pax_time(value: &[u8]) -> io::Result<Mtime> {
    let text = std::str::from_utf8(value)
        .map_err(|_| io::Error::other("PAX mtime is not text"))?
        .trim();
    let bad = || io::Error::other(format!("PAX mtime {text:?} is not a time"));
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = whole.parse().map_err(|_| bad())?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let nanos: u32 = digits.parse().map_err(|_| bad())?;
    if text.starts_with('-') {
        return Ok(Mtime { secs: 0, nanos: 0 });
    }
    Ok(Mtime { secs, nanos })
}

/// A numeric header field; one left blank (all NULs or spaces, as some writers leave the
/// fields they do not use) reads as 0, as Go's archive/tar (containerd's reader) reads it.
fn numeric(value: io::Result<u64>, raw: &[u8]) -> io::Result<u64> {
    match value {
        Ok(v) => Ok(v),
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        Err(e) => Err(e),
    }
}

impl Meta {
    fn read<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Meta> {
        let h = entry.header();
        let raw = h.as_old();
        let mtime = numeric(h.mtime(), &raw.mtime)?;
        let uid = numeric(h.uid(), &raw.uid)?;
        let gid = numeric(h.gid(), &raw.gid)?;
        let mut meta = Meta {
            mode: numeric(h.mode().map(u64::from), &raw.mode)? as u32 & 0o7777,
            uid: u32::try_from(uid).map_err(|_| io::Error::other("UID is too large"))?,
            gid: u32::try_from(gid).map_err(|_| io::Error::other("GID is too large"))?,
            mtime: Mtime {
                secs: i64::try_from(mtime).unwrap_or(i64::MAX),
                nanos: 0,
            },
            xattrs: Vec::new(),
            sparse: None,
        };
        let Some(exts) = entry.pax_extensions()? else {
            return Ok(meta);
        };
        let (mut major, mut minor, mut name, mut real_size) = (None, None, None, None);
        let mut map: Option<Vec<u64>> = None;
        for ext in exts {
            let ext = ext?;
            let (key, value) = (ext.key_bytes(), ext.value_bytes());
            if let Some(attr) = key.strip_prefix(b"SCHILY.xattr.") {
                meta.xattrs.push((attr.to_vec(), value.to_vec()));
                continue;
            }
            let Ok(key) = std::str::from_utf8(key) else {
                continue;
            };
            match key {
                "mtime" => meta.mtime = parse_pax_time(value)?,
                "uid" => {
                    meta.uid = u32::try_from(parse_number::<u64>(key, value)?)
                        .map_err(|_| io::Error::other("UID is too large"))?
                }
                "gid" => {
                    meta.gid = u32::try_from(parse_number::<u64>(key, value)?)
                        .map_err(|_| io::Error::other("GID is too large"))?
                }
                "GNU.sparse.major" => major = Some(parse_number::<u32>(key, value)?),
                "GNU.sparse.minor" => minor = Some(parse_number::<u32>(key, value)?),
                "GNU.sparse.name" => name = Some(value.to_vec()),
                "GNU.sparse.realsize" | "GNU.sparse.size" => {
                    real_size = Some(parse_number::<u64>(key, value)?)
                }
                // 0.1: the whole map in one record.
                "GNU.sparse.map" => {
                    let text = std::str::from_utf8(value)
                        .map_err(|_| io::Error::other("GNU.sparse.map is not text"))?;
                    let numbers = text
                        .split(',')
                        .filter(|n| !n.is_empty())
                        .map(|n| parse_number::<u64>(key, n.as_bytes()))
                        .collect::<io::Result<Vec<_>>>()?;
                    map = Some(numbers);
                }
                // 0.0: one record per number, in order.
                "GNU.sparse.offset" | "GNU.sparse.numbytes" => {
                    map.get_or_insert_with(Vec::new)
                        .push(parse_number::<u64>(key, value)?);
                }
                _ => {}
            }
        }
        if let Some(real_size) = real_size {
            let map = match (major, minor, map) {
                (Some(1), Some(0), _) => None,
                (_, _, Some(numbers)) if numbers.len() % 2 == 0 => {
                    Some(numbers.chunks(2).map(|c| (c[0], c[1])).collect())
                }
                (major, minor, _) => {
                    return Err(io::Error::other(format!(
                        "sparse file of an unknown GNU format {major:?}.{minor:?}"
                    )));
                }
            };
            meta.sparse = Some(PaxSparse {
                name,
                real_size,
                map,
            });
        }
        Ok(meta)
    }
}

fn c_path(path: &Path) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::other(format!("path {path:?} has a NUL byte")))
}

/// Sets a path's atime and mtime to `mtime` (of the symlink itself with `nofollow`).
fn set_times(path: &Path, mtime: Mtime, nofollow: bool) -> io::Result<()> {
    let c = c_path(path)?;
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(mtime.secs).unwrap_or(libc::time_t::MAX),
        tv_nsec: mtime.nanos.into(),
    };
    let times = [ts; 2];
    let flags = if nofollow {
        libc::AT_SYMLINK_NOFOLLOW
    } else {
        0
    };
    // SAFETY: `c` is a NUL-terminated path and `times` two valid timespecs; utimensat reads
    // them only during the call.
    if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the entry's xattrs on `path` (the symlink itself, never its target). A filesystem
/// without xattrs (ENOTSUP) skips them, as containerd does.
fn set_xattrs(path: &Path, xattrs: &[(Vec<u8>, Vec<u8>)]) -> io::Result<()> {
    if xattrs.is_empty() {
        return Ok(());
    }
    let c = c_path(path)?;
    for (name, value) in xattrs {
        let c_name = std::ffi::CString::new(name.as_slice())
            .map_err(|_| io::Error::other("xattr name with a NUL byte"))?;
        // SAFETY: NUL-terminated path and name, `value` a live slice of the given length;
        // lsetxattr does not retain them.
        let rc = unsafe {
            libc::lsetxattr(
                c.as_ptr(),
                c_name.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
                tracing::warn!(path = %path.display(), xattr = %String::from_utf8_lossy(name), "xattr not supported here; skipped");
                continue;
            }
            return Err(io::Error::new(
                e.kind(),
                format!("set xattr {}: {e}", String::from_utf8_lossy(name)),
            ));
        }
    }
    Ok(())
}

fn apply_entry<R: Read>(
    mut entry: tar::Entry<'_, R>,
    root: &Path,
    buf: &mut [u8],
    dirs: &mut Vec<(PathBuf, Mtime)>,
) -> Result<(), ImageError> {
    let kind = entry.header().entry_type();
    // Records for the next entry or the whole archive (the tar crate applies most of them
    // itself): nothing to write.
    if kind.is_pax_global_extensions()
        || kind.is_pax_local_extensions()
        || kind.is_gnu_longname()
        || kind.is_gnu_longlink()
    {
        return Ok(());
    }
    let header_path = entry
        .path()
        .map_err(|e| ImageError::BadLayer(format!("bad entry path: {e}")))?
        .into_owned();
    let meta = Meta::read(&mut entry)
        .map_err(|e| ImageError::BadLayer(format!("entry {header_path:?}: {e}")))?;
    let raw = match meta.sparse.as_ref().and_then(|s| s.name.as_ref()) {
        Some(name) => PathBuf::from(OsStr::from_bytes(name)),
        None => header_path,
    };
    let rel = clean_path(&raw)?;
    if rel.as_os_str().is_empty() {
        return Ok(()); // the layer root itself
    }
    let known = matches!(
        kind,
        tar::EntryType::Regular
            | tar::EntryType::Continuous
            | tar::EntryType::GNUSparse
            | tar::EntryType::Directory
            | tar::EntryType::Symlink
            | tar::EntryType::Link
            | tar::EntryType::Char
            | tar::EntryType::Block
            | tar::EntryType::Fifo
    );
    if !known {
        tracing::warn!(entry = ?raw, kind = ?kind, "tar entry of an unknown type skipped");
        return Ok(());
    }
    ensure_parents(root, &rel)?;
    let target = root.join(&rel);
    let name = rel.file_name().unwrap_or_default();

    if name == OsStr::new(OPAQUE_MARKER) {
        let dir = target.parent().unwrap_or(root);
        return set_xattr(dir, "trusted.overlay.opaque", b"y");
    }
    if let Some(hidden) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(ImageError::BadLayer(format!("invalid whiteout {raw:?}")));
        }
        let path = target.with_file_name(OsStr::from_bytes(hidden));
        clear_target(&path, false)?;
        nix::sys::stat::mknod(
            &path,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .map_err(|e| ImageError::io(format!("whiteout {}", path.display()), e.into()))?;
        // Owned as the whiteout entry says, as containerd's overlay conversion does.
        return std::os::unix::fs::lchown(&path, Some(meta.uid), Some(meta.gid))
            .map_err(|e| ImageError::io(format!("whiteout {}", path.display()), e));
    }

    clear_target(&target, kind.is_dir())?;
    let bad = |e: io::Error| ImageError::BadLayer(format!("unpack {raw:?}: {e}"));
    match kind {
        tar::EntryType::Link => {
            let link = entry
                .link_name()
                .map_err(|e| ImageError::BadLayer(format!("bad hardlink in {raw:?}: {e}")))?
                .ok_or_else(|| ImageError::BadLayer(format!("hardlink {raw:?} has no target")))?;
            let src_rel = clean_path(&link)?;
            ensure_parents(root, &src_rel)?;
            let src = root.join(&src_rel);
            // The source must be inside this layer and not a directory (or a hardlink to a
            // symlink, which would be followed later by nobody: link() does not follow).
            match fs::symlink_metadata(&src) {
                Ok(m) if !m.is_dir() => {}
                _ => {
                    return Err(ImageError::BadLayer(format!(
                        "hardlink {raw:?} points at {link:?}, which is not a file in this layer"
                    )));
                }
            }
            // The inode keeps the metadata its first name set: a chown here would clear its
            // set-id bits and file capabilities.
            fs::hard_link(&src, &target)
                .map_err(|e| ImageError::io(format!("hardlink {}", target.display()), e))
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            let h = entry.header();
            let major = h.device_major().ok().flatten().unwrap_or(0);
            let minor = h.device_minor().ok().flatten().unwrap_or(0);
            let sflag = match kind {
                tar::EntryType::Char => nix::sys::stat::SFlag::S_IFCHR,
                tar::EntryType::Block => nix::sys::stat::SFlag::S_IFBLK,
                _ => nix::sys::stat::SFlag::S_IFIFO,
            };
            nix::sys::stat::mknod(
                &target,
                sflag,
                nix::sys::stat::Mode::from_bits_truncate(meta.mode),
                nix::sys::stat::makedev(major.into(), minor.into()),
            )
            .map_err(|e| ImageError::io(format!("mknod {}", target.display()), e.into()))?;
            finish_in_place(&target, &meta).map_err(bad)
        }
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            write_file(&mut entry, &target, &meta, kind.is_gnu_sparse(), buf).map_err(bad)
        }
        tar::EntryType::Directory => {
            if !fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&target)
                    .map_err(|e| ImageError::io(format!("mkdir {}", target.display()), e))?;
            }
            finish_in_place(&target, &meta).map_err(bad)?;
            dirs.push((target, meta.mtime));
            Ok(())
        }
        tar::EntryType::Symlink => {
            let link = entry
                .link_name()
                .map_err(|e| ImageError::BadLayer(format!("bad symlink in {raw:?}: {e}")))?
                .ok_or_else(|| ImageError::BadLayer(format!("symlink {raw:?} has no target")))?;
            std::os::unix::fs::symlink(&link, &target).map_err(bad)?;
            std::os::unix::fs::lchown(&target, Some(meta.uid), Some(meta.gid)).map_err(bad)?;
            set_xattrs(&target, &meta.xattrs).map_err(bad)?;
            set_times(&target, meta.mtime, true).map_err(bad)
        }
        _ => unreachable!("unknown kinds returned above"),
    }
}

/// Owner, then mode (chown clears set-id bits), xattrs (chown clears file capabilities) and
/// mtime of a directory or device node just made at `target` (not a symlink).
fn finish_in_place(target: &Path, meta: &Meta) -> io::Result<()> {
    std::os::unix::fs::lchown(target, Some(meta.uid), Some(meta.gid))?;
    let c = c_path(target)?;
    // SAFETY: `c` is a NUL-terminated path; fchmodat reads it only during the call. The
    // target is a directory or node this unpack made in its private directory, not a symlink.
    if unsafe { libc::fchmodat(libc::AT_FDCWD, c.as_ptr(), meta.mode, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    set_xattrs(target, &meta.xattrs)?;
    set_times(target, meta.mtime, false)
}

/// Writes a regular file's entry to `target` (which does not exist) with its metadata:
/// contents (the holes of a sparse entry left as holes), mtime, owner, mode (after the owner:
/// chown clears set-id bits), then xattrs (after the owner: chown clears file capabilities).
fn write_file<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    target: &Path,
    meta: &Meta,
    gnu_sparse: bool,
    buf: &mut [u8],
) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(target)?;
    let stored = entry.size();
    match &meta.sparse {
        None => {
            // An old-GNU sparse entry reads back expanded (holes as zeros): skip the zeros.
            let written = copy_data(entry, &mut file, stored, gnu_sparse, buf)?;
            if written != stored {
                return Err(io::Error::other(format!(
                    "{written} of {stored} bytes in the layer"
                )));
            }
            if gnu_sparse {
                file.set_len(stored)?;
            }
        }
        Some(sparse) => {
            let mut consumed = 0u64;
            let map = match &sparse.map {
                Some(m) => m.clone(),
                None => read_sparse_map(entry, &mut consumed)?,
            };
            let mut end = 0u64;
            for &(offset, len) in &map {
                let chunk_end = offset
                    .checked_add(len)
                    .filter(|e| offset >= end && *e <= sparse.real_size)
                    .ok_or_else(|| io::Error::other("sparse map out of order or past the size"))?;
                io::Seek::seek(&mut file, io::SeekFrom::Start(offset))?;
                let n = copy_data(entry, &mut file, len, true, buf)?;
                consumed += n;
                if n != len {
                    return Err(io::Error::other("sparse data shorter than its map"));
                }
                end = chunk_end;
            }
            if consumed != stored {
                return Err(io::Error::other(format!(
                    "sparse entry stores {stored} bytes, its map accounts for {consumed}"
                )));
            }
            file.set_len(sparse.real_size)?;
        }
    }
    let fd = file.as_raw_fd();
    let times = [libc::timespec {
        tv_sec: libc::time_t::try_from(meta.mtime.secs).unwrap_or(libc::time_t::MAX),
        tv_nsec: meta.mtime.nanos.into(),
    }; 2];
    // SAFETY: `fd` is the open file and `times` two valid timespecs that outlive the call.
    if unsafe { libc::futimens(fd, times.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    std::os::unix::fs::fchown(&file, Some(meta.uid), Some(meta.gid))?;
    file.set_permissions(fs::Permissions::from_mode(meta.mode))?;
    for (name, value) in &meta.xattrs {
        let name = std::ffi::CString::new(name.as_slice())
            .map_err(|_| io::Error::other("xattr name with a NUL byte"))?;
        // SAFETY: `fd` is open, `name` NUL-terminated and `value` a live slice of the
        // given length; fsetxattr does not retain them.
        let rc =
            unsafe { libc::fsetxattr(fd, name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
                continue;
            }
            return Err(io::Error::new(
                e.kind(),
                format!("set xattr {}: {e}", name.to_string_lossy()),
            ));
        }
    }
    Ok(())
}

/// Copies up to `len` bytes of the entry into `file` at its position, a buffer at a time
/// (the decompressor hands out less per read); with `holes`, all-zero blocks are skipped
/// over instead of written. Returns the bytes consumed.
fn copy_data<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    file: &mut fs::File,
    len: u64,
    holes: bool,
    buf: &mut [u8],
) -> io::Result<u64> {
    let mut done = 0u64;
    while done < len {
        let want = buf
            .len()
            .min(usize::try_from(len - done).unwrap_or(usize::MAX));
        let mut filled = 0;
        while filled < want {
            match entry.read(&mut buf[filled..want]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            break;
        }
        if holes {
            for block in buf[..filled].chunks(4096) {
                if block.iter().all(|b| *b == 0) {
                    io::Seek::seek(file, io::SeekFrom::Current(block.len() as i64))?;
                } else {
                    io::Write::write_all(file, block)?;
                }
            }
        } else {
            io::Write::write_all(file, &buf[..filled])?;
        }
        done += filled as u64;
    }
    Ok(done)
}

/// The map at the start of a GNU 1.0 sparse entry's data: the number of chunks, then each
/// chunk's offset and size, one decimal per line, padded to a 512-byte block.
fn read_sparse_map<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    consumed: &mut u64,
) -> io::Result<Vec<(u64, u64)>> {
    let mut line = || -> io::Result<u64> {
        let mut digits = Vec::new();
        loop {
            let mut byte = [0u8];
            entry.read_exact(&mut byte)?;
            *consumed += 1;
            if byte[0] == b'\n' {
                break;
            }
            if digits.len() > 20 {
                return Err(io::Error::other("sparse map number too long"));
            }
            digits.push(byte[0]);
        }
        parse_number("sparse map", &digits)
    };
    let count = line()?;
    if count > 1 << 20 {
        return Err(io::Error::other(format!("sparse map of {count} chunks")));
    }
    let mut map = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let offset = line()?;
        let len = line()?;
        map.push((offset, len));
    }
    let pad = (512 - *consumed % 512) % 512;
    io::copy(&mut entry.by_ref().take(pad), &mut io::sink())?;
    *consumed += pad;
    Ok(map)
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<(), ImageError> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| ImageError::BadLayer(format!("path {path:?} has a NUL byte")))?;
    let c_name = std::ffi::CString::new(name).expect("static xattr name");
    // SAFETY: both pointers are valid NUL-terminated strings and `value` is a live slice of the
    // given length; lsetxattr does not retain them.
    let rc = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(ImageError::io(
            format!("set {name} on {}", path.display()),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Bytes and inodes used under `dir` (no symlink following), for image sizes and fs usage.
pub fn disk_usage(dir: &Path) -> (u64, u64) {
    let mut bytes = 0;
    let mut inodes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            inodes += 1;
            bytes += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (bytes, inodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> tempfile::NamedTempFile {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        let data = b.into_inner().unwrap();
        let f = tempfile::NamedTempFile::new().unwrap();
        fs::write(f.path(), data).unwrap();
        f
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, body: &[u8]) {
        owned_file(b, path, body, 0o644, (0, 0), 0);
    }

    fn owned_file(
        b: &mut tar::Builder<Vec<u8>>,
        path: &str,
        body: &[u8],
        mode: u32,
        (uid, gid): (u64, u64),
        mtime: u64,
    ) {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, body).unwrap();
    }

    fn raw_name_entry(
        b: &mut tar::Builder<Vec<u8>>,
        name: &[u8],
        kind: tar::EntryType,
        link: Option<&str>,
        body: &[u8],
    ) {
        // Writes the name bytes directly so '..' and absolute names reach the unpacker unchanged.
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(kind);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        h.set_cksum();
        b.append(&h, body).unwrap();
    }

    #[test]
    fn files_whiteouts_and_opaque_dirs() {
        let l = layer(|b| {
            file(b, "etc/passwd", b"root:x:0:0::/root:/bin/sh\n");
            file(b, "a/.wh.gone", b"");
            file(b, "d/.wh..wh..opq", b"");
        });
        let dest = tempfile::tempdir().unwrap();
        let digest = unpack_layer(l.path(), dest.path()).unwrap();
        assert!(digest.starts_with("sha256:"));
        assert_eq!(
            fs::read(dest.path().join("etc/passwd")).unwrap(),
            b"root:x:0:0::/root:/bin/sh\n"
        );
        let wh = fs::symlink_metadata(dest.path().join("a/gone")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(
            &wh.file_type()
        ));
        assert_eq!(wh.rdev(), 0);
        assert!(!dest.path().join("a/.wh.gone").exists());
    }

    #[test]
    fn blank_numeric_fields_read_as_zero() {
        let l = layer(|b| {
            // uid, gid and mtime never set: their bytes stay NUL, as some writers leave them.
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(2);
            b.append_data(&mut h, "blank", b"ok".as_slice()).unwrap();
        });
        let dest = tempfile::tempdir().unwrap();
        unpack_layer(l.path(), dest.path()).unwrap();
        let m = fs::metadata(dest.path().join("blank")).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mtime()), (0, 0, 0));
        assert_eq!(fs::read(dest.path().join("blank")).unwrap(), b"ok");
    }

    #[test]
    fn files_keep_contents_owner_mode_mtime_and_xattrs() {
        // Larger than the write buffer and not a multiple of it.
        let big: Vec<u8> = (0..FILE_BUFFER * 2 + 12345)
            .map(|i| (i % 251) as u8)
            .collect();
        let l = layer(|b| {
            b.append_pax_extensions([("SCHILY.xattr.user.crust", b"kept".as_slice())])
                .unwrap();
            owned_file(b, "bin/tool", &big, 0o4750, (1234, 5678), 1_700_000_000);
            file(b, "epoch", b"");
        });
        let dest = tempfile::tempdir().unwrap();
        unpack_layer(l.path(), dest.path()).unwrap();
        let p = dest.path().join("bin/tool");
        assert_eq!(fs::read(&p).unwrap(), big);
        let m = fs::metadata(&p).unwrap();
        assert_eq!((m.uid(), m.gid()), (1234, 5678));
        assert_eq!(m.mode() & 0o7777, 0o4750, "set-uid survives the chown");
        assert_eq!(m.mtime(), 1_700_000_000);
        // user.* xattrs need a filesystem that has them (tmpfs before 6.6 has not).
        let mut value = [0u8; 16];
        let c_path = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: NUL-terminated strings and a live buffer of the given length.
        let n = unsafe {
            libc::getxattr(
                c_path.as_ptr(),
                c"user.crust".as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if n >= 0 {
            assert_eq!(&value[..n as usize], b"kept");
        } else {
            assert_eq!(
                io::Error::last_os_error().raw_os_error(),
                Some(libc::EOPNOTSUPP)
            );
        }
        // An mtime of 0 stays 0 (the tar crate's own unpack makes it 1; containerd keeps it).
        let epoch = fs::metadata(dest.path().join("epoch")).unwrap();
        assert_eq!(epoch.mtime(), 0);
    }

    /// Directories get their mtimes after their children are in, and their xattrs; PAX
    /// records override the header's mtime (with nanoseconds) and owners; device nodes and
    /// fifos get their mode (no umask), owner and mtime; symlinks their own owner and mtime.
    #[test]
    fn metadata_of_every_entry_kind_and_pax_records() {
        let l = layer(|b| {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o2750);
            h.set_uid(7);
            h.set_gid(8);
            h.set_mtime(1_000_000_000);
            h.set_size(0);
            b.append_pax_extensions([
                ("SCHILY.xattr.user.dir", b"yes".as_slice()),
                ("mtime", b"1000000000.5".as_slice()),
            ])
            .unwrap();
            b.append_data(&mut h, "d/", io::empty()).unwrap();
            b.append_pax_extensions([
                ("uid", b"4000000".as_slice()),
                ("gid", b"4000001".as_slice()),
                ("mtime", b"1700000000.987654321".as_slice()),
            ])
            .unwrap();
            owned_file(b, "d/f", b"x", 0o640, (0, 0), 5);
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Fifo);
            h.set_mode(0o666);
            h.set_uid(3);
            h.set_gid(4);
            h.set_mtime(1_111_111_111);
            h.set_size(0);
            b.append_data(&mut h, "d/fifo", io::empty()).unwrap();
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_uid(9);
            h.set_gid(10);
            h.set_mtime(1_222_222_222);
            h.set_size(0);
            b.append_link(&mut h, "d/sym", "f").unwrap();
        });
        let dest = tempfile::tempdir().unwrap();
        unpack_layer(l.path(), dest.path()).unwrap();
        let d = fs::metadata(dest.path().join("d")).unwrap();
        assert_eq!((d.mtime(), d.mtime_nsec()), (1_000_000_000, 500_000_000));
        assert_eq!((d.mode() & 0o7777, d.uid(), d.gid()), (0o2750, 7, 8));
        let f = fs::metadata(dest.path().join("d/f")).unwrap();
        assert_eq!((f.uid(), f.gid()), (4_000_000, 4_000_001));
        assert_eq!((f.mtime(), f.mtime_nsec()), (1_700_000_000, 987_654_321));
        let fifo = fs::symlink_metadata(dest.path().join("d/fifo")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&fifo.file_type()));
        assert_eq!(fifo.mode() & 0o7777, 0o666, "no umask on the node's mode");
        assert_eq!(
            (fifo.uid(), fifo.gid(), fifo.mtime()),
            (3, 4, 1_111_111_111)
        );
        let sym = fs::symlink_metadata(dest.path().join("d/sym")).unwrap();
        assert_eq!((sym.uid(), sym.gid(), sym.mtime()), (9, 10, 1_222_222_222));
        let mut value = [0u8; 8];
        let c_path = std::ffi::CString::new(dest.path().join("d").as_os_str().as_bytes()).unwrap();
        // SAFETY: NUL-terminated strings and a live buffer of the given length.
        let n = unsafe {
            libc::getxattr(
                c_path.as_ptr(),
                c"user.dir".as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if n >= 0 {
            assert_eq!(&value[..n as usize], b"yes");
        }
    }

    /// Sparse files as GNU tar writes them (PAX formats 0.0, 0.1 and 1.0, and the old GNU
    /// 'S' entries): the right contents and size, with the holes left unallocated.
    #[test]
    fn sparse_files_of_every_gnu_format() {
        let src = tempfile::tempdir().unwrap();
        let file = src.path().join("sparse");
        {
            let mut f = fs::File::create(&file).unwrap();
            io::Write::write_all(&mut f, b"head").unwrap();
            io::Seek::seek(&mut f, io::SeekFrom::Start(8 << 20)).unwrap();
            io::Write::write_all(&mut f, b"middle").unwrap();
            f.set_len(16 << 20).unwrap();
        }
        let expected = fs::read(&file).unwrap();
        for args in [
            &["--format=posix", "--sparse-version=0.0"][..],
            &["--format=posix", "--sparse-version=0.1"],
            &["--format=posix", "--sparse-version=1.0"],
            &["--format=gnu"],
        ] {
            let tar = src.path().join("layer.tar");
            let st = std::process::Command::new("tar")
                .args(args)
                .args(["--sparse", "-C"])
                .arg(src.path())
                .arg("-cf")
                .arg(&tar)
                .arg("sparse")
                .status()
                .expect("GNU tar");
            assert!(st.success(), "{args:?}");
            let dest = tempfile::tempdir().unwrap();
            unpack_layer(&tar, dest.path()).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let out = dest.path().join("sparse");
            assert!(fs::read(&out).unwrap() == expected, "{args:?}: contents");
            let m = fs::metadata(&out).unwrap();
            assert!(m.blocks() < 64, "{args:?}: {} blocks allocated", m.blocks());
            assert_eq!(fs::read_dir(dest.path()).unwrap().count(), 1, "{args:?}");
        }
    }

    #[test]
    fn digest_is_of_the_uncompressed_stream() {
        let l = layer(|b| file(b, "x", b"hello"));
        let expected = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(fs::read(l.path()).unwrap()))
        );
        // gzip it and check the digest is still the tar's.
        let gz = tempfile::NamedTempFile::new().unwrap();
        let mut enc = flate2::write::GzEncoder::new(
            fs::File::create(gz.path()).unwrap(),
            flate2::Compression::fast(),
        );
        io::copy(&mut fs::File::open(l.path()).unwrap(), &mut enc).unwrap();
        enc.finish().unwrap();
        let dest = tempfile::tempdir().unwrap();
        assert_eq!(unpack_layer(gz.path(), dest.path()).unwrap(), expected);
    }

    /// zstd layers, also as several concatenated frames (compressed by the zstd CLI, an
    /// independent implementation).
    #[test]
    fn zstd_layers_of_one_or_more_frames() {
        let l = layer(|b| {
            file(b, "x", b"hello");
            file(b, "y", &[7u8; 100_000]);
        });
        let tar = fs::read(l.path()).unwrap();
        let expected = format!("sha256:{}", hex::encode(Sha256::digest(&tar)));
        let zstd = |data: &[u8]| {
            let mut child = std::process::Command::new("zstd")
                .args(["-q", "-c", "-"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("zstd is installed (scripts/setup.sh)");
            let mut stdin = child.stdin.take().unwrap();
            let data = data.to_vec();
            let writer = std::thread::spawn(move || io::Write::write_all(&mut stdin, &data));
            let out = child.wait_with_output().unwrap();
            writer.join().unwrap().unwrap();
            assert!(out.status.success());
            out.stdout
        };
        let one = tempfile::NamedTempFile::new().unwrap();
        fs::write(one.path(), zstd(&tar)).unwrap();
        let dest = tempfile::tempdir().unwrap();
        assert_eq!(unpack_layer(one.path(), dest.path()).unwrap(), expected);
        assert_eq!(fs::read(dest.path().join("x")).unwrap(), b"hello");
        let (a, b) = tar.split_at(tar.len() / 3);
        let two = tempfile::NamedTempFile::new().unwrap();
        fs::write(two.path(), [zstd(a), zstd(b)].concat()).unwrap();
        let dest = tempfile::tempdir().unwrap();
        assert_eq!(unpack_layer(two.path(), dest.path()).unwrap(), expected);
        assert_eq!(fs::read(dest.path().join("y")).unwrap().len(), 100_000);
    }

    #[test]
    fn dotdot_entries_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let dest = outside.path().join("layer");
        fs::create_dir(&dest).unwrap();
        let l = layer(|b| raw_name_entry(b, b"../escape.txt", tar::EntryType::Regular, None, b"x"));
        let err = unpack_layer(l.path(), &dest).unwrap_err();
        assert!(err.to_string().contains(".."), "{err}");
        assert!(!outside.path().join("escape.txt").exists());
    }

    #[test]
    fn writes_through_a_symlink_are_refused_and_host_files_survive() {
        let host = tempfile::tempdir().unwrap();
        let victim = host.path().join("victim.txt");
        fs::write(&victim, b"precious").unwrap();
        let host_dir = host.path().to_str().unwrap().to_string();
        for second in [".wh.victim.txt", "victim.txt", "new.txt"] {
            let l = layer(|b| {
                raw_name_entry(b, b"evil", tar::EntryType::Symlink, Some(&host_dir), b"");
                raw_name_entry(
                    b,
                    format!("evil/{second}").as_bytes(),
                    tar::EntryType::Regular,
                    None,
                    b"pwned",
                );
            });
            let dest = tempfile::tempdir().unwrap();
            let err = unpack_layer(l.path(), dest.path()).unwrap_err();
            assert!(err.to_string().contains("not a directory"), "{err}");
            assert_eq!(fs::read(&victim).unwrap(), b"precious");
            assert!(!host.path().join("new.txt").exists());
        }
    }

    #[test]
    fn hardlinks_outside_the_layer_are_refused() {
        let l =
            layer(|b| raw_name_entry(b, b"link", tar::EntryType::Link, Some("/etc/shadow"), b""));
        let dest = tempfile::tempdir().unwrap();
        assert!(unpack_layer(l.path(), dest.path()).is_err());
        let l = layer(|b| {
            raw_name_entry(
                b,
                b"link",
                tar::EntryType::Link,
                Some("../../etc/passwd"),
                b"",
            )
        });
        assert!(unpack_layer(l.path(), dest.path()).is_err());
    }

    #[test]
    fn absolute_entry_names_stay_inside() {
        let l = layer(|b| raw_name_entry(b, b"/abs.txt", tar::EntryType::Regular, None, b"x"));
        let dest = tempfile::tempdir().unwrap();
        unpack_layer(l.path(), dest.path()).unwrap();
        assert!(dest.path().join("abs.txt").exists());
    }
}
