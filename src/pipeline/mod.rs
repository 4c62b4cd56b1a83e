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
//! layout.rs    how cores are split between decoders and the network
//! frames.rs    `vidfeat frames` (feature `ffmpeg`); cnn_bench.rs: `vidfeat cnn-bench`
//! ```
pub mod cache;
pub mod cnn_bench;
pub mod consume;
#[cfg(feature = "ffmpeg")]
pub mod decode;
pub mod extract;
#[cfg(feature = "ffmpeg")]
pub mod frames;
pub mod jobs;
pub mod layout;
#[cfg(feature = "ffmpeg")]
pub mod pca;
pub mod plan;
#[cfg(feature = "ffmpeg")]
pub mod run;
pub mod worker;

pub use consume::{ConsumeConfig, Outcome, RunReport};
pub use jobs::JobSpec;
