//! The shard loop of a worker: which shards are its own, resume from the journal, commit a
//! shard atomically and mark it done; the summary once every shard is done.
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::journal::{Entry, Journal};
use super::lease::{Lease, TryLease};
use super::{crash_point, now_s, stem};
use crate::pipeline::jobs::{Failure, Job};
use crate::pipeline::plan::{PlanSettings, PlannedTask};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DoneMarker {
    pub shard: String,
    pub split: String,
    pub videos: u64,
    pub failed: u64,
    pub rows: u64,
    pub seconds_of_video: f64,
    pub frame_sha256: String,
    pub video_sha256: String,
    pub failures: Vec<Failure>,
    pub worker: String,
    pub finished_at: u64,
    /// SHA-256 of the plan.json the shard was made under: a marker of an earlier plan in the
    /// same folder does not count.
    pub plan_sha256: String,
}

pub(crate) fn read_done(dir: &Path, name: &str, plan_hash: &str) -> Option<DoneMarker> {
    let m: DoneMarker = serde_json::from_slice(&std::fs::read(dir.join("done").join(format!("{}.json", stem(name)))).ok()?).ok()?;
    (m.plan_sha256 == plan_hash).then_some(m)
}


/// When every shard is done: `summary.json` in the layout of `vidfeat run` (verify reads it).
fn write_summary_if_complete(dir: &Path, plan: &PlanSettings, plan_hash: &str) -> Result<bool> {
    let mut shards: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    let (mut ok, mut failed, mut rows, mut secs) = (0u64, 0u64, 0u64, 0f64);
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for (split, _, name) in plan.shard_list() {
        let Some(d) = read_done(dir, &name, plan_hash) else { return Ok(false) };
        ok += d.videos;
        failed += d.failed;
        rows += d.rows;
        secs += d.seconds_of_video;
        for f in &d.failures {
            *by_kind.entry(f.kind.clone()).or_default() += 1;
        }
        shards.entry(split).or_default().push(json!({"shard": name, "videos": d.videos}));
    }
    for l in std::fs::read_to_string(dir.join("failures.jsonl")).unwrap_or_default().lines() {
        if let Ok(f) = serde_json::from_str::<Failure>(l) {
            failed += 1;
            *by_kind.entry(f.kind).or_default() += 1;
        }
    }
    let summary = json!({
        "videos_ok": ok,
        "videos_failed": failed,
        "failures_by_kind": by_kind,
        "rows": rows,
        "seconds_of_video": (secs * 1000.0).round() / 1000.0,
        "shards": shards,
        "pca": {"source": plan.pca, "sha256": plan.pca_sha256, "dims": plan.pca_dims},
        "model": {"path": plan.model, "sha256": plan.model_sha256},
        "settings": {"fps": plan.fps, "max_frames": plan.max_frames, "compression": plan.compression.to_uppercase(),
                     "id_key": if plan.legacy_2017 { "video_id" } else { "id" }, "audio": if plan.audio_zero { "zero" } else { "none" }},
        "made_by": "vidfeat work",
    });
    let tmp = dir.join(format!(".summary.json.{}.tmp", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec_pretty(&summary)?)?;
    std::fs::rename(tmp, dir.join("summary.json"))?;
    Ok(true)
}

/// Worker index and count from flags, else Slurm array or Kubernetes Indexed Job variables.
pub fn worker_slot(index: Option<usize>, count: Option<usize>, env: &dyn Fn(&str) -> Option<String>) -> Result<(usize, usize)> {
    let num = |k: &str| env(k).and_then(|v| v.trim().parse::<usize>().ok());
    let slurm_min = num("SLURM_ARRAY_TASK_MIN").unwrap_or(0);
    let index = index
        .or_else(|| num("SLURM_ARRAY_TASK_ID").map(|i| i.saturating_sub(slurm_min)))
        .or_else(|| num("JOB_COMPLETION_INDEX"))
        .context("no worker index: give --worker-index, or run as a Slurm array task (SLURM_ARRAY_TASK_ID) or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX), or use --claim")?;
    let count = count
        .or_else(|| num("SLURM_ARRAY_TASK_COUNT"))
        .or_else(|| Some(num("SLURM_ARRAY_TASK_MAX")? - slurm_min + 1))
        .or_else(|| num("VIDFEAT_NUM_WORKERS"))
        .context("no worker count: give --num-workers (or VIDFEAT_NUM_WORKERS; Slurm arrays set SLURM_ARRAY_TASK_COUNT)")?;
    if count == 0 || index >= count {
        bail!("worker index {index} is not below the worker count {count}");
    }
    Ok((index, count))
}

pub fn read_plan_tasks(dir: &Path) -> Result<Vec<Job>> {
    let text = std::fs::read_to_string(dir.join("plan.jsonl")).with_context(|| format!("{}: no plan.jsonl", dir.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str::<PlannedTask>(l).map(PlannedTask::into_job).with_context(|| format!("plan.jsonl:{}", i + 1)))
        .collect()
}


/// What one shard's processing needs from the worker.
pub struct ShardCtx<'a> {
    pub dir: &'a Path,
    pub plan: &'a PlanSettings,
    pub plan_hash: &'a str,
    pub owner: &'a str,
    /// Computes the finished entries of the given jobs (the FFmpeg + CNN side), calling `sink`
    /// for each in job order.
    pub process: &'a dyn Fn(&[Job], &mut dyn FnMut(usize, Entry) -> Result<()>) -> Result<()>,
}

/// Processes one shard (its lease held): resume from the journal, finish the rest, commit.
pub fn run_shard(ctx: &ShardCtx, name: &str, jobs: &[Job], lease: &Lease) -> Result<DoneMarker> {
    let st = stem(name);
    let jpath = ctx.dir.join("journal").join(format!("{st}.journal"));
    let (mut journal, entries) = Journal::open(&jpath, ctx.plan_hash)?;
    let mut have: BTreeMap<u32, Entry> = entries.into_iter().map(|e| (e.idx(), e)).collect();
    let todo: Vec<usize> = (0..jobs.len()).filter(|i| !have.contains_key(&(*i as u32))).collect();
    crate::telemetry::resumed(have.len() as u64);
    let mut events = crate::telemetry::EventLog::open(ctx.dir, ctx.owner);
    if !have.is_empty() {
        tracing::info!("{name}: resuming, {} of {} videos already done", have.len(), jobs.len());
    }
    let sub: Vec<Job> = todo.iter().map(|&i| jobs[i].clone()).collect();
    (ctx.process)(&sub, &mut |k, e| {
        let e = match e {
            Entry::Ok { rgb, mean_rgb, seconds, .. } => Entry::Ok { idx: todo[k] as u32, rgb, mean_rgb, seconds },
            Entry::Failed { kind, reason, .. } => Entry::Failed { idx: todo[k] as u32, kind, reason },
        };
        if !lease.held() {
            bail!("{name}: lease lost to another worker; stopping this shard");
        }
        journal.append(&e)?;
        crash_point("after_journal_entry");
        let job = &jobs[e.idx() as usize];
        crate::telemetry::written(matches!(e, Entry::Ok { .. }));
        if let Entry::Failed { kind, reason, .. } = &e {
            crate::pipeline::jobs::log_failed(&job.task.id, kind, reason);
        }
        events.video(&job.task.id, name, match &e {
            Entry::Ok { rgb, seconds, .. } => Ok((rgb.len() as u64, *seconds)),
            Entry::Failed { kind, .. } => Err(kind.as_str()),
        });
        have.insert(e.idx(), e);
        Ok(())
    })?;
    drop(journal);
    if !lease.held() {
        bail!("{name}: lease lost to another worker before commit");
    }
    // Leftovers of a killed writer of this shard.
    for level in ["frame", "video"] {
        for e in std::fs::read_dir(ctx.dir.join(level)).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&format!(".{name}.")) && n.ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let compression: vidfeat_export::Compression = ctx.plan.compression.parse().map_err(anyhow::Error::msg)?;
    let schema = vidfeat_export::Schema { legacy_2017: ctx.plan.legacy_2017, audio_zero: ctx.plan.audio_zero };
    let mut frame = vidfeat_export::AtomicShard::create_with(&ctx.dir.join("frame").join(name), compression)?;
    let mut video = vidfeat_export::AtomicShard::create_with(&ctx.dir.join("video").join(name), compression)?;
    let (mut ok, mut rows, mut secs) = (0u64, 0u64, 0f64);
    let mut failures = vec![];
    for (i, job) in jobs.iter().enumerate() {
        match &have[&(i as u32)] {
            Entry::Ok { rgb, mean_rgb, seconds, .. } => {
                let rec = vidfeat_export::VideoRecord {
                    id: job.task.id.clone(),
                    labels: job.labels.clone(),
                    rgb: rgb.clone(),
                    mean_rgb: mean_rgb.clone(),
                    segments: job.segments().to_vec(),
                };
                frame.write_record(&vidfeat_export::encode_frame_level(&rec, &schema))?;
                video.write_record(&vidfeat_export::encode_video_level(&rec, &schema))?;
                ok += 1;
                rows += rgb.len() as u64;
                secs += seconds;
            }
            Entry::Failed { kind, reason, .. } => failures.push(Failure::of_job(job, "decode", kind.clone(), reason.clone())),
        }
    }
    crash_point("before_shard_commit");
    frame.commit()?;
    crash_point("between_shard_commits");
    video.commit()?;
    crash_point("before_done_marker");
    let marker = DoneMarker {
        shard: name.into(),
        split: jobs.first().map(|j| j.task.split.clone()).unwrap_or_default(),
        videos: ok,
        failed: failures.len() as u64,
        rows,
        seconds_of_video: secs,
        frame_sha256: vidfeat_features::file_sha256(&ctx.dir.join("frame").join(name))?,
        video_sha256: vidfeat_features::file_sha256(&ctx.dir.join("video").join(name))?,
        failures,
        worker: ctx.owner.into(),
        finished_at: now_s(),
        plan_sha256: ctx.plan_hash.into(),
    };
    let done_dir = ctx.dir.join("done");
    std::fs::create_dir_all(&done_dir)?;
    let tmp = done_dir.join(format!(".{st}.json.{}.tmp", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(&marker)?)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, done_dir.join(format!("{st}.json")))?;
    if let Ok(d) = std::fs::File::open(&done_dir) {
        let _ = d.sync_all();
    }
    crash_point("after_done_marker");
    let _ = std::fs::remove_file(&jpath);
    Ok(marker)
}

/// How `vidfeat work` picks shards.
#[derive(Debug, Clone)]
pub enum Assignment {
    Static { index: usize, count: usize },
    Claim,
}

/// Runs the worker loop over its shards. Returns (shards processed here, skipped as done).
pub fn work_loop(ctx: &ShardCtx, assignment: &Assignment, ttl: Duration) -> Result<serde_json::Value> {
    let jobs = read_plan_tasks(ctx.dir)?;
    let mut by_shard: BTreeMap<(String, u32), Vec<Job>> = BTreeMap::new();
    for j in jobs {
        by_shard.entry((j.task.split.clone(), j.shard)).or_default().push(j);
    }
    let list = ctx.plan.shard_list();
    let mine: Vec<&(String, u32, String)> = match assignment {
        Assignment::Static { index, count } => list.iter().enumerate().filter(|(k, _)| k % count == *index).map(|(_, s)| s).collect(),
        Assignment::Claim => list.iter().collect(),
    };
    let (mut processed, mut skipped, mut busy) = (vec![], 0u64, vec![]);
    let videos_in = |split: &String, shard: &u32| by_shard.get(&(split.clone(), *shard)).map_or(0, |j| j.len() as u64);
    let done_before: Vec<bool> = mine.iter().map(|(_, _, n)| read_done(ctx.dir, n, ctx.plan_hash).is_some()).collect();
    crate::telemetry::planned(mine.iter().zip(&done_before).filter(|(_, d)| !**d).map(|((s, k, _), _)| videos_in(s, k)).sum());
    for ((split, shard, name), done) in mine.into_iter().zip(done_before) {
        if done {
            // A worker killed right after the done marker leaves its journal behind.
            let _ = std::fs::remove_file(ctx.dir.join("journal").join(format!("{}.journal", stem(name))));
            skipped += 1;
            continue;
        }
        crash_point("before_lease");
        let lease_path = ctx.dir.join("leases").join(format!("{}.lease", stem(name)));
        let lease = match Lease::try_acquire(&lease_path, ctx.owner, ttl)? {
            TryLease::Got(l) => l,
            TryLease::Busy(owner, age) => {
                if let Assignment::Static { index, .. } = assignment {
                    bail!(
                        "shard {name} (worker {index}'s) is being processed by {owner} (heartbeat {age} s ago): is another worker running with the same index? Its lease expires {} s after its last heartbeat",
                        ttl.as_secs()
                    );
                }
                busy.push(name.clone());
                crate::telemetry::unplanned(videos_in(split, shard));
                continue;
            }
        };
        // Done while we waited for the lease?
        if read_done(ctx.dir, name, ctx.plan_hash).is_some() {
            crate::telemetry::unplanned(videos_in(split, shard));
            skipped += 1;
            continue;
        }
        let empty = vec![];
        let jobs = by_shard.get(&(split.clone(), *shard)).unwrap_or(&empty);
        let m = run_shard(ctx, name, jobs, &lease)?;
        tracing::info!("{name}: done, {} videos, {} failed", m.videos, m.failed);
        processed.push(name.clone());
        drop(lease);
    }
    let complete = write_summary_if_complete(ctx.dir, ctx.plan, ctx.plan_hash)?;
    Ok(json!({"processed": processed, "skipped_done": skipped, "busy": busy, "complete": complete}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_slots_from_flags_slurm_and_kubernetes() {
        let env = |m: &'static [(&'static str, &'static str)]| move |k: &str| m.iter().find(|(a, _)| *a == k).map(|(_, v)| v.to_string());
        assert_eq!(worker_slot(Some(2), Some(4), &env(&[])).unwrap(), (2, 4));
        assert_eq!(worker_slot(None, None, &env(&[("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_COUNT", "8")])).unwrap(), (3, 8));
        // Arrays numbered 1..=4.
        let slurm = env(&[("SLURM_ARRAY_TASK_ID", "4"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_MAX", "4")]);
        assert_eq!(worker_slot(None, None, &slurm).unwrap(), (3, 4));
        assert_eq!(worker_slot(None, Some(5), &env(&[("JOB_COMPLETION_INDEX", "0")])).unwrap(), (0, 5));
        assert_eq!(worker_slot(None, None, &env(&[("JOB_COMPLETION_INDEX", "1"), ("VIDFEAT_NUM_WORKERS", "2")])).unwrap(), (1, 2));
        assert!(worker_slot(None, None, &env(&[("JOB_COMPLETION_INDEX", "1")])).is_err());
        assert!(worker_slot(Some(4), Some(4), &env(&[])).is_err());
        assert!(worker_slot(None, Some(4), &env(&[])).is_err());
    }

}
