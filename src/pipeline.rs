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
use vidfeat_features::{Model, Sidecar};
use vidfeat_ingest::fetch::{fetch_id, fetch_url, FetchConfig};
use vidfeat_ingest::Source;

use crate::consume::{advance, Decoded, Progress, ReleaseOnDrop, RunReport};
use crate::jobs::{prepare, FailureLog, Job, JobSpec};

/// What `vidfeat plan` freezes (and `vidfeat run` too, into its output folder).
#[derive(Debug, Clone)]
pub struct FreezeConfig {
    pub model: PathBuf,
    pub sidecar: Option<PathBuf>,
    /// Device for fitting the PCA.
    pub device: String,
    pub decode: DecodeSettings,
    /// The flags as given (stored as text in plan.json).
    pub fps: String,
    pub resize: Option<String>,
    pub pca: Option<PathBuf>,
    pub pca_dims: Option<usize>,
    pub pca_sample_frames: usize,
    pub batch_size: Option<usize>,
    pub compression: String,
    pub legacy_2017: bool,
    pub audio_zero: bool,
    pub fetch_cmd: Option<String>,
}

/// Freezes a plan (after `jobs::plan` wrote plan.jsonl into `out`): model and sidecar hashed,
/// the PCA given or fitted now on the plan's first frames (`out/pca.npz`), settings, shards.
/// `Ok(Err(failures))` when no frame could be decoded to fit a PCA.
pub fn freeze(spec: &JobSpec, out: &std::path::Path, f: &FreezeConfig, plan_summary: &serde_json::Value) -> Result<std::result::Result<crate::work::PlanSettings, Vec<crate::jobs::Failure>>> {
    let abs = |p: &std::path::Path| std::fs::canonicalize(p).with_context(|| format!("{}", p.display()));
    let model_path = abs(&f.model)?;
    let sidecar = abs(&f.sidecar.clone().unwrap_or_else(|| model_path.with_extension("json")))?;
    let side = Sidecar::load(&sidecar)?;
    let dims = f.pca_dims.unwrap_or(1024).min(side.output_dim);
    let pca_path = match &f.pca {
        Some(p) => abs(p)?,
        None => {
            let p = out.join("pca.npz");
            tracing::info!("fitting a PCA on up to {} frames into {}", f.pca_sample_frames, p.display());
            let r = pca_fit(&PcaFitConfig {
                jobs: spec.clone(),
                out: p.clone(),
                dims,
                max_frames: f.pca_sample_frames.max(2),
                model: model_path.clone(),
                sidecar: Some(sidecar.clone()),
                device: f.device.clone(),
                decode: f.decode.clone(),
                batch_size: f.batch_size.unwrap_or(8),
                log_list_problems: false,
            })?;
            if r["frames"].as_u64().unwrap_or(0) < 2 {
                return Ok(Err(serde_json::from_value(r["failures"].clone())?));
            }
            if (r["frames"].as_u64().unwrap_or(0) as usize) < dims {
                tracing::warn!(
                    "PCA fitted on {} frames, fewer than the {dims} dims kept: the trailing components are noise; give --pca with a PCA fitted on more video for a real dataset",
                    r["frames"]
                );
            }
            abs(&p)?
        }
    };
    let pca = vidfeat_features::Pca::load(&pca_path, Some(dims))?;
    let plan = crate::work::PlanSettings {
        version: crate::work::PLAN_VERSION,
        model: model_path.display().to_string(),
        model_sha256: vidfeat_features::file_sha256(&model_path)?,
        sidecar: sidecar.display().to_string(),
        sidecar_sha256: vidfeat_features::file_sha256(&sidecar)?,
        pca: pca_path.display().to_string(),
        pca_sha256: pca.content_sha256(),
        pca_dims: pca.dims,
        fps: f.fps.clone(),
        max_frames: f.decode.max_frames,
        resize: f.resize.clone(),
        timeout_s: f.decode.timeout.as_secs(),
        max_pixels: f.decode.max_pixels,
        max_input_bytes: f.decode.max_input_bytes,
        max_duration: f.decode.max_duration,
        max_decoder_bytes: f.decode.max_decoder_bytes,
        compression: f.compression.parse::<vidfeat_export::Compression>().map_err(anyhow::Error::msg).map(|c| format!("{c:?}").to_lowercase())?,
        legacy_2017: f.legacy_2017,
        audio_zero: f.audio_zero,
        batch_size: f.batch_size,
        fetch_cmd: f.fetch_cmd.clone(),
        shards: serde_json::from_value(plan_summary["shards"].clone())?,
        tasks: plan_summary["resolved"].as_u64().unwrap_or(0) as usize,
    };
    plan.write(out)?;
    Ok(Ok(plan))
}

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
        if let Ok((old, _)) = crate::work::PlanSettings::load(out) {
            let p = out.join("pca.npz");
            if std::path::Path::new(&old.pca) == std::fs::canonicalize(&p).unwrap_or_default().as_path()
                && vidfeat_features::Pca::load(&p, Some(old.pca_dims)).map(|x| x.content_sha256()).ok().as_deref() == Some(old.pca_sha256.as_str())
            {
                fz.pca = Some(p);
                fz.pca_dims = Some(old.pca_dims);
            }
        }
    }
    let plan_summary = crate::jobs::plan(&cfg.jobs, out)?;
    let list_rows = plan_summary["rows"].as_u64().unwrap_or(0);
    let mut failures: Vec<crate::jobs::Failure> = std::fs::read_to_string(out.join("failures.jsonl"))
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
                failures.extend(crate::work::shard_failures(out, &plan, &crate::file_sha256_bytes(&plan.to_json()?)));
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
        crate::Outcome::NoneOk
    } else if failures.is_empty() {
        crate::Outcome::AllOk
    } else {
        crate::Outcome::SomeFailed
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
        "outcome": match outcome { crate::Outcome::AllOk => "all_ok", crate::Outcome::SomeFailed => "some_failed", crate::Outcome::NoneOk => "none_ok" },
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

/// How videos are decoded and sampled.
#[derive(Debug, Clone)]
pub struct DecodeSettings {
    pub fps: Rational,
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

impl DecodeSettings {
    fn fetch_in(&self, folder: &std::path::Path) -> FetchConfig {
        let mut f = self.fetch.clone();
        if f.dir.as_os_str().is_empty() {
            f.dir = folder.join("downloads");
        }
        f
    }

    fn options(&self, sidecar: &Sidecar) -> Result<DecodeOptions> {
        let resize = match self.resize {
            Some(r) => r,
            None => sidecar.resize.parse().map_err(|e| anyhow::anyhow!("model sidecar: {e}"))?,
        };
        Ok(DecodeOptions {
            fps: self.fps,
            max_frames: (self.max_frames > 0).then_some(self.max_frames),
            size: Some((sidecar.input_size[1], sidecar.input_size[0])),
            resize,
            threads: self.threads,
            timeout: Some(self.timeout),
            max_pixels: self.max_pixels,
            max_input_bytes: self.max_input_bytes,
            max_duration: self.max_duration,
            max_decoder_bytes: self.max_decoder_bytes,
            ..Default::default()
        })
    }

    fn describe(&self, o: &DecodeOptions) -> serde_json::Value {
        json!({
            "fps": self.fps.to_f64(),
            "max_frames": self.max_frames,
            "resize": format!("{:?}", o.resize),
            "size": o.size,
            "decode_workers": self.workers.max(1),
            "decode_threads": self.threads,
        })
    }
}

/// Starts the feeder and W decode workers; returns the stream of decoded videos in any order.
pub fn spawn_decoders<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    jobs: &'s [Job],
    opts: &'s DecodeOptions,
    workers: usize,
    progress: &'s Progress,
    fetch: &'s FetchConfig,
) -> Receiver<Decoded> {
    let workers = workers.max(1);
    let window = 2 * workers + 2;
    let (task_tx, task_rx) = bounded::<usize>(workers);
    let (dec_tx, dec_rx) = bounded::<Decoded>(workers + 1);
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
        s.spawn(move || decode_worker(task_rx, dec_tx, jobs, opts, fetch));
    }
    dec_rx
}

