//! Decode-stage benchmark (prints figures; not a test): vidfeat's decoder against
//! `ffmpeg -i V -vf fps=1:round=up,scale=224:224 -f rawvideo -pix_fmt rgb24 -` on the same files,
//! timed side by side in one run, plus peak RSS for a ten-second and a one-hour video.
//!
//!   cargo bench -p vidfeat-decode --bench decode_vs_cli
//!
//! The clips (H.264 with B-frames, 30 s, 720p and 1080p; 10 s and 1 h at 320x240 for memory)
//! are generated with the ffmpeg CLI into target/bench-media on first use.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use vidfeat_decode::{decode_file, DecodeOptions};

fn media_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-media");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn generate(name: &str, size: &str, rate: u32, secs: u32, preset: &str) -> PathBuf {
    let p = media_dir().join(name);
    if !p.exists() {
        eprintln!("generating {name} ...");
        let tmp = media_dir().join(format!("tmp-{name}"));
        let st = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=size={size}:rate={rate}"))
            .args(["-t", &secs.to_string(), "-c:v", "libx264", "-preset", preset, "-bf", "3", "-g", "250", "-pix_fmt", "yuv420p"])
            .arg(&tmp)
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::rename(&tmp, &p).unwrap();
    }
    p
}

fn time_cli(p: &Path) -> (f64, usize) {
    cli_threads(p, None)
}

/// One ffmpeg CLI run; `threads` = `-threads N` for the decoder (None: FFmpeg's choice).
fn cli_threads(p: &Path, threads: Option<usize>) -> (f64, usize) {
    let t = Instant::now();
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error"]);
    if let Some(n) = threads {
        cmd.args(["-threads", &n.to_string()]);
    }
    let out = cmd
        .arg("-i")
        .arg(p)
        .args(["-vf", "fps=1:round=up,scale=224:224", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success());
    (t.elapsed().as_secs_f64(), out.stdout.len() / (224 * 224 * 3))
}

fn time_ours(p: &Path, skip: bool) -> (f64, usize) {
    ours_threads(p, skip, 0)
}

fn ours_threads(p: &Path, skip: bool, threads: usize) -> (f64, usize) {
    let opts = DecodeOptions { size: Some((224, 224)), max_frames: None, skip_unneeded: skip, threads, ..Default::default() };
    let t = Instant::now();
    let mut rows = 0;
    decode_file(p, &opts, |_| rows += 1).unwrap();
    (t.elapsed().as_secs_f64(), rows)
}

/// Runs `one` over `files` with `workers` threads pulling from a shared queue (the layout of
/// `vidfeat decode --decode-workers W --decode-threads 1`); returns wall seconds and total rows.
fn batch<F: Fn(&Path) -> (f64, usize) + Sync>(files: &[PathBuf], workers: usize, one: F) -> (f64, usize) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let rows = std::sync::atomic::AtomicUsize::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(f) = files.get(i) else { break };
                rows.fetch_add(one(f).1, std::sync::atomic::Ordering::SeqCst);
            });
        }
    });
    (t.elapsed().as_secs_f64(), rows.into_inner())
}

fn best<F: FnMut() -> (f64, usize)>(reps: usize, mut f: F) -> (f64, usize) {
    (0..reps).map(|_| f()).fold((f64::MAX, 0), |a, b| if b.0 < a.0 { b } else { a })
}

