//! `vidfeat report DIR --out report.html`: one self-contained page about an output folder, for
//! an operator to look at: counts, failures by kind with example ids, label / duration /
//! rows-per-video histograms, throughput over time, and a contact sheet per video (its sampled
//! frames as thumbnails with their timestamps) to eyeball sampling and content.
//!
//! Everything is inline (charts are SVG, thumbnails JPEG data URIs): the page loads from a
//! laptop, an artifact store or an air-gapped cluster alike. Its one script reports, on the
//! console, any image that failed to load (what the browser test watches for).
//!
//! Sources in DIR: summary.json; failures.jsonl and, for plan folders, the done markers'
//! failures; the video- and frame-level shards (ids, labels, rows); events/*.jsonl (finish
//! times and durations, written by run/work/extract); vocabulary.csv (label names); and for
//! contact sheets plan.jsonl + plan.json (the sources and the sampling they were made with).
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct ReportConfig {
    pub dir: PathBuf,
    pub out: PathBuf,
    /// Videos that get a contact sheet (the first ones in plan order); 0: none.
    pub sheets: usize,
    /// Thumbnails per contact sheet, at most (its first rows).
    pub thumbs: usize,
    /// Thumbnail width in pixels (16:9 letterboxed).
    pub thumb_width: u32,
}

/// One written video, as the shards and the event log tell it.
#[derive(Debug, Default, Clone)]
struct Video {
    labels: Vec<i64>,
    rows: Option<u64>,
    seconds: Option<f64>,
}

struct Event {
    t: f64,
    ok: bool,
    rows: u64,
}

