//! The consumer half of every run: decoded videos (from decode workers or a frame cache) ->
//! in-order batcher + the one CNN thread -> PCA, quantization and shard writing -> summary.
//! No FFmpeg here.
//!
//! Determinism: videos are consumed strictly in job order and batches of exactly `batch_size`
//! frames are cut from the concatenated frame stream, so batch composition (and so every float)
//! does not depend on thread timing.
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use anyhow::{bail, Result};
use crossbeam_channel::{bounded, Receiver, Sender};
use serde_json::json;

use vidfeat_export::{encode_frame_level, encode_video_level, shard_name, AtomicShard, VideoRecord};
use vidfeat_features::{quantize, CovarianceAccumulator, Model, Pca};

use crate::pipeline::jobs::{Failure, FailureLog, Job, Prepared};

/// One decoded video: its frames (packed RGB24 at the model size, back to back), rows, seconds
/// of video, warnings, and how far its rows' frames lie from their times (mean, max seconds).
pub struct Video {
    pub frames: Vec<u8>,
    pub rows: u64,
    pub seconds: f64,
    pub warnings: Vec<String>,
    pub lag: (f64, f64),
}

/// One video from the producer, or its failure (kind, reason).
pub struct Decoded {
    pub idx: usize,
    pub result: Result<Video, (String, String)>,
}

/// A video in the batcher: (idx, features so far, expected rows, seconds, lag).
type Open = (usize, Vec<f32>, u64, f64, (f64, f64));

struct Extracted {
    idx: usize,
    /// (raw features, rows, seconds, lag (mean, max)), or (stage, kind, reason).
    result: Result<(Vec<f32>, u64, f64, (f64, f64)), (&'static str, String, String)>,
}

/// How decoded videos become shards.
#[derive(Debug, Clone)]
pub struct ConsumeConfig {
    pub out: PathBuf,
    /// Frames per CNN batch; None: 8 on the CPU (fastest on 2 cores, see docs/BENCHMARKS.md),
    /// 64 on CUDA.
    pub batch_size: Option<usize>,
    pub pca: Option<PathBuf>,
    pub pca_dims: Option<usize>,
    pub pca_sample_frames: usize,
    /// Whole-file compression of the shards (names stay `.tfrecord`).
    pub compression: vidfeat_export::Compression,
    /// Id key and audio placeholders.
    pub schema: vidfeat_export::Schema,
    /// Threads that reduce videos (PCA, quantization, means, records) in parallel; 0 = one
    /// per core. Records stay in job order.
    pub threads: usize,
}

/// How a run ended; the CLI maps it to an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    AllOk,
    SomeFailed,
    NoneOk,
}

#[derive(Debug)]
pub struct RunReport {
    pub outcome: Outcome,
    pub summary: serde_json::Value,
}

/// Counts videos the batcher has taken, so producers can stay a bounded distance ahead.
pub type Progress = (Mutex<usize>, Condvar);

/// Records that `n` videos have been taken, waking the feeder.
pub fn advance(progress: &Progress, n: usize) {
    let (lock, cv) = progress;
    *lock.lock().unwrap() = n;
    cv.notify_all();
}

/// When a consumer stops, for whatever reason, the feeder must not wait for it forever.
pub struct ReleaseOnDrop<'a>(pub &'a Progress);

impl Drop for ReleaseOnDrop<'_> {
    fn drop(&mut self) {
        advance(self.0, usize::MAX / 2);
    }
}

/// Loads the PCA given in the config, checking it fits the model.
pub fn load_pca(cfg: &ConsumeConfig, dim: usize) -> Result<Option<Pca>> {
    match &cfg.pca {
        Some(p) => {
            // All its components (up to 1,024) unless --pca-dims says otherwise.
            let pca = Pca::load(p, cfg.pca_dims)?;
            if pca.input_dim() != dim {
                bail!("PCA {} takes {}-d features, the model gives {dim}-d", p.display(), pca.input_dim());
            }
            Ok(Some(pca))
        }
        None => Ok(None),
    }
}

