//! Planning at scale (prints figures; not a test): `vidfeat plan` over a generated
//! 2-million-row Kinetics-style annotation CSV, with a video root holding the full videos of
//! 95% of the YouTube ids (the rest reported missing, as in a real download). Prints rows/s and
//! the plan process's peak RSS.
//!
//!   cargo bench --bench plan_scale [-- ROWS]
use std::io::Write;
use std::process::Command;
use std::time::Instant;

fn main() {
    let rows: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(2_000_000);
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("videos");
    std::fs::create_dir_all(&root).unwrap();
    let labels: Vec<String> = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/labels/vocab/kinetics400_label_map.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let ids = 20_000;
    for i in 0..ids {
        if i % 20 != 0 {
            std::fs::File::create(root.join(format!("yt{i:08}.mp4"))).unwrap();
        }
    }
    let csv = d.path().join("kinetics_2m.csv");
    let t = Instant::now();
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
        writeln!(w, "label,youtube_id,time_start,time_end,split,is_cc").unwrap();
        for r in 0..rows {
            let l = &labels[r % labels.len()];
            let label = if l.contains(',') || l.contains(' ') { format!("\"{l}\"") } else { l.clone() };
            let start = (r / ids) * 10;
            let split = if r % 10 == 0 { "val" } else { "train" };
            writeln!(w, "{label},yt{:08},{start},{},{split},{}", r % ids, start + 10, r % 2).unwrap();
        }
    }
    let size = std::fs::metadata(&csv).unwrap().len();
    println!("generated {rows} rows ({:.0} MB) in {:.1} s; {} of {ids} YouTube ids have a video", size as f64 / 1e6, t.elapsed().as_secs_f64(), ids - ids / 20);
    let out = d.path().join("plan");
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_vidfeat"))
        .args(["plan", csv.to_str().unwrap(), "--vocab", "kinetics-400", "--video-root", root.to_str().unwrap(), "--shards", "2000", "--json", "--dry-run", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&o.stderr)));
    println!(
        "plan: {} rows, {} resolved, {} missing, {} unknown labels in {secs:.2} s = {:.0} rows/s; peak RSS {:.0} MiB",
        s["rows"],
        s["resolved"],
        s["missing_source"],
        s["unknown_label"],
        rows as f64 / secs,
        ru.ru_maxrss as f64 / 1024.0
    );
    println!("target: > 200,000 rows/s and < 1,024 MiB");
}