/// Child mode: decode one file with no row cap and print peak RSS (KiB).
fn rss_child(p: &Path) {
    let opts = DecodeOptions { size: Some((224, 224)), max_frames: None, timeout: None, ..Default::default() };
    let mut rows = 0u64;
    decode_file(p, &opts, |_| rows += 1).unwrap();
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    println!("{} {}", rows, ru.ru_maxrss);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--rss") {
        rss_child(Path::new(&args[i + 1]));
        return;
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("decode stage vs the ffmpeg CLI ({cores} cores, FFmpeg frame threads = auto in both; best of 3)");
    println!("{:<24} {:>6} {:>10} {:>12} {:>14} {:>8} {:>12}", "clip", "rows", "cli s", "vidfeat s", "no-skip s", "ratio", "no-skip ratio");
    for (name, size) in [("h264_720p_30s.mp4", "1280x720"), ("h264_1080p_30s.mp4", "1920x1080")] {
        let p = generate(name, size, 30, 30, "veryfast");
        let (cli, n_cli) = best(3, || time_cli(&p));
        let (ours, n_ours) = best(3, || time_ours(&p, true));
        let (full, _) = best(3, || time_ours(&p, false));
        assert_eq!(n_cli, n_ours, "row counts differ");
        println!("{:<24} {:>6} {:>10.3} {:>12.3} {:>14.3} {:>8.2} {:>12.2}", name, n_ours, cli, ours, full, ours / cli, full / cli);
    }

    // A dataset is many videos: what a per-video ffmpeg script does (one CLI process after
    // another, FFmpeg's own threads) against vidfeat's decode stage (one single-threaded decoder
    // per core, videos in parallel, no oversubscription). The CLI run in parallel the same way
    // (`xargs -P cores ffmpeg -threads 1 ...`) is printed too, for an honest comparison.
    let files: Vec<PathBuf> = [("h264_720p_30s.mp4", "1280x720"), ("h264_1080p_30s.mp4", "1920x1080")]
        .iter()
        .flat_map(|(n, s)| {
            let p = generate(n, s, 30, 30, "veryfast");
            [p.clone(), p]
        })
        .collect();
    println!();
    println!("a batch of {} videos (2 x 720p, 2 x 1080p), best of 3", files.len());
    let (cli_seq, n1) = best(3, || batch(&files, 1, |p| cli_threads(p, None)));
    let (cli_par, n2) = best(3, || batch(&files, cores, |p| cli_threads(p, Some(1))));
    let (ours_seq, n3) = best(3, || batch(&files, 1, |p| ours_threads(p, true, 0)));
    let (ours_par, n4) = best(3, || batch(&files, cores, |p| ours_threads(p, true, 1)));
    assert!(n1 == n2 && n2 == n3 && n3 == n4, "row counts differ: {n1} {n2} {n3} {n4}");
    println!("{:<52} {:>8} {:>10}", "", "wall s", "ratio");
    println!("{:<52} {:>8.3} {:>10}", "CLI, one after another (FFmpeg threads auto)", cli_seq, "1.00");
    println!("{:<52} {:>8.3} {:>10.2}", format!("CLI, {cores} in parallel (-threads 1)"), cli_par, cli_par / cli_seq);
    println!("{:<52} {:>8.3} {:>10.2}", "vidfeat, one after another (threads auto)", ours_seq, ours_seq / cli_seq);
    println!("{:<52} {:>8.3} {:>10.2}", format!("vidfeat, {cores} workers x 1 thread"), ours_par, ours_par / cli_seq);
    println!("vidfeat {cores} workers x 1 thread / CLI {cores} in parallel: {:.2}", ours_par / cli_par);

    println!();
    println!("peak RSS of a process decoding one video (no row cap, rows dropped as they come)");
    let exe = std::env::current_exe().unwrap();
    let mut rss = vec![];
    for (name, secs) in [("small_10s.mp4", 10), ("small_1h.mp4", 3600)] {
        let p = generate(name, "320x240", 25, secs, "ultrafast");
        let t = Instant::now();
        let out = Command::new(&exe).arg("--rss").arg(&p).output().unwrap();
        let s = String::from_utf8_lossy(&out.stdout);
        let mut it = s.split_whitespace();
        let (rows, kib): (u64, u64) = (it.next().unwrap().parse().unwrap(), it.next().unwrap().parse().unwrap());
        println!("{:<24} {:>6} rows  peak RSS {:>8.1} MiB  ({:.1} s)", name, rows, kib as f64 / 1024.0, t.elapsed().as_secs_f64());
        rss.push(kib as f64);
    }
    println!("one hour / ten seconds peak RSS: {:.3}", rss[1] / rss[0]);
}
