//! crustctl's end of a session: the local terminal (raw mode, size, SIGWINCH) and stdio wired
//! to a [`Session`], and local listeners wired to a port-forward.

use std::os::fd::{AsFd, AsRawFd};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::client::{Forwarded, PortForwarder, Session, Transport, port_forward_ws};

/// Puts the terminal on stdin into raw mode until dropped.
pub struct RawMode {
    saved: Option<nix::sys::termios::Termios>,
}

impl RawMode {
    pub fn enable() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = nix::sys::termios::tcgetattr(stdin.as_fd()) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        let _ =
            nix::sys::termios::tcsetattr(stdin.as_fd(), nix::sys::termios::SetArg::TCSANOW, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}

/// The size of the terminal on stdout, if it is one.
pub fn terminal_size() -> Option<(u16, u16)> {
    let mut ws: libc::winsize = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize struct to a valid pointer; fd 1 is open.
    let r = unsafe { libc::ioctl(std::io::stdout().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some((ws.ws_col, ws.ws_row))
}

/// Wires this process's stdio to `session` until the remote side finishes; returns the
/// remote exit code (or an error message).
pub async fn run(mut session: Session, tty: bool) -> Result<i32, String> {
    let _raw = (tty && nix::unistd::isatty(std::io::stdin().as_raw_fd()).unwrap_or(false))
        .then(RawMode::enable);
    if tty {
        if let Some(size) = terminal_size() {
            let _ = session.resize.send(size).await;
        }
        let resize = session.resize.clone();
        tokio::spawn(async move {
            let Ok(mut winch) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
            else {
                return;
            };
            while winch.recv().await.is_some() {
                if let Some(size) = terminal_size()
                    && resize.send(size).await.is_err()
                {
                    return;
                }
            }
        });
    }
    if let Some(tx) = session.stdin.take() {
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    while let Some((ch, data)) = session.output.recv().await {
        if ch == super::ws::STDERR {
            let _ = stderr.write_all(&data).await;
            let _ = stderr.flush().await;
        } else {
            let _ = stdout.write_all(&data).await;
            let _ = stdout.flush().await;
        }
    }
    session
        .status
        .await
        .unwrap_or_else(|_| Err("the session ended without a status".into()))
}

/// Copies one local TCP connection both ways through a forwarded connection.
async fn bridge(local: tokio::net::TcpStream, mut fwd: Forwarded) {
    let (mut rd, mut wr) = local.into_split();
    let tx = fwd.tx;
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    loop {
        tokio::select! {
            d = fwd.rx.recv() => match d {
                Some(d) => if wr.write_all(&d).await.is_err() { break },
                None => break,
            },
            e = &mut fwd.error => {
                if let Ok(msg) = e {
                    eprintln!("port-forward: {msg}");
                    break;
                }
            }
        }
    }
    let _ = wr.shutdown().await;
    up.abort();
}

/// Listens on 127.0.0.1:`local` and forwards each connection to `remote` in the pod. Over
/// SPDY all connections share one session; over WebSocket each gets its own (the protocol
/// carries one connection per port). `next_url` fetches a fresh URL for a new session.
pub async fn forward<F, Fut>(
    first_url: String,
    mut next_url: F,
    transport: Transport,
    listener: TcpListener,
    remote: u16,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<String>>,
{
    let spdy = match transport {
        Transport::Spdy => Some(PortForwarder::connect(&first_url).await?),
        Transport::WebSocket => None,
    };
    let mut first = Some(first_url);
    loop {
        let (conn, _) = listener.accept().await?;
        let fwd = match &spdy {
            Some(pf) => pf.open(remote).await,
            None => {
                let url = match first.take() {
                    Some(u) => u,
                    None => next_url().await?,
                };
                let mut v = port_forward_ws(&url, &[remote]).await?;
                v.remove(0)
            }
        };
        tokio::spawn(bridge(conn, fwd));
    }
}
