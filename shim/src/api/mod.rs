//! crust's own gRPC service (`crust.v1.Crust`, proto/crust/v1/images.proto), served on the
//! CRI socket beside RuntimeService and ImageService: the calls CRI does not have (tag,
//! rename, push, build). One module per RPC group; errors map to gRPC codes through the
//! CRI service's [`crate::cri::to_status`].

mod build;
mod names;
mod push;

use std::pin::Pin;
use std::sync::Arc;

use crust_proto::crust as api;
use crust_runtime::Engine;
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct CrustService {
    pub engine: Arc<Engine>,
}

type Progress<T> = Pin<Box<dyn futures_util::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl api::crust_server::Crust for CrustService {
    async fn tag_image(
        &self,
        req: Request<api::TagImageRequest>,
    ) -> Result<Response<api::TagImageResponse>, Status> {
        names::tag(&self.engine, req.into_inner()).map(Response::new)
    }

    async fn untag_image(
        &self,
        req: Request<api::UntagImageRequest>,
    ) -> Result<Response<api::UntagImageResponse>, Status> {
        names::untag(&self.engine, req.into_inner()).map(Response::new)
    }

    async fn rename_container(
        &self,
        req: Request<api::RenameContainerRequest>,
    ) -> Result<Response<api::RenameContainerResponse>, Status> {
        names::rename(&self.engine, req.into_inner())
            .await
            .map(Response::new)
    }

    type PushImageStream = Progress<api::PushProgress>;

    async fn push_image(
        &self,
        req: Request<api::PushImageRequest>,
    ) -> Result<Response<Self::PushImageStream>, Status> {
        push::push(self.engine.clone(), req.into_inner()).map(Response::new)
    }

    type BuildStream = Progress<api::BuildProgress>;

    async fn build(
        &self,
        req: Request<api::BuildRequest>,
    ) -> Result<Response<Self::BuildStream>, Status> {
        build::build(self.engine.clone(), req.into_inner()).map(Response::new)
    }
}