/// Hands decoded videos to `f` in job order, advancing `progress` so the feeder releases more
/// work. `f` returns false to stop early; the feeder is released however this ends.
fn in_order(rx: Receiver<Decoded>, progress: &Progress, mut f: impl FnMut(usize, Decoded) -> Result<bool>) -> Result<()> {
    let _release = ReleaseOnDrop(progress);
    let mut pending = std::collections::BTreeMap::new();
    let mut next = 0usize;
    for d in rx {
        pending.insert(d.idx, d);
        while let Some(d) = pending.remove(&next) {
            next += 1;
            advance(progress, next);
            if !f(next - 1, d)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn decode_worker(task_rx: Receiver<usize>, dec_tx: Sender<Decoded>, jobs: &[Job], opts: &DecodeOptions, fetch: &FetchConfig) {
    for idx in task_rx {
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
                let mut frames: Vec<u8> = vec![];
                // A panic inside one video is that video's failure, not the run's.
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode_file(&path, &o, |f| frames.extend_from_slice(&f.rgb))));
                match r {
                    Ok(Ok(rep)) => Ok((frames, rep.rows, rep.duration, rep.warnings)),
                    Ok(Err(e)) => Err((e.kind().to_string(), e.to_string())),
                    Err(_) => Err(("panic".to_string(), "the decoder panicked on this video".to_string())),
                }
            }
        };
        crate::telemetry::decoded(result.as_ref().map_or(0, |r| r.1));
        if dec_tx.send(Decoded { idx, result }).is_err() {
            return;
        }
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
    let prepared = prepare(&cfg.jobs, &cfg.cache, &mut log)?;
    let sidecar = Sidecar::load(&cfg.sidecar)?;
    let opts = cfg.decode.options(&sidecar)?;
    let progress: Progress = (Mutex::new(0), Condvar::new());
    crate::telemetry::planned(prepared.jobs.len() as u64);
    let mut writer = crate::cache::CacheWriter::create(&cfg.cache, &prepared, &sidecar, cfg.decode.describe(&opts), cfg.zstd_level)?;
    let fetch = cfg.decode.fetch_in(&cfg.cache);
    std::thread::scope(|s| -> Result<()> {
        let rx = spawn_decoders(s, &prepared.jobs, &opts, cfg.decode.workers, &progress, &fetch);
        // In job order, so the cache is deterministic.
        in_order(rx, &progress, |idx, d| {
            crate::telemetry::written(d.result.is_ok());
            writer.add(&prepared.jobs[idx], d, &mut log)?;
            Ok(true)
        })
    })?;
    let stats = (writer.videos_ok, writer.rows);
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

/// `vidfeat pca fit`: streaming mean and covariance over at most `max_frames` frames of the
/// inputs (in job order; never holds more than one video's features), then the
/// eigendecomposition, saved as our .npz or as YouTube-8M's three .npy files.
#[derive(Debug, Clone)]
pub struct PcaFitConfig {
    pub jobs: JobSpec,
    pub out: PathBuf,
    pub dims: usize,
    pub max_frames: usize,
    pub model: PathBuf,
    pub sidecar: Option<PathBuf>,
    pub device: String,
    pub decode: DecodeSettings,
    pub batch_size: usize,
    /// Log the lists' problems (off when a plan of the same lists already did).
    pub log_list_problems: bool,
}

pub fn pca_fit(cfg: &PcaFitConfig) -> Result<serde_json::Value> {
    let started = Instant::now();
    let scratch = tempdir_for(&cfg.out)?;
    let mut log = FailureLog::create(&scratch.join("failures.jsonl"))?;
    log.echo = cfg.log_list_problems;
    let prepared = prepare(&cfg.jobs, &scratch, &mut log)?;
    let (device, note) = vidfeat_features::resolve_device(&cfg.device).map_err(anyhow::Error::msg)?;
    if let Some(n) = note {
        tracing::warn!("{n}");
    }
    let model = Model::load(&cfg.model, cfg.sidecar.as_deref(), device)?;
    let opts = cfg.decode.options(&model.sidecar)?;
    let dim = model.sidecar.output_dim;
    let (w, h) = model.input_wh();
    let frame_bytes = (w * h * 3) as usize;
    let mut acc = vidfeat_features::CovarianceAccumulator::new(dim);
    let progress: Progress = (Mutex::new(0), Condvar::new());
    let mut videos = 0u64;
    let mut failures: Vec<crate::jobs::Failure> = vec![];
    let fetch = cfg.decode.fetch_in(cfg.out.parent().unwrap_or(std::path::Path::new(".")));
    std::thread::scope(|s| -> Result<()> {
        let rx = spawn_decoders(s, &prepared.jobs, &opts, cfg.decode.workers, &progress, &fetch);
        in_order(rx, &progress, |idx, d| {
            match d.result {
                Ok((frames, rows, _, _)) => {
                    videos += 1;
                    let take = (rows as usize).min(cfg.max_frames - acc.rows());
                    let batches = frames[..take * frame_bytes].chunks(cfg.batch_size.max(1) * frame_bytes).map(|c| (c, c.len() / frame_bytes));
                    model.extract_all(batches, |f| {
                        acc.add(&f, f.len() / dim);
                        Ok(())
                    })?;
                }
                Err((kind, reason)) => {
                    let job = &prepared.jobs[idx];
                    tracing::warn!("skipped for the PCA: {} ({kind}): {reason}", job.task.id);
                    failures.push(crate::jobs::Failure::of_job(job, "decode", kind, reason));
                }
            }
            // Stop once the sample is full.
            Ok(acc.rows() < cfg.max_frames)
        })
    })?;
    let _ = std::fs::remove_dir_all(&scratch);
    if acc.rows() < 2 {
        return Ok(json!({"frames": acc.rows(), "videos": videos, "failures": failures}));
    }
    let pca = acc.fit(cfg.dims.min(dim)).map_err(anyhow::Error::msg)?;
    pca.save(&cfg.out)?;
    Ok(json!({
        "failures": failures,
        "out": cfg.out.display().to_string(),
        "frames": acc.rows(),
        "videos": videos,
        "videos_failed": failures.len() as u64 + log.total(),
        "input_dim": dim,
        "dims": pca.dims,
        "sha256": pca.content_sha256(),
        "model": model.sidecar.name,
        "model_sha256": model.sha256,
        "wall_time_s": started.elapsed().as_secs_f64(),
    }))
}

/// A scratch folder beside `out` (for the vocabulary and failure log that `prepare` writes).
fn tempdir_for(out: &std::path::Path) -> Result<PathBuf> {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(parent)?;
    let d = parent.join(format!(".vidfeat-pca-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// `vidfeat work`: the worker side of a frozen plan (see `work.rs`).
#[derive(Debug, Clone)]
pub struct WorkConfig {
    pub dir: PathBuf,
    pub assignment: crate::work::Assignment,
    pub lease_ttl: Duration,
    pub device: String,
    pub torch_threads: usize,
    pub workers: usize,
    pub threads: usize,
    /// Download settings; `fetch_cmd` and the size cap come from the plan.
    pub fetch: FetchConfig,
}

pub fn work(cfg: &WorkConfig) -> Result<serde_json::Value> {
    use crate::work::{Entry, PlanSettings, ShardCtx};
    let (plan, plan_hash) = PlanSettings::load(&cfg.dir)?;
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
    check("model", &plan.model, &plan.model_sha256, vidfeat_features::file_sha256(std::path::Path::new(&plan.model)))?;
    check("sidecar", &plan.sidecar, &plan.sidecar_sha256, vidfeat_features::file_sha256(std::path::Path::new(&plan.sidecar)))?;
    let pca = vidfeat_features::Pca::load(std::path::Path::new(&plan.pca), Some(plan.pca_dims))?;
    check("PCA", &plan.pca, &plan.pca_sha256, Ok(pca.content_sha256()))?;

    let (device, note) = vidfeat_features::resolve_device(&cfg.device).map_err(anyhow::Error::msg)?;
    if let Some(n) = note {
        tracing::warn!("{n}");
    }
    if cfg.torch_threads > 0 {
        tch::set_num_threads(cfg.torch_threads as i32);
    }
    let model = Model::load(std::path::Path::new(&plan.model), Some(std::path::Path::new(&plan.sidecar)), device)?;
    let batch = plan.batch_size.unwrap_or(if device.is_cuda() { 64 } else { 8 }).max(1);
    let settings = DecodeSettings {
        fps: Rational::parse(&plan.fps).with_context(|| format!("plan fps `{}`", plan.fps))?,
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
    let opts = settings.options(&model.sidecar)?;
    let fetch = settings.fetch_in(&cfg.dir);
    let (w, h) = model.input_wh();
    let frame_bytes = (w * h * 3) as usize;
    let owner = crate::work::worker_id();
    let failed = std::sync::atomic::AtomicU64::new(0);
    let process = |jobs: &[Job], sink: &mut dyn FnMut(usize, Entry) -> Result<()>| -> Result<()> {
        let progress: Progress = (Mutex::new(0), Condvar::new());
        std::thread::scope(|s| -> Result<()> {
            let rx = spawn_decoders(s, jobs, &opts, settings.workers, &progress, &fetch);
            in_order(rx, &progress, |k, d| {
                let entry = match d.result {
                    Ok((frames, rows, seconds, _)) => {
                        // Batches within the video only: features do not depend on neighbours.
                        let mut raw = Vec::with_capacity(rows as usize * model.sidecar.output_dim);
                        let batches = frames.chunks(batch * frame_bytes).map(|c| (c, c.len() / frame_bytes));
                        let r = model.extract_all(batches, |f| {
                            crate::telemetry::extracted((f.len() / model.sidecar.output_dim) as u64);
                            raw.extend_from_slice(&f);
                            Ok(())
                        });
                        match r.err().map(|e| e.to_string()) {
                            None => {
                                let (rgb, mean_rgb) = crate::consume::reduce_video(&pca, &raw, rows as usize);
                                Entry::Ok { idx: 0, rgb, mean_rgb, seconds }
                            }
                            Some(e) => Entry::Failed { idx: 0, kind: "model_error".into(), reason: e },
                        }
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
    let ctx = ShardCtx { dir: &cfg.dir, plan: &plan, plan_hash: &plan_hash, owner: &owner, process: &process };
    let mut r = crate::work::work_loop(&ctx, &cfg.assignment, cfg.lease_ttl)?;
    r["failed"] = json!(failed.load(std::sync::atomic::Ordering::SeqCst));
    r["worker"] = json!(owner);
    r["model"] = json!(model.sidecar.name);
    r["device"] = json!(format!("{device:?}"));
    r["batch_size"] = json!(batch);
    Ok(r)
}
