//! `vidfeat pca fit` (and the PCA a plan fits when none is given): decode, extract, and fit.
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use anyhow::Result;
use serde_json::json;

use vidfeat_features::Model;

use crate::pipeline::consume::Progress;
use crate::pipeline::decode::{in_order, spawn_decoders, DecodeSettings};
use crate::pipeline::jobs::{prepare, FailureLog, JobSpec};

/// `vidfeat pca fit`: streaming mean and covariance over at most `max_frames` frames of the
/// inputs (in job order; never holds more than one video's features), then the
/// eigendecomposition, saved as our .npz or as YouTube-8M's three .npy files.
#[derive(Debug, Clone)]
pub struct PcaFitConfig {
    pub jobs: JobSpec,
    pub out: PathBuf,
    pub dims: usize,
    pub max_frames: usize,
    pub model: PathBuf,
    pub sidecar: Option<PathBuf>,
    pub device: String,
    pub decode: DecodeSettings,
    pub batch_size: usize,
    /// Log the lists' problems (off when a plan of the same lists already did).
    pub log_list_problems: bool,
}

pub fn pca_fit(cfg: &PcaFitConfig) -> Result<serde_json::Value> {
    let started = Instant::now();
    let scratch = tempdir_for(&cfg.out)?;
    let mut log = FailureLog::create(&scratch.join("failures.jsonl"))?;
    log.echo = cfg.log_list_problems;
    let prepared = prepare(&cfg.jobs, &scratch, &mut log)?;
    let (device, note) = vidfeat_features::resolve_device(&cfg.device).map_err(anyhow::Error::msg)?;
    if let Some(n) = note {
        tracing::warn!("{n}");
    }
    let model = Model::load(&cfg.model, cfg.sidecar.as_deref(), device)?;
    let opts = cfg.decode.options(&model.sidecar)?;
    let dim = model.sidecar.output_dim;
    let (w, h) = model.input_wh();
    let frame_bytes = (w * h * 3) as usize;
    let mut acc = vidfeat_features::CovarianceAccumulator::new(dim);
    let progress: Progress = (Mutex::new(0), Condvar::new());
    let mut videos = 0u64;
    let mut failures: Vec<crate::pipeline::jobs::Failure> = vec![];
    let fetch = cfg.decode.fetch_in(cfg.out.parent().unwrap_or(std::path::Path::new(".")));
    std::thread::scope(|s| -> Result<()> {
        let rx = spawn_decoders(s, &prepared.jobs, &opts, cfg.decode.workers, &progress, &fetch);
        in_order(rx, &progress, |idx, d| {
            match d.result {
                Ok((frames, rows, _, _)) => {
                    videos += 1;
                    let take = (rows as usize).min(cfg.max_frames - acc.rows());
                    let batches = frames[..take * frame_bytes].chunks(cfg.batch_size.max(1) * frame_bytes).map(|c| (c, c.len() / frame_bytes));
                    model.extract_all(batches, |f| {
                        acc.add(&f, f.len() / dim);
                        Ok(())
                    })?;
                }
                Err((kind, reason)) => {
                    let job = &prepared.jobs[idx];
                    tracing::warn!("skipped for the PCA: {} ({kind}): {reason}", job.task.id);
                    failures.push(crate::pipeline::jobs::Failure::of_job(job, "decode", kind, reason));
                }
            }
            // Stop once the sample is full.
            Ok(acc.rows() < cfg.max_frames)
        })
    })?;
    let _ = std::fs::remove_dir_all(&scratch);
    if acc.rows() < 2 {
        return Ok(json!({"frames": acc.rows(), "videos": videos, "failures": failures}));
    }
    let pca = acc.fit(cfg.dims.min(dim)).map_err(anyhow::Error::msg)?;
    pca.save(&cfg.out)?;
    Ok(json!({
        "failures": failures,
        "out": cfg.out.display().to_string(),
        "frames": acc.rows(),
        "videos": videos,
        "videos_failed": failures.len() as u64 + log.total(),
        "input_dim": dim,
        "dims": pca.dims,
        "sha256": pca.content_sha256(),
        "model": model.sidecar.name,
        "model_sha256": model.sha256,
        "wall_time_s": started.elapsed().as_secs_f64(),
    }))
}

/// A scratch folder beside `out` (for the vocabulary and failure log that `prepare` writes).
fn tempdir_for(out: &std::path::Path) -> Result<PathBuf> {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(parent)?;
    let d = parent.join(format!(".vidfeat-pca-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