pub fn report(cfg: &ReportConfig) -> Result<serde_json::Value> {
    let dir = &cfg.dir;
    anyhow::ensure!(dir.is_dir(), "{}: not a folder", dir.display());
    anyhow::ensure!(
        ["summary.json", "plan.json", "dataset.json"].iter().any(|f| dir.join(f).is_file()),
        "{}: not a vidfeat output folder (no summary.json, plan.json or dataset.json): give the --out of a run, plan or extract",
        dir.display()
    );
    let summary: serde_json::Value = match std::fs::read(dir.join("summary.json")) {
        Ok(b) => serde_json::from_slice(&b).context("summary.json")?,
        Err(_) => json!({}),
    };

    // Videos written, from the shards (video level: labels; frame level: rows).
    let mut videos: BTreeMap<String, Video> = BTreeMap::new();
    let mut problems = vec![];
    for (level, f) in shard_files(dir) {
        read_shard(&f, &mut problems, |p| {
            let v = videos.entry(p.id.clone()).or_default();
            if level == "video" {
                v.labels = p.labels.clone();
            } else {
                v.rows = Some(p.lists.get("rgb").map_or(0, |x| x.0 as u64));
            }
        });
    }

    // Failures.
    let mut failures: Vec<crate::pipeline::jobs::Failure> = std::fs::read_to_string(dir.join("failures.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    // A plan folder keeps its videos' failures in the done markers; `run` copies them into
    // failures.jsonl too.
    if let Ok(plan) = crate::pipeline::plan::PlanSettings::load(dir) {
        let have: std::collections::HashSet<(Option<String>, String)> = failures.iter().map(|f| (f.id.clone(), f.kind.clone())).collect();
        failures.extend(crate::pipeline::worker::shard_failures(dir, &plan).into_iter().filter(|f| !have.contains(&(f.id.clone(), f.kind.clone()))));
    }

    // Events: durations, and finish times for throughput (counted from the first start).
    let mut events = vec![];
    let mut first_start: Option<f64> = None;
    for e in std::fs::read_dir(dir.join("events")).into_iter().flatten().flatten() {
        if e.path().extension().is_some_and(|x| x == "jsonl") {
            for l in std::fs::read_to_string(e.path()).unwrap_or_default().lines() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else { continue };
                if let (Some(t), Some(true)) = (v["t"].as_f64(), v["started"].as_bool()) {
                    first_start = Some(first_start.map_or(t, |s: f64| s.min(t)));
                    continue;
                }
                let (Some(t), Some(id)) = (v["t"].as_f64(), v["id"].as_str()) else { continue };
                let ok = v["ok"].as_bool().unwrap_or(false);
                if ok {
                    if let Some(video) = videos.get_mut(id) {
                        video.seconds = v["seconds"].as_f64().or(video.seconds);
                    }
                }
                events.push(Event { t, ok, rows: v["rows"].as_u64().unwrap_or(0) });
            }
        }
    }
    events.sort_by(|a, b| a.t.total_cmp(&b.t));

    let names: BTreeMap<i64, String> = vidfeat_labels::Vocabulary::load(&dir.join("vocabulary.csv").display().to_string())
        .map(|v| v.classes.into_iter().map(|c| (c.index, c.name)).collect())
        .unwrap_or_default();

    let sheets = contact_sheets(cfg, &videos, &summary)?;

    // --- the page ---
    let ok = videos.len() as u64;
    let rows: u64 = videos.values().filter_map(|v| v.rows).sum();
    let mut h = String::new();
    let title = format!("vidfeat report: {}", dir.display());
    write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><link rel=\"icon\" href=\"data:,\"><style>{CSS}</style></head><body>\n<h1>{}</h1>\n<p class=\"sub\">made {} by vidfeat {}</p>\n",
        esc(&title),
        esc(&title),
        esc(&now_utc()),
        env!("CARGO_PKG_VERSION")
    )?;

    // Counts.
    let failed = failures.len() as u64;
    let mut cards = vec![
        ("videos written", ok.to_string()),
        ("videos failed", failed.to_string()),
        ("rows (frames)", rows.to_string()),
    ];
    if let Some(s) = summary["seconds_of_video"].as_f64() {
        cards.push(("hours of video", format!("{:.2}", s / 3600.0)));
    }
    if let Some(w) = summary["wall_time_s"].as_f64() {
        cards.push(("wall time", format!("{:.1} s", w)));
    }
    if let Some(f) = summary["throughput"]["frames_per_s"].as_f64() {
        cards.push(("frames/s", format!("{f:.1}")));
    }
    h.push_str("<div class=\"cards\">");
    for (k, v) in &cards {
        write!(h, "<div class=\"card\"><div class=\"v\">{}</div><div class=\"k\">{}</div></div>", esc(v), esc(k))?;
    }
    h.push_str("</div>\n");
    let mut facts = vec![];
    for (k, v) in [
        ("model", summary["model"]["name"].as_str().or(summary["model"]["path"].as_str())),
        ("device", summary["device"].as_str()),
        ("outcome", summary["outcome"].as_str()),
    ] {
        if let Some(v) = v {
            facts.push(format!("<b>{k}</b> {}", esc(v)));
        }
    }
    if let Some(d) = summary["pca"]["dims"].as_u64() {
        let support = match (summary["pca"]["supported_components"].as_u64(), summary["pca"]["fitted_on_frames"].as_u64()) {
            (Some(k), Some(n)) => format!(" ({k} supported by the {n} frames it was fitted on{})", if k < d { "; the rest written as zero" } else { "" }),
            (Some(k), None) => format!(" ({k} supported)"),
            _ => String::new(),
        };
        facts.push(format!("<b>PCA</b> {d} dims{}", esc(&support)));
    }
    let sampling = summary["settings"]["sampling"].as_str().or(summary["settings"]["settings"]["sampling"].as_str()).or(summary["sampling"].as_str());
    if let Some(m) = sampling {
        let lag = &summary["row_lag"];
        let lag = match (lag["mean_s"].as_f64(), lag["max_s"].as_f64()) {
            (Some(a), Some(b)) => format!(" (a row's frame lies {a:.3} s before its time on average, {b:.3} s at most)"),
            _ => String::new(),
        };
        facts.push(format!("<b>sampling</b> {}{}", esc(m), esc(&lag)));
    }
    if let Some(s) = summary["settings"].as_object() {
        for k in ["fps", "max_frames", "compression", "batch_size"] {
            if let Some(v) = s.get(k) {
                facts.push(format!("<b>{k}</b> {}", esc(v.to_string().trim_matches('"'))));
            }
        }
    }
    if !facts.is_empty() {
        writeln!(h, "<p class=\"facts\">{}</p>", facts.join(" &middot; "))?;
    }
    for p in problems.iter().take(10) {
        writeln!(h, "<p class=\"warn\">shard problem: {}</p>", esc(p))?;
    }
    // --predict: the classifier's accuracy on the labelled videos, and what it confuses.
    let pred = &summary["predictions"];
    if let Some(n) = pred["videos"].as_u64() {
        let pct = |k: &str| pred[k].as_f64().map(|x| format!("{:.1}%", x * 100.0));
        let acc = match (pct("top1"), pct("top5")) {
            (Some(a), Some(b)) => format!(": top-1 {a}, top-5 {b} of the {} labelled", pred["labelled"]),
            _ => " (labels not in its vocabulary: no accuracy)".to_string(),
        };
        writeln!(h, "<p class=\"facts\"><b>predictions</b> {n} videos, {}{} (predictions.jsonl)</p>", esc(pred["vocabulary"].as_str().unwrap_or("")), esc(&acc))?;
        if let Some(c) = pred["most_confused"].as_array().filter(|c| !c.is_empty()) {
            let items: Vec<String> = c.iter().map(|p| format!("{} &rarr; {} ({})", esc(p["label"].as_str().unwrap_or("")), esc(p["predicted"].as_str().unwrap_or("")), p["videos"])).collect();
            writeln!(h, "<p class=\"facts\"><b>most confused</b> {}</p>", items.join(" &middot; "))?;
        }
    }
    let prov = &summary["provenance"];
    if prov.is_object() {
        let mut made = vec![format!("<b>made by</b> vidfeat {}", esc(prov["vidfeat"].as_str().unwrap_or("?")))];
        if let Some(c) = prov["git_commit"].as_str() {
            made.push(format!("<b>commit</b> {}", esc(&c[..c.len().min(12)])));
        }
        if let Some(t) = prov["created_at"].as_str() {
            made.push(format!("<b>at</b> {}", esc(t)));
        }
        if let Some(f) = prov["ffmpeg"].as_object() {
            made.push(format!("<b>FFmpeg</b> {}", esc(&f.iter().map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(", "))));
        }
        if let Some(t) = prov["libtorch"].as_str() {
            made.push(format!("<b>libtorch</b> {}", esc(t)));
        }
        if let Some(w) = prov["workers"].as_array() {
            made.push(format!("<b>workers</b> {}", w.len()));
        }
        writeln!(h, "<p class=\"facts\">{}</p>", made.join(" &middot; "))?;
        if let Some(cmd) = prov["command"].as_array() {
            let line = cmd.iter().filter_map(|a| a.as_str()).map(shell_word).collect::<Vec<_>>().join(" ");
            writeln!(h, "<p class=\"facts\"><b>command</b> <code>{}</code></p>", esc(&line))?;
        }
    }

    // Failures by kind.
    h.push_str("<h2>Failures by kind</h2>\n");
    if failures.is_empty() {
        h.push_str("<p>No video failed.</p>\n");
    } else {
        let mut by_kind: BTreeMap<&str, Vec<&crate::pipeline::jobs::Failure>> = BTreeMap::new();
        for f in &failures {
            by_kind.entry(f.kind.as_str()).or_default().push(f);
        }
        let mut kinds: Vec<_> = by_kind.into_iter().collect();
        kinds.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
        h.push_str("<table><tr><th>kind</th><th>videos</th><th>examples (id: reason)</th></tr>\n");
        for (kind, fs) in &kinds {
            let ex: Vec<String> = fs
                .iter()
                .take(3)
                .map(|f| format!("<code>{}</code>: {}", esc(f.id.as_deref().or(f.source.as_deref()).unwrap_or("-")), esc(&truncate(&f.reason, 160))))
                .collect();
            writeln!(h, "<tr><td><code>{}</code></td><td class=\"n\">{}</td><td>{}</td></tr>", esc(kind), fs.len(), ex.join("<br>"))?;
        }
        h.push_str("</table>\n<p class=\"sub\">All of them, with sources and list lines: failures.jsonl (and done/*.json for plan folders).</p>\n");
    }

    // Histograms.
    h.push_str("<h2>Labels</h2>\n");
    let mut label_counts: BTreeMap<i64, u64> = BTreeMap::new();
    for v in videos.values() {
        for l in &v.labels {
            *label_counts.entry(*l).or_default() += 1;
        }
    }
    let unlabelled = videos.values().filter(|v| v.labels.is_empty()).count();
    if label_counts.is_empty() {
        h.push_str("<p>No labels.</p>\n");
    } else {
        let mut lc: Vec<(i64, u64)> = label_counts.iter().map(|(k, v)| (*k, *v)).collect();
        lc.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let top: Vec<(String, u64)> = lc.iter().take(40).map(|(l, n)| (names.get(l).map(|s| format!("{s} ({l})")).unwrap_or_else(|| l.to_string()), *n)).collect();
        h.push_str(&hbars("videos per label", &top));
        let more = lc.len().saturating_sub(40);
        writeln!(h, "<p class=\"sub\">{} labels in all{}; {unlabelled} videos without a label.</p>", lc.len(), if more > 0 { format!(", the {more} least frequent not shown") } else { String::new() })?;
    }
    h.push_str("<div class=\"row\">");
    let secs: Vec<f64> = videos.values().filter_map(|v| v.seconds).collect();
    h.push_str("<div><h2>Duration</h2>");
    h.push_str(&if secs.is_empty() { "<p>No durations (they come from events/*.jsonl, written by run, work and extract).</p>".into() } else { histogram("videos by duration (s)", &secs, 12) });
    h.push_str("</div><div><h2>Rows per video</h2>");
    let rows_v: Vec<f64> = videos.values().filter_map(|v| v.rows.map(|r| r as f64)).collect();
    h.push_str(&if rows_v.is_empty() { "<p>No frame-level shards.</p>".into() } else { histogram("videos by rows", &rows_v, 12) });
    h.push_str("</div></div>\n");

    // Throughput over time.
    h.push_str("<h2>Throughput over time</h2>\n");
    if events.len() < 2 {
        h.push_str("<p>Not enough events (events/*.jsonl) to draw throughput.</p>\n");
    } else {
        h.push_str(&throughput(&events, first_start));
    }

    // Contact sheets.
    h.push_str("<h2>Contact sheets</h2>\n");
    if sheets.is_empty() {
        h.push_str(&format!("<p>None: {}.</p>\n", if cfg.sheets == 0 { "--sheets 0" } else { "no video written, or neither the sources (plan.jsonl, with FFmpeg) nor the frame cache to take frames from" }));
    }
    for s in &sheets {
        write!(h, "<div class=\"sheet\"><h3><code>{}</code> {}</h3>", esc(&s.id), esc(&s.caption))?;
        match &s.image {
            Ok(b64) => write!(h, "<img alt=\"contact sheet of {}\" src=\"data:image/jpeg;base64,{b64}\">", esc(&s.id))?,
            Err(e) => write!(h, "<p class=\"warn\">{}</p>", esc(e))?,
        }
        h.push_str("</div>\n");
    }
    let with_sheet = sheets.iter().filter(|s| s.image.is_ok()).count();
    if with_sheet > 0 && (ok as usize) > sheets.len() {
        writeln!(h, "<p class=\"sub\">Contact sheets for the first {} of {ok} videos (--sheets).</p>", sheets.len())?;
    }
    h.push_str(SCRIPT);
    h.push_str("</body></html>\n");

    if let Some(p) = cfg.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(p)?;
    }
    crate::outdir::write_atomic(&cfg.out, h.as_bytes())?;
    Ok(json!({
        "report": cfg.out.display().to_string(),
        "bytes": h.len(),
        "videos_ok": ok,
        "videos_failed": failed,
        "rows": rows,
        "labels": label_counts.len(),
        "events": events.len(),
        "contact_sheets": with_sheet,
        "shard_problems": problems,
        "sampling": sampling,
        "row_lag": summary["row_lag"].clone(),
        "predictions": summary["predictions"].clone(),
    }))
}

