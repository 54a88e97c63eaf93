//! A CRI client over a unix socket, for crustctl and the benchmark.

use std::path::Path;

use crust_proto::cri::image_service_client::ImageServiceClient;
use crust_proto::cri::runtime_service_client::RuntimeServiceClient;
use crust_proto::crust::crust_client::CrustClient;
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Clone)]
pub struct CriClient {
    pub runtime: RuntimeServiceClient<Channel>,
    pub image: ImageServiceClient<Channel>,
    /// crust's own API (tag, rename, push, build) on the same socket.
    pub crust: CrustClient<Channel>,
}

impl CriClient {
    /// StopPodSandbox then RemovePodSandbox, as kubelet ends a pod.
    pub async fn remove_pod(&mut self, id: &str) -> Result<(), tonic::Status> {
        self.runtime
            .stop_pod_sandbox(crust_proto::cri::StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await?;
        self.runtime
            .remove_pod_sandbox(crust_proto::cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await?;
        Ok(())
    }
}

pub async fn connect(socket: &Path) -> anyhow::Result<CriClient> {
    let socket = socket.to_path_buf();
    let display = socket.display().to_string();
    let channel = Endpoint::try_from("http://[::]:0")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to crustd at {display}: {e}"))?;
    const MAX: usize = 16 << 20;
    Ok(CriClient {
        runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(MAX),
        image: ImageServiceClient::new(channel.clone()).max_decoding_message_size(MAX),
        crust: CrustClient::new(channel).max_decoding_message_size(MAX),
    })
}
