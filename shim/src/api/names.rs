//! TagImage, UntagImage and RenameContainer.

use crust_proto::crust as api;
use crust_runtime::{Engine, Error};
use tonic::Status;

use crate::cri::to_status;

pub(super) fn tag(e: &Engine, req: api::TagImageRequest) -> Result<api::TagImageResponse, Status> {
    tracing::info!(source = %req.source, target = %req.target, "TagImage");
    let (rec, tag) = e
        .images
        .tag(&req.source, &req.target)
        .map_err(|err| to_status(&Error::from(err)))?;
    Ok(api::TagImageResponse {
        image_id: rec.id,
        tag,
    })
}

pub(super) fn untag(
    e: &Engine,
    req: api::UntagImageRequest,
) -> Result<api::UntagImageResponse, Status> {
    tracing::info!(name = %req.name, "UntagImage");
    let (rec, tag) = e
        .images
        .untag(&req.name)
        .map_err(|err| to_status(&Error::from(err)))?;
    Ok(api::UntagImageResponse {
        image_id: rec.id,
        tag,
    })
}

pub(super) async fn rename(
    e: &Engine,
    req: api::RenameContainerRequest,
) -> Result<api::RenameContainerResponse, Status> {
    tracing::info!(container = %req.container, new_name = %req.new_name, "RenameContainer");
    let id = e
        .rename_container(&req.container, &req.new_name)
        .await
        .map_err(|err| to_status(&err))?;
    Ok(api::RenameContainerResponse { container_id: id })
}
