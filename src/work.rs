//! Resumable cluster workers over a frozen plan: `vidfeat work` and `vidfeat status`.
//!
//! ```text
//! DIR/plan.json                 frozen settings (model + sidecar + PCA with hashes, sampling,
//!                               schema, shards); written by `vidfeat plan`
//! DIR/plan.jsonl                the tasks, each with its shard
//! DIR/leases/NAME.lease         who works on shard NAME: create-exclusive, heartbeat (mtime),
//!                               taken over when older than the TTL
//! DIR/journal/NAME.journal      per-video checkpoints of an unfinished shard (zstd entries,
//!                               each length- and CRC-framed; a torn tail is cut off on resume)
//! DIR/frame|video/NAME          the shards, committed atomically (temporary name, fsync, rename)
//! DIR/done/NAME.json            the done marker: record count, SHA-256 of both shard files,
//!                               failures; written after both shards, so done means complete
//! DIR/summary.json              written by the worker that finds every shard done
//! ```
//!
//! NAME is the shard's file stem, e.g. `train-00003-of-00016`. Shards are numbered globally in
//! (split, shard) order; worker I of N takes shard k when k % N == I (static), or claims any
//! shard whose lease it can take (`--claim`). Features are computed per video (batches never
//! cross videos here), so a resumed shard is byte-identical to an uninterrupted one.
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::jobs::{Failure, Job, PlannedTask};

pub const PLAN_VERSION: u32 = 1;
const JOURNAL_MAGIC: &[u8; 4] = b"VFJ1";

/// Everything that shapes the output, frozen by `vidfeat plan`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlanSettings {
    pub version: u32,
    pub model: String,
    pub model_sha256: String,
    pub sidecar: String,
    pub sidecar_sha256: String,
    pub pca: String,
    pub pca_sha256: String,
    pub pca_dims: usize,
    pub fps: String,
    pub max_frames: u64,
    pub resize: Option<String>,
    pub timeout_s: u64,
    pub max_pixels: u64,
    pub max_input_bytes: u64,
    pub max_duration: f64,
    #[serde(default = "default_decoder_bytes")]
    pub max_decoder_bytes: u64,
    pub compression: String,
    pub legacy_2017: bool,
    pub audio_zero: bool,
    /// Frames per CNN batch within a video; None: the device's default.
    pub batch_size: Option<usize>,
    /// The --fetch-cmd template of id-only sources, if any.
    pub fetch_cmd: Option<String>,
    /// Shards per split.
    pub shards: BTreeMap<String, u32>,
    pub tasks: usize,
}

fn default_decoder_bytes() -> u64 {
    4 << 30
}

impl PlanSettings {
    pub fn load(dir: &Path) -> Result<(Self, String)> {
        let p = dir.join("plan.json");
        let bytes = std::fs::read(&p).with_context(|| {
            format!("{}: no plan.json (make one with `vidfeat plan INPUT... --out {}` without --dry-run)", dir.display(), dir.display())
        })?;
        let s: PlanSettings = serde_json::from_slice(&bytes).with_context(|| format!("{}: not a vidfeat plan", p.display()))?;
        if s.version != PLAN_VERSION {
            bail!("{}: plan version {} (this vidfeat reads {PLAN_VERSION})", p.display(), s.version);
        }
        Ok((s, crate::file_sha256_bytes(&bytes)))
    }

    /// The bytes of plan.json (whose SHA-256 is the plan hash).
    pub fn to_json(&self) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec_pretty(self)?)
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join(".plan.json.tmp");
        std::fs::write(&tmp, self.to_json()?)?;
        std::fs::rename(tmp, dir.join("plan.json"))?;
        Ok(())
    }

    /// Every shard in global order: (split, shard, file name).
    pub fn shard_list(&self) -> Vec<(String, u32, String)> {
        self.shards.iter().flat_map(|(split, &n)| (0..n).map(move |k| (split.clone(), k, vidfeat_export::shard_name(split, k, n)))).collect()
    }
}

