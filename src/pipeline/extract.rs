//! `vidfeat extract --cache DIR`: features, PCA and shards from a frame cache made by
//! `vidfeat decode`. Builds and runs without FFmpeg (`--no-default-features`).
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use crossbeam_channel::bounded;
use serde_json::json;

use vidfeat_features::Model;

use crate::pipeline::cache::CacheReader;
use crate::pipeline::consume::{consume, ConsumeConfig, Decoded, Progress, RunReport};
use crate::pipeline::jobs::FailureLog;

#[derive(Debug, Clone)]
pub struct ExtractConfig {
    pub cache: PathBuf,
    pub consume: ConsumeConfig,
    pub model: PathBuf,
    pub sidecar: Option<PathBuf>,
    pub device: String,
    pub torch_threads: usize,
    pub fp16: bool,
    /// Let cuDNN pick convolution algorithms by timing (CUDA; not deterministic across runs).
    pub cudnn_benchmark: bool,
    /// Replace another dataset found in the output folder.
    pub overwrite: bool,
    /// The command and settings that made the output.
    pub provenance: serde_json::Value,
}

/// What `extract` knows of its dataset before any work (see `dataset.rs`).
fn draft(cfg: &ExtractConfig, prepared: &crate::pipeline::jobs::Prepared) -> Result<crate::pipeline::dataset::Draft> {
    use crate::pipeline::dataset::{vocabulary_identity, Draft, Named, PcaChoice, SchemaIdentity};
    let sidecar = cfg.sidecar.clone().unwrap_or_else(|| cfg.model.with_extension("json"));
    let side = vidfeat_features::Sidecar::load(&sidecar)?;
    let dims = cfg.consume.pca_dims.unwrap_or(1024).min(side.output_dim);
    let pca = match &cfg.consume.pca {
        Some(p) => {
            let pca = vidfeat_features::Pca::load(p, cfg.consume.pca_dims)?;
            PcaChoice::Given { path: p.clone(), sha256: pca.content_sha256(), dims: pca.dims }
        }
        None => PcaChoice::Fit { dims },
    };
    Ok(Draft {
        layout: "extract",
        model: Named { name: side.name.clone(), sha256: vidfeat_features::file_sha256(&cfg.model)? },
        sidecar_sha256: vidfeat_features::file_sha256(&sidecar)?,
        pca,
        vocabulary: prepared.vocab.as_ref().map(vocabulary_identity),
        schema: SchemaIdentity::new(cfg.consume.schema.legacy_2017, cfg.consume.schema.audio_zero, cfg.consume.compression),
        extra: vec![],
    })
}

pub fn extract(cfg: &ExtractConfig) -> Result<RunReport> {
    let started = Instant::now();
    let cache = CacheReader::open(&cfg.cache)?;
    let out = &cfg.consume.out;
    let prepared = cache.prepared()?;
    // Device, model and settings are checked before any work.
    let device = crate::pipeline::torch_setup(&cfg.device, cfg.torch_threads, cfg.cudnn_benchmark)?;
    let mut model = Model::load(&cfg.model, cfg.sidecar.as_deref(), device)?;
    if cfg.fp16 {
        model.use_half()?;
    }
    if model.input_wh() != (cache.width, cache.height) {
        bail!("the cache holds {}x{} frames, the model takes {:?}: decode again with this model's sidecar", cache.width, cache.height, model.input_wh());
    }
    if model.sidecar.frames_per_row() != cache.frames_per_row {
        bail!("the cache holds rows of {} frames, the model takes {}: decode again with this model's sidecar", cache.frames_per_row, model.sidecar.frames_per_row());
    }
    model.check()?;
    // The folder is checked before anything is written into it.
    let draft = draft(cfg, &prepared)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    crate::pipeline::dataset::check_out(out, &draft, cfg.overwrite)?;
    // Claimed before any shard is written; completed with the PCA's hash when one is fitted.
    let pca = match &draft.pca {
        crate::pipeline::dataset::PcaChoice::Given { path, sha256, dims } => crate::pipeline::dataset::PcaIdentity { sha256: sha256.clone(), dims: *dims, fitted_here: false, source: path.display().to_string() },
        crate::pipeline::dataset::PcaChoice::Fit { dims } => crate::pipeline::dataset::PcaIdentity { sha256: String::new(), dims: *dims, fitted_here: true, source: "pca.npz".into() },
    };
    crate::pipeline::dataset::write_identity(out, &draft.identity(pca, vec![]))?;
    crate::telemetry::EventLog::open(out, &crate::pipeline::worker::worker_id()).started();
    let mut log = FailureLog::create(&out.join("failures.jsonl"))?;
    for f in cache.earlier_failures()? {
        log.record(f)?;
    }
    if let Some(v) = &prepared.vocab {
        crate::outdir::write_atomic(&out.join("vocabulary.csv"), &v.csv())?;
    }
    let progress: Progress = (Mutex::new(0), Condvar::new());
    let settings = json!({"settings": cache.manifest["decode"].clone(), "frame_cache": cfg.cache.display().to_string(), "fp16": model.is_half(), "precision": model.precision(), "provenance": cfg.provenance, "sampling": cache.manifest["decode"]["sampling"].clone()});
    let threads = if cfg.consume.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { cfg.consume.threads };
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        // The cache is read (and decompressed) on `threads` threads, each taking the next
        // video, at most 2 x threads + 2 ahead of the batcher, which restores job order.
        let (tx, rx) = bounded::<Decoded>(threads + 1);
        let (cache, next, progress) = (&cache, &next, &progress);
        let window = 2 * threads + 2;
        for _ in 0..threads {
            let tx = tx.clone();
            s.spawn(move || loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(v) = cache.videos.get(i) else { return };
                {
                    let (lock, cv) = progress;
                    let mut done = lock.lock().unwrap();
                    while i >= *done + window {
                        done = cv.wait(done).unwrap();
                    }
                }
                if tx.send(cache.load(v)).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        consume(&cfg.consume, model, &prepared, rx, progress, &mut log, started, settings)
    })
    .and_then(|r| {
        // The dataset this folder now holds, and nothing of another shard layout.
        let p = &r.summary["pca"];
        let pca = crate::pipeline::dataset::PcaIdentity {
            sha256: p["sha256"].as_str().unwrap_or_default().to_string(),
            dims: p["dims"].as_u64().unwrap_or(0) as usize,
            fitted_here: p["fitted"].as_bool().unwrap_or(false),
            source: p["source"].as_str().unwrap_or_default().to_string(),
        };
        crate::pipeline::dataset::write_identity(out, &draft.identity(pca, vec![]))?;
        let names = prepared.shard_counts.iter().flat_map(|(s, &n)| (0..n).map(move |k| vidfeat_export::shard_name(s, k, n))).collect();
        crate::pipeline::dataset::remove_stale_shards(out, &crate::outdir::owned(out), &names)?;
        Ok(r)
    })
}
