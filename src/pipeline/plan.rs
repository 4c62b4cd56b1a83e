//! A plan: the lists resolved into `DIR/plan.jsonl` (one task per line, with its shard and its
//! source's identity) and `DIR/failures.jsonl` without decoding ([`plan`]), then frozen into
//! `DIR/plan.json` ([`freeze`]): the settings, model, sidecar and PCA that shape the output
//! (fitting a PCA on the plan's first frames when none is given) and every shard's key.
//!
//! A shard's key is the SHA-256 over everything that shapes its bytes: the frozen settings
//! (paths left out: a model moved to another folder is the same model), the shard's name (split,
//! index, count) and its tasks in order, each with its id, source, the source's identity
//! (local files: size and modification time; remote ones: URL, or id and `--fetch-cmd`),
//! window, labels and segments. A shard whose done marker carries its current key is kept; any
//! other is rebuilt. The content of downloaded sources is checked apart from the key: the done
//! marker records the SHA-256 of every download the shard was built from, and a shard whose
//! downloads now hold other content in the cache is rebuilt ([`freeze`]).
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use vidfeat_export::SegmentLabel;
use vidfeat_ingest::{Source, Task};

use crate::pipeline::dataset::Named;
use crate::pipeline::jobs::{prepare, Failure, FailureLog, Job, JobSpec};

pub const PLAN_VERSION: u32 = 2;

/// Everything that shapes the output, frozen by `vidfeat plan` (and `run`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlanSettings {
    pub version: u32,
    /// The first model's files (its features are `rgb`), inline in plan.json.
    #[serde(flatten)]
    pub first: ModelFiles,
    pub fps: String,
    /// `exact`, or `keyframes` (rows from key frames only).
    pub sampling: String,
    pub max_frames: u64,
    pub resize: Option<String>,
    pub timeout_s: u64,
    pub max_pixels: u64,
    pub max_input_bytes: u64,
    pub max_duration: f64,
    pub max_decoder_bytes: u64,
    pub compression: String,
    pub legacy_2017: bool,
    pub audio_zero: bool,
    /// Frames per CNN batch within a video; None: the device's default.
    pub batch_size: Option<usize>,
    /// The --fetch-cmd template of id-only sources, if any.
    pub fetch_cmd: Option<String>,
    pub vocabulary: Option<Named>,
    /// `--predict K`: the model's classifier logits, averaged over each video's rows, go into
    /// its video-level record (`logits`), and predictions.jsonl lists the top K. 0: off.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub predict: usize,
    /// The classifier head predictions come from (the model sidecar's), with --predict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classifier: Option<vidfeat_features::ClassifierSpec>,
    /// Which model's head that is: 0 the first, i the i-th of `extra_models` (1-based).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub predict_model: usize,
    /// Further models fed from the same decode (`--model A --model B`), each writing its own
    /// features into the same records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_models: Vec<ModelPlan>,
    /// Shards per split.
    pub shards: BTreeMap<String, u32>,
    pub tasks: usize,
    /// SHA-256 of the settings above that shape the shards (paths and counts left out).
    pub settings_sha256: String,
    /// Every shard's key: file name -> SHA-256 over the settings and its ordered tasks.
    pub shard_keys: BTreeMap<String, String>,
    /// SHA-256 of plan.jsonl as frozen: workers refuse a plan.jsonl rewritten since.
    pub plan_jsonl_sha256: String,
    /// What made the plan: vidfeat's version, the command and its settings, library versions,
    /// the time.
    pub provenance: serde_json::Value,
}

/// A model's files as a plan records them (paths or object URLs, with their hashes) and its
/// PCA's shape.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelFiles {
    pub model: String,
    pub model_sha256: String,
    pub sidecar: String,
    pub sidecar_sha256: String,
    pub pca: String,
    pub pca_sha256: String,
    pub pca_dims: usize,
    /// Frames the PCA was fitted on, when known, and the components that sample supports
    /// (the others are written as zero).
    pub pca_frames: Option<u64>,
    pub pca_supported: usize,
}

/// Another model of a plan: the features it writes, its files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelPlan {
    /// The feature list `NAME` and video-level `mean_NAME` it writes.
    pub feature: String,
    #[serde(flatten)]
    pub files: ModelFiles,
}

