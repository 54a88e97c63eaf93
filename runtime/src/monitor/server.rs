//! The monitor process. Single-threaded on purpose: libcontainer's `build()` clones the calling
//! process, which deadlocks when other threads hold allocator locks. The request loop runs on a
//! current-thread tokio runtime that never spawns blocking threads, and `create` checks that
//! the process really has one thread before it calls libcontainer.
//!
//! Nothing here writes to fd 2: the monitor logs to a file in the pod's state dir, because
//! libcontainer's log lines would otherwise leak into container output.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use crust_proto::monitor::{
    self, CreateRequest, ErrorKind, ExecResult, ExitRecord, Reply, Request,
};
use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use super::log_writer::{self, LineSplitter, Stream};
use super::{LOG_FILE, PID_FILE, SOCKET_FILE, exec, pin, reaper};

/// How the daemon starts a monitor (`crustd monitor …`).
#[derive(Debug, Clone)]
pub struct MonitorArgs {
    pub pod_id: String,
    /// The pod's state dir (0700): socket, log, pinned namespaces, libcontainer state.
    pub dir: PathBuf,
    pub hostname: String,
    /// Namespaces to create and pin for the pod (`net`, `ipc`, `uts`).
    pub namespaces: Vec<String>,
    /// fd on which to report readiness ("ok") or a startup error, then close.
    pub ready_fd: Option<i32>,
    pub max_log_line: usize,
}

/// The container's log file, shared by its stdout and stderr pumps and swapped on reopen.
type SharedLog = Rc<RefCell<Option<File>>>;

pub(super) struct Ctr {
    pub(super) pid: i32,
    pub(super) exit: watch::Sender<Option<ExitRecord>>,
    exit_file: PathBuf,
    pumps: Vec<tokio::task::JoinHandle<()>>,
    log_path: String,
    log: SharedLog,
    pub(super) bundle: PathBuf,
    pub(super) attach: Rc<super::attach::AttachPoint>,
}

pub(super) struct Monitor {
    pub(super) lc_root: PathBuf,
    pub(super) dir: PathBuf,
    max_log_line: usize,
    pub(super) ctrs: RefCell<HashMap<String, Ctr>>,
    /// Exec'd processes being waited for, by pid.
    pub(super) execs: RefCell<HashMap<i32, tokio::sync::oneshot::Sender<ExitRecord>>>,
    shutdown: watch::Sender<bool>,
    socket: PathBuf,
}

/// Runs the monitor until the pod is shut down. Call it before any other thread exists.
pub fn run(args: MonitorArgs) -> std::io::Result<()> {
    // Executed from a sealed memfd, the process would be named after the fd number in ps and
    // top; name it for what it is.
    let _ = nix::sys::prctl::set_name(c"crust-monitor");
    let ready = args.ready_fd.map(|fd| {
        // SAFETY: the daemon passes this fd open for us and nothing else in the process owns it.
        File::from(unsafe { OwnedFd::from_raw_fd(fd) })
    });
    match setup(&args) {
        Ok(listener_std) => {
            if let Some(mut r) = ready {
                use std::io::Write;
                let _ = r.write_all(b"ok");
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, serve(args, listener_std))
        }
        Err(e) => {
            tracing::error!(err = %e, "monitor startup failed");
            if let Some(mut r) = ready {
                use std::io::Write;
                let _ = r.write_all(e.to_string().as_bytes());
            }
            Err(e)
        }
    }
}

