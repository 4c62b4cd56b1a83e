//! The dataset build: from lists to shards. Takes resolved settings (plain structs built by the
//! command line), never flags.
//!
//! ```text
//! jobs.rs      inputs -> jobs (ingest, labels, shards), the failure log
//! plan.rs      plan.jsonl (resolve without decoding), plan.json (freeze: settings, model, PCA)
//! decode.rs    decode workers (feature `ffmpeg`), `decode --cache`
//! consume.rs   batcher + CNN + PCA/quantization + shard writer (extract's streaming consumer)
//! worker/      `vidfeat work`: leases, journal, shard commit, done markers, status
//! run.rs       `vidfeat run` = plan + freeze + one worker, in one folder (feature `ffmpeg`)
//! pca.rs       `vidfeat pca fit` (feature `ffmpeg`)
//! cache.rs     the frame cache between `decode` and `extract`; extract.rs: `vidfeat extract`
//! dataset.rs   the output folder's contract: dataset.json, refusal, --overwrite, stale shards
//! layout.rs    how cores are split between decoders and the network
//! models.rs    several models from one decode: shared decode options, each model's rows
//! frames.rs    `vidfeat frames` (feature `ffmpeg`); cnn_bench.rs: `vidfeat cnn-bench`
//! ```
pub mod cache;
pub mod cnn_bench;
pub mod consume;
pub mod dataset;
#[cfg(feature = "ffmpeg")]
pub mod decode;
pub mod extract;
#[cfg(feature = "ffmpeg")]
pub mod frames;
pub mod jobs;
pub mod layout;
pub mod models;
#[cfg(feature = "ffmpeg")]
pub mod pca;
pub mod plan;
pub mod predictions;
#[cfg(feature = "ffmpeg")]
pub mod run;
pub mod worker;

pub use consume::{ConsumeConfig, Outcome, RunReport};
pub use jobs::JobSpec;

/// The device to run the model on (a note logged where `auto` fell back), libtorch's intra-op
/// threads (0: libtorch's choice) and cuDNN autotuning, set once per process.
pub fn torch_setup(device: &str, torch_threads: usize, cudnn_benchmark: bool) -> anyhow::Result<tch::Device> {
    let (device, note) = vidfeat_features::resolve_device(device).map_err(anyhow::Error::msg)?;
    if let Some(n) = note {
        tracing::warn!("{n}");
    }
    if torch_threads > 0 {
        tch::set_num_threads(torch_threads as i32);
    }
    if cudnn_benchmark {
        vidfeat_features::Model::set_cudnn_benchmark(true);
    }
    Ok(device)
}

/// Writes a file whole or not at all (see [`crate::outdir`]).
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    crate::outdir::write_atomic(path, bytes)
}

/// fsyncs a folder (so a rename or removal in it is durable); best effort.
pub fn sync_dir(dir: &std::path::Path) {
    crate::outdir::sync_dir(dir)
}

/// What made an output, for `summary.json`, `plan.json` and the report: vidfeat's version and
/// the git commit it was built from, the command line and its effective settings (as the
/// command line resolved them), the FFmpeg and libtorch versions, the host and the time.
pub fn provenance(command: Vec<String>, settings: serde_json::Value) -> serde_json::Value {
    #[cfg(feature = "ffmpeg")]
    let ffmpeg: serde_json::Value = vidfeat_decode::library_versions().into_iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v))).collect();
    #[cfg(not(feature = "ffmpeg"))]
    let ffmpeg = serde_json::Value::Null;
    let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    serde_json::json!({
        "vidfeat": env!("CARGO_PKG_VERSION"),
        "git_commit": option_env!("VIDFEAT_GIT_COMMIT"),
        "command": command,
        "settings": settings,
        "ffmpeg": ffmpeg,
        "libtorch": vidfeat_features::LIBTORCH_VERSION,
        "host": std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default(),
        "created_at": now,
    })
}
