//! `build -t NAME [-f Dockerfile] [--build-arg K=V] [--target STAGE] [--no-cache] CONTEXT`.

use std::path::PathBuf;
use std::time::Instant;

use crust_proto::crust as api;
use crust_shim::client::CriClient;

use crate::common::ExitError;

#[derive(clap::Args)]
pub(crate) struct BuildArgs {
    /// Name (and tag) of the image; repeatable.
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// The Dockerfile (default CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// KEY=VALUE for an ARG; repeatable.
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// Stop after this stage.
    #[arg(long)]
    target: Option<String>,
    /// Run every step again.
    #[arg(long)]
    no_cache: bool,
    /// The build context directory (on crustd's host).
    context: PathBuf,
}

pub(crate) async fn build(c: &mut CriClient, a: BuildArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let context = std::fs::canonicalize(&a.context)
        .map_err(|e| ExitError::new(1, format!("context {}: {e}", a.context.display())))?;
    let dockerfile = match a.file {
        Some(f) => std::fs::canonicalize(&f)
            .map_err(|e| ExitError::new(1, format!("{}: {e}", f.display())))?
            .display()
            .to_string(),
        None => String::new(),
    };
    let mut build_args = std::collections::HashMap::new();
    for kv in &a.build_args {
        let (k, v) = match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), std::env::var(kv).unwrap_or_default()),
        };
        build_args.insert(k, v);
    }
    let mut stream = c
        .crust
        .build(api::BuildRequest {
            context_dir: context.display().to_string(),
            dockerfile,
            tags: a.tags.clone(),
            build_args,
            target: a.target.unwrap_or_default(),
            no_cache: a.no_cache,
        })
        .await?
        .into_inner();
    loop {
        match stream.message().await {
            Ok(Some(p)) => match p.status.as_str() {
                "start" => println!("Step {}/{} : {}", p.step, p.steps, p.instruction),
                "output" => println!("{}", p.message),
                "cached" => println!(
                    "Step {}/{} : {}\n ---> CACHED",
                    p.step, p.steps, p.instruction
                ),
                "finished" => {
                    println!("Successfully built {}", &p.image_id[7..19]);
                    for t in &a.tags {
                        println!("Successfully tagged {t}");
                    }
                    println!("({:.2}s)", started.elapsed().as_secs_f64());
                    return Ok(());
                }
                _ => {}
            },
            Ok(None) => anyhow::bail!("the build ended without a result"),
            Err(s) => return Err(ExitError::new(1, s.message().to_string()).into()),
        }
    }
}
