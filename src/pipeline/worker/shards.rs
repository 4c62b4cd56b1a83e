//! The shard loop of a worker: which shards are its own and which of those are current
//! (their done marker carries the shard's key from plan.json and both files are there), resume
//! from the journal, commit a shard atomically and mark it done; the summary once every shard
//! is done. `--retry-failed` rebuilds the shards of videos that failed with given kinds, from
//! the shard's own records for every other video, so only those videos are decoded again.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::journal::{Entry, Journal};
use super::lease::{Lease, TryLease};
use super::{crash_point, now_s};
use crate::pipeline::dataset::{shard_paths, ShardPaths};
use crate::pipeline::jobs::{Failure, Job};
use crate::pipeline::plan::{PlanSettings, PlannedTask};
use vidfeat_ingest::Source;

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
    pub frame_bytes: u64,
    pub video_bytes: u64,
    pub failures: Vec<Failure>,
    /// Seconds of video of each task, in shard order (0 for a failure): what a retry needs to
    /// write the shard again from its own records.
    pub video_seconds: Vec<f64>,
    /// Each task's row lag (mean, max seconds), likewise.
    #[serde(default)]
    pub video_lags: Vec<(f64, f64)>,
    /// Each task's rows, likewise (weights of the summary's mean lag).
    #[serde(default)]
    pub video_rows: Vec<u64>,
    /// The SHA-256 of each downloaded source's content the shard was made from (source ->
    /// sha256): a shard whose downloads hold other content now is rebuilt.
    #[serde(default)]
    pub fetched: BTreeMap<String, String>,
    pub worker: String,
    pub vidfeat: String,
    /// What computed the rows (device, torch threads, hwdec): not part of the key, but the
    /// features' last bits depend on it.
    #[serde(default)]
    pub compute: serde_json::Value,
    pub finished_at: u64,
    /// The shard's key (plan.json's `shard_keys`) it was written under: a marker with another
    /// key belongs to other inputs or settings.
    pub key: String,
}

/// The shard's done marker, if the shard is current: written under `key`, and both shard files
/// there at the sizes it recorded.
pub fn read_done(dir: &Path, name: &str, key: &str) -> Option<DoneMarker> {
    let p = shard_paths(dir, name).ok()?;
    let m: DoneMarker = serde_json::from_slice(&std::fs::read(&p.done).ok()?).ok()?;
    let size = |f: &Path| std::fs::metadata(f).map(|m| m.len()).ok();
    (!key.is_empty() && m.key == key && size(&p.frame) == Some(m.frame_bytes) && size(&p.video) == Some(m.video_bytes)).then_some(m)
}

/// The failure kinds `--retry-failed` attempts again when no kinds are named: the transient ones.
pub const TRANSIENT_KINDS: [&str; 2] = ["download_failed", "timeout"];

