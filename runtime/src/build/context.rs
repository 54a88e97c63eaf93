//! The build context: sources a COPY/ADD names (globs, `.dockerignore`, never outside the
//! context), and the tar layer that puts them at their destination.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::BuildError;

/// `*` and `?` matching within one path component set.
fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], n) || (!n.is_empty() && n[0] != '/' && go(p, &n[1..])),
            (Some('?'), Some(c)) if *c != '/' => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// The context directory with its `.dockerignore` patterns.
pub struct Context {
    pub root: PathBuf,
    ignore: Vec<(bool, String)>,
}

impl Context {
    pub fn open(root: &Path) -> Result<Self, BuildError> {
        let root = root
            .canonicalize()
            .map_err(|e| BuildError::Context(format!("{}: {e}", root.display())))?;
        let ignore = std::fs::read_to_string(root.join(".dockerignore"))
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| match l.strip_prefix('!') {
                Some(p) => (false, p.trim_matches('/').to_string()),
                None => (true, l.trim_matches('/').to_string()),
            })
            .collect();
        Ok(Context { root, ignore })
    }

    /// Whether `rel` (or a directory above it) is excluded; the last matching pattern wins.
    pub fn ignored(&self, rel: &str) -> bool {
        let mut out = false;
        for (exclude, pat) in &self.ignore {
            let mut prefix = String::new();
            for (i, comp) in rel.split('/').enumerate() {
                if i > 0 {
                    prefix.push('/');
                }
                prefix.push_str(comp);
                if glob_match(pat, &prefix) {
                    out = *exclude;
                    break;
                }
            }
        }
        out
    }

    /// The paths a source names, relative to the context: a glob in any component expands;
    /// a path leaving the context is refused.
    pub fn sources(&self, src: &str) -> Result<Vec<String>, BuildError> {
        let mut norm: Vec<String> = Vec::new();
        for c in Path::new(src).components() {
            match c {
                Component::Normal(s) => norm.push(s.to_string_lossy().into()),
                Component::ParentDir if norm.pop().is_none() => {
                    return Err(BuildError::Context(format!(
                        "{src}: forbidden path outside the build context"
                    )));
                }
                _ => {}
            }
        }
        let mut found = vec![String::new()];
        for comp in &norm {
            let mut next = Vec::new();
            for base in &found {
                let dir = self.root.join(base);
                if comp.contains(['*', '?']) {
                    let mut names: Vec<String> = std::fs::read_dir(&dir)
                        .into_iter()
                        .flatten()
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| glob_match(comp, n))
                        .collect();
                    names.sort();
                    next.extend(names.into_iter().map(|n| join(base, &n)));
                } else {
                    next.push(join(base, comp));
                }
            }
            found = next;
        }
        found.retain(|r| {
            std::fs::symlink_metadata(self.root.join(r)).is_ok()
                && (r.is_empty() || !self.ignored(r))
        });
        if found.is_empty() {
            return Err(BuildError::Context(format!(
                "{src}: no such file or directory in the build context"
            )));
        }
        Ok(found)
    }
}

fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}/{name}")
    }
}

/// Writes a layer tar and hashes it as it goes (the diff id).
pub struct LayerWriter {
    tar: tar::Builder<HashingWriter>,
    dirs_done: std::collections::HashSet<String>,
    pub owner: Option<(u64, u64)>,
}

pub struct HashingWriter {
    gz: flate2::write::GzEncoder<std::fs::File>,
    hash: Sha256,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.gz.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.gz.flush()
    }
}

