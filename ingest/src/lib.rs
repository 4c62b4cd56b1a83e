//! Video lists and directory crawls into video tasks.
//!
//! Inputs (any mix):
//! * CSV / TSV lists with a header; columns `id,source,labels,start,end,split`, only `source`
//!   required, labels separated by `;`. A relative `source` is relative to the list file.
//!   YouTube-8M 2019 segment labels: `segment_start_times`, `segment_labels`,
//!   `segment_scores` (parallel `;`-separated lists; start times in rows = seconds at 1 fps,
//!   scores default to 1); they become the frame-level `segment_*` context keys.
//! * Kinetics annotation CSVs (`label,youtube_id,time_start,time_end,split[,is_cc]`, test files
//!   without `label`): each clip is looked for under `video_root` as
//!   `{youtube_id}_{time_start:06}_{time_end:06}.{ext}` (also inside a `{label}/` folder), else
//!   as the full video `{youtube_id}.{ext}` cut to the window.
//! * JSONL: one object per line with the same keys (`labels` an array of strings, segment
//!   lists arrays).
//! * TXT: one source (path or URL) per line; `#` starts a comment.
//! * Directories: crawled recursively for video files, in sorted order, without following
//!   symbolic links to directories (so link loops cannot trap the crawl).
//! * Video files: taken as they are.
//!
//! Bad rows do not stop ingestion: each becomes a [`RowError`] naming file, line and problem.
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod fetch;

/// File extensions taken as videos when crawling directories or reading plain inputs.
pub const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "mpg", "mpeg", "ts", "m2ts", "flv", "3gp", "gif", "wmv", "ogv",
];

#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Local(PathBuf),
    Url(String),
    /// Only an id (a YouTube id, say): fetched with `--fetch-cmd`.
    Id(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Local(p) => write!(f, "{}", p.display()),
            Source::Url(u) => f.write_str(u),
            Source::Id(i) => write!(f, "id:{i}"),
        }
    }
}

/// Where a task or an error came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    /// Shared by every row of the same file.
    pub file: Arc<str>,
    /// 1-based line number; 0 when the input was a video file or directory entry.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: String,
    pub source: Source,
    /// Clip window [start, end) in seconds of the source's media time.
    pub window: Option<(f64, f64)>,
    pub labels: Vec<String>,
    /// YouTube-8M 2019 segment labels (boxed: most rows have none, and lists run to millions).
    pub segments: Option<Box<Vec<Segment>>>,
    pub split: String,
    pub origin: Origin,
}

/// One rated segment of a list row: from row `start` (seconds at 1 fps) for 5 rows, `label`
/// (a name or Knowledge-Graph id, mapped like the row's labels) with a rater `score`.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub start: u32,
    pub label: String,
    pub score: f32,
}

/// Builds segments from the three parallel lists YouTube-8M's 2019 records use
/// (`segment_start_times`, `segment_labels`, `segment_scores`; scores default to 1).
fn parse_segments(starts: &[String], labels: &[String], scores: &[String]) -> Result<Option<Box<Vec<Segment>>>, String> {
    if starts.is_empty() && labels.is_empty() && scores.is_empty() {
        return Ok(None);
    }
    if starts.len() != labels.len() || (!scores.is_empty() && scores.len() != starts.len()) {
        return Err(format!(
            "segment lists differ in length: {} segment_start_times, {} segment_labels, {} segment_scores",
            starts.len(),
            labels.len(),
            scores.len()
        ));
    }
    let mut out = Vec::with_capacity(starts.len());
    for (i, (st, label)) in starts.iter().zip(labels).enumerate() {
        let start = st.trim().parse::<u32>().map_err(|_| format!("segment start time `{st}` is not a whole number of seconds"))?;
        let score = match scores.get(i) {
            None => 1.0,
            Some(x) => match x.trim().parse::<f32>() {
                Ok(v) if v.is_finite() => v,
                _ => return Err(format!("segment score `{x}` is not a number")),
            },
        };
        if label.trim().is_empty() {
            return Err("empty segment label".into());
        }
        out.push(Segment { start, label: label.trim().to_string(), score });
    }
    Ok(Some(Box::new(out)))
}

