//! Containers after creation: start, stop (signal, grace, kill), remove, exec and log
//! reopening, and the records' views.

use super::*;

impl Engine {
    pub(super) async fn container_shared(
        &self,
        id: &str,
    ) -> Result<crate::store::Shared<ContainerRecord>> {
        let id = Store::find_id(&self.store.containers, id, "container")?;
        self.store
            .container(&id)
            .ok_or_else(|| Error::NotFound(format!("container {id} not found")))
    }

    pub async fn start_container(&self, id: &str) -> Result<()> {
        let c = self.container_shared(id).await?;
        let mut c = c.lock().await;
        if c.state != ContainerState::Created {
            return Err(Error::FailedPrecondition(format!(
                "container {} is {:?}; only a created container can be started",
                c.id, c.state
            )));
        }
        // Taken before the process is released: a command that exits at once must still show
        // started_at <= finished_at.
        let started_at = now_nanos();
        client::call(
            &self.pod_dir(&c.pod_id),
            &Request::Start { id: c.id.clone() },
            SHORT_TIMEOUT,
        )
        .await
        .map_err(monitor_err)?;
        c.state = ContainerState::Running;
        c.started_at = started_at;
        self.store.save_container(&c)?;
        self.emit(EventKind::Started, &c.id, &c.pod_id);
        Ok(())
    }

    /// Applies a recorded exit (from the monitor's exit file) to a running container's record.
    pub(super) fn refresh(&self, c: &mut ContainerRecord) {
        if c.state != ContainerState::Running {
            return;
        }
        if let Ok(Some(exit)) = fsutil::read_json::<ExitRecord>(&self.exit_file(&c.id)) {
            self.mark_exited(c, &exit);
            if let Err(e) = self.store.save_container(c) {
                tracing::warn!(id = %c.id, err = %e, "cannot persist exit");
            }
        }
    }

    pub(super) async fn stop_locked(
        &self,
        c: &mut ContainerRecord,
        timeout_secs: i64,
    ) -> Result<()> {
        let Some((pod_dir, req, limit)) = self.stop_request(c, timeout_secs) else {
            return Ok(());
        };
        let reply = client::call(&pod_dir, &req, limit).await;
        self.stop_done(c, reply)
    }

    /// The monitor call that stops `c` (None when it is not running).
    pub(super) fn stop_request(
        &self,
        c: &mut ContainerRecord,
        timeout_secs: i64,
    ) -> Option<(PathBuf, Request, Duration)> {
        self.refresh(c);
        if !matches!(c.state, ContainerState::Running | ContainerState::Created) {
            return None;
        }
        let limit = Duration::from_secs(timeout_secs.max(0) as u64) + Duration::from_secs(40);
        let req = Request::Stop {
            id: c.id.clone(),
            signal: c.stop_signal,
            timeout_secs,
        };
        Some((self.pod_dir(&c.pod_id), req, limit))
    }

    /// Records what the monitor said of a stop.
    pub(super) fn stop_done(
        &self,
        c: &mut ContainerRecord,
        reply: std::result::Result<Reply, MonitorError>,
    ) -> Result<()> {
        match reply {
            Ok(Reply::Exited(exit)) => {
                self.refresh(c);
                if matches!(c.state, ContainerState::Running | ContainerState::Created) {
                    self.mark_exited(c, &exit)
                }
            }
            Ok(other) => {
                return Err(Error::Internal(format!(
                    "unexpected monitor reply {other:?}"
                )));
            }
            Err(MonitorError::Connect { .. })
            | Err(MonitorError::Remote {
                kind: ErrorKind::NotFound,
                ..
            }) => {
                // The monitor is gone (pod stopped, or it died): whatever it recorded stands.
                self.refresh(c);
                if matches!(c.state, ContainerState::Running | ContainerState::Created) {
                    c.state = ContainerState::Exited;
                    c.finished_at = now_nanos();
                    c.exit_code = 255;
                    c.reason = "Unknown".into();
                    c.message =
                        "the pod monitor exited without recording the container's exit".into();
                }
            }
            Err(e) => return Err(monitor_err(e)),
        }
        self.store.save_container(c)?;
        Ok(())
    }