impl LayerWriter {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let f = std::fs::File::create(path)?;
        let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        let mut tar = tar::Builder::new(HashingWriter {
            gz,
            hash: Sha256::new(),
        });
        tar.follow_symlinks(false);
        Ok(LayerWriter {
            tar,
            dirs_done: Default::default(),
            owner: None,
        })
    }

    fn header(
        &self,
        meta: Option<&std::fs::Metadata>,
        kind: tar::EntryType,
        mode: u32,
    ) -> tar::Header {
        use std::os::unix::fs::MetadataExt;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(meta.map_or(mode, |m| m.mode() & 0o7777));
        let (uid, gid) = self.owner.unwrap_or((0, 0));
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(meta.map_or(0, |m| m.mtime().max(0) as u64));
        h.set_size(0);
        h
    }

    /// A directory entry for `dest` and each directory above it not written yet.
    pub fn ensure_dir(&mut self, dest: &str) -> std::io::Result<()> {
        let mut p = String::new();
        for comp in dest.split('/').filter(|c| !c.is_empty()) {
            p = join(&p, comp);
            if self.dirs_done.insert(p.clone()) {
                let mut h = self.header(None, tar::EntryType::Directory, 0o755);
                self.tar
                    .append_data(&mut h, format!("{p}/"), std::io::empty())?;
            }
        }
        Ok(())
    }

    /// Adds the file, symlink or directory tree at `src` as `dest` (relative to /).
    pub fn add_path(
        &mut self,
        ctx: Option<&Context>,
        src: &Path,
        rel: &str,
        dest: &str,
    ) -> std::io::Result<()> {
        if ctx.is_some_and(|c| !rel.is_empty() && c.ignored(rel)) {
            return Ok(());
        }
        let meta = std::fs::symlink_metadata(src)?;
        let parent = Path::new(dest)
            .parent()
            .map(|p| p.to_string_lossy().into_owned());
        self.ensure_dir(parent.as_deref().unwrap_or(""))?;
        if meta.is_dir() {
            if !dest.is_empty() && self.dirs_done.insert(dest.to_string()) {
                let mut h = self.header(Some(&meta), tar::EntryType::Directory, 0o755);
                self.tar
                    .append_data(&mut h, format!("{dest}/"), std::io::empty())?;
            }
            let mut names: Vec<_> = std::fs::read_dir(src)?
                .flatten()
                .map(|e| e.file_name())
                .collect();
            names.sort();
            for n in names {
                let n = n.to_string_lossy();
                self.add_path(ctx, &src.join(&*n), &join(rel, &n), &join(dest, &n))?;
            }
        } else if meta.file_type().is_symlink() {
            let mut h = self.header(Some(&meta), tar::EntryType::Symlink, 0o777);
            self.tar
                .append_link(&mut h, dest, std::fs::read_link(src)?)?;
        } else {
            let mut h = self.header(Some(&meta), tar::EntryType::Regular, 0o644);
            h.set_size(meta.len());
            self.tar
                .append_data(&mut h, dest, std::fs::File::open(src)?)?;
        }
        Ok(())
    }

    /// Copies every entry of the (possibly compressed) tar at `src` under `dest`.
    pub fn add_tar_contents(&mut self, src: &Path, dest: &str) -> std::io::Result<()> {
        self.ensure_dir(dest)?;
        let f = std::io::BufReader::new(std::fs::File::open(src)?);
        let mut head = [0u8; 2];
        let gz = {
            use std::io::Read;
            std::fs::File::open(src)?.read(&mut head)? == 2 && head == [0x1f, 0x8b]
        };
        let reader: Box<dyn std::io::Read> = if gz {
            Box::new(flate2::read::GzDecoder::new(f))
        } else {
            Box::new(f)
        };
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = entry
                .path()?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            if path.split('/').any(|c| c == "..") {
                continue;
            }
            let mut h = entry.header().clone();
            let name = join(dest, path.trim_end_matches('/'));
            if h.entry_type().is_dir() {
                self.dirs_done.insert(name.clone());
            }
            let link = entry.link_name()?.map(|l| l.into_owned());
            match link {
                Some(l) => self.tar.append_link(&mut h, &name, l)?,
                None => self.tar.append_data(&mut h, &name, &mut entry)?,
            }
        }
        Ok(())
    }

    /// Adds what a container changed, from its overlay upper directory `upper`: files as they
    /// are (owner, mode, mtime, hard links within the layer), overlay's whiteouts (0:0 character
    /// devices) as `.wh.NAME` entries and its opaque directories with a `.wh..wh..opq` entry, as
    /// the OCI image spec writes deletions. Paths in `skip` (relative) are left out.
    pub fn add_overlay_upper(&mut self, upper: &Path, skip: &[String]) -> std::io::Result<()> {
        let mut links = std::collections::HashMap::new();
        self.add_upper_dir(upper, "", skip, &mut links)
    }

    fn add_upper_dir(
        &mut self,
        dir: &Path,
        rel: &str,
        skip: &[String],
        links: &mut std::collections::HashMap<(u64, u64), String>,
    ) -> std::io::Result<()> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let mut names: Vec<_> = std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for name in names {
            let name = name.to_string_lossy().into_owned();
            let path = dir.join(&name);
            let dest = join(rel, &name);
            if skip.contains(&dest) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path)?;
            let ft = meta.file_type();
            let mut h = tar::Header::new_gnu();
            h.set_mode(meta.mode() & 0o7777);
            h.set_uid(meta.uid() as u64);
            h.set_gid(meta.gid() as u64);
            h.set_mtime(meta.mtime().max(0) as u64);
            h.set_size(0);
            if ft.is_char_device() && meta.rdev() == 0 {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                self.tar.append_data(
                    &mut h,
                    join(rel, &format!(".wh.{name}")),
                    std::io::empty(),
                )?;
            } else if ft.is_dir() {
                h.set_entry_type(tar::EntryType::Directory);
                self.dirs_done.insert(dest.clone());
                self.tar
                    .append_data(&mut h, format!("{dest}/"), std::io::empty())?;
                if overlay_opaque(&path) {
                    let mut o = tar::Header::new_gnu();
                    o.set_entry_type(tar::EntryType::Regular);
                    o.set_mode(0o644);
                    o.set_uid(0);
                    o.set_gid(0);
                    o.set_mtime(meta.mtime().max(0) as u64);
                    o.set_size(0);
                    self.tar
                        .append_data(&mut o, join(&dest, ".wh..wh..opq"), std::io::empty())?;
                }
                self.add_upper_dir(&path, &dest, skip, links)?;
            } else if ft.is_symlink() {
                h.set_entry_type(tar::EntryType::Symlink);
                self.tar
                    .append_link(&mut h, &dest, std::fs::read_link(&path)?)?;
            } else if ft.is_file() {
                if meta.nlink() > 1 {
                    if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                        h.set_entry_type(tar::EntryType::Link);
                        self.tar.append_link(&mut h, &dest, first)?;
                        continue;
                    }
                    links.insert((meta.dev(), meta.ino()), dest.clone());
                }
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(meta.len());
                self.tar
                    .append_data(&mut h, &dest, std::fs::File::open(&path)?)?;
            } else {
                let kind = if ft.is_char_device() {
                    tar::EntryType::Char
                } else if ft.is_block_device() {
                    tar::EntryType::Block
                } else if ft.is_fifo() {
                    tar::EntryType::Fifo
                } else {
                    continue; // sockets have no tar form
                };
                h.set_entry_type(kind);
                let rdev = meta.rdev();
                h.set_device_major(libc::major(rdev))?;
                h.set_device_minor(libc::minor(rdev))?;
                self.tar.append_data(&mut h, &dest, std::io::empty())?;
            }
        }
        Ok(())
    }

    /// Ends the tar; returns the diff id (sha256 of the uncompressed tar).
    pub fn finish(self) -> std::io::Result<String> {
        let w = self.tar.into_inner()?;
        w.gz.finish()?.sync_all()?;
        Ok(format!("sha256:{}", hex::encode(w.hash.finalize())))
    }
}