#[derive(Debug, Clone, PartialEq)]
pub struct RowError {
    pub origin: Origin,
    pub id: Option<String>,
    pub source: Option<String>,
    /// `invalid_row`, `duplicate_id`, `not_found`.
    pub kind: &'static str,
    pub message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.origin.file, self.origin.line, self.message)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Where Kinetics clips are looked for (default: the annotation file's folder).
    pub video_root: Option<PathBuf>,
    /// Split for rows that do not name one.
    pub default_split: String,
    /// Header names for our columns in CSV/TSV lists (`id`, `source`, `labels`, `start`, `end`,
    /// `split`), e.g. `source -> path` for `--columns source=path`.
    pub columns: HashMap<String, String>,
    /// A fetch command is configured: rows with an id but no source, and Kinetics rows whose
    /// clip is not on disk, become [`Source::Id`] instead of errors / missing files.
    pub ids_as_sources: bool,
}

/// Our CSV/TSV columns (all but `source` optional).
pub const COLUMNS: &[&str] =
    &["id", "source", "labels", "start", "end", "split", "segment_start_times", "segment_labels", "segment_scores"];

/// Parses `id=vid,source=path,labels=tags` into a column map.
pub fn parse_columns(spec: &str) -> Result<HashMap<String, String>, String> {
    let mut m = HashMap::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| format!("`{part}` is not NAME=HEADER"))?;
        let k = k.trim().to_lowercase();
        if !COLUMNS.contains(&k.as_str()) {
            return Err(format!("unknown column `{k}` ({})", COLUMNS.join(", ")));
        }
        m.insert(k, v.trim().to_lowercase());
    }
    Ok(m)
}

#[derive(Debug, Default)]
pub struct Ingested {
    pub tasks: Vec<Task>,
    pub errors: Vec<RowError>,
}

/// For each id in order, whether an earlier one equals it (the first occurrence wins). One pass
/// over borrowed ids: nothing is copied, which matters for lists of millions of rows.
pub fn repeated_ids<'a>(ids: impl ExactSizeIterator<Item = &'a str>) -> Vec<bool> {
    let mut seen: HashSet<&str> = HashSet::with_capacity(ids.len());
    ids.map(|id| !seen.insert(id)).collect()
}

impl RowError {
    /// The error for a later row that repeats an id.
    pub fn duplicate(t: &Task) -> Self {
        RowError {
            id: Some(t.id.clone()),
            source: Some(t.source.to_string()),
            kind: "duplicate_id",
            message: format!("duplicate id `{}`: the first occurrence wins", t.id),
            origin: t.origin.clone(),
        }
    }
}

impl Ingested {
    fn drop_duplicates(&mut self) {
        let dup = repeated_ids(self.tasks.iter().map(|t| t.id.as_str()));
        if !dup.contains(&true) {
            return;
        }
        let tasks = std::mem::take(&mut self.tasks);
        for (t, d) in tasks.into_iter().zip(dup) {
            if d {
                self.errors.push(RowError::duplicate(&t));
            } else {
                self.tasks.push(t);
            }
        }
    }
}

/// Reads every input in order. Fails only when an input itself cannot be read.
pub fn read_inputs(inputs: &[PathBuf], opts: &Options) -> std::io::Result<Ingested> {
    let mut out = Ingested::default();
    read_inputs_with(inputs, opts, &mut |r| match r {
        Ok(t) => out.tasks.push(t),
        Err(e) => out.errors.push(e),
    })?;
    out.drop_duplicates();
    Ok(out)
}

