//! `--sampling keyframes` against `exact` (prints figures; not a test):
//! * decode time of both modes, side by side, on two generated 1080p 30 fps 30 s H.264 clips
//!   (noise over a test pattern, so frames cost what camera frames do) with a 2 s GOP
//!   (YouTube-like) and an 8 s GOP, rows at 1 fps at 224x224; best of 3;
//! * how close the features are, on the real clips (the samples and the decoder's real test
//!   media) as they are and re-encoded with a key frame every 2 s: `vidfeat run` in both modes
//!   with one PCA (64 dims), then per video the cosine of `mean_rgb`, the share of frame rows
//!   that are identical, and the rows' lag; with, for scale, the cosine of two different
//!   videos.
//!
//!   cargo bench --bench keyframes
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use vidfeat_decode::{decode_file, DecodeOptions, Rational, Sampling};
use vidfeat_export::{parse_record, read_file};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn clip(dir: &Path, gop: u32) -> PathBuf {
    let p = dir.join(format!("1080p30_gop{gop}.mp4"));
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30", "-t", "30", "-vf", "noise=alls=12:allf=t"])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", &gop.to_string(), "-keyint_min", &gop.to_string(), "-sc_threshold", "0"])
        .arg(&p)
        .status()
        .unwrap();
    assert!(st.success());
    p
}

fn time_decode(p: &Path, sampling: Sampling) -> (f64, u64, f64) {
    let opts = DecodeOptions { fps: Rational::new(1, 1), size: Some((224, 224)), sampling, threads: 1, ..Default::default() };
    let mut best = f64::MAX;
    let mut out = (0, 0.0);
    for _ in 0..3 {
        let t = Instant::now();
        let r = decode_file(p, &opts, |_| {}).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        out = (r.rows, r.lag_max);
    }
    (best, out.0, out.1)
}

fn shards(dir: &Path, level: &str) -> Vec<vidfeat_export::Parsed> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(level)).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.iter().flat_map(|f| read_file(f).unwrap()).map(|r| parse_record(&r).unwrap()).collect()
}

