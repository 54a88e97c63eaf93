//! Pod sandboxes: RunPodSandbox's setup (cgroup, monitor, network) and its undoing, stop,
//! remove, and the records' views.

use super::*;

impl Engine {
    pub async fn run_pod(
        &self,
        config: cri::PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String> {
        let meta = require(config.metadata.clone(), "config.metadata")?;
        no_nul_in_pod(&config)?;
        for (field, v) in [
            ("name", &meta.name),
            ("namespace", &meta.namespace),
            ("uid", &meta.uid),
        ] {
            if v.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "config.metadata.{field} is required"
                )));
            }
        }
        if !runtime_handler.is_empty()
            && !self
                .cfg
                .runtime_handlers
                .iter()
                .any(|h| h == runtime_handler)
        {
            return Err(Error::InvalidArgument(format!(
                "unknown runtime handler {runtime_handler:?} (configured: {:?})",
                self.cfg.runtime_handlers
            )));
        }
        if config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .and_then(|n| n.userns_options.as_ref())
            .is_some_and(|u| u.mode != cri::NamespaceMode::Node as i32)
        {
            return Err(Error::Unimplemented(
                "user namespaces (hostUsers: false) are not supported by crust yet; RuntimeStatus reports user_namespaces: false"
                    .into(),
            ));
        }
        let cgroup_parent = config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default();
        let id = ids::new_id();
        let cgroup_path = if cgroup_parent.is_empty() {
            format!("{}/{}", self.cfg.cgroup_root, id)
        } else {
            self.cfg
                .cgroup_driver
                .pod_cgroup(&cgroup_parent)
                .map_err(|e| Error::InvalidArgument(format!("config.linux.cgroup_parent: {e}")))?
        };
        let key = pod_name_key(&meta);
        self.store.reserve_name(&key, &id, "pod sandbox")?;
        let mut rec = PodRecord {
            id: id.clone(),
            config,
            state: PodState::Ready,
            created_at: now_nanos(),
            hostname: String::new(),
            cgroup_path,
            owns_cgroup: false,
            monitor_pid: 0,
            runtime_handler: runtime_handler.to_string(),
            namespaces: vec![],
            network: None,
        };
        // kubelet's host network means the host's UTS namespace too.
        if !rec.host_network() {
            rec.namespaces
                .extend(["net".to_string(), "uts".to_string()]);
        }
        if !rec.host_ipc() {
            rec.namespaces.push("ipc".to_string());
        }
        if rec.shared_pid() {
            rec.namespaces.push("pid".to_string());
        }
        let checked = pod::hostname_for(&rec.config, rec.host_network()).and_then(|h| {
            let sysctls = rec
                .config
                .linux
                .as_ref()
                .map(|l| l.sysctls.clone())
                .unwrap_or_default();
            pod::validate_sysctls(&sysctls, rec.host_network(), rec.host_ipc())?;
            crate::network::cni::bandwidth_from_annotations(&rec.config.annotations)
                .map_err(Error::InvalidArgument)?;
            Ok(h)
        });
        rec.hostname = match checked {
            Ok(h) => h,
            Err(e) => {
                self.store.release_name(&key, &id);
                return Err(e);
            }
        };
        // Until the record is saved, a note in the pod's state dir says what setup may have
        // made, so a crash half way is undone at the next start. Not fsynced: state dirs do
        // not survive a power loss, and neither does anything the note describes.
        let pending = self.pod_dir(&rec.id).join(PENDING_FILE);
        let noted = fsutil::ensure_private_dir(&self.pod_dir(&rec.id)).and_then(|()| {
            let mut note = rec.clone();
            // A cgroup named after the pod is crust's own to remove.
            note.owns_cgroup = cgroup_parent.is_empty();
            std::fs::write(&pending, serde_json::to_vec(&note).unwrap_or_default())
        });
        if let Err(e) = noted {
            self.store.release_name(&key, &id);
            return Err(Error::Io {
                context: format!("write {}", pending.display()),
                source: e,
            });
        }
        match self.setup_pod(&mut rec).await {
            Ok(()) => {
                self.store.save_pod(&rec)?;
                let _ = std::fs::remove_file(&pending);
                self.store
                    .pods
                    .write()
                    .expect("pods lock")
                    .insert(id.clone(), Arc::new(tokio::sync::Mutex::new(rec)));
                self.emit(EventKind::Created, &id, &id);
                self.emit(EventKind::Started, &id, &id);
                Ok(id)
            }
            Err(e) => {
                self.teardown_pod_resources(&rec).await;
                self.store.release_name(&key, &id);
                Err(e)
            }
        }
    }

    pub(super) async fn setup_pod(&self, rec: &mut PodRecord) -> Result<()> {
        let dir = self.pod_dir(&rec.id);
        fsutil::ensure_private_dir(&dir).ctx(|| format!("create {}", dir.display()))?;
        let dns = rec.config.dns_config.as_ref();
        pod::write_files(&dir, &rec.hostname, dns, rec.host_network(), None)?;
        if !rec.host_ipc() {
            pod::mount_shm(&dir, self.cfg.shm_size)?;
        }
        rec.owns_cgroup = self
            .hierarchy
            .create(&rec.cgroup_path)
            .ctx(|| format!("create pod cgroup {}", rec.cgroup_path))?;
        // kubelet sizes the pod cgroups it makes itself; a pod cgroup crust made gets the pod's
        // resources plus its overhead here.
        if rec.owns_cgroup
            && let Some(l) = &rec.config.linux
        {
            let limits = pod_limits(l.resources.as_ref(), l.overhead.as_ref());
            check_memory_limit(
                "config.linux resources plus overhead",
                limits.memory.unwrap_or(0),
            )?;
            if limits != Default::default() {
                self.hierarchy
                    .set_limits(&rec.cgroup_path, &limits)
                    .map_err(|e| {
                        limit_error(&format!("limit pod cgroup {}", rec.cgroup_path), e)
                    })?;
            }
        }
        rec.monitor_pid = self
            .cfg
            .launcher
            .spawn(&rec.id, &dir, &rec.hostname, &rec.namespaces)
            .instrument(tracing::info_span!("monitor.spawn"))
            .await?;
        self.place_monitor(&rec.id, rec.monitor_pid);
        if !rec.host_network() {
            self.network_add(rec).await?;
        }
        Ok(())
    }

    /// Undoes setup_pod: network, monitor, mounts, cgroup, state dir. Each step tolerates
    /// "already gone".
    pub(super) async fn teardown_pod_resources(&self, rec: &PodRecord) {
        let mut rec = rec.clone();
        if let Err(e) = self.network_del(&mut rec).await {
            tracing::warn!(pod = %rec.id, err = %e, "CNI DEL during teardown failed");
        }
        // The pod is going away even if DEL failed: its host port claim goes with it.
        self.host_port_claims.release(&rec.id);
        let dir = self.pod_dir(&rec.id);
        if client::is_alive(&dir).await {
            let _ = client::call(&dir, &Request::Shutdown, SHORT_TIMEOUT).await;
        }
        crate::monitor::pod_init::stop(&dir);
        if let Err(e) = pod::unmount_all(&dir) {
            tracing::warn!(pod = %rec.id, err = %e, "unmount pod state");
        }
        if rec.owns_cgroup {
            let _ = self.hierarchy.remove(&rec.cgroup_path);
        }
        let _ = fsutil::remove_dir_all_if_exists(&dir);
    }

    pub(super) fn pod_containers(
        &self,
        pod_id: &str,
    ) -> Vec<crate::store::Shared<ContainerRecord>> {
        self.store
            .all_containers()
            .into_iter()
            .filter(|c| c.try_lock().map(|c| c.pod_id == pod_id).unwrap_or(true))
            .collect()
    }

    pub async fn stop_pod(&self, id: &str) -> Result<()> {
        let id = match Store::find_id(&self.store.pods, id, "pod sandbox") {
            Ok(id) => id,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some(pod) = self.store.pod(&id) else {
            return Ok(());
        };
        let mut p = pod.lock().await;
        for c in self.pod_containers(&id) {
            let mut c = c.lock().await;
            if c.pod_id == id {
                self.stop_locked(&mut c, 0).await?;
            }
        }
        let dir = self.pod_dir(&id);
        if client::is_alive(&dir).await {
            client::call(&dir, &Request::Shutdown, SHORT_TIMEOUT)
                .await
                .map_err(monitor_err)?;
        }
        // Release the pod's IP now (kubelet expects it on stop). A failed DEL leaves the
        // record for the next try.
        if p.network.is_some() {
            // No process is left in the pod, so its network namespace goes first: the kernel
            // then frees the pod's veth in the background, where the bridge plugin's DEL would
            // delete it and wait out an RCU grace period (25–35 ms of every pod stop here). A
            // DEL whose namespace is gone is the case every CNI plugin handles: it releases the
            // address and the host-side state, and skips the interface.
            if let Err(e) = crate::monitor::pin::unpin_namespace(&dir, "net") {
                tracing::warn!(pod = %id, err = %e, "unpin the network namespace before CNI DEL");
            }
            self.network_del(&mut p).await?;
            self.store.save_pod(&p)?;
        }
        if p.state != PodState::NotReady {
            p.state = PodState::NotReady;
            self.store.save_pod(&p)?;
            self.emit(EventKind::Stopped, &id, &id);
        }
        Ok(())
    }

    pub async fn remove_pod(&self, id: &str) -> Result<()> {
        let id = match Store::find_id(&self.store.pods, id, "pod sandbox") {
            Ok(id) => id,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        self.stop_pod(&id).await?;
        for c in self.pod_containers(&id) {
            let cid = c.lock().await.id.clone();
            let belongs = c.lock().await.pod_id == id;
            if belongs {
                self.remove_container(&cid).await?;
            }
        }
        let Some(pod) = self.store.pod(&id) else {
            return Ok(());
        };
        let p = pod.lock().await;
        self.teardown_pod_resources(&p).await;
        self.store.delete_pod(&id)?;
        let mut last = p.clone();
        last.state = PodState::NotReady;
        self.emit_with(EventKind::Deleted, &id, &id, Some(last));
        self.cpu_samples
            .lock()
            .expect("cpu samples lock")
            .remove(&format!("pod:{id}"));
        if let Some(m) = &p.config.metadata {
            self.store.release_name(&pod_name_key(m), &id);
        }
        Ok(())
    }

    /// The cgroup of a container's pod (by its full id).
    pub(super) async fn pod_cgroup(&self, pod_id: &str) -> Result<String> {
        match self.store.pod(pod_id) {
            Some(p) => Ok(p.lock().await.cgroup_path.clone()),
            None => Err(Error::NotFound(format!("pod sandbox {pod_id} not found"))),
        }
    }

    pub async fn pod(&self, id: &str) -> Result<PodRecord> {
        let id = Store::find_id(&self.store.pods, id, "pod sandbox")?;
        let pod = self
            .store
            .pod(&id)
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {id} not found")))?;
        Ok(pod.lock().await.clone())
    }

    pub async fn list_pods(&self) -> Vec<PodRecord> {
        let mut out = Vec::new();
        for p in self.store.all_pods() {
            let p = p.lock().await;
            // Removed while this list waited on its lock (as in select_containers).
            if self.store.has_pod(&p.id) {
                out.push(p.clone());
            }
        }
        out.sort_by_key(|p| p.created_at);
        out
    }
}
