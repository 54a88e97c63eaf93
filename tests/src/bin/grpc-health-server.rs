//! A gRPC health server for the cluster test's `grpc` probes, run in a pod:
//!
//!     grpc-health-server PORT SECONDS
//!
//! Serves `grpc.health.v1.Health` on 0.0.0.0:PORT, answering SERVING for the server ("") and
//! for the service `crust-test` — until SECONDS have passed (0: forever), when `crust-test`
//! turns NOT_SERVING, so a liveness probe naming it fails.

use std::time::Duration;

use tonic_health::ServingStatus;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().unwrap_or_else(|| "9090".into()).parse()?;
    let seconds: u64 = args.next().unwrap_or_else(|| "0".into()).parse()?;
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("crust-test", ServingStatus::Serving)
        .await;
    if seconds > 0 {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            reporter
                .set_service_status("crust-test", ServingStatus::NotServing)
                .await;
            println!("crust-test: NOT_SERVING");
        });
    }
    println!("serving grpc.health.v1 on port {port}");
    tonic::transport::Server::builder()
        .add_service(service)
        .serve(([0, 0, 0, 0], port).into())
        .await?;
    Ok(())
}
