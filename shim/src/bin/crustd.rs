//! crustd: the CRI daemon. `crustd monitor …` is the per-pod monitor, started by crustd itself
//! with a fresh exec; it must branch off before any runtime or thread exists.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use crust_proto::cri::image_service_server::ImageServiceServer;
use crust_proto::cri::runtime_service_server::RuntimeServiceServer;
use crust_runtime::engine::EngineConfig;
use crust_runtime::monitor::client::MonitorLauncher;
use crust_runtime::monitor::server::{self, MonitorArgs};
use crust_shim::config::{self, Config};
use crust_shim::cri::CriService;
use crust_shim::telemetry;
use tokio_stream::StreamExt;

#[derive(Parser)]
#[command(
    name = "crustd",
    version,
    about = "crust: a Kubernetes container runtime (CRI v1)"
)]
struct Cli {
    /// TOML config file (see `crustd config default`).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Persistent data directory.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Runtime state directory.
    #[arg(long)]
    state: Option<PathBuf>,
    /// CRI socket path.
    #[arg(long)]
    listen: Option<PathBuf>,
    /// Log filter (e.g. info, debug).
    #[arg(long)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        what: ConfigCommand,
    },
    /// Internal: the per-pod monitor process (started by crustd).
    #[command(hide = true)]
    Monitor {
        #[arg(long)]
        pod_id: String,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "")]
        hostname: String,
        #[arg(long, value_delimiter = ',', default_value = "net,ipc,uts")]
        namespaces: Vec<String>,
        #[arg(long)]
        ready_fd: Option<i32>,
        #[arg(long, default_value_t = crust_runtime::monitor::log_writer::DEFAULT_MAX_LINE)]
        max_log_line: usize,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the default configuration, with comments.
    Default,
    /// Check a configuration file: it parses and every value is valid.
    Check { file: PathBuf },
}

fn main() -> anyhow::Result<()> {
    // Before any thread exists, so none has an arena of its own yet.
    crust_shim::heap::one_arena();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Monitor {
            pod_id,
            dir,
            hostname,
            namespaces,
            ready_fd,
            max_log_line,
        }) => {
            // Single-threaded from here on: no tokio multi-thread runtime in this process.
            server::run(MonitorArgs {
                pod_id,
                dir,
                hostname,
                namespaces: namespaces.into_iter().filter(|n| !n.is_empty()).collect(),
                ready_fd,
                max_log_line,
            })?;
            Ok(())
        }
        Some(Command::Config {
            what: ConfigCommand::Default,
        }) => {
            print!("{}", config::DEFAULT_TOML);
            Ok(())
        }
        Some(Command::Config {
            what: ConfigCommand::Check { file },
        }) => {
            Config::load(&file)?.validate()?;
            println!("{}: ok", file.display());
            Ok(())
        }
        None => {
            let mut cfg = match &cli.config {
                Some(p) => Config::load(p)?,
                None => Config::default(),
            };
            if let Some(v) = cli.root {
                cfg.root = v;
            }
            if let Some(v) = cli.state {
                cfg.state = v;
            }
            if let Some(v) = cli.listen {
                cfg.listen = v;
            }
            if let Some(v) = cli.log_level {
                cfg.log_level = v;
            }
            cfg.validate()?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(serve(cfg))
        }
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    // Before the engine exists: its instruments come from the meter provider set up here.
    let telemetry = telemetry::init(&cfg.telemetry, &cfg.log_level)?;
    let result = serve_cri(cfg, &telemetry).await;
    telemetry.shutdown();
    result
}