/// Runs the batcher + CNN thread and the writer (on this thread) over `rx`, then writes
/// summary.json. `extra` is merged into the summary (settings of the producer).
pub fn consume(
    cfg: &ConsumeConfig,
    model: Model,
    prepared: &Prepared,
    rx: Receiver<Decoded>,
    progress: &Progress,
    log: &mut FailureLog,
    started: Instant,
    extra: serde_json::Value,
) -> Result<RunReport> {
    let dim = model.sidecar.output_dim;
    let pca_dims = cfg.pca_dims.unwrap_or(1024).min(dim);
    let given_pca = load_pca(cfg, dim)?;
    let model_info = json!({
        "name": model.sidecar.name,
        "path": model.path.display().to_string(),
        "sha256": model.sha256,
        "sidecar": model.sidecar,
    });
    let device_name = format!("{:?}", model.device);
    let transfer = model.transfer.clone();
    crate::telemetry::planned(prepared.jobs.len() as u64);
    let (ext_tx, ext_rx) = bounded::<Extracted>(4);
    let batch = cfg.batch_size.unwrap_or(if model.device.is_cuda() { 64 } else { 8 }).max(1);
    let summary = std::thread::scope(|s| -> Result<serde_json::Value> {
        s.spawn(move || batch_and_extract(rx, ext_tx, &model, batch, progress));
        write_outputs(s, cfg, &prepared.jobs, &prepared.shard_counts, given_pca, dim, pca_dims, ext_rx, &mut |f| log.record(f))
    })?;
    log.commit()?;

    let ok = summary["videos_ok"].as_u64().unwrap_or(0);
    let failed_total = log.total();
    let outcome = if ok == 0 {
        Outcome::NoneOk
    } else if failed_total == 0 {
        Outcome::AllOk
    } else {
        Outcome::SomeFailed
    };
    let wall = started.elapsed().as_secs_f64();
    let rows = summary["rows"].as_u64().unwrap_or(0);
    let mut summary = summary;
    let more = json!({
        "list_rows": prepared.list_rows,
        "videos_failed": failed_total,
        "failures_by_kind": log.by_kind,
        "wall_time_s": (wall * 1000.0).round() / 1000.0,
        "throughput": {
            "videos_per_s": ok as f64 / wall.max(1e-9),
            "frames_per_s": rows as f64 / wall.max(1e-9),
        },
        "model": model_info,
        "device": device_name,
        "device_transfer": transfer,
        "vocabulary": prepared.vocab.as_ref().map(|v| json!({"source": v.source, "classes": v.classes.len(), "file": "vocabulary.csv"})),
        "outcome": match outcome { Outcome::AllOk => "all_ok", Outcome::SomeFailed => "some_failed", Outcome::NoneOk => "none_ok" },
    });
    for (k, v) in more.as_object().unwrap().iter().chain(extra.as_object().into_iter().flatten()) {
        summary[k] = v.clone();
    }
    summary["settings"]["batch_size"] = json!(batch);
    summary["settings"]["compression"] = json!(format!("{:?}", cfg.compression).to_uppercase());
    summary["settings"]["id_key"] = json!(if cfg.schema.legacy_2017 { "video_id" } else { "id" });
    summary["settings"]["audio"] = json!(if cfg.schema.audio_zero { "zero" } else { "none" });
    crate::outdir::write_atomic(&cfg.out.join("summary.json"), &serde_json::to_vec_pretty(&summary)?)?;
    Ok(RunReport { outcome, summary })
}

