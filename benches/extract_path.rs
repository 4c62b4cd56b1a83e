//! The extract path without a GPU (prints figures; not a test): `vidfeat extract` with the
//! trivial `benches/models/mean-rgb.pt` (three per-channel means), so what is measured is
//! everything around the network: reading and decompressing the frame cache, batching, the
//! PCA, quantization, means and records. A cache of several thousand frames is made by
//! decoding the sample clips once at 5 fps and listing them again under other ids; the PCA is
//! fitted by a first extract; then each timed run is pinned to 1 core and to 2 (`taskset`),
//! with `--threads` to match.
//!
//!   cargo bench --bench extract_path [-- COPIES]
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use vidfeat::pipeline::cache::CachedVideo;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn vidfeat(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vidfeat"));
    c.args(args).env("RUST_LOG", "warn");
    c
}

/// The cache of `dir`, its videos listed `copies` times (the frame files are shared).
fn replicate(dir: &Path, copies: usize) -> u64 {
    let text = std::fs::read_to_string(dir.join("videos.jsonl")).unwrap();
    let videos: Vec<CachedVideo> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut out = String::new();
    let mut frames = 0;
    for c in 0..copies {
        for v in &videos {
            let mut w = v.clone();
            w.idx = c * videos.len() + v.idx;
            w.id = format!("{}_{c}", v.id);
            frames += w.rows;
            out.push_str(&serde_json::to_string(&w).unwrap());
            out.push('\n');
        }
    }
    std::fs::write(dir.join("videos.jsonl"), out).unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    m["videos"] = (copies * videos.len()).into();
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    frames
}

fn main() {
    let copies: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100);
    let d = tempfile::tempdir().unwrap();
    let model = root().join("benches/models/mean-rgb.pt");
    let cache = d.path().join("cache");
    let o = vidfeat(&["decode", root().join("data-samples/samples.csv").to_str().unwrap(), "--vocab", "kinetics-400", "--fps", "5", "--sidecar"])
        .arg(model.with_extension("json"))
        .arg("--cache")
        .arg(&cache)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let frames = replicate(&cache, copies);
    println!("frame cache: {frames} frames of 224x224 in {} videos", copies * 3);
    let first = d.path().join("first");
    let o = vidfeat(&["extract", "--model", model.to_str().unwrap(), "--cache", cache.to_str().unwrap(), "--out", first.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pca = first.join("pca.npz");
    let mut shards: Option<Vec<u8>> = None;
    for (cores, cpu_list) in [(1, "0"), (2, "0-1")] {
        for rep in 0..3 {
            let out = d.path().join(format!("out-{cores}-{rep}"));
            let t = Instant::now();
            let o = Command::new("taskset")
                .args(["-c", cpu_list, env!("CARGO_BIN_EXE_vidfeat"), "extract", "--model", model.to_str().unwrap(), "--torch-threads", "1", "--threads", &cores.to_string()])
                .args(["--cache", cache.to_str().unwrap(), "--pca", pca.to_str().unwrap(), "--json", "--out", out.to_str().unwrap()])
                .env("RUST_LOG", "warn")
                .output()
                .unwrap();
            let secs = t.elapsed().as_secs_f64();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            // Whatever the thread count, the same bytes.
            let bytes = std::fs::read(out.join("frame/train-00000-of-00001.tfrecord")).unwrap();
            assert_eq!(shards.get_or_insert_with(|| bytes.clone()), &bytes, "shards differ with {cores} threads");
            // The summary's figure counts from the start of work (after libtorch and the model
            // are loaded, about 0.5 s); the wall time includes them.
            let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let fps = summary["throughput"]["frames_per_s"].as_f64().unwrap();
            println!(
                "extract, {cores} core(s) (--threads {cores}): {frames} frames in {secs:.2} s wall = {:.0} frames/s ({:.0} per core); from the start of work {fps:.0} frames/s ({:.0} per core)",
                frames as f64 / secs,
                frames as f64 / secs / cores as f64,
                fps / cores as f64
            );
        }
    }
    println!("target: 2,500 frames/s per core");
}
