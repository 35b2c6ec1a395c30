//! The folder a capability author hands a gateway operator (`d402 node --publish DIR`):
//! `registration.json`, `manifest.json` and `component.wasm`. One place knows the layout, so the
//! gateway that reads it and the devnet and tests that write it cannot drift apart.

use std::path::Path;

use d402_registry::{Manifest, Registration};

pub const REGISTRATION: &str = "registration.json";
pub const MANIFEST: &str = "manifest.json";
pub const COMPONENT: &str = "component.wasm";

/// Why a published folder could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PublishedError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("encoding {0}: {1}")]
    Json(&'static str, serde_json::Error),
}

/// Writes `dir` (created if missing) with the three files.
pub fn write(
    dir: &Path,
    registration: &Registration,
    manifest: &Manifest,
    component: &[u8],
) -> Result<(), PublishedError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| PublishedError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let registration = serde_json::to_vec_pretty(registration)
        .map_err(|e| PublishedError::Json(REGISTRATION, e))?;
    let manifest =
        serde_json::to_vec_pretty(manifest).map_err(|e| PublishedError::Json(MANIFEST, e))?;
    for (name, bytes) in [
        (REGISTRATION, registration.as_slice()),
        (MANIFEST, manifest.as_slice()),
        (COMPONENT, component),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(io(&path))?;
    }
    Ok(())
}
