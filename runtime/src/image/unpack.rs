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
        for entry in entries {
            let entry =
                entry.map_err(|e| ImageError::BadLayer(format!("corrupt tar entry: {e}")))?;
            apply_entry(entry, dest, &mut buf)?;
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

fn apply_entry<R: Read>(
    mut entry: tar::Entry<'_, R>,
    root: &Path,
    buf: &mut [u8],
) -> Result<(), ImageError> {
    let raw = entry
        .path()
        .map_err(|e| ImageError::BadLayer(format!("bad entry path: {e}")))?
        .into_owned();
    let rel = clean_path(&raw)?;
    if rel.as_os_str().is_empty() {
        return Ok(()); // the layer root itself
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
        return nix::sys::stat::mknod(
            &path,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .map_err(|e| ImageError::io(format!("whiteout {}", path.display()), e.into()));
    }

    let kind = entry.header().entry_type();
    clear_target(&target, kind.is_dir())?;
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
            fs::hard_link(&src, &target)
                .map_err(|e| ImageError::io(format!("hardlink {}", target.display()), e))
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            let h = entry.header();
            let mode = h.mode().unwrap_or(0o644);
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
                nix::sys::stat::Mode::from_bits_truncate(mode),
                nix::sys::stat::makedev(major.into(), minor.into()),
            )
            .map_err(|e| ImageError::io(format!("mknod {}", target.display()), e.into()))?;
            let uid = h.uid().unwrap_or(0) as u32;
            let gid = h.gid().unwrap_or(0) as u32;
            std::os::unix::fs::lchown(&target, Some(uid), Some(gid))
                .map_err(|e| ImageError::io(format!("chown {}", target.display()), e))
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            write_file(&mut entry, &target, buf)
                .map_err(|e| ImageError::BadLayer(format!("unpack {raw:?}: {e}")))
        }
        tar::EntryType::Directory | tar::EntryType::Symlink => {
            entry.set_preserve_permissions(true);
            entry.set_preserve_mtime(true);
            entry.set_unpack_xattrs(true);
            entry
                .unpack(&target)
                .map_err(|e| ImageError::BadLayer(format!("unpack {raw:?}: {e}")))?;
            Ok(())
        }
        // PAX/GNU metadata entries are consumed by the tar reader; anything else is skipped as
        // containerd does.
        _ => Ok(()),
    }
}

/// Writes a regular file's entry to `target` (which does not exist) with its metadata, as the
/// tar crate's unpack would with ownership, permissions, mtime and xattrs preserved: contents,
/// mtime (0 becomes 1, as there), owner, mode (after the owner: chown clears set-id bits), then
/// the PAX `SCHILY.xattr.*` attributes (after the owner: chown clears file capabilities).
fn write_file<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    target: &Path,
    buf: &mut [u8],
) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let header = entry.header();
    let (mode, uid, gid, mtime) = (
        header.mode()?,
        header.uid()?,
        header.gid()?,
        header.mtime()?,
    );
    let uid =
        u32::try_from(uid).map_err(|_| io::Error::other(format!("UID {uid} is too large")))?;
    let gid =
        u32::try_from(gid).map_err(|_| io::Error::other(format!("GID {gid} is too large")))?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(target)?;
    let expected = entry.size();
    let mut written = 0u64;
    loop {
        // Fill the buffer (the decompressor hands out less per read) before each write.
        let mut filled = 0;
        while filled < buf.len() {
            match entry.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            break;
        }
        io::Write::write_all(&mut file, &buf[..filled])?;
        written += filled as u64;
    }
    if written != expected {
        return Err(io::Error::other(format!(
            "{written} of {expected} bytes in the layer"
        )));
    }
    let fd = file.as_raw_fd();
    let secs = libc::time_t::try_from(mtime.max(1)).unwrap_or(libc::time_t::MAX);
    let times = [libc::timespec {
        tv_sec: secs,
        tv_nsec: 0,
    }; 2];
    // SAFETY: `fd` is the open file and `times` two valid timespecs that outlive the call.
    if unsafe { libc::futimens(fd, times.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
    file.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
                continue;
            };
            let name = std::ffi::CString::new(name)
                .map_err(|_| io::Error::other("xattr name with a NUL byte"))?;
            let value = ext.value_bytes();
            // SAFETY: `fd` is open, `name` NUL-terminated and `value` a live slice of the
            // given length; fsetxattr does not retain them.
            let rc = unsafe {
                libc::fsetxattr(fd, name.as_ptr(), value.as_ptr().cast(), value.len(), 0)
            };
            if rc != 0 {
                let e = io::Error::last_os_error();
                return Err(io::Error::new(
                    e.kind(),
                    format!("set xattr {}: {e}", name.to_string_lossy()),
                ));
            }
        }
    }
    Ok(())
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
        // An mtime of 0 becomes 1, as the tar crate does for the other entry kinds.
        let epoch = fs::metadata(dest.path().join("epoch")).unwrap();
        assert_eq!(epoch.mtime(), 1);
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
