//! RUN steps of `crustctl build`: each command runs as a container of the stage's image so
//! far, in a pod of its own on the host's network (as `docker build --network host`: a build
//! may fetch packages, and no CNI network is set up for a step), through the same monitor,
//! cgroups and overlay as any container. The builder turns the overlay's upper directory into
//! the step's layer, then the pod goes.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crust_proto::cri;

use super::Engine;
use crate::build::{BoxFuture, BuildError, RunDone, RunStep, StepRunner};
use crate::container::rootfs;
use crate::store::ContainerState;

/// The namespace build pods are in (`crictl pods` shows them while a step runs).
const BUILD_NAMESPACE: &str = "crust-build";

impl StepRunner for Engine {
    fn run<'a>(&'a self, step: RunStep<'a>) -> BoxFuture<'a, Result<RunDone, BuildError>> {
        Box::pin(async move {
            let suffix = format!("{:016x}", rand::random::<u64>());
            let log_dir = self.cfg.root.join("build-logs").join(&suffix);
            std::fs::create_dir_all(&log_dir)
                .map_err(|e| BuildError::Run(format!("create {}: {e}", log_dir.display())))?;
            let pod = cri::PodSandboxConfig {
                metadata: Some(cri::PodSandboxMetadata {
                    name: format!("build-{suffix}"),
                    uid: suffix.clone(),
                    namespace: BUILD_NAMESPACE.into(),
                    attempt: 0,
                }),
                hostname: "crust-build".into(),
                log_directory: log_dir.display().to_string(),
                linux: Some(cri::LinuxPodSandboxConfig {
                    security_context: Some(cri::LinuxSandboxSecurityContext {
                        namespace_options: Some(cri::NamespaceOption {
                            network: cri::NamespaceMode::Node as i32,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let pod_id = self
                .run_pod(pod.clone(), "")
                .await
                .map_err(|e| BuildError::Run(format!("start the step's pod: {e}")))?;
            let done = RunDone {
                upper: Default::default(),
                skip: vec![],
                pod_id: pod_id.clone(),
            };
            match self.run_step(&pod_id, &pod, step, &log_dir).await {
                Ok((upper, skip)) => Ok(RunDone {
                    upper,
                    skip,
                    ..done
                }),
                Err(e) => {
                    self.remove(done).await;
                    Err(e)
                }
            }
        })
    }

    fn remove<'a>(&'a self, done: RunDone) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let pod = self.pod(&done.pod_id).await.ok();
            if let Err(e) = self.stop_pod(&done.pod_id).await {
                tracing::warn!(pod = %done.pod_id, err = %e, "stop a build step's pod");
            }
            if let Err(e) = self.remove_pod(&done.pod_id).await {
                tracing::warn!(pod = %done.pod_id, err = %e, "remove a build step's pod");
            }
            if let Some(dir) = pod
                .map(|p| p.config.log_directory)
                .filter(|d| !d.is_empty())
            {
                let _ = crate::fsutil::remove_dir_all_if_exists(Path::new(&dir));
            }
        })
    }
}

impl Engine {
    /// Creates, starts and waits for the step's container; its output goes to the step's
    /// `output` line by line. Returns the container's upper directory once it exited 0, and
    /// the mount points in it that the runtime made.
    async fn run_step(
        &self,
        pod_id: &str,
        pod: &cri::PodSandboxConfig,
        step: RunStep<'_>,
        log_dir: &Path,
    ) -> Result<(PathBuf, Vec<String>), BuildError> {
        let failed = |what: &str, e: crate::error::Error| BuildError::Run(format!("{what}: {e}"));
        let lowers = self
            .image_lowers(&step.image)
            .map_err(|e| failed("the stage's layers", e))?;
        let shown = step.command.join(" ");
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "run".into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: step.image.id.clone(),
                ..Default::default()
            }),
            command: step.command,
            envs: step
                .env
                .iter()
                .filter_map(|e| e.split_once('='))
                .map(|(k, v)| cri::KeyValue {
                    key: k.into(),
                    value: v.into(),
                })
                .collect(),
            log_path: "run.log".into(),
            ..Default::default()
        };
        let id = self
            .create_container_of(pod_id, config, Some(pod), Some(step.image))
            .await
            .map_err(|e| failed("create the step's container", e))?;
        self.start_container(&id)
            .await
            .map_err(|e| failed("start the step's container", e))?;
        let log = log_dir.join("run.log");
        let mut offset = 0;
        let mut partial = String::new();
        let exit_code = loop {
            let rec = self
                .container(&id)
                .await
                .map_err(|e| failed("the step's container", e))?;
            let exited = rec.state == ContainerState::Exited;
            offset = forward_log(&log, offset, &mut partial, step.output);
            if exited {
                break rec.exit_code;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if exit_code != 0 {
            return Err(BuildError::Run(format!(
                "the command '{shown}' returned a non-zero code: {exit_code}"
            )));
        }
        let upper = rootfs::RootfsDirs::in_bundle(&self.store.container_dir(&id)).upper;
        let skip = mount_placeholders(&upper, &lowers);
        Ok((upper, skip))
    }
}

/// The files and directories the runtime made in `upper` to mount over, where the image
/// (`lowers`) had none: empty /etc/hosts, /etc/hostname, /etc/resolv.conf, empty /proc, /sys,
/// /dev, and /etc itself when it holds nothing else.
fn mount_placeholders(upper: &Path, lowers: &[PathBuf]) -> Vec<String> {
    let in_image = |rel: &str| {
        lowers
            .iter()
            .any(|l| l.join(rel).symlink_metadata().is_ok())
    };
    let empty_file = |rel: &str| {
        std::fs::symlink_metadata(upper.join(rel)).is_ok_and(|m| m.is_file() && m.len() == 0)
    };
    let empty_dir =
        |rel: &str| std::fs::read_dir(upper.join(rel)).is_ok_and(|mut d| d.next().is_none());
    let mut skip: Vec<String> = ["etc/hosts", "etc/hostname", "etc/resolv.conf"]
        .into_iter()
        .filter(|r| empty_file(r) && !in_image(r))
        .chain(
            ["proc", "sys", "dev"]
                .into_iter()
                .filter(|r| empty_dir(r) && !in_image(r)),
        )
        .map(String::from)
        .collect();
    let etc_only_placeholders = std::fs::read_dir(upper.join("etc")).is_ok_and(|d| {
        d.flatten()
            .all(|e| skip.contains(&format!("etc/{}", e.file_name().to_string_lossy())))
    });
    if etc_only_placeholders && !in_image("etc") {
        skip.push("etc".into());
    }
    skip
}

/// Sends the lines the CRI log at `path` got past `offset` to `output` (the content of each
/// "TIME STREAM TAG CONTENT" line; `P`artial lines are joined); returns the new offset.
fn forward_log(
    path: &Path,
    offset: u64,
    partial: &mut String,
    output: &(dyn Fn(String) + Send + Sync),
) -> u64 {
    let Ok(mut f) = std::fs::File::open(path) else {
        return offset;
    };
    let mut text = String::new();
    if f.seek(std::io::SeekFrom::Start(offset)).is_err() || f.read_to_string(&mut text).is_err() {
        return offset;
    }
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    for line in text[..complete].lines() {
        let mut parts = line.splitn(4, ' ');
        let (_time, _stream, tag, content) =
            (parts.next(), parts.next(), parts.next(), parts.next());
        partial.push_str(content.unwrap_or(""));
        if tag != Some("P") {
            output(std::mem::take(partial));
        }
    }
    offset + complete as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_whole_lines_and_joins_partial_ones() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("run.log");
        std::fs::write(
            &log,
            "2026-12-05T00:00:00Z stdout F one\n2026-12-05T00:00:00Z stdout P tw\n\
             2026-12-05T00:00:00Z stdout F o\n2026-12-05T00:00:00Z stderr F thr",
        )
        .unwrap();
        let lines = std::sync::Mutex::new(Vec::new());
        let out = |l: String| lines.lock().unwrap().push(l);
        let mut partial = String::new();
        let off = forward_log(&log, 0, &mut partial, &out);
        assert_eq!(*lines.lock().unwrap(), vec!["one", "two"]);
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::io::Write::write_all(&mut f, b"ee\n").unwrap();
        forward_log(&log, off, &mut partial, &out);
        assert_eq!(*lines.lock().unwrap(), vec!["one", "two", "three"]);
    }
}
