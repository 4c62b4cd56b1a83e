//! What an operator sees while a job runs: stage counters, the progress display, logs, and
//! the per-video event log that `vidfeat report` draws throughput from.
//!
//! * The pipeline bumps process-wide counters ([`COUNTERS`]) as videos move through the stages
//!   (planned, decoded, extracted, written). They cost one relaxed atomic add each.
//! * [`Display`] shows them: indicatif bars when stderr is a terminal (or `--progress always`),
//!   else one `progress` log line every interval (cluster logs), or nothing.
//! * Logs go through `tracing`; [`init_logging`] installs a subscriber (text or JSON, RUST_LOG
//!   filtering) whose writer suspends the bars while a line is written, so logs never tear them.
//! * [`EventLog`] appends one JSON line per finished video to `OUT/events/<worker>.jsonl`.
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};


/// Counts of videos and frames through each stage, for this process.
pub struct Counters {
    /// Videos this process is to handle (its shards, or the list for extract/decode).
    pub planned: AtomicU64,
    /// Videos through the decode stage (failures included) and the frames they gave.
    pub decoded: AtomicU64,
    pub frames_decoded: AtomicU64,
    /// Frames through the CNN.
    pub frames_extracted: AtomicU64,
    /// Videos whose result is recorded (records written, or the failure logged).
    pub written: AtomicU64,
    pub failed: AtomicU64,
    /// Videos found already done (journal, done shards): counted as written, not in rates.
    pub resumed: AtomicU64,
}

pub static COUNTERS: Counters = Counters {
    planned: AtomicU64::new(0),
    decoded: AtomicU64::new(0),
    frames_decoded: AtomicU64::new(0),
    frames_extracted: AtomicU64::new(0),
    written: AtomicU64::new(0),
    failed: AtomicU64::new(0),
    resumed: AtomicU64::new(0),
};

/// Back to zero (a new stage of the same process).
pub fn reset() {
    for c in [&COUNTERS.planned, &COUNTERS.decoded, &COUNTERS.frames_decoded, &COUNTERS.frames_extracted, &COUNTERS.written, &COUNTERS.failed, &COUNTERS.resumed] {
        c.store(0, Relaxed);
    }
}

pub fn planned(n: u64) {
    COUNTERS.planned.fetch_add(n, Relaxed);
}
/// Videos planned here that another worker took (or finished) after all.
pub fn unplanned(n: u64) {
    let _ = COUNTERS.planned.fetch_update(Relaxed, Relaxed, |p| Some(p.saturating_sub(n)));
}
pub fn decoded(frames: u64) {
    COUNTERS.decoded.fetch_add(1, Relaxed);
    COUNTERS.frames_decoded.fetch_add(frames, Relaxed);
}
pub fn extracted(frames: u64) {
    COUNTERS.frames_extracted.fetch_add(frames, Relaxed);
}
pub fn written(ok: bool) {
    COUNTERS.written.fetch_add(1, Relaxed);
    if !ok {
        COUNTERS.failed.fetch_add(1, Relaxed);
    }
}
/// Videos (or list rows) that failed before any decoding (list problems, missing files): they
/// count as planned and as written, failed, so the closing line agrees with the summary.
pub fn failed_before_work(n: u64) {
    for c in [&COUNTERS.planned, &COUNTERS.written, &COUNTERS.failed] {
        c.fetch_add(n, Relaxed);
    }
}
pub fn resumed(n: u64) {
    for c in [&COUNTERS.decoded, &COUNTERS.written, &COUNTERS.resumed] {
        c.fetch_add(n, Relaxed);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub planned: u64,
    pub decoded: u64,
    pub frames_decoded: u64,
    pub frames_extracted: u64,
    pub written: u64,
    pub failed: u64,
    pub resumed: u64,
}

impl Counters {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            planned: self.planned.load(Relaxed),
            decoded: self.decoded.load(Relaxed),
            frames_decoded: self.frames_decoded.load(Relaxed),
            frames_extracted: self.frames_extracted.load(Relaxed),
            written: self.written.load(Relaxed),
            failed: self.failed.load(Relaxed),
            resumed: self.resumed.load(Relaxed),
        }
    }
}

