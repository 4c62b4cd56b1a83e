//! Throughput benchmark (prints figures; not a test):
//! * CNN-only frames/s of the bundled model at several batch sizes and thread counts;
//! * end-to-end frames/s of `vidfeat run` over the same videos (with a fixed PCA, so the
//!   figure is the steady pipeline), for a few decode settings, and its ratio to CNN-only;
//! * when a Python with torch and PyAV is found ($VIDFEAT_REF_PYTHON, else python3), the
//!   sequential PyAV + torch reference (scripts/reference_pipeline.py) on the same clips.
//!
//!   cargo bench --bench throughput
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The demo clips, listed `copies` times under different ids (about 38 rows per copy).
fn make_list(dir: &Path, copies: usize) -> (PathBuf, Vec<PathBuf>) {
    let clips = ["mmaction2__demo.mp4", "decord__flipping_a_pancake.mkv", "mmaction2__rawvideo_part_0.mp4", "imageio__cockatoo.mp4"];
    let mut csv = String::from("id,source\n");
    let mut paths = vec![];
    for c in 0..copies {
        for clip in clips {
            let p = root().join("data-samples/videos").join(clip);
            csv += &format!("{clip}_{c},{}\n", p.display());
            paths.push(p);
        }
    }
    let list = dir.join("bench.csv");
    std::fs::write(&list, csv).unwrap();
    (list, paths)
}

fn cnn_only(batch: usize, threads: i32, seconds: f64) -> f64 {
    tch::set_num_threads(threads);
    let m = vidfeat_features::Model::load(&vidfeat::default_model(), None, tch::Device::Cpu).unwrap();
    let (w, h) = m.input_wh();
    let frames: Vec<u8> = (0..batch * (w * h * 3) as usize).map(|i| (i * 7 % 251) as u8).collect();
    m.extract(&frames, batch).unwrap();
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed().as_secs_f64() < seconds {
        m.extract(&frames, batch).unwrap();
        n += batch;
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn run(list: &Path, out: &Path, pca: Option<&Path>, extra: &[&str]) -> serde_json::Value {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vidfeat"));
    c.arg("run").arg(list).args(["--out", out.to_str().unwrap(), "--json"]).args(extra);
    if let Some(p) = pca {
        c.args(["--pca", p.to_str().unwrap()]);
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn main() {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as i32;
    let tmp = tempfile::tempdir().unwrap();
    let (list, paths) = make_list(tmp.path(), 4);

    println!("CNN-only, bundled EfficientNet-Lite0 on CPU ({cores} cores), frames/s");
    let mut best = (0.0, 0usize, 0i32);
    for threads in [1, cores] {
        for batch in [8, 16, 32, 64] {
            let f = cnn_only(batch, threads, 3.0);
            println!("  threads {threads}  batch {batch:>3}  {f:>7.1}");
            if f > best.0 {
                best = (f, batch, threads);
            }
        }
    }
    println!("  best: batch {} with {} threads: {:.1} frames/s", best.1, best.2, best.0);
    let one_thread = cnn_only(best.1, 1, 3.0);

    // A fixed PCA so that every run measures the same steady pipeline.
    let first = tmp.path().join("fit");
    run(&list, &first, None, &["--batch-size", &best.1.to_string()]);
    let pca = first.join("pca.npz");
    println!();
    println!("end to end: vidfeat run over the same {} videos (fixed PCA), frames/s and ratio to CNN-only", paths.len());
    // (torch threads, decode workers, FFmpeg threads per decoder); 0 = vidfeat's default,
    // which on the CPU gives the network half the cores and the decoders the rest.
    for (torch, workers, dthreads) in [(0, 0, 0), (cores as usize, 1, 1), (cores as usize, 1, 2), (cores as usize, 2, 1), (1, 1, 1)] {
        let out = tmp.path().join(format!("run-{torch}-{workers}-{dthreads}"));
        let args = ["--batch-size", &best.1.to_string(), "--torch-threads", &torch.to_string(), "--decode-workers", &workers.to_string(), "--decode-threads", &dthreads.to_string()];
        let s = run(&list, &out, Some(&pca), &args);
        let fps = s["throughput"]["frames_per_s"].as_f64().unwrap();
        let same = if torch == 1 { format!(", {:.2} x CNN-only on its 1 thread", fps / one_thread) } else { String::new() };
        println!(
            "  torch threads {torch}, decode workers {workers} x threads {dthreads}: {} frames in {:.2} s: {fps:.1} frames/s = {:.2} x best CNN-only{same}",
            s["rows"],
            s["wall_time_s"].as_f64().unwrap(),
            fps / best.0
        );
    }

    let py = std::env::var("VIDFEAT_REF_PYTHON").unwrap_or_else(|_| "python3".into());
    let has = Command::new(&py).args(["-c", "import torch, av"]).output().map(|o| o.status.success()).unwrap_or(false);
    println!();
    if !has {
        println!("reference (PyAV + torch): skipped, no Python with torch and av ({py}); set VIDFEAT_REF_PYTHON");
        return;
    }
    let model = vidfeat::default_model();
    let o = Command::new(&py)
        .arg(root().join("scripts/reference_pipeline.py"))
        .arg(&model)
        .arg(model.with_extension("json"))
        .args(&paths)
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&o.stderr)));
    let out = tmp.path().join("cmp");
    let s = run(&list, &out, Some(&pca), &["--batch-size", &best.1.to_string()]);
    let ours = s["throughput"]["frames_per_s"].as_f64().unwrap();
    let theirs = r["frames_per_s"].as_f64().unwrap();
    println!(
        "reference PyAV + torch, sequential ({}): {} frames, {theirs:.1} frames/s; vidfeat {ours:.1} frames/s = {:.2} x the reference",
        py,
        r["frames"],
        ours / theirs
    );
}
