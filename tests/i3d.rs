//! Kinetics-400 I3D (`--model i3d-kinetics-400`, made by `scripts/i3d-setup.sh`) on the
//! bundled real Kinetics clips:
//!
//! * the tch port against an independent numpy forward pass (`tests/i3d/reference.py`) on
//!   each clip's first 16 frames: the same features and logits;
//! * proof that it is the Kinetics-trained network: over a video's clip rows, the labelled
//!   class is in the top 5 of the averaged logits;
//! * clip rows through the whole pipeline: `vidfeat frames --clip` shows a clip row's frames,
//!   and they are the 25 fps frame rows at the same times; a run writes one row per second.
use std::path::{Path, PathBuf};
use std::process::Command;

use vidfeat_decode::{decode_file, DecodeOptions, Rational, Resize};
use vidfeat_features::Model;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The model, or None (the test is skipped, loudly) where it was not made and
/// `VIDFEAT_REQUIRE_I3D` is not set (`make test` sets it and makes it).
fn model_path() -> Option<PathBuf> {
    let p = root().join(".deps/models/i3d-kinetics-400.pt");
    if p.is_file() {
        return Some(p);
    }
    assert!(std::env::var_os("VIDFEAT_REQUIRE_I3D").is_none(), "{} missing: run scripts/i3d-setup.sh", p.display());
    eprintln!("SKIPPED: {} not made (scripts/i3d-setup.sh)", p.display());
    None
}

const CLIPS: [(&str, &str); 3] = [("mmaction2__demo.mp4", "arm wrestling"), ("decord__flipping_a_pancake.mkv", "flipping pancake"), ("mmaction2__rawvideo_part_0.mp4", "cleaning pool")];

fn labels() -> Vec<String> {
    std::fs::read_to_string(root().join("labels/vocab/kinetics400_label_map.txt")).unwrap().lines().map(str::to_string).collect()
}

/// The clip rows of a video as the pipeline decodes them for this model.
fn clip_rows(video: &Path, max: u64) -> Vec<Vec<u8>> {
    let opts = DecodeOptions { size: Some((224, 224)), resize: Resize::CenterCrop, max_frames: Some(max), clip: Some((16, Rational::new(25, 1))), ..Default::default() };
    let mut rows = vec![];
    decode_file(video, &opts, |f| {
        assert_eq!(f.rgb.len(), 16 * 224 * 224 * 3);
        rows.push(f.rgb);
    })
    .unwrap();
    rows
}

fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (*x as f64 - y).abs()).fold(0.0, f64::max)
}

#[test]
fn the_port_matches_an_independent_numpy_forward_pass() {
    let Some(m) = model_path() else { return };
    let python = root().join(".deps/i3d-venv/bin/python");
    let weights = root().join(".deps/i3d/i3d-kinetics-400.npz");
    assert!(python.is_file() && weights.is_file(), "scripts/i3d-setup.sh leaves its numpy venv and the flattened weights in .deps");
    let model = Model::load(&m, None, tch::Device::Cpu).unwrap();
    let d = tempfile::tempdir().unwrap();
    for (video, _) in CLIPS {
        let clip = clip_rows(&root().join("data-samples/videos").join(video), 1).remove(0);
        let f = d.path().join("clip.rgb24");
        std::fs::write(&f, &clip).unwrap();
        let o = Command::new(&python).arg(root().join("tests/i3d/reference.py")).arg(&weights).arg(&f).arg("16").output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let want = |k: &str| -> Vec<f64> { r[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect() };
        let (wf, wl) = (want("features"), want("logits"));
        let out = model.finish_all(model.submit(&clip, 1).unwrap()).unwrap();
        let logits = out.logits.unwrap();
        assert_eq!((out.features.len(), logits.len()), (1024, 400));
        // Folded batch norm and libtorch's summation order against numpy's: float32 noise.
        let scale = wl.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        let (df, dl) = (max_abs_diff(&out.features, &wf), max_abs_diff(&logits, &wl));
        println!("{video}: max |features - numpy| {df:.2e}, max |logits - numpy| {dl:.2e} (logits up to {scale:.1})");
        assert!(df < 1e-3 && dl < 1e-3 * scale.max(1.0), "{video}: features differ by {df}, logits by {dl}");
        // And the same class ranking.
        let top = |v: &mut dyn Iterator<Item = f64>| {
            let mut i: Vec<(usize, f64)> = v.enumerate().collect();
            i.sort_by(|a, b| b.1.total_cmp(&a.1));
            i.into_iter().take(5).map(|(i, _)| i).collect::<Vec<_>>()
        };
        assert_eq!(top(&mut logits.iter().map(|v| *v as f64)), top(&mut wl.iter().copied()), "{video}");
    }
}

#[test]
fn the_labelled_kinetics_class_is_in_the_top_5() {
    let Some(m) = model_path() else { return };
    let model = Model::load(&m, None, tch::Device::Cpu).unwrap();
    let names = labels();
    for (video, label) in CLIPS {
        let rows = clip_rows(&root().join("data-samples/videos").join(video), 6);
        let n = rows.len();
        let logits = model.finish_all(model.submit(&rows.concat(), n).unwrap()).unwrap().logits.unwrap();
        // The video's prediction: logits averaged over its clip rows.
        let mut mean = vec![0f64; 400];
        for row in logits.chunks_exact(400) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += *v as f64 / n as f64;
            }
        }
        let mut order: Vec<usize> = (0..400).collect();
        order.sort_by(|a, b| mean[*b].total_cmp(&mean[*a]));
        let top5: Vec<&str> = order[..5].iter().map(|&i| names[i].as_str()).collect();
        println!("{video} ({label}, {n} clips): top-5 {top5:?}");
        assert!(top5.contains(&label), "{video}: {label} not in the top 5 {top5:?}");
    }
}

