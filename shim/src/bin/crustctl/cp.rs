//! cp between the host and a container. The container's side runs `tar` in the container
//! (so every path resolves inside its own root, never through a link onto the host), streamed
//! over a CRI Exec session; the host's side is the host's tar.

use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, anyhow, bail};
use crust_proto::cri;
use crust_shim::client::CriClient;
use crust_shim::streaming::StreamOptions;
use crust_shim::streaming::client::{Transport, remotecommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::resolve;

/// `NAME:PATH` names a path in a container; anything else (`./a:b` too) is a host path.
fn container_path(arg: &str) -> Option<(&str, &str)> {
    let (name, path) = arg.split_once(':')?;
    (!name.is_empty() && !name.contains('/')).then_some((name, path))
}

/// The directory and last component of a path (`/a/b/` → (`/a`, `b`)).
fn split(path: &str) -> anyhow::Result<(String, String)> {
    let p = Path::new(path.trim_end_matches('/'));
    let base = p
        .file_name()
        .and_then(|b| b.to_str())
        .filter(|b| *b != "..")
        .ok_or_else(|| anyhow!("cp: {path}: cannot copy a root, `.` or `..`"))?
        .to_string();
    let dir = match p.parent().map(|d| d.display().to_string()) {
        Some(d) if !d.is_empty() => d,
        _ if path.starts_with('/') => "/".into(),
        _ => ".".into(),
    };
    Ok((dir, base))
}

/// A GNU tar `--transform` renaming the top entry `from` to `to`.
fn rename_expr(from: &str, to: &str) -> anyhow::Result<String> {
    if from.contains('|') || to.contains('|') || to.contains('&') || to.contains('\\') {
        bail!("cp: names with '|', '&' or '\\' cannot be renamed while copying");
    }
    let escaped: String = from
        .chars()
        .flat_map(|c| {
            if ".*[]^$\\+?(){}".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect();
    Ok(format!("s|^{escaped}|{to}|"))
}

async fn exec_code(c: &mut CriClient, id: &str, cmd: &[&str]) -> anyhow::Result<i32> {
    Ok(c.runtime
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 30,
        })
        .await?
        .into_inner()
        .exit_code)
}

pub(crate) async fn cp(c: &mut CriClient, src: &str, dst: &str) -> anyhow::Result<()> {
    match (container_path(src), container_path(dst)) {
        (Some((name, path)), None) => from_container(c, name, path, dst).await,
        (None, Some((name, path))) => to_container(c, src, name, path).await,
        (Some(_), Some(_)) => bail!("cp: copying between containers is not supported"),
        (None, None) => bail!("cp: one of SRC and DEST must be CONTAINER:PATH"),
    }
}

/// Runs `cmd` in the container over a streaming exec: `input` (if any) to its stdin, its
/// stdout to `output`; fails with its stderr when it exits non-zero.
async fn stream_exec(
    c: &mut CriClient,
    id: &str,
    cmd: Vec<String>,
    input: Option<tokio::process::ChildStdout>,
    mut output: Option<tokio::process::ChildStdin>,
) -> anyhow::Result<()> {
    let stdin = input.is_some();
    let url = c
        .runtime
        .exec(cri::ExecRequest {
            container_id: id.into(),
            cmd: cmd.clone(),
            tty: false,
            stdin,
            stdout: true,
            stderr: true,
        })
        .await?
        .into_inner()
        .url;
    let opts = StreamOptions {
        stdin,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let mut s = remotecommand(&url, Transport::Spdy, opts).await?;
    if let (Some(mut from), Some(tx)) = (input, s.stdin.take()) {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = from.read(&mut buf).await {
                if n == 0 || tx.send(buf[..n].to_vec()).await.is_err() {
                    return;
                }
            }
        });
    }
    let mut errors = Vec::new();
    while let Some((ch, data)) = s.output.recv().await {
        if ch == 1 {
            if let Some(o) = output.as_mut() {
                o.write_all(&data).await?;
            }
        } else {
            errors.extend_from_slice(&data);
        }
    }
    drop(output);
    let code = s
        .status
        .await
        .map_err(|_| anyhow!("cp: the exec session ended without a status"))?
        .map_err(|e| anyhow!("cp: {e}"))?;
    if code != 0 {
        let msg = String::from_utf8_lossy(&errors);
        bail!(
            "cp: `{}` in the container exited with {code}: {}",
            cmd.join(" "),
            msg.lines().next().unwrap_or("")
        );
    }
    Ok(())
}

