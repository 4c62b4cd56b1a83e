//! Resumable cluster workers over a frozen plan: `vidfeat work` and `vidfeat status`.
//!
//! ```text
//! DIR/plan.json                 frozen settings (model + sidecar + PCA with hashes, sampling,
//!                               schema, shards); written by `vidfeat plan` (see `plan.rs`)
//! DIR/plan.jsonl                the tasks, each with its shard
//! DIR/leases/NAME.lease         who works on shard NAME: create-exclusive, heartbeat (mtime),
//!                               taken over when older than the TTL                [lease.rs]
//! DIR/journal/NAME.journal      per-video checkpoints of an unfinished shard (zstd entries,
//!                               each length- and CRC-framed; a torn tail is cut off on resume)
//!                                                                                 [journal.rs]
//! DIR/frame|video/NAME          the shards, committed atomically (temporary name, fsync, rename)
//! DIR/done/NAME.json            the done marker: record count, SHA-256 of both shard files,
//!                               failures; written after both shards, so done means complete
//!                                                                                 [shards.rs]
//! DIR/summary.json              written by the worker that finds every shard done
//! ```
//!
//! NAME is the shard's file stem, e.g. `train-00003-of-00016`. Shards are numbered globally in
//! (split, shard) order; worker I of N takes shard k when k % N == I (static), or claims any
//! shard whose lease it can take (`--claim`). Features are computed per video (batches never
//! cross videos here), so a resumed shard is byte-identical to an uninterrupted one.
//!
//! This file holds the FFmpeg + CNN side of a worker ([`work`]); `shards.rs` the shard loop,
//! `status.rs` what `vidfeat status` reads.
use std::collections::BTreeMap;
#[cfg(feature = "ffmpeg")]
use std::path::PathBuf;
#[cfg(feature = "ffmpeg")]
use std::sync::{Condvar, Mutex};
#[cfg(feature = "ffmpeg")]
use std::time::Duration;
use std::time::SystemTime;

#[cfg(feature = "ffmpeg")]
use anyhow::{Context, Result};
#[cfg(feature = "ffmpeg")]
use serde_json::json;

#[cfg(feature = "ffmpeg")]
use vidfeat_decode::Rational;
#[cfg(feature = "ffmpeg")]
use vidfeat_features::Model;
#[cfg(feature = "ffmpeg")]
use vidfeat_ingest::fetch::FetchConfig;

#[cfg(feature = "ffmpeg")]
use crate::pipeline::consume::Progress;
#[cfg(feature = "ffmpeg")]
use crate::pipeline::decode::{in_order_streams, spawn_decoders, DecodeSettings, Piece};
#[cfg(feature = "ffmpeg")]
use crate::pipeline::models::VideoFeatures;
#[cfg(feature = "ffmpeg")]
use crate::pipeline::jobs::Job;

pub mod journal;
pub mod lease;
pub mod shards;
pub mod status;

pub use journal::{Entry, Journal};
pub use lease::{lease_age, Lease, TryLease};
pub use shards::{done_in_bucket_now, write_summary_with, invalidate_changed_downloads, read_done, read_plan_tasks, read_plan_tasks_at, read_tasks, run_shard, work_loop, worker_slot, Assignment, DoneMarker, ShardCtx, TRANSIENT_KINDS};
pub use status::{shard_failures, status, status_of_bucket};