/// Consumes decoded videos in index order; runs the CNN on fixed-size batches cut from the
/// concatenated frame stream; emits each video's features once all its rows are done.
fn batch_and_extract(dec_rx: Receiver<Decoded>, ext_tx: Sender<Extracted>, model: &Model, batch: usize, progress: &Progress) {
    let _release = ReleaseOnDrop(progress);
    // A row is a frame, or a clip of frames for a clip model.
    let frame_bytes = model.sidecar.row_bytes();
    let dim = model.sidecar.output_dim;
    let mut reorder: BTreeMap<usize, Decoded> = BTreeMap::new();
    let mut next = 0usize;
    // Frames waiting for a batch, and the videos they belong to (idx, rows still missing).
    let mut buf: Vec<u8> = Vec::with_capacity(batch * frame_bytes);
    let mut buf_rows = 0usize;
    // Videos in flight: idx -> (features so far, expected rows, seconds, failure to report).
    let mut open: VecDeque<Open> = Default::default();
    let mut pending_out: VecDeque<Extracted> = Default::default();

    // One batch in flight: a full batch is submitted before the previous one is waited for, so
    // on CUDA its upload and the filling of the next overlap the network (features/staging.rs).
    let mut in_flight: Option<vidfeat_features::Pending> = None;
    // Hands a finished batch's rows to the open videos, in order.
    let distribute = |feats: Vec<f32>, open: &mut VecDeque<Open>| {
        let mut off = 0;
        for (_, f, rows, _, _) in open.iter_mut() {
            let need = *rows as usize * dim - f.len();
            let take = need.min(feats.len() - off);
            f.extend_from_slice(&feats[off..off + take]);
            off += take;
            if off == feats.len() {
                break;
            }
        }
    };
    let run_batch = |buf: &mut Vec<u8>, buf_rows: &mut usize, open: &mut VecDeque<Open>, in_flight: &mut Option<vidfeat_features::Pending>| -> Result<(), String> {
        if *buf_rows == 0 {
            return Ok(());
        }
        let submitted = model.submit(buf, *buf_rows);
        crate::telemetry::extracted(*buf_rows as u64);
        buf.clear();
        *buf_rows = 0;
        let previous = in_flight.replace(submitted.map_err(|e| e.to_string())?);
        if let Some(p) = previous {
            distribute(model.finish(p).map_err(|e| e.to_string())?, open);
        }
        Ok(())
    };
    let drain = |open: &mut VecDeque<Open>, in_flight: &mut Option<vidfeat_features::Pending>| -> Result<(), String> {
        if let Some(p) = in_flight.take() {
            distribute(model.finish(p).map_err(|e| e.to_string())?, open);
        }
        Ok(())
    };

    let flush_done = |open: &mut VecDeque<Open>, pending_out: &mut VecDeque<Extracted>| {
        while let Some((_, f, rows, _, _)) = open.front() {
            if f.len() < *rows as usize * dim {
                break;
            }
            let (idx, f, rows, secs, lag) = open.pop_front().unwrap();
            pending_out.push_back(Extracted { idx, result: Ok((f, rows, secs, lag)) });
        }
    };

    let send_ready = |pending_out: &mut VecDeque<Extracted>, open: &VecDeque<Open>| -> bool {
        // Failures wait behind earlier open videos, to keep output order.
        while let Some(e) = pending_out.front() {
            if open.front().is_some_and(|o| o.0 < e.idx) {
                break;
            }
            let e = pending_out.pop_front().unwrap();
            if ext_tx.send(e).is_err() {
                return false;
            }
        }
        true
    };

    let mut disconnected = false;
    loop {
        // Take the next video in order, receiving until it has arrived.
        let d = loop {
            if let Some(d) = reorder.remove(&next) {
                break Some(d);
            }
            if disconnected {
                break None;
            }
            match dec_rx.recv() {
                Ok(d) => {
                    reorder.insert(d.idx, d);
                }
                Err(_) => disconnected = true,
            }
        };
        let Some(d) = d else { break };
        next += 1;
        advance(progress, next);
        match d.result {
            Err((kind, reason)) => {
                pending_out.push_back(Extracted { idx: d.idx, result: Err(("decode", kind, reason)) });
            }
            Ok(Video { frames, rows, seconds: secs, warnings, lag }) => {
                for wmsg in warnings {
                    tracing::warn!("video #{}: {wmsg}", d.idx);
                }
                open.push_back((d.idx, Vec::with_capacity(rows as usize * dim), rows, secs, lag));
                let mut off = 0;
                while off < frames.len() {
                    let take = ((batch - buf_rows) * frame_bytes).min(frames.len() - off);
                    buf.extend_from_slice(&frames[off..off + take]);
                    buf_rows += take / frame_bytes;
                    off += take;
                    if buf_rows == batch {
                        if let Err(e) = run_batch(&mut buf, &mut buf_rows, &mut open, &mut in_flight) {
                            in_flight = None;
                            // A model failure fails every video in the batch.
                            for (idx, _, _, _, _) in open.drain(..) {
                                pending_out.push_back(Extracted { idx, result: Err(("extract", "model_error".into(), e.clone())) });
                            }
                            let mut v: Vec<_> = pending_out.drain(..).collect();
                            v.sort_by_key(|e| e.idx);
                            pending_out.extend(v);
                            buf.clear();
                            buf_rows = 0;
                            break;
                        }
                    }
                }
            }
        }
        flush_done(&mut open, &mut pending_out);
        if !send_ready(&mut pending_out, &open) {
            return;
        }
    }
    if let Err(e) = run_batch(&mut buf, &mut buf_rows, &mut open, &mut in_flight).and_then(|_| drain(&mut open, &mut in_flight)) {
        for (idx, _, _, _, _) in open.drain(..) {
            pending_out.push_back(Extracted { idx, result: Err(("extract", "model_error".into(), e.clone())) });
        }
    }
    flush_done(&mut open, &mut pending_out);
    let mut v: Vec<_> = pending_out.drain(..).collect();
    v.sort_by_key(|e| e.idx);
    for e in v {
        if ext_tx.send(e).is_err() {
            return;
        }
    }
}