    /// Idempotent, as CRI asks: a container that is gone (or never was) is stopped. The
    /// record's lock is not held while the monitor waits out the grace period: kubelet lists
    /// containers every second (PLEG, housekeeping), and a list waiting on a 30 s stop stalls
    /// every pod on the node.
    pub async fn stop_container(&self, id: &str, timeout_secs: i64) -> Result<()> {
        let c = match self.container_shared(id).await {
            Ok(c) => c,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some((pod_dir, req, limit)) = self.stop_request(&mut *c.lock().await, timeout_secs)
        else {
            return Ok(());
        };
        let reply = client::call(&pod_dir, &req, limit).await;
        self.stop_done(&mut *c.lock().await, reply)
    }

    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let c = match self.container_shared(id).await {
            Ok(c) => c,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut c = c.lock().await;
        self.stop_locked(&mut c, 0).await?;
        let pod_dir = self.pod_dir(&c.pod_id);
        match client::call(
            &pod_dir,
            &Request::Delete { id: c.id.clone() },
            SHORT_TIMEOUT,
        )
        .await
        {
            Ok(_) | Err(MonitorError::Connect { .. }) => {}
            Err(e) => return Err(monitor_err(e)),
        }
        let bundle = self.store.container_dir(&c.id);
        rootfs::unmount(&rootfs::RootfsDirs::in_bundle(&bundle))?;
        fsutil::remove_dir_all_if_exists(&bundle).ctx(|| format!("remove {}", bundle.display()))?;
        let _ = fsutil::remove_file_if_exists(&self.exit_file(&c.id));
        self.forget_usage(&c.id);
        self.store
            .containers
            .write()
            .expect("containers lock")
            .remove(&c.id);
        let pod = match self.store.pod(&c.pod_id) {
            Some(p) => Some(p.lock().await.clone()),
            None => None,
        };
        let pod_meta = pod.as_ref().and_then(|p| p.config.metadata.clone());
        if let (Some(m), Some(pm)) = (&c.config.metadata, pod_meta) {
            self.store.release_name(&container_name_key(m, &pm), &c.id);
        }
        c.state = ContainerState::Unknown;
        self.emit_with(EventKind::Deleted, &c.id, &c.pod_id, pod);
        Ok(())
    }

    pub async fn container(&self, id: &str) -> Result<ContainerRecord> {
        let c = self.container_shared(id).await?;
        let mut c = c.lock().await;
        self.refresh(&mut c);
        Ok(c.clone())
    }

    /// What `pick` makes of each container (oldest first), for the ones it keeps; each record
    /// is looked at under its lock and never copied whole (lists run every second on a busy
    /// node). Records are as the exit watcher keeps them: no exit file is read per container.
    pub async fn select_containers<T>(
        &self,
        mut pick: impl FnMut(&ContainerRecord) -> Option<T>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for c in self.store.all_containers() {
            let c = c.lock().await;
            // Removed while this list waited on its lock (RemoveContainer holds it throughout):
            // kubelet would ask for the status of a container the list said exists, and get
            // NotFound (its image GC then fails its whole detection round).
            if !self.store.has_container(&c.id) {
                continue;
            }
            if let Some(v) = pick(&c) {
                out.push((c.created_at, v));
            }
        }
        out.sort_by_key(|(created, _)| *created);
        out.into_iter().map(|(_, v)| v).collect()
    }

    /// Runs `cmd` in a running container and returns its output (each stream capped at
    /// 16 MiB). A timeout > 0 that expires kills the command and answers DeadlineExceeded.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout_secs: i64,
    ) -> Result<ExecOutput> {
        if cmd.is_empty() || cmd[0].is_empty() {
            return Err(Error::InvalidArgument("cmd is required".into()));
        }
        let (cid, pod_id, _, _) = self.running(id, "exec").await?;
        // Not holding the container's lock: probes run while the container is stopped or
        // inspected, as with other runtimes.
        // The monitor enforces the command's timeout; this bound only covers a monitor that
        // stops answering (a day when the command has no timeout of its own).
        let limit = if timeout_secs > 0 {
            Duration::from_secs(timeout_secs as u64 + 30)
        } else {
            Duration::from_secs(24 * 3600)
        };
        let req = Request::ExecSync {
            id: cid.clone(),
            cmd: cmd.clone(),
            timeout_secs,
            max_output: crate::monitor::exec::MAX_EXEC_OUTPUT,
        };
        match client::call(&self.pod_dir(&pod_id), &req, limit)
            .await
            .map_err(monitor_err)?
        {
            Reply::ExecResult(r) if r.timed_out => Err(Error::DeadlineExceeded(format!(
                "command {:?} in container {cid} timed out after {timeout_secs}s",
                cmd.join(" ")
            ))),
            Reply::ExecResult(r) => Ok(ExecOutput {
                stdout: r.stdout,
                stderr: r.stderr,
                exit_code: r.exit_code,
            }),
            other => Err(Error::Internal(format!(
                "unexpected monitor reply {other:?}"
            ))),
        }
    }

    /// Makes the monitor reopen the container's log file (kubelet renamed it to rotate).
    pub async fn reopen_log(&self, id: &str) -> Result<()> {
        let c = self.container_shared(id).await?;
        let mut c = c.lock().await;
        self.refresh(&mut c);
        if c.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {} is {:?}; only a running container's log can be reopened",
                c.id, c.state
            )));
        }
        client::call(
            &self.pod_dir(&c.pod_id),
            &Request::ReopenLog { id: c.id.clone() },
            SHORT_TIMEOUT,
        )
        .await
        .map_err(monitor_err)?;
        Ok(())
    }
}