/// Test-only fault injection: `VIDFEAT_CRASH_AT=point[:n]` kills the process with SIGKILL at
/// the n-th time (default first) it reaches `point`. Used by the kill -9 tests.
pub fn crash_point(point: &str) {
    static COUNTS: std::sync::Mutex<Option<BTreeMap<String, u32>>> = std::sync::Mutex::new(None);
    let Ok(spec) = std::env::var("VIDFEAT_CRASH_AT") else { return };
    let (name, n) = match spec.split_once(':') {
        Some((a, b)) => (a.to_string(), b.parse().unwrap_or(1)),
        None => (spec.clone(), 1),
    };
    if name != point {
        return;
    }
    let mut g = COUNTS.lock().unwrap();
    let c = g.get_or_insert_with(BTreeMap::new).entry(name).or_default();
    *c += 1;
    if *c == n {
        unsafe {
            libc::raise(libc::SIGKILL);
        }
    }
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// This worker's lease owner name: host, pid and a random part (pids repeat across hosts
/// and restarts).
pub fn worker_id() -> String {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{}:{}:{:08x}", hostname(), std::process::id(), nanos ^ std::process::id().rotate_left(16))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "unknown".into())
}

/// `vidfeat work`: the worker side of a frozen plan.
#[cfg(feature = "ffmpeg")]
#[derive(Debug, Clone)]
pub struct WorkConfig {
    pub dir: PathBuf,
    pub assignment: Assignment,
    pub lease_ttl: Duration,
    pub device: String,
    pub torch_threads: usize,
    pub workers: usize,
    pub threads: usize,
    /// Download settings; `fetch_cmd` and the size cap come from the plan.
    pub fetch: FetchConfig,
    /// Failure kinds whose videos are attempted again (`--retry-failed`); empty: none.
    pub retry: std::collections::BTreeSet<String>,
    /// Where to decode (CPU or NVDEC): a worker's choice, not the plan's.
    pub hwdec: vidfeat_decode::HwDecode,
    /// The plan folder's bucket URL when it lives in one; `dir` is then this worker's mirror
    /// of it (see [`crate::mirror`]): the plan and the markers are pulled (done-ness is asked of the bucket), each
    /// shard is published as soon as it is done, and the worker that finds every marker in
    /// the bucket writes the summary there.
    pub bucket: Option<String>,
}

#[cfg(feature = "ffmpeg")]
pub fn work(cfg: &WorkConfig) -> Result<serde_json::Value> {
    use crate::pipeline::plan::PlanSettings;
    let out = crate::outdir::OutDir::mirroring(&cfg.dir, cfg.bucket.as_deref());
    out.pull_records(matches!(cfg.assignment, Assignment::Claim))?;
    let plan = PlanSettings::load(&cfg.dir)?;
    // What `run` decoded to fit its PCA is not this worker's progress.
    crate::telemetry::reset();
    // The plan's files must be the ones it was made with.
    let check = |what: &str, path: &str, want: &str, got: std::io::Result<String>| -> Result<()> {
        let got = got.with_context(|| format!("plan's {what} {path}"))?;
        anyhow::ensure!(
            got == want,
            "the plan's {what} {path} has changed since the plan was made (sha256 {got}, plan.json says {want}); restore it or make a new plan"
        );
        Ok(())
    };
    // Objects (a plan made in or from a bucket) are fetched into local copies first.
    let local = |what: &str, p: &str| crate::mirror::local(std::path::Path::new(p)).with_context(|| format!("plan's {what} {p}"));
    // Every model with its PCA, the first (`rgb`) first; the files checked against the plan.
    let device = crate::pipeline::torch_setup(&cfg.device, cfg.torch_threads, false)?;
    let mut members: Vec<(Model, vidfeat_features::Pca)> = vec![];
    for (_, m) in plan.models() {
        let (model_path, sidecar_path, pca_path) = (local("model", &m.model)?, local("sidecar", &m.sidecar)?, local("PCA", &m.pca)?);
        check("model", &m.model, &m.model_sha256, vidfeat_features::file_sha256(&model_path))?;
        check("sidecar", &m.sidecar, &m.sidecar_sha256, vidfeat_features::file_sha256(&sidecar_path))?;
        let p = vidfeat_features::Pca::load(&pca_path, Some(m.pca_dims))?;
        check("PCA", &m.pca, &m.pca_sha256, Ok(p.content_sha256()))?;
        let m = Model::load(&model_path, Some(&sidecar_path), device)?;
        m.check()?;
        members.push((m, p));
    }
    let model = &members[0].0;
    let batch = plan.batch_size.unwrap_or(if device.is_cuda() { 64 } else { 8 }).max(1);
    let settings = DecodeSettings {
        fps: Rational::parse(&plan.fps).with_context(|| format!("plan fps `{}`", plan.fps))?,
        sampling: plan.sampling.parse().map_err(anyhow::Error::msg)?,
        hwdec: cfg.hwdec,
        max_frames: plan.max_frames,
        resize: plan.resize.as_deref().map(str::parse).transpose().map_err(anyhow::Error::msg)?,
        workers: cfg.workers,
        threads: cfg.threads,
        timeout: Duration::from_secs(plan.timeout_s),
        max_pixels: plan.max_pixels,
        max_input_bytes: plan.max_input_bytes,
        max_duration: plan.max_duration,
        max_decoder_bytes: plan.max_decoder_bytes,
        fetch: FetchConfig { fetch_cmd: plan.fetch_cmd.clone(), max_bytes: plan.max_input_bytes, ..cfg.fetch.clone() },
    };
    let sides: Vec<&vidfeat_features::Sidecar> = members.iter().map(|m| &m.0.sidecar).collect();
    let (opts, shape) = crate::pipeline::models::shared_options(&settings, &sides)?;
    let decoded = &members[shape].0.sidecar;
    let fetch = settings.fetch_in(&cfg.dir);
    let owner = worker_id();
    crate::telemetry::EventLog::open(&cfg.dir, &owner).started();
    let failed = std::sync::atomic::AtomicU64::new(0);
    let process = |jobs: &[Job], sink: &mut dyn FnMut(usize, Entry) -> Result<()>| -> Result<()> {
        let progress: Progress = (Mutex::new(0), Condvar::new());
        std::thread::scope(|s| -> Result<()> {
            // Pieces of one batch: the batches are those of a whole video (features do not
            // depend on how the video was cut), and a clip model holds a batch, not the video.
            let rx = spawn_decoders(s, jobs, &opts, settings.workers, &progress, &fetch, batch);
            in_order_streams(rx, &progress, |k, pieces| {
                // Every model on this video's rows as they come, batches within the video only
                // (features do not depend on neighbours).
                let mut feats: Vec<VideoFeatures> = members.iter().map(|_| VideoFeatures::default()).collect();
                let predict = |i: usize| plan.predict > 0 && plan.predict_model == i;
                let mut end = None;
                for p in pieces.iter() {
                    match p {
                        Piece::Rows(rows, n) => {
                            let r = members.iter().zip(feats.iter_mut()).enumerate().try_for_each(|(i, ((model, _), f))| {
                                f.add(model, &crate::pipeline::models::rows_for(&rows, n as usize, decoded, &model.sidecar), batch, predict(i))
                            });
                            // A model failure fails the video; the rest of it is not waited for.
                            if let Err(e) = r {
                                end = Some(Err(("model_error".to_string(), e)));
                                break;
                            }
                        }
                        Piece::End(r) => {
                            // The last batches still running.
                            let drained = members.iter().zip(feats.iter_mut()).enumerate().try_for_each(|(i, ((model, _), f))| f.drain(model, predict(i)));
                            end = Some(match (r, drained) {
                                (Ok(_), Err(e)) => Err(("model_error".to_string(), e)),
                                (r, _) => r,
                            });
                            break;
                        }
                    }
                }
                drop(pieces);
                let entry = match end.unwrap_or_else(|| Err(("decode_error".into(), "the decoder stopped without a result".into()))) {
                    Ok(crate::pipeline::consume::Video { seconds, lag, .. }) => {
                        // Rows of written videos (the first model's).
                        crate::telemetry::extracted(feats[0].raw().0 as u64);
                        let mut logits = vec![];
                        let mut f = feats.into_iter().zip(&members).map(|(f, (_, pca))| {
                            let (q, mean, l) = f.finish(pca);
                            if let Some(l) = l {
                                logits = l;
                            }
                            (q, mean)
                        });
                        let (rgb, mean_rgb) = f.next().expect("the first model's features");
                        let extra = f.collect();
                        Entry::Ok { idx: 0, rgb, mean_rgb, seconds, lag, logits, extra }
                    }
                    Err((kind, reason)) => Entry::Failed { idx: 0, kind, reason },
                };
                if matches!(entry, Entry::Failed { .. }) {
                    failed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                sink(k, entry)?;
                Ok(true)
            })
        })
    };
    let compute = json!({"device": format!("{device:?}"), "torch_threads": tch::get_num_threads(), "hwdec": cfg.hwdec.name(), "batch_size": batch});
    let ctx = ShardCtx {
        dir: &cfg.dir,
        plan: &plan,
        owner: &owner,
        fetch_dir: &fetch.dir,
        retry: &cfg.retry,
        compute: &compute,
        process: &process,
        out: &out,
    };
    let mut r = work_loop(&ctx, &cfg.assignment, cfg.lease_ttl)?;
    out.publish(&format!("events/{}", crate::telemetry::EventLog::file_name(&owner)))?;
    r["failed"] = json!(failed.load(std::sync::atomic::Ordering::SeqCst));
    r["worker"] = json!(owner);
    r["model"] = json!(model.sidecar.name);
    r["models"] = json!(plan.models().zip(&members).map(|((feature, f), (m, _))| json!({"feature": feature, "name": m.sidecar.name, "dims": f.pca_dims})).collect::<Vec<_>>());
    r["device"] = json!(format!("{device:?}"));
    r["batch_size"] = json!(batch);
    Ok(r)
}

/// A shard's done marker as a bucket holds it: the marker (pulled into `dir`) with the plan's
/// key, beside frame and video objects of the sizes it records (`sizes`: the bucket's).
pub fn done_in_bucket(dir: &std::path::Path, plan: &crate::pipeline::plan::PlanSettings, sizes: &BTreeMap<String, u64>, name: &str) -> Option<DoneMarker> {
    let stem = name.trim_end_matches(".tfrecord");
    let m: DoneMarker = serde_json::from_slice(&std::fs::read(dir.join("done").join(format!("{stem}.json"))).ok()?).ok()?;
    marker_describes(&m, plan, name, &|sub| sizes.get(&format!("{sub}/{name}")).copied()).then_some(m)
}

/// Whether a bucket's done marker describes the shard objects beside it: the plan's key for
/// the shard, and the sizes it recorded (`size("frame")`, `size("video")`).
pub(crate) fn marker_describes(m: &DoneMarker, plan: &crate::pipeline::plan::PlanSettings, name: &str, size: &dyn Fn(&str) -> Option<u64>) -> bool {
    let key = plan.key(name);
    !key.is_empty() && m.key == key && size("frame") == Some(m.frame_bytes) && size("video") == Some(m.video_bytes)
}
