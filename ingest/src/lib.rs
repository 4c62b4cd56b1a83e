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
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod address;
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
    let mut seen: HashSet<&str, foldhash::fast::RandomState> = HashSet::with_capacity_and_hasher(ids.len(), Default::default());
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
/// Every task is checked on its way out ([`check_task`]): a value that would become part of a
/// path or break a line-oriented output is the row's error, never the run's.
pub fn read_inputs_with(inputs: &[PathBuf], opts: &Options, sink: &mut dyn FnMut(Row)) -> std::io::Result<()> {
    let default_split = if opts.default_split.is_empty() { "train" } else { &opts.default_split };
    check_split(default_split).map_err(|m| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("--split: {m}")))?;
    let sink = &mut |r: Row| sink(r.and_then(check_task));
    for input in inputs {
        if let Some(url) = vidfeat_store::url_of(input) {
            if url.ends_with('/') {
                // A bucket "folder": its video objects, sorted, like a directory crawl.
                let found = vidfeat_store::list(url).map_err(store_io)?;
                for (obj, _) in found.into_iter().filter(|(o, _)| VIDEO_EXTENSIONS.contains(&extension(Path::new(o)).as_str())) {
                    let id = id_from_path(Path::new(&obj[url.len()..]));
                    let origin = Origin { file: obj.as_str().into(), line: 0 };
                    sink(Ok(Task { id, source: Source::Url(obj), window: None, labels: vec![], segments: None, split: default_split.into(), origin }));
                }
                continue;
            }
        } else {
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
        }
        let ext = extension(input);
        match ext.as_str() {
            // Rows stream into the task list: no second copy of a large list in memory.
            "csv" | "tsv" => read_delimited(input, if ext == "tsv" { '\t' } else { ',' }, opts, default_split, sink)?,
            "jsonl" | "ndjson" => read_jsonl(input, default_split, opts.ids_as_sources, sink)?,
            "txt" | "list" => read_txt(input, default_split, sink)?,
            e if VIDEO_EXTENSIONS.contains(&e) => {
                let id = input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                let origin = Origin { file: input.display().to_string().into(), line: 0 };
                let source = match vidfeat_store::url_of(input) {
                    Some(url) => Source::Url(url.to_string()),
                    None => Source::Local(input.clone()),
                };
                sink(Ok(Task { id, source, window: None, labels: vec![], segments: None, split: default_split.into(), origin }))
            }
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{}: not a list (.csv .tsv .jsonl .txt), a directory or a video file", input.display()),
                ))
            }
        }
    }
    Ok(())
}

fn store_io(e: vidfeat_store::StoreError) -> std::io::Error {
    let kind = match e.kind {
        "not_found" => std::io::ErrorKind::NotFound,
        "forbidden" => std::io::ErrorKind::PermissionDenied,
        _ => std::io::ErrorKind::Other,
    };
    std::io::Error::new(kind, e.message)
}

/// A list file to read: a local file, or an object downloaded into a temporary file that is
/// unlinked as soon as it is open (nothing is left behind, whatever happens next).
fn open_list(path: &Path) -> std::io::Result<std::fs::File> {
    let Some(url) = vidfeat_store::url_of(path) else { return std::fs::File::open(path) };
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = std::env::temp_dir().join(format!("vidfeat-list-{}-{n}", std::process::id()));
    vidfeat_store::get_to_file(url, &tmp, u64::MAX).map_err(store_io)?;
    let f = std::fs::File::open(&tmp);
    let _ = std::fs::remove_file(&tmp);
    f
}

/// Longest split name, in bytes.
pub const MAX_SPLIT_LEN: usize = 64;
/// Longest id, in bytes.
pub const MAX_ID_LEN: usize = 1024;

/// Split names become parts of file names (`frame/{split}-00000-of-00004.tfrecord`, journals,
/// done markers), so they are restricted to a set that can never name another folder: ASCII
/// letters, digits, `_`, `-` and `.`, at most 64 characters, not starting with `.`.
pub fn check_split(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= MAX_SPLIT_LEN
        && !s.starts_with('.')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!("split `{}` is not a valid split name (ASCII letters, digits, `_`, `-` and `.`, 1-{MAX_SPLIT_LEN} characters, not starting with `.`)", s.escape_debug()))
    }
}

