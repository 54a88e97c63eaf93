//! `push NAME`: crust's own PushImage, its progress shown as Docker shows it.

use std::io::{IsTerminal, Write};

use crust_proto::crust as api;
use crust_shim::client::CriClient;

use crate::common::ExitError;

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

/// Pushes `image`; prints one line per blob and the manifest digest; returns that digest.
pub(crate) async fn push(c: &mut CriClient, image: &str) -> anyhow::Result<String> {
    let tty = std::io::stdout().is_terminal();
    let mut stream = c
        .crust
        .push_image(api::PushImageRequest {
            image: image.into(),
            auth: None,
        })
        .await
        .map_err(|s| match s.code() {
            tonic::Code::NotFound => {
                anyhow::Error::from(ExitError::new(1, format!("No such image: {image}")))
            }
            _ => s.into(),
        })?
        .into_inner();
    println!("The push refers to repository [{image}]");
    let mut out = std::io::stdout();
    let mut digest = String::new();
    while let Some(p) = stream.message().await? {
        let id = short(&p.digest);
        match p.status.as_str() {
            "uploading" if tty => {
                write!(
                    out,
                    "\r{id}: Pushing {:>10}/{}",
                    p.bytes_done, p.bytes_total
                )?;
                out.flush()?;
            }
            "exists" => println!("{id}: Layer already exists"),
            "mounted" => println!("{id}: Mounted from another repository"),
            "pushed" => {
                if tty {
                    write!(out, "\r\x1b[K")?;
                }
                println!("{id}: Pushed")
            }
            "done" => digest = p.manifest_digest,
            _ => {}
        }
    }
    if digest.is_empty() {
        anyhow::bail!("push of {image} ended without a manifest digest");
    }
    let tag = image
        .rsplit_once('/')
        .map_or(image, |(_, last)| last)
        .split_once(':')
        .map_or("latest", |(_, t)| t);
    println!("{tag}: digest: {digest}");
    Ok(digest)
}