async fn serve_cri(cfg: Config, telemetry: &telemetry::Telemetry) -> anyhow::Result<()> {
    // The small monitor binary next to crustd when it is there (every pod runs one, so its
    // size is every pod's cost); crustd's own `monitor` subcommand otherwise.
    let monitor_bin = std::env::current_exe()?.with_file_name("crust-monitor");
    let (sealed, prefix_args) = if monitor_bin.is_file() {
        let sealed = crust_shim::sealed::seal_file(&monitor_bin, c"crust-monitor")
            .with_context(|| format!("seal {}", monitor_bin.display()))?;
        (sealed, vec![])
    } else {
        tracing::info!(missing = %monitor_bin.display(), "running monitors as `crustd monitor`");
        let sealed = crust_shim::sealed::seal_self().context("seal crustd for the monitors")?;
        (sealed, vec!["monitor".into()])
    };
    let launcher = MonitorLauncher {
        exe: sealed.path.clone(),
        prefix_args,
        max_log_line: cfg.log.max_line_size,
        exe_fd: Some(Arc::new(sealed.fd)),
    };
    let engine_cfg = EngineConfig {
        root: cfg.root.clone(),
        state: cfg.state.clone(),
        cgroup_root: cfg.cgroup_root.clone(),
        cgroup_driver: cfg.driver()?,
        registry: cfg.image.registry_config()?,
        runtime_handlers: cfg.runtime_handlers.clone(),
        shm_size: cfg.shm_size,
        cni: Some(crust_runtime::network::CniConfig {
            conf_dir: cfg.cni.conf_dir.clone(),
            bin_dirs: cfg.cni.bin_dirs.clone(),
        }),
        max_concurrent_downloads: cfg.image.max_concurrent_downloads,
        pinned_images: cfg.image.pinned_images.clone(),
        launcher,
        seccomp_default: cfg.seccomp_default()?,
        cdi_spec_dirs: cfg.cdi_spec_dirs.clone(),
    };
    let engine = tokio::task::spawn_blocking(move || crust_runtime::Engine::open(engine_cfg))
        .await?
        .context("open the engine")?;
    engine.recover().await;
    let engine = Arc::new(engine);
    let prepare = engine.clone();
    tokio::task::spawn_blocking(move || prepare.images.prepare_client());
    tokio::spawn(
        engine
            .clone()
            .watch_exits(std::time::Duration::from_millis(200)),
    );
    tokio::spawn(engine.clone().sample_layer_usage());
    tokio::spawn(crust_shim::heap::trim_when_quiet());

    if let Some(dir) = cfg.listen.parent() {
        crust_runtime::fsutil::ensure_private_dir(dir)
            .with_context(|| format!("create socket dir {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(&cfg.listen);
    let uds = tokio::net::UnixListener::bind(&cfg.listen)
        .with_context(|| format!("listen on {}", cfg.listen.display()))?;
    std::fs::set_permissions(&cfg.listen, std::fs::Permissions::from_mode(0o660))?;
    tracing::info!(
        socket = %cfg.listen.display(),
        root = %cfg.root.display(),
        cgroups = engine.hierarchy.version(),
        version = env!("CARGO_PKG_VERSION"),
        "crustd serving CRI v1"
    );

    let streaming =
        crust_shim::streaming::StreamingServer::start(cfg.streaming.to_config()?, engine.clone())
            .await
            .context("start the streaming server")?;
    if !cfg.image.import_dir.is_empty() {
        crust_shim::import_dir::spawn(engine.clone(), cfg.image.import_dir.clone().into());
    }
    let readiness = telemetry::http::Readiness::default();
    if let Some(reader) = &telemetry.prometheus {
        let addr = telemetry::http::serve(
            &cfg.telemetry.metrics_address,
            reader.clone(),
            engine.clone(),
            readiness.clone(),
        )
        .await
        .with_context(|| format!("metrics address {}", cfg.telemetry.metrics_address))?;
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    }
    if let Some(every) = telemetry.otlp_metrics {
        // The pushed gauges are only as fresh as their last sample.
        let engine = engine.clone();
        tokio::spawn(async move {
            loop {
                telemetry::daemon::sample(&engine).await;
                tokio::time::sleep(every / 2).await;
            }
        });
    }
    let svc = CriService {
        engine: engine.clone(),
        streaming: Some(streaming),
    };
    const MAX_MSG: usize = 16 << 20;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // The standard gRPC health service next to CRI, for probes and orchestration that expect
    // it: the server ("") and both CRI services report SERVING while crustd serves.
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<RuntimeServiceServer<CriService>>()
        .await;
    health.set_serving::<ImageServiceServer<CriService>>().await;
    let layers = tower::ServiceBuilder::new()
        .layer(telemetry::grpc::TraceLayer)
        .layer(crust_shim::deadline::Layer)
        .layer(crust_shim::cri::undecodable::Layer)
        .into_inner();
    let server = tonic::transport::Server::builder()
        .layer(layers)
        .add_service(health_service)
        .add_service(RuntimeServiceServer::new(svc.clone()).max_decoding_message_size(MAX_MSG))
        .add_service(ImageServiceServer::new(svc).max_decoding_message_size(MAX_MSG))
        // crust's own API (tag, rename, push, build) beside CRI.
        .add_service(crust_proto::crust::crust_server::CrustServer::new(
            crust_shim::api::CrustService {
                engine: engine.clone(),
            },
        ))
        .serve_with_incoming_shutdown(
            // Every :authority a client sends is accepted (see crust_shim::authority).
            tokio_stream::wrappers::UnixListenerStream::new(uds)
                .map(|conn| conn.map(crust_shim::authority::AuthorityRepair::new)),
            async {
                let _ = stop_rx.await;
            },
        );
    tokio::pin!(server);
    readiness.set(true);
    tokio::select! {
        res = &mut server => res?,
        _ = shutdown_signal() => {
            readiness.set(false);
            // Stop accepting and let in-flight calls finish; kubelet keeps its connection open
            // forever, so graceful shutdown is bounded rather than waiting for clients to leave.
            let _ = stop_tx.send(());
            let drained = async {
                while crust_shim::cri::inflight() > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            };
            tokio::select! {
                _ = &mut server => {}
                _ = drained => {}
                _ = tokio::time::sleep(SHUTDOWN_GRACE) => {
                    tracing::warn!(grace = ?SHUTDOWN_GRACE, inflight = crust_shim::cri::inflight(), "calls still running; exiting anyway");
                }
            }
        }
    }
    let _ = std::fs::remove_file(&cfg.listen);
    engine.release_monitors_cgroup();
    tracing::info!("crustd stopped; containers keep running under their monitors");
    Ok(())
}

/// How long in-flight CRI calls get to finish after SIGTERM/SIGINT.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}