struct ShardPair {
    split: String,
    shard: u32,
    frame: AtomicShard,
    video: AtomicShard,
}

#[allow(clippy::too_many_arguments)]
/// A video to reduce: (submission number, job index, raw features, rows).
type ReduceJob = (u64, usize, Vec<f32>, u64);
/// A reduced video: (submission number, job index, frame- and video-level records, rows).
type Reduced = (u64, usize, Vec<u8>, Vec<u8>, usize);

/// Reduces videos on a pool of threads (each with its own handle to the PCA's tensors) and
/// hands them back in submission order, at most `2 x threads` in flight.
struct ReducePool {
    tx: Option<Sender<ReduceJob>>,
    rx: Receiver<Reduced>,
    submitted: u64,
    delivered: u64,
    ready: BTreeMap<u64, Reduced>,
    limit: u64,
}

impl ReducePool {
    fn start<'s, 'e>(s: &'s std::thread::Scope<'s, 'e>, threads: usize, pca: &Pca, jobs: &'e [Job], schema: vidfeat_export::Schema) -> ReducePool
    where
        'e: 's,
    {
        let threads = threads.max(1);
        let (tx, work_rx) = bounded::<ReduceJob>(2 * threads);
        let (done_tx, rx) = bounded::<Reduced>(2 * threads);
        for _ in 0..threads {
            let (work_rx, done_tx, pca) = (work_rx.clone(), done_tx.clone(), pca.share());
            s.spawn(move || {
                for (seq, idx, raw, rows) in work_rx {
                    let job = &jobs[idx];
                    let (rgb, mean_rgb) = reduce_video(&pca, &raw, rows as usize);
                    job.warn_segments_beyond(rgb.len());
                    let n = rgb.len();
                    let rec = VideoRecord { id: job.task.id.clone(), labels: job.labels.clone(), rgb, mean_rgb, logits: vec![], extra: vec![], segments: job.segments().to_vec() };
                    if done_tx.send((seq, idx, encode_frame_level(&rec, &schema), encode_video_level(&rec, &schema), n)).is_err() {
                        return;
                    }
                }
            });
        }
        ReducePool { tx: Some(tx), rx, submitted: 0, delivered: 0, ready: BTreeMap::new(), limit: 2 * threads as u64 }
    }

