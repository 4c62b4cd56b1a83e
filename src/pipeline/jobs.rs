//! From inputs to jobs: ingest, label mapping, shard assignment, and the failure log.
//! No FFmpeg, no libtorch.
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;

use vidfeat_export::{shard_of, SegmentLabel};
use vidfeat_ingest::Task;
use vidfeat_labels::{Match, Vocabulary};

/// A task that passed ingest and labels, with its place in the output.
#[derive(Debug, Clone)]
pub struct Job {
    pub task: Task,
    pub labels: Vec<i64>,
    /// Segment labels mapped to indices (boxed: rare, and lists run to millions of rows).
    pub segments: Option<Box<Vec<SegmentLabel>>>,
    pub shard: u32,
}

impl Job {
    pub fn segments(&self) -> &[SegmentLabel] {
        self.segments.as_deref().map(Vec::as_slice).unwrap_or(&[])
    }

    /// Warns about segments that start at or beyond the video's `rows` (they are written as
    /// given, but point past its features).
    pub fn warn_segments_beyond(&self, rows: usize) {
        let beyond: Vec<i64> = self.segments().iter().map(|s| s.start).filter(|&s| s >= rows as i64).collect();
        if !beyond.is_empty() {
            tracing::warn!(
                "{}: {} at row {} beyond its {} (segment start times are rows, seconds at 1 fps)",
                self.task.id,
                if beyond.len() == 1 { "a segment starts".to_string() } else { format!("{} segments start", beyond.len()) },
                beyond.iter().map(i64::to_string).collect::<Vec<_>>().join(", "),
                crate::telemetry::count(rows as u64, "row")
            );
        }
    }
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

impl Failure {
    /// A planned video's failure, with its list file and line.
    pub fn of_job(job: &Job, stage: &str, kind: String, reason: String) -> Failure {
        Failure {
            id: Some(job.task.id.clone()),
            source: Some(job.task.source.to_string()),
            stage: stage.into(),
            kind,
            reason,
            file: Some(job.task.origin.file.to_string()),
            line: Some(job.task.origin.line),
        }
    }
}

/// The failure kinds of a video (as opposed to a list row's: `invalid_row`, `duplicate_id`,
/// `label_unknown`), which `--retry-failed` can name.
pub const VIDEO_FAILURE_KINDS: &[&str] = &[
    "not_found",
    "forbidden_format",
    "too_large",
    "unsupported_format",
    "no_video_stream",
    "unsupported_codec",
    "corrupt",
    "truncated",
    "timeout",
    "empty_window",
    "decode_error",
    "panic",
    "download_failed",
    "forbidden_protocol",
    "forbidden_address",
    "forbidden",
    "model_error",
];

/// The log line of one failed video (or row): its id, kind and reason.
pub fn log_failed(id: &str, kind: &str, reason: &str) {
    tracing::warn!("failed: {id} ({kind}): {reason}");
}

/// `OUT/failures.jsonl`, written line by line through a buffer, with counts by kind: a
/// failure costs its line, nothing is held (a plan of millions of missing files stays flat).
/// The file is written under a temporary name and appears whole at [`FailureLog::commit`];
/// a log dropped without one leaves the old file as it was. Without a file it only counts (and
/// keeps the first few, for messages).
pub struct FailureLog {
    file: Option<crate::outdir::AtomicFile>,
    pub by_kind: BTreeMap<String, u64>,
    /// The first failures, for messages that name a few.
    pub first: Vec<Failure>,
    /// Log the first failures (off for a pass whose failures are logged elsewhere).
    pub echo: bool,
}

/// How many failures a [`FailureLog`] keeps for messages.
const FIRST_KEPT: usize = 5;

impl FailureLog {
    pub fn create(path: &Path) -> Result<Self> {
        let f = crate::outdir::AtomicFile::create(path)?;
        Ok(FailureLog { file: Some(f), by_kind: BTreeMap::new(), first: vec![], echo: true })
    }

    /// A log that writes no file.
    pub fn counting() -> Self {
        FailureLog { file: None, by_kind: BTreeMap::new(), first: vec![], echo: false }
    }

    pub fn record(&mut self, f: Failure) -> Result<()> {
        *self.by_kind.entry(f.kind.clone()).or_default() += 1;
        // The first few on stderr; all of them in the file.
        match self.total() {
            _ if !self.echo => {}
            n if n <= 20 => log_failed(f.id.as_deref().unwrap_or("-"), &f.kind, &f.reason),
            21 => tracing::warn!("more failures only in failures.jsonl"),
            _ => {}
        }
        if let Some(w) = self.file.as_mut() {
            let mut line = serde_json::to_vec(&f)?;
            line.push(b'\n');
            w.write_all(&line)?;
        }
        if self.first.len() < FIRST_KEPT {
            self.first.push(f);
        }
        Ok(())
    }

