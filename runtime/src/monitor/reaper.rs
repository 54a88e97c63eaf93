//! Reaping. The monitor is a child subreaper: container init processes are its children, and
//! orphans from inside containers are reparented to it. It reaps everything with
//! `waitpid(-1, WNOHANG)` on SIGCHLD (it runs no `tokio::process` children whose statuses that
//! could steal) and hands each status to whoever registered the pid.

use crust_proto::monitor::ExitRecord;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// Marks the calling process as a child subreaper.
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes no pointers.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Reaps every child that has exited so far: (pid, exit record).
pub fn reap_all() -> Vec<(i32, ExitRecord)> {
    let mut out = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(status) => {
                if let Some(rec) = exit_record(status) {
                    out.push(rec);
                }
            }
        }
    }
    out
}

/// Exit code per shell convention: the code itself, or 128 + signal.
pub fn exit_record(status: WaitStatus) -> Option<(i32, ExitRecord)> {
    let (pid, exit_code, signal) = match status {
        WaitStatus::Exited(pid, code) => (pid, code, None),
        WaitStatus::Signaled(pid, sig, _) => (pid, 128 + sig as i32, Some(sig as i32)),
        _ => return None,
    };
    Some((
        pid.as_raw(),
        ExitRecord {
            exit_code,
            finished_at: crate::now_nanos(),
            oom_killed: false,
            signal,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn codes_follow_shell_convention() {
        let (_, r) = exit_record(WaitStatus::Exited(Pid::from_raw(5), 3)).unwrap();
        assert_eq!((r.exit_code, r.signal), (3, None));
        let (_, r) = exit_record(WaitStatus::Signaled(
            Pid::from_raw(5),
            Signal::SIGKILL,
            false,
        ))
        .unwrap();
        assert_eq!((r.exit_code, r.signal), (137, Some(9)));
        assert!(exit_record(WaitStatus::StillAlive).is_none());
    }
}