/// Streams every row of every input, in order, to `sink` (duplicates are not checked here).
pub fn read_inputs_with(inputs: &[PathBuf], opts: &Options, sink: &mut dyn FnMut(Row)) -> std::io::Result<()> {
    let default_split = if opts.default_split.is_empty() { "train" } else { &opts.default_split };
    for input in inputs {
        let meta = std::fs::metadata(input)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", input.display())))?;
        if meta.is_dir() {
            for path in crawl(input)? {
                let id = id_from_path(path.strip_prefix(input).unwrap_or(&path));
                let origin = Origin { file: path.display().to_string().into(), line: 0 };
                sink(Ok(Task { id, source: Source::Local(path), window: None, labels: vec![], segments: None, split: default_split.into(), origin }));
            }
            continue;
        }
        let ext = extension(input);
        let rows = match ext.as_str() {
            // Rows stream into the task list: no second copy of a large list in memory.
            "csv" | "tsv" => {
                read_delimited(input, if ext == "tsv" { b'\t' } else { b',' }, opts, default_split, sink)?;
                vec![]
            }
            "jsonl" | "ndjson" => {
                read_jsonl(input, default_split, opts.ids_as_sources, sink)?;
                vec![]
            }
            "txt" | "list" => read_txt(input, default_split)?,
            e if VIDEO_EXTENSIONS.contains(&e) => {
                let id = input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                let origin = Origin { file: input.display().to_string().into(), line: 0 };
                vec![Ok(Task { id, source: Source::Local(input.clone()), window: None, labels: vec![], segments: None, split: default_split.into(), origin })]
            }
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{}: not a list (.csv .tsv .jsonl .txt), a directory or a video file", input.display()),
                ))
            }
        };
        for r in rows {
            sink(r);
        }
    }
    Ok(())
}

fn extension(p: &Path) -> String {
    p.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default()
}

fn id_from_path(rel: &Path) -> String {
    let s = rel.with_extension("");
    s.to_string_lossy().replace(std::path::MAIN_SEPARATOR, "/")
}

