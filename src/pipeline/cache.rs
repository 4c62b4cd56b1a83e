//! The frame cache between `vidfeat decode` (CPU nodes, FFmpeg) and `vidfeat extract` (GPU
//! nodes, no FFmpeg needed):
//!
//! ```text
//! CACHE/manifest.json          format, version, frame size, sidecar, decode settings, shard counts
//! CACHE/videos.jsonl           one line per job, in job order: id, source, split, shard, labels,
//!                              frames file, rows, seconds, warnings, or error {kind, reason}
//! CACHE/frames/NNNNNNNN.rgb.zst  zstd of the video's rows, packed RGB24 at the model size
//! CACHE/failures.jsonl         failures of ingest, labels and decoding
//! CACHE/vocabulary.csv         the vocabulary, when one was given
//! ```
//! manifest.json is written last: a cache without it is incomplete.
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use vidfeat_features::Sidecar;
use vidfeat_ingest::{Origin, Source, Task};

use crate::pipeline::consume::{Decoded, Video};
use crate::pipeline::jobs::{Failure, FailureLog, Job, Prepared};

pub const FORMAT: &str = "vidfeat-frame-cache";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedVideo {
    pub idx: usize,
    pub id: String,
    pub source: String,
    pub split: String,
    pub shard: u32,
    pub labels: Vec<i64>,
    /// Segment labels as [start, label, score].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<(i64, i64, f32)>,
    pub frames: Option<String>,
    pub rows: u64,
    pub seconds: f64,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// How far the rows' frames lie from their times: (mean, max) seconds.
    #[serde(default)]
    pub lag: (f64, f64),
    pub error: Option<(String, String)>,
}

pub struct CacheWriter {
    dir: PathBuf,
    index: crate::outdir::AtomicFile,
    manifest: serde_json::Value,
    level: i32,
    frame_bytes: usize,
    pub videos_ok: u64,
    pub rows: u64,
}

impl CacheWriter {
    pub fn create(dir: &Path, prepared: &Prepared, sidecar: &Sidecar, decode: serde_json::Value, level: i32) -> Result<Self> {
        crate::outdir::remove_file(&dir.join("manifest.json"))?;
        // Rebuilt whole: the frames of an earlier cache in this folder go (only files of the
        // names a cache writes: NNNNNNNN.rgb.zst, and their temporary files).
        let frames = dir.join("frames");
        for e in std::fs::read_dir(&frames).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let core = n.strip_prefix('.').and_then(|r| r.rsplit_once(".rgb.zst.").map(|(a, _)| a)).or_else(|| n.strip_suffix(".rgb.zst"));
            if core.is_some_and(|c| c.len() == 8 && c.bytes().all(|b| b.is_ascii_digit())) && e.file_type().is_ok_and(|t| t.is_file()) {
                crate::outdir::remove_file(&e.path())?;
            }
        }
        crate::outdir::create_dir_all(&frames)?;
        let index = crate::outdir::AtomicFile::create(&dir.join("videos.jsonl"))?;
        let (h, w) = (sidecar.input_size[0], sidecar.input_size[1]);
        let manifest = json!({
            "format": FORMAT,
            "version": VERSION,
            "width": w,
            "height": h,
            "sidecar": sidecar,
            "decode": decode,
            "shard_counts": prepared.shard_counts,
            "list_rows": prepared.list_rows,
            "videos": prepared.jobs.len(),
            "vocabulary": prepared.vocab.as_ref().map(|v| v.source.clone()),
        });
        Ok(CacheWriter { dir: dir.to_path_buf(), index, manifest, level, frame_bytes: sidecar.row_bytes(), videos_ok: 0, rows: 0 })
    }

    pub fn add(&mut self, job: &Job, d: Decoded, log: &mut FailureLog) -> Result<()> {
        let mut entry = CachedVideo {
            idx: d.idx,
            id: job.task.id.clone(),
            source: job.task.source.to_string(),
            split: job.task.split.clone(),
            shard: job.shard,
            labels: job.labels.clone(),
            segments: job.segments().iter().map(|s| (s.start, s.label, s.score)).collect(),
            frames: None,
            rows: 0,
            seconds: 0.0,
            warnings: vec![],
            lag: (0.0, 0.0),
            error: None,
        };
        match d.result {
            Ok(Video { frames, rows, seconds, warnings, lag }) => {
                if frames.len() != rows as usize * self.frame_bytes {
                    bail!("video {}: {} bytes for {rows} rows", job.task.id, frames.len());
                }
                let name = format!("frames/{:08}.rgb.zst", d.idx);
                let data = zstd::bulk::compress(&frames, self.level)?;
                crate::outdir::write_atomic(&self.dir.join(&name), &data)?;
                entry.frames = Some(name);
                entry.rows = rows;
                entry.seconds = seconds;
                entry.warnings = warnings;
                entry.lag = lag;
                self.videos_ok += 1;
                self.rows += rows;
            }
            Err((kind, reason)) => {
                log.record(Failure {
                    id: Some(job.task.id.clone()),
                    source: Some(job.task.source.to_string()),
                    stage: "decode".into(),
                    kind: kind.clone(),
                    reason: reason.clone(),
                    file: None,
                    line: None,
                })?;
                entry.error = Some((kind, reason));
            }
        }
        let mut line = serde_json::to_vec(&entry)?;
        line.push(b'\n');
        self.index.write_all(&line)?;
        Ok(())
    }

    /// videos.jsonl in place, then manifest.json, which marks the cache complete.
    pub fn finish(self) -> Result<()> {
        self.index.commit()?;
        crate::outdir::write_atomic(&self.dir.join("manifest.json"), &serde_json::to_vec_pretty(&self.manifest)?)
    }
}

