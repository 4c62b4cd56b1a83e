//! `vidfeat run`: decode, extract features, reduce, quantize and write shards, in one process.
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use super::args::{freeze_config, FetchArgs, ListArgs, ModelArgs, OutputArgs, RetryArgs, SampleArgs};

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub list: ListArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sample: SampleArgs,
    #[command(flatten)]
    pub fetch: FetchArgs,
    #[command(flatten)]
    pub retry: RetryArgs,
}

pub fn exec(mut a: RunArgs) -> Result<ExitCode> {
    let heavy = vidfeat::pipeline::layout::network_heavy(&a.model.sidecars());
    (a.sample.decode_workers, a.model.torch_threads) = vidfeat::pipeline::layout::cpu_split(&a.model.device, a.sample.decode_workers, a.model.torch_threads, heavy);
    let fetch_cmd = a.list.fetch_cmd.clone();
    let mut freeze = freeze_config(&a.model, &a.sample, &a.output.shape, fetch_cmd.clone())?;
    freeze.decode.fetch = a.fetch.config(fetch_cmd, a.sample.max_input_bytes);
    // An --out in a bucket: the run works on a local mirror, pulled first and pushed after.
    let folder = vidfeat::mirror::Folder::open(&a.output.out, a.output.work_dir.as_deref(), true).with_context(|| format!("--out {}", a.output.out.display()))?;
    let out = folder.local.clone();
    let cfg = vidfeat::pipeline::run::RunConfig {
        work: vidfeat::pipeline::worker::WorkConfig {
            dir: out.clone(),
            assignment: vidfeat::pipeline::worker::Assignment::Static { index: 0, count: 1 },
            lease_ttl: Duration::from_secs(120),
            device: a.model.device.clone(),
            torch_threads: a.model.torch_threads,
            workers: freeze.decode.workers,
            threads: freeze.decode.threads,
            fetch: freeze.decode.fetch.clone(),
            retry: a.retry.kinds()?,
            hwdec: freeze.decode.hwdec,
            bucket: None,
        },
        freeze,
        out: out.clone(),
        jobs: a.list.strict_spec()?,
    };
    let report = vidfeat::pipeline::run::run(&cfg);
    folder.publish()?;
    super::exit::print_run_report(report?, a.output.json, &a.output.out)
}

