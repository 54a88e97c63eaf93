//! Accepts every HTTP/2 `:authority` that gRPC clients send over a unix socket.
//!
//! gRPC-Go clients of kubelet's and crictl's older generations, grpc-java and Python's grpcio
//! name the socket path (`/run/crust/crust.sock`) as the request's `:authority`; others send
//! `localhost` or nothing at all. The `h2` crate under tonic refuses a value that is not a URI
//! authority as a malformed request (the stream is reset with PROTOCOL_ERROR before any
//! handler runs), where containerd and CRI-O accept anything. crust has no use for the value,
//! so this reader sits between the socket and `h2`: it decodes each header block the client
//! sends, puts `localhost` in place of an `:authority` that `h2` would refuse, and hands `h2`
//! the same header list re-encoded without the dynamic table (literal fields, so the two
//! HPACK contexts cannot drift apart). Everything else — frames, the header list itself,
//! pseudo-header rules — still goes through `h2`'s own checks. Writes pass through untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What replaces an authority `h2` would refuse.
pub const REPLACEMENT: &[u8] = b"localhost";

/// The client connection preface (RFC 9113 §3.4).
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
/// The largest frame a client may send: crustd never raises SETTINGS_MAX_FRAME_SIZE above
/// the protocol's initial value. A longer frame is left for `h2` to refuse.
const MAX_FRAME: usize = 16_384;
/// SETTINGS_HEADER_TABLE_SIZE as `h2` advertises it (the protocol's initial value).
const HEADER_TABLE_SIZE: usize = 4_096;
/// A header block spread over CONTINUATION frames is refused past this size (`h2`'s own
/// limit on a decoded header list is 16 MiB; a block this large is already an attack).
const MAX_BLOCK: usize = 1 << 20;

const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// A header block whose CONTINUATION frames are still to come.
struct PendingBlock {
    stream_id: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
    /// The frames as received, for `h2` to judge if the block turns out malformed.
    raw: Vec<u8>,
}

enum Mode {
    /// Reading the connection preface: this many bytes of it are still to come.
    Preface(usize),
    Frames,
    /// Something `h2` must refuse was seen: bytes go through as they are from here on.
    Passthrough,
}

/// The read half of a client connection with `:authority` made acceptable to `h2`.
pub struct AuthorityRepair<IO> {
    io: IO,
    mode: Mode,
    /// Bytes read from the client, not yet handed on.
    input: BytesMut,
    /// Bytes ready for `h2`.
    output: BytesMut,
    pending: Option<PendingBlock>,
    decoder: loona_hpack::Decoder<'static>,
    eof: bool,
}

