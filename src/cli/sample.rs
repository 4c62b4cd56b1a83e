//! `vidfeat sample`: a stratified, reproducible sample of an output folder for trainers.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

#[derive(clap::Args)]
pub struct SampleArgs {
    /// A `vidfeat run` (or extract) output folder.
    #[arg(long)]
    pub from: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    /// Videos per class.
    #[arg(long)]
    pub per_class: usize,
    /// Classes to sample (names, KG ids or indices, comma-separated); default: all that occur.
    #[arg(long, value_delimiter = ',')]
    pub classes: Vec<String>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// tfrecord, npz or webdataset.
    #[arg(long, default_value = "tfrecord")]
    pub format: String,
    /// Samples per WebDataset tar shard.
    #[arg(long, default_value_t = 1000)]
    pub shard_size: usize,
    /// Print sample.json on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn exec(a: SampleArgs) -> Result<ExitCode> {
    let cfg = vidfeat::outputs::sample::SampleConfig {
        from: a.from,
        out: a.out.clone(),
        per_class: a.per_class,
        classes: a.classes,
        seed: a.seed,
        format: a.format.parse().map_err(anyhow::Error::msg)?,
        shard_size: a.shard_size,
    };
    let m = vidfeat::outputs::sample::sample(&cfg)?;
    if a.json {
        println!("{}", serde_json::to_string(&m)?);
    } else {
        println!(
            "{} videos, {} rows from {} classes into {} ({})",
            m["videos"],
            m["rows"],
            m["classes"].as_array().map(Vec::len).unwrap_or(0),
            a.out.display(),
            m["format"].as_str().unwrap_or("")
        );
        if let Some(s) = m["classes_short"].as_array().filter(|s| !s.is_empty()) {
            println!("{} classes have fewer than {} videos in the source (all were taken)", s.len(), cfg.per_class);
        }
    }
    Ok(ExitCode::SUCCESS)
}

