//! A CRI client over a unix socket, for crustctl and the benchmark.

use std::path::Path;

use crust_proto::cri::image_service_client::ImageServiceClient;
use crust_proto::cri::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Clone)]
pub struct CriClient {
    pub runtime: RuntimeServiceClient<Channel>,
    pub image: ImageServiceClient<Channel>,
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
        image: ImageServiceClient::new(channel).max_decoding_message_size(MAX),
    })
}