fn setup(args: &MonitorArgs) -> std::io::Result<std::os::unix::net::UnixListener> {
    init_logging(&args.dir.join(LOG_FILE));
    tracing::info!(pod = %args.pod_id, pid = std::process::id(), "monitor starting");
    reaper::become_subreaper()?;
    let pinned: Vec<String> = args
        .namespaces
        .iter()
        .filter(|n| *n != "pid")
        .cloned()
        .collect();
    pin::pin_namespaces(&args.dir, &args.hostname, &pinned)?;
    if args.namespaces.iter().any(|n| n == "pid")
        && !pin::is_pinned(&pin::ns_path(&args.dir, "pid"))
    {
        let pid = super::pod_init::start(&args.dir)?;
        tracing::info!(pid, "pod PID namespace started");
    }
    std::fs::create_dir_all(args.dir.join("lc"))?;
    let sock = args.dir.join(SOCKET_FILE);
    let _ = std::fs::remove_file(&sock);
    let (addr, _dir_handle) = super::socket_addr(&args.dir, SOCKET_FILE)?;
    let listener = std::os::unix::net::UnixListener::bind(&addr)?;
    std::fs::set_permissions(&sock, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    crate::fsutil::write_atomic_unsynced(
        &args.dir.join(PID_FILE),
        std::process::id().to_string().as_bytes(),
    )?;
    Ok(listener)
}

fn init_logging(path: &Path) {
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    else {
        return;
    };
    // libcontainer warns once per container for every syscall name of the default seccomp
    // profile this kernel's libseccomp does not know (skipped by design): not worth a line.
    let filter = std::env::var("CRUST_MONITOR_LOG").unwrap_or_else(|_| {
        "info,libcgroups=error,libcontainer=warn,libcontainer::seccomp=error".to_string()
    });
    // Targets, not EnvFilter: the same "level,target=level" syntax without the regex engine,
    // which would cost every pod's monitor memory.
    let targets: tracing_subscriber::filter::Targets = filter.parse().unwrap_or_else(|_| {
        tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO)
    });
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::sync::Mutex::new(file))
                .with_ansi(false),
        )
        .with(targets)
        .try_init();
}

async fn serve(
    args: MonitorArgs,
    listener: std::os::unix::net::UnixListener,
) -> std::io::Result<()> {
    let listener = UnixListener::from_std(listener)?;
    let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
    // The daemon may be stopped with a signal to its process group; the monitor is in its own
    // session, but ignore SIGTERM/SIGINT/SIGHUP anyway: only a Shutdown request ends a pod.
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let (shutdown, mut shutdown_rx) = watch::channel(false);
    let mon = Rc::new(Monitor {
        lc_root: args.dir.join("lc"),
        dir: args.dir.clone(),
        max_log_line: args.max_log_line,
        ctrs: RefCell::new(HashMap::new()),
        execs: RefCell::new(HashMap::new()),
        shutdown,
        socket: args.dir.join(SOCKET_FILE),
    });
    loop {
        tokio::select! {
            conn = listener.accept() => match conn {
                Ok((stream, _)) => {
                    let mon = mon.clone();
                    tokio::task::spawn_local(async move { handle_conn(mon, stream).await });
                }
                Err(e) => tracing::warn!(err = %e, "accept failed"),
            },
            _ = sigchld.recv() => mon.on_sigchld(),
            _ = sigterm.recv() => tracing::info!("ignoring SIGTERM; the pod ends with a shutdown request"),
            _ = sighup.recv() => {},
            _ = shutdown_rx.changed() => break,
        }
    }
    drop(listener);
    // Let the reply to the shutdown request go out.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let _ = std::fs::remove_file(args.dir.join(SOCKET_FILE));
    let _ = std::fs::remove_file(args.dir.join(PID_FILE));
    tracing::info!("monitor exiting");
    Ok(())
}

