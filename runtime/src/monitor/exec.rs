//! ExecSync helpers for the monitor: output collection with a cap, and finding an exec'd
//! process's descendants so a timeout kills the whole tree it started.

use std::cell::RefCell;
use std::rc::Rc;

use tokio::io::AsyncReadExt;

/// CRI asks runtimes to cap each of ExecSync's stdout and stderr (CVE-2022-31030).
pub const MAX_EXEC_OUTPUT: usize = 16 << 20;

/// Reads a pipe to EOF into a shared buffer, keeping the first `cap` bytes and draining the rest
/// so the writer never blocks on a full pipe.
pub fn collect(
    mut rx: tokio::net::unix::pipe::Receiver,
    cap: usize,
) -> (Rc<RefCell<Vec<u8>>>, tokio::task::JoinHandle<()>) {
    let buf = Rc::new(RefCell::new(Vec::new()));
    let out = buf.clone();
    let task = tokio::task::spawn_local(async move {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match rx.read(&mut chunk).await {
                Ok(0) => return,
                Ok(n) => {
                    let mut b = out.borrow_mut();
                    let room = cap.saturating_sub(b.len());
                    b.extend_from_slice(&chunk[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    });
    (buf, task)
}

/// `pid` and every process descended from it, children first found by walking /proc.
pub fn process_tree(pid: i32) -> Vec<i32> {
    let mut parents: Vec<(i32, i32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // The command name may contain spaces and parentheses; fields resume after the last ')'.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|v| v.parse().ok()) {
                parents.push((p, ppid));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let cur = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == cur).map(|(p, _)| *p));
        i += 1;
    }
    tree
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_tree_finds_children() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 5 & sleep 5 & wait"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let mut tree = vec![];
        for _ in 0..100 {
            tree = process_tree(pid);
            if tree.len() >= 3 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(tree[0], pid);
        assert!(tree.len() >= 3, "{tree:?}");
        for p in &tree {
            // SAFETY: killing processes this test started.
            unsafe { libc::kill(*p, libc::SIGKILL) };
        }
        let _ = child.wait();
    }
}
