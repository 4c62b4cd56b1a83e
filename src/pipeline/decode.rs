//! The FFmpeg side of a run: decode workers feeding the consumer (`vidfeat run`), or writing a
//! frame cache for another machine to extract (`vidfeat decode --cache`).
//!
//! ```text
//! feeder (at most 2W+2 ahead of the batcher) -> W decode workers -bounded-> consumer
//! ```
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossbeam_channel::{bounded, Receiver, Sender};
use serde_json::json;

use vidfeat_decode::{decode_file, DecodeOptions, Rational, Resize};
use vidfeat_features::Sidecar;
use vidfeat_ingest::fetch::{fetch_id, fetch_url, FetchConfig};
use vidfeat_ingest::Source;

use crate::pipeline::consume::{advance, Decoded, Progress, ReleaseOnDrop, Video};
use crate::pipeline::jobs::{prepare, FailureLog, Job, JobSpec};

/// How videos are decoded and sampled.
#[derive(Debug, Clone)]
pub struct DecodeSettings {
    pub fps: Rational,
    /// Which frames rows may use (`exact`, or `keyframes`: key frames only, cheaper).
    pub sampling: vidfeat_decode::Sampling,
    /// Where to decode: the CPU, or NVDEC (not frozen in a plan: the rows are the same).
    pub hwdec: vidfeat_decode::HwDecode,
    /// 0 = no cap.
    pub max_frames: u64,
    /// None: the model sidecar's mode.
    pub resize: Option<Resize>,
    pub workers: usize,
    pub threads: usize,
    pub timeout: Duration,
    pub max_pixels: u64,
    pub max_input_bytes: u64,
    pub max_duration: f64,
    pub max_decoder_bytes: u64,
    /// Downloads of http(s) and id-only sources; an empty `dir` means `downloads/` in the
    /// output (or cache) folder.
    pub fetch: FetchConfig,
}

/// A clip model's rows (frames, rate), checked against the row rate (clips must not overlap).
pub(crate) fn clip_of(sidecar: &Sidecar, fps: Rational) -> Result<Option<(u32, Rational)>> {
    let Some(c) = sidecar.clip else { return Ok(None) };
    let rate = Rational::parse(&c.fps.to_string()).with_context(|| format!("model sidecar: clip fps {}", c.fps))?;
    vidfeat_decode::check_clip(fps, c.frames, rate).map_err(|e| anyhow::anyhow!("{} takes clips: {e}", sidecar.name))?;
    Ok(Some((c.frames, rate)))
}

impl DecodeSettings {
    pub(crate) fn fetch_in(&self, folder: &std::path::Path) -> FetchConfig {
        let mut f = self.fetch.clone();
        if f.dir.as_os_str().is_empty() {
            f.dir = folder.join("downloads");
        }
        f
    }

    pub(crate) fn options(&self, sidecar: &Sidecar) -> Result<DecodeOptions> {
        let resize = match self.resize {
            Some(r) => r,
            None => sidecar.resize.parse().map_err(|e| anyhow::anyhow!("model sidecar: {e}"))?,
        };
        Ok(DecodeOptions {
            fps: self.fps,
            sampling: self.sampling,
            hwdec: self.hwdec,
            max_frames: (self.max_frames > 0).then_some(self.max_frames),
            size: Some((sidecar.input_size[1], sidecar.input_size[0])),
            resize,
            threads: self.threads,
            timeout: Some(self.timeout),
            max_pixels: self.max_pixels,
            max_input_bytes: self.max_input_bytes,
            max_duration: self.max_duration,
            max_decoder_bytes: self.max_decoder_bytes,
            clip: clip_of(sidecar, self.fps)?,
            ..Default::default()
        })
    }

    pub(crate) fn describe(&self, o: &DecodeOptions) -> serde_json::Value {
        json!({
            "fps": self.fps.to_f64(),
            "sampling": self.sampling.name(),
            "hwdec": self.hwdec.name(),
            "max_frames": self.max_frames,
            "resize": format!("{:?}", o.resize),
            "size": o.size,
            "decode_workers": self.workers.max(1),
            "decode_threads": self.threads,
        })
    }
}

