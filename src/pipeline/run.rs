//! `vidfeat run`: the single-process case of plan + work, into one folder.
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::json;

use crate::pipeline::consume::RunReport;
use crate::pipeline::jobs::JobSpec;
use crate::pipeline::plan::{freeze, FreezeConfig};
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

/// `vidfeat run`: the single-process case of plan + work, into one folder. Re-running it on the
/// same inputs and settings resumes: finished shards are kept, a shard cut short resumes from
/// its journal, and the PCA fitted by the first attempt is reused.
pub fn run(cfg: &RunConfig) -> Result<RunReport> {
    let started = Instant::now();
    let out = &cfg.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut fz = cfg.freeze.clone();
    // Resume: the PCA this folder's earlier attempt fitted (the same first frames would give the same one).
    if fz.pca.is_none() {
        if let Ok((old, _)) = crate::pipeline::plan::PlanSettings::load(out) {
            let p = out.join("pca.npz");
            if std::path::Path::new(&old.pca) == std::fs::canonicalize(&p).unwrap_or_default().as_path()
                && vidfeat_features::Pca::load(&p, Some(old.pca_dims)).map(|x| x.content_sha256()).ok().as_deref() == Some(old.pca_sha256.as_str())
            {
                fz.pca = Some(p);
                fz.pca_dims = Some(old.pca_dims);
            }
        }
    }
    let plan_summary = crate::pipeline::plan::plan(&cfg.jobs, out)?;
    let list_rows = plan_summary["rows"].as_u64().unwrap_or(0);
    let mut failures: Vec<crate::pipeline::jobs::Failure> = std::fs::read_to_string(out.join("failures.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut summary = json!({"videos_ok": 0, "rows": 0, "seconds_of_video": 0.0, "shards": {}});
    let mut model_info = json!(null);
    if plan_summary["resolved"].as_u64().unwrap_or(0) > 0 {
        match freeze(&cfg.jobs, out, &fz, &plan_summary)? {
            Err(fit_failures) => {
                // Videos the plan already reported (missing files) are not reported twice.
                let known: std::collections::HashSet<Option<String>> = failures.iter().map(|f| f.id.clone()).collect();
                failures.extend(fit_failures.into_iter().filter(|f| !known.contains(&f.id)));
            }
            Ok(plan) => {
                let r = work(&cfg.work)?;
                summary = serde_json::from_slice(&std::fs::read(out.join("summary.json")).context("summary.json after the worker")?)?;
                model_info = json!({"name": r["model"], "path": plan.model, "sha256": plan.model_sha256, "sidecar": plan.sidecar});
                summary["device"] = r["device"].clone();
                // Shards an earlier attempt of this run finished (their videos count in the totals).
                summary["resumed_shards"] = r["skipped_done"].clone();
                summary["settings"]["batch_size"] = r["batch_size"].clone();
                // Decode failures, from the done markers, in shard order.
                failures.extend(crate::pipeline::worker::shard_failures(out, &plan, &crate::file_sha256_bytes(&plan.to_json()?)));
            }
        }
    }
    // failures.jsonl: list and plan problems, then each video's failure.
    let mut w = std::io::BufWriter::new(std::fs::File::create(out.join("failures.jsonl"))?);
    let mut by_kind: std::collections::BTreeMap<String, u64> = Default::default();
    for f in &failures {
        serde_json::to_writer(&mut w, f)?;
        std::io::Write::write_all(&mut w, b"\n")?;
        *by_kind.entry(f.kind.clone()).or_default() += 1;
    }
    std::io::Write::flush(&mut w)?;
    let ok = summary["videos_ok"].as_u64().unwrap_or(0);
    let outcome = if ok == 0 {
        crate::pipeline::consume::Outcome::NoneOk
    } else if failures.is_empty() {
        crate::pipeline::consume::Outcome::AllOk
    } else {
        crate::pipeline::consume::Outcome::SomeFailed
    };
    let wall = started.elapsed().as_secs_f64();
    let rows = summary["rows"].as_u64().unwrap_or(0);
    let vocab = out.join("vocabulary.csv").exists().then(|| json!({"source": cfg.jobs.vocab, "file": "vocabulary.csv"}));
    for (k, v) in json!({
        "list_rows": list_rows,
        "videos_failed": failures.len(),
        "failures_by_kind": by_kind,
        "wall_time_s": (wall * 1000.0).round() / 1000.0,
        "throughput": {"videos_per_s": ok as f64 / wall.max(1e-9), "frames_per_s": rows as f64 / wall.max(1e-9)},
        "model": model_info,
        "vocabulary": vocab,
        "outcome": match outcome { crate::pipeline::consume::Outcome::AllOk => "all_ok", crate::pipeline::consume::Outcome::SomeFailed => "some_failed", crate::pipeline::consume::Outcome::NoneOk => "none_ok" },
        "made_by": "vidfeat run",
    })
    .as_object()
    .unwrap()
    {
        summary[k] = v.clone();
    }
    let tmp = out.join(".summary.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&summary)?)?;
    std::fs::rename(&tmp, out.join("summary.json"))?;
    Ok(RunReport { outcome, summary })
}