fn check_no_control(field: &str, s: &str) -> Result<(), String> {
    match s.chars().position(char::is_control) {
        Some(i) => Err(format!("field `{field}`: `{}` has a control character at character {}", s.escape_debug(), i + 1)),
        None => Ok(()),
    }
}

/// The checks every task passes, whatever its list format: the split is a valid name (it
/// becomes part of file names), the id is non-empty, at most 1024 bytes and free of control
/// characters (ids go into line-oriented files and logs), and sources and labels hold no
/// control characters (a NUL cannot reach a C string, a newline cannot forge a log line).
pub fn check_task(t: Task) -> Result<Task, RowError> {
    let bad = |msg: String| RowError { origin: t.origin.clone(), id: Some(t.id.clone()), source: Some(t.source.to_string()), kind: "invalid_row", message: msg };
    if let Err(m) = check_split(&t.split) {
        return Err(bad(format!("field `split`: {m}")));
    }
    if t.id.is_empty() && !matches!(t.source, Source::Id(_)) {
        return Err(bad("field `id`: empty".into()));
    }
    if t.id.len() > MAX_ID_LEN {
        return Err(bad(format!("field `id`: {} bytes, at most {MAX_ID_LEN}", t.id.len())));
    }
    let source = match &t.source {
        Source::Local(p) => p.to_string_lossy(),
        Source::Url(u) | Source::Id(u) => u.as_str().into(),
    };
    let checks = [("id", t.id.as_str()), ("source", &source)];
    for (field, v) in checks.into_iter().chain(t.labels.iter().map(|l| ("labels", l.as_str()))) {
        check_no_control(field, v).map_err(bad)?;
    }
    for sg in t.segments.iter().flat_map(|s| s.iter()) {
        check_no_control("segment_labels", &sg.label).map_err(bad)?;
    }
    Ok(t)
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
    if s.starts_with("http://") || s.starts_with("https://") || vidfeat_store::is_url(s) {
        return Source::Url(s.to_string());
    }
    // A relative source in a list that lives in a bucket is an object beside it.
    if let Some(base) = vidfeat_store::url_of(list) {
        if !s.starts_with("file://") {
            if let Ok(u) = vidfeat_store::join(base, s) {
                return Source::Url(u);
            }
        }
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
    let parse = |name: &str, v: &str| match v.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("`{name}` is not a finite number of seconds >= 0: `{}`", v.escape_debug())),
    };
    match (start.filter(|s| !s.trim().is_empty()), end.filter(|s| !s.trim().is_empty())) {
        (None, None) => Ok(None),
        (Some(s), Some(e)) => {
            let (s, e) = (parse("start", s)?, parse("end", e)?);
            if e <= s {
                return Err(format!("window [{s}, {e}) is empty"));
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

/// Longest list line read, in bytes; a longer one is an error of that line.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Calls `f` with each line of a list file, numbered from 1, as text: a UTF-8 byte-order mark
/// at the start is skipped, and `\n` or `\r\n` end lines. A line that is not UTF-8, holds a NUL
/// byte or is longer than [`MAX_LINE_BYTES`] is handed over as `Err(problem)`; the lines after
/// it are read as usual. Memory stays one line, however long the file.
fn each_line(path: &Path, mut f: impl FnMut(usize, Result<&str, String>) -> std::io::Result<()>) -> std::io::Result<()> {
    use std::io::BufRead;
    let mut r = std::io::BufReader::with_capacity(1 << 16, open_list(path)?);
    let mut buf: Vec<u8> = Vec::new();
    let mut n = 0usize;
    loop {
        buf.clear();
        let (mut read, mut too_long) = (0usize, false);
        loop {
            let avail = r.fill_buf()?;
            if avail.is_empty() {
                break;
            }
            let (take, end) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (avail.len(), false),
            };
            if !too_long {
                if buf.len() + take > MAX_LINE_BYTES {
                    too_long = true;
                    buf.clear();
                } else {
                    buf.extend_from_slice(&avail[..take]);
                }
            }
            r.consume(take);
            read += take;
            if end {
                break;
            }
        }
        if read == 0 {
            return Ok(());
        }
        n += 1;
        if too_long {
            f(n, Err(format!("line longer than {MAX_LINE_BYTES} bytes")))?;
            continue;
        }
        let mut line = buf.as_slice();
        line = line.strip_suffix(b"\n").unwrap_or(line);
        line = line.strip_suffix(b"\r").unwrap_or(line);
        if n == 1 {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        let text = match line.iter().position(|&b| b == 0) {
            Some(i) => Err(format!("NUL byte at column {}", i + 1)),
            None => std::str::from_utf8(line).map_err(|e| format!("not valid UTF-8 (byte {} of the line)", e.valid_up_to() + 1)),
        };
        f(n, text)?;
    }
}

/// The fields of one CSV/TSV line. A field that starts with `"` is quoted: it runs to the next
/// `"` that is not doubled (`""` inside it is a literal quote) and must be followed by the
/// delimiter or the end of the line. A list row is one line, so a quote left open is an error
/// of that line alone and the rows after it are read as usual.
pub fn split_fields(line: &str, delim: char) -> Result<Vec<Cow<'_, str>>, String> {
    let b = line.as_bytes();
    let d = delim as u8;
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        if b.get(i) == Some(&b'"') {
            let opened = i;
            let mut val = String::new();
            i += 1;
            loop {
                let Some(k) = b[i..].iter().position(|&c| c == b'"') else {
                    return Err(format!("unterminated quote (opened at column {})", opened + 1));
                };
                val.push_str(&line[i..i + k]);
                i += k + 1;
                if b.get(i) == Some(&b'"') {
                    val.push('"');
                    i += 1;
                    continue;
                }
                break;
            }
            out.push(Cow::Owned(val));
            match b.get(i) {
                None => return Ok(out),
                Some(&c) if c == d => i += 1,
                Some(_) => return Err(format!("text after a closing quote at column {}", i + 1)),
            }
        } else {
            let end = b[i..].iter().position(|&c| c == d).map_or(b.len(), |k| i + k);
            out.push(Cow::Borrowed(&line[i..end]));
            if end == b.len() {
                return Ok(out);
            }
            i = end + 1;
        }
    }
}

/// How the rows of a CSV/TSV list are read, decided by its header.
enum Layout {
    /// Our columns (`--columns` maps other header names onto them).
    Ours { cs: usize, ci: Option<usize>, cl: Option<usize>, cst: Option<usize>, cen: Option<usize>, csp: Option<usize>, css: Option<usize>, csl: Option<usize>, csc: Option<usize> },
    /// A Kinetics annotation CSV; clips are looked up in `index` under `root`.
    Kinetics { cl: Option<usize>, cy: usize, cs: usize, ce: Option<usize>, csp: Option<usize>, root: PathBuf, index: DirIndex },
}

fn read_delimited(path: &Path, delim: char, opts: &Options, default_split: &str, sink: &mut dyn FnMut(Row)) -> std::io::Result<()> {
    let file: Arc<str> = path.display().to_string().into();
    let bad_header = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{file}: header: {m}"));
    let mut header: Option<(usize, Layout)> = None;
    each_line(path, |line, text| {
        let fields = text.and_then(|t| if t.trim().is_empty() { Ok(vec![]) } else { split_fields(t, delim) });
        let Some((width, layout)) = &header else {
            let fields = fields.map_err(bad_header)?;
            if fields.is_empty() {
                return Ok(());
            }
            let names: Vec<String> = fields.iter().map(|h| h.trim().to_lowercase()).collect();
            header = Some((names.len(), layout_of(&names, path, opts)?));
            return Ok(());
        };
        let fields = match fields {
            Ok(f) if f.is_empty() => return Ok(()),
            Ok(f) => f,
            Err(m) => {
                sink(Err(row_error(path, line, None, m)));
                return Ok(());
            }
        };
        if fields.len() != *width {
            let id = match layout {
                Layout::Ours { ci, .. } => ci.and_then(|c| fields.get(c)).map(|v| v.trim().to_string()),
                Layout::Kinetics { cy, .. } => fields.get(*cy).map(|v| v.trim().to_string()),
            };
            sink(Err(row_error(path, line, id.filter(|s| !s.is_empty()), format!("{} fields, header has {width}", fields.len()))));
            return Ok(());
        }
        let origin = Origin { file: file.clone(), line };
        match layout {
            Layout::Ours { cs, ci, cl, cst, cen, csp, css, csl, csc } => sink(our_row(path, &fields, *cs, [*ci, *cl, *cst, *cen, *csp, *css, *csl, *csc], opts, default_split, origin)),
            Layout::Kinetics { cl, cy, cs, ce, csp, root, index } => sink(kinetics_row(path, &fields, (*cl, *cy, *cs, *ce, *csp), root, index, opts, default_split, origin)),
        }
        Ok(())
    })?;
    if header.is_none() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{file}: empty list (no header line)")));
    }
    Ok(())
}

