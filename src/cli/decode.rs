//! `vidfeat decode --cache DIR`: decode and sample only, into a zstd frame cache for `vidfeat
//! extract` on another machine.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::args::{FetchArgs, ListArgs, SampleArgs};

#[derive(clap::Args)]
pub struct DecodeArgs {
    #[command(flatten)]
    pub list: ListArgs,
    /// The frame cache folder to write, or a bucket folder (s3://bucket/cache, gs://...: written
    /// in a local mirror under --work-dir and pushed when decoding ends, manifest.json last).
    #[arg(long)]
    pub cache: PathBuf,
    /// Local scratch for a --cache in a bucket: the mirror and downloads (default: a folder
    /// under the system temp dir named after the URL).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    #[command(flatten)]
    pub fetch: FetchArgs,
    /// Sidecar of the model the frames are for (sets the frame size, and clip rows for a clip
    /// model), or a model's name (i3d-kinetics-400); default: the bundled model's.
    #[arg(long)]
    pub sidecar: Option<PathBuf>,
    /// zstd level of the cache (1-22; negative levels are faster).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(-7..=22))]
    pub zstd_level: i32,
    #[command(flatten)]
    pub sample: SampleArgs,
}

pub fn exec(a: DecodeArgs) -> Result<ExitCode> {
    // A cache is rebuilt whole: its bucket's objects are not fetched, only replaced.
    let folder = vidfeat::mirror::Folder::open(&a.cache, a.work_dir.as_deref(), false).with_context(|| format!("--cache {}", a.cache.display()))?;
    let mut decode = a.sample.settings()?;
    decode.fetch = a.fetch.config(a.list.fetch_cmd.clone(), a.sample.max_input_bytes);
    let cfg = vidfeat::pipeline::decode::DecodeToCacheConfig {
        cache: folder.local.clone(),
        sidecar: match a.sidecar.as_deref().and_then(vidfeat::named_model_arg) {
            Some(named) => named.map_err(anyhow::Error::msg)?.with_extension("json"),
            None => a.sidecar.clone().unwrap_or_else(|| vidfeat::default_model().with_extension("json")),
        },
        decode,
        zstd_level: a.zstd_level,
        jobs: a.list.strict_spec()?,
    };
    let s = vidfeat::pipeline::decode::decode_to_cache(&cfg);
    folder.publish()?;
    let s = s?;
    vidfeat::telemetry::finish_display();
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    println!("{} decoded, {} failed, {}, into {}", vidfeat::telemetry::count(n("videos_ok"), "video"), n("videos_failed"), vidfeat::telemetry::count(n("rows"), "row"), a.cache.display());
    let (ok, failed) = (s["videos_ok"].as_u64().unwrap_or(0), s["videos_failed"].as_u64().unwrap_or(0));
    Ok(ExitCode::from(if ok == 0 { 3 } else if failed > 0 { 2 } else { 0 }))
}

