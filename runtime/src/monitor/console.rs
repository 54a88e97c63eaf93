//! TTY containers: libcontainer creates the pty inside the container and sends its master end
//! over a unix socket we listen on (the OCI console-socket protocol); the monitor then reads
//! the terminal's output like a stdio pipe.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A listening console socket in the pod's state dir, for one container create.
pub struct ConsoleSocket {
    listener: UnixListener,
    /// The path handed to libcontainer (short enough for sun_path).
    pub addr: PathBuf,
    file: PathBuf,
    _dir: Option<std::fs::File>,
}

impl ConsoleSocket {
    pub fn bind(dir: &Path, id: &str) -> std::io::Result<Self> {
        let name = format!("console-{}.sock", &id[..12.min(id.len())]);
        let file = dir.join(&name);
        let _ = std::fs::remove_file(&file);
        let (addr, handle) = super::socket_addr(dir, &name)?;
        let listener = UnixListener::bind(&addr)?;
        Ok(ConsoleSocket {
            listener,
            addr,
            file,
            _dir: handle,
        })
    }

    /// Accepts libcontainer's connection and receives the pty master. libcontainer connects
    /// while `build()` runs and sends the fd before the container is created, so this does not
    /// wait long; it is bounded anyway.
    pub fn receive_master(self) -> std::io::Result<OwnedFd> {
        use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
        self.listener.set_nonblocking(false)?;
        let (conn, _) = self.listener.accept()?;
        conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        let mut name = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut name)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(std::io::Error::from)?;
        for c in msg.cmsgs().map_err(std::io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = c
                && let Some(fd) = fds.first()
            {
                // SAFETY: the kernel just installed this fd in our table for us alone.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
        Err(std::io::Error::other(
            "console socket message carried no pty fd",
        ))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Non-blocking reads and writes on a pipe end or a pty master, for the monitor's container
/// stdio and the daemon's exec streams. EIO (a pty whose other side closed: the process is
/// gone) reads as end of file.
pub struct FdIo(AsyncFd<OwnedFd>);

impl FdIo {
    pub fn new(fd: OwnedFd) -> std::io::Result<Self> {
        let flags = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)
            .map_err(std::io::Error::from)?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))
            .map_err(std::io::Error::from)?;
        // SAFETY: `fd` is an open, owned fd; the AsyncFd owns it from here on, so it stays open
        // and refers to the same file until the AsyncFd is dropped.
        let fd =
            unsafe { AsyncFd::register(fd) }.map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(FdIo(fd))
    }

    /// Sets the terminal size (a pty master).
    pub fn resize(&self, width: u16, height: u16) -> std::io::Result<()> {
        set_window_size(self.0.get_ref().as_raw_fd(), width, height)
    }
}

/// TIOCSWINSZ on a pty master: the process on the other side gets SIGWINCH.
pub fn set_window_size(fd: std::os::fd::RawFd, width: u16, height: u16) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize struct from a valid pointer; fd is open.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl AsyncRead for FdIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            let mut guard = match self.0.poll_read_ready(cx) {
                Poll::Ready(Ok(g)) => g,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| {
                nix::unistd::read(fd.as_raw_fd(), unfilled).map_err(std::io::Error::from)
            }) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for FdIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        loop {
            let mut guard = match self.0.poll_write_ready(cx) {
                Poll::Ready(Ok(g)) => g,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            match guard.try_io(|fd| nix::unistd::write(fd, data).map_err(std::io::Error::from)) {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