fn stem(name: &str) -> &str {
    name.strip_suffix(".tfrecord").unwrap_or(name)
}

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

// ---------------------------------------------------------------------------------------------
// Leases

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseBody {
    owner: String,
    host: String,
    pid: u32,
    acquired: u64,
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

/// Age of a lease file (time since its last heartbeat), if it exists.
pub fn lease_age(path: &Path) -> Option<Duration> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(SystemTime::now().duration_since(m).unwrap_or_default())
}

fn lease_owner(path: &Path) -> Option<String> {
    serde_json::from_slice::<LeaseBody>(&std::fs::read(path).ok()?).ok().map(|b| b.owner)
}

/// A lease written by a process of this host that no longer exists (a worker killed and
/// restarted on the same node need not wait for the TTL).
fn owner_dead_here(path: &Path) -> bool {
    let Some(b) = std::fs::read(path).ok().and_then(|x| serde_json::from_slice::<LeaseBody>(&x).ok()) else { return false };
    if b.host != hostname() || b.pid <= 1 || b.pid == std::process::id() {
        return false;
    }
    let r = unsafe { libc::kill(b.pid as libc::pid_t, 0) };
    r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// A held lease: a heartbeat thread touches it; dropping it stops the heartbeat and removes
/// the file if it is still ours.
pub struct Lease {
    path: PathBuf,
    owner: String,
    stop: Arc<AtomicBool>,
    lost: Arc<AtomicBool>,
    beat: Option<std::thread::JoinHandle<()>>,
}

pub enum TryLease {
    Got(Lease),
    /// Held by a live worker: (owner, seconds since its heartbeat).
    Busy(String, u64),
}

impl Lease {
    pub fn try_acquire(path: &Path, owner: &str, ttl: Duration) -> Result<TryLease> {
        std::fs::create_dir_all(path.parent().unwrap())?;
        for _ in 0..3 {
            let body = LeaseBody { owner: owner.into(), host: hostname(), pid: std::process::id(), acquired: now_s() };
            match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut f) => {
                    f.write_all(&serde_json::to_vec(&body)?)?;
                    f.sync_all()?;
                    return Ok(TryLease::Got(Lease::start(path, owner, ttl)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = lease_age(path).unwrap_or_default();
                    if age < ttl && !owner_dead_here(path) {
                        return Ok(TryLease::Busy(lease_owner(path).unwrap_or_else(|| "?".into()), age.as_secs()));
                    }
                    // Stale: move it aside (rename is atomic: one taker wins), then retry the
                    // exclusive create.
                    let aside = path.with_extension(format!("stale.{}", std::process::id()));
                    if std::fs::rename(path, &aside).is_ok() {
                        tracing::info!(
                            "taking over {} from {} (no heartbeat for {} s)",
                            path.display(),
                            lease_owner(&aside).unwrap_or_else(|| "?".into()),
                            age.as_secs()
                        );
                        let _ = std::fs::remove_file(&aside);
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("lease {}", path.display())),
            }
        }
        Ok(TryLease::Busy(lease_owner(path).unwrap_or_else(|| "?".into()), 0))
    }

    fn start(path: &Path, owner: &str, ttl: Duration) -> Lease {
        let stop = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicBool::new(false));
        let (p, o, st, lo) = (path.to_path_buf(), owner.to_string(), stop.clone(), lost.clone());
        let every = (ttl / 4).max(Duration::from_millis(100));
        let beat = std::thread::spawn(move || {
            let mut last = std::time::Instant::now();
            while !st.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50).min(every));
                if last.elapsed() < every {
                    continue;
                }
                last = std::time::Instant::now();
                if lease_owner(&p).as_deref() != Some(o.as_str()) {
                    lo.store(true, Ordering::SeqCst);
                    return;
                }
                if let Ok(f) = std::fs::File::options().append(true).open(&p) {
                    let _ = f.set_modified(SystemTime::now());
                }
            }
        });
        Lease { path: path.to_path_buf(), owner: owner.into(), stop, lost, beat: Some(beat) }
    }

    /// Still ours (no other worker took it over)?
    pub fn held(&self) -> bool {
        !self.lost.load(Ordering::SeqCst) && lease_owner(&self.path).as_deref() == Some(self.owner.as_str())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(b) = self.beat.take() {
            let _ = b.join();
        }
        if lease_owner(&self.path).as_deref() == Some(self.owner.as_str()) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Journal

/// One finished video of a shard.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Ok { idx: u32, rgb: Vec<Vec<u8>>, mean_rgb: Vec<f32>, seconds: f64 },
    Failed { idx: u32, kind: String, reason: String },
}