impl PlanSettings {
    /// Every model: its feature name and files, the first's (`rgb`) first.
    pub fn models(&self) -> impl Iterator<Item = (&str, &ModelFiles)> {
        std::iter::once(("rgb", &self.first)).chain(self.extra_models.iter().map(|m| (m.feature.as_str(), &m.files)))
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let p = dir.join("plan.json");
        let bytes = std::fs::read(&p).with_context(|| {
            format!("{}: no plan.json (make one with `vidfeat plan INPUT... --out {}` without --dry-run)", dir.display(), dir.display())
        })?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).with_context(|| format!("{}: not a vidfeat plan", p.display()))?;
        if v["version"] != PLAN_VERSION {
            bail!("{}: plan version {} (this vidfeat reads {PLAN_VERSION}): make the plan again", p.display(), v["version"]);
        }
        serde_json::from_value(v).with_context(|| format!("{}: not a vidfeat plan", p.display()))
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        crate::pipeline::write_atomic(&dir.join("plan.json"), &serde_json::to_vec_pretty(self)?)
    }

    /// Every shard in global order: (split, shard, file name).
    pub fn shard_list(&self) -> Vec<(String, u32, String)> {
        self.shards.iter().flat_map(|(split, &n)| (0..n).map(move |k| (split.clone(), k, vidfeat_export::shard_name(split, k, n)))).collect()
    }

    /// The key of shard `name` (empty when the plan does not have it).
    pub fn key(&self, name: &str) -> &str {
        self.shard_keys.get(name).map(String::as_str).unwrap_or("")
    }

    /// SHA-256 of what shapes the shards' bytes: every field but paths, counts, keys and
    /// provenance (a new setting counts unless it is left out here).
    #[cfg_attr(not(feature = "ffmpeg"), allow(dead_code))]
    fn settings_sha256(&self) -> String {
        let mut s = self.clone();
        for m in std::iter::once(&mut s.first).chain(s.extra_models.iter_mut().map(|m| &mut m.files)) {
            m.model.clear();
            m.sidecar.clear();
            m.pca.clear();
        }
        s.shards.clear();
        s.tasks = 0;
        s.settings_sha256.clear();
        s.shard_keys.clear();
        s.plan_jsonl_sha256.clear();
        s.provenance = serde_json::Value::Null;
        hex::encode(sha2::Sha256::digest(serde_json::to_vec(&s).expect("plan settings serialize")))
    }
}

/// What of a task enters its shard's key; also the start of its plan.jsonl line.
#[derive(serde::Serialize)]
struct KeyedTask<'a> {
    id: &'a str,
    source: &'a str,
    /// `local`, `url` or `id` (fetched with --fetch-cmd).
    kind: &'static str,
    /// Local files: `size:mtime_ns`; remote sources: empty (their content is checked through
    /// the done marker).
    identity: Identity,
    window: Option<(f64, f64)>,
    labels: &'a [i64],
    /// [start, label, score] per segment.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    segments: &'a [(i64, i64, f32)],
}

/// The rest of a plan.jsonl line: where the task goes and where it came from (not in the key).
#[derive(serde::Serialize)]
struct PlanTail<'a> {
    split: &'a str,
    shard: u32,
    shard_file: &'a str,
    file: &'a str,
    line: usize,
}

/// A plan.jsonl line read back (what `vidfeat work` needs of it).
#[derive(serde::Deserialize)]
pub struct PlannedTask {
    pub id: String,
    pub source: String,
    #[serde(default)]
    pub kind: String,
    pub window: Option<(f64, f64)>,
    pub labels: Vec<i64>,
    #[serde(default)]
    pub segments: Vec<(i64, i64, f32)>,
    pub split: String,
    pub shard: u32,
    pub file: String,
    pub line: usize,
}

impl PlannedTask {
    pub fn into_job(self) -> Job {
        let source = match self.kind.as_str() {
            "url" => Source::Url(self.source),
            "id" => Source::Id(self.source.strip_prefix("id:").unwrap_or(&self.source).to_string()),
            _ => Source::Local(PathBuf::from(self.source)),
        };
        let segments = (!self.segments.is_empty())
            .then(|| Box::new(self.segments.iter().map(|&(start, label, score)| SegmentLabel { start, label, score }).collect()));
        Job {
            task: Task {
                id: self.id,
                source,
                window: self.window,
                labels: vec![],
                segments: None,
                split: self.split,
                origin: vidfeat_ingest::Origin { file: self.file.into(), line: self.line },
            },
            labels: self.labels,
            segments,
            shard: self.shard,
        }
    }
}

/// What [`plan`] found: its summary, and the hash of every shard's tasks.
#[derive(Debug)]
pub struct Planned {
    pub summary: serde_json::Value,
    /// Shard file name -> SHA-256 over its ordered tasks, for every shard of every split (empty
    /// shards too: they are written).
    pub shard_tasks: BTreeMap<String, String>,
    /// SHA-256 of the plan.jsonl written.
    pub plan_jsonl_sha256: String,
    /// The plan.jsonl written: in place, or (in a folder with a frozen plan) staged until
    /// [`freeze`] writes the plan.json that goes with it.
    pub tasks: StagedTasks,
}

/// A plan.jsonl staged under its temporary name: a folder's plan.jsonl always is the one its
/// plan.json was frozen with, until the new plan.json is written beside it; a plan that stops
/// before (a PCA that cannot be saved, a disk that fills, `--strict`) leaves both as they were.
pub struct StagedTasks {
    dest: PathBuf,
    file: std::sync::Mutex<Option<crate::outdir::AtomicFile>>,
}

