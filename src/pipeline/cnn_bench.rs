//! `vidfeat cnn-bench`: frames/s of the model alone, on synthetic frames, at given batch sizes,
//! with one batch in flight as the pipeline runs it (a clip model's batches are of clips: its
//! frames/s counts their frames, and clips/s is given too).
use std::path::PathBuf;

use anyhow::Result;
use serde_json::json;

#[derive(Debug, Clone)]
pub struct CnnBenchConfig {
    pub model: PathBuf,
    pub sidecar: Option<PathBuf>,
    pub device: String,
    /// 0: libtorch's choice.
    pub torch_threads: usize,
    pub batches: Vec<usize>,
    /// Seconds to time each batch size for (after one warm-up batch).
    pub seconds: f64,
    /// Also time half precision (CUDA only).
    pub fp16: bool,
    /// Let cuDNN pick convolution algorithms by timing (CUDA; see `Model::set_cudnn_benchmark`).
    pub cudnn_benchmark: bool,
}

/// Times each precision and batch size; `emit` gets one JSON object per measurement.
pub fn cnn_bench(cfg: &CnnBenchConfig, emit: &mut dyn FnMut(serde_json::Value)) -> Result<()> {
    let device = crate::pipeline::torch_setup(&cfg.device, cfg.torch_threads, cfg.cudnn_benchmark)?;
    let precisions: &[bool] = if cfg.fp16 { &[false, true] } else { &[false] };
    for &half in precisions {
        let mut m = vidfeat_features::Model::load(&cfg.model, cfg.sidecar.as_deref(), device)?;
        if half {
            m.use_half()?;
        }
        for &b in &cfg.batches {
            // Deterministic synthetic frames (the network's speed does not depend on content).
            let frames: Vec<u8> = (0..b * m.sidecar.row_bytes()).map(|i| (i * 7 % 251) as u8).collect();
            m.extract(&frames, b)?;
            // As the pipeline runs it: each batch is submitted before the previous one is
            // waited for (on CUDA the upload overlaps the network).
            let t = std::time::Instant::now();
            let mut n = 0usize;
            let mut in_flight = m.submit(&frames, b)?;
            while t.elapsed().as_secs_f64() < cfg.seconds || n == 0 {
                let next = m.submit(&frames, b)?;
                m.finish(std::mem::replace(&mut in_flight, next))?;
                n += b;
            }
            m.finish(in_flight)?;
            n += b;
            let rps = n as f64 / t.elapsed().as_secs_f64();
            // A clip model's rows are clips: frames/s counts the frames they hold.
            let per = m.sidecar.frames_per_row();
            let mut r = json!({"model": m.sidecar.name, "device": format!("{device:?}"), "precision": m.precision(), "cudnn_benchmark": cfg.cudnn_benchmark,
                        "batch": b, "frames": n * per, "frames_per_s": (rps * per as f64 * 10.0).round() / 10.0, "threads": tch::get_num_threads(), "transfer": m.transfer});
            if per > 1 {
                r["clips"] = json!(n);
                r["clips_per_s"] = json!((rps * 100.0).round() / 100.0);
                r["frames_per_clip"] = json!(per);
            }
            emit(r);
        }
    }
    Ok(())
}
