//! `vidfeat pca fit` (and the PCA a plan fits when none is given): decode, extract, fit.
//! Streaming mean and covariance over at most `max_frames` frames (in job order; never more
//! than one video's features held), then the eigendecomposition, saved as our .npz or as
//! YouTube-8M's three .npy files.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use anyhow::Result;
use serde_json::json;

use vidfeat_features::Model;

use crate::pipeline::consume::Progress;
use crate::pipeline::decode::{in_order_streams, spawn_decoders, DecodeSettings, Piece};
use crate::pipeline::models::VideoFeatures;
use crate::pipeline::jobs::{prepare, Failure, FailureLog, Job, JobSpec};

#[derive(Debug, Clone)]
pub struct PcaFitConfig {
    /// The models to fit a PCA for, all from one decode (a plan's several models).
    pub models: Vec<FitModel>,
    /// The sidecars of every model the decode feeds (a plan's), when not only these: the
    /// sample is then the frames the run decodes (a video a clip decode fails is left out
    /// for all). Empty: the fitted models'.
    pub decode_for: Vec<vidfeat_features::Sidecar>,
    pub max_frames: usize,
    pub device: String,
    /// Decoding; `fetch.dir` must be set when sources are remote.
    pub decode: DecodeSettings,
    pub batch_size: usize,
}

/// One model to fit a PCA for: its files, where the PCA goes, the dims it keeps.
#[derive(Debug, Clone)]
pub struct FitModel {
    pub model: PathBuf,
    pub sidecar: Option<PathBuf>,
    pub out: PathBuf,
    pub dims: usize,
}

/// What a fit did.
pub struct Fit {
    /// Frames in the sample (a PCA is written when there are at least 2).
    pub frames: usize,
    /// Videos whose frames went into it.
    pub videos: u64,
    /// Videos that could not be decoded.
    pub failures: Vec<Failure>,
    /// The written PCA's description (the first model's), when one was written.
    pub pca: Option<serde_json::Value>,
}

/// `vidfeat pca fit INPUT...`: the lists' problems and each failed video are logged.
pub fn pca_fit(cfg: &PcaFitConfig, spec: &JobSpec) -> Result<serde_json::Value> {
    let started = Instant::now();
    let mut log = FailureLog::counting();
    log.echo = true;
    let prepared = prepare(spec, &mut log)?;
    let fit = fit_on(cfg, &prepared.jobs, true)?;
    let mut r = fit.pca.unwrap_or_else(|| json!({}));
    r["frames"] = json!(fit.frames);
    r["videos"] = json!(fit.videos);
    r["videos_failed"] = json!(fit.failures.len() as u64 + log.total());
    r["wall_time_s"] = json!(started.elapsed().as_secs_f64());
    Ok(r)
}

/// Fits on `jobs` in order until the sample is full. With `log_each`, each video that cannot
/// be decoded is logged; without (a plan's fit, whose videos' failures are reported when they
/// are processed), one line sums them up.
pub fn fit_on(cfg: &PcaFitConfig, jobs: &[Job], log_each: bool) -> Result<Fit> {
    let (device, note) = vidfeat_features::resolve_device(&cfg.device).map_err(anyhow::Error::msg)?;
    if let Some(n) = note {
        tracing::warn!("{n}");
    }
    let models = cfg
        .models
        .iter()
        .map(|m| {
            let model = Model::load(&m.model, m.sidecar.as_deref(), device)?;
            model.check()?;
            Ok(model)
        })
        .collect::<Result<Vec<Model>>>()?;
    let sides: Vec<&vidfeat_features::Sidecar> = if cfg.decode_for.is_empty() { models.iter().map(|m| &m.sidecar).collect() } else { cfg.decode_for.iter().collect() };
    let (opts, shape) = crate::pipeline::models::shared_options(&cfg.decode, &sides)?;
    let decoded = sides[shape].clone();
    let mut accs: Vec<vidfeat_features::CovarianceAccumulator> = models.iter().map(|m| vidfeat_features::CovarianceAccumulator::new(m.sidecar.output_dim)).collect();
    let mut frames_in = 0usize;
    let progress: Progress = (Mutex::new(0), Condvar::new());
    let mut videos = 0u64;
    let mut failures: Vec<Failure> = vec![];
    let fetch = if cfg.decode.fetch.dir.as_os_str().is_empty() { cfg.decode.fetch_in(cfg.models[0].out.parent().unwrap_or(std::path::Path::new("."))) } else { cfg.decode.fetch.clone() };
    std::thread::scope(|s| -> Result<()> {
        let batch = cfg.batch_size.max(1);
        let rx = spawn_decoders(s, jobs, &opts, cfg.decode.workers, &progress, &fetch, batch);
        in_order_streams(rx, &progress, |idx, pieces| {
            // The video's features up to the sample's size, added once it has decoded whole
            // (a video that fails is not in the run, so not in its PCA either).
            let mut feats: Vec<VideoFeatures> = models.iter().map(|_| VideoFeatures::default()).collect();
            let mut taken = 0usize;
            let mut end = Err(("decode_error".to_string(), "the decoder stopped without a result".to_string()));
            for p in pieces.iter() {
                match p {
                    Piece::Rows(frames, n) => {
                        let take = (n as usize).min(cfg.max_frames - frames_in - taken);
                        taken += take;
                        for (model, f) in models.iter().zip(feats.iter_mut()) {
                            let rows = crate::pipeline::models::rows_for(&frames, n as usize, &decoded, &model.sidecar);
                            f.add(model, &rows[..take * model.sidecar.row_bytes()], batch, false).map_err(anyhow::Error::msg)?;
                        }
                    }
                    Piece::End(r) => {
                        for (model, f) in models.iter().zip(feats.iter_mut()) {
                            f.drain(model, false).map_err(anyhow::Error::msg)?;
                        }
                        end = r;
                        break;
                    }
                }
            }
            match end {
                Ok(_) => {
                    videos += 1;
                    frames_in += taken;
                    for (f, acc) in feats.iter().zip(accs.iter_mut()) {
                        let (rows, raw) = f.raw();
                        acc.add(raw, rows);
                    }
                }
                Err((kind, reason)) => {
                    let job = &jobs[idx];
                    if log_each {
                        tracing::warn!("skipped for the PCA: {} ({kind}): {reason}", job.task.id);
                    }
                    failures.push(Failure::of_job(job, "decode", kind, reason));
                }
            }
            // Stop once the sample is full.
            Ok(frames_in < cfg.max_frames)
        })
    })?;
    if !log_each && !failures.is_empty() {
        let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
        for f in &failures {
            *by_kind.entry(f.kind.as_str()).or_default() += 1;
        }
        let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
        tracing::info!("PCA sample: {} could not be decoded and were skipped ({}); they are reported when processed", crate::telemetry::count(failures.len() as u64, "video"), kinds.join(", "));
    }
    let mut fit = Fit { frames: frames_in, videos, failures, pca: None };
    if frames_in < 2 {
        return Ok(fit);
    }
    for ((m, model), acc) in cfg.models.iter().zip(&models).zip(&accs) {
        let pca = acc.fit(m.dims.min(model.sidecar.output_dim)).map_err(anyhow::Error::msg)?;
        pca.save(&m.out)?;
        fit.pca.get_or_insert_with(|| {
            json!({
                "out": m.out.display().to_string(),
                "input_dim": model.sidecar.output_dim,
                "dims": pca.dims,
                "supported_components": pca.supported,
                "sha256": pca.content_sha256(),
                "model": model.sidecar.name,
                "model_sha256": model.sha256,
            })
        });
    }
    Ok(fit)
}
