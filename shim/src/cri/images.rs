//! ListImages, ImageStatus, PullImage, RemoveImage, ImageFsInfo.

use base64::Engine as _;
use crust_proto::cri;
use crust_runtime::image::{Credentials, ImageRecord};
use crust_runtime::{Engine, Error, Result};

fn to_cri(r: &ImageRecord) -> cri::Image {
    let user = &r.config.user;
    let user_part = user.split(':').next().unwrap_or("");
    let (uid, username) = match user_part.parse::<i64>() {
        Ok(n) => (Some(cri::Int64Value { value: n }), String::new()),
        Err(_) if user_part.is_empty() => (None, String::new()),
        Err(_) => (None, user_part.to_string()),
    };
    cri::Image {
        id: r.id.clone(),
        repo_tags: r.repo_tags.clone(),
        repo_digests: r.repo_digests.clone(),
        size: r.size,
        uid,
        username,
        spec: Some(cri::ImageSpec {
            image: r.id.clone(),
            ..Default::default()
        }),
        pinned: r.pinned,
    }
}

fn image_name(spec: &Option<cri::ImageSpec>) -> Result<String> {
    let name = spec.as_ref().map(|s| s.image.clone()).unwrap_or_default();
    if name.is_empty() {
        return Err(Error::InvalidArgument("image.image is required".into()));
    }
    Ok(name)
}

pub fn list_id(_: &cri::ListImagesRequest) -> String {
    String::new()
}

pub async fn list(e: &Engine, req: cri::ListImagesRequest) -> Result<cri::ListImagesResponse> {
    let filter = req
        .filter
        .and_then(|f| f.image)
        .map(|s| s.image)
        .unwrap_or_default();
    let images: Vec<cri::Image> = if filter.is_empty() {
        e.images.list().iter().map(to_cri).collect()
    } else {
        e.image_status(&filter)?.iter().map(to_cri).collect()
    };
    Ok(cri::ListImagesResponse { images })
}

pub fn status_id(r: &cri::ImageStatusRequest) -> String {
    r.image
        .as_ref()
        .map(|i| i.image.clone())
        .unwrap_or_default()
}

pub async fn status(e: &Engine, req: cri::ImageStatusRequest) -> Result<cri::ImageStatusResponse> {
    let name = image_name(&req.image)?;
    let rec = e.image_status(&name)?;
    let mut info = std::collections::HashMap::new();
    if req.verbose
        && let Some(r) = &rec
    {
        info.insert(
            "info".into(),
            serde_json::json!({"config": r.config, "chain_ids": r.chain_ids, "layers": r.layer_digests}).to_string(),
        );
    }
    // Not there yet but being pulled: how far the pull is (crustctl pull shows it).
    if req.verbose
        && rec.is_none()
        && let Some(p) = e.images.pull_progress(&name)
    {
        info.insert("progress".into(), p.to_string());
    }
    Ok(cri::ImageStatusResponse {
        image: rec.as_ref().map(to_cri),
        info,
    })
}

pub fn pull_id(r: &cri::PullImageRequest) -> String {
    r.image
        .as_ref()
        .map(|i| i.image.clone())
        .unwrap_or_default()
}

/// CRI AuthConfig → credentials: username/password, or `auth` (base64 user:pass), or a
/// registry token. Never logged.
pub fn credentials(auth: Option<cri::AuthConfig>) -> Result<Credentials> {
    let Some(a) = auth else {
        return Ok(Credentials::default());
    };
    let mut c = Credentials {
        username: a.username,
        password: a.password,
        registry_token: a.registry_token,
    };
    if c.username.is_empty() && !a.auth.is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(a.auth.trim())
            .map_err(|_| Error::InvalidArgument("auth.auth is not valid base64".into()))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| Error::InvalidArgument("auth.auth is not valid UTF-8".into()))?;
        let (u, p) = decoded
            .split_once(':')
            .ok_or_else(|| Error::InvalidArgument("auth.auth must encode user:password".into()))?;
        c.username = u.to_string();
        c.password = p.to_string();
    }
    if c.username.is_empty() && c.registry_token.is_empty() && !a.identity_token.is_empty() {
        c.registry_token = a.identity_token;
    }
    Ok(c)
}

pub async fn pull(e: &Engine, req: cri::PullImageRequest) -> Result<cri::PullImageResponse> {
    let name = image_name(&req.image)?;
    let creds = credentials(req.auth)?;
    let rec = e.pull_image(&name, creds).await?;
    Ok(cri::PullImageResponse { image_ref: rec.id })
}

pub fn remove_id(r: &cri::RemoveImageRequest) -> String {
    r.image
        .as_ref()
        .map(|i| i.image.clone())
        .unwrap_or_default()
}

pub async fn remove(e: &Engine, req: cri::RemoveImageRequest) -> Result<cri::RemoveImageResponse> {
    let name = image_name(&req.image)?;
    e.remove_image(&name).await?;
    Ok(cri::RemoveImageResponse {})
}

pub fn fs_info_id(_: &cri::ImageFsInfoRequest) -> String {
    String::new()
}

pub async fn fs_info(
    e: &Engine,
    _req: cri::ImageFsInfoRequest,
) -> Result<cri::ImageFsInfoResponse> {
    let usage = |(bytes, inodes): (u64, u64), dir: std::path::PathBuf| cri::FilesystemUsage {
        timestamp: crust_runtime::now_nanos(),
        fs_id: Some(cri::FilesystemIdentifier {
            mountpoint: dir.display().to_string(),
        }),
        used_bytes: Some(cri::UInt64Value { value: bytes }),
        inodes_used: Some(cri::UInt64Value { value: inodes }),
    };
    let images = usage(e.images.usage(), e.images.root().join("snapshots"));
    // Containers' writable layers, which kubelet's eviction weighs separately.
    let (dir, used) = e.writable_layers_usage();
    Ok(cri::ImageFsInfoResponse {
        image_filesystems: vec![images],
        container_filesystems: vec![usage(used, dir)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_field_decodes_to_basic_credentials() {
        let c = credentials(Some(cri::AuthConfig {
            auth: base64::engine::general_purpose::STANDARD.encode("alice:s3cret"),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "s3cret")
        );
        assert!(
            credentials(Some(cri::AuthConfig {
                auth: "!!".into(),
                ..Default::default()
            }))
            .is_err()
        );
    }
}