fn shard_files(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let mut out = vec![];
    for level in ["video", "frame"] {
        let mut fs: Vec<PathBuf> = std::fs::read_dir(dir.join(level))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "tfrecord"))
            .collect();
        fs.sort();
        out.extend(fs.into_iter().map(|p| (level, p)));
    }
    out
}

fn read_shard(path: &Path, problems: &mut Vec<String>, mut f: impl FnMut(&vidfeat_export::Parsed)) {
    let mut problem = |e: vidfeat_export::ExportError| problems.push(format!("{}: {e}", path.display()));
    let records = match vidfeat_export::open_records(path) {
        Ok((r, _)) => r,
        Err(e) => return problem(e),
    };
    for rec in records {
        // A framing error ends the file; a record that does not parse is skipped.
        let rec = match rec {
            Ok(r) => r,
            Err(e) => return problem(e),
        };
        match vidfeat_export::parse_record(&rec) {
            Ok(p) => f(&p),
            Err(e) => problem(e),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Charts (inline SVG)

const W: f64 = 640.0;

/// Horizontal bars, one per (name, count), in the order given.
fn hbars(title: &str, items: &[(String, u64)]) -> String {
    let max = items.iter().map(|x| x.1).max().unwrap_or(1).max(1) as f64;
    let (row, left) = (18.0, 230.0);
    let hgt = items.len() as f64 * row + 10.0;
    let mut s = format!("<svg class=\"chart\" role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {W} {hgt}\" width=\"{W}\" height=\"{hgt}\">", esc(title));
    for (i, (name, n)) in items.iter().enumerate() {
        let y = i as f64 * row + 4.0;
        let w = (W - left - 60.0) * (*n as f64) / max;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><rect x=\"{left}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\" class=\"bar\"><title>{}: {n}</title></rect><text x=\"{}\" y=\"{}\">{n}</text>",
            left - 6.0,
            y + 12.0,
            esc(&truncate(name, 36)),
            row - 4.0,
            esc(name),
            left + w + 4.0,
            y + 12.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Vertical histogram of `values` in `bins` equal-width bins from 0 (or the minimum) to the max.
fn histogram(title: &str, values: &[f64], bins: usize) -> String {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min).min(0.0);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let width = ((hi - lo) / bins as f64).max(1e-9);
    let mut counts = vec![0u64; bins];
    for v in values {
        counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
    }
    let max = *counts.iter().max().unwrap_or(&1) as f64;
    let (w, hgt, base, left) = (320.0, 200.0, 170.0, 30.0);
    let bw = (w - left - 10.0) / bins as f64;
    let mut s = format!("<svg class=\"chart\" role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {w} {hgt}\" width=\"{w}\" height=\"{hgt}\">", esc(title));
    let _ = write!(s, "<line x1=\"{left}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" class=\"axis\"/>", w - 10.0);
    for (i, c) in counts.iter().enumerate() {
        let bh = (base - 20.0) * (*c as f64) / max.max(1.0);
        let x = left + i as f64 * bw;
        let (a, b) = (lo + i as f64 * width, lo + (i + 1) as f64 * width);
        let _ = write!(s, "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" class=\"bar\"><title>{} to {}: {c}</title></rect>", x + 1.0, base - bh, bw - 2.0, num(a), num(b));
        if *c > 0 {
            let _ = write!(s, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" class=\"small\">{c}</text>", x + bw / 2.0, base - bh - 3.0);
        }
    }
    let _ = writeln!(
        s,
        "<text x=\"{left}\" y=\"{}\" class=\"small\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"small\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"small\">{}</text></svg>",
        base + 14.0,
        num(lo),
        w - 10.0,
        base + 14.0,
        num(hi),
        (w + left) / 2.0,
        base + 28.0,
        esc(title)
    );
    s
}

/// Frames (rows) written per second of wall time, per time bucket, from the event log: from
/// the first run's start (start-up, plan and PCA fit included) to the last video; its mean is
/// what summary.json's `throughput.frames_per_s` is for a single run.
fn throughput(events: &[Event], start: Option<f64>) -> String {
    let (t0, t1) = (start.unwrap_or(events[0].t).min(events[0].t), events[events.len() - 1].t);
    let span = (t1 - t0).max(1.0);
    let buckets = 60usize.min(events.len()).max(2);
    let bw = span / buckets as f64;
    let mut frames = vec![0u64; buckets];
    let mut vids = vec![0u64; buckets];
    let mut failed = 0u64;
    for e in events {
        let i = (((e.t - t0) / bw) as usize).min(buckets - 1);
        vids[i] += 1;
        frames[i] += e.rows;
        failed += u64::from(!e.ok);
    }
    let fps: Vec<f64> = frames.iter().map(|f| *f as f64 / bw).collect();
    let max = fps.iter().copied().fold(0.0, f64::max).max(1e-9);
    let (hgt, base, left) = (220.0, 180.0, 50.0);
    let x = |i: usize| left + (W - left - 10.0) * (i as f64 + 0.5) / buckets as f64;
    let y = |v: f64| base - (base - 20.0) * v / max;
    let pts: Vec<String> = fps.iter().enumerate().map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v))).collect();
    let mut s = format!("<svg class=\"chart\" role=\"img\" aria-label=\"frames per second over time\" viewBox=\"0 0 {W} {hgt}\" width=\"{W}\" height=\"{hgt}\">");
    let _ = write!(s, "<line x1=\"{left}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" class=\"axis\"/><line x1=\"{left}\" y1=\"20\" x2=\"{left}\" y2=\"{base}\" class=\"axis\"/>", W - 10.0);
    let _ = write!(s, "<polyline points=\"{}\" class=\"line\"/>", pts.join(" "));
    for (i, v) in fps.iter().enumerate() {
        let _ = write!(s, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" class=\"dot\"><title>{}-{} s: {:.1} frames/s, {} videos</title></circle>", x(i), y(*v), num(i as f64 * bw), num((i + 1) as f64 * bw), v, vids[i]);
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"24\" text-anchor=\"end\" class=\"small\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"small\">0</text><text x=\"{left}\" y=\"{}\" class=\"small\">0 s</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"small\">{} s</text><text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"small\">frames written per second of wall time, per {} s, from the start</text></svg>",
        left - 4.0,
        num(max),
        left - 4.0,
        base,
        base + 14.0,
        W - 10.0,
        base + 14.0,
        num(span),
        (W + left) / 2.0,
        base + 32.0,
        num(bw)
    );
    let _ = writeln!(
        s,
        "<p class=\"sub\">{} videos ({failed} failed) and {} frames finished over {} of wall time since the start (start-up, plan and PCA fit included); mean {:.2} videos/s, {:.1} frames/s: frames written per second of wall time, the definition of frames/s in this report and in summary.json. Gaps are pauses between runs or workers (resumes).</p>",
        events.len(),
        frames.iter().sum::<u64>(),
        hms(span),
        events.len() as f64 / span,
        frames.iter().sum::<u64>() as f64 / span
    );
    s
}

fn num(v: f64) -> String {
    if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn hms(s: f64) -> String {
    let s = s.round() as u64;
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{} h {} min", s / 3600, s / 60 % 60)
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A command-line word as a shell would need it quoted.
fn shell_word(w: &str) -> String {
    if !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b)) {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

fn now_utc() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute())
}

// ---------------------------------------------------------------------------------------------
// Contact sheets

struct Sheet {
    id: String,
    caption: String,
    /// Base64 JPEG, or why there is none.
    image: std::result::Result<String, String>,
}

/// From the sources (run and plan folders, with FFmpeg) or else from the frame cache an
/// extract output was made from (its frames are at the model's input size).
fn contact_sheets(cfg: &ReportConfig, videos: &BTreeMap<String, Video>, summary: &serde_json::Value) -> Result<Vec<Sheet>> {
    if cfg.sheets == 0 {
        return Ok(vec![]);
    }
    #[cfg(feature = "ffmpeg")]
    if cfg.dir.join("plan.jsonl").exists() {
        return sheets_from_sources(cfg, videos);
    }
    match summary["frame_cache"].as_str().map(PathBuf::from).filter(|c| c.join("manifest.json").exists()) {
        Some(cache) => sheets_from_cache(cfg, videos, &cache),
        None => Ok(vec![]),
    }
}

fn thumb_size(cfg: &ReportConfig) -> (u32, u32) {
    let tw = cfg.thumb_width.clamp(32, 640) & !1;
    (tw, (tw * 9 / 16) & !1)
}

fn sheets_from_cache(cfg: &ReportConfig, videos: &BTreeMap<String, Video>, cache: &Path) -> Result<Vec<Sheet>> {
    let c = crate::pipeline::cache::CacheReader::open(cache)?;
    let fps = c.manifest["decode"]["fps"].as_f64().filter(|f| *f > 0.0).unwrap_or(1.0);
    let (tw, th) = thumb_size(cfg);
    let (frame_bytes, row_bytes) = ((c.width * c.height * 3) as usize, c.row_bytes());
    let mut out = vec![];
    for v in c.videos.iter().filter(|v| videos.contains_key(&v.id)).take(cfg.sheets) {
        let image = match c.load(v).result {
            Ok(crate::pipeline::consume::Video { frames, .. }) => {
                let thumbs = frames
                    .chunks_exact(row_bytes)
                    .take(cfg.thumbs)
                    .enumerate()
                    .map(|(i, row)| {
                        // A clip row is shown by its first frame.
                        let img = image::RgbImage::from_raw(c.width, c.height, row[..frame_bytes].to_vec()).context("cached frame size")?;
                        Ok((i as f64 / fps, image::imageops::resize(&img, tw, th, image::imageops::FilterType::Triangle).into_raw()))
                    })
                    .collect::<Result<Vec<_>>>()?;
                if thumbs.is_empty() { Err("no frames".to_string()) } else { Ok(sheet_jpeg(&thumbs, tw, th)?) }
            }
            Err((kind, reason)) => Err(format!("{kind}: {reason}")),
        };
        let shown = (v.rows as usize).min(cfg.thumbs);
        let caption = format!("{} rows{}; from the frame cache ({}x{} model input)", v.rows, if shown < v.rows as usize { format!(", the first {shown} shown") } else { String::new() }, c.width, c.height);
        out.push(Sheet { id: v.id.clone(), caption, image });
    }
    Ok(out)
}

#[cfg(feature = "ffmpeg")]
fn sheets_from_sources(cfg: &ReportConfig, videos: &BTreeMap<String, Video>) -> Result<Vec<Sheet>> {
    use vidfeat_decode::{decode_file, DecodeOptions, Rational, Resize};
    let plan = crate::pipeline::plan::PlanSettings::load(&cfg.dir).ok();
    let fps = plan.as_ref().and_then(|p| Rational::parse(&p.fps)).unwrap_or(Rational::new(1, 1));
    let max_rows = plan.as_ref().map_or(300, |p| p.max_frames);
    let (tw, th) = thumb_size(cfg);
    let jobs = crate::pipeline::worker::read_tasks(&cfg.dir)?.0;
    let mut out = vec![];
    for job in jobs.iter().filter(|j| videos.contains_key(&j.task.id)).take(cfg.sheets) {
        let id = job.task.id.clone();
        let vidfeat_ingest::Source::Local(path) = &job.task.source else {
            out.push(Sheet { id, caption: String::new(), image: Err(format!("remote source {}: not fetched again for the report", job.task.source)) });
            continue;
        };
        let limit = if max_rows == 0 { cfg.thumbs as u64 } else { max_rows.min(cfg.thumbs as u64) };
        let opts = DecodeOptions { fps, max_frames: Some(limit), size: Some((tw, th)), resize: Resize::Letterbox, window: job.task.window, ..Default::default() };
        let mut thumbs = vec![];
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode_file(path, &opts, |f| thumbs.push((f.time + job.task.window.map_or(0.0, |w| w.0), f.rgb)))));
        let image = match r {
            Ok(Ok(_)) if !thumbs.is_empty() => Ok(sheet_jpeg(&thumbs, tw, th)?),
            Ok(Ok(_)) => Err("no frames".to_string()),
            Ok(Err(e)) => Err(format!("{}: {e}", path.display())),
            Err(_) => Err("the decoder panicked".to_string()),
        };
        let rows = videos[&id].rows.unwrap_or(0);
        let caption = format!(
            "{} rows{}; {}",
            rows,
            if (thumbs.len() as u64) < rows { format!(", the first {} shown", thumbs.len()) } else { String::new() },
            path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
        );
        out.push(Sheet { id, caption, image });
    }
    Ok(out)
}

