//! vidfeat: video lists in, YouTube-8M-compatible TFRecords of CNN frame features out.
//!
//! The library half of the crate, wiring the `ingest`, `decode`, `features`, `labels` and
//! `export` crates together (see docs/ARCHITECTURE.md). It knows nothing of the command line:
//! * [`pipeline`]: the dataset build (jobs, plans, decode workers, the consumer, cluster
//!   workers, the frame cache and extract);
//! * [`outputs`]: readers of finished outputs (inspect, verify, report, sample);
//! * [`telemetry`]: counters, progress, logs and the per-video event log, shared by both;
//! * [`mirror`]: an output folder in a bucket, worked on through a local mirror;
//! * [`outdir`]: the one writer of an output folder (atomic files) and what in it vidfeat wrote.
pub mod mirror;
pub mod outdir;
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

/// Models known by name (`--model NAME`): where each lives, and how to get it.
pub const NAMED_MODELS: [(&str, &str, &str); 2] = [
    ("efficientnet-lite0", "models/efficientnet-lite0.pt", "bundled"),
    ("i3d-kinetics-400", ".deps/models/i3d-kinetics-400.pt", "run scripts/i3d-setup.sh (fetches and converts the weights once)"),
];

/// The file of a model named on the command line (`i3d-kinetics-400`), or None when `name`
/// is not one of [`NAMED_MODELS`]. Err: a known model that is not there, and how to get it.
pub fn named_model(name: &str) -> Option<Result<std::path::PathBuf, String>> {
    let (_, rel, how) = NAMED_MODELS.iter().find(|(n, _, _)| *n == name)?;
    let built = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    // A binary carried to another machine: the path under the working folder.
    let p = if built.exists() { built } else { std::path::PathBuf::from(rel) };
    Some(if p.exists() { Ok(p) } else { Err(format!("--model {name}: {} not found; {how}", p.display())) })
}

/// A `--model`/`--sidecar` argument that names a model rather than a file: not an existing
/// path, no `/`, and one of [`NAMED_MODELS`]. None: take the argument as a path.
pub fn named_model_arg(p: &std::path::Path) -> Option<Result<std::path::PathBuf, String>> {
    p.to_str().filter(|s| !p.exists() && !s.contains('/')).and_then(named_model)
}

/// SHA-256 of bytes, hex.
pub fn file_sha256_bytes(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}
