//! logs: reading the CRI log file.

use std::io::{BufRead, Seek, Write};

use anyhow::bail;
use crust_proto::cri;
use crust_shim::client::CriClient;

use crate::common::status;
use crate::follow::Watch;

/// Prints the CRI log: stdout records to stdout, stderr records to stderr. With `follow`, keeps
/// reading until the container has exited and the log is drained, waking when the log is
/// written or the container exits ([`Watch`]).
pub(crate) async fn follow_log(
    c: &mut CriClient,
    id: &str,
    path: &str,
    follow: bool,
    tail: Option<usize>,
    timestamps: bool,
) -> anyhow::Result<()> {
    follow_log_from(c, id, path, follow, tail, timestamps, 0).await
}

/// [`follow_log`] from byte `pos` of the log (what an earlier run of the container wrote is
/// before it).
pub(crate) async fn follow_log_from(
    c: &mut CriClient,
    id: &str,
    path: &str,
    follow: bool,
    tail: Option<usize>,
    timestamps: bool,
    mut pos: u64,
) -> anyhow::Result<()> {
    if path.is_empty() {
        bail!("container {id} has no log file");
    }
    let mut first = true;
    // Subscribed before the first look at the state, so no exit or write after it is missed.
    let mut watch = if follow {
        Some(Watch::new(c, id, path).await)
    } else {
        None
    };
    loop {
        let exited =
            !follow || status(c, id).await?.state == cri::ContainerState::ContainerExited as i32;
        if let Ok(mut f) = std::fs::File::open(path) {
            f.seek(std::io::SeekFrom::Start(pos))?;
            let mut reader = std::io::BufReader::new(f);
            let mut lines = Vec::new();
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let n = reader.read_until(b'\n', &mut buf)?;
                if n == 0 || buf.last() != Some(&b'\n') {
                    break;
                }
                pos += n as u64;
                lines.push(buf.clone());
            }
            if first && let Some(t) = tail {
                let skip = lines.len().saturating_sub(t);
                lines.drain(..skip);
            }
            first = false;
            let mut out = std::io::stdout().lock();
            let mut err = std::io::stderr().lock();
            for l in lines {
                print_record(&l, timestamps, &mut out, &mut err)?;
            }
            out.flush()?;
        }
        match watch.as_mut() {
            Some(w) if !exited => w.changed().await,
            _ => return Ok(()),
        }
    }
}

pub(crate) fn print_record(
    line: &[u8],
    timestamps: bool,
    out: &mut impl Write,
    err: &mut impl Write,
) -> std::io::Result<()> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut parts = line.splitn(4, |&b| b == b' ');
    let (ts, stream, tag, content) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next().unwrap_or(b""),
    );
    let w: &mut dyn Write = if stream == Some(b"stderr") { err } else { out };
    if timestamps && let Some(ts) = ts {
        w.write_all(ts)?;
        w.write_all(b" ")?;
    }
    w.write_all(content)?;
    if tag != Some(b"P") {
        w.write_all(b"\n")?;
    }
    Ok(())
}
