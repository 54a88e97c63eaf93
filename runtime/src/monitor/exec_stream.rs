//! Streaming exec (CRI Exec): the command runs like an ExecSync tenant, but its stdio (pipes,
//! or a pty under a terminal) is handed to the daemon over the connection, so the bytes never
//! pass through this single-threaded process. The monitor stays the parent: it reaps the
//! command and reports its exit code, and kills it if the daemon hangs up first.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use crust_proto::monitor::{self, ErrorKind, Reply};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;

use super::exec;

/// A started exec: its pid, the fds for the daemon, and its exit.
type Started = (
    i32,
    Vec<OwnedFd>,
    tokio::sync::oneshot::Receiver<monitor::ExitRecord>,
);
use super::server::{Monitor, err, libcontainer_build};

impl Monitor {
    pub(super) async fn exec_stream(
        &self,
        id: &str,
        cmd: Vec<String>,
        tty: bool,
        stdin: bool,
        mut stream: UnixStream,
    ) {
        let started = self.start_exec_stream(id, cmd, tty, stdin);
        let (pid, fds, rx) = match started {
            Ok(x) => x,
            Err(reply) => {
                let _ = monitor::write_frame(&mut stream, &reply).await;
                return;
            }
        };
        if monitor::write_frame(&mut stream, &Reply::ExecStarted { pid })
            .await
            .is_err()
        {
            kill_tree(pid);
            return;
        }
        let raw: Vec<_> = fds.iter().map(|f| f.as_raw_fd()).collect();
        if let Err(e) = monitor::send_fds(stream.as_fd(), &raw) {
            tracing::warn!(err = %e, "cannot hand exec stdio to the daemon");
            kill_tree(pid);
            return;
        }
        // The daemon holds the only copies now: EOF on its side is EOF for the command.
        drop(fds);
        let mut probe = [0u8; 1];
        tokio::select! {
            rec = rx => {
                let exit_code = rec.map_or(-1, |r| r.exit_code);
                let _ = monitor::write_frame(&mut stream, &Reply::ExecExited { exit_code }).await;
            }
            _ = stream.read(&mut probe) => {
                // The daemon hung up (its client went away): nothing may be left running.
                tracing::info!(id, pid, "exec stream closed by the daemon; killing the command");
                kill_tree(pid);
            }
        }
    }

    /// Starts the command; returns its pid, the fds for the daemon, and its exit receiver.
    fn start_exec_stream(
        &self,
        id: &str,
        cmd: Vec<String>,
        tty: bool,
        stdin: bool,
    ) -> Result<Started, Reply> {
        let bundle = self.exec_target(id, &cmd)?;
        // The container's own process (user, groups, env, cwd, capabilities, no_new_privs,
        // AppArmor) with the command and terminal swapped in.
        let spec = super::exec_seccomp::bundle_spec(&bundle);
        let executor = super::exec_seccomp::ExecExecutor::for_container(&spec)
            .map_err(|m| err(ErrorKind::Failed, format!("exec in container {id}: {m}")))?;
        let mut process = Some(spec["process"].clone())
            .filter(|p| p.is_object())
            .ok_or_else(|| {
                err(
                    ErrorKind::Failed,
                    format!("container {id} has no process spec"),
                )
            })?;
        process["args"] = serde_json::json!(cmd);
        process["terminal"] = serde_json::json!(tty);
        let process_file = self.dir.join(format!("exec-{}.json", crate::ids::new_id()));
        std::fs::write(
            &process_file,
            serde_json::to_vec(&process).unwrap_or_default(),
        )
        .map_err(|e| err(ErrorKind::Failed, format!("write exec process: {e}")))?;
        let result = self.spawn_tenant(id, &process_file, executor, tty, stdin);
        let _ = std::fs::remove_file(&process_file);
        result
    }

    fn spawn_tenant(
        &self,
        id: &str,
        process_file: &Path,
        executor: super::exec_seccomp::ExecExecutor,
        tty: bool,
        stdin: bool,
    ) -> Result<Started, Reply> {
        let io = |e: std::io::Error| err(ErrorKind::Failed, format!("exec stdio: {e}"));
        let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| io(e.into()));
        let devnull = || File::open("/dev/null").map(OwnedFd::from).map_err(io);
        let mut for_daemon = Vec::new();
        let builder = ContainerBuilder::new(id.to_string(), SyscallType::default())
            .with_executor(executor)
            .with_root_path(&self.lc_root)
            .map_err(|e| err(ErrorKind::Failed, format!("exec in container {id}: {e}")))?;
        let console = if tty {
            Some(
                super::console::ConsoleSocket::bind(&self.dir, &crate::ids::new_id())
                    .map_err(io)?,
            )
        } else {
            None
        };
        let builder = if let Some(c) = &console {
            builder
                .with_stdin(devnull()?)
                .with_stdout(devnull()?)
                .with_stderr(devnull()?)
                .with_console_socket(Some(c.addr.clone()))
        } else {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            for_daemon.push(out_r);
            for_daemon.push(err_r);
            let stdin_fd = if stdin {
                let (in_r, in_w) = pipe()?;
                for_daemon.push(in_w);
                in_r
            } else {
                devnull()?
            };
            builder
                .with_stdin(stdin_fd)
                .with_stdout(out_w)
                .with_stderr(err_w)
        };
        let pid = libcontainer_build(&format!("exec in container {id}"), || {
            builder
                .as_tenant()
                .with_process(Some(process_file))
                .with_detach(true)
                .build()
        })?
        .as_raw();
        // Registered before anything yields, so the reaper cannot miss the exit.
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.execs.borrow_mut().insert(pid, tx);
        if let Some(c) = console {
            match c.receive_master() {
                Ok(master) => for_daemon.push(master),
                Err(e) => {
                    kill_tree(pid);
                    return Err(err(ErrorKind::Failed, format!("exec terminal: {e}")));
                }
            }
        }
        Ok((pid, for_daemon, rx))
    }
}

fn kill_tree(pid: i32) {
    for p in exec::process_tree(pid) {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
}
