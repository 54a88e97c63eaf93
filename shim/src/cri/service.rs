//! Routes every CRI RPC. Implemented ones go through [`instrument`]; the rest answer
//! UNIMPLEMENTED naming the RPC, until the issue that builds them lands.

use crust_proto::cri;
use crust_proto::cri::image_service_server::ImageService;
use crust_proto::cri::runtime_service_server::RuntimeService;
use tonic::{Request, Response, Status};

use super::list_streams::{self, ListStream};
use super::{
    CriService, containers, events, images, instrument, metrics, pods, runtime_info, stats, streams,
};

fn unimplemented(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented by crust yet"))
}

#[tonic::async_trait]
impl RuntimeService for CriService {
    async fn version(
        &self,
        request: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>, Status> {
        let req = request.into_inner();
        let id = runtime_info::version_id(&req);
        instrument("Version", &id, runtime_info::version(&self.engine, req)).await
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        let req = request.into_inner();
        let id = pods::run_id(&req);
        instrument("RunPodSandbox", &id, pods::run(&self.engine, req)).await
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        let req = request.into_inner();
        let id = pods::stop_id(&req);
        instrument("StopPodSandbox", &id, pods::stop(&self.engine, req)).await
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        let req = request.into_inner();
        let id = pods::remove_id(&req);
        instrument("RemovePodSandbox", &id, pods::remove(&self.engine, req)).await
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        let req = request.into_inner();
        let id = pods::status_id(&req);
        instrument("PodSandboxStatus", &id, pods::status(&self.engine, req)).await
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        let req = request.into_inner();
        let id = pods::list_id(&req);
        instrument("ListPodSandbox", &id, pods::list(&self.engine, req)).await
    }

    async fn create_container(
        &self,
        request: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        let req = request.into_inner();
        let id = containers::create_id(&req);
        instrument(
            "CreateContainer",
            &id,
            containers::create(&self.engine, req),
        )
        .await
    }

    async fn start_container(
        &self,
        request: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        let req = request.into_inner();
        let id = containers::start_id(&req);
        instrument("StartContainer", &id, containers::start(&self.engine, req)).await
    }

    async fn stop_container(
        &self,
        request: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        let req = request.into_inner();
        let id = containers::stop_id(&req);
        instrument("StopContainer", &id, containers::stop(&self.engine, req)).await
    }

    async fn remove_container(
        &self,
        request: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        let req = request.into_inner();
        let id = containers::remove_id(&req);
        instrument(
            "RemoveContainer",
            &id,
            containers::remove(&self.engine, req),
        )
        .await
    }

    async fn list_containers(
        &self,
        request: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        let req = request.into_inner();
        let id = containers::list_id(&req);
        instrument("ListContainers", &id, containers::list(&self.engine, req)).await
    }

    async fn container_status(
        &self,
        request: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        let req = request.into_inner();
        let id = containers::status_id(&req);
        instrument(
            "ContainerStatus",
            &id,
            containers::status(&self.engine, req),
        )
        .await
    }

    async fn update_container_resources(
        &self,
        request: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        let req = request.into_inner();
        let id = containers::update_resources_id(&req);
        instrument(
            "UpdateContainerResources",
            &id,
            containers::update_resources(&self.engine, req),
        )
        .await
    }

    async fn reopen_container_log(
        &self,
        request: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        let req = request.into_inner();
        let id = containers::reopen_log_id(&req);
        instrument(
            "ReopenContainerLog",
            &id,
            containers::reopen_log(&self.engine, req),
        )
        .await
    }

    async fn exec_sync(
        &self,
        request: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        let req = request.into_inner();
        let id = containers::exec_sync_id(&req);
        instrument("ExecSync", &id, containers::exec_sync(&self.engine, req)).await
    }

    async fn exec(
        &self,
        request: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        let req = request.into_inner();
        let id = streams::exec_id(&req);
        let s = self.streaming.as_deref();
        instrument("Exec", &id, streams::exec(&self.engine, s, req)).await
    }

    async fn attach(
        &self,
        request: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        let req = request.into_inner();
        let id = streams::attach_id(&req);
        let s = self.streaming.as_deref();
        instrument("Attach", &id, streams::attach(&self.engine, s, req)).await
    }

    async fn port_forward(
        &self,
        request: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        let req = request.into_inner();
        let id = streams::port_forward_id(&req);
        let s = self.streaming.as_deref();
        instrument(
            "PortForward",
            &id,
            streams::port_forward(&self.engine, s, req),
        )
        .await
    }

    async fn container_stats(
        &self,
        request: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        let req = request.into_inner();
        let id = stats::container_stats_id(&req);
        instrument(
            "ContainerStats",
            &id,
            stats::container_stats(&self.engine, req),
        )
        .await
    }

    async fn list_container_stats(
        &self,
        request: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        let req = request.into_inner();
        let id = stats::list_container_stats_id(&req);
        instrument(
            "ListContainerStats",
            &id,
            stats::list_container_stats(&self.engine, req),
        )
        .await
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        let req = request.into_inner();
        let id = stats::pod_sandbox_stats_id(&req);
        instrument(
            "PodSandboxStats",
            &id,
            stats::pod_sandbox_stats(&self.engine, req),
        )
        .await
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        let req = request.into_inner();
        let id = stats::list_pod_sandbox_stats_id(&req);
        instrument(
            "ListPodSandboxStats",
            &id,
            stats::list_pod_sandbox_stats(&self.engine, req),
        )
        .await
    }

    async fn update_runtime_config(
        &self,
        request: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
        let req = request.into_inner();
        let id = runtime_info::update_runtime_config_id(&req);
        instrument(
            "UpdateRuntimeConfig",
            &id,
            runtime_info::update_runtime_config(&self.engine, req),
        )
        .await
    }

    async fn status(
        &self,
        request: Request<cri::StatusRequest>,
    ) -> Result<Response<cri::StatusResponse>, Status> {
        let req = request.into_inner();
        let id = runtime_info::status_id(&req);
        instrument("Status", &id, runtime_info::status(&self.engine, req)).await
    }

    async fn checkpoint_container(
        &self,
        _request: Request<cri::CheckpointContainerRequest>,
    ) -> Result<Response<cri::CheckpointContainerResponse>, Status> {
        Err(unimplemented("CheckpointContainer"))
    }

    async fn list_metric_descriptors(
        &self,
        request: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
        let req = request.into_inner();
        let id = metrics::list_metric_descriptors_id(&req);
        instrument(
            "ListMetricDescriptors",
            &id,
            metrics::list_metric_descriptors(&self.engine, req),
        )
        .await
    }

    async fn list_pod_sandbox_metrics(
        &self,
        request: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
        let req = request.into_inner();
        let id = metrics::list_pod_sandbox_metrics_id(&req);
        instrument(
            "ListPodSandboxMetrics",
            &id,
            metrics::list_pod_sandbox_metrics(&self.engine, req),
        )
        .await
    }

    async fn runtime_config(
        &self,
        request: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
        let req = request.into_inner();
        let id = runtime_info::runtime_config_id(&req);
        instrument(
            "RuntimeConfig",
            &id,
            runtime_info::runtime_config(&self.engine, req),
        )
        .await
    }

    async fn update_pod_sandbox_resources(
        &self,
        request: Request<cri::UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<cri::UpdatePodSandboxResourcesResponse>, Status> {
        let req = request.into_inner();
        let id = pods::update_resources_id(&req);
        instrument(
            "UpdatePodSandboxResources",
            &id,
            pods::update_resources(&self.engine, req),
        )
        .await
    }

    async fn stream_pod_sandboxes(
        &self,
        request: Request<cri::StreamPodSandboxesRequest>,
    ) -> Result<Response<ListStream<cri::StreamPodSandboxesResponse>>, Status> {
        list_streams::pod_sandboxes(&self.engine, request.into_inner()).await
    }

    async fn stream_containers(
        &self,
        request: Request<cri::StreamContainersRequest>,
    ) -> Result<Response<ListStream<cri::StreamContainersResponse>>, Status> {
        list_streams::containers(&self.engine, request.into_inner()).await
    }

    async fn stream_container_stats(
        &self,
        request: Request<cri::StreamContainerStatsRequest>,
    ) -> Result<Response<ListStream<cri::StreamContainerStatsResponse>>, Status> {
        list_streams::container_stats(&self.engine, request.into_inner()).await
    }

    async fn stream_pod_sandbox_stats(
        &self,
        request: Request<cri::StreamPodSandboxStatsRequest>,
    ) -> Result<Response<ListStream<cri::StreamPodSandboxStatsResponse>>, Status> {
        list_streams::pod_sandbox_stats(&self.engine, request.into_inner()).await
    }

    async fn stream_pod_sandbox_metrics(
        &self,
        request: Request<cri::StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<ListStream<cri::StreamPodSandboxMetricsResponse>>, Status> {
        list_streams::pod_sandbox_metrics(&self.engine, request.into_inner()).await
    }

    async fn get_container_events(
        &self,
        _request: Request<cri::GetEventsRequest>,
    ) -> Result<Response<events::EventStream>, Status> {
        Ok(Response::new(events::subscribe(self.engine.clone())))
    }
}

#[tonic::async_trait]
impl ImageService for CriService {
    async fn list_images(
        &self,
        request: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        let req = request.into_inner();
        let id = images::list_id(&req);
        instrument("ListImages", &id, images::list(&self.engine, req)).await
    }

    async fn image_status(
        &self,
        request: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        let req = request.into_inner();
        let id = images::status_id(&req);
        instrument("ImageStatus", &id, images::status(&self.engine, req)).await
    }

    async fn pull_image(
        &self,
        request: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        let req = request.into_inner();
        let id = images::pull_id(&req);
        instrument("PullImage", &id, images::pull(&self.engine, req)).await
    }

    async fn remove_image(
        &self,
        request: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        let req = request.into_inner();
        let id = images::remove_id(&req);
        instrument("RemoveImage", &id, images::remove(&self.engine, req)).await
    }

    async fn image_fs_info(
        &self,
        request: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        let req = request.into_inner();
        let id = images::fs_info_id(&req);
        instrument("ImageFsInfo", &id, images::fs_info(&self.engine, req)).await
    }

    async fn stream_images(
        &self,
        request: Request<cri::StreamImagesRequest>,
    ) -> Result<Response<ListStream<cri::StreamImagesResponse>>, Status> {
        list_streams::images(&self.engine, request.into_inner()).await
    }
}
