//! SPDY/3.1 framing, as Kubernetes' remotecommand and port-forward protocols use it over an
//! HTTP/1.1 upgrade: control frames (SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING,
//! GOAWAY, HEADERS, WINDOW_UPDATE), data frames, and name/value header blocks compressed with
//! one zlib stream per direction primed with the SPDY/3 dictionary.
//!
//! There is no maintained SPDY crate in Rust; this module is the codec plus a small session
//! (a reader and a writer task) that the exec, attach and port-forward handlers and crustctl's
//! client share.

use std::collections::HashMap;
use std::sync::LazyLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

pub const VERSION: u16 = 3;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

pub const FLAG_FIN: u8 = 0x01;
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// RST_STREAM status codes used here.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_CANCEL: u32 = 5;

/// Largest frame payload accepted (the length field is 24 bits).
const MAX_FRAME: usize = (1 << 24) - 1;
/// Largest decompressed header block accepted.
const MAX_HEADER_BLOCK: usize = 1 << 20;

/// Header names of the SPDY/3 compression dictionary, each stored length-prefixed.
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// Common values that follow the words in the dictionary, as plain text.
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

/// The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00, 2.6.10.1).
/// It must be byte-exact, or the peer's inflate fails on the first header block.
pub static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut d = Vec::with_capacity(1423);
    for w in DICTIONARY_WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(DICTIONARY_TAIL.as_bytes());
    d
});

/// Header names and values; SPDY requires lower-case names.
pub type Headers = Vec<(String, String)>;

pub fn header<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Vec<u8>,
    },
    /// A control frame of a type this codec ignores (e.g. CREDENTIAL).
    Unknown {
        kind: u16,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol error: {0}")]
    Protocol(String),
}

fn proto(msg: impl Into<String>) -> SpdyError {
    SpdyError::Protocol(msg.into())
}

/// Compresses header blocks for one direction of a session.
pub struct HeaderEncoder {
    z: Compress,
}

impl Default for HeaderEncoder {
    fn default() -> Self {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(&DICTIONARY)
            .expect("zlib accepts the SPDY dictionary");
        HeaderEncoder { z }
    }
}

