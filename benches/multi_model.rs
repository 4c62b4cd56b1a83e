//! Several models from one decode against one run per model (prints figures; not a test):
//! wall time of `vidfeat run --model A --model B` against `run --model A` + `run --model B`
//! over the same videos, with given PCAs (fitted first, not timed), for
//!
//! * EfficientNet-Lite0 with `benches/models/mean-rgb.pt`, a model that costs next to nothing:
//!   its run alone is decoding plus everything around the network, the decode share;
//! * EfficientNet-Lite0 with Kinetics I3D (clip rows: the image model takes each clip's first
//!   frame), when `scripts/i3d-setup.sh` has made it.
//!
//!   cargo bench --bench multi_model            (VIDFEAT_BENCH_COPIES=N: N copies of the 4 clips)
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn vidfeat(args: &[&str]) -> f64 {
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_vidfeat")).args(args).current_dir(root()).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    t.elapsed().as_secs_f64()
}

/// The bundled clips, `copies` times under different ids.
fn make_list(dir: &Path, copies: usize) -> PathBuf {
    let clips = ["mmaction2__demo.mp4", "decord__flipping_a_pancake.mkv", "mmaction2__rawvideo_part_0.mp4", "imageio__cockatoo.mp4"];
    let mut csv = String::from("id,source\n");
    for c in 0..copies {
        for clip in clips {
            csv += &format!("{clip}_{c},{}\n", root().join("data-samples/videos").join(clip).display());
        }
    }
    let list = dir.join("bench.csv");
    std::fs::write(&list, csv).unwrap();
    list
}

/// Times one run per model and one run of both; prints a table row each.
fn compare(dir: &Path, list: &Path, a: &str, b: &str, extra: &[&str]) {
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let base = [list.to_str().unwrap(), "--resize", "center-crop"];
    // PCAs fitted once, given to every run (the runs then measure the steady pipeline).
    for (m, name) in [(a, "pa.npz"), (b, "pb.npz")] {
        vidfeat(&[&["pca", "fit", list.to_str().unwrap(), "--model", m, "--dims", "64", "--pca-sample-frames", "200", "--out", &p(name)][..], extra].concat());
    }
    let run = |out: &str, models: &[&str]| {
        let _ = std::fs::remove_dir_all(p(out));
        vidfeat(&[&["run"][..], &base, models, extra, &["--out", &p(out)]].concat())
    };
    let ta = run("a", &["--model", a, "--pca", &p("pa.npz")]);
    let tb = run("b", &["--model", b, "--pca", &p("pb.npz")]);
    let tab = run("ab", &["--model", a, "--model", b, "--pca", &p("pa.npz"), "--pca", &p("pb.npz")]);
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("ab/summary.json")).unwrap()).unwrap();
    let name = |m: &str| Path::new(m).file_stem().unwrap().to_string_lossy().into_owned();
    println!(
        "| {} + {} | {} videos, {} rows | {ta:.1} | {tb:.1} | {:.1} | {tab:.1} | {:.0}% |",
        name(a),
        name(b),
        s["videos_ok"],
        s["rows"],
        ta + tb,
        100.0 * (1.0 - tab / (ta + tb))
    );
}

fn main() {
    let copies: usize = std::env::var("VIDFEAT_BENCH_COPIES").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let d = tempfile::tempdir().unwrap();
    let list = make_list(d.path(), copies);
    println!("| models | videos | run A (s) | run B (s) | A + B (s) | one run of both (s) | saved |");
    println!("|---|---|---|---|---|---|---|");
    let mean_rgb = root().join("benches/models/mean-rgb.pt");
    compare(d.path(), &list, "efficientnet-lite0", mean_rgb.to_str().unwrap(), &[]);
    if root().join(".deps/models/i3d-kinetics-400.pt").is_file() {
        // I3D is heavy on the CPU: at most 8 clip rows per video.
        let i3d_dir = d.path().join("i3d");
        std::fs::create_dir_all(&i3d_dir).unwrap();
        let short = make_list(&i3d_dir, 1);
        compare(&i3d_dir, &short, "efficientnet-lite0", "i3d-kinetics-400", &["--max-frames", "8"]);
    } else {
        println!("(I3D skipped: run scripts/i3d-setup.sh)");
    }
}
