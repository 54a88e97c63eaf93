//! Tagging: another name for an image already in the store.

use super::reference::Reference;
use super::{ImageError, ImageRecord, ImageStore};

impl ImageStore {
    /// Adds `target` (normalized, with `:latest` when no tag is given) to the image `source`
    /// names (a name, id or id prefix). The tag moves off any other image that had it.
    pub fn tag(&self, source: &str, target: &str) -> Result<(ImageRecord, String), ImageError> {
        let rec = self
            .resolve(source)?
            .ok_or_else(|| ImageError::NotFound(format!("No such image: {source}")))?;
        let r = Reference::parse(target)?;
        if r.digest.is_some() {
            return Err(ImageError::Unsupported(format!(
                "{target}: a tag cannot name a digest"
            )));
        }
        let tag = r
            .tagged()
            .ok_or_else(|| ImageError::Unsupported(format!("{target}: no tag")))?;
        self.add_tag(&rec.id, &tag).map(|rec| (rec, tag))
    }

    /// Takes the tag `name` (normalized) off its image, which must keep another tag.
    pub fn untag(&self, name: &str) -> Result<(ImageRecord, String), ImageError> {
        let tag = Reference::parse(name)?
            .tagged()
            .ok_or_else(|| ImageError::Unsupported(format!("{name}: no tag")))?;
        let rec = {
            let mut images = self.images.write().expect("image lock");
            let rec = images
                .values_mut()
                .find(|r| r.repo_tags.contains(&tag))
                .ok_or_else(|| ImageError::NotFound(format!("No such image: {name}")))?;
            if rec.repo_tags.len() < 2 {
                return Err(ImageError::Unsupported(format!(
                    "{tag} is the image's last tag: remove the image instead"
                )));
            }
            rec.repo_tags.retain(|t| *t != tag);
            rec.clone()
        };
        self.persist(&rec)?;
        Ok((rec, tag))
    }

    /// Puts `tag` on the image `id`, taking it off every other image; persists what changed.
    pub(crate) fn add_tag(&self, id: &str, tag: &str) -> Result<ImageRecord, ImageError> {
        let mut changed = Vec::new();
        let rec = {
            let mut images = self.images.write().expect("image lock");
            for rec in images.values_mut() {
                if rec.id != id && rec.repo_tags.iter().any(|t| t == tag) {
                    rec.repo_tags.retain(|t| t != tag);
                    changed.push(rec.clone());
                }
            }
            let rec = images
                .get_mut(id)
                .ok_or_else(|| ImageError::NotFound(format!("No such image: {id}")))?;
            if !rec.repo_tags.iter().any(|t| t == tag) {
                rec.repo_tags.push(tag.to_string());
            }
            rec.clone()
        };
        changed.push(rec.clone());
        for r in &changed {
            self.persist(r)?;
        }
        Ok(rec)
    }
}