/// When every shard is done (as `done` says: a worker on a bucket sees the bucket's markers and
/// object sizes, not files): `summary.json` in the layout of `vidfeat run` (verify reads it).
pub fn write_summary_with(dir: &Path, plan: &PlanSettings, done: &dyn Fn(&str) -> Option<DoneMarker>) -> Result<bool> {
    let mut shards: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    let (mut ok, mut failed, mut rows, mut secs) = (0u64, 0u64, 0u64, 0f64);
    let (mut lag_sum, mut lag_max) = (0f64, 0f64);
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    let mut workers: BTreeMap<String, u64> = BTreeMap::new();
    for (split, _, name) in plan.shard_list() {
        let Some(d) = done(&name) else { return Ok(false) };
        ok += d.videos;
        failed += d.failed;
        rows += d.rows;
        secs += d.seconds_of_video;
        for f in &d.failures {
            *by_kind.entry(f.kind.clone()).or_default() += 1;
        }
        *workers.entry(d.worker.clone()).or_default() += 1;
        // The mean over rows, as `vidfeat run` gives it.
        for (n, (mean, max)) in d.video_rows.iter().zip(&d.video_lags) {
            lag_sum += mean * *n as f64;
            lag_max = lag_max.max(*max);
        }
        shards.entry(split).or_default().push(json!({"shard": name, "videos": d.videos}));
    }
    if let Ok(f) = std::fs::File::open(dir.join("failures.jsonl")) {
        use std::io::BufRead;
        for l in std::io::BufReader::new(f).lines() {
            if let Ok(f) = serde_json::from_str::<Failure>(&l?) {
                failed += 1;
                *by_kind.entry(f.kind).or_default() += 1;
            }
        }
    }
    let mut provenance = plan.provenance.clone();
    provenance["workers"] = workers.iter().map(|(w, n)| json!({"worker": w, "shards": n})).collect();
    let summary = json!({
        "videos_ok": ok,
        "videos_failed": failed,
        "failures_by_kind": by_kind,
        "rows": rows,
        "seconds_of_video": (secs * 1000.0).round() / 1000.0,
        "row_lag": crate::pipeline::consume::lag_json(lag_sum, rows, lag_max),
        "shards": shards,
        "pca": {"source": plan.first.pca, "sha256": plan.first.pca_sha256, "dims": plan.first.pca_dims, "fitted_on_frames": plan.first.pca_frames, "supported_components": plan.first.pca_supported},
        "model": {"path": plan.first.model, "sha256": plan.first.model_sha256},
        "vocabulary": plan.vocabulary,
        "settings": {"fps": plan.fps, "max_frames": plan.max_frames, "sampling": plan.sampling, "compression": plan.compression.to_uppercase(),
                     "id_key": if plan.legacy_2017 { "video_id" } else { "id" }, "audio": if plan.audio_zero { "zero" } else { "none" }},
        "provenance": provenance,
        "made_by": "vidfeat work",
    });
    let mut summary = summary;
    if !plan.extra_models.is_empty() {
        // Every model's features in the records (verify checks their widths).
        summary["features"] = json!(plan
            .models()
            .map(|(name, m)| json!({"name": name, "dims": m.pca_dims, "model": m.model, "pca": {"source": m.pca, "sha256": m.pca_sha256}}))
            .collect::<Vec<_>>());
    }
    if plan.predict > 0 {
        summary["predictions"] = crate::pipeline::predictions::write(dir, plan)?;
    } else {
        // An earlier build's predictions do not describe these shards.
        crate::outdir::remove_file(&dir.join("predictions.jsonl"))?;
    }
    crate::pipeline::write_atomic(&dir.join("summary.json"), &serde_json::to_vec_pretty(&summary)?)?;
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

/// The plan's tasks, in plan order (by split and shard), checked against the SHA-256 of the
/// plan.jsonl that plan.json was frozen with.
pub fn read_plan_tasks(dir: &Path, sha256: &str) -> Result<Vec<Job>> {
    read_plan_tasks_at(&dir.join("plan.jsonl"), sha256)
}

/// [`read_plan_tasks`] of the plan.jsonl at `path` (a plan's staged one).
pub fn read_plan_tasks_at(path: &Path, sha256: &str) -> Result<Vec<Job>> {
    let (jobs, got) = read_tasks_at(path)?;
    anyhow::ensure!(
        got == sha256,
        "{}: plan.jsonl is not the one plan.json was frozen with (rewritten by a dry run, or a plan interrupted between the two): run `vidfeat plan` again",
        path.parent().unwrap_or(path).display()
    );
    Ok(jobs)
}

/// The tasks of a folder's plan.jsonl, and the file's SHA-256.
pub fn read_tasks(dir: &Path) -> Result<(Vec<Job>, String)> {
    read_tasks_at(&dir.join("plan.jsonl"))
}

/// The tasks of the plan.jsonl at `path`, and the file's SHA-256.
pub fn read_tasks_at(path: &Path) -> Result<(Vec<Job>, String)> {
    use sha2::Digest;
    use std::io::BufRead;
    let dir = path.parent().unwrap_or(path);
    let f = std::fs::File::open(path).with_context(|| format!("{}: no plan.jsonl", dir.display()))?;
    let mut out = vec![];
    let mut h = sha2::Sha256::new();
    let mut r = std::io::BufReader::new(f);
    let mut l = String::new();
    let mut i = 0;
    while r.read_line(&mut l)? > 0 {
        i += 1;
        h.update(l.as_bytes());
        if !l.trim().is_empty() {
            out.push(serde_json::from_str::<PlannedTask>(l.trim_end()).map(PlannedTask::into_job).with_context(|| format!("plan.jsonl:{i}"))?);
        }
        l.clear();
    }
    Ok((out, hex::encode(h.finalize())))
}

/// The content hash the fetch cache records for a remote source (None for local sources, or
/// when nothing is cached for it).
fn fetched_sha256(source: &Source, plan: &PlanSettings, fetch_dir: &Path) -> Option<String> {
    let key = match source {
        Source::Local(_) => return None,
        Source::Url(u) => vidfeat_ingest::fetch::url_key(u),
        Source::Id(i) => vidfeat_ingest::fetch::id_key(plan.fetch_cmd.as_deref()?, i),
    };
    vidfeat_ingest::fetch::recorded_sha256(fetch_dir, &key)
}

/// Removes the done markers of current shards built from downloads whose cached content has
/// changed since (a source re-downloaded with other bytes): those shards are rebuilt. Returns
/// how many.
pub fn invalidate_changed_downloads(dir: &Path, plan: &PlanSettings, fetch_dir: &Path) -> Result<usize> {
    let mut n = 0;
    for (_, _, name) in plan.shard_list() {
        let Some(m) = read_done(dir, &name, plan.key(&name)) else { continue };
        let changed = m.fetched.iter().any(|(src, sha)| {
            let source = match src.strip_prefix("id:") {
                Some(id) => Source::Id(id.to_string()),
                None => Source::Url(src.clone()),
            };
            fetched_sha256(&source, plan, fetch_dir).is_some_and(|now| now != *sha)
        });
        if changed {
            // The shard files go with their marker (marker last): a shard file no record
            // names would be taken for someone else's.
            let p = shard_paths(dir, &name)?;
            for f in [&p.frame, &p.video, &p.done] {
                crate::outdir::remove_file(f)?;
            }
            n += 1;
        }
    }
    Ok(n)
}

/// What one shard's processing needs from the worker.
pub struct ShardCtx<'a> {
    pub dir: &'a Path,
    pub plan: &'a PlanSettings,
    pub owner: &'a str,
    /// Where downloaded sources are cached (their content hashes go into done markers).
    pub fetch_dir: &'a Path,
    /// Failure kinds whose videos are attempted again (`--retry-failed`); empty: none.
    pub retry: &'a BTreeSet<String>,
    /// Recorded in each done marker (see `DoneMarker::compute`).
    pub compute: &'a serde_json::Value,
    /// Computes the finished entries of the given jobs (the FFmpeg + CNN side), calling `sink`
    /// for each in job order.
    pub process: &'a dyn Fn(&[Job], &mut dyn FnMut(usize, Entry) -> Result<()>) -> Result<()>,
    /// The output folder and what is behind it (a bucket): done-ness, leases, publishing.
    pub out: &'a crate::outdir::OutDir,
}