impl std::fmt::Debug for StagedTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StagedTasks({})", self.dest.display())
    }
}

impl StagedTasks {
    fn new(dest: PathBuf, mut file: crate::outdir::AtomicFile, stage: bool) -> Result<Self> {
        file.flush()?;
        let file = if stage {
            Some(file)
        } else {
            file.commit()?;
            None
        };
        Ok(StagedTasks { dest, file: std::sync::Mutex::new(file) })
    }

    /// Where the tasks can be read now.
    pub fn path(&self) -> PathBuf {
        match &*self.file.lock().unwrap() {
            Some(f) => f.temp_path().to_path_buf(),
            None => self.dest.clone(),
        }
    }

    /// Puts the staged plan.jsonl in place (fsynced); nothing when it is already.
    pub fn commit(&self) -> Result<()> {
        if let Some(f) = self.file.lock().unwrap().take() {
            f.commit()?;
        }
        Ok(())
    }
}

impl Planned {
    pub fn resolved(&self) -> u64 {
        self.summary["resolved"].as_u64().unwrap_or(0)
    }
}

/// A source's identity as it enters the key: a local file's size and modification time (ns),
/// written `size:mtime`; nothing for a remote source (its content is checked through the done
/// marker).
#[derive(Debug, Clone, Copy, Default)]
struct Identity(Option<(u64, u128)>);

impl Serialize for Identity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            Some((len, mtime)) => s.collect_str(&format_args!("{len}:{mtime}")),
            None => s.serialize_str(""),
        }
    }
}

/// A path as a map key that hashes only its length and last 32 bytes (paths of one list share
/// long prefixes; equality still compares the whole path).
#[derive(PartialEq, Eq)]
struct PathKey<'a>(&'a Path);

impl std::hash::Hash for PathKey<'_> {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        let b = self.0.as_os_str().as_encoded_bytes();
        h.write_usize(b.len());
        h.write(&b[b.len().saturating_sub(32)..]);
    }
}

/// A local file's identity; None when it is not a file.
fn local_identity(p: &Path) -> Option<Identity> {
    let m = std::fs::metadata(p).ok().filter(|m| m.is_file())?;
    let mtime = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
    Some(Identity(Some((m.len(), mtime))))
}

/// `vidfeat plan`: resolve and validate everything without decoding. Writes `out/plan.jsonl`
/// (one resolved task per line, with its shard and source identity), `out/failures.jsonl`,
/// `out/vocabulary.csv` and `out/plan-summary.json`.
pub fn plan(spec: &JobSpec, out: &Path) -> Result<Planned> {
    crate::outdir::create_dir_all(out)?;
    let mut log = FailureLog::create(&out.join("failures.jsonl"))?;
    let mut w = crate::outdir::AtomicFile::create(&out.join("plan.jsonl"))?;
    let mut planned = resolve(spec, &mut log, Some(&mut w), Some(out))?;
    log.commit()?;
    crate::outdir::write_atomic(&out.join("plan-summary.json"), &serde_json::to_vec_pretty(&planned.summary)?)?;
    // Beside a frozen plan, the new tasks wait for the plan.json that goes with them.
    planned.tasks = StagedTasks::new(out.join("plan.jsonl"), w, out.join("plan.json").exists())?;
    Ok(planned)
}

