//! `vidfeat decode --cache DIR`: decode and sample only, into a zstd frame cache for `vidfeat
//! extract` on another machine.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use super::args::{FetchArgs, ListArgs, SampleArgs};

#[derive(clap::Args)]
pub struct DecodeArgs {
    #[command(flatten)]
    pub list: ListArgs,
    /// The frame cache folder to write.
    #[arg(long)]
    pub cache: PathBuf,
    #[command(flatten)]
    pub fetch: FetchArgs,
    /// Sidecar of the model the frames are for (sets the frame size; default: the bundled model's).
    #[arg(long)]
    pub sidecar: Option<PathBuf>,
    /// zstd level of the cache (1-22; negative levels are faster).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(-7..=22))]
    pub zstd_level: i32,
    #[command(flatten)]
    pub sample: SampleArgs,
}

pub fn exec(a: DecodeArgs) -> Result<ExitCode> {
    super::args::local_only(&a.cache, "--cache")?;
    let mut decode = a.sample.settings()?;
    decode.fetch = a.fetch.config(a.list.fetch_cmd.clone(), a.sample.max_input_bytes);
    let cfg = vidfeat::pipeline::decode::DecodeToCacheConfig {
        cache: a.cache.clone(),
        sidecar: a.sidecar.clone().unwrap_or_else(|| vidfeat::default_model().with_extension("json")),
        decode,
        zstd_level: a.zstd_level,
        jobs: a.list.strict_spec()?,
    };
    let s = vidfeat::pipeline::decode::decode_to_cache(&cfg)?;
    vidfeat::telemetry::finish_display();
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    println!("{} decoded, {} failed, {}, into {}", vidfeat::telemetry::count(n("videos_ok"), "video"), n("videos_failed"), vidfeat::telemetry::count(n("rows"), "row"), a.cache.display());
    let (ok, failed) = (s["videos_ok"].as_u64().unwrap_or(0), s["videos_failed"].as_u64().unwrap_or(0));
    Ok(ExitCode::from(if ok == 0 { 3 } else if failed > 0 { 2 } else { 0 }))
}