#[test]
fn clip_rows_are_the_frames_at_their_times_and_runs_write_one_row_per_second() {
    let Some(_) = model_path() else { return };
    let d = tempfile::tempdir().unwrap();
    let video = root().join("data-samples/videos/mmaction2__demo.mp4");
    let frames = |out: &Path, extra: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_vidfeat"))
            .arg("frames")
            .arg(&video)
            .args(["--size", "224x224", "--resize", "center-crop", "--format", "rgb24", "--out"])
            .arg(out)
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read(out.join("frames.rgb24")).unwrap()
    };
    // Clip rows of 16 frames at 25 fps, rows at 1/s, against frame rows at 25/s.
    let clips = frames(&d.path().join("clips"), &["--clip", "16", "--clip-fps", "25", "--max-frames", "3"]);
    let at25 = frames(&d.path().join("at25"), &["--fps", "25", "--max-frames", "66"]);
    let f = 224 * 224 * 3;
    assert_eq!(clips.len(), 3 * 16 * f);
    for k in 0..3 {
        for j in 0..16 {
            let got = &clips[(k * 16 + j) * f..][..f];
            assert!(got == &at25[(k * 25 + j) * f..][..f], "clip row {k} frame {j} is not the 25 fps frame row {}", k * 25 + j);
        }
    }
    // The library's clip rows are the CLI's.
    assert_eq!(clip_rows(&video, 3).concat(), clips);
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(d.path().join("clips/frames.json")).unwrap()).unwrap();
    assert_eq!(meta["rows"].as_array().unwrap().len(), 3, "{meta}");

    // A run: one frame-level row per second (a 10 s video, 10 clip rows), 1024-d I3D features.
    let list = d.path().join("l.csv");
    std::fs::write(&list, format!("id,source,labels\ndemo,{},arm wrestling\n", video.display())).unwrap();
    let out = d.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_vidfeat"))
        .args(["run", list.to_str().unwrap(), "--vocab", "kinetics-400", "--model", "i3d-kinetics-400", "--pca-dims", "8", "--json", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["rows"], 10, "{s}");
    let shard = std::fs::read_dir(out.join("frame")).unwrap().next().unwrap().unwrap().path();
    let rec = vidfeat_export::parse_record(&vidfeat_export::read_file(&shard).unwrap()[0]).unwrap();
    assert_eq!((rec.rgb.len(), rec.rgb[0].len()), (10, 8));
    assert!(!out.join("predictions.jsonl").exists() && s.get("predictions").is_none(), "no predictions unless asked");
    // A clip model outweighs decoding: by default the network gets every core.
    let marker = std::fs::read_dir(out.join("done")).unwrap().next().unwrap().unwrap().path();
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(marker).unwrap()).unwrap();
    assert_eq!(m["compute"]["torch_threads"].as_u64(), Some(std::thread::available_parallelism().unwrap().get() as u64), "{m}");
}