/// Recursive crawl for video files, sorted, not following symlinked directories.
pub fn crawl(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        let mut subdirs = vec![];
        for e in entries {
            let ft = e.file_type()?;
            let p = e.path();
            if ft.is_dir() {
                subdirs.push(p);
            } else if (ft.is_file() || ft.is_symlink() && p.is_file()) && VIDEO_EXTENSIONS.contains(&extension(&p).as_str()) {
                out.push(p);
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    out.sort();
    Ok(out)
}

fn resolve_source(list: &Path, s: &str) -> Source {
    if s.starts_with("http://") || s.starts_with("https://") {
        return Source::Url(s.to_string());
    }
    let s = s.strip_prefix("file://").unwrap_or(s);
    let p = Path::new(s);
    if p.is_absolute() {
        Source::Local(p.to_path_buf())
    } else {
        Source::Local(list.parent().unwrap_or(Path::new(".")).join(p))
    }
}

fn default_id(source: &str) -> String {
    let last = source.trim_end_matches('/').rsplit('/').next().unwrap_or(source);
    let last = last.split(['?', '#']).next().unwrap_or(last);
    let id = Path::new(last).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| last.to_string());
    if id.trim().is_empty() {
        // A source like `/`, `?x` or `.`: no name to take (found by fuzzing the list parsers);
        // an id from the source's hash keeps it unique and stable.
        use sha2::Digest;
        return format!("source-{}", hex::encode(&sha2::Sha256::digest(source.as_bytes())[..6]));
    }
    id
}

fn parse_window(start: Option<&str>, end: Option<&str>) -> Result<Option<(f64, f64)>, String> {
    let parse = |name: &str, v: &str| v.trim().parse::<f64>().map_err(|_| format!("`{name}` is not a number: `{v}`"));
    match (start.filter(|s| !s.trim().is_empty()), end.filter(|s| !s.trim().is_empty())) {
        (None, None) => Ok(None),
        (Some(s), Some(e)) => {
            let (s, e) = (parse("start", s)?, parse("end", e)?);
            if !(s >= 0.0 && e > s && e.is_finite()) {
                return Err(format!("window [{s}, {e}) is empty or negative"));
            }
            Ok(Some((s, e)))
        }
        (Some(s), None) => Ok(Some((parse("start", s)?, f64::INFINITY))),
        (None, Some(e)) => {
            let e = parse("end", e)?;
            if e <= 0.0 {
                return Err(format!("window end {e} is not positive"));
            }
            Ok(Some((0.0, e)))
        }
    }
}

fn split_labels(s: &str) -> Vec<String> {
    s.split(';').map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
}

pub type Row = Result<Task, RowError>;

fn row_error(file: &Path, line: usize, id: Option<String>, msg: impl Into<String>) -> RowError {
    RowError { origin: Origin { file: file.display().to_string().into(), line }, id, source: None, kind: "invalid_row", message: msg.into() }
}

fn read_delimited(path: &Path, delim: u8, opts: &Options, default_split: &str, sink: &mut dyn FnMut(Row)) -> std::io::Result<()> {
    let mut rdr = csv::ReaderBuilder::new().delimiter(delim).flexible(true).from_path(path).map_err(csv_io)?;
    let headers: Vec<String> = rdr.headers().map_err(csv_io)?.iter().map(|h| h.trim().trim_start_matches('\u{feff}').to_lowercase()).collect();
    let col = |n: &str| {
        let name = opts.columns.get(n).map(String::as_str).unwrap_or(n);
        headers.iter().position(|h| h == name)
    };
    let file: Arc<str> = path.display().to_string().into();
    if col("youtube_id").is_some() && col("time_start").is_some() {
        return read_kinetics(path, rdr, &headers, opts, sink);
    }
    let Some(cs) = col("source") else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{file}: header has no `source` column (got: {}; map one with --columns source=NAME)", headers.join(",")),
        ));
    };
    let (ci, cl, cst, cen, csp) = (col("id"), col("labels"), col("start"), col("end"), col("split"));
    let (css, csl, csc) = (col("segment_start_times"), col("segment_labels"), col("segment_scores"));
    each_record(&mut rdr, path, sink, |rec, line, sink| {
        let get = |c: Option<usize>| c.and_then(|c| rec.get(c)).map(str::trim).filter(|s| !s.is_empty());
        let id = get(ci).map(str::to_string);
        let src = match (get(Some(cs)), &id) {
            (Some(s), _) => s,
            (None, Some(_)) if opts.ids_as_sources => "",
            (None, _) => {
                sink(Err(row_error(path, line, id, "empty `source`")));
                return;
            }
        };
        let window = match parse_window(get(cst), get(cen)) {
            Ok(w) => w,
            Err(m) => {
                sink(Err(row_error(path, line, id, m)));
                return;
            }
        };
        let list = |c| get(c).map(split_labels).unwrap_or_default();
        let segments = match parse_segments(&list(css), &list(csl), &list(csc)) {
            Ok(s) => s,
            Err(m) => {
                sink(Err(row_error(path, line, id, m)));
                return;
            }
        };
        let source = if src.is_empty() { Source::Id(id.clone().unwrap_or_default()) } else { resolve_source(path, src) };
        sink(Ok(Task {
            id: id.unwrap_or_else(|| default_id(src)),
            source,
            window,
            labels: get(cl).map(split_labels).unwrap_or_default(),
            segments,
            split: get(csp).unwrap_or(default_split).to_string(),
            origin: Origin { file: file.clone(), line },
        }));
    })
}

/// Runs `f` on every record of a CSV file (one buffer for the whole file), with its line
/// number; unreadable rows go to `sink` as errors naming the line.
fn each_record(
    rdr: &mut csv::Reader<std::fs::File>,
    path: &Path,
    sink: &mut dyn FnMut(Row),
    mut f: impl FnMut(&csv::StringRecord, usize, &mut dyn FnMut(Row)),
) -> std::io::Result<()> {
    let mut rec = csv::StringRecord::new();
    loop {
        match rdr.read_record(&mut rec) {
            Ok(true) => f(&rec, rec.position().map(|p| p.line() as usize).unwrap_or(0), sink),
            Ok(false) => return Ok(()),
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                sink(Err(row_error(path, line, None, format!("unreadable row: {e}"))));
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    return Ok(());
                }
            }
        }
    }
}

