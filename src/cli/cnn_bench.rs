//! `vidfeat cnn-bench`: CNN-only frames/s on synthetic frames.
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::args::ModelArgs;

#[derive(clap::Args)]
pub struct CnnBenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Batch sizes to time, comma-separated.
    #[arg(long, default_value = "32")]
    pub batch: String,
    /// Seconds to time each batch size for (after one warm-up batch).
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Also time half precision (CUDA only).
    #[arg(long)]
    pub fp16: bool,
    /// Let cuDNN choose convolution algorithms by timing them (CUDA; faster, but features may
    /// differ from run to run in their last bits).
    #[arg(long)]
    pub cudnn_benchmark: bool,
}

pub fn exec(a: CnnBenchArgs) -> Result<ExitCode> {
    let cfg = vidfeat::pipeline::cnn_bench::CnnBenchConfig {
        model: a.model.path()?,
        sidecar: a.model.sidecar_path()?,
        device: a.model.device.clone(),
        torch_threads: a.model.torch_threads,
        batches: a.batch.split(',').map(|b| b.trim().parse()).collect::<Result<_, _>>().context("--batch")?,
        seconds: a.seconds,
        fp16: a.fp16,
        cudnn_benchmark: a.cudnn_benchmark,
    };
    vidfeat::pipeline::cnn_bench::cnn_bench(&cfg, &mut |line| println!("{line}"))?;
    Ok(ExitCode::SUCCESS)
}
