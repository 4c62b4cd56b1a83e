//! `vidfeat work --plan DIR`: process the shards of a frozen plan (resumable; Slurm arrays,
//! Kubernetes Indexed Jobs, or claimed shards).
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use super::args::{FetchArgs, RetryArgs};

#[derive(clap::Args)]
pub struct WorkArgs {
    /// The plan folder (from `vidfeat plan ... --out DIR`); the output goes there too. A bucket
    /// folder (s3://, gs://) works with static slots: each worker keeps a mirror under
    /// --work-dir and publishes each shard as it finishes.
    #[arg(long)]
    pub plan: PathBuf,
    /// Local scratch for a --plan in a bucket: this worker's mirror, journals, downloads
    /// (default: a folder under the system temp dir named after the URL).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// This worker's index (default: SLURM_ARRAY_TASK_ID, else JOB_COMPLETION_INDEX).
    #[arg(long)]
    pub worker_index: Option<usize>,
    /// How many workers share the plan (default: SLURM_ARRAY_TASK_COUNT, else VIDFEAT_NUM_WORKERS).
    #[arg(long, value_parser = super::args::positive)]
    pub num_workers: Option<usize>,
    /// Claim shards dynamically with lease files instead of a static index.
    #[arg(long, conflicts_with_all = ["worker_index", "num_workers"])]
    pub claim: bool,
    /// A lease with no heartbeat for this long (seconds) is taken over.
    #[arg(long, default_value_t = 120)]
    pub lease_ttl: u64,
    /// auto (CUDA when there is one, else the CPU), cpu, cuda or cuda:N (no CUDA device there
    /// is an error, not a fallback).
    #[arg(long, default_value = "auto", value_parser = super::args::device)]
    pub device: String,
    /// libtorch intra-op threads (0 = run/work on the CPU: half the cores, rounded up, the rest
    /// decode; else libtorch's choice). The last bits of CPU features depend on it: give the
    /// same value to runs that must match byte for byte.
    #[arg(long, default_value_t = 0)]
    pub torch_threads: usize,
    /// Videos decoded in parallel (0 = one per core; with the network on the CPU, the cores
    /// --torch-threads leaves, at least one).
    #[arg(long, default_value_t = 0)]
    pub decode_workers: usize,
    /// FFmpeg threads per decoder (0 = 1 when several workers run, else FFmpeg's choice).
    #[arg(long, default_value_t = 0)]
    pub decode_threads: usize,
    /// Where to decode: none (the CPU), auto (NVDEC where possible), cuda (NVDEC, falling back
    /// to the CPU with a warning). The rows are the same.
    #[arg(long, default_value = "none", value_parser = ["none", "auto", "cuda"])]
    pub hwdec: String,
    #[command(flatten)]
    pub fetch: FetchArgs,
    #[command(flatten)]
    pub retry: RetryArgs,
    /// Print what this worker did as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn exec(a: WorkArgs) -> Result<ExitCode> {
    let bucket = vidfeat_store::url_of(&a.plan).map(str::to_string);
    let assignment = if a.claim {
        vidfeat::pipeline::worker::Assignment::Claim
    } else {
        let (index, count) = vidfeat::pipeline::worker::worker_slot(a.worker_index, a.num_workers, &|k| std::env::var(k).ok())?;
        vidfeat::pipeline::worker::Assignment::Static { index, count }
    };
    // The plan's models, where its folder is local (a bucket's plan is read later: the
    // default split then).
    let sidecars: Vec<vidfeat_features::Sidecar> = match (&bucket, vidfeat::pipeline::plan::PlanSettings::load(&a.plan)) {
        (None, Ok(p)) => p.models().filter_map(|(_, m)| vidfeat_features::Sidecar::load(std::path::Path::new(&m.sidecar)).ok()).collect(),
        _ => vec![],
    };
    let heavy = vidfeat::pipeline::layout::network_heavy(&sidecars);
    let (decode_workers, torch_threads) = vidfeat::pipeline::layout::cpu_split(&a.device, a.decode_workers, a.torch_threads, heavy);
    let (workers, threads) = vidfeat::pipeline::layout::decode_layout(decode_workers, a.decode_threads);
    let cfg = vidfeat::pipeline::worker::WorkConfig {
        dir: match &bucket {
            Some(url) => vidfeat::mirror::scratch(url, a.work_dir.as_deref()),
            None => a.plan.clone(),
        },
        assignment,
        lease_ttl: Duration::from_secs(a.lease_ttl.max(1)),
        device: a.device,
        torch_threads,
        workers,
        threads,
        fetch: a.fetch.config(None, u64::MAX),
        retry: a.retry.kinds()?,
        hwdec: a.hwdec.parse().map_err(anyhow::Error::msg)?,
        bucket,
    };
    let claim = matches!(cfg.assignment, vidfeat::pipeline::worker::Assignment::Claim);
    let r = vidfeat::pipeline::worker::work(&cfg)?;
    vidfeat::telemetry::finish_display();
    let complete = r["complete"].as_bool().unwrap_or(false);
    if a.json {
        println!("{r}");
    } else {
        let busy = r["busy"].as_array().map_or(0, Vec::len);
        tracing::info!(
            "worker: {} processed, {} already done{}; plan complete: {complete}",
            vidfeat::telemetry::count(r["processed"].as_array().map_or(0, Vec::len) as u64, "shard"),
            r["skipped_done"],
            if busy > 0 { format!(", {busy} held by live workers (they finish them)") } else { String::new() },
        );
    }
    // A claim worker answers for the plan: 4 when live others still hold shards.
    Ok(ExitCode::from(match (claim && !complete, r["failed"].as_u64().unwrap_or(0) > 0) {
        (true, _) => EXIT_INCOMPLETE,
        (false, true) => 2,
        _ => 0,
    }))
}

/// `work --claim`: the plan is not complete, live workers still hold shards.
pub const EXIT_INCOMPLETE: u8 = 4;
