//! CreateContainer: the request checked, the rootfs and mounts prepared, and the monitor asked
//! to create the container in the pod's namespaces.

use super::*;

impl Engine {
    pub async fn create_container(
        &self,
        pod_id: &str,
        config: cri::ContainerConfig,
        sandbox_config: Option<&cri::PodSandboxConfig>,
    ) -> Result<String> {
        self.create_container_of(pod_id, config, sandbox_config, None)
            .await
    }

    /// CreateContainer, with `image` given instead of looked up by name (a build step's
    /// image, which has no record in the store yet).
    pub(crate) async fn create_container_of(
        &self,
        pod_id: &str,
        config: cri::ContainerConfig,
        sandbox_config: Option<&cri::PodSandboxConfig>,
        image: Option<ImageRecord>,
    ) -> Result<String> {
        let pod_id = Store::find_id(&self.store.pods, pod_id, "pod sandbox")?;
        let pod = self
            .store
            .pod(&pod_id)
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {pod_id} not found")))?;
        let pod = pod.lock().await.clone();
        if pod.state != PodState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {pod_id} is not ready; containers can only be created in a ready pod"
            )));
        }
        let meta = require(config.metadata.clone(), "config.metadata")?;
        if meta.name.is_empty() {
            return Err(Error::InvalidArgument(
                "config.metadata.name is required".into(),
            ));
        }
        no_nul_in_container(&config)?;
        exec_fits(&config)?;
        if let Some(r) = config.linux.as_ref().and_then(|l| l.resources.as_ref()) {
            check_memory_limit("config.linux.resources", r.memory_limit_in_bytes)?;
        }
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        if image_name.is_empty() {
            return Err(Error::InvalidArgument(
                "config.image.image is required".into(),
            ));
        }
        let image = match image {
            Some(i) => i,
            None => self.images.resolve(&image_name)?.ok_or_else(|| {
                Error::NotFound(format!("image {image_name:?} not found; pull it first"))
            })?,
        };
        // Early, so the kernel's cgroup-migration lock is ready when libcontainer moves the
        // container (monitor_cgroup.rs).
        self.place_monitor(&pod.id, pod.monitor_pid);
        let pod_meta = pod.config.metadata.clone().unwrap_or_default();
        let log_dir = sandbox_config
            .map(|s| s.log_directory.clone())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| pod.config.log_directory.clone());
        let log_path = if log_dir.is_empty() || config.log_path.is_empty() {
            String::new()
        } else {
            if config.log_path.starts_with('/') || config.log_path.split('/').any(|c| c == "..") {
                return Err(Error::InvalidArgument(format!(
                    "config.log_path {:?} must be relative to the pod's log_directory, without '..'",
                    config.log_path
                )));
            }
            if !log_dir.starts_with('/') {
                return Err(Error::InvalidArgument(format!(
                    "log_directory {log_dir:?} must be absolute"
                )));
            }
            let full = Path::new(&log_dir)
                .join(&config.log_path)
                .display()
                .to_string();
            // The kernel's limits, checked here so the answer names the field.
            if full.len() >= libc::PATH_MAX as usize
                || full.split('/').any(|c| c.len() > libc::NAME_MAX as usize)
            {
                return Err(Error::InvalidArgument(format!(
                    "config.log_path: {} bytes with log_directory, or a name over {} bytes",
                    full.len(),
                    libc::NAME_MAX
                )));
            }
            full
        };
        // The request's stop signal (CRI 1.33+, the pod's lifecycle.stopSignal) wins over the
        // image's StopSignal.
        let stop_signal = signals::from_cri(config.stop_signal)
            .or_else(|| signals::parse(&image.config.stop_signal))
            .unwrap_or(libc::SIGTERM);

        let id = ids::new_id();
        let key = container_name_key(&meta, &pod_meta);
        self.store.reserve_name(&key, &id, "container")?;
        let bundle = self.store.container_dir(&id);
        let mut rec = ContainerRecord {
            id: id.clone(),
            pod_id: pod_id.clone(),
            config,
            image_id: image.id.clone(),
            image_name,
            state: ContainerState::Created,
            created_at: now_nanos(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            log_path,
            stop_signal,
            chain_ids: image.chain_ids.clone(),
            pid: 0,
            user: None,
        };
        match self.setup_container(&mut rec, &pod, &image, &bundle).await {
            Ok(()) => {
                self.emit(EventKind::Created, &id, &pod_id);
                self.store
                    .containers
                    .write()
                    .expect("containers lock")
                    .insert(id.clone(), Arc::new(tokio::sync::Mutex::new(rec)));
                Ok(id)
            }
            Err(e) => {
                let dirs = rootfs::RootfsDirs::in_bundle(&bundle);
                let _ = rootfs::unmount(&dirs);
                let _ = fsutil::remove_dir_all_if_exists(&bundle);
                let _ = fsutil::remove_file_if_exists(&self.exit_file(&id));
                self.store.release_name(&key, &id);
                Err(e)
            }
        }
    }

    /// The image's layer snapshots, bottom first; each must be there.
    pub(super) fn image_lowers(&self, image: &ImageRecord) -> Result<Vec<PathBuf>> {
        let lowers: Vec<PathBuf> = image
            .chain_ids
            .iter()
            .map(|c| self.images.snapshot_path(c))
            .collect();
        for l in &lowers {
            if !l.is_dir() {
                return Err(Error::FailedPrecondition(format!(
                    "image {} is missing layer snapshot {}; pull it again",
                    image.id,
                    l.display()
                )));
            }
        }
        Ok(lowers)
    }

    /// Mounts the image of every image volume (`mount.image`, kubelet's ImageVolume) read-only
    /// in the bundle, records the image's id in the mount (ContainerStatus reports it), and
    /// returns each container path with the host directory to bind there.
    pub(super) fn mount_image_volumes(
        &self,
        rec: &mut ContainerRecord,
        dirs: &rootfs::RootfsDirs,
    ) -> Result<Vec<(String, PathBuf)>> {
        let mut sources = Vec::new();
        for (n, m) in rec.config.mounts.iter_mut().enumerate() {
            let Some(spec) = m.image.as_mut() else {
                continue;
            };
            if !m.readonly {
                return Err(Error::InvalidArgument(format!(
                    "mount {:?}: an image volume is read-only; the mount must say readonly",
                    m.container_path
                )));
            }
            if !m.host_path.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "mount {:?} names both an image and a host_path",
                    m.container_path
                )));
            }
            let image = self.images.resolve(&spec.image)?.ok_or_else(|| {
                Error::NotFound(format!(
                    "mount {:?}: image {:?} not found; pull it first",
                    m.container_path, spec.image
                ))
            })?;
            let target = dirs.image_volumes.join(n.to_string());
            rootfs::mount_image_volume(
                &target,
                &self.image_lowers(&image)?,
                &self.cfg.root.join("snapshots"),
            )?;
            let source = rootfs::image_sub_path(&target, &m.image_sub_path)?;
            spec.image_ref = image.id.clone();
            // Its snapshots are in use for as long as the container exists (RemoveImage and
            // image GC keep them).
            for c in &image.chain_ids {
                if !rec.chain_ids.contains(c) {
                    rec.chain_ids.push(c.clone());
                }
            }
            sources.push((m.container_path.clone(), source));
        }
        Ok(sources)
    }

    pub(super) async fn setup_container(
        &self,
        rec: &mut ContainerRecord,
        pod: &PodRecord,
        image: &ImageRecord,
        bundle: &Path,
    ) -> Result<()> {
        fsutil::ensure_private_dir(bundle).ctx(|| format!("create {}", bundle.display()))?;
        let dirs = rootfs::RootfsDirs::in_bundle(bundle);
        let lowers = self.image_lowers(image)?;
        rootfs::mount_overlay(&dirs, &lowers, &self.cfg.root.join("snapshots"))?;
        let image_volumes = self.mount_image_volumes(rec, &dirs)?;
        let cwd = if rec.config.working_dir.is_empty() {
            &image.config.working_dir
        } else {
            &rec.config.working_dir
        };
        if cwd.starts_with('/') {
            rootfs::ensure_working_dir(&dirs.rootfs, cwd)?;
        }

        let sc = rec
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref());
        let user_spec = match sc {
            Some(s) if !s.run_as_username.is_empty() => s.run_as_username.clone(),
            Some(s) if s.run_as_user.is_some() => {
                let uid = s.run_as_user.as_ref().map(|v| v.value).unwrap_or(0);
                match &s.run_as_group {
                    Some(g) => format!("{uid}:{}", g.value),
                    None => uid.to_string(),
                }
            }
            Some(s) if s.run_as_group.is_some() => {
                return Err(Error::InvalidArgument(
                    "security_context.run_as_group requires run_as_user or run_as_username".into(),
                ));
            }
            _ => image.config.user.clone(),
        };
        let mut resolved = user::resolve_in_rootfs(&dirs.rootfs, &user_spec)?;
        if sc.is_some_and(|s| {
            s.supplemental_groups_policy == cri::SupplementalGroupsPolicy::Strict as i32
        }) {
            // Strict: only the groups the request names, none from the image's /etc/group.
            resolved.additional_gids.clear();
        }
        if let Some(s) = sc {
            for g in &s.supplemental_groups {
                let g = u32::try_from(*g).map_err(|_| {
                    Error::InvalidArgument(format!("supplemental group {g} is out of range"))
                })?;
                if !resolved.additional_gids.contains(&g) {
                    resolved.additional_gids.push(g);
                }
            }
        }
        rec.user = Some(crate::store::ProcessUser {
            uid: resolved.uid,
            gid: resolved.gid,
            groups: resolved.additional_gids.clone(),
        });
        let cgroups_path = self
            .cfg
            .cgroup_driver
            .container_cgroup(&pod.cgroup_path, &rec.id);
        let pid = self.pid_namespace(rec, pod).await?;
        crate::container::mounts::check_dev_is_not_a_symlink(&dirs.rootfs)?;
        let spec = spec::build(&spec::SpecInput {
            config: &rec.config,
            image: &image.config,
            rootfs: &dirs.rootfs,
            pod_dir: &self.pod_dir(&pod.id),
            pod_namespaces: &pod.namespaces,
            sysctls: &pod
                .config
                .linux
                .as_ref()
                .map(|l| l.sysctls.clone())
                .unwrap_or_default(),
            pid,
            hostname: &pod.hostname,
            cgroups_path: &cgroups_path,
            user: &resolved,
            min_oom_score_adj: self.min_oom_score_adj,
            cgroup_v2: matches!(self.hierarchy, Hierarchy::V2 { .. }),
            cgroup_v1_mounts: &self.hierarchy.v1_mount_points(),
            hugetlb: self.hierarchy.has_controller("hugetlb"),
            image_volumes: &image_volumes,
            pod_privileged: pod
                .config
                .linux
                .as_ref()
                .and_then(|l| l.security_context.as_ref())
                .is_some_and(|s| s.privileged),
            seccomp_default: &self.cfg.seccomp_default,
            apparmor_enabled: self.apparmor_enabled,
            cdi_spec_dirs: &self.cfg.cdi_spec_dirs,
            volumes_dir: &bundle.join("volumes"),
        })?;
        let spec_bytes =
            serde_json::to_vec_pretty(&spec).map_err(|e| Error::Internal(e.to_string()))?;
        // Read by libcontainer at once; after a power loss no container is created from it.
        fsutil::write_atomic_unsynced(&bundle.join("config.json"), &spec_bytes)
            .ctx(|| "write config.json".into())?;
        // The record exists before the monitor creates anything, so a crash in between leaves
        // a container the daemon knows about (and can remove), never an orphan.
        self.store.save_container_draft(rec)?;
        let reply = client::call(
            &self.pod_dir(&pod.id),
            &Request::Create(CreateRequest {
                id: rec.id.clone(),
                bundle: bundle.display().to_string(),
                log_path: rec.log_path.clone(),
                exit_file: self.exit_file(&rec.id).display().to_string(),
                tty: rec.config.tty,
                stdin: rec.config.stdin,
                stdin_once: rec.config.stdin_once,
            }),
            CREATE_TIMEOUT,
        )
        .await
        .map_err(monitor_err)?;
        if let Reply::Created { pid } = reply {
            rec.pid = pid;
        }
        self.store.save_container(rec)?;
        Ok(())
    }

    /// The container's PID namespace from its CRI namespace options.
    pub(super) async fn pid_namespace(
        &self,
        rec: &ContainerRecord,
        pod: &PodRecord,
    ) -> Result<spec::PidNamespace> {
        let opts = rec
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
            .unwrap_or_default();
        let mode = cri::NamespaceMode::try_from(opts.pid).map_err(|_| {
            Error::InvalidArgument(format!(
                "namespace_options.pid {} is not a namespace mode",
                opts.pid
            ))
        })?;
        Ok(match mode {
            cri::NamespaceMode::Container => spec::PidNamespace::Own,
            cri::NamespaceMode::Node => spec::PidNamespace::Host,
            cri::NamespaceMode::Pod if pod.namespaces.iter().any(|n| n == "pid") => {
                spec::PidNamespace::Join(crate::monitor::pin::ns_path(
                    &self.pod_dir(&pod.id),
                    "pid",
                ))
            }
            cri::NamespaceMode::Pod => spec::PidNamespace::Own,
            cri::NamespaceMode::Target => {
                let target_id =
                    Store::find_id(&self.store.containers, &opts.target_id, "target container")?;
                let target = self.store.container(&target_id).ok_or_else(|| {
                    Error::NotFound(format!("target container {target_id} not found"))
                })?;
                let target = target.lock().await;
                if target.pod_id != pod.id {
                    return Err(Error::InvalidArgument(format!(
                        "target container {target_id} is in another pod sandbox"
                    )));
                }
                let ns = PathBuf::from(format!("/proc/{}/ns/pid", target.pid));
                if target.state != ContainerState::Running || target.pid <= 0 || !ns.exists() {
                    return Err(Error::FailedPrecondition(format!(
                        "target container {target_id} is not running"
                    )));
                }
                spec::PidNamespace::Join(ns)
            }
        })
    }
}
