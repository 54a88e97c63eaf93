//! `tag` and `rename`: crust's own API (CRI has neither).

use crust_proto::crust as api;
use crust_shim::client::CriClient;

use crate::common::ExitError;

/// `crustctl tag SOURCE TARGET`.
pub(crate) async fn tag(c: &mut CriClient, source: &str, target: &str) -> anyhow::Result<()> {
    c.crust
        .tag_image(api::TagImageRequest {
            source: source.into(),
            target: target.into(),
        })
        .await
        .map_err(|s| match s.code() {
            tonic::Code::NotFound => ExitError::new(1, format!("No such image: {source}")).into(),
            _ => anyhow::Error::from(s),
        })?;
    Ok(())
}

/// `crustctl rename OLD NEW`.
pub(crate) async fn rename(c: &mut CriClient, old: &str, new: &str) -> anyhow::Result<()> {
    crate::names::check(new)?;
    c.crust
        .rename_container(api::RenameContainerRequest {
            container: old.into(),
            new_name: new.into(),
        })
        .await
        .map_err(|s| match s.code() {
            tonic::Code::NotFound | tonic::Code::AlreadyExists => {
                ExitError::new(1, s.message().to_string()).into()
            }
            _ => anyhow::Error::from(s),
        })?;
    Ok(())
}
