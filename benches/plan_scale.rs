//! Planning at scale (prints figures; not a test): `vidfeat plan --dry-run` over a generated
//! 2-million-row Kinetics-style annotation CSV, twice:
//! * a video root holding the full videos of 95% of the YouTube ids (the rest reported
//!   missing, as in a real download);
//! * a video root holding 50 of them: all but 50 rows are failures (`not_found`), which must
//!   cost no more than resolved rows (they stream to failures.jsonl, nothing is held).
//!
//! Prints rows/s and each plan process's peak RSS.
//!
//!   cargo bench --bench plan_scale [-- ROWS]
use std::io::Write;
use std::process::Command;
use std::time::Instant;

fn main() {
    let rows: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(2_000_000);
    let d = tempfile::tempdir().unwrap();
    let labels: Vec<String> = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/labels/vocab/kinetics400_label_map.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let ids = 20_000;
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
    println!("generated {rows} rows ({:.0} MB) in {:.1} s", size as f64 / 1e6, t.elapsed().as_secs_f64());
    // 95% of the ids have a video; then only the rows of 50 clips.
    let most = d.path().join("videos-most");
    std::fs::create_dir_all(&most).unwrap();
    for i in (0..ids).filter(|i| i % 20 != 0) {
        std::fs::File::create(most.join(format!("yt{i:08}.mp4"))).unwrap();
    }
    let few = d.path().join("videos-50");
    std::fs::create_dir_all(&few).unwrap();
    for r in 0..50 {
        let (id, start) = (r % ids, (r / ids) * 10);
        std::fs::File::create(few.join(format!("yt{id:08}_{start:06}_{:06}.mp4", start + 10))).unwrap();
    }
    for (case, root) in [("95% of ids on disk", &most), ("all but 50 rows missing", &few)] {
        let out = d.path().join("plan");
        let _ = std::fs::remove_dir_all(&out);
        let t = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_vidfeat"))
            .args(["plan", csv.to_str().unwrap(), "--vocab", "kinetics-400", "--video-root", root.to_str().unwrap(), "--shards", "2000", "--json", "--dry-run", "--out"])
            .arg(&out)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as libc::pid_t;
        // This child's own peak RSS (wait4), not the largest of all children so far.
        let mut status = 0;
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        let secs = t.elapsed().as_secs_f64();
        let mut stdout = String::new();
        std::io::Read::read_to_string(&mut child.stdout.unwrap(), &mut stdout).unwrap();
        let s: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|_| {
            let mut e = String::new();
            let _ = std::io::Read::read_to_string(&mut child.stderr.unwrap(), &mut e);
            panic!("{e}")
        });
        println!(
            "plan ({case}): {} rows, {} resolved, {} missing, {} unknown labels in {secs:.2} s = {:.0} rows/s; peak RSS {:.0} MiB; failures.jsonl {:.0} MB",
            s["rows"],
            s["resolved"],
            s["missing_source"],
            s["unknown_label"],
            rows as f64 / secs,
            ru.ru_maxrss as f64 / 1024.0,
            std::fs::metadata(out.join("failures.jsonl")).map_or(0, |m| m.len()) as f64 / 1e6
        );
    }
    println!("target: > 200,000 rows/s and < 1,024 MiB in both cases");
}