async fn handle_conn(mon: Rc<Monitor>, mut stream: UnixStream) {
    let req: Request = match monitor::read_frame(&mut stream).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(err = %e, "bad request");
            return;
        }
    };
    tracing::debug!(?req, "request");
    let reply = match req {
        // These two keep the connection for their whole session.
        Request::ExecStream {
            id,
            cmd,
            tty,
            stdin,
        } => return mon.exec_stream(&id, cmd, tty, stdin, stream).await,
        Request::Attach { id, stdin } => return mon.attach(&id, stdin, stream).await,
        Request::Create(c) => mon.create(c),
        Request::Start { id } => mon.start(&id),
        Request::Stop {
            id,
            signal,
            timeout_secs,
        } => mon.stop(&id, signal, timeout_secs).await,
        Request::Delete { id } => mon.delete(&id).await,
        Request::ExecSync {
            id,
            cmd,
            timeout_secs,
            max_output,
        } => mon.exec_sync(&id, cmd, timeout_secs, max_output).await,
        Request::ReopenLog { id } => mon.reopen_log(&id),
        Request::Ping => Reply::Pong {
            pid: std::process::id() as i32,
            containers: mon.ctrs.borrow().keys().cloned().collect(),
        },
        Request::Shutdown => {
            let ids: Vec<String> = mon.ctrs.borrow().keys().cloned().collect();
            for id in ids {
                let _ = mon.delete(&id).await;
            }
            // Containers are gone; the pod's PID namespace (if any) ends with its init.
            super::pod_init::stop(&mon.dir);
            // New connections must fail from now on: the daemon treats a missing socket as
            // "monitor gone", while a connection nobody serves would hang or reset.
            let _ = std::fs::remove_file(&mon.socket);
            let _ = mon.shutdown.send(true);
            Reply::Ok
        }
    };
    if let Err(e) = monitor::write_frame(&mut stream, &reply).await {
        tracing::warn!(err = %e, "reply failed");
    }
    // Keep the connection until the client has read the reply and closed it.
    let mut sink = [0u8; 1];
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut sink)).await;
}

/// How to report a libcontainer failure: the container's init found nothing it could execute
/// (the command is not in the image's PATH, is not executable, or there is no PATH) is the
/// caller's input, as runc's "executable file not found" is; anything else is a failure.
///
/// By its text: libcontainer's typed error for this (its channel's `ExecError`) is wrapped in
/// `CreateContainerError`, whose fields are private and which names no source.
fn failure_kind(e: &dyn std::error::Error) -> ErrorKind {
    if e.to_string().contains("exec process failed with error") {
        ErrorKind::InvalidArgument
    } else {
        ErrorKind::Failed
    }
}

/// Runs one libcontainer build (a container's create, or an exec) in this process, which
/// must be single-threaded: libcontainer clones it. What a failed build left open is closed
/// (fds.rs) and the failure becomes the reply, `what` naming the operation.
pub(super) fn libcontainer_build<T, E: std::error::Error>(
    what: &str,
    build: impl FnOnce() -> Result<T, E>,
) -> Result<T, Reply> {
    if thread_count() != 1 {
        return Err(err(
            ErrorKind::Failed,
            format!("monitor is not single-threaded; refusing to {what}"),
        ));
    }
    super::fds::closing_leaks_on_failure(build)
        .map_err(|e| err(failure_kind(&e), format!("{what}: {e}")))
}

pub(super) fn err(kind: ErrorKind, message: impl Into<String>) -> Reply {
    Reply::Error {
        kind,
        message: message.into(),
    }
}

fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:").map(|v| v.trim().parse().ok()))
                .flatten()
        })
        .unwrap_or(0)
}