/// One video's rows as they are decoded ([`spawn_decoders`]): groups of whole rows, then how
/// the video ended. A consumer holds a video's rows only while it works on them.
pub enum Piece {
    /// Rows, packed RGB24 back to back (a clip row's frames together), and how many.
    Rows(Vec<u8>, u64),
    /// The end: rows, seconds, warnings and lag as a [`Video`] has them (its `frames` empty),
    /// or the failure (kind, reason) — possibly after some rows were sent.
    End(Result<Video, (String, String)>),
}

/// A video being decoded: its index and its pieces.
pub struct Streamed {
    pub idx: usize,
    pub pieces: Receiver<Piece>,
}

/// Starts the feeder and W decode workers; returns each video's stream of pieces (videos in
/// any order). A worker sends at most two pieces of `piece_rows` rows ahead of the consumer
/// (the time it waits is not decode time, see [`DecodeOptions::timeout`]), so memory does not
/// grow with a video's length.
pub fn spawn_decoders<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    jobs: &'s [Job],
    opts: &'s DecodeOptions,
    workers: usize,
    progress: &'s Progress,
    fetch: &'s FetchConfig,
    piece_rows: usize,
) -> Receiver<Streamed> {
    let workers = workers.max(1);
    let window = 2 * workers + 2;
    let (task_tx, task_rx) = bounded::<usize>(workers);
    let (dec_tx, dec_rx) = bounded::<Streamed>(workers + 1);
    let n = jobs.len();
    s.spawn(move || {
        for i in 0..n {
            let (lock, cv) = progress;
            let mut done = lock.lock().unwrap();
            while i >= *done + window {
                done = cv.wait(done).unwrap();
            }
            drop(done);
            if task_tx.send(i).is_err() {
                return;
            }
        }
    });
    for _ in 0..workers {
        let (task_rx, dec_tx) = (task_rx.clone(), dec_tx.clone());
        s.spawn(move || decode_worker(task_rx, dec_tx, jobs, opts, fetch, piece_rows.max(1)));
    }
    dec_rx
}

/// Hands each video's pieces to `f` in job order, advancing `progress` so the feeder releases
/// more work. `f` returns false to stop early; the feeder is released however this ends.
pub(crate) fn in_order_streams(rx: Receiver<Streamed>, progress: &Progress, mut f: impl FnMut(usize, Receiver<Piece>) -> Result<bool>) -> Result<()> {
    let _release = ReleaseOnDrop(progress);
    let mut pending = std::collections::BTreeMap::new();
    let mut next = 0usize;
    for d in rx {
        pending.insert(d.idx, d.pieces);
        while let Some(pieces) = pending.remove(&next) {
            next += 1;
            advance(progress, next);
            if !f(next - 1, pieces)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// [`in_order_streams`] with each video whole (its rows gathered), for consumers that keep
/// whole videos (the frame cache).
pub(crate) fn in_order(rx: Receiver<Streamed>, progress: &Progress, mut f: impl FnMut(usize, Decoded) -> Result<bool>) -> Result<()> {
    in_order_streams(rx, progress, |idx, pieces| {
        let mut frames = vec![];
        let mut result = Err(("decode_error".to_string(), "the decoder stopped without a result".to_string()));
        for p in pieces {
            match p {
                Piece::Rows(r, _) => frames.extend_from_slice(&r),
                Piece::End(r) => result = r.map(|v| Video { frames: std::mem::take(&mut frames), ..v }),
            }
        }
        f(idx, Decoded { idx, result })
    })
}

/// A video's decode warnings, logged: NVDEC's fallback once per process (it would repeat for
/// every video), the others each time.
fn log_warnings(id: &str, warnings: &[String]) {
    static NVDEC_SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    for w in warnings {
        if w.contains("NVDEC") {
            if !NVDEC_SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!("{w} (said once; every video is decoded on the CPU)");
            }
        } else {
            tracing::warn!("{id}: {w}");
        }
    }
}

fn decode_worker(task_rx: Receiver<usize>, dec_tx: Sender<Streamed>, jobs: &[Job], opts: &DecodeOptions, fetch: &FetchConfig, piece_rows: usize) {
    for idx in task_rx {
        let (tx, pieces) = bounded::<Piece>(2);
        if dec_tx.send(Streamed { idx, pieces }).is_err() {
            return;
        }
        let job = &jobs[idx];
        let mut o = opts.clone();
        o.window = job.task.window;
        // Remote sources are downloaded into the content cache first; FFmpeg opens files only.
        let local = match &job.task.source {
            Source::Local(p) => Ok(p.clone()),
            Source::Url(u) => fetch_url(u, fetch).map(|f| f.path),
            Source::Id(i) => fetch_id(i, fetch).map(|f| f.path),
        };
        let result = match local.map_err(|e| (e.kind.to_string(), e.message)) {
            Err(e) => Err(e),
            Ok(path) => {
                // Rows go out in pieces as they come; a consumer that stopped listening (its
                // network failed on this video) is not waited for.
                let (mut buf, mut n) = (vec![], 0u64);
                let send = |buf: &mut Vec<u8>, n: &mut u64| {
                    if *n > 0 {
                        let _ = tx.send(Piece::Rows(std::mem::take(buf), std::mem::take(n)));
                    }
                };
                let on_row = |f: vidfeat_decode::SampledFrame| {
                    buf.extend_from_slice(&f.rgb);
                    n += 1;
                    if n as usize == piece_rows {
                        send(&mut buf, &mut n);
                    }
                };
                // A panic inside one video is that video's failure, not the run's.
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode_file(&path, &o, on_row)));
                send(&mut buf, &mut n);
                match r {
                    Ok(Ok(rep)) => {
                        log_warnings(&job.task.id, &rep.warnings);
                        Ok(Video { frames: vec![], rows: rep.rows, seconds: rep.duration, warnings: rep.warnings, lag: (rep.lag_mean, rep.lag_max) })
                    }
                    Ok(Err(e)) => Err((e.kind().to_string(), e.to_string())),
                    Err(_) => Err(("panic".to_string(), "the decoder panicked on this video".to_string())),
                }
            }
        };
        crate::telemetry::decoded(result.as_ref().map_or(0, |r| r.rows));
        let _ = tx.send(Piece::End(result));
    }
}

