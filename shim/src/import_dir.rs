//! The import directory for air-gapped nodes: image archives (OCI layout or `docker save`
//! tars) dropped there are imported at start and whenever new ones appear. Each ends in
//! `done/` with a `.json` list of the names imported, or in `failed/` with a `.error`
//! saying why. `crustctl load` uses the same directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crust_runtime::Engine;

pub const DONE: &str = "done";
pub const FAILED: &str = "failed";

/// Archives waiting in `dir`: `*.tar` files, not hidden (a copy in progress is hidden).
fn pending(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.is_file()
                        && p.extension().is_some_and(|x| x == "tar")
                        && !p
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Imports what is waiting in `dir` once.
pub async fn import_pending(engine: &Engine, dir: &Path) {
    for archive in pending(dir) {
        let name = archive.file_name().unwrap_or_default().to_os_string();
        let result = engine.images.import_archive(&archive).await;
        let (sub, note, body) = match &result {
            Ok(recs) => {
                let names: Vec<String> = recs.iter().map(|(n, _)| n.clone()).collect();
                tracing::info!(archive = %archive.display(), images = ?names, "imported");
                (DONE, "json", serde_json::to_vec(&names).unwrap_or_default())
            }
            Err(e) => {
                tracing::warn!(archive = %archive.display(), err = %e, "import failed");
                (FAILED, "error", e.to_string().into_bytes())
            }
        };
        let dest = dir.join(sub);
        let _ = std::fs::create_dir_all(&dest);
        let mut note_name = name.clone();
        note_name.push(format!(".{note}"));
        let _ = crust_runtime::fsutil::write_atomic(&dest.join(note_name), &body);
        let _ = std::fs::rename(&archive, dest.join(&name));
    }
}

/// Imports at start, then keeps watching `dir` (polling: the directory is tiny and imports
/// are rare, so inotify would buy nothing).
pub fn spawn(engine: Arc<Engine>, dir: PathBuf) {
    tokio::spawn(async move {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), err = %e, "no import directory");
            return;
        }
        loop {
            import_pending(&engine, &dir).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}