/// A grid of thumbnails (packed RGB24, tw x th), each stamped with its time, as base64 JPEG.
fn sheet_jpeg(thumbs: &[(f64, Vec<u8>)], tw: u32, th: u32) -> Result<String> {
    use base64::Engine;
    let cols = (thumbs.len() as u32).min(8);
    let rows = (thumbs.len() as u32).div_ceil(cols);
    let gap = 4;
    let mut img = image::RgbImage::from_pixel(cols * (tw + gap) + gap, rows * (th + gap) + gap, image::Rgb([32, 32, 32]));
    for (i, (t, rgb)) in thumbs.iter().enumerate() {
        let thumb = image::RgbImage::from_raw(tw, th, rgb.clone()).context("thumbnail size")?;
        let (x, y) = (gap + (i as u32 % cols) * (tw + gap), gap + (i as u32 / cols) * (th + gap));
        image::imageops::overlay(&mut img, &thumb, x as i64, y as i64);
        stamp(&mut img, x + 2, y + th - 14, &clock(*t));
    }
    let mut jpeg = vec![];
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80).encode_image(&img)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(jpeg))
}

/// `m:ss` or `h:mm:ss`, tenths when not whole.
fn clock(t: f64) -> String {
    let whole = t.floor() as u64;
    let tenths = ((t - t.floor()) * 10.0).round() as u64;
    let base = if whole >= 3600 { format!("{}:{:02}:{:02}", whole / 3600, whole / 60 % 60, whole % 60) } else { format!("{}:{:02}", whole / 60, whole % 60) };
    if tenths == 0 || tenths == 10 {
        base
    } else {
        format!("{base}.{tenths}")
    }
}