/// A shard's done marker as the bucket holds it now (see [`crate::outdir::OutDir::done`]).
pub fn done_in_bucket_now(url: &str, plan: &PlanSettings, name: &str) -> Option<DoneMarker> {
    let stem = name.trim_end_matches(".tfrecord");
    let m: DoneMarker = serde_json::from_slice(&vidfeat_store::read(&format!("{url}/done/{stem}.json"), 1 << 28).ok()?).ok()?;
    super::marker_describes(&m, plan, name, &|sub| vidfeat_store::head(&format!("{url}/{sub}/{name}")).ok().map(|m| m.size)).then_some(m)
}

/// Entries for a retry of a done shard: every video whose failure is not retried is taken from
/// the shard as it is (records read back, or its failure), so only the retried ones are
/// processed again; the shard written from them is byte-identical to one in which they
/// succeeded the first time.
fn retry_entries(p: &ShardPaths, m: &DoneMarker, jobs: &[Job], retry: &BTreeSet<String>, extra: &[String]) -> Result<Vec<Entry>> {
    let failed: BTreeMap<&str, &Failure> = m.failures.iter().filter_map(|f| Some((f.id.as_deref()?, f))).collect();
    // id -> rgb rows, mean_rgb, logits, further models' (rows, mean).
    type Read = (Vec<Vec<u8>>, Vec<f32>, Vec<f32>, Vec<super::journal::Features>);
    let mut records: BTreeMap<String, Read> = BTreeMap::new();
    for r in vidfeat_export::read_file(&p.frame)? {
        let mut f = vidfeat_export::parse_record(&r)?;
        let other = extra.iter().map(|name| (f.other.remove(name).unwrap_or_default(), vec![])).collect();
        records.insert(f.id, (f.rgb, vec![], vec![], other));
    }
    for r in vidfeat_export::read_file(&p.video)? {
        let mut v = vidfeat_export::parse_record(&r)?;
        if let (Some(e), Some(mean)) = (records.get_mut(&v.id), v.floats.remove("mean_rgb")) {
            e.1 = mean;
            e.2 = v.floats.remove("logits").unwrap_or_default();
            for (name, x) in extra.iter().zip(e.3.iter_mut()) {
                x.1 = v.floats.remove(&format!("mean_{name}")).unwrap_or_default();
            }
        }
    }
    let mut out = vec![];
    for (i, job) in jobs.iter().enumerate() {
        let idx = i as u32;
        match (failed.get(job.task.id.as_str()), records.remove(&job.task.id)) {
            (Some(f), _) if retry.contains(&f.kind) => {}
            (Some(f), _) => out.push(Entry::Failed { idx, kind: f.kind.clone(), reason: f.reason.clone() }),
            (None, Some((rgb, mean_rgb, logits, extra))) => out.push(Entry::Ok {
                idx,
                rgb,
                mean_rgb,
                logits,
                extra,
                seconds: m.video_seconds.get(i).copied().unwrap_or(0.0),
                lag: m.video_lags.get(i).copied().unwrap_or_default(),
            }),
            // Neither in the shard nor failed: processed again.
            (None, None) => {}
        }
    }
    Ok(out)
}

