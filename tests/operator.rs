//! What an operator sees: progress lines and JSON logs on a non-terminal stderr, settings from
//! vidfeat.toml / flags / VIDFEAT_* through the real binary, and `vidfeat report`'s page, loaded
//! in a real headless browser (Debian's chromium) with its console watched.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn vidfeat(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vidfeat"));
    c.args(args).current_dir(dir).env_remove("RUST_LOG");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The samples with failures in two splits, run once with JSON logs and a 1 s progress interval.
fn run_samples(out: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec!["run", "data-samples/samples.csv", "data-samples/with_failures.csv", "--vocab", "kinetics-400", "--out", out.to_str().unwrap(), "--torch-threads", "1"];
    args.extend_from_slice(extra);
    let o = vidfeat(&root(), &args, env);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    o
}

#[test]
fn json_logs_progress_lines_and_rust_log_filtering() {
    let dir = tempfile::tempdir().unwrap();
    // Slow the run down enough for periodic lines: one decoder, one torch thread.
    let o = run_samples(&dir.path().join("a"), &["--log-format", "json", "--progress-interval", "1", "--decode-workers", "1"], &[]);
    let lines: Vec<serde_json::Value> = stderr(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect();
    assert!(lines.iter().all(|l| l["level"].is_string() && l["timestamp"].is_string() && l["message"].is_string()), "{lines:?}");
    let msgs: Vec<&str> = lines.iter().map(|l| l["message"].as_str().unwrap()).collect();
    // Each failed video named with its kind; the last progress line counts them all.
    assert!(msgs.iter().any(|m| m.starts_with("failed: corrupt_video (corrupt)")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.starts_with("failed: missing_video (not_found)")), "{msgs:?}");
    let progress: Vec<&&str> = msgs.iter().filter(|m| m.starts_with("progress: ")).collect();
    let last = progress.last().expect("no progress line");
    // It agrees with the summary: the 3 list rows that failed before decoding count too.
    assert!(last.starts_with("progress: 7/7 videos written (4 failed), 4 decoded, 23 rows extracted;"), "{last}");
    // Stdout keeps the human summary; the logs stay off it.
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("3 videos ok, 4 failed, 23 rows"));

    // RUST_LOG=warn drops info lines (progress included); --progress never drops progress only.
    let o = run_samples(&dir.path().join("b"), &["--log-format", "json", "--progress-interval", "1"], &[("RUST_LOG", "warn")]);
    let e = stderr(&o);
    assert!(e.lines().all(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\"")), "{e}");
    assert!(e.contains("failed: corrupt_video"));
    let o = run_samples(&dir.path().join("c"), &["--progress", "never", "--progress-interval", "1"], &[]);
    let e = stderr(&o);
    assert!(!e.contains("progress:") && e.contains(" INFO ") && e.contains("failed: corrupt_video"), "{e}");

    // --progress always draws bars even into a pipe, and logs still arrive whole between them.
    let o = run_samples(&dir.path().join("d"), &["--progress", "always"], &[]);
    let e = stderr(&o);
    assert!(e.contains("written [") && e.contains("videos"), "no bars: {e}");
    assert!(e.lines().any(|l| l.contains("WARN") && l.contains("failed: corrupt_video (corrupt): corrupt:")), "{e}");

    // The event log: one line per video of the work stage, with rows and durations, and the
    // starts of the run and its worker (where throughput is counted from).
    let all: Vec<serde_json::Value> = std::fs::read_dir(dir.path().join("a/events"))
        .unwrap()
        .flat_map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect::<Vec<_>>())
        .collect();
    let (starts, ev): (Vec<serde_json::Value>, Vec<serde_json::Value>) = all.into_iter().partition(|e| e["started"] == true);
    assert_eq!((ev.len(), starts.len()), (4, 2), "{ev:?} {starts:?}");
    let pancake = ev.iter().find(|e| e["id"] == "pancake_flip").unwrap();
    assert_eq!((pancake["ok"].as_bool(), pancake["rows"].as_u64()), (Some(true), Some(11)));
    assert!((pancake["seconds"].as_f64().unwrap() - 10.333).abs() < 0.01);
    assert_eq!(ev.iter().find(|e| e["id"] == "corrupt_video").unwrap()["kind"], "corrupt");
}