async fn from_container(
    c: &mut CriClient,
    name: &str,
    path: &str,
    dst: &str,
) -> anyhow::Result<()> {
    let id = resolve(c, name).await?;
    if exec_code(c, &id, &["test", "-e", path]).await? != 0 {
        bail!("Error response from daemon: Could not find the file {path} in container {name}");
    }
    let (dir, base) = split(path)?;
    let dst_path = Path::new(dst);
    let mut host = tokio::process::Command::new("tar");
    host.arg("-xf").arg("-").stdin(Stdio::piped());
    if dst_path.is_dir() {
        host.arg("-C").arg(dst_path);
    } else {
        let (hdir, hbase) = split(dst)?;
        if !Path::new(&hdir).is_dir() {
            bail!("cp: {hdir}: no such directory on the host");
        }
        host.arg("-C")
            .arg(&hdir)
            .arg("--transform")
            .arg(rename_expr(&base, &hbase)?);
    }
    let mut child = host.spawn().context("run tar on the host")?;
    let cmd = ["tar", "-cf", "-", "-C", &dir, &base]
        .map(str::to_string)
        .to_vec();
    let streamed = stream_exec(c, &id, cmd, None, child.stdin.take()).await;
    let st = child.wait().await?;
    streamed?;
    if !st.success() {
        bail!("cp: tar on the host failed ({st})");
    }
    Ok(())
}

async fn to_container(c: &mut CriClient, src: &str, name: &str, path: &str) -> anyhow::Result<()> {
    let id = resolve(c, name).await?;
    if std::fs::symlink_metadata(src).is_err() {
        bail!("cp: {src}: no such file or directory on the host");
    }
    let (sdir, sbase) = split(src)?;
    let mut host = tokio::process::Command::new("tar");
    host.arg("-cf").arg("-").arg("-C").arg(&sdir);
    let target = if exec_code(c, &id, &["test", "-d", path]).await? == 0 {
        path.to_string()
    } else {
        let (cdir, cbase) = split(path)?;
        if exec_code(c, &id, &["test", "-d", &cdir]).await? != 0 {
            bail!("Error response from daemon: Could not find the file {cdir} in container {name}");
        }
        host.arg("--transform").arg(rename_expr(&sbase, &cbase)?);
        cdir
    };
    host.arg(&sbase).stdout(Stdio::piped());
    let mut child = host.spawn().context("run tar on the host")?;
    let cmd = ["tar", "-xf", "-", "-C", &target]
        .map(str::to_string)
        .to_vec();
    let streamed = stream_exec(c, &id, cmd, child.stdout.take(), None).await;
    let st = child.wait().await?;
    streamed?;
    if !st.success() {
        bail!("cp: tar on the host failed ({st})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_like_docker() {
        assert_eq!(
            container_path("web:/etc/hosts"),
            Some(("web", "/etc/hosts"))
        );
        assert_eq!(container_path("./a:b"), None);
        assert_eq!(container_path("/tmp/x"), None);
        assert_eq!(
            split("/etc/hosts").unwrap(),
            ("/etc".into(), "hosts".into())
        );
        assert_eq!(split("/data/").unwrap(), ("/".into(), "data".into()));
        assert_eq!(split("file").unwrap(), (".".into(), "file".into()));
        assert!(split("/").is_err() && split("..").is_err());
        assert_eq!(rename_expr("a.txt", "b").unwrap(), "s|^a\\.txt|b|");
        assert!(rename_expr("a", "b|c").is_err());
    }
}