fn layout_of(headers: &[String], path: &Path, opts: &Options) -> std::io::Result<Layout> {
    let col = |n: &str| {
        let name = opts.columns.get(n).map(String::as_str).unwrap_or(n);
        headers.iter().position(|h| h == name)
    };
    if let (Some(cy), Some(cs)) = (col("youtube_id"), col("time_start")) {
        let root = opts.video_root.clone().unwrap_or_else(|| path.parent().unwrap_or(Path::new(".")).to_path_buf());
        let index = DirIndex::new(&root);
        return Ok(Layout::Kinetics { cl: col("label"), cy, cs, ce: col("time_end"), csp: col("split"), root, index });
    }
    let Some(cs) = col("source") else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: header has no `source` column (got: {}; map one with --columns source=NAME)", path.display(), headers.join(",")),
        ));
    };
    Ok(Layout::Ours {
        cs,
        ci: col("id"),
        cl: col("labels"),
        cst: col("start"),
        cen: col("end"),
        csp: col("split"),
        css: col("segment_start_times"),
        csl: col("segment_labels"),
        csc: col("segment_scores"),
    })
}

/// One row of our CSV/TSV layout. `cols`: id, labels, start, end, split, segment start times,
/// segment labels, segment scores.
fn our_row(path: &Path, fields: &[Cow<str>], cs: usize, cols: [Option<usize>; 8], opts: &Options, default_split: &str, origin: Origin) -> Row {
    let [ci, cl, cst, cen, csp, css, csl, csc] = cols;
    let get = |c: Option<usize>| c.and_then(|c| fields.get(c)).map(|v| v.trim()).filter(|s| !s.is_empty());
    let line = origin.line;
    let id = get(ci).map(str::to_string);
    let src = match (get(Some(cs)), &id) {
        (Some(s), _) => s,
        (None, Some(_)) if opts.ids_as_sources => "",
        (None, _) => return Err(row_error(path, line, id, "empty `source`")),
    };
    let window = parse_window(get(cst), get(cen)).map_err(|m| row_error(path, line, id.clone(), m))?;
    let list = |c| get(c).map(split_labels).unwrap_or_default();
    let segments = parse_segments(&list(css), &list(csl), &list(csc)).map_err(|m| row_error(path, line, id.clone(), m))?;
    let source = if src.is_empty() { Source::Id(id.clone().unwrap_or_default()) } else { resolve_source(path, src) };
    Ok(Task {
        id: id.unwrap_or_else(|| default_id(src)),
        source,
        window,
        labels: get(cl).map(split_labels).unwrap_or_default(),
        segments,
        split: get(csp).unwrap_or(default_split).to_string(),
        origin,
    })
}