#[test]
fn settings_file_flags_and_environment_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vidfeat.toml"), "device = \"cpu\"\nlog-format = \"json\"\n[run]\nbatch-size = 16\nfps = 2\nmax-frames = 5\n").unwrap();
    let list = root().join("data-samples/samples.csv");
    let list = list.to_str().unwrap();
    let o = vidfeat(dir.path(), &["run", list, "--out", "o", "--max-frames", "7", "--print-config"], &[("VIDFEAT_FPS", "0.5")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    for want in ["batch-size = 16  # settings file", "device = \"cpu\"  # settings file", "max-frames = 7  # command line", "fps = 0.5  # VIDFEAT_FPS", "log-format = \"json\"  # settings file", "retries = 3  # default"] {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }
    assert!(!dir.path().join("o").exists(), "--print-config must not run anything");

    // The settings take effect: 0.5 fps from the environment, batch size from the file.
    let o = vidfeat(dir.path(), &["run", list, "--vocab", "kinetics-400", "--out", "o", "--json"], &[("VIDFEAT_FPS", "0.5")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["settings"]["batch_size"], 16);
    assert_eq!(s["settings"]["fps"], "0.5");
    // At 0.5 fps the two 10 s clips give 5 rows each (the file's cap is 5 too), the 1.1 s one 1.
    assert_eq!(s["rows"], 11, "{s}");
    assert!(stderr(&o).lines().all(|l| l.starts_with('{')), "log-format from the file: {}", stderr(&o));

    // Mistakes stop before any work, naming the key.
    std::fs::write(dir.path().join("bad.toml"), "[run]\nbatch_sise = 3\n").unwrap();
    let o = vidfeat(dir.path(), &["--config", "bad.toml", "run", list, "--out", "o2"], &[]);
    assert_eq!(o.status.code(), Some(1), "a usage error is exit code 1");
    assert!(stderr(&o).contains("unknown setting `batch_sise` in [run]"), "{}", stderr(&o));
    assert!(!dir.path().join("o2").exists());
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|b| {
        let p = Command::new("sh").arg("-c").arg(format!("command -v {b}")).output().ok()?;
        p.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&p.stdout).trim()))
    })
}

/// Loads `page` in headless chromium: (console messages of the page, screenshot).
fn browse(chrome: &Path, page: &Path, shot: &Path) -> Vec<String> {
    let profile = tempfile::tempdir().unwrap();
    let o = Command::new(chrome)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr", "--v=0", "--window-size=1400,2600", "--virtual-time-budget=5000"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "chromium: {}", stderr(&o));
    // Console messages come as `...:INFO:CONSOLE:<line>] "message", source: file://... (line)`.
    stderr(&o).lines().filter(|l| l.contains(":CONSOLE")).map(str::to_string).collect()
}

