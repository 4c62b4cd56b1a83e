//! `vidfeat extract --cache DIR`: features, PCA and shards from a frame cache (no FFmpeg needed).
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use super::args::{ModelArgs, OutputArgs};

#[derive(clap::Args)]
pub struct ExtractArgs {
    /// A frame cache made by `vidfeat decode`.
    #[arg(long)]
    pub cache: PathBuf,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Half precision on CUDA (where the model sidecar allows it).
    #[arg(long)]
    pub fp16: bool,
    /// Let cuDNN choose convolution algorithms by timing them (CUDA; faster, but features may
    /// differ from run to run in their last bits).
    #[arg(long)]
    pub cudnn_benchmark: bool,
    /// Threads that read the cache and reduce and encode videos (0 = one per core); records
    /// stay in job order, and shards do not depend on it.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

pub fn exec(a: ExtractArgs) -> Result<ExitCode> {
    super::args::local_only(&a.cache, "--cache")?;
    super::args::local_only(&a.output.out, "--out")?;
    let cfg = vidfeat::pipeline::extract::ExtractConfig {
        cache: a.cache.clone(),
        consume: vidfeat::ConsumeConfig { threads: a.threads, ..a.output.consume()? },
        model: a.model.path()?,
        sidecar: a.model.sidecar_path()?,
        device: a.model.device.clone(),
        torch_threads: a.model.torch_threads,
        fp16: a.fp16,
        cudnn_benchmark: a.cudnn_benchmark,
        overwrite: a.output.shape.overwrite,
        provenance: super::provenance(),
    };
    super::exit::print_run_report(vidfeat::pipeline::extract::extract(&cfg)?, a.output.json, &cfg.consume.out)
}