/// Ingest, labels, shards and the missing-source check, streamed: failures go to `log` as they
/// are found (nothing is held per failure), resolved tasks to `plan_out` as plan.jsonl lines.
fn resolve(spec: &JobSpec, log: &mut FailureLog, mut plan_out: Option<&mut dyn Write>, vocab_dir: Option<&Path>) -> Result<Planned> {
    use serde_json::json;
    let prepared = prepare(spec, log)?;
    if let (Some(v), Some(dir)) = (&prepared.vocab, vocab_dir) {
        crate::outdir::write_atomic(&dir.join("vocabulary.csv"), &v.csv())?;
    }
    // Counted by split and label index as they go (no string per row), named at the end.
    let mut by_split: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_index: HashMap<i64, u64, foldhash::fast::RandomState> = HashMap::default();
    let (mut remote, mut resolved) = (0u64, 0u64);
    // A windowed source (Kinetics clips cut from their full video) is looked at once however
    // many windows share it; other sources are rarely repeated, so they are not remembered (a
    // list of millions of clip files would fill the map for nothing).
    let mut seen: HashMap<PathKey, Option<Identity>, foldhash::fast::RandomState> = HashMap::default();
    let cwd = std::env::current_dir()?;
    let mut shard_tasks: BTreeMap<String, String> = BTreeMap::new();
    // The shard being hashed: (split, index) and its file name. Jobs come sorted by shard.
    let mut current: Option<((&str, u32), String, sha2::Sha256)> = None;
    let mut line = Vec::with_capacity(512);
    let mut whole = sha2::Sha256::new();
    for j in &prepared.jobs {
        let (kind, identity) = match &j.task.source {
            Source::Local(p) if j.task.window.is_some() => ("local", *seen.entry(PathKey(p)).or_insert_with(|| local_identity(p))),
            Source::Local(p) => ("local", local_identity(p)),
            Source::Url(_) => ("url", Some(Identity::default())),
            Source::Id(_) => ("id", Some(Identity::default())),
        };
        let Some(identity) = identity else {
            log.record(Failure {
                id: Some(j.task.id.clone()),
                source: Some(j.task.source.to_string()),
                stage: "plan".into(),
                kind: "not_found".into(),
                reason: if j.task.origin.line > 0 { format!("no such file (row {}:{})", j.task.origin.file, j.task.origin.line) } else { "no such file".into() },
                file: Some(j.task.origin.file.to_string()),
                line: Some(j.task.origin.line),
            })?;
            continue;
        };
        resolved += 1;
        if kind != "local" {
            remote += 1;
        }
        *by_split.entry(j.task.split.as_str()).or_default() += 1;
        for &l in &j.labels {
            *by_index.entry(l).or_default() += 1;
        }
        // Absolute: workers run from other folders (a Slurm task's, a pod's).
        let absolute;
        let source: std::borrow::Cow<str> = match &j.task.source {
            Source::Local(p) if p.is_absolute() => p.to_string_lossy(),
            Source::Local(p) => {
                // Joined to the working folder read once (std::path::absolute asks the kernel
                // for it on every call).
                absolute = std::path::absolute(cwd.join(p)).unwrap_or_else(|_| p.clone());
                absolute.to_string_lossy()
            }
            s => s.to_string().into(),
        };
        let segments: Vec<(i64, i64, f32)> = j.segments().iter().map(|s| (s.start, s.label, s.score)).collect();
        let here = (j.task.split.as_str(), j.shard);
        if current.as_ref().is_none_or(|(at, _, _)| *at != here) {
            if let Some((_, name, h)) = current.take() {
                shard_tasks.insert(name, hex::encode(h.finalize()));
            }
            let name = vidfeat_export::shard_name(here.0, here.1, prepared.shard_counts[here.0]);
            current = Some((here, name, sha2::Sha256::new()));
        }
        let (_, shard_file, hasher) = current.as_mut().unwrap();
        let keyed = KeyedTask { id: &j.task.id, source: &source, kind, identity, window: j.task.window, labels: &j.labels, segments: &segments };
        line.clear();
        serde_json::to_writer(&mut line, &keyed)?;
        hasher.update(&line);
        hasher.update(b"\n");
        if let Some(w) = plan_out.as_mut() {
            // The plan line is the keyed object with the tail's fields after its own: `{keyed..`
            // + `,` + `tail..}` (each task serialized once).
            line.pop();
            line.push(b',');
            let at = line.len();
            let tail = PlanTail { split: &j.task.split, shard: j.shard, shard_file, file: &j.task.origin.file, line: j.task.origin.line };
            serde_json::to_writer(&mut line, &tail)?;
            line.remove(at);
            line.push(b'\n');
            whole.update(&line);
            w.write_all(&line)?;
        }
    }
    if let Some((_, name, h)) = current.take() {
        shard_tasks.insert(name, hex::encode(h.finalize()));
    }
    // Shards without tasks are written too (empty): they get the hash of no tasks.
    let empty = hex::encode(sha2::Sha256::digest(b""));
    for (split, &n) in &prepared.shard_counts {
        for k in 0..n {
            shard_tasks.entry(vidfeat_export::shard_name(split, k, n)).or_insert_with(|| empty.clone());
        }
    }
    let names: HashMap<i64, &str> = prepared.vocab.iter().flat_map(|v| v.classes.iter().map(|c| (c.index, c.name.as_str()))).collect();
    let by_label: BTreeMap<String, u64> = by_index.iter().map(|(i, n)| (names.get(i).map(|s| s.to_string()).unwrap_or_else(|| i.to_string()), *n)).collect();
    let k = |name: &str| log.by_kind.get(name).copied().unwrap_or(0);
    let summary = json!({
        "rows": prepared.list_rows,
        "resolved": resolved,
        "missing_source": k("not_found"),
        "invalid_row": k("invalid_row"),
        "duplicate_id": k("duplicate_id"),
        "unknown_label": k("label_unknown"),
        "remote_sources": remote,
        "by_split": by_split,
        "by_label": by_label,
        "shards": prepared.shard_counts,
        "vocabulary": prepared.vocab.as_ref().map(|v| v.source.clone()),
        "plan": vocab_dir.map(|d| d.join("plan.jsonl").display().to_string()),
    });
    drop(seen);
    // Millions of small allocations would take seconds to free one by one; the process is
    // about to end and hands the memory back whole.
    std::mem::forget(prepared);
    Ok(Planned { summary, shard_tasks, plan_jsonl_sha256: hex::encode(whole.finalize()), tasks: StagedTasks { dest: PathBuf::new(), file: Default::default() } })
}

