//! From inputs to jobs: ingest, label mapping, shard assignment, and the failure log.
//! No FFmpeg, no libtorch.
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use vidfeat_export::shard_of;
use vidfeat_ingest::Task;
use vidfeat_labels::{Match, Vocabulary};

/// A task that passed ingest and labels, with its place in the output.
#[derive(Debug, Clone)]
pub struct Job {
    pub task: Task,
    pub labels: Vec<i64>,
    pub shard: u32,
}

/// One failed video (or list row), as written to failures.jsonl.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    pub id: Option<String>,
    pub source: Option<String>,
    pub stage: String,
    pub kind: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub line: Option<usize>,
}

/// `OUT/failures.jsonl`, appended and flushed line by line, with counts by kind.
pub struct FailureLog {
    file: std::io::BufWriter<std::fs::File>,
    pub by_kind: BTreeMap<String, u64>,
}

impl FailureLog {
    pub fn create(path: &Path) -> Result<Self> {
        let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(FailureLog { file: std::io::BufWriter::new(f), by_kind: BTreeMap::new() })
    }

    pub fn record(&mut self, f: Failure) -> Result<()> {
        *self.by_kind.entry(f.kind.clone()).or_default() += 1;
        eprintln!("failed: {} ({}): {}", f.id.as_deref().unwrap_or("-"), f.kind, f.reason);
        serde_json::to_writer(&mut self.file, &f)?;
        self.file.write_all(b"\n")?;
        self.file.flush()?;
        Ok(())
    }

    pub fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }
}

/// What decides the jobs of a run.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub inputs: Vec<PathBuf>,
    pub video_root: Option<PathBuf>,
    pub split: String,
    pub vocab: Option<String>,
    pub shards: Option<u32>,
}

pub struct Prepared {
    /// Sorted by (split, shard, input order).
    pub jobs: Vec<Job>,
    pub shard_counts: BTreeMap<String, u32>,
    pub vocab: Option<Vocabulary>,
    /// Tasks plus invalid rows read from the inputs.
    pub list_rows: usize,
}

/// Maps list labels to indices; without a vocabulary, labels must be integers.
fn map_labels(task: &Task, vocab: Option<&Vocabulary>) -> std::result::Result<Vec<i64>, String> {
    let mut out = vec![];
    for l in &task.labels {
        match vocab {
            Some(v) => match v.lookup(l) {
                Ok((c, m)) => {
                    if m == Match::Normalised {
                        eprintln!("warning: {}: label `{l}` matched `{}` only after case/space normalisation", task.id, c.name);
                    }
                    out.push(c.index)
                }
                Err(e) => return Err(e.to_string()),
            },
            None => match l.parse::<i64>() {
                Ok(i) if i >= 0 => out.push(i),
                _ => return Err(format!("label `{l}` is not an index and no --vocab was given")),
            },
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Ingest, labels and shards. Bad rows and unknown labels go to `log`; the vocabulary used
/// is written as `out/vocabulary.csv`.
pub fn prepare(spec: &JobSpec, out: &Path, log: &mut FailureLog) -> Result<Prepared> {
    let opts = vidfeat_ingest::Options { video_root: spec.video_root.clone(), default_split: spec.split.clone() };
    let ingested = vidfeat_ingest::read_inputs(&spec.inputs, &opts)?;
    let list_rows = ingested.tasks.len() + ingested.errors.len();
    for e in &ingested.errors {
        log.record(Failure {
            id: e.id.clone(),
            source: e.source.clone(),
            stage: "ingest".into(),
            kind: e.kind.to_string(),
            reason: e.message.clone(),
            file: Some(e.origin.file.clone()),
            line: Some(e.origin.line),
        })?;
    }
    let vocab = match &spec.vocab {
        Some(s) => Some(Vocabulary::load(s)?),
        None => None,
    };
    if let Some(v) = &vocab {
        v.write_csv(&out.join("vocabulary.csv"))?;
    }
    let mut jobs = vec![];
    for t in ingested.tasks {
        match map_labels(&t, vocab.as_ref()) {
            Ok(labels) => jobs.push(Job { task: t, labels, shard: 0 }),
            Err(reason) => log.record(Failure {
                id: Some(t.id.clone()),
                source: Some(t.source.to_string()),
                stage: "labels".into(),
                kind: "label_unknown".into(),
                reason,
                file: Some(t.origin.file.clone()),
                line: Some(t.origin.line),
            })?,
        }
    }
    let mut per_split: BTreeMap<String, usize> = BTreeMap::new();
    for j in &jobs {
        *per_split.entry(j.task.split.clone()).or_default() += 1;
    }
    let shard_counts: BTreeMap<String, u32> =
        per_split.iter().map(|(s, &n)| (s.clone(), spec.shards.unwrap_or(n.div_ceil(1000) as u32).max(1))).collect();
    for j in &mut jobs {
        j.shard = shard_of(&j.task.id, shard_counts[&j.task.split]);
    }
    // Stable: keeps input order within a shard.
    jobs.sort_by(|a, b| (&a.task.split, a.shard).cmp(&(&b.task.split, b.shard)));
    Ok(Prepared { jobs, shard_counts, vocab, list_rows })
}
