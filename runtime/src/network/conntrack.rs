//! Forgetting the host's UDP conntrack entries for a host port crust has just published.
//!
//! A UDP client that sent to a host port before the pod published it (a DNS or syslog client
//! retrying while the pod starts) left a conntrack entry without any address translation. Every
//! later datagram of that flow matches the entry, skips the nat table and so never reaches the
//! pod, for as long as the client keeps sending (each datagram renews the entry's 30-second
//! timeout). The `portmap` plugin and CRI-O's host-port manager delete such entries after
//! adding their rules, and so does crust, over ctnetlink: it lists the IPv4 entries and deletes
//! those of UDP to the port, by their original tuple (as the kernel gave it).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error("conntrack netlink {what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("conntrack netlink: malformed answer ({0})")]
    Malformed(&'static str),
}

const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// The nested and byte-order flags of an attribute's type.
const NLA_TYPE_MASK: u16 = 0x3fff;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_DST_PORT: u16 = 3;
const IPPROTO_UDP: u8 = 17;
/// nlmsghdr (16 bytes) and nfgenmsg (4 bytes).
const HEADER: usize = 20;

/// Deletes the host's IPv4 conntrack entries of UDP flows to `port`; returns how many.
/// Blocking (a few system calls; the listing grows with the host's flows).
pub fn forget_udp_flows(port: u16) -> Result<usize, ConntrackError> {
    let sock = Socket::open()?;
    sock.send(&request(
        IPCTNL_MSG_CT_GET,
        NLM_F_REQUEST | NLM_F_DUMP,
        1,
        &[],
    ))?;
    let mut stale = Vec::new();
    sock.read_until_done(|msg| {
        if let Some(tuple) = original_tuple(msg)?
            && udp_to_port(tuple, port)?
        {
            stale.push(tuple.to_vec());
        }
        Ok(())
    })?;
    let mut deleted = 0;
    for (seq, tuple) in (2..).zip(&stale) {
        sock.send(&request(
            IPCTNL_MSG_CT_DELETE,
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
            tuple,
        ))?;
        // ENOENT: the entry timed out or was deleted meanwhile, which is just as good.
        match sock.read_ack()? {
            0 => deleted += 1,
            e if e == -libc::ENOENT => {}
            e => {
                return Err(ConntrackError::Io {
                    what: "delete",
                    source: std::io::Error::from_raw_os_error(-e),
                });
            }
        }
    }
    Ok(deleted)
}

/// A ctnetlink request for IPv4: headers, then `attrs` as they are.
fn request(kind: u16, flags: u16, seq: u32, attrs: &[u8]) -> Vec<u8> {
    let len = HEADER + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | kind).to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: family, version 0, resource id 0.
    m.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0]);
    m.extend_from_slice(attrs);
    m
}

/// One netlink attribute.
#[derive(Clone, Copy)]
struct Attr<'a> {
    /// The type, without the nested and byte-order flags.
    kind: u16,
    payload: &'a [u8],
    /// Header and payload, as it can be sent back.
    whole: &'a [u8],
}

/// The attributes in `buf`.
fn attributes(mut buf: &[u8]) -> impl Iterator<Item = Result<Attr<'_>, ConntrackError>> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            buf = &[];
            return Some(Err(ConntrackError::Malformed("attribute length")));
        }
        let attr = Attr {
            kind,
            payload: &buf[4..len],
            whole: &buf[..len],
        };
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
        Some(Ok(attr))
    })
}

fn find(buf: &[u8], kind: u16) -> Result<Option<Attr<'_>>, ConntrackError> {
    for a in attributes(buf) {
        let a = a?;
        if a.kind == kind {
            return Ok(Some(a));
        }
    }
    Ok(None)
}

/// The CTA_TUPLE_ORIG attribute (whole, ready to send back) of one listed entry.
fn original_tuple(msg: &[u8]) -> Result<Option<&[u8]>, ConntrackError> {
    let attrs = msg
        .get(HEADER..)
        .ok_or(ConntrackError::Malformed("short message"))?;
    Ok(find(attrs, CTA_TUPLE_ORIG)?.map(|a| a.whole))
}

/// Whether an original tuple is UDP to `port`.
fn udp_to_port(tuple: &[u8], port: u16) -> Result<bool, ConntrackError> {
    let Some(proto) = find(tuple.get(4..).unwrap_or_default(), CTA_TUPLE_PROTO)? else {
        return Ok(false);
    };
    let num = find(proto.payload, CTA_PROTO_NUM)?.and_then(|a| a.payload.first().copied());
    let dst = find(proto.payload, CTA_PROTO_DST_PORT)?
        .and_then(|a| Some(u16::from_be_bytes(a.payload.get(..2)?.try_into().ok()?)));
    Ok(num == Some(IPPROTO_UDP) && dst == Some(port))
}

struct Socket(OwnedFd);