/// YouTube ids name files (`{id}_{start:06}_{end:06}.mp4`) and are handed to `--fetch-cmd`:
/// ASCII letters, digits, `-` and `_`, as YouTube's are.
fn check_youtube_id(yid: &str) -> Result<(), String> {
    if yid.len() <= 64 && yid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        Ok(())
    } else {
        Err(format!("field `youtube_id`: `{}` is not a YouTube id (ASCII letters, digits, `-` and `_`)", yid.escape_debug()))
    }
}

#[allow(clippy::too_many_arguments)]
fn kinetics_row(
    path: &Path,
    fields: &[Cow<str>],
    (cl, cy, cs, ce, csp): (Option<usize>, usize, usize, Option<usize>, Option<usize>),
    root: &Path,
    index: &DirIndex,
    opts: &Options,
    default_split: &str,
    origin: Origin,
) -> Row {
    let get = |c: Option<usize>| c.and_then(|c| fields.get(c)).map(|v| v.trim()).filter(|s| !s.is_empty());
    let line = origin.line;
    let Some(yid) = get(Some(cy)) else { return Err(row_error(path, line, None, "empty `youtube_id`")) };
    check_youtube_id(yid).map_err(|m| row_error(path, line, None, m))?;
    let (s, e) = match (get(Some(cs)).map(str::parse::<u32>), get(ce).map(str::parse::<u32>)) {
        (Some(Ok(s)), Some(Ok(e))) if e > s => (s, e),
        _ => return Err(row_error(path, line, Some(yid.into()), "`time_start`/`time_end` must be whole seconds with end > start")),
    };
    let id = format!("{yid}_{s:06}_{e:06}");
    let label = get(cl).map(str::to_string);
    let (source, window) = match find_kinetics_clip(index, root, yid, &id, label.as_deref(), s, e) {
        Some((p, w)) => (Source::Local(p), w),
        // Not on disk: fetch the full video by its YouTube id and cut the window.
        None if opts.ids_as_sources => (Source::Id(yid.to_string()), Some((s as f64, e as f64))),
        // The root was listed: no file-system call is needed to know it is missing.
        None => {
            let path = root.join(format!("{id}.mp4"));
            let message = kinetics_not_found(root, yid, &id, label.as_deref());
            return Err(RowError { origin, id: Some(id), source: Some(path.display().to_string()), kind: "not_found", message });
        }
    };
    Ok(Task { id, source, window, labels: label.into_iter().collect(), segments: None, split: get(csp).unwrap_or(default_split).to_string(), origin })
}

