//! `vidfeat plan`: resolve and validate lists without decoding, and freeze a plan for workers.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use super::args::ListArgs;
#[cfg(feature = "ffmpeg")]
use super::args::{freeze_config, ModelArgs, SampleArgs, ShapeArgs};

#[derive(clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub list: ListArgs,
    #[arg(long)]
    pub out: PathBuf,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Only resolve and validate: no PCA fit and no plan.json, which `vidfeat work` needs.
    /// (Without FFmpeg support every plan is a dry run.)
    #[arg(long)]
    pub dry_run: bool,
    #[cfg(feature = "ffmpeg")]
    #[command(flatten)]
    pub model: ModelArgs,
    #[cfg(feature = "ffmpeg")]
    #[command(flatten)]
    pub sample: SampleArgs,
    #[cfg(feature = "ffmpeg")]
    #[command(flatten)]
    pub shape: ShapeArgs,
}

pub fn exec(a: PlanArgs) -> Result<ExitCode> {
    let (list, out, json_out) = (a.list, a.out.clone(), a.json);
    let strict = list.strict;
    let fetch_cmd = list.fetch_cmd.clone();
    let spec = list.spec()?;
    let s = vidfeat::pipeline::plan::plan(&spec, &out)?;
    let problems = vidfeat::pipeline::plan::plan_problems(&s);
    #[cfg(feature = "ffmpeg")]
    if !a.dry_run && !(strict && problems > 0) {
        let f = freeze_config(&a.model, &a.sample, &a.shape, fetch_cmd)?;
        if let Err(failures) = vidfeat::pipeline::plan::freeze(&spec, &out, &f, &s)? {
            anyhow::bail!("plan: no video could be decoded to fit a PCA ({} failed; see above), give --pca", failures.len());
        }
        if !json_out {
            println!("frozen: {} (run `vidfeat work --plan {}` on each worker)", out.join("plan.json").display(), out.display());
        }
    }
    #[cfg(not(feature = "ffmpeg"))]
    let _ = (a.dry_run, fetch_cmd);
    if json_out {
        println!("{s}");
    } else {
        println!(
            "{} rows: {} resolved, {} missing sources, {} invalid rows, {} duplicate ids, {} unknown labels",
            s["rows"], s["resolved"], s["missing_source"], s["invalid_row"], s["duplicate_id"], s["unknown_label"]
        );
        println!("by split: {}", s["by_split"]);
        println!("plan: {}  problems: {}", out.join("plan.jsonl").display(), out.join("failures.jsonl").display());
    }
    Ok(ExitCode::from(match (problems, strict) {
        (0, _) => 0,
        (_, true) => 1,
        _ => 2,
    }))
}