impl Socket {
    fn open() -> Result<Self, ConntrackError> {
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(ConntrackError::Io {
                what: "socket",
                source: std::io::Error::last_os_error(),
            });
        }
        // SAFETY: fd is a descriptor this function just opened and nothing else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn send(&self, msg: &[u8]) -> Result<(), ConntrackError> {
        // SAFETY: the kernel's address (all zeros but the family) is a valid sockaddr_nl.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: msg and kernel outlive the call; the lengths are theirs.
        let n = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                std::ptr::from_ref(&kernel).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if n < 0 {
            return Err(ConntrackError::Io {
                what: "send",
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// One datagram of messages.
    fn recv<'b>(&self, buf: &'b mut [u8]) -> Result<&'b [u8], ConntrackError> {
        // SAFETY: buf is writable for its whole length during the call.
        let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(ConntrackError::Io {
                what: "receive",
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(&buf[..n as usize])
    }

    /// Hands each message of a dump to `each` until the kernel says it is done.
    fn read_until_done(
        &self,
        mut each: impl FnMut(&[u8]) -> Result<(), ConntrackError>,
    ) -> Result<(), ConntrackError> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let data = self.recv(&mut buf)?;
            for msg in messages(data) {
                let (kind, msg) = msg?;
                match kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => match error_code(msg)? {
                        0 => {}
                        e => {
                            return Err(ConntrackError::Io {
                                what: "list",
                                source: std::io::Error::from_raw_os_error(-e),
                            });
                        }
                    },
                    _ => each(msg)?,
                }
            }
        }
    }

    /// The error code of the acknowledgement of one request (0: done).
    fn read_ack(&self) -> Result<i32, ConntrackError> {
        let mut buf = vec![0u8; 4096];
        loop {
            let data = self.recv(&mut buf)?;
            for msg in messages(data) {
                let (kind, msg) = msg?;
                if kind == NLMSG_ERROR {
                    return error_code(msg);
                }
            }
        }
    }
}

/// The netlink messages of one datagram, as (type, the whole message).
fn messages(mut data: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), ConntrackError>> {
    std::iter::from_fn(move || {
        if data.len() < 16 {
            return None;
        }
        let len = u32::from_ne_bytes(data[..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        if len < 16 || len > data.len() {
            data = &[];
            return Some(Err(ConntrackError::Malformed("message length")));
        }
        let msg = &data[..len];
        data = &data[len.next_multiple_of(4).min(data.len())..];
        Some(Ok((kind, msg)))
    })
}

/// The (negative errno or 0) code of an NLMSG_ERROR message.
fn error_code(msg: &[u8]) -> Result<i32, ConntrackError> {
    msg.get(16..20)
        .map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes")))
        .ok_or(ConntrackError::Malformed("short error message"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(payload);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    const NESTED: u16 = 0x8000;

    /// An original tuple as the kernel lists it: addresses, then protocol and ports.
    fn tuple(proto: u8, dst_port: u16) -> Vec<u8> {
        let ip = [attr(1, &[127, 0, 0, 1]), attr(2, &[127, 0, 0, 1])].concat();
        let ports = [
            attr(CTA_PROTO_NUM, &[proto]),
            attr(2, &40000u16.to_be_bytes()),
            attr(CTA_PROTO_DST_PORT, &dst_port.to_be_bytes()),
        ]
        .concat();
        attr(
            CTA_TUPLE_ORIG | NESTED,
            &[
                attr(1 | NESTED, &ip),
                attr(CTA_TUPLE_PROTO | NESTED, &ports),
            ]
            .concat(),
        )
    }

    fn listed(attrs: &[u8]) -> Vec<u8> {
        request(0, 0, 0, attrs)
    }

    #[test]
    fn finds_udp_flows_to_the_port_and_keeps_their_tuple_whole() {
        let orig = tuple(IPPROTO_UDP, 5353);
        // The reply tuple and status come after it, as in the kernel's listing.
        let msg = listed(&[orig.clone(), tuple(IPPROTO_UDP, 40000), attr(3, &[0; 4])].concat());
        let found = original_tuple(&msg).unwrap().unwrap();
        assert_eq!(found, &orig[..]);
        assert!(udp_to_port(found, 5353).unwrap());
        assert!(!udp_to_port(found, 53).unwrap());
        let tcp = tuple(6, 5353);
        assert!(!udp_to_port(&tcp, 5353).unwrap());
    }

    #[test]
    fn malformed_lengths_are_errors_not_panics() {
        let mut msg = listed(&tuple(IPPROTO_UDP, 53));
        msg[HEADER] = 0xff; // the tuple's length, past the message's end
        assert!(original_tuple(&msg).is_err());
        let truncated = [16u8, 0, 0, 0, 3, 0];
        assert_eq!(messages(&truncated).count(), 0);
        let mut bad = request(0, 0, 0, &[]);
        bad[0] = 200;
        assert!(messages(&bad).next().unwrap().is_err());
        assert!(original_tuple(&bad[..10]).is_err());
    }

    #[test]
    fn deletion_requests_carry_the_tuple_for_ipv4() {
        let orig = tuple(IPPROTO_UDP, 53);
        let m = request(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, 7, &orig);
        assert_eq!(
            u32::from_ne_bytes(m[..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 0x0102);
        assert_eq!(m[16], libc::AF_INET as u8);
        assert_eq!(&m[HEADER..], &orig[..]);
    }
}