    /// Queues a video; `write` gets every video reduced meanwhile, in order.
    fn submit(&mut self, idx: usize, raw: Vec<f32>, rows: u64, write: &mut dyn FnMut(Reduced) -> Result<()>) -> Result<()> {
        while self.submitted - self.delivered >= self.limit {
            self.take_one(write)?;
        }
        self.tx.as_ref().unwrap().send((self.submitted, idx, raw, rows)).map_err(|_| anyhow::anyhow!("the reducers stopped"))?;
        self.submitted += 1;
        Ok(())
    }

    /// Waits for the next video in order and writes it (and any after it already there).
    fn take_one(&mut self, write: &mut dyn FnMut(Reduced) -> Result<()>) -> Result<()> {
        while !self.ready.contains_key(&self.delivered) {
            let r = self.rx.recv().map_err(|_| anyhow::anyhow!("the reducers stopped"))?;
            self.ready.insert(r.0, r);
        }
        while let Some(r) = self.ready.remove(&self.delivered) {
            self.delivered += 1;
            write(r)?;
        }
        Ok(())
    }

    /// Writes everything submitted and stops the threads.
    fn finish(&mut self, write: &mut dyn FnMut(Reduced) -> Result<()>) -> Result<()> {
        while self.delivered < self.submitted {
            self.take_one(write)?;
        }
        self.tx = None;
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn write_outputs<'s, 'e>(
    s: &'s std::thread::Scope<'s, 'e>,
    cfg: &ConsumeConfig,
    jobs: &'e [Job],
    shard_counts: &BTreeMap<String, u32>,
    given_pca: Option<Pca>,
    dim: usize,
    pca_dims: usize,
    ext_rx: Receiver<Extracted>,
    record_failure: &mut dyn FnMut(Failure) -> Result<()>,
) -> Result<serde_json::Value> {
    let mut pca = given_pca;
    let pca_source = cfg.pca.as_ref().map(|p| p.display().to_string());
    let mut acc = if pca.is_none() { Some(CovarianceAccumulator::new(dim)) } else { None };
    // Videos held while the PCA sample fills: (idx, raw features, rows, seconds).
    let mut held: Vec<(usize, Vec<f32>, u64, f64)> = vec![];
    let mut current: Option<ShardPair> = None;
    // Next (split, shard) to create, to write empty shards in between.
    let mut next_shard: BTreeMap<String, u32> = shard_counts.keys().map(|k| (k.clone(), 0)).collect();
    let mut shards_written: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    let mut ok = 0u64;
    let mut rows_total = 0u64;
    let mut seconds_total = 0.0f64;
    let (mut lag_sum, mut lag_max) = (0.0f64, 0.0f64);
    let mut video_count_in_shard = 0u64;

    let open_pair = |split: &str, shard: u32| -> Result<ShardPair> {
        let n = shard_counts[split];
        let paths = crate::pipeline::dataset::shard_paths(&cfg.out, &shard_name(split, shard, n))?;
        Ok(ShardPair {
            split: split.to_string(),
            shard,
            frame: AtomicShard::create_with(&paths.frame, cfg.compression)?,
            video: AtomicShard::create_with(&paths.video, cfg.compression)?,
        })
    };
    let commit = |p: ShardPair, count: u64, written: &mut BTreeMap<String, Vec<serde_json::Value>>| -> Result<()> {
        let name = shard_name(&p.split, p.shard, shard_counts[&p.split]);
        p.frame.commit()?;
        p.video.commit()?;
        written.entry(p.split.clone()).or_default().push(json!({"shard": name, "videos": count}));
        Ok(())
    };

    // Moves the writer to (split, shard), committing everything before it (empty shards too).
    let mut advance_to = |target: Option<(&str, u32)>,
                          current: &mut Option<ShardPair>,
                          count: &mut u64,
                          written: &mut BTreeMap<String, Vec<serde_json::Value>>|
     -> Result<()> {
        if let (Some(c), Some((s, n))) = (current.as_ref(), target) {
            if c.split == s && c.shard == n {
                return Ok(());
            }
        }
        if let Some(c) = current.take() {
            commit(c, *count, written)?;
            *count = 0;
        }
        // Empty shards before the target (or all remaining when target is None).
        for (split, nxt) in next_shard.iter_mut() {
            let upto = match target {
                Some((s, n)) if s == split => n,
                Some((s, _)) if split.as_str() > s => continue,
                _ => shard_counts[split],
            };
            while *nxt < upto {
                commit(open_pair(split, *nxt)?, 0, written)?;
                *nxt += 1;
            }
        }
        if let Some((s, n)) = target {
            *current = Some(open_pair(s, n)?);
            *next_shard.get_mut(s).unwrap() = n + 1;
        }
        Ok(())
    };

    // Writes a reduced video, in job order, moving to its shard first.
    let mut write_reduced = |(_, idx, frame_rec, video_rec, _): Reduced,
                             current: &mut Option<ShardPair>,
                             count: &mut u64,
                             written: &mut BTreeMap<String, Vec<serde_json::Value>>|
     -> Result<()> {
        let job = &jobs[idx];
        advance_to(Some((&job.task.split, job.shard)), current, count, written)?;
        let c = current.as_mut().unwrap();
        c.frame.write_record(&frame_rec)?;
        c.video.write_record(&video_rec)?;
        *count += 1;
        Ok(())
    };
    let threads = if cfg.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { cfg.threads };
    let mut pool = pca.as_ref().map(|p| ReducePool::start(s, threads, p, jobs, cfg.schema));

    let mut pca_info = json!(null);
    let mut events = crate::telemetry::EventLog::open(&cfg.out, &crate::pipeline::worker::worker_id());
    for e in ext_rx {
        let job = &jobs[e.idx];
        crate::telemetry::written(e.result.is_ok());
        let shard = shard_name(&job.task.split, job.shard, shard_counts[&job.task.split]);
        events.video(&job.task.id, &shard, match &e.result {
            Ok((_, rows, secs, lag)) => Ok((*rows, *secs, *lag)),
            Err((_, kind, _)) => Err(kind.as_str()),
        });
        match e.result {
            Err((stage, kind, reason)) => record_failure(Failure {
                id: Some(job.task.id.clone()),
                source: Some(job.task.source.to_string()),
                stage: stage.to_string(),
                kind,
                reason,
                file: None,
                line: None,
            })?,
            Ok((raw, rows, secs, lag)) => {
                ok += 1;
                rows_total += rows;
                seconds_total += secs;
                lag_sum += lag.0 * rows as f64;
                lag_max = lag_max.max(lag.1);
                if let Some(a) = acc.as_mut() {
                    if a.rows() < cfg.pca_sample_frames {
                        let take = (cfg.pca_sample_frames - a.rows()).min(rows as usize);
                        a.add(&raw[..take * dim], take);
                    }
                    held.push((e.idx, raw, rows, secs));
                    if a.rows() >= cfg.pca_sample_frames {
                        let fitted = fit_pca(a, pca_dims, &cfg.out)?;
                        pca_info = fitted.1;
                        let p = pool.insert(ReducePool::start(s, threads, &fitted.0, jobs, cfg.schema));
                        pca = Some(fitted.0);
                        acc = None;
                        for (idx, raw, rows, _) in held.drain(..) {
                            p.submit(idx, raw, rows, &mut |r| write_reduced(r, &mut current, &mut video_count_in_shard, &mut shards_written))?;
                        }
                    }
                    continue;
                }
                pool.as_mut().unwrap().submit(e.idx, raw, rows, &mut |r| write_reduced(r, &mut current, &mut video_count_in_shard, &mut shards_written))?;
            }
        }
    }
    if let Some(a) = acc.as_ref() {
        if a.rows() >= 2 {
            let fitted = fit_pca(a, pca_dims, &cfg.out)?;
            pca_info = fitted.1;
            let p = pool.insert(ReducePool::start(s, threads, &fitted.0, jobs, cfg.schema));
            pca = Some(fitted.0);
            for (idx, raw, rows, _) in held.drain(..) {
                p.submit(idx, raw, rows, &mut |r| write_reduced(r, &mut current, &mut video_count_in_shard, &mut shards_written))?;
            }
        } else if !held.is_empty() {
            bail!("cannot fit a PCA on {}: give --pca or more video", crate::telemetry::count(a.rows() as u64, "frame"));
        }
    }
    if let Some(p) = pool.as_mut() {
        p.finish(&mut |r| write_reduced(r, &mut current, &mut video_count_in_shard, &mut shards_written))?;
    }
    drop(pool);
    advance_to(None, &mut current, &mut video_count_in_shard, &mut shards_written)?;
    if let (Some(p), Some(src)) = (pca.as_ref(), pca_source) {
        pca_info = json!({
            "source": src,
            "sha256": p.content_sha256(),
            "dims": p.dims,
            "fitted": false,
            "fitted_on_frames": p.frames,
            "supported_components": p.supported,
        });
    }
    Ok(json!({
        "videos_ok": ok,
        "rows": rows_total,
        "seconds_of_video": (seconds_total * 1000.0).round() / 1000.0,
        "row_lag": lag_json(lag_sum, rows_total, lag_max),
        "pca": pca_info,
        "shards": shards_written,
    }))
}

/// How far rows' frames lie from the rows' times over a set of videos: mean and maximum seconds.
pub fn lag_json(sum: f64, rows: u64, max: f64) -> serde_json::Value {
    let r = |x: f64| (x * 1e4).round() / 1e4;
    json!({"mean_s": r(sum / rows.max(1) as f64), "max_s": r(max)})
}

/// One video's raw CNN features -> PCA -> quantized rows, and the mean of the unquantized
/// reduced rows (what YouTube-8M's `mean_rgb` is).
pub fn reduce_video(pca: &Pca, raw: &[f32], rows: usize) -> (Vec<Vec<u8>>, Vec<f32>) {
    let reduced = pca.apply(raw, rows);
    let d = pca.dims;
    let mut mean = vec![0f64; d];
    for r in reduced.chunks_exact(d) {
        for (m, v) in mean.iter_mut().zip(r) {
            *m += *v as f64;
        }
    }
    (reduced.chunks_exact(d).map(quantize).collect(), mean.iter().map(|m| (m / rows.max(1) as f64) as f32).collect())
}

fn fit_pca(acc: &CovarianceAccumulator, dims: usize, out: &Path) -> Result<(Pca, serde_json::Value)> {
    let pca = acc.fit(dims).map_err(anyhow::Error::msg)?;
    let path = out.join("pca.npz");
    pca.save(&path)?;
    let mut notes = vec![];
    if pca.supported < pca.dims {
        notes.push(format!(
            "fitted on {} frames, which support {} of the {} dims kept: the other {} are written as zero; a real dataset's PCA needs at least dims + 1 frames, better 10 x dims: give --pca with one fitted on more video",
            acc.rows(),
            pca.supported,
            pca.dims,
            pca.dims - pca.supported
        ));
        tracing::warn!("PCA {}", notes[0]);
    }
    let info = json!({
        "source": "pca.npz",
        "sha256": pca.content_sha256(),
        "dims": pca.dims,
        "fitted": true,
        "fitted_on_frames": acc.rows(),
        "supported_components": pca.supported,
        "notes": notes,
    });
    Ok((pca, info))
}