impl HeaderEncoder {
    pub fn encode(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (k, v) in headers {
            let k = k.to_ascii_lowercase();
            raw.extend_from_slice(&(k.len() as u32).to_be_bytes());
            raw.extend_from_slice(k.as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            out.reserve(256);
            let before_in = self.z.total_in();
            self.z
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| proto(format!("compress headers: {e}")))?;
            let used = (self.z.total_in() - before_in) as usize;
            input = &input[used..];
            // A sync flush is complete when all input is taken and room was left over.
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// Decompresses header blocks for one direction of a session.
pub struct HeaderDecoder {
    z: Decompress,
}

impl Default for HeaderDecoder {
    fn default() -> Self {
        HeaderDecoder {
            z: Decompress::new(true),
        }
    }
}

impl HeaderDecoder {
    pub fn decode(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        let mut input = block;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(proto("header block too large"));
                }
                out.reserve(out.len());
            }
            let before_in = self.z.total_in();
            match self
                .z
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
            {
                Ok(Status::Ok | Status::BufError | Status::StreamEnd) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z
                        .set_dictionary(&DICTIONARY)
                        .map_err(|e| proto(format!("header dictionary: {e}")))?;
                }
                Err(e) => return Err(proto(format!("decompress headers: {e}"))),
            }
            let used = (self.z.total_in() - before_in) as usize;
            input = &input[used..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        parse_header_block(&out)
    }
}

fn parse_header_block(b: &[u8]) -> Result<Headers, SpdyError> {
    let mut pos = 0;
    let mut take = |n: usize| -> Result<&[u8], SpdyError> {
        let s = b
            .get(pos..pos + n)
            .ok_or_else(|| proto("truncated header block"))?;
        pos += n;
        Ok(s)
    };
    let be32 = |s: &[u8]| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize;
    let count = be32(take(4)?);
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let n = be32(take(4)?);
        let name = String::from_utf8_lossy(take(n)?).into_owned();
        let n = be32(take(4)?);
        let value = String::from_utf8_lossy(take(n)?).into_owned();
        if name.is_empty() {
            return Err(proto("empty header name"));
        }
        // Several values of one name are NUL-separated.
        for v in value.split('\0') {
            headers.push((name.clone(), v.to_string()));
        }
    }
    Ok(headers)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn control(out: &mut Vec<u8>, kind: u16, flags: u8, payload: &[u8]) {
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(payload);
}

/// Serialises `frame` (compressing its headers with `enc`).
pub fn encode(frame: &Frame, enc: &mut HeaderEncoder, out: &mut Vec<u8>) -> Result<(), SpdyError> {
    let mut p = Vec::new();
    match frame {
        Frame::SynStream {
            stream_id,
            associated,
            priority,
            flags,
            headers,
        } => {
            p.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
            p.extend_from_slice(&(associated & 0x7fff_ffff).to_be_bytes());
            p.push((priority & 0x7) << 5);
            p.push(0);
            p.extend_from_slice(&enc.encode(headers)?);
            control(out, SYN_STREAM, *flags, &p);
        }
        Frame::SynReply {
            stream_id,
            flags,
            headers,
        } => {
            p.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
            p.extend_from_slice(&enc.encode(headers)?);
            control(out, SYN_REPLY, *flags, &p);
        }
        Frame::Headers {
            stream_id,
            flags,
            headers,
        } => {
            p.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
            p.extend_from_slice(&enc.encode(headers)?);
            control(out, HEADERS, *flags, &p);
        }
        Frame::RstStream { stream_id, status } => {
            p.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
            p.extend_from_slice(&status.to_be_bytes());
            control(out, RST_STREAM, 0, &p);
        }
        Frame::Settings { entries } => {
            p.extend_from_slice(&(entries.len() as u32).to_be_bytes());
            for (flags, id, value) in entries {
                p.push(*flags);
                p.extend_from_slice(&id.to_be_bytes()[1..]);
                p.extend_from_slice(&value.to_be_bytes());
            }
            control(out, SETTINGS, 0, &p);
        }
        Frame::Ping { id } => control(out, PING, 0, &id.to_be_bytes()),
        Frame::GoAway {
            last_stream_id,
            status,
        } => {
            p.extend_from_slice(&(last_stream_id & 0x7fff_ffff).to_be_bytes());
            p.extend_from_slice(&status.to_be_bytes());
            control(out, GOAWAY, 0, &p);
        }
        Frame::WindowUpdate { stream_id, delta } => {
            p.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
            p.extend_from_slice(&(delta & 0x7fff_ffff).to_be_bytes());
            control(out, WINDOW_UPDATE, 0, &p);
        }
        Frame::Data {
            stream_id,
            flags,
            data,
        } => {
            if data.len() > MAX_FRAME {
                return Err(proto("data frame too large"));
            }
            out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
            out.push(*flags);
            out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
            out.extend_from_slice(data);
        }
        Frame::Unknown { .. } => return Err(proto("cannot encode an unknown frame")),
    }
    Ok(())
}

/// Parses one frame from the start of `buf`; returns it and the bytes it took, or None when
/// `buf` does not hold a whole frame yet.
pub fn decode(buf: &[u8], dec: &mut HeaderDecoder) -> Result<Option<(Frame, usize)>, SpdyError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let flags = buf[4];
    let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
    if buf.len() < 8 + len {
        return Ok(None);
    }
    let p = &buf[8..8 + len];
    let need = |n: usize| {
        if p.len() < n {
            Err(proto(format!(
                "control frame too short ({} < {n})",
                p.len()
            )))
        } else {
            Ok(())
        }
    };
    let frame = if buf[0] & 0x80 == 0 {
        Frame::Data {
            stream_id: be32(&buf[0..4]) & 0x7fff_ffff,
            flags,
            data: p.to_vec(),
        }
    } else {
        let version = u16::from_be_bytes([buf[0], buf[1]]) & 0x7fff;
        if version != VERSION {
            return Err(proto(format!("SPDY version {version} is not 3")));
        }
        let kind = u16::from_be_bytes([buf[2], buf[3]]);
        match kind {
            SYN_STREAM => {
                need(10)?;
                Frame::SynStream {
                    stream_id: be32(&p[0..4]) & 0x7fff_ffff,
                    associated: be32(&p[4..8]) & 0x7fff_ffff,
                    priority: p[8] >> 5,
                    flags,
                    headers: dec.decode(&p[10..])?,
                }
            }
            SYN_REPLY => {
                need(4)?;
                Frame::SynReply {
                    stream_id: be32(&p[0..4]) & 0x7fff_ffff,
                    flags,
                    headers: dec.decode(&p[4..])?,
                }
            }
            HEADERS => {
                need(4)?;
                Frame::Headers {
                    stream_id: be32(&p[0..4]) & 0x7fff_ffff,
                    flags,
                    headers: dec.decode(&p[4..])?,
                }
            }
            RST_STREAM => {
                need(8)?;
                Frame::RstStream {
                    stream_id: be32(&p[0..4]) & 0x7fff_ffff,
                    status: be32(&p[4..8]),
                }
            }
            SETTINGS => {
                need(4)?;
                let n = be32(&p[0..4]) as usize;
                need(4 + n.saturating_mul(8))?;
                let entries = (0..n)
                    .map(|i| {
                        let e = &p[4 + i * 8..12 + i * 8];
                        (
                            e[0],
                            u32::from_be_bytes([0, e[1], e[2], e[3]]),
                            be32(&e[4..8]),
                        )
                    })
                    .collect();
                Frame::Settings { entries }
            }
            PING => {
                need(4)?;
                Frame::Ping { id: be32(&p[0..4]) }
            }
            GOAWAY => {
                need(4)?;
                Frame::GoAway {
                    last_stream_id: be32(&p[0..4]) & 0x7fff_ffff,
                    status: if p.len() >= 8 { be32(&p[4..8]) } else { 0 },
                }
            }
            WINDOW_UPDATE => {
                need(8)?;
                Frame::WindowUpdate {
                    stream_id: be32(&p[0..4]) & 0x7fff_ffff,
                    delta: be32(&p[4..8]) & 0x7fff_ffff,
                }
            }
            kind => Frame::Unknown { kind },
        }
    };
    Ok(Some((frame, 8 + len)))
}

