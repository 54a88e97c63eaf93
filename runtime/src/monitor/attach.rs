//! Attach: the container's output fanned out to every attached client as it is logged, and
//! their input written to the container's stdin pipe or pty.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crust_proto::monitor::{self, AttachFrame, ErrorKind, Reply};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::console::FdIo;
use super::log_writer::Stream;
use super::server::{Monitor, err};

/// One container's attach state.
pub struct AttachPoint {
    subscribers: RefCell<Vec<mpsc::UnboundedSender<AttachFrame>>>,
    /// The container's stdin pipe, or its pty master (also used for resizes).
    input: RefCell<Option<Rc<tokio::sync::Mutex<FdIo>>>>,
    /// The input is a pty master.
    tty: Cell<bool>,
    /// The container was created with `stdin`: attach may write to it.
    stdin: bool,
    stdin_once: bool,
}

impl AttachPoint {
    pub fn new(stdin: bool, stdin_once: bool) -> Self {
        AttachPoint {
            subscribers: RefCell::new(Vec::new()),
            input: RefCell::new(None),
            tty: Cell::new(false),
            stdin,
            stdin_once,
        }
    }

    pub fn set_stdin(&self, io: FdIo, tty: bool) {
        *self.input.borrow_mut() = Some(Rc::new(tokio::sync::Mutex::new(io)));
        self.tty.set(tty);
    }

    /// Hands a chunk of output to every attached client; clients that went away are dropped.
    pub fn output(&self, stream: Stream, data: &[u8]) {
        let mut subs = self.subscribers.borrow_mut();
        if subs.is_empty() {
            return;
        }
        let frame = match stream {
            Stream::Stdout => AttachFrame::Stdout(data.to_vec()),
            Stream::Stderr => AttachFrame::Stderr(data.to_vec()),
        };
        subs.retain(|s| s.send(frame.clone()).is_ok());
    }

    fn subscribe(&self) -> mpsc::UnboundedReceiver<AttachFrame> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers.borrow_mut().push(tx);
        rx
    }

    fn input(&self) -> Option<Rc<tokio::sync::Mutex<FdIo>>> {
        self.input.borrow().clone()
    }

    /// stdin_once: the first client to close its stdin closes the container's (a pipe; a
    /// terminal stays, since closing the master would hang up the container's session).
    fn close_stdin(&self) {
        if self.stdin_once && !self.tty.get() {
            self.input.borrow_mut().take();
        }
    }
}

impl Monitor {
    /// Serves one attach connection until the container exits or the daemon hangs up.
    pub(super) async fn attach(&self, id: &str, want_stdin: bool, mut stream: UnixStream) {
        let found = self
            .ctrs
            .borrow()
            .get(id)
            .map(|c| (c.attach.clone(), c.exit.subscribe()));
        let Some((point, mut exit)) = found else {
            let _ = monitor::write_frame(
                &mut stream,
                &err(
                    ErrorKind::NotFound,
                    format!("container {id} is not in this pod's monitor"),
                ),
            )
            .await;
            return;
        };
        if exit.borrow().is_some() {
            let _ = monitor::write_frame(
                &mut stream,
                &err(
                    ErrorKind::InvalidState,
                    format!("container {id} is not running"),
                ),
            )
            .await;
            return;
        }
        if want_stdin && !point.stdin {
            let _ = monitor::write_frame(
                &mut stream,
                &err(
                    ErrorKind::InvalidState,
                    format!("container {id} was not created with stdin"),
                ),
            )
            .await;
            return;
        }
        let mut output = point.subscribe();
        if monitor::write_frame(&mut stream, &Reply::Attached)
            .await
            .is_err()
        {
            return;
        }
        let (mut rd, mut wr) = stream.into_split();
        let tty = point.tty.get();
        let reader = {
            let point = point.clone();
            async move {
                loop {
                    // Looked up per frame and not held: closing stdin must drop the last handle.
                    match AttachFrame::read(&mut rd).await {
                        Ok(AttachFrame::Stdin(data)) if want_stdin => {
                            if let Some(i) = point.input()
                                && i.lock().await.write_all(&data).await.is_err()
                            {
                                return;
                            }
                        }
                        Ok(AttachFrame::StdinClose) if want_stdin => point.close_stdin(),
                        Ok(AttachFrame::Resize { width, height }) if tty => {
                            if let Some(i) = point.input() {
                                let _ = i.lock().await.resize(width, height);
                            }
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            }
        };
        let writer = async {
            loop {
                tokio::select! {
                    frame = output.recv() => match frame {
                        Some(f) => if wr.write_all(&f.encode()).await.is_err() { return },
                        None => return,
                    },
                    changed = exit.changed() => {
                        // Output that raced the exit is already queued: send it first.
                        while let Ok(f) = output.try_recv() {
                            if wr.write_all(&f.encode()).await.is_err() { return }
                        }
                        let code = if changed.is_ok() {
                            exit.borrow().as_ref().map_or(-1, |r| r.exit_code)
                        } else {
                            -1
                        };
                        let _ = wr.write_all(&AttachFrame::Exited(code).encode()).await;
                        return;
                    }
                }
            }
        };
        tokio::select! {
            _ = reader => {}
            _ = writer => {}
        }
        // Dropping `output` unsubscribes this client at the next chunk of output.
        tracing::debug!(id, "attach ended");
    }
}