impl Monitor {
    fn create(self: &Rc<Self>, req: CreateRequest) -> Reply {
        if self.ctrs.borrow().contains_key(&req.id) {
            return err(
                ErrorKind::InvalidState,
                format!("container {} already exists in this pod", req.id),
            );
        }
        let log: SharedLog = Rc::new(RefCell::new(None));
        if !req.log_path.is_empty() {
            match log_writer::open_log(Path::new(&req.log_path)) {
                Ok(f) => *log.borrow_mut() = Some(f),
                Err(e) => {
                    // A directory (or a file where a directory should be) in the way is the
                    // log path the caller chose.
                    let kind = match e.raw_os_error() {
                        Some(libc::EISDIR | libc::ENOTDIR | libc::ELOOP) => {
                            ErrorKind::InvalidArgument
                        }
                        _ => ErrorKind::Failed,
                    };
                    return err(kind, format!("open log {}: {e}", req.log_path));
                }
            }
        }
        let pipes = (|| -> std::io::Result<_> {
            let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            // A container created with `stdin` (and no terminal) reads a pipe that attach
            // writes to; otherwise /dev/null.
            let (stdin, stdin_w): (OwnedFd, Option<OwnedFd>) = if req.stdin && !req.tty {
                let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
                (r, Some(w))
            } else {
                (File::open("/dev/null")?.into(), None)
            };
            Ok((out_r, out_w, err_r, err_w, stdin, stdin_w))
        })();
        let (out_r, out_w, err_r, err_w, devnull, stdin_w) = match pipes {
            Ok(p) => p,
            Err(e) => return err(ErrorKind::Failed, format!("stdio pipes: {e}")),
        };
        let attach = Rc::new(super::attach::AttachPoint::new(req.stdin, req.stdin_once));
        if let Some(w) = stdin_w {
            match super::console::FdIo::new(w) {
                Ok(io) => attach.set_stdin(io, false),
                Err(e) => return err(ErrorKind::Failed, format!("stdin pipe: {e}")),
            }
        }
        let console = if req.tty {
            match super::console::ConsoleSocket::bind(&self.dir, &req.id) {
                Ok(c) => Some(c),
                Err(e) => return err(ErrorKind::Failed, format!("console socket: {e}")),
            }
        } else {
            None
        };
        let console_addr = console.as_ref().map(|c| c.addr.clone());
        let built = libcontainer_build("create container", || {
            ContainerBuilder::new(req.id.clone(), SyscallType::default())
                .with_executor(DefaultExecutor {})
                .with_root_path(&self.lc_root)
                .and_then(|b| {
                    b.with_stdin(devnull)
                        .with_stdout(out_w)
                        .with_stderr(err_w)
                        .with_console_socket(console_addr)
                        .validate_id()
                })
                .and_then(|b| {
                    b.as_init(&req.bundle)
                        .with_systemd(false)
                        .with_detach(true)
                        .build()
                })
        });
        let container = match built {
            Ok(c) => c,
            Err(reply) => {
                tracing::error!(id = %req.id, ?reply, "create failed");
                // libcontainer may have left its state dir behind; it is ours to clear.
                let _ = std::fs::remove_dir_all(self.lc_root.join(&req.id));
                return reply;
            }
        };
        let Some(pid) = container.pid().map(|p| p.as_raw()) else {
            return err(ErrorKind::Failed, "libcontainer returned no pid");
        };
        let mut pumps = Vec::new();
        if let Some(console) = console {
            // A terminal merges stdout and stderr; CRI logs it as stdout.
            let received = console.receive_master().and_then(|master| {
                // A second handle on the master carries attach's input and resizes.
                let input = super::console::FdIo::new(master.try_clone()?)?;
                Ok((super::console::FdIo::new(master)?, input))
            });
            match received {
                Ok((pty, input)) => {
                    attach.set_stdin(input, true);
                    pumps.push(tokio::task::spawn_local(pump(
                        pty,
                        Stream::Stdout,
                        log.clone(),
                        attach.clone(),
                        self.max_log_line,
                    )))
                }
                Err(e) => {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    return err(
                        ErrorKind::Failed,
                        format!("receive the container's terminal: {e}"),
                    );
                }
            }
        }
        for (fd, stream) in [(out_r, Stream::Stdout), (err_r, Stream::Stderr)] {
            match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
                Ok(rx) => pumps.push(tokio::task::spawn_local(pump(
                    rx,
                    stream,
                    log.clone(),
                    attach.clone(),
                    self.max_log_line,
                ))),
                Err(e) => return err(ErrorKind::Failed, format!("watch stdio: {e}")),
            }
        }
        let (exit, _) = watch::channel(None);
        self.ctrs.borrow_mut().insert(
            req.id.clone(),
            Ctr {
                pid,
                exit,
                exit_file: PathBuf::from(req.exit_file),
                pumps,
                log_path: req.log_path.clone(),
                log,
                bundle: PathBuf::from(&req.bundle),
                attach,
            },
        );
        tracing::info!(id = %req.id, pid, "container created");
        Reply::Created { pid }
    }

    fn start(&self, id: &str) -> Reply {
        if !self.ctrs.borrow().contains_key(id) {
            return err(
                ErrorKind::NotFound,
                format!("container {id} is not in this pod's monitor"),
            );
        }
        match Container::load(self.lc_root.join(id)).and_then(|mut c| c.start()) {
            Ok(()) => {
                tracing::info!(id, "container started");
                Reply::Ok
            }
            Err(e) => err(
                ErrorKind::InvalidState,
                format!("start container {id}: {e}"),
            ),
        }
    }

    fn on_sigchld(self: &Rc<Self>) {
        for (pid, rec) in reaper::reap_all() {
            if let Some(waiter) = self.execs.borrow_mut().remove(&pid) {
                let _ = waiter.send(rec);
                continue;
            }
            let found = self
                .ctrs
                .borrow_mut()
                .iter_mut()
                .find(|(_, c)| c.pid == pid)
                .map(|(id, c)| {
                    (
                        id.clone(),
                        std::mem::take(&mut c.pumps),
                        c.exit.clone(),
                        c.exit_file.clone(),
                        c.bundle.clone(),
                    )
                });
            let Some((id, pumps, exit, exit_file, bundle)) = found else {
                tracing::debug!(pid, "reaped a process that is not a container init");
                continue;
            };
            let mut rec = rec;
            // The container's cgroup still exists (it goes with Delete): ask it whether the
            // kernel's OOM killer ran there, for the init or any of its children.
            rec.oom_killed = super::oom::oom_killed(&bundle);
            tracing::info!(%id, pid, code = rec.exit_code, oom = rec.oom_killed, "container exited");
            tokio::task::spawn_local(async move {
                // The init is gone, so its PID namespace is too and the pipes reach EOF soon; wait
                // for the last output so the log is complete before the exit becomes visible.
                for p in pumps {
                    let _ = tokio::time::timeout(Duration::from_secs(5), p).await;
                }
                if let Err(e) = crate::fsutil::write_json_atomic_unsynced(&exit_file, &rec) {
                    tracing::error!(%id, err = %e, "cannot record exit");
                }
                exit.send_replace(Some(rec));
            });
        }
    }

    async fn wait_exit(&self, id: &str, limit: Duration) -> Option<ExitRecord> {
        let mut rx = self.ctrs.borrow().get(id)?.exit.subscribe();
        let res = tokio::time::timeout(limit, rx.wait_for(|e| e.is_some())).await;
        match res {
            Ok(Ok(v)) => v.clone(),
            _ => None,
        }
    }

    fn signal(&self, id: &str, sig: Signal) {
        let pid = self.ctrs.borrow().get(id).map(|c| c.pid);
        if let Some(pid) = pid
            && let Err(e) = kill(Pid::from_raw(pid), sig)
            && e != nix::errno::Errno::ESRCH
        {
            tracing::warn!(id, pid, err = %e, "kill failed");
        }
    }

    /// The bundle of running container `id`, to exec `cmd` in; else the reply saying why not.
    pub(super) fn exec_target(&self, id: &str, cmd: &[String]) -> Result<PathBuf, Reply> {
        let ctrs = self.ctrs.borrow();
        let c = ctrs.get(id).ok_or_else(|| {
            err(
                ErrorKind::NotFound,
                format!("container {id} is not in this pod's monitor"),
            )
        })?;
        if c.exit.borrow().is_some() {
            return Err(err(
                ErrorKind::InvalidState,
                format!("container {id} is not running"),
            ));
        }
        if cmd.is_empty() {
            return Err(err(ErrorKind::InvalidArgument, "exec needs a command"));
        }
        Ok(c.bundle.clone())
    }

    fn exited(&self, id: &str) -> Option<Option<ExitRecord>> {
        self.ctrs.borrow().get(id).map(|c| c.exit.borrow().clone())
    }

    async fn stop(&self, id: &str, signal: i32, timeout_secs: i64) -> Reply {
        match self.exited(id) {
            None => {
                return err(
                    ErrorKind::NotFound,
                    format!("container {id} is not in this pod's monitor"),
                );
            }
            Some(Some(rec)) => return Reply::Exited(rec),
            Some(None) => {}
        }
        if timeout_secs > 0 {
            let sig = Signal::try_from(signal).unwrap_or(Signal::SIGTERM);
            self.signal(id, sig);
            if let Some(rec) = self
                .wait_exit(id, Duration::from_secs(timeout_secs as u64))
                .await
            {
                return Reply::Exited(rec);
            }
            tracing::info!(id, timeout_secs, "grace period over; killing");
        }
        self.signal(id, Signal::SIGKILL);
        match self.wait_exit(id, Duration::from_secs(30)).await {
            Some(rec) => Reply::Exited(rec),
            None => err(
                ErrorKind::Failed,
                format!("container {id} did not die after SIGKILL"),
            ),
        }
    }

    async fn delete(&self, id: &str) -> Reply {
        match self.exited(id) {
            None => {}
            Some(None) => {
                self.signal(id, Signal::SIGKILL);
                if self.wait_exit(id, Duration::from_secs(30)).await.is_none() {
                    return err(
                        ErrorKind::Failed,
                        format!("container {id} did not die after SIGKILL"),
                    );
                }
            }
            Some(Some(_)) => {}
        }
        self.ctrs.borrow_mut().remove(id);
        let state = self.lc_root.join(id);
        if state.exists() {
            match Container::load(state.clone()).and_then(|mut c| c.delete(true)) {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(id, err = %e, "libcontainer delete failed; removing its state");
                    let _ = std::fs::remove_dir_all(&state);
                }
            }
        }
        Reply::Ok
    }
}