fn read_kinetics(path: &Path, mut rdr: csv::Reader<std::fs::File>, headers: &[String], opts: &Options, sink: &mut dyn FnMut(Row)) -> std::io::Result<()> {
    let col = |n: &str| headers.iter().position(|h| h == n);
    let (cl, cy, cs, ce, csp) = (col("label"), col("youtube_id").unwrap(), col("time_start").unwrap(), col("time_end"), col("split"));
    let root = opts.video_root.clone().unwrap_or_else(|| path.parent().unwrap_or(Path::new(".")).to_path_buf());
    let index = DirIndex::new(&root);
    let file: Arc<str> = path.display().to_string().into();
    each_record(&mut rdr, path, sink, |rec, line, sink| {
        let get = |c: Option<usize>| c.and_then(|c| rec.get(c)).map(str::trim).filter(|s| !s.is_empty());
        let Some(yid) = get(Some(cy)) else {
            sink(Err(row_error(path, line, None, "empty `youtube_id`")));
            return;
        };
        let (s, e) = match (get(Some(cs)).map(str::parse::<u32>), get(ce).map(str::parse::<u32>)) {
            (Some(Ok(s)), Some(Ok(e))) if e > s => (s, e),
            _ => {
                sink(Err(row_error(path, line, Some(yid.into()), "`time_start`/`time_end` must be whole seconds with end > start")));
                return;
            }
        };
        let id = format!("{yid}_{s:06}_{e:06}");
        let label = get(cl).map(str::to_string);
        let (source, window) = match find_kinetics_clip(&index, &root, yid, &id, label.as_deref(), s, e) {
            // Not on disk: fetch the full video by its YouTube id and cut the window.
            (p, None) if opts.ids_as_sources && !p.exists() => (Source::Id(yid.to_string()), Some((s as f64, e as f64))),
            (p, w) => (Source::Local(p), w),
        };
        sink(Ok(Task {
            id,
            source,
            window,
            labels: label.into_iter().collect(),
            segments: None,
            split: get(csp).unwrap_or("train").to_string(),
            origin: Origin { file: file.clone(), line },
        }));
    })
}

/// The video files under a Kinetics video root and its immediate sub-folders (label folders),
/// listed once and indexed by file stem, so resolving millions of rows costs two hash lookups
/// a row and no file-system calls.
struct DirIndex {
    /// stem -> (relative path, extension rank, folder rank), best first.
    by_stem: HashMap<String, Vec<(String, usize, bool)>>,
}

const KINETICS_EXTS: [&str; 3] = ["mp4", "mkv", "webm"];

impl DirIndex {
    fn new(root: &Path) -> Self {
        let mut by_stem: HashMap<String, Vec<(String, usize, bool)>> = HashMap::new();
        let mut add = |rel: String, name: &str, in_root: bool| {
            if let Some((stem, ext)) = name.rsplit_once('.') {
                if let Some(rank) = KINETICS_EXTS.iter().position(|e| *e == ext) {
                    by_stem.entry(stem.to_string()).or_default().push((rel, rank, in_root));
                }
            }
        };
        let mut subdirs = vec![];
        if let Ok(rd) = std::fs::read_dir(root) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                match e.file_type() {
                    Ok(t) if t.is_dir() => subdirs.push(name),
                    Ok(_) => add(name.clone(), &name, true),
                    Err(_) => {}
                }
            }
        }
        for sd in subdirs {
            if let Ok(rd) = std::fs::read_dir(root.join(&sd)) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if e.file_type().is_ok_and(|t| !t.is_dir()) {
                        add(format!("{sd}/{name}"), &name, false);
                    }
                }
            }
        }
        DirIndex { by_stem }
    }

    /// The file for `stem`: in the root or in the row's label folder, preferring mp4, mkv, webm.
    fn find(&self, stem: &str, label: Option<&str>) -> Option<&str> {
        let cands = self.by_stem.get(stem)?;
        cands
            .iter()
            .filter(|(rel, _, in_root)| {
                *in_root
                    || label.is_some_and(|l| {
                        let dir = rel.split('/').next().unwrap_or("");
                        dir == l || dir == l.replace(' ', "_")
                    })
            })
            .min_by_key(|(_, rank, in_root)| (*rank, !*in_root))
            .map(|(rel, _, _)| rel.as_str())
    }
}