/// What the session's reader reports.
#[derive(Debug)]
pub enum Event {
    /// The peer opened a stream.
    Opened {
        stream_id: u32,
        headers: Headers,
        fin: bool,
    },
    /// The peer answered a stream this side opened.
    Replied {
        stream_id: u32,
    },
    Data {
        stream_id: u32,
        data: Vec<u8>,
        fin: bool,
    },
    Reset {
        stream_id: u32,
    },
    /// The connection ended (GOAWAY, EOF or an error).
    Closed,
}

/// A handle to write frames on a session; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Frame>,
    /// Traffic in either direction, for the idle timeout.
    pub activity: super::Activity,
}

impl Writer {
    pub async fn send(&self, f: Frame) -> bool {
        self.activity.touch();
        self.tx.send(f).await.is_ok()
    }

    pub async fn data(&self, stream_id: u32, data: &[u8], fin: bool) -> bool {
        // Keep frames small so one busy stream cannot starve the others.
        let mut chunks = data.chunks(32 * 1024).peekable();
        if chunks.peek().is_none() {
            return self
                .send(Frame::Data {
                    stream_id,
                    flags: if fin { FLAG_FIN } else { 0 },
                    data: Vec::new(),
                })
                .await;
        }
        while let Some(c) = chunks.next() {
            let last = chunks.peek().is_none();
            let flags = if fin && last { FLAG_FIN } else { 0 };
            if !self
                .send(Frame::Data {
                    stream_id,
                    flags,
                    data: c.to_vec(),
                })
                .await
            {
                return false;
            }
        }
        true
    }

    pub async fn reply(&self, stream_id: u32) -> bool {
        self.send(Frame::SynReply {
            stream_id,
            flags: 0,
            headers: Vec::new(),
        })
        .await
    }
}

