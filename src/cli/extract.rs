//! `vidfeat extract --cache DIR`: features, PCA and shards from a frame cache (no FFmpeg needed).
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::args::{ModelArgs, OutputArgs};

#[derive(clap::Args)]
pub struct ExtractArgs {
    /// A frame cache made by `vidfeat decode`, or its bucket folder (fetched into the temp dir).
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
    anyhow::ensure!(a.output.shape.predict == 0, "--predict: extract does not write predictions yet; run (or plan + work) does");
    let cache = super::args::readable(&a.cache)?;
    // An --out in a bucket: extracted into a local mirror, pulled first and pushed after.
    let folder = vidfeat::mirror::Folder::open(&a.output.out, a.output.work_dir.as_deref(), true).with_context(|| format!("--out {}", a.output.out.display()))?;
    let mut consume = a.output.consume()?;
    consume.out = folder.local.clone();
    let cfg = vidfeat::pipeline::extract::ExtractConfig {
        cache,
        consume: vidfeat::ConsumeConfig { threads: a.threads, ..consume },
        model: a.model.path()?,
        sidecar: a.model.sidecar_path()?,
        device: a.model.device.clone(),
        torch_threads: a.model.torch_threads,
        fp16: a.fp16,
        cudnn_benchmark: a.cudnn_benchmark,
        overwrite: a.output.shape.overwrite,
        provenance: super::provenance(),
    };
    let report = vidfeat::pipeline::extract::extract(&cfg);
    folder.publish()?;
    super::exit::print_run_report(report?, a.output.json, &a.output.out)
}