impl Entry {
    fn idx(&self) -> u32 {
        match self {
            Entry::Ok { idx, .. } | Entry::Failed { idx, .. } => *idx,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = vec![];
        match self {
            Entry::Ok { idx, rgb, mean_rgb, seconds } => {
                b.extend_from_slice(&idx.to_le_bytes());
                b.push(1);
                b.extend_from_slice(&(rgb.len() as u32).to_le_bytes());
                b.extend_from_slice(&(mean_rgb.len() as u32).to_le_bytes());
                b.extend_from_slice(&seconds.to_le_bytes());
                for r in rgb {
                    b.extend_from_slice(r);
                }
                for m in mean_rgb {
                    b.extend_from_slice(&m.to_le_bytes());
                }
            }
            Entry::Failed { idx, kind, reason } => {
                b.extend_from_slice(&idx.to_le_bytes());
                b.push(0);
                b.extend_from_slice(&(kind.len() as u32).to_le_bytes());
                b.extend_from_slice(kind.as_bytes());
                b.extend_from_slice(&(reason.len() as u32).to_le_bytes());
                b.extend_from_slice(reason.as_bytes());
            }
        }
        b
    }

    fn decode(b: &[u8]) -> Option<Entry> {
        let u32_at = |o: usize| b.get(o..o + 4).map(|x| u32::from_le_bytes(x.try_into().unwrap()));
        let idx = u32_at(0)?;
        match *b.get(4)? {
            1 => {
                let (rows, d) = (u32_at(5)? as usize, u32_at(9)? as usize);
                let seconds = f64::from_le_bytes(b.get(13..21)?.try_into().ok()?);
                let rgb_end = 21 + rows.checked_mul(d)?;
                let rgb = b.get(21..rgb_end)?.chunks(d.max(1)).map(<[u8]>::to_vec).collect();
                let mean = b.get(rgb_end..rgb_end + 4 * d)?.chunks(4).map(|x| f32::from_le_bytes(x.try_into().unwrap())).collect();
                Some(Entry::Ok { idx, rgb, mean_rgb: mean, seconds })
            }
            0 => {
                let kl = u32_at(5)? as usize;
                let kind = String::from_utf8(b.get(9..9 + kl)?.to_vec()).ok()?;
                let rl = u32_at(9 + kl)? as usize;
                let reason = String::from_utf8(b.get(13 + kl..13 + kl + rl)?.to_vec()).ok()?;
                Some(Entry::Failed { idx, kind, reason })
            }
            _ => None,
        }
    }
}

/// Append-only per-shard checkpoint file: `VFJ1`, the plan hash (hex), then entries
/// `u32 len | u32 crc32c | zstd(entry)`, each fsynced.
pub struct Journal {
    file: std::fs::File,
}

impl Journal {
    /// Opens (or starts) the journal; returns the valid entries already in it. A journal of
    /// another plan, or a torn last entry, is cut back to what is valid.
    pub fn open(path: &Path, plan_hash: &str) -> Result<(Journal, Vec<Entry>)> {
        std::fs::create_dir_all(path.parent().unwrap())?;
        let mut header = JOURNAL_MAGIC.to_vec();
        header.extend_from_slice(plan_hash.as_bytes());
        let mut entries = vec![];
        let mut valid = 0u64;
        if let Ok(mut f) = std::fs::File::open(path) {
            let mut buf = vec![];
            f.read_to_end(&mut buf)?;
            if buf.starts_with(&header) {
                let mut o = header.len();
                valid = o as u64;
                while o + 8 <= buf.len() {
                    let len = u32::from_le_bytes(buf[o..o + 4].try_into().unwrap()) as usize;
                    let crc = u32::from_le_bytes(buf[o + 4..o + 8].try_into().unwrap());
                    let Some(payload) = buf.get(o + 8..o + 8 + len) else { break };
                    if crc32c::crc32c(payload) != crc {
                        break;
                    }
                    let Some(e) = zstd::decode_all(payload).ok().and_then(|b| Entry::decode(&b)) else { break };
                    entries.push(e);
                    o += 8 + len;
                    valid = o as u64;
                }
            }
        }
        let mut file = std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path)?;
        if valid == 0 {
            file.set_len(0)?;
            file.write_all(&header)?;
            file.sync_all()?;
        } else {
            file.set_len(valid)?;
        }
        use std::io::Seek;
        file.seek(std::io::SeekFrom::End(0))?;
        Ok((Journal { file }, entries))
    }