/// Processes one shard (its lease held): resume from the journal (seeded from the done shard
/// itself when it is retried), finish the rest, commit.
pub fn run_shard(ctx: &ShardCtx, name: &str, jobs: &[Job], lease: &Lease, retry_of: Option<&DoneMarker>) -> Result<DoneMarker> {
    let p = shard_paths(ctx.dir, name)?;
    let key = ctx.plan.key(name);
    let (mut journal, entries) = Journal::open(&p.journal, key)?;
    let mut have: BTreeMap<u32, Entry> = entries.into_iter().map(|e| (e.idx(), e)).collect();
    if let Some(m) = retry_of {
        let extra: Vec<String> = ctx.plan.models().skip(1).map(|(name, _)| name.to_string()).collect();
        for e in retry_entries(&p, m, jobs, ctx.retry, &extra)? {
            if !have.contains_key(&e.idx()) {
                journal.append(&e)?;
                have.insert(e.idx(), e);
            }
        }
    }
    let todo: Vec<usize> = (0..jobs.len()).filter(|i| !have.contains_key(&(*i as u32))).collect();
    crate::telemetry::resumed(have.len() as u64);
    let mut events = crate::telemetry::EventLog::open(ctx.dir, ctx.owner);
    if !have.is_empty() {
        tracing::info!("{name}: {} of {} already done{}", have.len(), crate::telemetry::count(jobs.len() as u64, "video"), if retry_of.is_some() { " (retrying the others)" } else { ", resuming" });
    }
    let sub: Vec<Job> = todo.iter().map(|&i| jobs[i].clone()).collect();
    (ctx.process)(&sub, &mut |k, e| {
        let e = match e {
            Entry::Ok { rgb, mean_rgb, seconds, lag, logits, extra, .. } => Entry::Ok { idx: todo[k] as u32, rgb, mean_rgb, seconds, lag, logits, extra },
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
            Entry::Ok { rgb, seconds, lag, .. } => Ok((rgb.len() as u64, *seconds, *lag)),
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
    let mut frame = vidfeat_export::AtomicShard::create_with(&p.frame, compression)?;
    let mut video = vidfeat_export::AtomicShard::create_with(&p.video, compression)?;
    let (mut ok, mut rows, mut secs) = (0u64, 0u64, 0f64);
    let mut failures = vec![];
    let mut video_seconds = Vec::with_capacity(jobs.len());
    let mut video_lags = Vec::with_capacity(jobs.len());
    let mut video_rows = Vec::with_capacity(jobs.len());
    let mut fetched = BTreeMap::new();
    for (i, job) in jobs.iter().enumerate() {
        if let Some(sha) = fetched_sha256(&job.task.source, ctx.plan, ctx.fetch_dir) {
            fetched.insert(job.task.source.to_string(), sha);
        }
        match &have[&(i as u32)] {
            Entry::Ok { rgb, mean_rgb, seconds, lag, logits, extra, .. } => {
                job.warn_segments_beyond(rgb.len());
                video_lags.push(*lag);
                video_rows.push(rgb.len() as u64);
                let rec = vidfeat_export::VideoRecord {
                    id: job.task.id.clone(),
                    labels: job.labels.clone(),
                    rgb: rgb.clone(),
                    mean_rgb: mean_rgb.clone(),
                    logits: logits.clone(),
                    extra: ctx
                        .plan
                        .extra_models
                        .iter()
                        .zip(extra)
                        .map(|(m, (rows, mean))| vidfeat_export::NamedFeature { name: m.feature.clone(), rows: rows.clone(), mean: mean.clone() })
                        .collect(),
                    segments: job.segments().to_vec(),
                };
                frame.write_record(&vidfeat_export::encode_frame_level(&rec, &schema))?;
                video.write_record(&vidfeat_export::encode_video_level(&rec, &schema))?;
                ok += 1;
                rows += rgb.len() as u64;
                secs += seconds;
                video_seconds.push(*seconds);
            }
            Entry::Failed { kind, reason, .. } => {
                failures.push(Failure::of_job(job, "decode", kind.clone(), reason.clone()));
                video_seconds.push(0.0);
                video_lags.push((0.0, 0.0));
                video_rows.push(0);
            }
        }
    }
    crash_point("before_shard_commit");
    frame.commit()?;
    crash_point("between_shard_commits");
    video.commit()?;
    crash_point("before_done_marker");
    let (frame_sha256, frame_bytes) = (vidfeat_features::file_sha256(&p.frame)?, std::fs::metadata(&p.frame)?.len());
    let (video_sha256, video_bytes) = (vidfeat_features::file_sha256(&p.video)?, std::fs::metadata(&p.video)?.len());
    let marker = DoneMarker {
        shard: name.into(),
        split: jobs.first().map(|j| j.task.split.clone()).unwrap_or_default(),
        videos: ok,
        failed: failures.len() as u64,
        rows,
        seconds_of_video: secs,
        frame_sha256,
        video_sha256,
        frame_bytes,
        video_bytes,
        failures,
        video_seconds,
        video_lags,
        video_rows,
        fetched,
        worker: ctx.owner.into(),
        vidfeat: env!("CARGO_PKG_VERSION").into(),
        compute: ctx.compute.clone(),
        finished_at: now_s(),
        key: key.into(),
    };
    crate::pipeline::write_atomic(&p.done, &serde_json::to_vec_pretty(&marker)?)?;
    crash_point("after_done_marker");
    let _ = std::fs::remove_file(&p.journal);
    Ok(marker)
}

/// How `vidfeat work` picks shards.
#[derive(Debug, Clone)]
pub enum Assignment {
    Static { index: usize, count: usize },
    Claim,
}

/// The shards of `list` (the plan's, in order) a worker takes: k % count == index, or all
/// (to claim).
pub fn assigned<'l>(list: &'l [(String, u32, String)], assignment: &Assignment) -> Vec<&'l (String, u32, String)> {
    match assignment {
        Assignment::Static { index, count } => list.iter().enumerate().filter(|(k, _)| k % count == *index).map(|(_, s)| s).collect(),
        Assignment::Claim => list.iter().collect(),
    }
}

/// What a shard of this worker's needs.
enum Todo {
    Done,
    Build,
    Retry(Box<DoneMarker>),
}

fn todo_of(ctx: &ShardCtx, name: &str) -> Todo {
    match ctx.out.done(ctx.plan, name) {
        Some(m) if m.failures.iter().any(|f| ctx.retry.contains(&f.kind)) => Todo::Retry(Box::new(m)),
        Some(_) => Todo::Done,
        None => Todo::Build,
    }
}

/// What one try at a shard came to.
enum Tried {
    Done,
    Processed { rebuilt: bool, retried: bool },
    /// Held by another worker: its heartbeat stamp.
    Busy(u128),
}

/// How often a claim worker looks again at shards other workers hold.
fn claim_poll(ttl: Duration) -> Duration {
    (ttl / 8).clamp(Duration::from_millis(200), Duration::from_secs(5))
}

/// Runs the worker loop over its shards. Returns the shards processed here (`processed`, of
/// which `rebuilt` replaced earlier files and `retried` retried failures), those found current
/// (`skipped_done`), those held by others (`busy`), and whether the plan is complete.
///
/// A claim worker does not stop at shards others hold: it looks at them again every
/// [`claim_poll`], takes over a lease whose heartbeat stopped (after the TTL, or at once when
/// its process is gone on this host) and finishes the shard, and leaves only when every shard
/// is done or held by a worker it has seen beat (a live one, which will finish it).
pub fn work_loop(ctx: &ShardCtx, assignment: &Assignment, ttl: Duration) -> Result<serde_json::Value> {
    let jobs = read_plan_tasks(ctx.dir, &ctx.plan.plan_jsonl_sha256)?;
    let mut by_shard: BTreeMap<(String, u32), Vec<Job>> = BTreeMap::new();
    for j in jobs {
        by_shard.entry((j.task.split.clone(), j.shard)).or_default().push(j);
    }
    let list = ctx.plan.shard_list();
    let mine = assigned(&list, assignment);
    let claim = matches!(assignment, Assignment::Claim);
    let (mut processed, mut rebuilt, mut retried, mut skipped) = (vec![], 0u64, 0u64, 0u64);
    let videos_in = |split: &String, shard: &u32| by_shard.get(&(split.clone(), *shard)).map_or(0, |j| j.len() as u64);
    let todo: Vec<Todo> = mine.iter().map(|(_, _, n)| todo_of(ctx, n)).collect();
    crate::telemetry::planned(mine.iter().zip(&todo).filter(|(_, t)| !matches!(t, Todo::Done)).map(|((s, k, _), _)| videos_in(s, k)).sum());
    let attempt = |split: &String, shard: &u32, name: &String| -> Result<Tried> {
        let paths = shard_paths(ctx.dir, name)?;
        crash_point("before_lease");
        let lease = match ctx.out.lease(name, ctx.owner, ttl, claim)? {
            TryLease::Got(l) => l,
            TryLease::Busy(owner, age, beat) => {
                if let Assignment::Static { index, .. } = assignment {
                    bail!(
                        "shard {name} (worker {index}'s) is being processed by {owner} (heartbeat {age} s ago): is another worker running with the same index? Its lease expires {} s after its last heartbeat",
                        ttl.as_secs()
                    );
                }
                return Ok(Tried::Busy(beat));
            }
        };
        // Done (or retried) by another worker while we waited for the lease?
        let todo = match todo_of(ctx, name) {
            Todo::Done => return Ok(Tried::Done),
            t => t,
        };
        let empty = vec![];
        let jobs = by_shard.get(&(split.clone(), *shard)).unwrap_or(&empty);
        let existed = paths.frame.exists();
        let retry_of = match &todo {
            Todo::Retry(m) => Some(m.as_ref()),
            _ => None,
        };
        if retry_of.is_some() {
            // A retry rebuilds the shard from its own records.
            ctx.out.fetch_shard(name)?;
        }
        let m = run_shard(ctx, name, jobs, &lease, retry_of)?;
        ctx.out.publish_shard(name)?;
        tracing::info!("{name}: done, {}, {} failed", crate::telemetry::count(m.videos, "video"), m.failed);
        drop(lease);
        Ok(Tried::Processed { rebuilt: existed, retried: retry_of.is_some() })
    };
    // Shards held by others: (split, shard, name, the heartbeat stamp first seen, seen to beat).
    let mut held: Vec<(&String, &u32, &String, u128, bool)> = vec![];
    // Counts a try; the holder's heartbeat stamp when the shard is held by another worker.
    let mut tally = |t: Tried, name: &String, skipped: &mut u64| -> Option<u128> {
        match t {
            Tried::Done => *skipped += 1,
            Tried::Processed { rebuilt: r, retried: t } => {
                rebuilt += r as u64;
                retried += t as u64;
                processed.push(name.clone());
            }
            Tried::Busy(beat) => return Some(beat),
        }
        None
    };
    for ((split, shard, name), todo) in mine.into_iter().zip(todo) {
        if matches!(todo, Todo::Done) {
            // A worker killed right after the done marker leaves its journal behind.
            let _ = std::fs::remove_file(shard_paths(ctx.dir, name)?.journal);
            skipped += 1;
            continue;
        }
        if let Some(beat) = tally(attempt(split, shard, name)?, name, &mut skipped) {
            crate::telemetry::unplanned(videos_in(split, shard));
            held.push((split, shard, name, beat, false));
        }
    }
    // Claimed shards others hold: wait for each to be done, taken over when its holder stops
    // beating, or seen to beat (then its holder finishes it, and this worker may go).
    let mut waited = false;
    while claim && held.iter().any(|h| !h.4) {
        if !waited {
            let names: Vec<&str> = held.iter().map(|h| h.2.as_str()).collect();
            tracing::info!(
                "{} held by other workers ({}): waiting for them to be done, or for a lease to go stale ({} s without a heartbeat) to take it over",
                crate::telemetry::count(held.len() as u64, "shard"),
                names.join(", "),
                ttl.as_secs()
            );
            waited = true;
        }
        std::thread::sleep(claim_poll(ttl));
        let mut still = vec![];
        for (split, shard, name, first, live) in held {
            if matches!(todo_of(ctx, name), Todo::Done) {
                skipped += 1;
                continue;
            }
            crate::telemetry::planned(videos_in(split, shard));
            if let Some(beat) = tally(attempt(split, shard, name)?, name, &mut skipped) {
                crate::telemetry::unplanned(videos_in(split, shard));
                still.push((split, shard, name, first, live || beat != first));
            }
        }
        held = still;
    }
    drop(tally);
    let busy: Vec<String> = held.iter().map(|h| h.2.clone()).collect();
    let complete = ctx.out.summary_if_complete(ctx.plan)?;
    Ok(json!({"processed": processed, "rebuilt": rebuilt, "retried": retried, "skipped_done": skipped, "busy": busy, "complete": complete}))
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
