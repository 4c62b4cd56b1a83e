//! Memory of clip rows on a long video (prints figures; not a test): the peak RSS of
//! `vidfeat run --model i3d-kinetics-400` on one generated 5-minute video with a row cap of
//! 8, 32 and 96 rows (a clip row is 16 frames of 224x224, 2.4 MB). Rows stream from the
//! decoder to the network in pieces of one batch, so the peak should not grow with the rows
//! taken; holding a video whole would add 2.4 MB a row (230 MB at 96).
//!
//!   scripts/i3d-setup.sh && cargo bench --bench clip_memory      (needs the ffmpeg CLI)
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs vidfeat; returns (seconds, the child's own peak RSS in MiB).
fn measure(args: &[&str]) -> (f64, f64) {
    let t = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_vidfeat")).args(args).current_dir(root()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let (mut status, mut ru) = (0, unsafe { std::mem::zeroed::<libc::rusage>() });
    unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut ru) };
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{args:?} failed ({status})");
    (t.elapsed().as_secs_f64(), ru.ru_maxrss as f64 / 1024.0)
}

fn main() {
    if !root().join(".deps/models/i3d-kinetics-400.pt").is_file() {
        println!("skipped: run scripts/i3d-setup.sh first");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let video = d.path().join("long.mp4");
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-t", "300", "-c:v", "libx264", "-preset", "ultrafast"])
        .arg(&video)
        .status()
        .unwrap();
    assert!(st.success(), "ffmpeg");
    let list = d.path().join("l.csv");
    std::fs::write(&list, format!("id,source\nlong,{}\n", video.display())).unwrap();
    let pca = d.path().join("pca.npz");
    let p = |x: &std::path::Path| x.to_str().unwrap().to_string();
    measure(&["pca", "fit", &p(&list), "--model", "i3d-kinetics-400", "--dims", "8", "--pca-sample-frames", "8", "--max-frames", "8", "--out", &p(&pca)]);
    println!("| rows (clip rows of 16 frames) | wall (s) | clips/s | peak RSS (MiB) | the rows' frames (MiB) |");
    println!("|---|---|---|---|---|");
    for rows in [8u64, 32, 96] {
        let out = d.path().join(format!("out{rows}"));
        let (secs, rss) = measure(&["run", &p(&list), "--model", "i3d-kinetics-400", "--pca", &p(&pca), "--max-frames", &rows.to_string(), "--out", &p(&out)]);
        println!("| {rows} | {secs:.1} | {:.2} | {rss:.0} | {:.0} |", rows as f64 / secs, rows as f64 * 16.0 * 224.0 * 224.0 * 3.0 / (1 << 20) as f64);
    }
}