/// List problems a plan summary counts (what `--strict` refuses).
pub fn plan_problems(s: &serde_json::Value) -> u64 {
    ["missing_source", "invalid_row", "duplicate_id", "unknown_label"].iter().map(|k| s[k].as_u64().unwrap_or(0)).sum()
}

/// `--strict`: resolves the lists (writing nothing) and refuses to start on any problem,
/// naming the first ones.
pub fn check_strict(spec: &JobSpec) -> Result<()> {
    let mut log = FailureLog::counting();
    let planned = resolve(spec, &mut log, None, None)?;
    let n = plan_problems(&planned.summary);
    let first: Vec<String> = log.first.iter().map(|f| serde_json::to_string(f).unwrap_or_default()).collect();
    anyhow::ensure!(n == 0, "--strict: {} in the lists, nothing done; first ones:\n{}", crate::telemetry::count(n, "problem"), first.join("\n"));
    Ok(())
}

/// What `vidfeat plan` freezes (and `vidfeat run` too, into its output folder).
#[cfg(feature = "ffmpeg")]
#[derive(Debug, Clone)]
pub struct FreezeConfig {
    pub model: PathBuf,
    pub sidecar: Option<PathBuf>,
    /// Device for fitting the PCA.
    pub device: String,
    pub decode: crate::pipeline::decode::DecodeSettings,
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
    /// `--predict K` (0: off).
    pub predict: usize,
    /// Replace another dataset found in the folder.
    pub overwrite: bool,
    /// The command and settings that made this plan (see [`crate::pipeline::provenance`]).
    pub provenance: serde_json::Value,
    /// Where the model, sidecar and PCA were given from when they are objects (`s3://...`):
    /// plan.json records these rather than the local copies, so workers elsewhere fetch them.
    pub sources: Sources,
    /// The plan folder's bucket URL when it lives in one (a PCA fitted into it is recorded as
    /// the object `URL/pca.npz`).
    pub out_url: Option<String>,
    /// Further models (`--model A --model B`), fed from the same decode.
    pub extra: Vec<ExtraModel>,
}

/// Another `--model` of a run or plan.
#[cfg(feature = "ffmpeg")]
#[derive(Debug, Clone)]
pub struct ExtraModel {
    /// The features it writes (`--feature-name`, default its name).
    pub feature: String,
    pub model: PathBuf,
    /// Its sidecar (the model path with .json).
    pub sidecar: PathBuf,
    /// Its `--pca` (in --model order); None: fitted.
    pub pca: Option<PathBuf>,
    /// Where they were given from when they are objects.
    pub sources: Sources,
}

#[cfg(feature = "ffmpeg")]
impl FreezeConfig {
    /// Uses the PCAs an earlier run fitted in the folder ([`crate::pipeline::dataset::check_out`]).
    pub fn reuse(&mut self, r: crate::pipeline::dataset::Reuse) {
        if let Some(p) = r.pca {
            self.pca = Some(p);
        }
        for (e, p) in self.extra.iter_mut().zip(r.extra) {
            if let Some(p) = p {
                e.pca = Some(p);
            }
        }
    }
}

/// See [`FreezeConfig::sources`].
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub model: Option<String>,
    pub sidecar: Option<String>,
    pub pca: Option<String>,
}