/// `n` and the word, plural when `n` is not 1: `count(1, "video")` is "1 video",
/// `count(3, "class")` "3 classes".
pub fn count(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else if word.ends_with('s') || word.ends_with('x') || word.ends_with("ch") {
        format!("{n} {word}es")
    } else {
        format!("{n} {word}s")
    }
}

/// One progress line: what the periodic log says, and what tests read.
pub fn progress_line(s: &Snapshot, elapsed: Duration) -> String {
    let t = elapsed.as_secs_f64().max(1e-9);
    let fresh = s.written - s.resumed.min(s.written);
    let vps = fresh as f64 / t;
    let fps = s.frames_extracted as f64 / t;
    let left = s.planned.saturating_sub(s.written);
    let eta = if vps > 0.0 && left > 0 { format!(", eta {}", hms(left as f64 / vps)) } else { String::new() };
    format!(
        "progress: {}/{} written ({} failed), {} decoded, {} extracted; {:.2} videos/s, {:.1} rows/s{eta}",
        s.written,
        count(s.planned, "video"),
        s.failed,
        s.decoded,
        count(s.frames_extracted, "row"),
        vps,
        fps
    )
}

fn hms(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

// ---------------------------------------------------------------------------------------------
// Display

/// `--progress`: bars on a terminal and log lines elsewhere (auto), or forced either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    Auto,
    Always,
    Never,
}

impl ProgressMode {
    pub const NAMES: [&'static str; 3] = ["auto", "always", "never"];
}

impl std::str::FromStr for ProgressMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(ProgressMode::Auto),
            "always" => Ok(ProgressMode::Always),
            "never" => Ok(ProgressMode::Never),
            _ => Err(format!("`{s}`: expected auto, always or never")),
        }
    }
}

/// The bars, while they are drawn; the log writer suspends them around each line.
static BARS: Mutex<Option<indicatif::MultiProgress>> = Mutex::new(None);