    pub fn append(&mut self, e: &Entry) -> Result<()> {
        let payload = zstd::encode_all(e.encode().as_slice(), 3)?;
        let mut rec = Vec::with_capacity(payload.len() + 8);
        rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        rec.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        rec.extend_from_slice(&payload);
        // Half an entry on disk is what a kill mid-write leaves; the reader cuts it off.
        let half = rec.len() / 2;
        self.file.write_all(&rec[..half])?;
        crash_point("journal_mid_entry");
        self.file.write_all(&rec[half..])?;
        self.file.sync_data()?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Done markers and status

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

fn read_done(dir: &Path, name: &str, plan_hash: &str) -> Option<DoneMarker> {
    let m: DoneMarker = serde_json::from_slice(&std::fs::read(dir.join("done").join(format!("{}.json", stem(name)))).ok()?).ok()?;
    (m.plan_sha256 == plan_hash).then_some(m)
}

/// `vidfeat status DIR`.
pub fn status(dir: &Path, ttl: Duration) -> Result<serde_json::Value> {
    let (plan, plan_hash) = PlanSettings::load(dir)?;
    let mut shards = vec![];
    let (mut done, mut running, mut stale, mut pending) = (0u64, 0u64, 0u64, 0u64);
    let (mut videos, mut failed, mut rows) = (0u64, 0u64, 0u64);
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    let mut failures = vec![];
    for (split, _, name) in plan.shard_list() {
        let st = stem(&name);
        let lease = dir.join("leases").join(format!("{st}.lease"));
        let journal = dir.join("journal").join(format!("{st}.journal"));
        let entry = if let Some(d) = read_done(dir, &name, &plan_hash) {
            done += 1;
            videos += d.videos;
            failed += d.failed;
            rows += d.rows;
            for f in &d.failures {
                *by_kind.entry(f.kind.clone()).or_default() += 1;
            }
            failures.extend(d.failures.iter().cloned());
            json!({"shard": name, "split": split, "state": "done", "videos": d.videos, "failed": d.failed, "worker": d.worker})
        } else if let Some(age) = lease_age(&lease) {
            let state = if age < ttl && !owner_dead_here(&lease) {
                running += 1;
                "in_progress"
            } else {
                stale += 1;
                "stale_lease"
            };
            let journaled = std::fs::metadata(&journal).map(|m| m.len()).unwrap_or(0);
            json!({"shard": name, "split": split, "state": state, "lease_age_s": age.as_secs(), "owner": lease_owner(&lease), "journal_bytes": journaled})
        } else {
            pending += 1;
            let partial = journal.exists();
            json!({"shard": name, "split": split, "state": "pending", "partial_journal": partial})
        };
        shards.push(entry);
    }
    // Failures found while planning (bad rows, unknown labels, missing files).
    let plan_failures: Vec<Failure> = std::fs::read_to_string(dir.join("failures.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for f in &plan_failures {
        *by_kind.entry(f.kind.clone()).or_default() += 1;
    }
    let total = plan.shard_list().len() as u64;
    Ok(json!({
        "plan": dir.display().to_string(),
        "shards_total": total,
        "shards_done": done,
        "shards_in_progress": running,
        "shards_stale": stale,
        "shards_pending": pending,
        "complete": done == total,
        "videos_ok": videos,
        "videos_failed": failed + plan_failures.len() as u64,
        "rows": rows,
        "failures_by_kind": by_kind,
        "failed_videos": failures.iter().chain(plan_failures.iter()).take(1000).collect::<Vec<_>>(),
        "shards": shards,
    }))
}

/// The failures recorded in the done markers, in shard order.
pub fn shard_failures(dir: &Path, plan: &PlanSettings, plan_hash: &str) -> Vec<Failure> {
    plan.shard_list().iter().filter_map(|(_, _, name)| read_done(dir, name, plan_hash)).flat_map(|d| d.failures).collect()
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

// ---------------------------------------------------------------------------------------------
// Assignment

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
            crate::jobs::log_failed(&job.task.id, kind, reason);
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
    fn journal_entries_round_trip_and_a_torn_tail_is_cut() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("j/x.journal");
        let hash = "ab".repeat(32);
        let a = Entry::Ok { idx: 0, rgb: vec![vec![1, 2, 3], vec![4, 5, 6]], mean_rgb: vec![0.5, -1.0, 2.0], seconds: 2.0 };
        let b = Entry::Failed { idx: 2, kind: "corrupt".into(), reason: "bad NAL".into() };
        {
            let (mut j, e) = Journal::open(&p, &hash).unwrap();
            assert!(e.is_empty());
            j.append(&a).unwrap();
            j.append(&b).unwrap();
        }
        let full = std::fs::read(&p).unwrap();
        // A torn last entry (any cut inside it) is dropped; the first survives.
        for cut in [full.len() - 1, full.len() - 5, full.len() - 9] {
            std::fs::write(&p, &full[..cut]).unwrap();
            let (_, e) = Journal::open(&p, &hash).unwrap();
            assert_eq!(e, vec![a.clone()], "cut at {cut}");
            assert!(std::fs::metadata(&p).unwrap().len() < cut as u64 + 1);
        }
        // A flipped bit in an entry ends the valid prefix there.
        std::fs::write(&p, &full).unwrap();
        let mut bad = full.clone();
        let n = bad.len();
        bad[n - 3] ^= 0x40;
        std::fs::write(&p, &bad).unwrap();
        assert_eq!(Journal::open(&p, &hash).unwrap().1, vec![a.clone()]);
        // Another plan's journal is discarded.
        std::fs::write(&p, &full).unwrap();
        assert!(Journal::open(&p, &"cd".repeat(32)).unwrap().1.is_empty());
    }

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

    #[test]
    fn leases_are_exclusive_and_stale_ones_are_taken_over() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("leases/a.lease");
        let ttl = Duration::from_secs(60);
        let TryLease::Got(l) = Lease::try_acquire(&p, "w1", ttl).unwrap() else { panic!("free lease") };
        assert!(matches!(Lease::try_acquire(&p, "w2", ttl).unwrap(), TryLease::Busy(o, _) if o == "w1"));
        assert!(l.held());
        // w1 dies without releasing (forget skips Drop); its heartbeat stops. Age the file.
        std::mem::forget(l);
        let f = std::fs::File::options().append(true).open(&p).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(120)).unwrap();
        let TryLease::Got(l2) = Lease::try_acquire(&p, "w2", ttl).unwrap() else { panic!("stale lease not taken over") };
        assert!(l2.held());
        assert_eq!(lease_owner(&p).as_deref(), Some("w2"));
        drop(l2);
        assert!(!p.exists(), "released on drop");
    }
}
