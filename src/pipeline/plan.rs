//! A plan: the lists resolved into `DIR/plan.jsonl` (one task per line, with its shard) and
//! `DIR/failures.jsonl` without decoding ([`plan`]), then frozen into `DIR/plan.json` with the
//! settings, model, sidecar and PCA that shape the output ([`freeze`], which fits a PCA on the
//! plan's first frames when none is given). `vidfeat work` runs a frozen plan.
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use vidfeat_export::SegmentLabel;
use vidfeat_ingest::Task;

use crate::pipeline::jobs::{missing_sources, prepare, FailureLog, Job, JobSpec};

pub const PLAN_VERSION: u32 = 1;

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

/// One line of plan.jsonl.
#[derive(serde::Serialize)]
struct PlanLine<'a> {
    id: &'a str,
    source: &'a str,
    /// `local`, `url` or `id` (fetched with --fetch-cmd).
    kind: &'static str,
    window: Option<(f64, f64)>,
    labels: &'a [i64],
    /// [start, label, score] per segment.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    segments: Vec<(i64, i64, f32)>,
    split: &'a str,
    shard: u32,
    shard_file: String,
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
            "url" => vidfeat_ingest::Source::Url(self.source),
            "id" => vidfeat_ingest::Source::Id(self.source.strip_prefix("id:").unwrap_or(&self.source).to_string()),
            _ => vidfeat_ingest::Source::Local(PathBuf::from(self.source)),
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

/// `vidfeat plan`: resolve and validate everything without decoding. Writes `out/plan.jsonl`
/// (one resolved task per line, with its shard), `out/failures.jsonl` and
/// `out/plan-summary.json`; returns the summary.
pub fn plan(spec: &JobSpec, out: &Path) -> Result<serde_json::Value> {
    use serde_json::json;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut log = FailureLog::create(&out.join("failures.jsonl"))?;
    let prepared = prepare(spec, out, &mut log)?;
    let missing = missing_sources(&prepared.jobs);
    let missing_idx: std::collections::HashSet<usize> = missing.iter().map(|(i, _)| *i).collect();
    for (_, f) in missing {
        log.record(f)?;
    }
    let mut w = std::io::BufWriter::new(std::fs::File::create(out.join("plan.jsonl"))?);
    let mut by_split: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_label: BTreeMap<String, u64> = BTreeMap::new();
    let mut remote = 0u64;
    let names: std::collections::HashMap<i64, &str> =
        prepared.vocab.iter().flat_map(|v| v.classes.iter().map(|c| (c.index, c.name.as_str()))).collect();
    let mut resolved = 0u64;
    for (i, j) in prepared.jobs.iter().enumerate() {
        if missing_idx.contains(&i) {
            continue;
        }
        resolved += 1;
        if matches!(j.task.source, vidfeat_ingest::Source::Url(_) | vidfeat_ingest::Source::Id(_)) {
            remote += 1;
        }
        *by_split.entry(j.task.split.clone()).or_default() += 1;
        for l in &j.labels {
            let key = names.get(l).map(|n| n.to_string()).unwrap_or_else(|| l.to_string());
            *by_label.entry(key).or_default() += 1;
        }
        let n = prepared.shard_counts[&j.task.split];
        // Absolute: workers run from other folders (a Slurm task's, a pod's).
        let source = match &j.task.source {
            vidfeat_ingest::Source::Local(p) if p.is_absolute() => p.display().to_string(),
            vidfeat_ingest::Source::Local(p) => std::path::absolute(p).unwrap_or_else(|_| p.clone()).display().to_string(),
            s => s.to_string(),
        };
        serde_json::to_writer(
            &mut w,
            &PlanLine {
                id: &j.task.id,
                source: &source,
                kind: match j.task.source {
                    vidfeat_ingest::Source::Local(_) => "local",
                    vidfeat_ingest::Source::Url(_) => "url",
                    vidfeat_ingest::Source::Id(_) => "id",
                },
                window: j.task.window,
                labels: &j.labels,
                segments: j.segments().iter().map(|s| (s.start, s.label, s.score)).collect(),
                split: &j.task.split,
                shard: j.shard,
                shard_file: vidfeat_export::shard_name(&j.task.split, j.shard, n),
                file: &j.task.origin.file,
                line: j.task.origin.line,
            },
        )?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
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
        "plan": out.join("plan.jsonl").display().to_string(),
    });
    std::fs::write(out.join("plan-summary.json"), serde_json::to_vec_pretty(&summary)?)?;
    // Millions of small allocations would take seconds to free one by one; the process is
    // about to end and hands the memory back whole.
    std::mem::forget(prepared);
    Ok(summary)
}

/// List problems a plan summary counts (what `--strict` refuses).
pub fn plan_problems(s: &serde_json::Value) -> u64 {
    ["missing_source", "invalid_row", "duplicate_id", "unknown_label"].iter().map(|k| s[k].as_u64().unwrap_or(0)).sum()
}

/// `--strict`: plans the lists into a scratch folder and refuses to start on any problem
/// (naming the first ones).
pub fn check_strict(spec: &JobSpec) -> Result<()> {
    let scratch = std::env::temp_dir().join(format!("vidfeat-strict-{}", std::process::id()));
    let s = plan(spec, &scratch)?;
    let problems: Vec<String> = std::fs::read_to_string(scratch.join("failures.jsonl"))?.lines().take(5).map(str::to_string).collect();
    let _ = std::fs::remove_dir_all(&scratch);
    let n = plan_problems(&s);
    anyhow::ensure!(n == 0, "--strict: {n} problem(s) in the lists, nothing done; first ones:\n{}", problems.join("\n"));
    Ok(())
}

#[cfg(feature = "ffmpeg")]
/// What `vidfeat plan` freezes (and `vidfeat run` too, into its output folder).
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
}

/// Freezes a plan (after [`plan`] wrote plan.jsonl into `out`): model and sidecar hashed,
/// the PCA given or fitted now on the plan's first frames (`out/pca.npz`), settings, shards.
/// `Ok(Err(failures))` when no frame could be decoded to fit a PCA.
#[cfg(feature = "ffmpeg")]
pub fn freeze(spec: &JobSpec, out: &std::path::Path, f: &FreezeConfig, plan_summary: &serde_json::Value) -> Result<std::result::Result<PlanSettings, Vec<crate::pipeline::jobs::Failure>>> {
    let abs = |p: &std::path::Path| std::fs::canonicalize(p).with_context(|| format!("{}", p.display()));
    let model_path = abs(&f.model)?;
    let sidecar = abs(&f.sidecar.clone().unwrap_or_else(|| model_path.with_extension("json")))?;
    let side = vidfeat_features::Sidecar::load(&sidecar)?;
    let dims = f.pca_dims.unwrap_or(1024).min(side.output_dim);
    let pca_path = match &f.pca {
        Some(p) => abs(p)?,
        None => {
            let p = out.join("pca.npz");
            tracing::info!("fitting a PCA on up to {} frames into {}", f.pca_sample_frames, p.display());
            let r = crate::pipeline::pca::pca_fit(&crate::pipeline::pca::PcaFitConfig {
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
    let plan = PlanSettings {
        version: PLAN_VERSION,
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