impl<IO> AuthorityRepair<IO> {
    pub fn new(io: IO) -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        AuthorityRepair {
            io,
            mode: Mode::Preface(PREFACE_LEN),
            input: BytesMut::with_capacity(8 * 1024),
            output: BytesMut::new(),
            pending: None,
            decoder,
            eof: false,
        }
    }

    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// Moves every complete unit of `input` to `output`, rewritten where needed.
    fn process(&mut self) -> io::Result<()> {
        loop {
            match self.mode {
                Mode::Passthrough => {
                    let all = self.input.split();
                    self.output.extend_from_slice(&all);
                    return Ok(());
                }
                Mode::Preface(left) => {
                    let n = left.min(self.input.len());
                    let head = self.input.split_to(n);
                    self.output.extend_from_slice(&head);
                    if n < left {
                        self.mode = Mode::Preface(left - n);
                        return Ok(());
                    }
                    self.mode = Mode::Frames;
                }
                Mode::Frames => {
                    if self.input.len() < FRAME_HEADER_LEN {
                        return Ok(());
                    }
                    let len = (usize::from(self.input[0]) << 16)
                        | (usize::from(self.input[1]) << 8)
                        | usize::from(self.input[2]);
                    let kind = self.input[3];
                    if len > MAX_FRAME {
                        self.give_up();
                        continue;
                    }
                    if self.input.len() < FRAME_HEADER_LEN + len {
                        return Ok(());
                    }
                    let frame = self.input.split_to(FRAME_HEADER_LEN + len);
                    match kind {
                        HEADERS => self.headers_frame(&frame)?,
                        CONTINUATION => self.continuation_frame(&frame)?,
                        _ if self.pending.is_some() => {
                            // Only CONTINUATION may follow an unfinished block: h2 refuses it.
                            self.output_raw_pending();
                            self.output.extend_from_slice(&frame);
                            self.mode = Mode::Passthrough;
                        }
                        _ => self.output.extend_from_slice(&frame),
                    }
                }
            }
        }
    }

    /// Hands what is buffered to `h2` unchanged and stops rewriting.
    fn give_up(&mut self) {
        self.output_raw_pending();
        self.mode = Mode::Passthrough;
    }

    fn output_raw_pending(&mut self) {
        if let Some(p) = self.pending.take() {
            self.output.extend_from_slice(&p.raw);
        }
    }

    fn headers_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        let flags = frame[4];
        let stream_id = stream_id(frame);
        if self.pending.is_some() {
            self.output_raw_pending();
            self.output.extend_from_slice(frame);
            self.mode = Mode::Passthrough;
            return Ok(());
        }
        let mut payload = &frame[FRAME_HEADER_LEN..];
        if flags & PADDED != 0 {
            let Some((&pad, rest)) = payload.split_first() else {
                return self.malformed(frame);
            };
            if usize::from(pad) > rest.len() {
                return self.malformed(frame);
            }
            payload = &rest[..rest.len() - usize::from(pad)];
        }
        let mut priority = None;
        if flags & PRIORITY != 0 {
            if payload.len() < 5 {
                return self.malformed(frame);
            }
            let mut p = [0u8; 5];
            p.copy_from_slice(&payload[..5]);
            priority = Some(p);
            payload = &payload[5..];
        }
        let block = PendingBlock {
            stream_id,
            flags,
            priority,
            fragment: payload.to_vec(),
            raw: frame.to_vec(),
        };
        if flags & END_HEADERS != 0 {
            self.finish(block)
        } else {
            self.pending = Some(block);
            Ok(())
        }
    }

    fn continuation_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        let Some(mut block) = self.pending.take() else {
            // A CONTINUATION with no block open: h2 refuses it.
            return self.malformed(frame);
        };
        block.raw.extend_from_slice(frame);
        if stream_id(frame) != block.stream_id || block.fragment.len() > MAX_BLOCK {
            self.output.extend_from_slice(&block.raw);
            self.mode = Mode::Passthrough;
            return Ok(());
        }
        block.fragment.extend_from_slice(&frame[FRAME_HEADER_LEN..]);
        if frame[4] & END_HEADERS != 0 {
            self.finish(block)
        } else {
            self.pending = Some(block);
            Ok(())
        }
    }

    fn malformed(&mut self, frame: &[u8]) -> io::Result<()> {
        self.output.extend_from_slice(frame);
        self.mode = Mode::Passthrough;
        Ok(())
    }

    /// Decodes a whole header block and queues it re-encoded, with its authority repaired.
    fn finish(&mut self, block: PendingBlock) -> io::Result<()> {
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        self.decoder
            .decode_with_cb(&block.fragment, |name, value| {
                fields.push((name.into_owned(), value.into_owned()))
            })
            .map_err(|e| {
                // A compression error ends the connection in h2 too (RFC 9113 §4.3).
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("HTTP/2 header block of stream {}: {e}", block.stream_id),
                )
            })?;
        for (name, value) in &mut fields {
            if name.as_slice() == b":authority" && !acceptable(value) {
                *value = REPLACEMENT.to_vec();
            }
        }
        let encoded = encode_literal_block(&fields);
        write_frames(
            &mut self.output,
            block.stream_id,
            block.flags & END_STREAM,
            block.priority,
            &encoded,
        );
        Ok(())
    }
}

fn stream_id(frame: &[u8]) -> u32 {
    u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff
}

/// Whether `h2` accepts `value` as an `:authority`.
pub fn acceptable(value: &[u8]) -> bool {
    tonic::codegen::http::uri::Authority::try_from(value).is_ok()
}

/// One HPACK integer with an `n`-bit prefix whose high bits are `first` (RFC 7541 §5.1).
fn put_integer(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// Every field as "literal without indexing, new name", strings not Huffman-coded.
fn encode_literal_block(fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.iter().map(|(n, v)| n.len() + v.len() + 6).sum());
    for (name, value) in fields {
        out.push(0x00);
        put_integer(&mut out, 0x00, 7, name.len());
        out.extend_from_slice(name);
        put_integer(&mut out, 0x00, 7, value.len());
        out.extend_from_slice(value);
    }
    out
}

