//! UpdatePodSandboxResources (CRI of Kubernetes 1.33+), which the `k8s-cri` bindings (1.32)
//! lack. kubelet calls it after resizing a pod's cgroup, best-effort. A tower layer in front of
//! the generated services answers that one method path with tonic's own unary machinery and
//! the messages declared in `crust_proto::pod_resources`.

use std::sync::Arc;
use std::task::{Context, Poll};

use crust_runtime::Engine;
use tonic::codegen::{BoxFuture, http};

use crust_proto::pod_resources::{
    UPDATE_POD_SANDBOX_RESOURCES_PATH as PATH, UpdatePodSandboxResourcesRequest,
    UpdatePodSandboxResourcesResponse,
};

struct Handler(Arc<Engine>);

impl tonic::server::UnaryService<UpdatePodSandboxResourcesRequest> for Handler {
    type Response = UpdatePodSandboxResourcesResponse;
    type Future = BoxFuture<tonic::Response<Self::Response>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<UpdatePodSandboxResourcesRequest>) -> Self::Future {
        let engine = self.0.clone();
        Box::pin(async move {
            let req = request.into_inner();
            let id = req.pod_sandbox_id.clone();
            let work = async {
                engine
                    .update_pod_resources(&req.pod_sandbox_id, req.overhead, req.resources)
                    .await
                    .map(|()| UpdatePodSandboxResourcesResponse {})
            };
            super::instrument("UpdatePodSandboxResources", &id, work).await
        })
    }
}

/// Routes [`PATH`] to the handler and everything else to the generated services.
#[derive(Clone)]
pub struct Layer(pub Arc<Engine>);

impl<S> tower::Layer<S> for Layer {
    type Service = Service<S>;

    fn layer(&self, inner: S) -> Service<S> {
        Service {
            inner,
            engine: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Service<S> {
    inner: S,
    engine: Arc<Engine>,
}

impl<S> tower::Service<http::Request<tonic::body::Body>> for Service<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        if req.uri().path() != PATH {
            return Box::pin(self.inner.call(req));
        }
        let engine = self.engine.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(Handler(engine), req).await)
        })
    }
}