/// The clip file if present (no window: it is already cut), else the full video with the
/// window, else the conventional clip path (which then fails as `not_found`).
fn find_kinetics_clip(index: &DirIndex, root: &Path, yid: &str, clip: &str, label: Option<&str>, s: u32, e: u32) -> (PathBuf, Option<(f64, f64)>) {
    if let Some(rel) = index.find(clip, label) {
        return (root.join(rel), None);
    }
    if let Some(rel) = index.find(yid, label) {
        return (root.join(rel), Some((s as f64, e as f64)));
    }
    (root.join(format!("{clip}.mp4")), None)
}

fn read_jsonl(path: &Path, default_split: &str, ids_as_sources: bool, sink: &mut dyn FnMut(Row)) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let file: Arc<str> = path.display().to_string().into();
    for (i, l) in text.lines().enumerate() {
        let line = i + 1;
        if l.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = match serde_json::from_str(l) {
            Ok(v) => v,
            Err(e) => {
                sink(Err(row_error(path, line, None, format!("not JSON: {e}"))));
                continue;
            }
        };
        let s = |k: &str| v.get(k).and_then(|x| match x {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        let id = s("id");
        let src = match (s("source").filter(|x| !x.trim().is_empty()), &id) {
            (Some(x), _) => x,
            (None, Some(_)) if ids_as_sources => String::new(),
            (None, _) => {
                sink(Err(row_error(path, line, id, "missing string `source`")));
                continue;
            }
        };
        let labels = match v.get("labels") {
            None | Some(serde_json::Value::Null) => vec![],
            Some(serde_json::Value::Array(a)) if a.iter().all(|x| x.is_string()) => {
                a.iter().map(|x| x.as_str().unwrap().trim().to_string()).collect()
            }
            Some(serde_json::Value::String(x)) => split_labels(x),
            Some(_) => {
                sink(Err(row_error(path, line, id, "`labels` must be an array of strings")));
                continue;
            }
        };
        let window = match parse_window(s("start").as_deref(), s("end").as_deref()) {
            Ok(w) => w,
            Err(m) => {
                sink(Err(row_error(path, line, id, m)));
                continue;
            }
        };
        // Segment lists: JSON arrays (numbers or strings) or `;`-separated strings.
        let seg_list = |k: &str| -> Result<Vec<String>, String> {
            match v.get(k) {
                None | Some(serde_json::Value::Null) => Ok(vec![]),
                Some(serde_json::Value::String(x)) => Ok(split_labels(x)),
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .map(|x| match x {
                        serde_json::Value::String(s) => Ok(s.clone()),
                        serde_json::Value::Number(n) => Ok(n.to_string()),
                        _ => Err(format!("`{k}` holds something other than strings and numbers")),
                    })
                    .collect(),
                Some(_) => Err(format!("`{k}` must be an array")),
            }
        };
        let segments = match (|| parse_segments(&seg_list("segment_start_times")?, &seg_list("segment_labels")?, &seg_list("segment_scores")?))() {
            Ok(s) => s,
            Err(m) => {
                sink(Err(row_error(path, line, id, m)));
                continue;
            }
        };
        let source = if src.is_empty() { Source::Id(id.clone().unwrap_or_default()) } else { resolve_source(path, &src) };
        sink(Ok(Task {
            id: id.unwrap_or_else(|| default_id(&src)),
            source,
            window,
            labels,
            segments,
            split: s("split").unwrap_or_else(|| default_split.to_string()),
            origin: Origin { file: file.clone(), line },
        }));
    }
    Ok(())
}

fn read_txt(path: &Path, default_split: &str) -> std::io::Result<Vec<Row>> {
    let text = std::fs::read_to_string(path)?;
    let file: Arc<str> = path.display().to_string().into();
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| {
            let src = l.trim();
            Ok(Task {
                id: default_id(src),
                source: resolve_source(path, src),
                window: None,
                labels: vec![],
                segments: None,
                split: default_split.to_string(),
                origin: Origin { file: file.clone(), line: i + 1 },
            })
        })
        .collect())
}