/// An opened cache: its manifest and the jobs it holds.
pub struct CacheReader {
    pub dir: PathBuf,
    pub manifest: serde_json::Value,
    pub videos: Vec<CachedVideo>,
    pub width: u32,
    pub height: u32,
    /// Frames per row: the model's clip length, or 1.
    pub frames_per_row: usize,
}

impl CacheReader {
    pub fn open(dir: &Path) -> Result<Self> {
        let mpath = dir.join("manifest.json");
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&mpath).with_context(|| format!("{}: no manifest.json (not a frame cache, or `vidfeat decode` did not finish)", dir.display()))?,
        )?;
        if manifest["format"] != FORMAT || manifest["version"] != VERSION {
            bail!("{}: not a {FORMAT} version {VERSION}", mpath.display());
        }
        let f = std::fs::File::open(dir.join("videos.jsonl"))?;
        let mut videos = vec![];
        for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
            let v: CachedVideo = serde_json::from_str(&line?).with_context(|| format!("videos.jsonl line {}", i + 1))?;
            if v.idx != videos.len() {
                bail!("videos.jsonl line {}: index {} out of order", i + 1, v.idx);
            }
            videos.push(v);
        }
        let (width, height) = (manifest["width"].as_u64().unwrap_or(0) as u32, manifest["height"].as_u64().unwrap_or(0) as u32);
        let frames_per_row = manifest["sidecar"]["clip"]["frames"].as_u64().unwrap_or(1).max(1) as usize;
        Ok(CacheReader { dir: dir.to_path_buf(), manifest, videos, width, height, frames_per_row })
    }

    /// The jobs, shard counts and vocabulary the cache was made with.
    pub fn prepared(&self) -> Result<Prepared> {
        let jobs = self
            .videos
            .iter()
            .map(|v| Job {
                task: Task {
                    id: v.id.clone(),
                    source: Source::Local(PathBuf::from(&v.source)),
                    window: None,
                    labels: vec![],
                    segments: None,
                    split: v.split.clone(),
                    origin: Origin { file: "videos.jsonl".into(), line: v.idx + 1 },
                },
                labels: v.labels.clone(),
                segments: (!v.segments.is_empty()).then(|| {
                    Box::new(v.segments.iter().map(|&(start, label, score)| vidfeat_export::SegmentLabel { start, label, score }).collect())
                }),
                shard: v.shard,
            })
            .collect();
        let shard_counts: BTreeMap<String, u32> = serde_json::from_value(self.manifest["shard_counts"].clone())?;
        let vocab_path = self.dir.join("vocabulary.csv");
        let vocab = if vocab_path.exists() { Some(vidfeat_labels::Vocabulary::load(vocab_path.to_str().unwrap())?) } else { None };
        Ok(Prepared { jobs, shard_counts, vocab, list_rows: self.manifest["list_rows"].as_u64().unwrap_or(0) as usize })
    }

    /// The failures of ingest and labels recorded while the cache was made.
    pub fn earlier_failures(&self) -> Result<Vec<Failure>> {
        let p = self.dir.join("failures.jsonl");
        if !p.exists() {
            return Ok(vec![]);
        }
        let mut out = vec![];
        for line in std::io::BufReader::new(std::fs::File::open(p)?).lines() {
            let f: Failure = serde_json::from_str(&line?)?;
            if f.stage == "ingest" || f.stage == "labels" {
                out.push(f);
            }
        }
        Ok(out)
    }

    /// Bytes of one row (a clip's frames back to back for a clip model).
    pub fn row_bytes(&self) -> usize {
        self.frames_per_row * (self.width * self.height * 3) as usize
    }

    /// Reads one video's frames back.
    pub fn load(&self, v: &CachedVideo) -> Decoded {
        let result = match (&v.error, &v.frames) {
            (Some((k, r)), _) => Err((k.clone(), r.clone())),
            (None, Some(name)) => {
                let expect = v.rows as usize * self.row_bytes();
                match std::fs::read(self.dir.join(name)).map_err(|e| e.to_string()).and_then(|b| zstd::bulk::decompress(&b, expect).map_err(|e| e.to_string())) {
                    Ok(frames) if frames.len() == expect => Ok(Video { frames, rows: v.rows, seconds: v.seconds, warnings: v.warnings.clone(), lag: v.lag }),
                    Ok(frames) => Err(("cache_corrupt".into(), format!("{name}: {} bytes, expected {expect}", frames.len()))),
                    Err(e) => Err(("cache_corrupt".into(), format!("{name}: {e}"))),
                }
            }
            (None, None) => Err(("cache_corrupt".into(), "entry has neither frames nor error".into())),
        };
        Decoded { idx: v.idx, result }
    }
}