#[test]
fn report_page_counts_failures_histograms_and_contact_sheets_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ds");
    run_samples(&out, &[], &[]);
    let html = dir.path().join("report.html");
    let o = vidfeat(&root(), &["report", out.to_str().unwrap(), "--out", html.to_str().unwrap(), "--thumbs", "6", "--json"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(r["videos_ok"], summary["videos_ok"]);
    assert_eq!(r["videos_failed"], summary["videos_failed"]);
    assert_eq!(r["rows"], summary["rows"]);
    assert_eq!(r["contact_sheets"], 3, "{r}");
    assert_eq!(r["events"], 4);

    let page = std::fs::read_to_string(&html).unwrap();
    // Self-contained: no fetched asset of any kind.
    for bad in ["http://", "https://", "src=\"/", "src=\"file:", "<link rel=\"stylesheet\""] {
        assert!(!page.contains(bad), "page refers to an outside asset ({bad})");
    }
    // Failures by kind with an example id; label names from the vocabulary; the charts.
    for want in ["<code>corrupt</code>", "corrupt_video", "<code>not_found</code>", "missing_video", "<code>duplicate_id</code>", "arm wrestling (6)", "videos by duration (s)", "videos by rows", "frames per second over time"] {
        assert!(page.contains(want), "report lacks `{want}`");
    }
    // Contact sheets: JPEGs of the grid the run's rows make (6 thumbnails shown, 8 per row max).
    use base64::Engine;
    let sheets: Vec<image::DynamicImage> = page
        .split("data:image/jpeg;base64,")
        .skip(1)
        .map(|s| image::load_from_memory(&base64::engine::general_purpose::STANDARD.decode(&s[..s.find('"').unwrap()]).unwrap()).unwrap())
        .collect();
    assert_eq!(sheets.len(), 3);
    // Thumbnails of 160x90 with 4-pixel gaps, in one row: 6 (the cap) for the two 10-row
    // clips, 2 for the 2-row one.
    let mut shown = vec![];
    for s in &sheets {
        assert_eq!(s.height(), 90 + 8);
        assert_eq!((s.width() - 4) % 164, 0);
        shown.push((s.width() - 4) / 164);
        // Real content, not a blank grid: many distinct colours.
        let colours: std::collections::HashSet<[u8; 3]> = s.to_rgb8().pixels().map(|p| [p[0] & 0xf0, p[1] & 0xf0, p[2] & 0xf0]).collect();
        assert!(colours.len() > 50, "{} colours", colours.len());
    }
    shown.sort();
    assert_eq!(shown, [2, 6, 6]);

    let Some(chrome) = chromium() else {
        assert!(std::env::var_os("VIDFEAT_REQUIRE_BROWSER").is_none(), "VIDFEAT_REQUIRE_BROWSER is set and chromium is not installed");
        eprintln!("SKIPPED the browser half: no chromium (scripts/setup.sh installs it; make test requires it)");
        return;
    };
    // The console watch works: a planted error and a broken image are both seen.
    let control = dir.path().join("control.html");
    std::fs::write(&control, format!("<html><body><img alt=\"broken\" src=\"data:image/jpeg;base64,AAAA\">{}<script>console.error('planted')</script></body></html>", r#"<script>window.addEventListener('load',function(){for(const i of document.images){if(!i.complete||i.naturalWidth===0){console.error('image failed to load: '+i.alt);}}});</script>"#)).unwrap();
    let seen = browse(&chrome, &control, &dir.path().join("control.png"));
    assert!(seen.iter().any(|l| l.contains("planted")) && seen.iter().any(|l| l.contains("image failed to load: broken")), "{seen:?}");

    let shot = root().join("target/report-screenshot.png");
    let console = browse(&chrome, &html, &shot);
    assert!(console.is_empty(), "console messages on the report page: {console:?}");
    // The screenshot shows the page: charts (the bars' blue) and thumbnails (many colours).
    let img = image::open(&shot).unwrap().to_rgb8();
    assert_eq!((img.width(), img.height()), (1400, 2600));
    let blue = img.pixels().filter(|p| p.0 == [0x3b, 0x7d, 0xd8]).count();
    assert!(blue > 2000, "chart bars not drawn: {blue} bar-blue pixels");
    let colours: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| [p[0] & 0xf0, p[1] & 0xf0, p[2] & 0xf0]).collect();
    assert!(colours.len() > 200, "no thumbnails on screen: {} colours", colours.len());
    eprintln!("screenshot: {}", shot.display());
}

#[test]
fn report_of_an_extract_output_takes_its_contact_sheets_from_the_frame_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, out, html) = (dir.path().join("cache"), dir.path().join("out"), dir.path().join("r.html"));
    let o = vidfeat(&root(), &["decode", "data-samples/samples.csv", "--vocab", "kinetics-400", "--cache", cache.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = vidfeat(&root(), &["extract", "--cache", cache.to_str().unwrap(), "--out", out.to_str().unwrap(), "--torch-threads", "1"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // An extract output has no plan.jsonl: its frames come from the cache it was made from.
    let o = vidfeat(dir.path(), &["report", out.to_str().unwrap(), "--out", html.to_str().unwrap(), "--thumbs", "4", "--json"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((r["videos_ok"].as_u64(), r["contact_sheets"].as_u64(), r["events"].as_u64()), (Some(3), Some(3), Some(3)), "{r}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(page.matches("from the frame cache (224x224 model input)").count(), 3);
}