/// The running display; dropping it stops it (bars cleared, a last progress line logged).
pub struct Display {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Display {
    /// `interval`: how often a progress line is logged when no bars are drawn (zero: never).
    pub fn start(mode: ProgressMode, interval: Duration) -> Display {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bars = match mode {
            ProgressMode::Always => true,
            ProgressMode::Never => false,
            ProgressMode::Auto => tty,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let started = Instant::now();
        let thread = if bars {
            // indicatif draws nothing on a stderr that is not a terminal; `always` means always.
            let target = if tty { indicatif::ProgressDrawTarget::stderr_with_hz(5) } else { indicatif::ProgressDrawTarget::term_like_with_hz(Box::new(AnsiStderr), 5) };
            let multi = indicatif::MultiProgress::with_draw_target(target);
            *BARS.lock().unwrap() = Some(multi.clone());
            Some(std::thread::spawn(move || draw_bars(multi, st)))
        } else if mode != ProgressMode::Never && !interval.is_zero() {
            Some(std::thread::spawn(move || log_lines(st, started, interval)))
        } else {
            None
        };
        Display { stop, thread }
    }
}

/// The process's display, while one runs.
static DISPLAY: Mutex<Option<Display>> = Mutex::new(None);

/// Starts the process's display (see [`Display::start`]).
pub fn start_display(mode: ProgressMode, interval: Duration) {
    *DISPLAY.lock().unwrap() = Some(Display::start(mode, interval));
}

/// Stops the process's display, if one runs: bars cleared, the closing progress line logged.
/// Called before a command prints its summary, so the summary is the last thing shown.
pub fn finish_display() {
    let d = DISPLAY.lock().unwrap().take();
    drop(d);
}

impl Drop for Display {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        *BARS.lock().unwrap() = None;
    }
}

fn draw_bars(multi: indicatif::MultiProgress, stop: Arc<AtomicBool>) {
    let style = |t: &str| indicatif::ProgressStyle::with_template(t).unwrap().progress_chars("=> ");
    let bar = |name: &str, unit: &str, with_eta: bool| {
        let b = multi.add(indicatif::ProgressBar::new(0));
        let eta = if with_eta { " eta {eta}" } else { "" };
        b.set_style(style(&format!("{name:>9} [{{bar:30}}] {{pos}}/{{len}} {unit} {{per_sec}}{eta} {{msg}}")));
        b
    };
    let planned = multi.add(indicatif::ProgressBar::new(0));
    planned.set_style(style("  planned {pos} videos [{elapsed_precise}] {msg}"));
    let decoded = bar("decoded", "videos", false);
    let extracted = bar("extracted", "rows", false);
    let written = bar("written", "videos", true);
    let mut last = None;
    while !stop.load(Relaxed) {
        let s = COUNTERS.snapshot();
        if last != Some(s) {
            planned.set_position(s.planned);
            if s.resumed > 0 {
                planned.set_message(format!("({} already done)", s.resumed));
            }
            for (b, pos, len) in [(&decoded, s.decoded, s.planned), (&extracted, s.frames_extracted, s.frames_decoded), (&written, s.written, s.planned)] {
                b.set_length(len.max(pos));
                b.set_position(pos);
            }
            written.set_message(if s.failed > 0 { format!("({} failed)", s.failed) } else { String::new() });
            last = Some(s);
        }
        std::thread::park_timeout(Duration::from_millis(200));
    }
    for b in [&planned, &decoded, &extracted, &written] {
        b.finish_and_clear();
    }
    let _ = multi.clear();
}

/// stderr as a terminal for `--progress always` when it is not one (a pager, `script`, a
/// CI log that renders ANSI): plain ANSI cursor movement, 80 columns.
#[derive(Debug)]
struct AnsiStderr;

impl indicatif::TermLike for AnsiStderr {
    fn width(&self) -> u16 {
        80
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        if n > 0 { write!(std::io::stderr(), "\x1b[{n}A") } else { Ok(()) }
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        if n > 0 { write!(std::io::stderr(), "\x1b[{n}B") } else { Ok(()) }
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        if n > 0 { write!(std::io::stderr(), "\x1b[{n}C") } else { Ok(()) }
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        if n > 0 { write!(std::io::stderr(), "\x1b[{n}D") } else { Ok(()) }
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        writeln!(std::io::stderr(), "{s}")
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        write!(std::io::stderr(), "{s}")
    }
    fn clear_line(&self) -> std::io::Result<()> {
        write!(std::io::stderr(), "\r\x1b[2K")
    }
    fn flush(&self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn log_lines(stop: Arc<AtomicBool>, started: Instant, interval: Duration) {
    let mut next = interval;
    let mut last = None;
    loop {
        let done = stop.load(Relaxed);
        if done || started.elapsed() >= next {
            let s = COUNTERS.snapshot();
            if last != Some(s) && s.planned > 0 {
                tracing::info!("{}", progress_line(&s, started.elapsed()));
                last = Some(s);
            }
            next = started.elapsed() + interval;
        }
        if done {
            return;
        }
        std::thread::park_timeout(Duration::from_millis(100).min(interval));
    }
}

// ---------------------------------------------------------------------------------------------
// Logging

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub const NAMES: [&'static str; 2] = ["text", "json"];
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("`{s}`: expected text or json")),
        }
    }
}

/// stderr, with the bars (if drawn) lifted out of the way for each write.
struct BarsAwareStderr;

