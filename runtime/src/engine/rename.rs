//! Renaming a container (crust's own API; CRI has no rename).
//!
//! A container's name is its CRI metadata name. crustctl gives each container it makes a pod
//! of its own, named like the container, in the `crustctl` namespace with uid
//! `crustctl-<name>`; such a pod is renamed with its container, so that the old name is free
//! again for a new `run --name`.

use super::Engine;
use crate::error::{Error, Result};
use crate::store::{Store, container_name_key, pod_name_key};

/// The namespace of the pods crustctl makes for its containers.
const CRUSTCTL_NAMESPACE: &str = "crustctl";

impl Engine {
    /// Renames the container `container` (an id, id prefix or name) to `new_name`, which no
    /// other container may hold. Returns the container's id.
    pub async fn rename_container(&self, container: &str, new_name: &str) -> Result<String> {
        if new_name.is_empty() {
            return Err(Error::InvalidArgument("the new name is empty".into()));
        }
        let id = self.find_by_name_or_id(container).await?;
        let taken = self
            .select_containers(|c| {
                let name = c.config.metadata.as_ref().map(|m| m.name.as_str());
                (c.id != id && name == Some(new_name)).then(|| c.id.clone())
            })
            .await;
        if let Some(holder) = taken.first() {
            return Err(Error::AlreadyExists(format!(
                "Conflict. The container name \"/{new_name}\" is already in use by container \"{holder}\". \
                 You have to remove (or rename) that container to be able to reuse that name."
            )));
        }
        let shared = self
            .store
            .container(&id)
            .ok_or_else(|| Error::NotFound(format!("No such container: {container}")))?;
        let mut c = shared.lock().await;
        let old_meta = c.config.metadata.clone().unwrap_or_default();
        if old_meta.name == new_name {
            return Ok(id);
        }
        let pod = self
            .store
            .pod(&c.pod_id)
            .ok_or_else(|| Error::NotFound(format!("pod {} of container {id}", c.pod_id)))?;
        let mut p = pod.lock().await;
        let old_pod_meta = p.config.metadata.clone().unwrap_or_default();
        // A pod crustctl made for this one container follows its name.
        let new_pod_meta =
            if old_pod_meta.namespace == CRUSTCTL_NAMESPACE && old_pod_meta.name == old_meta.name {
                let mut m = old_pod_meta.clone();
                m.name = new_name.to_string();
                m.uid = format!("crustctl-{new_name}");
                Some(m)
            } else {
                None
            };
        let mut new_meta = old_meta.clone();
        new_meta.name = new_name.to_string();
        let pod_meta_after = new_pod_meta.clone().unwrap_or(old_pod_meta.clone());
        let new_key = container_name_key(&new_meta, &pod_meta_after);
        self.store.reserve_name(&new_key, &id, "container")?;
        if let Some(m) = &new_pod_meta
            && let Err(e) = self
                .store
                .reserve_name(&pod_name_key(m), &p.id, "pod sandbox")
        {
            self.store.release_name(&new_key, &id);
            return Err(e);
        }
        let old_rec = c.clone();
        c.config.metadata = Some(new_meta);
        if let Err(e) = self.store.save_container(&c) {
            *c = old_rec;
            self.store.release_name(&new_key, &id);
            if let Some(m) = &new_pod_meta {
                self.store.release_name(&pod_name_key(m), &p.id);
            }
            return Err(e);
        }
        self.store
            .release_name(&container_name_key(&old_meta, &old_pod_meta), &id);
        if let Some(m) = new_pod_meta {
            p.config.metadata = Some(m);
            self.store.save_pod(&p)?;
            self.store.release_name(&pod_name_key(&old_pod_meta), &p.id);
        }
        Ok(id)
    }

    /// A container by id, unique id prefix, or CRI metadata name.
    async fn find_by_name_or_id(&self, container: &str) -> Result<String> {
        let by_name = self
            .select_containers(|c| {
                let name = c.config.metadata.as_ref().map(|m| m.name.as_str());
                (name == Some(container)).then(|| c.id.clone())
            })
            .await;
        match by_name.as_slice() {
            [id] => Ok(id.clone()),
            [] => Store::find_id(&self.store.containers, container, "container")
                .map_err(|_| Error::NotFound(format!("No such container: {container}"))),
            _ => Err(Error::InvalidArgument(format!(
                "{container} names more than one container; use an id"
            ))),
        }
    }
}