fn main() {
    let d = tempfile::tempdir().unwrap();
    println!("== decode time, 1080p30 30 s H.264, rows at 1 fps, 224x224, one thread");
    for gop in [60, 240] {
        let p = clip(d.path(), gop);
        let (te, re, le) = time_decode(&p, Sampling::Exact);
        let (tk, rk, lk) = time_decode(&p, Sampling::Keyframes);
        println!(
            "GOP {:.0} s: exact {te:.2} s ({re} rows, lag max {le:.3} s), keyframes {tk:.2} s ({rk} rows, lag max {lk:.2} s): {:.3} of exact's time",
            gop as f64 / 30.0,
            tk / te
        );
    }
    println!("target: at most 0.25 on the 2 s GOP");

    let real = root().join("decode/tests/media/real");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&real).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.extend(["mmaction2__demo.mp4", "imageio__cockatoo.mp4", "decord__flipping_a_pancake.mkv"].iter().map(|f| root().join("data-samples/videos").join(f)));
    println!("== features, keyframes against exact, the real clips as they are");
    let as_is = d.path().join("as-is");
    std::fs::create_dir(&as_is).unwrap();
    agreement(&as_is, &files);
    // Most of these clips hold one or two key frames; YouTube-like encodes have one every 2 s.
    println!("== features, keyframes against exact, the same clips re-encoded with a key frame every 2 s (H.264, CRF 18)");
    let gop2 = d.path().join("gop2");
    std::fs::create_dir(&gop2).unwrap();
    let reencoded: Vec<PathBuf> = files
        .iter()
        .map(|f| {
            let out = gop2.join(format!("{}.mp4", f.file_stem().unwrap().to_string_lossy()));
            let st = Command::new("ffmpeg")
                .args(["-v", "error", "-y", "-i"])
                .arg(f)
                .args(["-an", "-c:v", "libx264", "-crf", "18", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-force_key_frames", "expr:gte(t,n_forced*2)", "-sc_threshold", "0"])
                .arg(&out)
                .status()
                .unwrap();
            assert!(st.success(), "re-encoding {}", f.display());
            out
        })
        .collect();
    agreement(&gop2, &reencoded);
}

/// Features of `files` in both modes, compared per video.
fn agreement(d: &Path, files: &[PathBuf]) {
    let mut csv = String::from("id,source\n");
    for f in files {
        csv.push_str(&format!("{},{}\n", f.file_stem().unwrap().to_string_lossy(), f.display()));
    }
    let list = d.join("list.csv");
    std::fs::write(&list, csv).unwrap();
    let run = |sampling: &str, out: &Path, pca: Option<&Path>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vidfeat"));
        // 64 PCA dims: the ~90 frames of these clips support them all (a PCA fitted on fewer
        // frames than dims writes the rest as zero, and whitening its smallest components
        // would make any two frames look unrelated).
        c.args(["run", list.to_str().unwrap(), "--sampling", sampling, "--pca-dims", "64", "--torch-threads", "1", "--json", "--out", out.to_str().unwrap()]).env("RUST_LOG", "error");
        if let Some(p) = pca {
            c.arg("--pca").arg(p);
        }
        let o = c.output().unwrap();
        assert!(matches!(o.status.code(), Some(0) | Some(2)), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let exact = d.join("exact");
    let se = run("exact", &exact, None);
    let key = d.join("keyframes");
    let sk = run("keyframes", &key, Some(&exact.join("pca.npz")));
    println!("row lag: exact mean {} s max {} s; keyframes mean {} s max {} s", se["row_lag"]["mean_s"], se["row_lag"]["max_s"], sk["row_lag"]["mean_s"], sk["row_lag"]["max_s"]);
    let (ve, vk) = (shards(&exact, "video"), shards(&key, "video"));
    let (fe, fk) = (shards(&exact, "frame"), shards(&key, "frame"));
    let cosine = |x: &[f32], y: &[f32]| {
        let dot: f64 = x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum();
        let n = |v: &[f32]| v.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
        dot / (n(x) * n(y)).max(1e-12)
    };
    let (mut cos_sum, mut same, mut rows) = (0.0, 0usize, 0usize);
    for (a, b) in ve.iter().zip(&vk) {
        assert_eq!(a.id, b.id);
        let cos = cosine(&a.floats["mean_rgb"], &b.floats["mean_rgb"]);
        cos_sum += cos;
        let (r1, r2) = (&fe.iter().find(|f| f.id == a.id).unwrap().rgb, &fk.iter().find(|f| f.id == a.id).unwrap().rgb);
        let s = r1.iter().zip(r2).filter(|(p, q)| p == q).count();
        same += s;
        rows += r1.len();
        let src = files.iter().find(|f| f.file_stem().unwrap().to_string_lossy() == a.id).unwrap();
        let r = decode_file(src, &DecodeOptions { sampling: Sampling::Keyframes, size: Some((64, 64)), ..Default::default() }, |_| {}).unwrap();
        println!("  {:42} {:2} key frame(s), lag mean {:.2} s: mean_rgb cosine {cos:.4}; {s}/{} rows identical", a.id, r.decoded_frames, r.lag_mean, r1.len());
    }
    // For scale: how alike two different videos' exact mean_rgb are.
    let (mut cross, mut pairs) = (0.0, 0);
    for (i, a) in ve.iter().enumerate() {
        for b in &ve[i + 1..] {
            cross += cosine(&a.floats["mean_rgb"], &b.floats["mean_rgb"]);
            pairs += 1;
        }
    }
    println!(
        "mean cosine {:.4} over {} videos (two different videos: {:.4} on average); {:.1}% of {rows} frame rows identical",
        cos_sum / ve.len() as f64,
        ve.len(),
        cross / pairs as f64,
        same as f64 * 100.0 / rows as f64
    );
}