#[test]
fn predict_writes_each_videos_top_classes_and_the_accuracy_on_its_labels() {
    let Some(_) = model_path() else { return };
    let d = tempfile::tempdir().unwrap();
    let videos = root().join("data-samples/videos");
    // The pancake video labelled wrongly, on purpose: accuracy must see it.
    let list = d.path().join("l.csv");
    std::fs::write(
        &list,
        format!("id,source,labels\ndemo,{0}/{1},arm wrestling\npancake,{0}/{2},arm wrestling\npool,{0}/{3},cleaning pool\n", videos.display(), CLIPS[0].0, CLIPS[1].0, CLIPS[2].0),
    )
    .unwrap();
    let out = d.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_vidfeat"))
        .args(["run", list.to_str().unwrap(), "--vocab", "kinetics-400", "--model", "i3d-kinetics-400", "--max-frames", "6", "--predict", "3", "--pca-dims", "8", "--json", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("predictions.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    for (l, (id, (_, truth))) in lines.iter().zip(["demo", "pancake", "pool"].iter().zip(CLIPS)) {
        assert_eq!(l["id"], *id);
        let top = l["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert_eq!(top[0]["name"], truth, "{l}");
        let scores: Vec<f64> = top.iter().map(|t| t["score"].as_f64().unwrap()).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]) && scores.iter().sum::<f64>() <= 1.0 + 1e-6, "{l}");
        assert_eq!(labels()[top[0]["index"].as_u64().unwrap() as usize], truth);
    }
    let p = &s["predictions"];
    assert_eq!((p["videos"].as_u64(), p["labelled"].as_u64()), (Some(3), Some(3)), "{p}");
    assert_eq!((p["top1"].as_f64(), p["top5"].as_f64()), (Some(0.6667), Some(0.6667)), "{p}");
    assert_eq!(p["most_confused"], serde_json::json!([{"label": "arm wrestling", "predicted": "flipping pancake", "videos": 1}]));
    // The logits live in the video-level records (and so with their shard).
    let shard = std::fs::read_dir(out.join("video")).unwrap().next().unwrap().unwrap().path();
    let rec = vidfeat_export::parse_record(&vidfeat_export::read_file(&shard).unwrap()[0]).unwrap();
    assert_eq!(rec.floats["logits"].len(), 400);
    // The report shows them.
    let o = Command::new(env!("CARGO_BIN_EXE_vidfeat")).args(["report", out.to_str().unwrap(), "--out", d.path().join("r.html").to_str().unwrap(), "--sheets", "0"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(d.path().join("r.html")).unwrap();
    assert!(html.contains("top-1 66.7%") && html.contains("arm wrestling &rarr; flipping pancake"), "report lacks the predictions");
}

#[test]
fn predict_needs_a_classifier_head() {
    let d = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_vidfeat"))
        .args(["run", "data-samples/samples.csv", "--vocab", "kinetics-400", "--predict", "5", "--out", d.path().join("o").to_str().unwrap()])
        .current_dir(root())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--predict needs a model with a classifier head"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!d.path().join("o/frame").exists());
}

#[test]
fn clip_rows_go_through_the_frame_cache() {
    let Some(_) = model_path() else { return };
    let d = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_vidfeat")).args(args).current_dir(root()).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    let p = |name: &str| d.path().join(name).to_str().unwrap().to_string();
    let list = ["data-samples/samples.csv", "--vocab", "kinetics-400", "--max-frames", "2"];
    run(&[&["run"][..], &list, &["--model", "i3d-kinetics-400", "--pca-dims", "8", "--torch-threads", "1", "--out", &p("run")]].concat());
    run(&[&["decode"][..], &list, &["--sidecar", "i3d-kinetics-400", "--cache", &p("cache")]].concat());
    let pca = p("run/pca.npz");
    run(&["extract", "--cache", &p("cache"), "--model", "i3d-kinetics-400", "--pca", &pca, "--torch-threads", "1", "--out", &p("extract")]);
    // The same rows; features within one quantization bin (extract batches across videos).
    let recs = |dir: &str| -> Vec<vidfeat_export::Parsed> {
        let mut v = vec![];
        let mut names: Vec<PathBuf> = std::fs::read_dir(d.path().join(dir).join("frame")).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        for n in names {
            v.extend(vidfeat_export::read_file(&n).unwrap().iter().map(|r| vidfeat_export::parse_record(r).unwrap()));
        }
        v
    };
    let (a, b) = (recs("run"), recs("extract"));
    assert_eq!(a.len(), 3);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((&x.id, x.rgb.len()), (&y.id, y.rgb.len()));
        for (rx, ry) in x.rgb.iter().zip(&y.rgb) {
            assert!(rx.iter().zip(ry).all(|(p, q)| p.abs_diff(*q) <= 1), "{}", x.id);
        }
    }
    // An image model refuses the clip cache, saying why.
    let o = Command::new(env!("CARGO_BIN_EXE_vidfeat")).args(["extract", "--cache", &p("cache"), "--pca", &pca, "--out", &p("x2")]).current_dir(root()).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("rows of 16 frames"), "{}", String::from_utf8_lossy(&o.stderr));
}
