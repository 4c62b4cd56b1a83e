//! vidfeat: video lists in, YouTube-8M-compatible TFRecords of CNN frame features out.
//!
//! The library side of the CLI: the `run` pipeline wiring the `ingest`, `decode`, `features`,
//! `labels` and `export` crates together. See docs/ARCHITECTURE.md.
pub mod pipeline;
pub use pipeline::{run, Outcome, RunConfig, RunReport};

/// Path of the bundled default model (EfficientNet-Lite0, ImageNet weights).
pub fn default_model() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("VIDFEAT_MODEL") {
        return p.into();
    }
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/efficientnet-lite0.pt")
}
