//! vidfeat: video lists in, YouTube-8M-compatible TFRecords of CNN frame features out.
//!
//! The library side of the CLI, wiring the `ingest`, `decode`, `features`, `labels` and
//! `export` crates together (see docs/ARCHITECTURE.md):
//! * [`jobs`]: inputs -> jobs (ingest, labels, shards) and the failure log;
//! * [`consume`]: decoded videos -> batcher + CNN -> PCA, quantization, shards, summary;
//! * [`pipeline`] (feature `ffmpeg`): decode workers for `run`, and `decode --cache`;
//! * [`cache`] and [`extract`]: the frame cache, and `extract` from it (no FFmpeg needed).
pub mod cache;
pub mod config;
pub mod consume;
pub mod extract;
pub mod jobs;
#[cfg(feature = "ffmpeg")]
pub mod pipeline;
pub mod report;
pub mod sample;
pub mod telemetry;
pub mod verify;
pub mod work;

pub use consume::{ConsumeConfig, Outcome, RunReport};
pub use jobs::JobSpec;

/// Path of the bundled default model (EfficientNet-Lite0, ImageNet weights).
pub fn default_model() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("VIDFEAT_MODEL") {
        return p.into();
    }
    let built = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/efficientnet-lite0.pt");
    if built.exists() {
        return built;
    }
    // A binary carried to another machine: the repository's models/ under the working folder.
    std::path::PathBuf::from("models/efficientnet-lite0.pt")
}

/// SHA-256 of bytes, hex.
pub fn file_sha256_bytes(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}