/// Whether `path` looks like a tar archive ADD unpacks (by name).
pub fn is_local_tar(path: &Path) -> bool {
    let n = path.to_string_lossy();
    [".tar", ".tar.gz", ".tgz"].iter().any(|s| n.ends_with(s))
}

/// sha256 over the names, modes and contents of the sources (the COPY cache key part).
pub fn content_hash(ctx: &Context, rels: &[String]) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    fn walk(ctx: &Context, rel: &str, h: &mut Sha256) -> std::io::Result<()> {
        let p = ctx.root.join(rel);
        let m = std::fs::symlink_metadata(&p)?;
        h.update(rel.as_bytes());
        h.update(m.mode().to_le_bytes());
        if m.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(&p)?
                .flatten()
                .map(|e| e.file_name())
                .collect();
            names.sort();
            for n in names {
                let r = join(rel, &n.to_string_lossy());
                if !ctx.ignored(&r) {
                    walk(ctx, &r, h)?;
                }
            }
        } else if m.file_type().is_symlink() {
            h.update(std::fs::read_link(&p)?.as_os_str().as_encoded_bytes());
        } else {
            std::io::copy(&mut std::fs::File::open(&p)?, h)?;
        }
        Ok(())
    }
    let mut h = Sha256::new();
    for r in rels {
        walk(ctx, r, &mut h)?;
    }
    Ok(hex::encode(h.finalize()))
}

/// Whether overlayfs marked `dir` opaque (it hides the lower layers' directory).
fn overlay_opaque(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut value = [0u8; 4];
    // SAFETY: both strings are NUL-terminated and live across the call; the kernel writes at
    // most `value.len()` bytes into `value`.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    n == 1 && value[0] == b'y'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.txt", "a.txt"));
        assert!(!glob_match("*.txt", "a.txt.bak"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("*", "a/b"));
    }
}