fn csv_io(e: csv::Error) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn opts() -> Options {
        Options { video_root: None, default_split: "train".into(), columns: HashMap::new(), ids_as_sources: false }
    }

    #[test]
    fn columns_map_other_headers() {
        let d = tempfile::tempdir().unwrap();
        let list = d.path().join("l.tsv");
        fs::write(&list, "vid\tpath\ttags\n7\ta.mp4\t/m/04rlf;/m/0k4j\n").unwrap();
        assert!(read_inputs(&[list.clone()], &opts()).is_err(), "no source column without a mapping");
        let o = Options { columns: parse_columns("id=vid,source=path,labels=tags").unwrap(), ..opts() };
        let got = read_inputs(&[list], &o).unwrap();
        assert_eq!(got.tasks[0].id, "7");
        assert_eq!(got.tasks[0].labels, ["/m/04rlf", "/m/0k4j"]);
        assert!(parse_columns("colour=x").is_err());
    }

    #[test]
    fn csv_rows_resolve_and_bad_rows_are_named() {
        let d = tempfile::tempdir().unwrap();
        let list = d.path().join("list.csv");
        fs::write(&list, "id,source,labels,start,end,split\na,clips/a.mp4,x;y,,,val\n,/abs/b.mkv,,1.5,4,\nc,,z,,,\nd,d.mp4,,5,2,\na,again.mp4,,,,\n").unwrap();
        let got = read_inputs(&[list.clone()], &opts()).unwrap();
        let ids: Vec<_> = got.tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(got.tasks[0].source, Source::Local(d.path().join("clips/a.mp4")));
        assert_eq!(got.tasks[0].labels, ["x", "y"]);
        assert_eq!(got.tasks[0].split, "val");
        assert_eq!(got.tasks[1].window, Some((1.5, 4.0)));
        assert_eq!(got.tasks[1].split, "train");
        let errs: Vec<_> = got.errors.iter().map(|e| (e.origin.line, e.kind)).collect();
        assert_eq!(errs, [(4, "invalid_row"), (5, "invalid_row"), (6, "duplicate_id")]);
        assert!(got.errors[0].to_string().contains("list.csv:4"));
    }

    #[test]
    fn segment_labels_in_csv_and_jsonl() {
        let d = tempfile::tempdir().unwrap();
        let csv = d.path().join("s.csv");
        fs::write(
            &csv,
            "id,source,labels,segment_start_times,segment_labels,segment_scores\n\
             a,a.mp4,/m/04rlf,0;15,/m/04rlf;Guitar,1;0\n\
             b,b.mp4,,,,\n\
             c,c.mp4,,5;10,x,1\n\
             d,d.mp4,,-5,x,\n\
             e,e.mp4,,5,x,high\n",
        )
        .unwrap();
        let got = read_inputs(&[csv], &opts()).unwrap();
        let seg = |s: u32, l: &str, sc: f32| Segment { start: s, label: l.into(), score: sc };
        assert_eq!(got.tasks[0].segments.as_deref(), Some(&vec![seg(0, "/m/04rlf", 1.0), seg(15, "Guitar", 0.0)]));
        assert_eq!(got.tasks[1].segments, None);
        let errs: Vec<_> = got.errors.iter().map(|e| (e.origin.line, e.message.clone())).collect();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].1.contains("differ in length"), "{errs:?}");
        assert!(errs[1].1.contains("`-5`"), "{errs:?}");
        assert!(errs[2].1.contains("score `high`"), "{errs:?}");

        let jl = d.path().join("s.jsonl");
        fs::write(&jl, "{\"source\":\"v.mp4\",\"segment_start_times\":[30,35],\"segment_labels\":[\"/m/0k4j\",\"/m/0k4j\"]}\n{\"source\":\"w.mp4\",\"segment_start_times\":{}}\n").unwrap();
        let got = read_inputs(&[jl], &opts()).unwrap();
        // Scores default to 1 (a positive rating).
        assert_eq!(got.tasks[0].segments.as_deref(), Some(&vec![seg(30, "/m/0k4j", 1.0), seg(35, "/m/0k4j", 1.0)]));
        assert_eq!(got.errors.len(), 1);
        assert!(got.errors[0].message.contains("must be an array"));
    }

    #[test]
    fn jsonl_txt_and_crawl() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("l.jsonl"), "{\"source\":\"v1.mp4\",\"labels\":[\"arm wrestling\"]}\nnot json\n{\"id\":\"k\",\"source\":\"https://e.org/x.mp4?a=1\"}\n").unwrap();
        let got = read_inputs(&[d.path().join("l.jsonl")], &opts()).unwrap();
        assert_eq!(got.tasks.len(), 2);
        assert_eq!(got.tasks[0].id, "v1");
        assert_eq!(got.tasks[1].source, Source::Url("https://e.org/x.mp4?a=1".into()));
        assert_eq!(got.errors[0].origin.line, 2);

        fs::write(d.path().join("l.txt"), "# comment\nsub/z.webm\n\n/\n?x\n").unwrap();
        let got = read_inputs(&[d.path().join("l.txt")], &opts()).unwrap();
        assert_eq!((got.tasks[0].id.as_str(), got.tasks[0].origin.line), ("z", 2));
        // Sources with no name still get a non-empty, distinct id (a fuzzing find).
        assert!(got.tasks[1].id.starts_with("source-") && got.tasks[2].id.starts_with("source-"));
        assert_ne!(got.tasks[1].id, got.tasks[2].id);

        let v = d.path().join("vids");
        fs::create_dir_all(v.join("b/c")).unwrap();
        for f in ["b/c/2.mp4", "a.mkv", "b/1.MOV", "notes.txt"] {
            fs::write(v.join(f), b"").unwrap();
        }
        #[cfg(unix)]
        std::os::unix::fs::symlink(&v, v.join("b/loop")).unwrap();
        let got = read_inputs(&[v.clone()], &opts()).unwrap();
        let ids: Vec<_> = got.tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["a", "b/1", "b/c/2"]);
    }

    #[test]
    fn kinetics_rows_find_clips_or_full_videos() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("-abc_000010_000020.mp4"), b"").unwrap();
        fs::create_dir_all(d.path().join("arm wrestling")).unwrap();
        fs::write(d.path().join("arm wrestling/full.mkv"), b"").unwrap();
        let csv = d.path().join("k.csv");
        fs::write(&csv, "label,youtube_id,time_start,time_end,split,is_cc\n\"flipping pancake\",-abc,10,20,val,0\narm wrestling,full,3,13,train,1\nx,gone,1,11,val,0\ny,bad,9,3,val,0\n").unwrap();
        let got = read_inputs(&[csv], &opts()).unwrap();
        assert_eq!(got.tasks.len(), 3);
        assert_eq!(got.tasks[0].id, "-abc_000010_000020");
        assert_eq!(got.tasks[0].labels, ["flipping pancake"]);
        assert_eq!(got.tasks[0].window, None);
        assert_eq!(got.tasks[1].source, Source::Local(d.path().join("arm wrestling/full.mkv")));
        assert_eq!(got.tasks[1].window, Some((3.0, 13.0)));
        assert!(matches!(&got.tasks[2].source, Source::Local(p) if !p.exists()));
        assert_eq!(got.errors.len(), 1);
    }
}