/// 3x5 bitmap glyphs (rows top to bottom, 3 bits each, MSB left) for what timestamps use.
fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 2, 2],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        ':' => [0, 2, 0, 2, 0],
        '.' => [0, 0, 0, 0, 2],
        _ => [0; 5],
    }
}

/// Draws `text` at (x, y) in white 2x-scaled glyphs on a dark box.
fn stamp(img: &mut image::RgbImage, x: u32, y: u32, text: &str) {
    let scale = 2;
    let w = text.chars().count() as u32 * 4 * scale + scale;
    let h = 5 * scale + 2 * scale;
    for yy in y..(y + h).min(img.height()) {
        for xx in x..(x + w).min(img.width()) {
            let p = img.get_pixel_mut(xx, yy);
            *p = image::Rgb([p[0] / 4, p[1] / 4, p[2] / 4]);
        }
    }
    for (i, c) in text.chars().enumerate() {
        for (r, bits) in glyph(c).iter().enumerate() {
            for col in 0..3 {
                if bits & (4 >> col) != 0 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let (px, py) = (x + scale + (i as u32 * 4 + col) * scale + dx, y + scale + r as u32 * scale + dy);
                            if px < img.width() && py < img.height() {
                                img.put_pixel(px, py, image::Rgb([255, 255, 255]));
                            }
                        }
                    }
                }
            }
        }
    }
}