/// `vidfeat decode --cache DIR`: decode and sample on this machine, store the frames for
/// `vidfeat extract` elsewhere. Frames are sized for the model whose sidecar is given.
#[derive(Debug, Clone)]
pub struct DecodeToCacheConfig {
    pub jobs: JobSpec,
    pub cache: PathBuf,
    pub sidecar: PathBuf,
    pub decode: DecodeSettings,
    pub zstd_level: i32,
}

pub fn decode_to_cache(cfg: &DecodeToCacheConfig) -> Result<serde_json::Value> {
    let started = Instant::now();
    std::fs::create_dir_all(&cfg.cache).with_context(|| format!("creating {}", cfg.cache.display()))?;
    let mut log = FailureLog::create(&cfg.cache.join("failures.jsonl"))?;
    let prepared = prepare(&cfg.jobs, &mut log)?;
    if let Some(v) = &prepared.vocab {
        crate::outdir::write_atomic(&cfg.cache.join("vocabulary.csv"), &v.csv())?;
    }
    let sidecar = Sidecar::load(&cfg.sidecar)?;
    let opts = cfg.decode.options(&sidecar)?;
    let progress: Progress = (Mutex::new(0), Condvar::new());
    crate::telemetry::planned(prepared.jobs.len() as u64);
    let mut writer = crate::pipeline::cache::CacheWriter::create(&cfg.cache, &prepared, &sidecar, cfg.decode.describe(&opts), cfg.zstd_level)?;
    let fetch = cfg.decode.fetch_in(&cfg.cache);
    std::thread::scope(|s| -> Result<()> {
        let rx = spawn_decoders(s, &prepared.jobs, &opts, cfg.decode.workers, &progress, &fetch, 64);
        // In job order, so the cache is deterministic.
        in_order(rx, &progress, |idx, d| {
            crate::telemetry::written(d.result.is_ok());
            writer.add(&prepared.jobs[idx], d, &mut log)?;
            Ok(true)
        })
    })?;
    let stats = (writer.videos_ok, writer.rows);
    log.commit()?;
    writer.finish()?;
    let summary = json!({
        "videos_ok": stats.0,
        "videos_failed": log.total(),
        "failures_by_kind": log.by_kind,
        "rows": stats.1,
        "wall_time_s": started.elapsed().as_secs_f64(),
        "cache": cfg.cache.display().to_string(),
    });
    Ok(summary)
}
