//! crust-monitor: the per-pod monitor (see `crust_runtime::monitor::server`), as its own small
//! binary. crustd starts one per pod with a fresh exec of a sealed copy; keeping the daemon's
//! gRPC, HTTP and telemetry code out of it keeps what every pod costs in memory small.

use std::path::PathBuf;

use crust_runtime::monitor::server::{self, MonitorArgs};

fn main() {
    match parse(std::env::args().skip(1)) {
        Ok(args) => {
            // Single-threaded from here on: no tokio multi-thread runtime in this process.
            if let Err(e) = server::run(args) {
                eprintln!("crust-monitor: {e}");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("crust-monitor: {e}");
            std::process::exit(2);
        }
    }
}

/// `--pod-id ID --dir DIR [--hostname H] [--namespaces a,b] [--ready-fd N] [--max-log-line N]`,
/// as crustd passes them (an optional leading `monitor` word is accepted too).
fn parse(args: impl Iterator<Item = String>) -> Result<MonitorArgs, String> {
    let mut out = MonitorArgs {
        pod_id: String::new(),
        dir: PathBuf::new(),
        hostname: String::new(),
        namespaces: vec!["net".into(), "ipc".into(), "uts".into()],
        ready_fd: None,
        max_log_line: crust_runtime::monitor::log_writer::DEFAULT_MAX_LINE,
    };
    let mut args = args.peekable();
    if args.peek().map(String::as_str) == Some("monitor") {
        args.next();
    }
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--pod-id" => out.pod_id = value()?,
            "--dir" => out.dir = value()?.into(),
            "--hostname" => out.hostname = value()?,
            "--namespaces" => {
                out.namespaces = value()?
                    .split(',')
                    .filter(|n| !n.is_empty())
                    .map(String::from)
                    .collect()
            }
            "--ready-fd" => {
                out.ready_fd = Some(value()?.parse().map_err(|e| format!("--ready-fd: {e}"))?)
            }
            "--max-log-line" => {
                out.max_log_line = value()?
                    .parse()
                    .map_err(|e| format!("--max-log-line: {e}"))?
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if out.pod_id.is_empty() || out.dir.as_os_str().is_empty() {
        return Err("--pod-id and --dir are required".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> impl Iterator<Item = String> {
        v.iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn parses_what_crustd_passes() {
        let a = parse(args(&[
            "monitor",
            "--pod-id",
            "p",
            "--dir",
            "/run/x",
            "--hostname",
            "h",
            "--namespaces",
            "net,uts,",
            "--ready-fd",
            "3",
            "--max-log-line",
            "100",
        ]))
        .unwrap();
        assert_eq!(a.pod_id, "p");
        assert_eq!(a.namespaces, ["net", "uts"]);
        assert_eq!((a.ready_fd, a.max_log_line), (Some(3), 100));
        assert!(parse(args(&["--pod-id", "p"])).is_err());
        assert!(parse(args(&["--pod-id", "p", "--dir", "/x", "--bogus"])).is_err());
        assert!(parse(args(&["--pod-id"])).is_err());
    }
}
