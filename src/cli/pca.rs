//! `vidfeat pca fit`: a PCA (with whitening) from a bounded sample of the inputs' frames.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use super::args::{ListArgs, ModelArgs, SampleArgs};

#[derive(Subcommand)]
pub enum PcaCmd {
    /// Decode and extract features from the inputs and fit PCA with whitening on at most
    /// --pca-sample-frames frames. The file holds the --dims components fitted (and the frame
    /// count, which bounds the components it supports). --out ending in .npz writes our file;
    /// anything else a folder with YouTube-8M's mean.npy, eigenvals.npy and eigenvecs.npy.
    #[command(after_help = "Example (from a checkout):\n  vidfeat pca fit data-samples/videos --out pca.npz --dims 16 --pca-sample-frames 10000\n  vidfeat run data-samples/samples.csv --vocab kinetics-400 --pca pca.npz --out out\n\nA real dataset's PCA wants at least 10 x --dims frames of representative video.\nExit codes: 0 fitted; 1 could not (fewer than 2 frames decoded, model problem).")]
    Fit(PcaFitArgs),
}

#[derive(clap::Args)]
pub struct PcaFitArgs {
    #[command(flatten)]
    pub list: ListArgs,
    /// pca.npz, or a folder for YouTube-8M's three .npy files; either may be in a bucket
    /// (s3://bucket/pca.npz, gs://...: written locally, then uploaded).
    #[arg(long)]
    pub out: PathBuf,
    /// Components fitted and written (at most the model's output dim); runs given the file
    /// keep them all by default.
    #[arg(long, default_value_t = 1024, value_parser = super::args::positive)]
    pub dims: usize,
    /// Frames sampled for the covariance (the first ones, in list order); the same setting as
    /// run's and plan's PCA sample.
    #[arg(long, default_value_t = 100_000, value_parser = super::args::at_least_two)]
    pub pca_sample_frames: usize,
    /// Frames per CNN batch.
    #[arg(long, default_value_t = 32, value_parser = super::args::positive)]
    pub batch_size: usize,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sample: PcaSampleArgs,
}

/// Sampling for `pca fit` (no per-video cap by default).
#[derive(clap::Args)]
pub struct PcaSampleArgs {
    /// Rows per second of video (e.g. 1, 0.5, 30000/1001).
    #[arg(long, default_value = "1", value_parser = super::args::rate)]
    pub fps: String,
    /// Cap on rows per video (0 = no cap), as for run.
    #[arg(long, default_value_t = 300, alias = "max-rows-per-video")]
    pub max_frames: u64,
    /// Videos decoded in parallel (0 = one per core; with the network on the CPU, the cores
    /// --torch-threads leaves, at least one).
    #[arg(long, default_value_t = 0)]
    pub decode_workers: usize,
}

pub fn exec(a: PcaFitArgs) -> Result<ExitCode> {
    let out = vidfeat::mirror::OutFile::open(&a.out)?;
    let decode = SampleArgs {
        fps: a.sample.fps.clone(),
        sampling: "exact".into(),
        hwdec: "none".into(),
        max_frames: a.sample.max_frames,
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
        models: vec![vidfeat::pipeline::pca::FitModel { model: a.model.path()?, sidecar: a.model.sidecar_path()?, out: out.local.clone(), dims: a.dims }],
        decode_for: vec![],
        max_frames: a.pca_sample_frames,
        device: a.model.device.clone(),
        decode,
        batch_size: a.batch_size,
    };
    let mut s = vidfeat::pipeline::pca::pca_fit(&cfg, &a.list.spec()?)?;
    out.publish()?;
    if s["sha256"].is_string() {
        s["out"] = a.out.display().to_string().into();
    }
    vidfeat::telemetry::finish_display();
    println!("{s}");
    anyhow::ensure!(s["sha256"].is_string(), "no PCA written: {} decoded, at least 2 needed", vidfeat::telemetry::count(s["frames"].as_u64().unwrap_or(0), "frame"));
    Ok(ExitCode::SUCCESS)
}