impl Write for BarsAwareStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bars = BARS.lock().unwrap().clone();
        match bars {
            Some(m) => m.suspend(|| std::io::stderr().write_all(buf)).map(|_| buf.len()),
            None => std::io::stderr().write_all(buf).map(|_| buf.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Installs the process's log subscriber: RUST_LOG filters (default `info`), text for people
/// or one JSON object per line for log collectors. Call once, before any work.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let writer = (|| std::io::LineWriter::new(BarsAwareStderr)).with_max_level(tracing::Level::TRACE);
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_target(false);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
}

// ---------------------------------------------------------------------------------------------
// Per-video events

/// `OUT/events/<worker>.jsonl`: one line per video this worker finished, in finishing order:
/// `{"t": unix seconds, "id", "shard", "ok", "kind"?, "rows", "seconds", "lag_mean_s",
/// "lag_max_s"}` (a `{"t", "started": true}` line when a run starts). Not part of the
/// dataset (nothing reads it but `vidfeat report`); written best-effort, a failure to write is
/// logged once and ignored.
pub struct EventLog {
    file: Option<std::io::BufWriter<std::fs::File>>,
    warned: bool,
}

impl EventLog {
    /// The file of a worker's log in `OUT/events/`.
    pub fn file_name(worker: &str) -> String {
        let name: String = worker.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).take(120).collect();
        format!("{name}.jsonl")
    }

    pub fn open(out: &Path, worker: &str) -> EventLog {
        let dir = out.join("events");
        let file = std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::OpenOptions::new().create(true).append(true).open(dir.join(Self::file_name(worker))))
            .map(std::io::BufWriter::new);
        match file {
            Ok(f) => EventLog { file: Some(f), warned: false },
            Err(e) => {
                tracing::warn!("cannot open the event log in {}: {e}", dir.display());
                EventLog { file: None, warned: true }
            }
        }
    }

    /// Records that a run (or worker) started now: throughput is counted from here, start-up
    /// included.
    pub fn started(&mut self) {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        self.line(serde_json::json!({"t": (t * 1000.0).round() / 1000.0, "started": true}));
    }

    fn line(&mut self, v: serde_json::Value) {
        let Some(f) = self.file.as_mut() else { return };
        if let Err(e) = writeln!(f, "{v}").and_then(|_| f.flush()) {
            if !self.warned {
                tracing::warn!("cannot write the event log: {e}");
                self.warned = true;
            }
        }
    }

    /// A finished video: `Ok((rows, seconds of video, (lag mean, lag max)))`, or its failure's kind.
    pub fn video(&mut self, id: &str, shard: &str, outcome: std::result::Result<(u64, f64, (f64, f64)), &str>) {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let mut v = serde_json::json!({"t": (t * 1000.0).round() / 1000.0, "id": id, "shard": shard, "ok": outcome.is_ok()});
        match outcome {
            Ok((rows, seconds, (lag_mean, lag_max))) => {
                v["rows"] = rows.into();
                v["seconds"] = ((seconds * 1000.0).round() / 1000.0).into();
                v["lag_mean_s"] = ((lag_mean * 1e4).round() / 1e4).into();
                v["lag_max_s"] = ((lag_max * 1e4).round() / 1e4).into();
            }
            Err(kind) => v["kind"] = kind.into(),
        }
        self.line(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_line_counts_rates_and_eta_without_resumed_videos() {
        let s = Snapshot { planned: 100, decoded: 60, frames_decoded: 600, frames_extracted: 500, written: 50, failed: 2, resumed: 40 };
        let l = progress_line(&s, Duration::from_secs(10));
        assert!(l.starts_with("progress: 50/100 videos written (2 failed), 60 decoded, 500 rows extracted;"), "{l}");
        let one = Snapshot { planned: 1, decoded: 1, frames_decoded: 1, frames_extracted: 1, written: 1, failed: 0, resumed: 0 };
        assert!(progress_line(&one, Duration::from_secs(1)).starts_with("progress: 1/1 video written (0 failed), 1 decoded, 1 row extracted;"));
        assert_eq!((count(0, "class"), count(1, "class"), count(2, "shard")), ("0 classes".to_string(), "1 class".to_string(), "2 shards".to_string()));
        // 10 fresh videos in 10 s: 1/s, 50 left -> 50 s.
        assert!(l.contains("1.00 videos/s, 50.0 rows/s, eta 50s"), "{l}");
        let done = Snapshot { written: 100, ..s };
        assert!(!progress_line(&done, Duration::from_secs(10)).contains("eta"));
        assert_eq!(hms(3725.0), "1h02m");
        assert_eq!(hms(125.0), "2m05s");
    }
}
