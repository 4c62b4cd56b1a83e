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
}

pub fn extract(cfg: &ExtractConfig) -> Result<RunReport> {
    let started = Instant::now();
    let cache = CacheReader::open(&cfg.cache)?;
    let out = &cfg.consume.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut log = FailureLog::create(&out.join("failures.jsonl"))?;
    for f in cache.earlier_failures()? {
        log.record(f)?;
    }
    let prepared = cache.prepared()?;
    if let Some(v) = &prepared.vocab {
        v.write_csv(&out.join("vocabulary.csv"))?;
    }
    let (device, note) = vidfeat_features::resolve_device(&cfg.device).map_err(anyhow::Error::msg)?;
    if let Some(n) = note {
        tracing::warn!("{n}");
    }
    if cfg.torch_threads > 0 {
        tch::set_num_threads(cfg.torch_threads as i32);
    }
    let mut model = Model::load(&cfg.model, cfg.sidecar.as_deref(), device)?;
    if cfg.fp16 {
        model.use_half()?;
    }
    if model.input_wh() != (cache.width, cache.height) {
        bail!("the cache holds {}x{} frames, the model takes {:?}: decode again with this model's sidecar", cache.width, cache.height, model.input_wh());
    }
    let progress: Progress = (Mutex::new(0), Condvar::new());
    let settings = json!({"settings": cache.manifest["decode"].clone(), "frame_cache": cfg.cache.display().to_string(), "fp16": model.is_half()});
    std::thread::scope(|s| {
        let (tx, rx) = bounded::<Decoded>(4);
        let cache = &cache;
        s.spawn(move || {
            for v in &cache.videos {
                if tx.send(cache.load(v)).is_err() {
                    return;
                }
            }
        });
        consume(&cfg.consume, model, &prepared, rx, &progress, &mut log, started, settings)
    })
}