/// What a plan freezes before any work: the dataset's identity (models, sidecars, PCA choices,
/// vocabulary, schema), checked against the folder's. Loads and runs every model once (one
/// decode must be able to feed them all), loads a given PCA and the vocabulary; hashes the
/// model files.
#[cfg(feature = "ffmpeg")]
pub fn draft(f: &FreezeConfig, spec: &JobSpec) -> Result<crate::pipeline::dataset::Draft> {
    use crate::pipeline::dataset::{vocabulary_identity, Draft, ExtraDraft, SchemaIdentity};
    let model_path = std::fs::canonicalize(&f.model).with_context(|| format!("model {}", f.model.display()))?;
    let sidecar = sidecar_path(f, &model_path)?;
    // The device and the models are checked before any work: an explicit CUDA device that is
    // not there, or a model that loads but does not run with its sidecar, stops here.
    let (device, note) = vidfeat_features::resolve_device(&f.device).map_err(anyhow::Error::msg)?;
    if let Some(n) = note {
        tracing::warn!("{n}");
    }
    let checked = |model: &Path, sidecar: &Path| -> Result<vidfeat_features::Sidecar> {
        let m = vidfeat_features::Model::load(model, Some(sidecar), device)?;
        m.check()?;
        Ok(m.sidecar.clone())
    };
    let side = checked(&model_path, &sidecar)?;
    let mut sides = vec![side.clone()];
    let mut extra = vec![];
    for e in &f.extra {
        let (m, sc) = (std::fs::canonicalize(&e.model).with_context(|| format!("model {}", e.model.display()))?, std::fs::canonicalize(&e.sidecar).with_context(|| format!("model sidecar {}", e.sidecar.display()))?);
        let s = checked(&m, &sc)?;
        extra.push(ExtraDraft {
            feature: e.feature.clone(),
            model: Named { name: s.name.clone(), sha256: vidfeat_features::file_sha256(&m)? },
            sidecar_sha256: vidfeat_features::file_sha256(&sc)?,
            pca: pca_choice(e.pca.as_deref(), f.pca_dims, &s)?,
        });
        sides.push(s);
    }
    crate::pipeline::models::shared_options(&f.decode, &sides.iter().collect::<Vec<_>>())?;
    if f.predict > 0 {
        let Some((_, head)) = predict_head(&sides) else {
            let names: Vec<&str> = sides.iter().map(|s| s.name.as_str()).collect();
            anyhow::bail!("--predict needs a model with a classifier head (its sidecar's \"classifier\"): {} has none (i3d-kinetics-400 has one)", names.join(", "));
        };
        anyhow::ensure!(f.predict <= head.classes, "--predict {}: the classifier has {} classes", f.predict, head.classes);
    }
    let compression: vidfeat_export::Compression = f.compression.parse().map_err(anyhow::Error::msg)?;
    let vocabulary = spec.vocab.as_deref().map(vidfeat_labels::Vocabulary::load).transpose()?.map(|v| vocabulary_identity(&v));
    Ok(Draft {
        layout: "plan",
        model: Named { name: side.name.clone(), sha256: vidfeat_features::file_sha256(&model_path)? },
        sidecar_sha256: vidfeat_features::file_sha256(&sidecar)?,
        pca: pca_choice(f.pca.as_deref(), f.pca_dims, &side)?,
        vocabulary,
        schema: SchemaIdentity::new(f.legacy_2017, f.audio_zero, compression),
        extra,
    })
}

/// The first model (in --model order) with a classifier head: its index and head.
#[cfg(feature = "ffmpeg")]
fn predict_head(sides: &[vidfeat_features::Sidecar]) -> Option<(usize, &vidfeat_features::ClassifierSpec)> {
    sides.iter().enumerate().find_map(|(i, s)| s.classifier.as_ref().map(|h| (i, h)))
}

/// A model's PCA as known before any work: `given` loaded and checked against the model, or
/// one to fit (`--pca-dims`, default 1,024, at most the model's dims).
#[cfg(feature = "ffmpeg")]
fn pca_choice(given: Option<&Path>, dims: Option<usize>, side: &vidfeat_features::Sidecar) -> Result<crate::pipeline::dataset::PcaChoice> {
    use crate::pipeline::dataset::PcaChoice;
    Ok(match given {
        Some(p) => {
            // A given PCA keeps all its components (up to 1,024) unless --pca-dims says otherwise.
            let pca = vidfeat_features::Pca::load(p, dims)?;
            anyhow::ensure!(pca.input_dim() == side.output_dim, "PCA {} takes {}-d features, {} gives {}-d", p.display(), pca.input_dim(), side.name, side.output_dim);
            PcaChoice::Given { path: std::fs::canonicalize(p)?, sha256: pca.content_sha256(), dims: pca.dims }
        }
        None => PcaChoice::Fit { dims: dims.unwrap_or(1024).min(side.output_dim) },
    })
}

#[cfg(feature = "ffmpeg")]
fn sidecar_path(f: &FreezeConfig, model_path: &Path) -> Result<PathBuf> {
    let s = f.sidecar.clone().unwrap_or_else(|| model_path.with_extension("json"));
    std::fs::canonicalize(&s).with_context(|| format!("model sidecar {}", s.display()))
}

/// A frozen plan, or why none could be made.
#[cfg(feature = "ffmpeg")]
pub enum Frozen {
    Plan {
        plan: PlanSettings,
        /// Shards of the folder removed because the plan no longer has them.
        removed: usize,
    },
    /// No frame could be decoded to fit a PCA: the failures of the videos tried.
    NoPca { failures: Vec<Failure> },
}