/// A HEADERS frame and as many CONTINUATION frames as `block` needs.
fn write_frames(
    out: &mut BytesMut,
    stream_id: u32,
    end_stream: u8,
    priority: Option<[u8; 5]>,
    block: &[u8],
) {
    let room = MAX_FRAME - if priority.is_some() { 5 } else { 0 };
    let (first, mut rest) = block.split_at(block.len().min(room));
    let mut flags = end_stream;
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    if priority.is_some() {
        flags |= PRIORITY;
    }
    let len = first.len() + if priority.is_some() { 5 } else { 0 };
    put_frame_header(out, len, HEADERS, flags, stream_id);
    if let Some(p) = priority {
        out.extend_from_slice(&p);
    }
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(rest.len().min(MAX_FRAME));
        let flags = if after.is_empty() { END_HEADERS } else { 0 };
        put_frame_header(out, chunk.len(), CONTINUATION, flags, stream_id);
        out.extend_from_slice(chunk);
        rest = after;
    }
}

fn put_frame_header(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream_id: u32) {
    out.put_uint(len as u64, 3);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream_id);
}

impl<IO: AsyncRead + Unpin> AsyncRead for AuthorityRepair<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.output.is_empty() {
                let n = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output[..n]);
                this.output.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // A truncated frame goes to h2 as it came, so h2 reports it.
                if !this.input.is_empty() {
                    let rest = this.input.split();
                    this.output.extend_from_slice(&rest);
                    this.output_raw_pending();
                    continue;
                }
                this.output_raw_pending();
                if this.output.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            let mut chunk = [0u8; 8 * 1024];
            let mut rb = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                this.eof = true;
            } else {
                this.input.extend_from_slice(rb.filled());
                this.process()?;
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for AuthorityRepair<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected
    for AuthorityRepair<IO>
{
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_frame_header(&mut out, payload.len(), kind, flags, stream);
        out.extend_from_slice(payload);
        out.to_vec()
    }

    /// Runs `input` through the repair and decodes every header block it hands on.
    async fn repaired(input: Vec<u8>) -> (Vec<u8>, Vec<Vec<(Vec<u8>, Vec<u8>)>>) {
        let mut r = AuthorityRepair::new(std::io::Cursor::new(input));
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        assert_eq!(&out[..PREFACE_LEN], PREFACE);
        let mut blocks = Vec::new();
        let mut dec = loona_hpack::Decoder::new();
        let mut at = PREFACE_LEN;
        let mut block = Vec::new();
        while at < out.len() {
            let len = (usize::from(out[at]) << 16)
                | (usize::from(out[at + 1]) << 8)
                | usize::from(out[at + 2]);
            let (kind, flags) = (out[at + 3], out[at + 4]);
            let mut payload = &out[at + 9..at + 9 + len];
            if kind == HEADERS || kind == CONTINUATION {
                if kind == HEADERS && flags & PRIORITY != 0 {
                    payload = &payload[5..];
                }
                block.extend_from_slice(payload);
                if flags & END_HEADERS != 0 {
                    blocks.push(dec.decode(&block).unwrap());
                    block.clear();
                }
            }
            at += 9 + len;
        }
        (out, blocks)
    }

    fn request(enc: &mut loona_hpack::Encoder<'_>, authority: &[u8]) -> Vec<u8> {
        let headers: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/runtime.v1.RuntimeService/Version"),
            (b":authority", authority),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ];
        enc.encode(headers)
    }

    fn authority_of(block: &[(Vec<u8>, Vec<u8>)]) -> Option<&[u8]> {
        block
            .iter()
            .find(|(n, _)| n == b":authority")
            .map(|(_, v)| v.as_slice())
    }

    #[test]
    fn the_values_clients_send_are_told_apart() {
        assert!(acceptable(b"localhost"));
        assert!(acceptable(b"localhost:1234"));
        // What gRPC-Go sends when dialled without an authority (crictl 1.30).
        assert!(!acceptable(b"%2Frun%2Fcrust%2Fcrust.sock"));
        assert!(!acceptable(b"/run/crust/crust.sock"));
        assert!(!acceptable(b""));
        assert!(!acceptable(b"unix:///run/crust/crust.sock"));
    }

    #[tokio::test]
    async fn a_socket_path_becomes_localhost_and_the_rest_is_kept() {
        let mut enc = loona_hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        // The path twice: the second request finds it in the client's dynamic table.
        for (stream, authority) in [
            (1, &b"/run/crust/crust.sock"[..]),
            (3, b"/run/crust/crust.sock"),
            (5, b"localhost"),
            (7, b""),
        ] {
            let block = request(&mut enc, authority);
            input.extend(frame(HEADERS, END_HEADERS, stream, &block));
            input.extend(frame(0x0, END_STREAM, stream, b"\0\0\0\0\0"));
        }
        let (out, blocks) = repaired(input).await;
        assert_eq!(blocks.len(), 4);
        for b in &blocks {
            assert_eq!(authority_of(b), Some(&b"localhost"[..]));
            assert_eq!(b[2].1, b"/runtime.v1.RuntimeService/Version");
            assert_eq!(b.len(), 6);
        }
        // SETTINGS and DATA frames went through unchanged.
        assert_eq!(
            &out[PREFACE_LEN..PREFACE_LEN + 9],
            &frame(0x4, 0, 0, &[])[..]
        );
        assert!(out.ends_with(&frame(0x0, END_STREAM, 7, b"\0\0\0\0\0")));
    }

    #[tokio::test]
    async fn padding_priority_and_continuation_frames_are_understood() {
        let mut enc = loona_hpack::Encoder::new();
        let block = request(&mut enc, b"/tmp/x.sock");
        let (a, b) = block.split_at(block.len() / 2);
        let mut payload = vec![3u8]; // pad length
        payload.extend([0, 0, 0, 0, 16]); // priority: no dependency, weight 16
        payload.extend(a);
        payload.extend([0, 0, 0]);
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, PADDED | PRIORITY | END_STREAM, 1, &payload));
        input.extend(frame(CONTINUATION, END_HEADERS, 1, b));
        let (out, blocks) = repaired(input).await;
        assert_eq!(authority_of(&blocks[0]), Some(&b"localhost"[..]));
        // One HEADERS frame, END_STREAM and the priority kept, padding dropped.
        assert_eq!(out[PREFACE_LEN + 3], HEADERS);
        assert_eq!(out[PREFACE_LEN + 4], END_STREAM | END_HEADERS | PRIORITY);
        assert_eq!(&out[PREFACE_LEN + 9..PREFACE_LEN + 14], &[0, 0, 0, 0, 16]);
    }

    #[tokio::test]
    async fn a_large_block_is_split_into_continuation_frames() {
        let mut enc = loona_hpack::Encoder::new();
        let big = vec![b'v'; 40_000];
        let headers: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"POST"),
            (b":authority", b"/run/crust/crust.sock"),
            (b"x-big", &big),
        ];
        let block = enc.encode(headers);
        let mut input = PREFACE.to_vec();
        let mut rest = &block[..];
        let mut first = true;
        while !rest.is_empty() {
            let (chunk, after) = rest.split_at(rest.len().min(MAX_FRAME));
            let kind = if first { HEADERS } else { CONTINUATION };
            let flags = if after.is_empty() { END_HEADERS } else { 0 };
            input.extend(frame(kind, flags, 1, chunk));
            rest = after;
            first = false;
        }
        let (_, blocks) = repaired(input).await;
        assert_eq!(blocks.len(), 1);
        assert_eq!(authority_of(&blocks[0]), Some(&b"localhost"[..]));
        assert_eq!(blocks[0][2].1.len(), 40_000);
    }

    #[tokio::test]
    async fn bytes_split_anywhere_give_the_same_result() {
        let mut enc = loona_hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        for stream in [1u32, 3] {
            let block = request(&mut enc, b"/run/crust/crust.sock");
            input.extend(frame(HEADERS, END_HEADERS, stream, &block));
        }
        let (whole, _) = repaired(input.clone()).await;
        // One byte per read.
        let (tx, rx) = tokio::io::duplex(1);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut tx = tx;
            for b in input {
                tx.write_all(&[b]).await.unwrap();
            }
        });
        let mut r = AuthorityRepair::new(rx);
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        writer.await.unwrap();
        assert_eq!(out, whole);
    }

    #[tokio::test]
    async fn a_broken_header_block_ends_the_connection() {
        let mut input = PREFACE.to_vec();
        // Indexed field 70: past the static table, and the dynamic table is empty.
        input.extend(frame(HEADERS, END_HEADERS, 1, &[0x80 | 70]));
        let mut r = AuthorityRepair::new(std::io::Cursor::new(input));
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn frames_h2_must_refuse_reach_it_unchanged() {
        let mut input = PREFACE.to_vec();
        // An oversized frame header: h2 answers FRAME_SIZE_ERROR itself.
        let mut big = frame(0x0, 0, 1, &[]);
        big[0] = 0x01; // length 65536
        input.extend(&big);
        input.extend([7u8; 20]);
        let mut r = AuthorityRepair::new(std::io::Cursor::new(input.clone()));
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, input);
    }
}