    /// Puts the file in place (fsynced); later records are only counted.
    pub fn commit(&mut self) -> Result<()> {
        if let Some(f) = self.file.take() {
            f.commit()?;
        }
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
    /// Header names for our CSV/TSV columns (`--columns source=path,...`).
    pub columns: std::collections::HashMap<String, String>,
    /// A fetch command is configured: id-only rows become fetchable sources.
    pub ids_as_sources: bool,
}

pub struct Prepared {
    /// Sorted by (split, shard, input order).
    pub jobs: Vec<Job>,
    pub shard_counts: BTreeMap<String, u32>,
    pub vocab: Option<Vocabulary>,
    /// Tasks plus invalid rows read from the inputs.
    pub list_rows: usize,
}

fn ingest_failure(e: &vidfeat_ingest::RowError) -> Failure {
    Failure {
        id: e.id.clone(),
        source: e.source.clone(),
        stage: "ingest".into(),
        kind: e.kind.to_string(),
        reason: e.message.clone(),
        file: Some(e.origin.file.to_string()),
        line: Some(e.origin.line),
    }
}

/// Maps list labels to indices; without a vocabulary, labels must be integers.
fn map_labels(task: &Task, vocab: Option<&Vocabulary>) -> std::result::Result<Vec<i64>, String> {
    let mut out = vec![];
    for l in &task.labels {
        out.push(map_label(task, l, vocab)?);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Maps segment labels like row labels; segments stay in list order.
fn map_segments(task: &Task, vocab: Option<&Vocabulary>) -> std::result::Result<Option<Box<Vec<SegmentLabel>>>, String> {
    let Some(segs) = &task.segments else { return Ok(None) };
    let mut out = Vec::with_capacity(segs.len());
    for s in segs.iter() {
        let label = map_label(task, &s.label, vocab).map_err(|e| format!("segment at {} s: {e}", s.start))?;
        out.push(SegmentLabel { start: s.start as i64, label, score: s.score });
    }
    Ok(Some(Box::new(out)))
}

fn map_label(task: &Task, l: &str, vocab: Option<&Vocabulary>) -> std::result::Result<i64, String> {
    Ok({
        match vocab {
            Some(v) => match v.lookup(l) {
                Ok((c, m)) => {
                    if m == Match::Normalised {
                        tracing::warn!("{}: label `{l}` matched `{}` only after case/space normalisation", task.id, c.name);
                    }
                    c.index
                }
                Err(e) => return Err(e.to_string()),
            },
            None => match l.parse::<i64>() {
                Ok(i) if i >= 0 => i,
                _ => return Err(format!("label `{l}` is not an index and no --vocab was given")),
            },
        }
    })
}

/// Ingest, labels and shards. Bad rows and unknown labels go to `log` as they are read (in
/// read order, then duplicate ids); a long list is held once, as jobs.
pub fn prepare(spec: &JobSpec, log: &mut FailureLog) -> Result<Prepared> {
    let opts = vidfeat_ingest::Options { video_root: spec.video_root.clone(), default_split: spec.split.clone(), columns: spec.columns.clone(), ids_as_sources: spec.ids_as_sources };
    let vocab = match &spec.vocab {
        Some(s) => Some(Vocabulary::load(s)?),
        None => None,
    };
    // Rows become jobs as they are read (labels mapped on the way).
    let mut jobs: Vec<Job> = vec![];
    let mut list_rows = 0usize;
    let mut error: Option<anyhow::Error> = None;
    let mut record = |f: Failure, log: &mut FailureLog| {
        if let Err(e) = log.record(f) {
            error.get_or_insert(e);
        }
    };
    vidfeat_ingest::read_inputs_with(&spec.inputs, &opts, &mut |r| {
        list_rows += 1;
        match r {
            Err(e) => record(ingest_failure(&e), log),
            Ok(mut t) => match map_labels(&t, vocab.as_ref()).and_then(|l| Ok((l, map_segments(&t, vocab.as_ref())?))) {
                Ok((labels, segments)) => {
                    // The indices are what travels on; the strings are dead weight.
                    t.labels = Vec::new();
                    t.segments = None;
                    jobs.push(Job { task: t, labels, segments, shard: 0 })
                }
                Err(reason) => record(
                    Failure {
                        id: Some(t.id.clone()),
                        source: Some(t.source.to_string()),
                        stage: "labels".into(),
                        kind: "label_unknown".into(),
                        reason,
                        file: Some(t.origin.file.to_string()),
                        line: Some(t.origin.line),
                    },
                    log,
                ),
            },
        }
    })?;
    if let Some(e) = error {
        return Err(e);
    }
    // Duplicate ids: the first wins.
    let dup = vidfeat_ingest::repeated_ids(jobs.iter().map(|j| j.task.id.as_str()));
    if dup.contains(&true) {
        let mut flags = dup.into_iter();
        let mut failures = vec![];
        jobs.retain(|j| {
            let d = flags.next().unwrap_or(false);
            if d {
                failures.push(ingest_failure(&vidfeat_ingest::RowError::duplicate(&j.task)));
            }
            !d
        });
        for f in failures {
            log.record(f)?;
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
    // Stable: keeps input order within a shard. Splits ranked once (no string compares).
    let rank: std::collections::HashMap<&str, usize, foldhash::fast::RandomState> = shard_counts.keys().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
    // sort_by_cached_key is stable and permutes in place.
    jobs.sort_by_cached_key(|j| (rank[j.task.split.as_str()], j.shard));
    drop(rank);
    Ok(Prepared { jobs, shard_counts, vocab, list_rows })
}
