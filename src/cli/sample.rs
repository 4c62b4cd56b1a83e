//! `vidfeat sample`: a stratified, reproducible sample of an output folder for trainers.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct SampleArgs {
    /// An output folder of run, work (a plan folder) or extract, or its bucket folder.
    #[arg(long)]
    pub from: PathBuf,
    /// Folder for the sample (created), or a bucket folder (written in a local mirror under
    /// the temp dir, then pushed).
    #[arg(long)]
    pub out: PathBuf,
    /// Videos per class.
    #[arg(long, value_parser = super::args::positive)]
    pub per_class: usize,
    /// Classes to sample (names, KG ids or indices, comma-separated); default: all that occur.
    #[arg(long, value_delimiter = ',')]
    pub classes: Vec<String>,
    /// Seed of the choice (the same seed gives the same sample on every machine).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// tfrecord, npz or webdataset.
    #[arg(long, default_value = "tfrecord", value_parser = ["tfrecord", "npz", "webdataset"])]
    pub format: String,
    /// Samples per WebDataset tar shard.
    #[arg(long, default_value_t = 1000, value_parser = super::args::positive)]
    pub shard_size: usize,
    /// Print sample.json on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn exec(a: SampleArgs) -> Result<ExitCode> {
    let folder = vidfeat::mirror::Folder::open(&a.out, None, true).with_context(|| format!("--out {}", a.out.display()))?;
    let cfg = vidfeat::outputs::sample::SampleConfig {
        from: super::args::readable(&a.from)?,
        out: folder.local.clone(),
        per_class: a.per_class,
        classes: a.classes,
        seed: a.seed,
        format: a.format.parse().map_err(anyhow::Error::msg)?,
        shard_size: a.shard_size,
    };
    let m = vidfeat::outputs::sample::sample(&cfg);
    folder.publish()?;
    let m = m?;
    if a.json {
        println!("{}", serde_json::to_string(&m)?);
    } else {
        println!(
            "{}, {} from {} into {} ({})",
            vidfeat::telemetry::count(m["videos"].as_u64().unwrap_or(0), "video"),
            vidfeat::telemetry::count(m["rows"].as_u64().unwrap_or(0), "row"),
            vidfeat::telemetry::count(m["classes"].as_array().map_or(0, Vec::len) as u64, "class"),
            a.out.display(),
            m["format"].as_str().unwrap_or("")
        );
        if let Some(s) = m["classes_short"].as_array().filter(|s| !s.is_empty()) {
            println!("{} fewer than {} in the source (all were taken)", if s.len() == 1 { "1 class has".to_string() } else { format!("{} classes have", s.len()) }, vidfeat::telemetry::count(cfg.per_class as u64, "video"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

