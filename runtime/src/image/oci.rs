//! The parts of OCI / Docker image manifests and configs crust reads. Tolerant by design: unknown
//! fields are ignored and an absent top-level mediaType is inferred from the shape.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Where a non-distributable ("foreign") layer can be fetched when the registry does
    /// not hold it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

/// An OCI image manifest or a Docker schema 2 manifest (same shape).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub media_type: String,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// An OCI index or a Docker manifest list.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    #[serde(default)]
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

/// Why a Docker schema 1 manifest is not pulled.
pub const SCHEMA1_REFUSED: &str = "a Docker schema 1 manifest, which crust does not pull (deprecated since 2017; Docker and containerd 2 refuse it too): push the image again with a current client";

/// What a manifest document turned out to be.
pub enum ManifestDoc {
    Image(Manifest),
    Index(Index),
}

impl ManifestDoc {
    /// Decides by the served content type, falling back to the document's own mediaType and then
    /// to its shape (an index has `manifests`, an image manifest has `config`).
    pub fn parse(bytes: &[u8], content_type: &str) -> Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("manifest is not JSON: {e}"))?;
        if v.get("schemaVersion").and_then(|s| s.as_i64()) == Some(1) {
            return Err(SCHEMA1_REFUSED.into());
        }
        let declared = v.get("mediaType").and_then(|m| m.as_str()).unwrap_or("");
        let kind = [content_type, declared]
            .into_iter()
            .find(|t| t.contains("index") || t.contains("list") || t.contains("manifest.v"))
            .unwrap_or("");
        let is_index = if kind.contains("index") || kind.contains("list") {
            true
        } else if kind.is_empty() {
            v.get("manifests").is_some()
        } else {
            false
        };
        if is_index {
            serde_json::from_value(v)
                .map(ManifestDoc::Index)
                .map_err(|e| format!("invalid index: {e}"))
        } else {
            serde_json::from_value(v)
                .map(ManifestDoc::Image)
                .map_err(|e| format!("invalid image manifest: {e}"))
        }
    }
}

impl Index {
    /// Picks the manifest for `os`/`arch` (variant-less entries first, as containerd's default
    /// matcher prefers the plain platform).
    pub fn select(&self, os: &str, arch: &str) -> Option<&Descriptor> {
        self.select_all(os, arch).into_iter().next()
    }

    /// Every entry for `os`/`arch`, variant-less ones first (in index order otherwise).
    pub fn select_all(&self, os: &str, arch: &str) -> Vec<&Descriptor> {
        let mut matching: Vec<&Descriptor> = self
            .manifests
            .iter()
            .filter(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == os && p.architecture == arch)
            })
            .collect();
        matching.sort_by_key(|d| d.platform.as_ref().is_some_and(|p| p.variant.is_some()));
        matching
    }

    pub fn platforms(&self) -> Vec<String> {
        self.manifests
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .map(|p| match &p.variant {
                Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                None => format!("{}/{}", p.os, p.architecture),
            })
            .collect()
    }
}

/// The image configuration blob.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ImageConfigFile {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: Option<RunConfig>,
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// The runtime defaults an image carries (Docker's `config` section).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct RunConfig {
    #[serde(rename = "User", default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(rename = "Env", default, deserialize_with = "null_as_default")]
    pub env: Vec<String>,
    #[serde(rename = "Entrypoint", default, deserialize_with = "null_as_default")]
    pub entrypoint: Vec<String>,
    #[serde(rename = "Cmd", default, deserialize_with = "null_as_default")]
    pub cmd: Vec<String>,
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub working_dir: String,
    #[serde(
        rename = "StopSignal",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub stop_signal: String,
    #[serde(rename = "Labels", default, deserialize_with = "null_as_default")]
    pub labels: HashMap<String, String>,
    #[serde(rename = "Volumes", default, deserialize_with = "null_as_default")]
    pub volumes: HashMap<String, serde_json::Value>,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_without_media_type_is_recognised_by_shape() {
        let doc = br#"{"schemaVersion":2,"manifests":[
            {"digest":"sha256:a","size":1,"platform":{"os":"linux","architecture":"arm64"}},
            {"digest":"sha256:b","size":1,"platform":{"os":"linux","architecture":"amd64","variant":"v2"}},
            {"digest":"sha256:c","size":1,"platform":{"os":"linux","architecture":"amd64"}}]}"#;
        let ManifestDoc::Index(idx) = ManifestDoc::parse(doc, "").unwrap() else {
            panic!("not an index")
        };
        assert_eq!(idx.select("linux", "amd64").unwrap().digest, "sha256:c");
        assert!(idx.select("linux", "s390x").is_none());
    }

    #[test]
    fn config_with_null_fields_parses() {
        let c: ImageConfigFile = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"Env":null,"Cmd":["sh"],"Entrypoint":null},"rootfs":{"type":"layers","diff_ids":["sha256:x"]}}"#,
        )
        .unwrap();
        let rc = c.config.unwrap();
        assert_eq!(rc.cmd, vec!["sh"]);
        assert!(rc.entrypoint.is_empty());
    }
}
