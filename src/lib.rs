//! vidfeat: video lists in, YouTube-8M-compatible TFRecords of CNN frame features out.
//!
//! The library half of the crate, wiring the `ingest`, `decode`, `features`, `labels` and
//! `export` crates together (see docs/ARCHITECTURE.md). It knows nothing of the command line:
//! * [`pipeline`]: the dataset build (jobs, plans, decode workers, the consumer, cluster
//!   workers, the frame cache and extract);
//! * [`outputs`]: readers of finished outputs (inspect, verify, report, sample);
//! * [`telemetry`]: counters, progress, logs and the per-video event log, shared by both;
//! * [`mirror`]: an output folder in a bucket, worked on through a local mirror.
pub mod mirror;
pub mod outputs;
pub mod pipeline;
pub mod telemetry;

pub use pipeline::{ConsumeConfig, JobSpec, Outcome, RunReport};

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
