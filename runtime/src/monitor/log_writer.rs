//! The CRI container log format: `<RFC3339Nano> <stdout|stderr> <P|F> <content>\n`.
//!
//! Output is split at newlines; a line longer than the limit is cut into `P` (partial) records
//! followed by an `F` record, so kubelet can stitch it back together. Output that ends without
//! a newline is flushed as a final `F` record when the stream closes.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::SystemTime;

/// containerd's and CRI-O's default maximum log line size.
pub const DEFAULT_MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Opens (creating) a container log for appending, refusing to follow a symlink at `path`.
pub fn open_log(path: &Path) -> std::io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Formats one record.
pub fn record(ts: SystemTime, stream: Stream, partial: bool, content: &[u8]) -> Vec<u8> {
    let ts = humantime::format_rfc3339_nanos(ts).to_string();
    let mut out = Vec::with_capacity(ts.len() + content.len() + 12);
    out.extend_from_slice(ts.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(content);
    out.push(b'\n');
    out
}

/// Splits a byte stream into CRI records.
pub struct LineSplitter {
    buf: Vec<u8>,
    max_line: usize,
}

impl LineSplitter {
    pub fn new(max_line: usize) -> Self {
        LineSplitter {
            buf: Vec::new(),
            max_line: max_line.max(1),
        }
    }

    /// Feeds bytes; calls `emit(content, partial)` for every complete record.
    pub fn feed(&mut self, mut data: &[u8], emit: &mut impl FnMut(&[u8], bool)) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    self.push_capped(&data[..nl], emit);
                    emit(&self.buf, false);
                    self.buf.clear();
                    data = &data[nl + 1..];
                }
                None => {
                    self.push_capped(data, emit);
                    data = &[];
                }
            }
        }
    }

    fn push_capped(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(&[u8], bool)) {
        while self.buf.len() + bytes.len() > self.max_line {
            let room = self.max_line - self.buf.len();
            self.buf.extend_from_slice(&bytes[..room]);
            emit(&self.buf, true);
            self.buf.clear();
            bytes = &bytes[room..];
        }
        self.buf.extend_from_slice(bytes);
    }

    /// End of stream: whatever is buffered becomes a final record.
    pub fn finish(&mut self, emit: &mut impl FnMut(&[u8], bool)) {
        if !self.buf.is_empty() {
            emit(&self.buf, false);
            self.buf.clear();
        }
    }
}

/// Writes records for one stream into a shared log file.
pub fn write_records(
    file: &mut File,
    stream: Stream,
    chunks: &[(Vec<u8>, bool)],
) -> std::io::Result<()> {
    let now = SystemTime::now();
    let mut out = Vec::new();
    for (content, partial) in chunks {
        out.extend_from_slice(&record(now, stream, *partial, content));
    }
    file.write_all(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, inputs: &[&[u8]]) -> Vec<(String, bool)> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        let mut emit = |c: &[u8], p: bool| out.push((String::from_utf8_lossy(c).to_string(), p));
        for i in inputs {
            s.feed(i, &mut emit);
        }
        s.finish(&mut emit);
        out
    }

    #[test]
    fn lines_split_at_newlines_across_chunks() {
        let got = split(100, &[b"hel", b"lo\nwor", b"ld\n\nlast"]);
        let want = vec![
            ("hello".to_string(), false),
            ("world".to_string(), false),
            ("".to_string(), false),
            ("last".to_string(), false),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn long_lines_become_partial_records() {
        let got = split(4, &[b"abcdefghij\n"]);
        assert_eq!(
            got,
            vec![
                ("abcd".into(), true),
                ("efgh".into(), true),
                ("ij".into(), false)
            ]
        );
    }

    #[test]
    fn record_has_cri_shape() {
        let r = record(SystemTime::UNIX_EPOCH, Stream::Stderr, true, b"x y");
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "1970-01-01T00:00:00.000000000Z stderr P x y\n"
        );
    }

    #[test]
    fn log_open_refuses_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("target");
        std::fs::write(&target, b"").unwrap();
        let link = d.path().join("0.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(open_log(&link).is_err());
        assert!(open_log(&d.path().join("sub/1.log")).is_ok());
    }
}
