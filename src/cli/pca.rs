//! `vidfeat pca fit`: a PCA (with whitening) from a bounded sample of the inputs' frames.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use super::args::{ListArgs, ModelArgs, SampleArgs};

#[derive(Subcommand)]
pub enum PcaCmd {
    /// Decode and extract features from the inputs and fit PCA with whitening on at most
    /// --max-frames frames. --out ending in .npz writes our file; anything else a folder with
    /// YouTube-8M's mean.npy, eigenvals.npy and eigenvecs.npy.
    #[command(after_help = "Example:\n  vidfeat pca fit data-samples/videos --out pca.npz --dims 1024 --max-frames 10000\n  vidfeat run list.csv --pca pca.npz --out out\n\nExit codes: 0 fitted; 1 could not (fewer than 2 frames decoded, model problem).")]
    Fit(PcaFitArgs),
}

#[derive(clap::Args)]
pub struct PcaFitArgs {
    #[command(flatten)]
    pub list: ListArgs,
    /// pca.npz, or a folder for YouTube-8M's three .npy files.
    #[arg(long)]
    pub out: PathBuf,
    /// Components kept (at most the model's output dim).
    #[arg(long, default_value_t = 1024)]
    pub dims: usize,
    /// Frames sampled for the covariance (the first ones, in list order).
    #[arg(long = "max-frames", default_value_t = 100_000)]
    pub pca_frames: usize,
    /// Frames per CNN batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sample: PcaSampleArgs,
}

/// Sampling for `pca fit` (no per-video cap by default).
#[derive(clap::Args)]
pub struct PcaSampleArgs {
    #[arg(long, default_value = "1")]
    pub fps: String,
    /// Cap on rows per video (0 = no cap).
    #[arg(long, default_value_t = 300)]
    pub max_rows_per_video: u64,
    /// Videos decoded in parallel (0 = one per core; with the network on the CPU, the cores
    /// --torch-threads leaves, at least one).
    #[arg(long, default_value_t = 0)]
    pub decode_workers: usize,
}

pub fn exec(a: PcaFitArgs) -> Result<ExitCode> {
    let decode = SampleArgs {
        fps: a.sample.fps.clone(),
        max_frames: a.sample.max_rows_per_video,
        resize: None,
        decode_workers: a.sample.decode_workers,
        decode_threads: 0,
        timeout: vidfeat_decode::DEFAULT_TIMEOUT.as_secs(),
        max_pixels: vidfeat_decode::DEFAULT_MAX_PIXELS,
        max_input_bytes: vidfeat_decode::DEFAULT_MAX_INPUT_BYTES,
        max_duration: vidfeat_decode::DEFAULT_MAX_DURATION,
        max_decoder_memory: vidfeat_decode::DEFAULT_MAX_DECODER_BYTES,
    }
    .settings()?;
    let cfg = vidfeat::pipeline::pca::PcaFitConfig {
        out: a.out.clone(),
        dims: a.dims,
        max_frames: a.pca_frames.max(2),
        model: a.model.path(),
        sidecar: a.model.sidecar.clone(),
        device: a.model.device.clone(),
        decode,
        batch_size: a.batch_size,
    };
    let s = vidfeat::pipeline::pca::pca_fit(&cfg, &a.list.spec()?)?;
    println!("{s}");
    anyhow::ensure!(s["sha256"].is_string(), "no PCA written: {} frame(s) decoded, at least 2 needed", s["frames"]);
    Ok(ExitCode::SUCCESS)
}