/// Freezes a plan (after [`plan`] wrote plan.jsonl into `out`, and [`crate::pipeline::dataset::check_out`]
/// accepted the folder): model and sidecar hashed, the PCA given, reused or fitted now on the
/// plan's first frames (`out/pca.npz`), the settings and every shard's key into plan.json,
/// the dataset's identity into dataset.json. Then what no longer matches is cleared: files of
/// shards the plan no longer has, done markers of shards whose downloads changed content, and
/// summary.json when anything changed (it described the folder as it was).
#[cfg(feature = "ffmpeg")]
pub fn freeze(out: &Path, f: &FreezeConfig, planned: &Planned, draft: &crate::pipeline::dataset::Draft) -> Result<Frozen> {
    use crate::pipeline::dataset::{fitted_pca_file, PcaChoice, PcaIdentity};
    // What vidfeat wrote here before this plan replaces the records that name it; a file at a
    // shard's name that no record shows to be vidfeat's is a user's, and is not replaced.
    let owned_before = crate::outdir::owned(out);
    for name in planned.shard_tasks.keys() {
        for level in ["frame", "video"] {
            crate::outdir::refuse_foreign(out, &owned_before, &format!("{level}/{name}"), "move it away, or give another --out")?;
        }
    }
    let model_path = std::fs::canonicalize(&f.model)?;
    let sidecar = sidecar_path(f, &model_path)?;
    // Every model: features, model, sidecar, its --pca (or the fit reused), the draft's choice,
    // where it was given from when an object.
    struct Member<'a> {
        feature: String,
        model: PathBuf,
        sidecar: PathBuf,
        pca: Option<PathBuf>,
        choice: &'a PcaChoice,
        source: Option<String>,
        /// The model's and sidecar's SHA-256, as the draft hashed them.
        hashes: (&'a str, &'a str),
    }
    let mut members = vec![Member {
        feature: "rgb".into(),
        model: model_path.clone(),
        sidecar: sidecar.clone(),
        pca: f.pca.clone(),
        choice: &draft.pca,
        source: f.sources.pca.clone(),
        hashes: (&draft.model.sha256, &draft.sidecar_sha256),
    }];
    for (e, d) in f.extra.iter().zip(&draft.extra) {
        members.push(Member {
            feature: e.feature.clone(),
            model: std::fs::canonicalize(&e.model)?,
            sidecar: std::fs::canonicalize(&e.sidecar)?,
            pca: e.pca.clone(),
            choice: &d.pca,
            source: e.sources.pca.clone(),
            hashes: (&d.model.sha256, &d.sidecar_sha256),
        });
    }
    let sides = members.iter().map(|m| vidfeat_features::Sidecar::load(&m.sidecar)).collect::<Result<Vec<_>, _>>()?;
    // The PCAs to fit, all from one decode of the plan's first videos (the decode the run
    // makes for all its models).
    let fit: Vec<crate::pipeline::pca::FitModel> = members
        .iter()
        .filter(|m| m.pca.is_none())
        .map(|m| crate::pipeline::pca::FitModel { model: m.model.clone(), sidecar: Some(m.sidecar.clone()), out: out.join(fitted_pca_file(&m.feature)), dims: m.choice.dims() })
        .collect();
    if !fit.is_empty() {
        let files: Vec<String> = fit.iter().map(|m| m.out.display().to_string()).collect();
        tracing::info!("fitting {} on up to {} frames into {}", crate::telemetry::count(fit.len() as u64, "PCA"), f.pca_sample_frames, files.join(", "));
        let jobs = crate::pipeline::worker::read_plan_tasks_at(&planned.tasks.path(), &planned.plan_jsonl_sha256)?;
        let cfg = crate::pipeline::pca::PcaFitConfig {
            models: fit,
            decode_for: sides.clone(),
            max_frames: f.pca_sample_frames.max(2),
            device: f.device.clone(),
            decode: crate::pipeline::decode::DecodeSettings { fetch: f.decode.fetch_in(out), ..f.decode.clone() },
            batch_size: f.batch_size.unwrap_or(8),
        };
        let r = crate::pipeline::pca::fit_on(&cfg, &jobs, false)?;
        if r.frames < 2 {
            return Ok(Frozen::NoPca { failures: r.failures });
        }
    }
    // Each model's PCA: (as plan.json records it, loaded, its identity).
    let mut pcas = vec![];
    for m in &members {
        // Fitted here: now, or by an earlier run into this folder (then given back as --pca).
        let fitted_here = m.pca.is_none() || matches!(m.choice, PcaChoice::Fit { .. });
        let file = fitted_pca_file(&m.feature);
        let path = std::fs::canonicalize(m.pca.clone().unwrap_or_else(|| out.join(&file)))?;
        let pca = vidfeat_features::Pca::load(&path, Some(m.choice.dims()))?;
        if pca.supported < pca.dims {
            tracing::warn!(
                "the PCA of `{}` was fitted on {} frames, which support {} of the {} dims kept: the other {} are written as zero. A real dataset's PCA needs at least dims + 1 frames, better 10 x dims (10,000 or more for 1,024 dims): give --pca with one fitted on more video",
                m.feature,
                pca.frames.map_or("an unknown number of".to_string(), |n| n.to_string()),
                pca.supported,
                pca.dims,
                pca.dims - pca.supported
            );
        }
        let recorded = match (&m.source, &f.out_url) {
            (Some(u), _) => u.clone(),
            (None, Some(url)) if m.pca.is_none() => format!("{}/{file}", url.trim_end_matches('/')),
            _ => path.display().to_string(),
        };
        let identity = PcaIdentity { sha256: pca.content_sha256(), dims: pca.dims, fitted_here, source: if fitted_here { file } else { path.display().to_string() } };
        pcas.push((recorded, pca, identity));
    }
    let mut pcas = pcas.into_iter();
    let (pca_recorded, pca, pca_identity) = pcas.next().expect("the first model's PCA");
    // Each model's files as plan.json records them.
    let files = |m: &Member, sources: &Sources, (recorded, p): (String, &vidfeat_features::Pca)| ModelFiles {
        model: sources.model.clone().unwrap_or_else(|| m.model.display().to_string()),
        model_sha256: m.hashes.0.to_string(),
        sidecar: sources.sidecar.clone().unwrap_or_else(|| m.sidecar.display().to_string()),
        sidecar_sha256: m.hashes.1.to_string(),
        pca: recorded,
        pca_sha256: p.content_sha256(),
        pca_dims: p.dims,
        pca_frames: p.frames,
        pca_supported: p.supported,
    };
    let first = files(&members[0], &f.sources, (pca_recorded, &pca));
    let mut extra_models = vec![];
    let mut extra_identities = vec![];
    for ((m, e), (recorded, p, identity)) in members[1..].iter().zip(&f.extra).zip(pcas) {
        extra_models.push(ModelPlan { feature: m.feature.clone(), files: files(m, &e.sources, (recorded, &p)) });
        extra_identities.push(identity);
    }
    // --predict: the first model with a classifier head.
    let head = if f.predict > 0 { predict_head(&sides).map(|(i, h)| (i, h.clone())) } else { None };
    let mut plan = PlanSettings {
        version: PLAN_VERSION,
        first,
        fps: f.fps.clone(),
        sampling: f.decode.sampling.name().to_string(),
        max_frames: f.decode.max_frames,
        resize: f.resize.clone(),
        timeout_s: f.decode.timeout.as_secs(),
        max_pixels: f.decode.max_pixels,
        max_input_bytes: f.decode.max_input_bytes,
        max_duration: f.decode.max_duration,
        max_decoder_bytes: f.decode.max_decoder_bytes,
        compression: draft.schema.compression.clone(),
        legacy_2017: f.legacy_2017,
        audio_zero: f.audio_zero,
        batch_size: f.batch_size,
        fetch_cmd: f.fetch_cmd.clone(),
        vocabulary: draft.vocabulary.clone(),
        predict: f.predict,
        predict_model: head.as_ref().map_or(0, |h| h.0),
        classifier: head.map(|h| h.1),
        extra_models,
        shards: serde_json::from_value(planned.summary["shards"].clone())?,
        tasks: planned.resolved() as usize,
        settings_sha256: String::new(),
        shard_keys: BTreeMap::new(),
        plan_jsonl_sha256: planned.plan_jsonl_sha256.clone(),
        provenance: f.provenance.clone(),
    };
    plan.settings_sha256 = plan.settings_sha256();
    plan.shard_keys = planned
        .shard_tasks
        .iter()
        .map(|(name, tasks)| (name.clone(), hex::encode(sha2::Sha256::digest(format!("vidfeat-shard-v1\n{}\n{name}\n{tasks}\n", plan.settings_sha256)))))
        .collect();
    let old = PlanSettings::load(out).ok();
    let changed = old.as_ref().is_none_or(|o| o.shard_keys != plan.shard_keys || o.settings_sha256 != plan.settings_sha256);
    if changed {
        // It described the folder as it was; the worker that completes the new plan writes it.
        crate::outdir::remove_file(&out.join("summary.json"))?;
    }
    crate::pipeline::dataset::write_identity(out, &draft.identity(pca_identity, extra_identities))?;
    // plan.jsonl and plan.json go in place together (the window between the two renames is
    // one rename: a worker that meets it refuses the pair by its hash).
    planned.tasks.commit()?;
    plan.write(out)?;
    let names: std::collections::BTreeSet<String> = plan.shard_keys.keys().cloned().collect();
    let removed = crate::pipeline::dataset::remove_stale_shards(out, &owned_before, &names)?;
    let refetched = crate::pipeline::worker::invalidate_changed_downloads(out, &plan, &f.decode.fetch_in(out).dir)?;
    if refetched > 0 {
        tracing::info!("{} rebuilt: their downloaded sources now hold other content", crate::telemetry::count(refetched as u64, "shard"));
    }
    Ok(Frozen::Plan { plan, removed })
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