/// Starts a session on `io`: a reader task that turns frames into [`Event`]s (answering
/// PINGs and granting flow-control window as data is consumed) and a writer task.
pub fn session<S>(io: S, leftover: Vec<u8>) -> (Writer, mpsc::Receiver<Event>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let (frames_tx, mut frames_rx) = mpsc::channel::<Frame>(64);
    let (events_tx, events_rx) = mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let mut enc = HeaderEncoder::default();
        let mut buf = Vec::new();
        while let Some(f) = frames_rx.recv().await {
            buf.clear();
            let is_goaway = matches!(f, Frame::GoAway { .. });
            if encode(&f, &mut enc, &mut buf).is_err() || wr.write_all(&buf).await.is_err() {
                break;
            }
            if is_goaway {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let activity = super::Activity::default();
    let writer = Writer {
        tx: frames_tx,
        activity: activity.clone(),
    };
    // The reader answers pings and grants window through a weak handle: once every Writer
    // the session's users hold is gone, the writer task ends and the connection closes.
    let weak = writer.tx.downgrade();
    let reply = move |f: Frame| {
        let weak = weak.clone();
        async move {
            if let Some(tx) = weak.upgrade() {
                let _ = tx.send(f).await;
            }
        }
    };
    tokio::spawn(async move {
        let mut dec = HeaderDecoder::default();
        let mut buf = leftover;
        let mut chunk = vec![0u8; 64 * 1024];
        let mut opened: HashMap<u32, ()> = HashMap::new();
        'conn: loop {
            loop {
                let (frame, used) = match decode(&buf, &mut dec) {
                    Ok(Some(x)) => x,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(err = %e, "spdy: bad frame");
                        break 'conn;
                    }
                };
                buf.drain(..used);
                activity.touch();
                let ev = match frame {
                    Frame::SynStream {
                        stream_id,
                        flags,
                        headers,
                        ..
                    } => {
                        opened.insert(stream_id, ());
                        Some(Event::Opened {
                            stream_id,
                            headers,
                            fin: flags & FLAG_FIN != 0,
                        })
                    }
                    Frame::SynReply { stream_id, .. } => Some(Event::Replied { stream_id }),
                    Frame::Data {
                        stream_id,
                        flags,
                        data,
                    } => {
                        if !data.is_empty() {
                            // Grant the window back as soon as the data is handed on.
                            reply(Frame::WindowUpdate {
                                stream_id,
                                delta: data.len() as u32,
                            })
                            .await;
                        }
                        Some(Event::Data {
                            stream_id,
                            data,
                            fin: flags & FLAG_FIN != 0,
                        })
                    }
                    Frame::RstStream { stream_id, .. } => Some(Event::Reset { stream_id }),
                    Frame::Ping { id } => {
                        reply(Frame::Ping { id }).await;
                        None
                    }
                    Frame::GoAway { .. } => break 'conn,
                    Frame::Headers { .. }
                    | Frame::Settings { .. }
                    | Frame::WindowUpdate { .. }
                    | Frame::Unknown { .. } => None,
                };
                if let Some(ev) = ev
                    && events_tx.send(ev).await.is_err()
                {
                    break 'conn;
                }
            }
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.len() > MAX_FRAME + 8 {
                break;
            }
        }
        let _ = events_tx.send(Event::Closed).await;
    });
    (writer, events_rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_is_the_spdy3_one() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert_eq!(&DICTIONARY[..11], b"\0\0\0\x07options");
        assert!(DICTIONARY.ends_with(b",*,enq=0."));
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Runs a Python snippet (zlib there is an independent implementation) and returns its
    /// stdout.
    fn python(script: &str) -> String {
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .output()
            .expect("python3 is installed (scripts/setup.sh)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Our header blocks inflate in another zlib with the same dictionary.
    #[test]
    fn encodes_headers_a_zlib_peer_can_read() {
        let mut enc = HeaderEncoder::default();
        let headers = vec![
            ("streamtype".to_string(), "stdout".to_string()),
            ("port".to_string(), "8080".to_string()),
        ];
        let first = enc.encode(&headers).unwrap();
        let second = enc.encode(&headers).unwrap();
        let got = python(&format!(
            "import zlib\nd=zlib.decompressobj(zdict=bytes.fromhex('{}'))\na=d.decompress(bytes.fromhex('{}'))\nb=d.decompress(bytes.fromhex('{}'))\nprint(a.hex()+' '+b.hex())",
            hex(&DICTIONARY),
            hex(&first),
            hex(&second)
        ));
        let (a, b) = got.trim().split_once(' ').unwrap();
        for raw in [unhex(a), unhex(b)] {
            assert_eq!(parse_header_block(&raw).unwrap(), headers);
        }
    }

    /// A SYN_STREAM whose header block another zlib compressed with the SPDY/3 dictionary, as
    /// Kubernetes' Go client sends it for an exec's error stream.
    #[test]
    fn decodes_a_frame_from_a_zlib_peer() {
        let block = unhex(python(&format!(
            "import zlib,sys\nd=bytes.fromhex('{}')\nc=zlib.compressobj(zdict=d)\nb=(1).to_bytes(4,'big')+(10).to_bytes(4,'big')+b'streamtype'+(5).to_bytes(4,'big')+b'error'\nsys.stdout.write((c.compress(b)+c.flush(zlib.Z_SYNC_FLUSH)).hex())",
            hex(&DICTIONARY)
        ))
        .trim());
        let mut frame = vec![0x80, 0x03, 0x00, 0x01, 0x00];
        let len = 10 + block.len();
        frame.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        frame.extend_from_slice(&1u32.to_be_bytes());
        frame.extend_from_slice(&0u32.to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(&block);
        let mut dec = HeaderDecoder::default();
        let (f, used) = decode(&frame, &mut dec).unwrap().unwrap();
        assert_eq!(used, frame.len());
        assert_eq!(
            f,
            Frame::SynStream {
                stream_id: 1,
                associated: 0,
                priority: 0,
                flags: 0,
                headers: vec![("streamtype".into(), "error".into())],
            }
        );
    }

    #[test]
    fn frames_round_trip_with_shared_compression_state() {
        let mut enc = HeaderEncoder::default();
        let mut dec = HeaderDecoder::default();
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated: 0,
                priority: 2,
                flags: FLAG_FIN,
                headers: vec![("streamtype".into(), "stdout".into())],
            },
            Frame::SynStream {
                stream_id: 3,
                associated: 0,
                priority: 0,
                flags: 0,
                headers: vec![
                    ("streamtype".into(), "data".into()),
                    ("port".into(), "8080".into()),
                    ("requestid".into(), "0".into()),
                ],
            },
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: vec![],
            },
            Frame::Data {
                stream_id: 1,
                flags: FLAG_FIN,
                data: b"hello".to_vec(),
            },
            Frame::Ping { id: 7 },
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 5,
            },
            Frame::RstStream {
                stream_id: 3,
                status: RST_CANCEL,
            },
            Frame::Settings {
                entries: vec![(0, 7, 65536)],
            },
            Frame::GoAway {
                last_stream_id: 3,
                status: 0,
            },
        ];
        let mut wire = Vec::new();
        for f in &frames {
            encode(f, &mut enc, &mut wire).unwrap();
        }
        let mut got = Vec::new();
        let mut pos = 0;
        while let Some((f, used)) = decode(&wire[pos..], &mut dec).unwrap() {
            got.push(f);
            pos += used;
        }
        assert_eq!(got, frames);
        // Half a frame is not a frame yet.
        let mut one = Vec::new();
        encode(&frames[3], &mut HeaderEncoder::default(), &mut one).unwrap();
        assert!(decode(&one[..one.len() - 1], &mut dec).unwrap().is_none());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut dec = HeaderDecoder::default();
        // A SYN_STREAM of version 2.
        let f = [0x80, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00];
        assert!(decode(&f, &mut dec).is_err());
        // A SETTINGS frame claiming more entries than it holds.
        let f = [
            0x80, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x04, 0xff, 0xff, 0xff, 0xff,
        ];
        assert!(decode(&f, &mut dec).is_err());
        // A header block that is not zlib.
        let f = [
            0x80, 0x03, 0x00, 0x02, 0x00, 0x00, 0x00, 0x06, 0, 0, 0, 1, 0xde, 0xad,
        ];
        assert!(decode(&f, &mut dec).is_err());
    }
}