/// The video files under a Kinetics video root and its immediate sub-folders (label folders),
/// listed once and indexed by file stem, so resolving millions of rows costs two hash lookups
/// a row and no file-system calls.
struct DirIndex {
    /// stem -> (relative path, extension rank, folder rank), best first.
    by_stem: HashMap<String, Vec<(String, usize, bool)>, foldhash::fast::RandomState>,
}

const KINETICS_EXTS: [&str; 3] = ["mp4", "mkv", "webm"];

impl DirIndex {
    fn new(root: &Path) -> Self {
        let mut by_stem: HashMap<String, Vec<(String, usize, bool)>, foldhash::fast::RandomState> = HashMap::default();
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
/// window; None when neither is in the index.
fn find_kinetics_clip(index: &DirIndex, root: &Path, yid: &str, clip: &str, label: Option<&str>, s: u32, e: u32) -> Option<(PathBuf, Option<(f64, f64)>)> {
    if let Some(rel) = index.find(clip, label) {
        return Some((root.join(rel), None));
    }
    index.find(yid, label).map(|rel| (root.join(rel), Some((s as f64, e as f64))))
}

/// What a Kinetics row whose video is not on disk was looked for as.
fn kinetics_not_found(root: &Path, yid: &str, clip: &str, label: Option<&str>) -> String {
    let exts = KINETICS_EXTS.join("|");
    let folder = label.map(|l| format!(" or its `{l}/` folder")).unwrap_or_default();
    format!("no clip `{clip}.{{{exts}}}` nor full video `{yid}.{{{exts}}}` in --video-root {}{folder}", root.display())
}

fn read_jsonl(path: &Path, default_split: &str, ids_as_sources: bool, sink: &mut dyn FnMut(Row)) -> std::io::Result<()> {
    let file: Arc<str> = path.display().to_string().into();
    each_line(path, |line, text| {
        let l = match text {
            Ok(l) => l,
            Err(m) => {
                sink(Err(row_error(path, line, None, m)));
                return Ok(());
            }
        };
        if l.trim().is_empty() {
            return Ok(());
        }
        sink(jsonl_row(path, l, default_split, ids_as_sources, Origin { file: file.clone(), line }));
        Ok(())
    })
}

fn jsonl_row(path: &Path, l: &str, default_split: &str, ids_as_sources: bool, origin: Origin) -> Row {
    let line = origin.line;
    let v: serde_json::Value = serde_json::from_str(l).map_err(|e| row_error(path, line, None, format!("not JSON: {e}")))?;
    let s = |k: &str| {
        v.get(k).and_then(|x| match x {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let id = s("id");
    let src = match (s("source").filter(|x| !x.trim().is_empty()), &id) {
        (Some(x), _) => x,
        (None, Some(_)) if ids_as_sources => String::new(),
        (None, _) => return Err(row_error(path, line, id, "missing string `source`")),
    };
    let labels = match v.get("labels") {
        None | Some(serde_json::Value::Null) => vec![],
        Some(serde_json::Value::Array(a)) if a.iter().all(|x| x.is_string()) => a.iter().map(|x| x.as_str().unwrap().trim().to_string()).collect(),
        Some(serde_json::Value::String(x)) => split_labels(x),
        Some(_) => return Err(row_error(path, line, id, "`labels` must be an array of strings")),
    };
    let window = parse_window(s("start").as_deref(), s("end").as_deref()).map_err(|m| row_error(path, line, id.clone(), m))?;
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
    let segments = (|| parse_segments(&seg_list("segment_start_times")?, &seg_list("segment_labels")?, &seg_list("segment_scores")?))()
        .map_err(|m| row_error(path, line, id.clone(), m))?;
    let source = if src.is_empty() { Source::Id(id.clone().unwrap_or_default()) } else { resolve_source(path, &src) };
    Ok(Task {
        id: id.unwrap_or_else(|| default_id(&src)),
        source,
        window,
        labels,
        segments,
        split: s("split").unwrap_or_else(|| default_split.to_string()),
        origin,
    })
}

fn read_txt(path: &Path, default_split: &str, sink: &mut dyn FnMut(Row)) -> std::io::Result<()> {
    let file: Arc<str> = path.display().to_string().into();
    each_line(path, |line, text| {
        match text {
            Err(m) => sink(Err(row_error(path, line, None, m))),
            Ok(l) if l.trim().is_empty() || l.trim_start().starts_with('#') => {}
            Ok(l) => {
                let src = l.trim();
                sink(Ok(Task {
                    id: default_id(src),
                    source: resolve_source(path, src),
                    window: None,
                    labels: vec![],
                    segments: None,
                    split: default_split.to_string(),
                    origin: Origin { file: file.clone(), line },
                }))
            }
        }
        Ok(())
    })
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
        assert_eq!(got.tasks.len(), 2);
        assert_eq!(got.tasks[0].id, "-abc_000010_000020");
        assert_eq!(got.tasks[0].labels, ["flipping pancake"]);
        assert_eq!(got.tasks[0].window, None);
        assert_eq!(got.tasks[1].source, Source::Local(d.path().join("arm wrestling/full.mkv")));
        assert_eq!(got.tasks[1].window, Some((3.0, 13.0)));
        // A missing video is reported with the names it was looked for as, and where.
        assert_eq!(got.errors.len(), 2);
        let missing = &got.errors[0];
        assert_eq!((missing.kind, missing.origin.line, missing.id.as_deref()), ("not_found", 4, Some("gone_000001_000011")));
        assert!(missing.message.contains("gone_000001_000011.{mp4|mkv|webm}") && missing.message.contains("`gone.{mp4|mkv|webm}`"), "{}", missing.message);
        assert!(missing.message.contains(&d.path().display().to_string()) && missing.message.contains("`x/` folder"), "{}", missing.message);
    }

    fn errs(got: &Ingested) -> Vec<(usize, String)> {
        got.errors.iter().map(|e| (e.origin.line, e.message.clone())).collect()
    }

    #[test]
    fn a_row_with_the_wrong_field_count_or_an_open_quote_is_its_own_error() {
        let d = tempfile::tempdir().unwrap();
        let list = d.path().join("l.csv");
        // Line 3 has an extra field (it would shift `Car` into the split); line 4 opens a quote
        // it never closes; line 5 has text after a closing quote; lines 6 and 7 are fine.
        fs::write(&list, "id,source,labels,split\na,a.mp4,Cooking,train\nx1,src,Cooking,Car,train\nb,\"b.mp4,Cooking,train\nc,\"c\"x.mp4,,train\nd,\"d, \"\"quoted\"\".mp4\",,val\ne,e.mp4,,\n").unwrap();
        let got = read_inputs(&[list], &opts()).unwrap();
        let ids: Vec<_> = got.tasks.iter().map(|t| (t.id.as_str(), t.split.as_str())).collect();
        assert_eq!(ids, [("a", "train"), ("d", "val"), ("e", "train")]);
        assert_eq!(got.tasks[1].source, Source::Local(d.path().join("d, \"quoted\".mp4")));
        let e = errs(&got);
        assert_eq!(e.iter().map(|x| x.0).collect::<Vec<_>>(), [3, 4, 5], "{e:?}");
        assert!(e[0].1.contains("5 fields, header has 4"), "{e:?}");
        assert_eq!(got.errors[0].id.as_deref(), Some("x1"));
        assert!(e[1].1.contains("unterminated quote (opened at column 3)"), "{e:?}");
        assert!(e[2].1.contains("after a closing quote"), "{e:?}");
        // Fewer fields than the header, in a Kinetics CSV too.
        let k = d.path().join("k.csv");
        for v in ["abc.mp4", "abd.mp4"] {
            fs::write(d.path().join(v), b"").unwrap();
        }
        fs::write(&k, "label,youtube_id,time_start,time_end,split\nabseiling,abc,1,11\nabseiling,abd,1,11,val\n").unwrap();
        let got = read_inputs(&[k], &opts()).unwrap();
        assert_eq!(got.tasks.len(), 1);
        assert!(errs(&got)[0].1.contains("4 fields, header has 5"), "{:?}", errs(&got));
    }

    #[test]
    fn bom_crlf_bad_utf8_and_nul_in_every_format() {
        let d = tempfile::tempdir().unwrap();
        for v in ["a.mp4", "d.mp4"] {
            fs::write(d.path().join(v), b"").unwrap();
        }
        let bom = b"\xEF\xBB\xBF";
        let cases: [(&str, &[u8]); 5] = [
            ("l.csv", b"id,source,split\r\na,a.mp4,val\r\nb,b\xFF.mp4,val\r\nc,c\x00.mp4,val\r\nd,d.mp4,val\r\n"),
            ("l.tsv", b"id\tsource\tsplit\r\na\ta.mp4\tval\r\nb\tb\xFF.mp4\tval\r\nc\tc\x00.mp4\tval\r\nd\td.mp4\tval\r\n"),
            ("l.jsonl", b"{\"id\":\"a\",\"source\":\"a.mp4\",\"split\":\"val\"}\r\n{\"id\":\"b\",\"source\":\"b\xFF.mp4\"}\r\n{\"id\":\"c\",\"source\":\"c\x00.mp4\"}\r\n{\"id\":\"d\",\"source\":\"d.mp4\",\"split\":\"val\"}\r\n"),
            ("l.txt", b"a.mp4\r\nb\xFF.mp4\r\nc\x00.mp4\r\nd.mp4\r\n"),
            ("k.csv", b"label,youtube_id,time_start,time_end,split\r\nabseiling,a,1,11,val\r\nabseiling,b\xFF,1,11,val\r\nabseiling,c\x00,1,11,val\r\nabseiling,d,1,11,val\r\n"),
        ];
        for (name, body) in cases {
            let p = d.path().join(name);
            fs::write(&p, [bom.as_slice(), body].concat()).unwrap();
            let got = read_inputs(&[p], &opts()).unwrap_or_else(|e| panic!("{name}: {e}"));
            let ids: Vec<_> = got.tasks.iter().map(|t| t.id.split('_').next().unwrap().to_string()).collect();
            assert_eq!(ids, ["a", "d"], "{name}: {:?}", errs(&got));
            let e = errs(&got);
            assert_eq!(e.len(), 2, "{name}: {e:?}");
            let first = if name.ends_with(".jsonl") || name.ends_with(".txt") { 2 } else { 3 };
            assert!(e[0].0 == first && e[0].1.contains("not valid UTF-8"), "{name}: {e:?}");
            assert!(e[1].0 == first + 1 && e[1].1.contains("NUL byte"), "{name}: {e:?}");
            // No BOM or carriage return left in any value.
            for t in &got.tasks {
                assert!(!t.id.contains('\u{feff}') && !t.id.contains('\r') && !t.source.to_string().contains('\r') && !t.source.to_string().contains('\u{feff}'), "{name}: {t:?}");
                if !name.ends_with(".txt") {
                    assert_eq!(t.split, "val", "{name}");
                }
            }
        }
        // A line longer than the limit is one error; the next line is read.
        let p = d.path().join("long.txt");
        fs::write(&p, format!("{}\nok.mp4\n", "x".repeat(MAX_LINE_BYTES + 10))).unwrap();
        let got = read_inputs(&[p], &opts()).unwrap();
        assert_eq!((got.tasks.len(), got.tasks[0].origin.line), (1, 2));
        assert!(errs(&got)[0].1.contains("longer than"));
    }

    #[test]
    fn values_that_would_name_other_folders_are_invalid_rows_in_every_format() {
        let d = tempfile::tempdir().unwrap();
        let hostile = ["../../escaped", "a/b", ".hidden", "..", "x\\y", &"s".repeat(65), "tr ain", "é"];
        for i in 0..hostile.len() {
            fs::write(d.path().join(format!("y{i}.mp4")), b"").unwrap();
        }
        fs::write(d.path().join("ok.mp4"), b"").unwrap();
        let mut csv = String::from("id,source,split\n");
        let mut jsonl = String::new();
        let mut kin = String::from("label,youtube_id,time_start,time_end,split\n");
        for (i, h) in hostile.iter().enumerate() {
            csv.push_str(&format!("v{i},v{i}.mp4,{h}\n"));
            jsonl.push_str(&format!("{}\n", serde_json::json!({"id": format!("v{i}"), "source": "v.mp4", "split": h})));
            kin.push_str(&format!("abseiling,y{i},1,11,{h}\n"));
        }
        csv.push_str("ok,ok.mp4,train.v2\n");
        jsonl.push_str("{\"id\":\"ok\",\"source\":\"ok.mp4\",\"split\":\"train-2\"}\n");
        kin.push_str("abseiling,ok,1,11,val_1\n");
        for (name, body) in [("h.csv", csv.clone()), ("h.tsv", csv.replace(',', "\t")), ("h.jsonl", jsonl), ("k.csv", kin)] {
            let p = d.path().join(name);
            fs::write(&p, body).unwrap();
            let got = read_inputs(&[p], &opts()).unwrap();
            assert_eq!(got.tasks.len(), 1, "{name}: {:?}", got.tasks);
            assert_eq!(got.errors.len(), hostile.len(), "{name}");
            for e in &got.errors {
                assert_eq!(e.kind, "invalid_row");
                assert!(e.message.contains("field `split`") && e.message.contains("not a valid split name"), "{name}: {}", e.message);
                assert!(e.to_string().contains(name), "names the file: {e}");
            }
        }
        // The default split is checked too: a usage problem of the whole input.
        let p = d.path().join("t.txt");
        fs::write(&p, "a.mp4\n").unwrap();
        assert!(read_inputs(&[p], &Options { default_split: "../x".into(), ..opts() }).is_err());
        // Kinetics ids name files: a path in one is refused.
        let k = d.path().join("k2.csv");
        fs::write(&k, "label,youtube_id,time_start,time_end,split\nabseiling,../../etc/x,1,11,val\n").unwrap();
        let got = read_inputs(&[k], &opts()).unwrap();
        assert!(got.tasks.is_empty() && got.errors[0].message.contains("youtube_id"), "{:?}", got.errors);
        // Control characters in ids, sources and labels; windows that are not finite.
        let j = d.path().join("c.jsonl");
        fs::write(&j, "{\"id\":\"a\\nb\",\"source\":\"a.mp4\"}\n{\"id\":\"c\",\"source\":\"c\\u0007.mp4\"}\n{\"id\":\"e\",\"source\":\"e.mp4\",\"labels\":[\"x\\ty\"]}\n{\"id\":\"f\",\"source\":\"f.mp4\",\"start\":\"NaN\"}\n{\"id\":\"g\",\"source\":\"g.mp4\",\"start\":-3}\n{\"id\":\"h\",\"source\":\"h.mp4\",\"end\":\"inf\"}\n{\"id\":\"ok\",\"source\":\"ok.mp4\",\"start\":2}\n").unwrap();
        let got = read_inputs(&[j], &opts()).unwrap();
        assert_eq!(got.tasks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["ok"]);
        assert_eq!(got.tasks[0].window, Some((2.0, f64::INFINITY)));
        let e = errs(&got);
        assert!(e[0].1.contains("field `id`") && e[1].1.contains("field `source`") && e[2].1.contains("field `labels`"), "{e:?}");
        assert!(e[3..].iter().all(|x| x.1.contains("finite number")), "{e:?}");
    }

    #[test]
    fn split_fields_follows_rfc4180_within_a_line() {
        let f = |l: &str| split_fields(l, ',').map(|v| v.into_iter().map(|c| c.into_owned()).collect::<Vec<_>>());
        assert_eq!(f("a,b,,c").unwrap(), ["a", "b", "", "c"]);
        assert_eq!(f("a,").unwrap(), ["a", ""]);
        assert_eq!(f("\"a,b\",\"\"").unwrap(), ["a,b", ""]);
        assert_eq!(f("\"say \"\"hi\"\"\",x").unwrap(), ["say \"hi\"", "x"]);
        assert_eq!(f("plain\"quote,x").unwrap(), ["plain\"quote", "x"]);
        assert_eq!(f("é,\"ü\"").unwrap(), ["é", "ü"]);
        assert!(f("\"open,x").unwrap_err().contains("column 1"));
        assert!(f("x,\"a\"b").unwrap_err().contains("column 6"));
    }
}