const CSS: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1400px;padding:0 16px;color:#1d232a;background:#fff}
h1{font-size:22px;margin:0}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde3ea;padding-bottom:4px}h3{font-size:14px;margin:14px 0 6px;font-weight:600}
.sub{color:#5b6773;font-size:12px}.facts{color:#33404d}.warn{color:#a4262c}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}.card{border:1px solid #dde3ea;border-radius:8px;padding:10px 16px;min-width:120px}
.card .v{font-size:22px;font-weight:600}.card .k{color:#5b6773;font-size:12px}
table{border-collapse:collapse}td,th{border:1px solid #dde3ea;padding:4px 8px;text-align:left;vertical-align:top}td.n{text-align:right}
code{font:12px ui-monospace,monospace;background:#f3f5f7;padding:1px 3px;border-radius:3px}
.row{display:flex;gap:32px;flex-wrap:wrap}
svg.chart{font:11px system-ui,sans-serif;fill:#1d232a;display:block;max-width:100%;height:auto}svg .bar{fill:#3b7dd8}svg .axis{stroke:#8a96a3}svg .line{fill:none;stroke:#3b7dd8;stroke-width:2}svg .dot{fill:#1f5fb4}svg .small{font-size:10px;fill:#5b6773}
.sheet img{max-width:100%;border-radius:4px;display:block}";

/// Reports images that did not load (a broken data URI) on the console.
const SCRIPT: &str = "<script>window.addEventListener('load',function(){for(const i of document.images){if(!i.complete||i.naturalWidth===0){console.error('image failed to load: '+i.alt);}}});</script>\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_escaping() {
        assert_eq!(clock(0.0), "0:00");
        assert_eq!(clock(61.5), "1:01.5");
        assert_eq!(clock(3725.0), "1:02:05");
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }

    #[test]
    fn histogram_puts_every_value_in_a_bin() {
        let svg = histogram("t", &[0.0, 1.0, 9.9, 10.0, 10.0], 10);
        // bins 0-1 holds 0.0, 1-2 holds 1.0, the last bin holds 9.9 and both 10s.
        assert!(svg.contains("<title>0 to 1: 1</title>") && svg.contains("<title>1 to 2: 1</title>") && svg.contains("<title>9 to 10: 3</title>"), "{svg}");
        assert_eq!(svg.matches("<rect").count(), 10);
    }

    #[test]
    fn stamped_digits_are_white_on_a_dark_box() {
        let mut img = image::RgbImage::from_pixel(40, 20, image::Rgb([200, 200, 200]));
        stamp(&mut img, 0, 0, "1");
        // '1' row 0 is 010: its middle column lit; its left column dark (box).
        assert_eq!(img.get_pixel(2 + 2, 2).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(2, 2).0, [50, 50, 50]);
        // Outside the box: untouched.
        assert_eq!(img.get_pixel(39, 19).0, [200, 200, 200]);
    }
}