impl Monitor {
    /// Runs `cmd` inside container `id` (its namespaces, cgroup, user, env and cwd, through
    /// libcontainer's tenant builder) and collects its output.
    async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout_secs: i64,
        max_output: usize,
    ) -> Reply {
        let bundle = match self.exec_target(id, &cmd) {
            Ok(b) => b,
            Err(reply) => return reply,
        };
        let pipes = (|| -> std::io::Result<_> {
            let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            Ok((out_r, out_w, err_r, err_w, File::open("/dev/null")?))
        })();
        let (out_r, out_w, err_r, err_w, devnull) = match pipes {
            Ok(p) => p,
            Err(e) => return err(ErrorKind::Failed, format!("exec pipes: {e}")),
        };
        // The tenant builder takes the spec's env but not its user or cwd: pass those on, so
        // the command runs as the container's process does.
        let spec = super::exec_seccomp::bundle_spec(&bundle);
        let executor = match super::exec_seccomp::ExecExecutor::for_container(&spec) {
            Ok(e) => e,
            Err(m) => return err(ErrorKind::Failed, format!("exec in container {id}: {m}")),
        };
        let process = &spec["process"];
        let uid = process["user"]["uid"].as_u64().map(|v| v as u32);
        let gid = process["user"]["gid"].as_u64().map(|v| v as u32);
        let gids: Vec<u32> = process["user"]["additionalGids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|g| g.as_u64().map(|g| g as u32))
                    .collect()
            })
            .unwrap_or_default();
        let cwd = process["cwd"].as_str().map(PathBuf::from);
        let built = libcontainer_build(&format!("exec in container {id}"), || {
            ContainerBuilder::new(id.to_string(), SyscallType::default())
                .with_executor(executor)
                .with_root_path(&self.lc_root)
                .map(|b| b.with_stdin(devnull).with_stdout(out_w).with_stderr(err_w))
                .and_then(|b| {
                    b.as_tenant()
                        .with_container_args(cmd)
                        .with_user(uid)
                        .with_group(gid)
                        .with_additional_gids(gids)
                        .with_cwd(cwd)
                        .with_detach(true)
                        .build()
                })
        });
        let pid = match built {
            Ok(p) => p.as_raw(),
            Err(reply) => return reply,
        };
        // Registered before this task yields, so the reaper cannot miss the exit.
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.execs.borrow_mut().insert(pid, tx);
        let (out, out_task) = match tokio::net::unix::pipe::Receiver::from_owned_fd(out_r) {
            Ok(r) => exec::collect(r, max_output),
            Err(e) => return err(ErrorKind::Failed, format!("exec stdout: {e}")),
        };
        let (errb, err_task) = match tokio::net::unix::pipe::Receiver::from_owned_fd(err_r) {
            Ok(r) => exec::collect(r, max_output),
            Err(e) => return err(ErrorKind::Failed, format!("exec stderr: {e}")),
        };
        let limit = if timeout_secs > 0 {
            Duration::from_secs(timeout_secs as u64)
        } else {
            Duration::MAX
        };
        let (exit_code, timed_out) = match tokio::time::timeout(limit, rx).await {
            Ok(Ok(rec)) => {
                // The output is complete at EOF, unless a background child still holds the
                // pipes: give it a moment, then answer with what came.
                let aborts = [out_task.abort_handle(), err_task.abort_handle()];
                let _ = tokio::time::timeout(Duration::from_millis(500), async {
                    let _ = out_task.await;
                    let _ = err_task.await;
                })
                .await;
                aborts.iter().for_each(tokio::task::AbortHandle::abort);
                (rec.exit_code, false)
            }
            _ => {
                for p in exec::process_tree(pid) {
                    let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                }
                out_task.abort();
                err_task.abort();
                (-1, true)
            }
        };
        let stdout = std::mem::take(&mut *out.borrow_mut());
        let stderr = std::mem::take(&mut *errb.borrow_mut());
        Reply::ExecResult(ExecResult {
            exit_code,
            stdout,
            stderr,
            timed_out,
        })
    }

    fn reopen_log(&self, id: &str) -> Reply {
        let ctrs = self.ctrs.borrow();
        let Some(c) = ctrs.get(id) else {
            return err(
                ErrorKind::NotFound,
                format!("container {id} is not in this pod's monitor"),
            );
        };
        if c.exit.borrow().is_some() {
            return err(
                ErrorKind::InvalidState,
                format!("container {id} is not running"),
            );
        }
        if c.log_path.is_empty() {
            return err(
                ErrorKind::InvalidState,
                format!("container {id} has no log path"),
            );
        }
        match log_writer::open_log(Path::new(&c.log_path)) {
            Ok(f) => {
                *c.log.borrow_mut() = Some(f);
                Reply::Ok
            }
            Err(e) => err(ErrorKind::Failed, format!("reopen log {}: {e}", c.log_path)),
        }
    }
}

/// Copies one stdio pipe into the CRI log until EOF.
async fn pump(
    mut rx: impl tokio::io::AsyncRead + Unpin,
    stream: Stream,
    log: SharedLog,
    attach: Rc<super::attach::AttachPoint>,
    max_line: usize,
) {
    let mut splitter = LineSplitter::new(max_line);
    let mut buf = vec![0u8; 32 * 1024];
    let mut records: Vec<(Vec<u8>, bool)> = Vec::new();
    loop {
        let n = match rx.read(&mut buf).await {
            Ok(0) => 0,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        if n > 0 {
            attach.output(stream, &buf[..n]);
        }
        let mut emit = |c: &[u8], p: bool| records.push((c.to_vec(), p));
        if n == 0 {
            splitter.finish(&mut emit);
        } else {
            splitter.feed(&buf[..n], &mut emit);
        }
        if let Some(file) = log.borrow_mut().as_mut()
            && !records.is_empty()
            && let Err(e) = log_writer::write_records(file, stream, &records)
        {
            tracing::warn!(err = %e, "log write failed");
        }
        records.clear();
        if n == 0 {
            return;
        }
    }
}
