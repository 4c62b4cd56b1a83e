//! `vidfeat run`: the single-process case of plan + work, into one folder.
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::json;

use crate::pipeline::consume::{Outcome, RunReport};
use crate::pipeline::jobs::{Failure, JobSpec};
use crate::pipeline::plan::{draft, freeze, plan, FreezeConfig, Frozen};
use crate::pipeline::worker::{work, WorkConfig};

/// The validated settings of `vidfeat run` (built from the CLI flags).
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub jobs: JobSpec,
    pub out: PathBuf,
    pub freeze: FreezeConfig,
    /// Worker settings; `dir` is `out`, one static worker.
    pub work: WorkConfig,
}

/// `vidfeat run`: the single-process case of plan + work, into one folder. Re-running it brings
/// the folder up to date with the current lists, sources and settings: shards whose key is
/// unchanged are kept, changed ones rebuilt, ones that left the plan removed; a shard cut short
/// resumes from its journal; the PCA fitted by an earlier run in the folder is reused. A folder
/// holding another dataset is refused before any work (unless `overwrite`).
pub fn run(cfg: &RunConfig) -> Result<RunReport> {
    let started = Instant::now();
    let out = &cfg.out;
    let draft = draft(&cfg.freeze, &cfg.jobs)?;
    let mut fz = cfg.freeze.clone();
    fz.reuse(crate::pipeline::dataset::check_out(out, &draft, fz.overwrite)?);
    crate::outdir::create_dir_all(out)?;
    crate::telemetry::EventLog::open(out, &crate::pipeline::worker::worker_id()).started();
    let planned = plan(&cfg.jobs, out)?;
    let mut extra_failures: Vec<Failure> = vec![];
    let mut summary = json!({"videos_ok": 0, "rows": 0, "seconds_of_video": 0.0, "shards": {}});
    let mut model_info = json!(null);
    if planned.resolved() > 0 {
        match freeze(out, &fz, &planned, &draft)? {
            // No video could be decoded to fit a PCA: those are the videos' failures.
            Frozen::NoPca { failures } => extra_failures = failures,
            Frozen::Plan { plan, removed } => {
                let r = work(&cfg.work)?;
                summary = serde_json::from_slice(&std::fs::read(out.join("summary.json")).context("summary.json after the worker")?)?;
                model_info = json!({"name": r["model"], "path": plan.first.model, "sha256": plan.first.model_sha256, "sidecar": plan.first.sidecar});
                if !plan.extra_models.is_empty() {
                    summary["models"] = json!(r["models"]);
                }
                summary["device"] = r["device"].clone();
                summary["settings"]["batch_size"] = r["batch_size"].clone();
                let processed = r["processed"].as_array().map_or(0, Vec::len) as u64;
                let rebuilt = r["rebuilt"].as_u64().unwrap_or(0);
                summary["update"] = json!({
                    "kept": r["skipped_done"],
                    "rebuilt": rebuilt,
                    "new": processed - rebuilt.min(processed),
                    "removed": removed,
                    "retried": r["retried"],
                });
                // Decode failures, from the done markers, in shard order.
                extra_failures = crate::pipeline::worker::shard_failures(out, &plan);
            }
        }
    }
    // failures.jsonl: list and plan problems (as the plan wrote them), then each video's
    // failure; streamed, never held.
    let path = out.join("failures.jsonl");
    let mut by_kind: std::collections::BTreeMap<String, u64> = Default::default();
    {
        let mut w = crate::outdir::AtomicFile::create(&path)?;
        if let Ok(f) = std::fs::File::open(&path) {
            for l in std::io::BufReader::new(f).lines() {
                let l = l?;
                if let Ok(f) = serde_json::from_str::<Failure>(&l) {
                    *by_kind.entry(f.kind).or_default() += 1;
                    writeln!(w, "{l}")?;
                }
            }
        }
        for f in &extra_failures {
            serde_json::to_writer(&mut w, f)?;
            w.write_all(b"\n")?;
            *by_kind.entry(f.kind.clone()).or_default() += 1;
        }
        w.commit()?;
    }
    let failed: u64 = by_kind.values().sum();
    // What failed before the worker (list rows, missing files, a PCA that could not be fitted)
    // joins its counts, so the closing progress line agrees with this summary.
    crate::telemetry::failed_before_work(failed.saturating_sub(crate::telemetry::COUNTERS.failed.load(std::sync::atomic::Ordering::Relaxed)));
    let ok = summary["videos_ok"].as_u64().unwrap_or(0);
    let outcome = if ok == 0 {
        Outcome::NoneOk
    } else if failed == 0 {
        Outcome::AllOk
    } else {
        Outcome::SomeFailed
    };
    let wall = started.elapsed().as_secs_f64();
    // This run's work: frames through the network and videos finished here (kept shards and
    // journaled videos are not this run's throughput).
    let c = crate::telemetry::COUNTERS.snapshot();
    let (rows, fresh) = (c.frames_extracted, c.written.saturating_sub(c.resumed));
    let mut vocab = summary["vocabulary"].clone();
    if vocab.is_object() {
        vocab["file"] = json!("vocabulary.csv");
    }
    let provenance = if summary["provenance"].is_object() { summary["provenance"].clone() } else { fz.provenance.clone() };
    for (k, v) in json!({
        "list_rows": planned.summary["rows"],
        "videos_failed": failed,
        "failures_by_kind": by_kind,
        "wall_time_s": (wall * 1000.0).round() / 1000.0,
        "throughput": {"videos_per_s": fresh as f64 / wall.max(1e-9), "frames_per_s": rows as f64 / wall.max(1e-9)},
        "model": model_info,
        "vocabulary": vocab,
        "provenance": provenance,
        "outcome": match outcome { Outcome::AllOk => "all_ok", Outcome::SomeFailed => "some_failed", Outcome::NoneOk => "none_ok" },
        "made_by": "vidfeat run",
    })
    .as_object()
    .unwrap()
    {
        summary[k] = v.clone();
    }
    crate::pipeline::write_atomic(&out.join("summary.json"), &serde_json::to_vec_pretty(&summary)?)?;
    Ok(RunReport { outcome, summary })
}
