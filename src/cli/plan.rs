//! `vidfeat plan`: resolve and validate lists without decoding, and freeze a plan for workers.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::args::ListArgs;
#[cfg(feature = "ffmpeg")]
use super::args::{freeze_config, FetchArgs, ModelArgs, SampleArgs, ShapeArgs};

#[derive(clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub list: ListArgs,
    /// The plan folder: plan.jsonl, failures.jsonl, plan-summary.json, plan.json (workers
    /// write the dataset into it too).
    #[arg(long)]
    pub out: PathBuf,
    /// Local scratch for an --out in a bucket (the mirror the plan is made in; default: a
    /// folder under the system temp dir named after the URL).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Only resolve and validate (nothing decoded): no PCA fit and no plan.json, which
    /// `vidfeat work` needs. (Without FFmpeg support every plan is a dry run.)
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
    // Downloads for the PCA fit's sample (workers take their own).
    #[cfg(feature = "ffmpeg")]
    #[command(flatten)]
    pub fetch: FetchArgs,
}

pub fn exec(a: PlanArgs) -> Result<ExitCode> {
    // A plan folder in a bucket: made in a local mirror, pulled first and pushed after.
    let folder = vidfeat::mirror::Folder::open(&a.out, a.work_dir.as_deref(), true).with_context(|| format!("--out {}", a.out.display()))?;
    let r = exec_in(a, folder.local.clone(), folder.url.clone());
    folder.publish()?;
    r
}

/// `s` as one shell word (quoted when it holds anything but plain path characters).
fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-:+=@".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn exec_in(a: PlanArgs, out: PathBuf, out_url: Option<String>) -> Result<ExitCode> {
    let shown_out = out_url.clone();
    let (list, json_out) = (a.list, a.json);
    let strict = list.strict;
    let fetch_cmd = list.fetch_cmd.clone();
    let spec = list.spec()?;
    // The folder is checked before anything is written into it.
    #[cfg(feature = "ffmpeg")]
    let frozen = if a.dry_run {
        None
    } else {
        let mut f = freeze_config(&a.model, &a.sample, &a.shape, fetch_cmd.clone())?;
        f.out_url = out_url;
        f.decode.fetch = a.fetch.config(fetch_cmd, a.sample.max_input_bytes);
        let draft = vidfeat::pipeline::plan::draft(&f, &spec)?;
        f.reuse(vidfeat::pipeline::dataset::check_out(&out, &draft, f.overwrite)?);
        Some((f, draft))
    };
    #[cfg(not(feature = "ffmpeg"))]
    let _ = (fetch_cmd, out_url);
    if a.dry_run || cfg!(not(feature = "ffmpeg")) {
        anyhow::ensure!(
            !out.join("plan.json").exists(),
            "{} holds a frozen plan, whose plan.jsonl a dry run would replace: give the dry run an --out of its own",
            out.display()
        );
    }
    // The summary is written and printed before anything that can fail later (a PCA fit).
    let planned = vidfeat::pipeline::plan::plan(&spec, &out)?;
    let s = &planned.summary;
    let problems = vidfeat::pipeline::plan::plan_problems(s);
    if json_out {
        println!("{s}");
    } else {
        let (n, c) = (|k: &str| s[k].as_u64().unwrap_or(0), vidfeat::telemetry::count);
        println!(
            "{}: {} resolved, {}, {}, {}, {}",
            c(n("rows"), "row"),
            n("resolved"),
            c(n("missing_source"), "missing source"),
            c(n("invalid_row"), "invalid row"),
            c(n("duplicate_id"), "duplicate id"),
            c(n("unknown_label"), "unknown label")
        );
        println!("by split: {}", s["by_split"]);
        println!("plan: {}  problems: {}", out.join("plan.jsonl").display(), out.join("failures.jsonl").display());
    }
    #[cfg(feature = "ffmpeg")]
    if let Some((f, draft)) = frozen.filter(|_| !(strict && problems > 0)) {
        anyhow::ensure!(planned.resolved() > 0, "no plan frozen: none of the {} rows resolved to a video (see {})", s["rows"], out.join("failures.jsonl").display());
        match vidfeat::pipeline::plan::freeze(&out, &f, &planned, &draft)? {
            vidfeat::pipeline::plan::Frozen::NoPca { failures } => {
                let first: Vec<String> = failures.iter().take(3).map(|x| format!("{} ({}): {}", x.id.as_deref().unwrap_or("-"), x.kind, x.reason)).collect();
                anyhow::bail!(
                    "no plan frozen: a PCA could not be fitted, none of the {} videos tried could be decoded (first: {}); give --pca with a fitted one, or fix the sources",
                    failures.len(),
                    first.join("; ")
                );
            }
            vidfeat::pipeline::plan::Frozen::Plan { plan, removed } => {
                // The folder workers are given: the bucket URL when the plan lives in one.
                let shown = shown_out.clone().unwrap_or_else(|| out.display().to_string());
                let msg = format!(
                    "frozen: {} ({}{}); on each worker run `vidfeat work --plan {} --claim` (or give each a slot: --worker-index I --num-workers N)",
                    out.join("plan.json").display(),
                    vidfeat::telemetry::count(plan.shard_keys.len() as u64, "shard"),
                    if removed > 0 { format!(", {removed} no longer in the plan removed") } else { String::new() },
                    shell_word(&shown)
                );
                if json_out {
                    tracing::info!("{msg}");
                } else {
                    println!("{msg}");
                }
            }
        }
    }
    Ok(ExitCode::from(match (problems, strict) {
        (0, _) => 0,
        (_, true) => 1,
        _ => 2,
    }))
}
