//! End-to-end: the real `vidfeat` binary on real clips, output read back through the export
//! crate's CRC-checking reader, and checked against independent references (ffprobe, the
//! Kinetics class list, Google's own YouTube-8M shards).
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vidfeat_export::{parse_record, read_file, Parsed};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn vidfeat(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_vidfeat")).args(args).current_dir(root()).output().unwrap();
    if !matches!(out.status.code(), Some(0) | Some(2)) {
        panic!("vidfeat {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    out
}

fn records(dir: &Path) -> Vec<(String, Parsed)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut out = vec![];
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        assert!(!name.starts_with('.'), "temporary shard left behind: {name}");
        for r in read_file(&f).unwrap_or_else(|e| panic!("{name}: {e}")) {
            out.push((name.clone(), parse_record(&r).unwrap()));
        }
    }
    out
}

/// Rows under the 1-fps rule, from ffprobe's frame timestamps: ceil(end of last frame - first).
fn expected_rows(video: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time,pkt_duration_time", "-of", "csv=p=0"])
        .arg(video)
        .output()
        .unwrap();
    let mut first = None;
    let mut end = 0f64;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: Vec<f64> = line.split(',').filter_map(|x| x.trim().parse().ok()).collect();
        if v.len() < 2 {
            continue;
        }
        first.get_or_insert(v[0]);
        end = end.max(v[0] + v[1]);
    }
    ((end - first.unwrap()) - 1e-9).ceil() as u64
}

fn kinetics_index(label: &str) -> i64 {
    let text = std::fs::read_to_string(root().join("labels/vocab/kinetics400_label_map.txt")).unwrap();
    text.lines().position(|l| l == label).unwrap() as i64
}

fn dequantize(q: u8) -> f32 {
    q as f32 * 4.0 / 255.0 + 4.0 / 512.0 - 2.0
}

#[test]
fn kinetics_labelled_clips_end_to_end() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    let res = vidfeat(&["run", "data-samples/samples.csv", "--vocab", "kinetics-400", "--out", o, "--json"]);
    assert_eq!(res.status.code(), Some(0));
    let summary: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    assert_eq!(summary["videos_ok"], 3);

    let expect = [
        ("arm_wrestling_demo", "videos/mmaction2__demo.mp4", "arm wrestling"),
        ("pancake_flip", "videos/decord__flipping_a_pancake.mkv", "flipping pancake"),
        ("pool_cleaning", "videos/mmaction2__rawvideo_part_0.mp4", "cleaning pool"),
    ];
    let frame = records(&out.path().join("frame"));
    let video = records(&out.path().join("video"));
    assert_eq!(frame.len(), 3);
    assert_eq!(video.len(), 3);
    let mut total_rows = 0;
    for (id, src, label) in expect {
        let (shard, f) = frame.iter().find(|(_, p)| p.id == id).unwrap_or_else(|| panic!("{id} missing"));
        let split = if id == "pool_cleaning" { "validate" } else { "train" };
        assert_eq!(shard, &format!("{split}-00000-of-00001.tfrecord"));
        assert_eq!(f.labels, vec![kinetics_index(label)], "{id}");
        let rows = expected_rows(&root().join("data-samples").join(src));
        assert_eq!(f.rgb.len() as u64, rows, "{id}: rows = seconds from the first frame");
        total_rows += rows;
        assert!(f.rgb.iter().all(|r| r.len() == 1024));
        // Not a constant: real features vary across rows.
        assert!(f.rgb.iter().flatten().any(|&b| b != f.rgb[0][0]));
        let d: Vec<f32> = f.rgb.iter().flatten().map(|&b| dequantize(b)).collect();
        assert!(d.iter().all(|v| (-2.0..=2.01).contains(v)));

        let (_, v) = video.iter().find(|(_, p)| p.id == id).unwrap();
        assert_eq!(v.labels, f.labels);
        let mean = &v.floats["mean_rgb"];
        assert_eq!(mean.len(), 1024);
        // mean_rgb is the mean of the unquantized rows: within half a bin (+ the read offset)
        // of the mean of the dequantized rows, wherever no row was clipped.
        let n = f.rgb.len();
        for j in 0..1024 {
            let col: Vec<f32> = (0..n).map(|r| dequantize(f.rgb[r][j])).collect();
            if col.iter().all(|v| v.abs() < 1.98) {
                let m = col.iter().sum::<f32>() / n as f32 - 4.0 / 512.0;
                assert!((m - mean[j]).abs() <= 2.0 / 255.0 + 1e-4, "{id} dim {j}: {m} vs {}", mean[j]);
            }
        }
    }
    assert_eq!(summary["rows"], total_rows);
    // The vocabulary and the fitted PCA are written beside the output.
    assert!(out.path().join("vocabulary.csv").exists());
    assert!(out.path().join("pca.npz").exists());
    assert_eq!(std::fs::read_to_string(out.path().join("failures.jsonl")).unwrap(), "");
}

#[test]
fn failures_are_recorded_and_the_rest_completes() {
    let out = tempfile::tempdir().unwrap();
    let res = vidfeat(&["run", "data-samples/with_failures.csv", "--vocab", "kinetics-400", "--out", out.path().to_str().unwrap()]);
    assert_eq!(res.status.code(), Some(2), "some failed");
    let failures: Vec<serde_json::Value> = std::fs::read_to_string(out.path().join("failures.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(&str, &str)> = failures.iter().map(|f| (f["id"].as_str().unwrap(), f["kind"].as_str().unwrap())).collect();
    assert_eq!(got, [("missing_video", "not_found"), ("corrupt_video", "corrupt")]);
    assert!(failures.iter().all(|f| f["reason"].as_str().unwrap().len() > 10));
    // A missing file is found while planning, a corrupt one while decoding.
    assert_eq!((failures[0]["stage"].as_str(), failures[1]["stage"].as_str()), (Some("plan"), Some("decode")));
    let ids: Vec<String> = records(&out.path().join("frame")).into_iter().map(|(_, p)| p.id).collect();
    assert_eq!(ids, ["arm_wrestling_demo", "pancake_flip"]);
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(out.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!((summary["videos_ok"].as_u64(), summary["videos_failed"].as_u64()), (Some(2), Some(2)));
    assert_eq!(summary["failures_by_kind"]["corrupt"], 1);
}

#[test]
fn kinetics_annotations_with_windows_and_missing_videos() {
    let out = tempfile::tempdir().unwrap();
    let res = vidfeat(&[
        "run", "data-samples/kinetics-400_sample.csv", "--video-root", "data-samples/videos", "--vocab", "kinetics-400", "--out",
        out.path().to_str().unwrap(),
    ]);
    assert_eq!(res.status.code(), Some(2));
    let frame = records(&out.path().join("frame"));
    let rows: Vec<(&str, usize)> = frame.iter().map(|(_, p)| (p.id.as_str(), p.rgb.len())).collect();
    // Windows [0, 10) and [0, 1) of the full videos: exactly 10 and 1 rows.
    assert_eq!(rows, [("mmaction2__demo_000000_000010", 10), ("decord__flipping_a_pancake_000000_000010", 10), ("mmaction2__rawvideo_part_0_000000_000001", 1)]);
    let failures = std::fs::read_to_string(out.path().join("failures.jsonl")).unwrap();
    assert!(failures.contains("deleted_video_id_000020_000030") && failures.contains("not_found"));
}

#[test]
fn runs_are_byte_identical_and_a_saved_pca_reproduces_them() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let base = ["run", "data-samples/samples.csv", "data-samples/samples.txt", "--vocab", "kinetics-400", "--shards", "2"];
    vidfeat(&[&base[..], &["--out", dirs[0].path().to_str().unwrap(), "--decode-workers", "2", "--batch-size", "7"]].concat());
    vidfeat(&[&base[..], &["--out", dirs[1].path().to_str().unwrap(), "--decode-workers", "1", "--batch-size", "7"]].concat());
    let pca = dirs[0].path().join("pca.npz");
    vidfeat(&[&base[..], &["--out", dirs[2].path().to_str().unwrap(), "--batch-size", "7", "--pca", pca.to_str().unwrap()]].concat());
    let mut compared = 0;
    for level in ["frame", "video"] {
        for split in ["train", "validate"] {
            for shard in 0..2 {
                let name = format!("{level}/{split}-{shard:05}-of-00002.tfrecord");
                let a = std::fs::read(dirs[0].path().join(&name)).unwrap();
                for d in &dirs[1..] {
                    assert!(a == std::fs::read(d.path().join(&name)).unwrap(), "{name} differs");
                }
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 8);
}

#[test]
fn googles_youtube8m_shards_parse_with_the_expected_ids_and_labels() {
    let fixture = root().join("tests/fixtures/yt8m_video_level_validate0000.tfrecord");
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("tests/fixtures/yt8m_video_level.DERIVED_summary.json")).unwrap()).unwrap();
    let want = &want["yt8m_video_level_validate0000.tfrecord"];
    let recs = read_file(&fixture).unwrap();
    assert_eq!(recs.len() as u64, want["num_records"].as_u64().unwrap());
    for (r, w) in recs.iter().zip(want["records_first3"].as_array().unwrap()) {
        let p = parse_record(r).unwrap();
        assert_eq!(p.level, "video");
        assert_eq!(p.id, w["id"].as_str().unwrap());
        let labels: Vec<i64> = w["labels"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        assert_eq!(p.labels, labels);
        assert_eq!(p.floats["mean_rgb"].len(), 1024);
        assert_eq!(p.floats["mean_audio"].len(), 128);
        for (a, b) in p.floats["mean_rgb"].iter().zip(w["mean_rgb_first4"].as_array().unwrap()) {
            assert_eq!(*a, b.as_f64().unwrap() as f32);
        }
    }
    // The CLI reads them too, and a flipped bit is reported with its byte offset.
    let out = vidfeat(&["inspect", fixture.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 284);
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.tfrecord");
    let mut bytes = std::fs::read(&fixture).unwrap();
    bytes[4711 + 12 + 100] ^= 0x10; // inside record 1 (offset 4711)
    std::fs::write(&bad, bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vidfeat")).args(["inspect", bad.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("byte 4711"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn frames_command_writes_the_sampled_frames_and_their_times() {
    let d = tempfile::tempdir().unwrap();
    let png = d.path().join("png");
    let raw = d.path().join("raw");
    let video = "data-samples/videos/mmaction2__demo.mp4"; // 340x256 stored, SAR 64:51
    vidfeat(&["frames", video, "--out", png.to_str().unwrap(), "--max-frames", "3"]);
    vidfeat(&["frames", video, "--out", raw.to_str().unwrap(), "--max-frames", "3", "--format", "rgb24"]);
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(png.join("frames.json")).unwrap()).unwrap();
    assert_eq!((meta["width"].as_u64(), meta["height"].as_u64()), (Some(427), Some(256)), "displayed size");
    let rows = meta["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for (k, r) in rows.iter().enumerate() {
        assert_eq!(r["index"].as_u64(), Some(k as u64));
        assert_eq!(r["time"].as_f64(), Some(k as f64));
        assert_eq!(r["source_frame"].as_u64(), Some(28 * k as u64), "28 fps: frame 28k is on screen at k s");
    }
    let bytes = std::fs::read(raw.join("frames.rgb24")).unwrap();
    assert_eq!(bytes.len(), 3 * 427 * 256 * 3);
    for k in 0..3 {
        let img = image::open(png.join(format!("frame_{k:05}.png"))).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (427, 256));
        assert!(img.as_raw()[..] == bytes[k * 427 * 256 * 3..(k + 1) * 427 * 256 * 3], "png and rgb24 rows agree");
    }
}

#[test]
fn decode_to_a_frame_cache_then_extract_matches_run() {
    let d = tempfile::tempdir().unwrap();
    let (run_out, cache, ext_out) = (d.path().join("run"), d.path().join("cache"), d.path().join("extract"));
    let list = ["data-samples/with_failures.csv", "--vocab", "kinetics-400", "--shards", "2"];
    // One torch thread in both: the CPU network's last bits depend on its thread count (run
    // defaults to half the cores, extract to all of them).
    let r = vidfeat(&[&["run"][..], &list, &["--out", run_out.to_str().unwrap(), "--torch-threads", "1"]].concat());
    assert_eq!(r.status.code(), Some(2));
    let r = vidfeat(&[&["decode"][..], &list, &["--cache", cache.to_str().unwrap()]].concat());
    assert_eq!(r.status.code(), Some(2), "the cache records the two failures");
    assert!(cache.join("manifest.json").exists());
    // The same PCA: a PCA fitted on a few frames amplifies the smallest differences.
    let pca = run_out.join("pca.npz");
    let r = vidfeat(&["extract", "--cache", cache.to_str().unwrap(), "--out", ext_out.to_str().unwrap(), "--pca", pca.to_str().unwrap(), "--torch-threads", "1"]);
    assert_eq!(r.status.code(), Some(2));
    // The cache readers and the reducers (PCA, quantization, records) run on --threads
    // threads; the shards are the same bytes whatever their number.
    for threads in ["1", "3"] {
        let o = d.path().join(format!("extract-{threads}"));
        let r = vidfeat(&["extract", "--cache", cache.to_str().unwrap(), "--out", o.to_str().unwrap(), "--pca", pca.to_str().unwrap(), "--torch-threads", "1", "--threads", threads]);
        assert_eq!(r.status.code(), Some(2));
        for layout in ["frame", "video"] {
            let mut names: Vec<_> = std::fs::read_dir(ext_out.join(layout)).unwrap().map(|e| e.unwrap().file_name()).collect();
            names.sort();
            assert_eq!(names.len(), 2);
            for n in names {
                assert!(std::fs::read(ext_out.join(layout).join(&n)).unwrap() == std::fs::read(o.join(layout).join(&n)).unwrap(), "--threads {threads}: {layout}/{n:?} differs");
            }
        }
    }
    // Same videos, labels and rows; the features agree to within one quantization bin (run
    // batches frames within a video, extract across videos, and the CNN's last bits depend on
    // the batch it runs in).
    let (mut bytes, mut off_by_one) = (0usize, 0usize);
    for shard in 0..2 {
        let name = format!("train-{shard:05}-of-00002.tfrecord");
        let (a, b) = (records(&run_out.join("frame")), records(&ext_out.join("frame")));
        let (a, b): (Vec<_>, Vec<_>) = (a.into_iter().filter(|r| r.0 == name).collect(), b.into_iter().filter(|r| r.0 == name).collect());
        assert_eq!(a.len(), b.len(), "{name}");
        for ((_, x), (_, y)) in a.iter().zip(&b) {
            assert_eq!((&x.id, &x.labels, x.rgb.len()), (&y.id, &y.labels, y.rgb.len()), "{name}");
            for (rx, ry) in x.rgb.iter().zip(&y.rgb) {
                for (p, q) in rx.iter().zip(ry) {
                    assert!(p.abs_diff(*q) <= 1, "{}: byte {p} vs {q}", x.id);
                    bytes += 1;
                    off_by_one += (p != q) as usize;
                }
            }
        }
    }
    assert!(bytes > 10_000 && (off_by_one as f64) < 0.01 * bytes as f64, "{off_by_one} of {bytes} bytes differ");
    let kinds = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p.join("failures.jsonl")).unwrap().lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(kinds(&run_out), kinds(&ext_out));
    assert_eq!(std::fs::read(run_out.join("vocabulary.csv")).unwrap(), std::fs::read(ext_out.join("vocabulary.csv")).unwrap());
    // A cache made for another input size is refused with a clear error.
    let side = d.path().join("other.json");
    let mut s: serde_json::Value = serde_json::from_slice(&std::fs::read(root().join("models/efficientnet-lite0.json")).unwrap()).unwrap();
    s["input_size"] = serde_json::json!([128, 128]);
    std::fs::write(&side, s.to_string()).unwrap();
    let small = d.path().join("small");
    vidfeat(&["decode", "data-samples/samples.csv", "--vocab", "kinetics-400", "--cache", small.to_str().unwrap(), "--sidecar", side.to_str().unwrap()]);
    let out = Command::new(env!("CARGO_BIN_EXE_vidfeat")).args(["extract", "--cache", small.to_str().unwrap(), "--out", d.path().join("x").to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("128x128"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn pca_fit_writes_both_layouts_and_run_uses_them() {
    let d = tempfile::tempdir().unwrap();
    let npz = d.path().join("pca.npz");
    let folder = d.path().join("yt8m_pca");
    let fit = |out: &Path| -> serde_json::Value {
        let o = vidfeat(&["pca", "fit", "data-samples/samples.csv", "--vocab", "kinetics-400", "--out", out.to_str().unwrap(), "--pca-sample-frames", "15", "--fps", "2"]);
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let a = fit(&npz);
    let b = fit(&folder);
    assert_eq!(a["frames"], 15, "bounded sample");
    assert_eq!(a["sha256"], b["sha256"], "same PCA in both layouts");
    for f in ["mean.npy", "eigenvals.npy", "eigenvecs.npy"] {
        assert!(folder.join(f).exists());
    }
    for (pca, fitted) in [(&npz, &a), (&folder, &b)] {
        let out = d.path().join(format!("out-{}", pca.file_name().unwrap().to_string_lossy()));
        let r = vidfeat(&["run", "data-samples/samples.csv", "--vocab", "kinetics-400", "--pca", pca.to_str().unwrap(), "--pca-dims", "8", "--out", out.to_str().unwrap(), "--json"]);
        let s: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
        assert_eq!(s["pca"]["sha256"], fitted["sha256"], "summary names the PCA used");
        assert_eq!(s["pca"]["dims"], 8);
        assert!(!out.join("pca.npz").exists(), "no PCA fitted when one is given");
        let f = records(&out.join("frame"));
        assert!(f.iter().all(|(_, p)| p.rgb.iter().all(|r| r.len() == 8)));
    }
}

#[test]
fn plan_validates_without_decoding_and_strict_stops_before_work() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("plan");
    let bad = d.path().join("bad.csv");
    std::fs::write(
        &bad,
        format!(
            "id,source,labels,split\na,{v}/mmaction2__demo.mp4,arm wrestling,train\nb,{v}/gone.mp4,arm wrestling,train\nc,{v}/mmaction2__demo.mp4,no such class,val\na,{v}/decord__flipping_a_pancake.mkv,flipping pancake,train\nd,,x,train\n",
            v = root().join("data-samples/videos").display()
        ),
    )
    .unwrap();
    let r = vidfeat(&["plan", bad.to_str().unwrap(), "--vocab", "kinetics-400", "--out", out.to_str().unwrap(), "--json", "--dry-run"]);
    assert!(!out.join("plan.json").exists(), "a dry run freezes nothing");
    assert_eq!(r.status.code(), Some(2));
    let s: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    for (k, v) in [("rows", 5), ("resolved", 1), ("missing_source", 1), ("invalid_row", 1), ("unknown_label", 1), ("duplicate_id", 1)] {
        assert_eq!(s[k], v, "{k}: {s}");
    }
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(out.join("plan.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1);
    assert_eq!((lines[0]["id"].as_str(), lines[0]["shard_file"].as_str()), (Some("a"), Some("train-00000-of-00001.tfrecord")));
    let failures = std::fs::read_to_string(out.join("failures.jsonl")).unwrap();
    assert!(failures.contains("bad.csv") && failures.contains("\"line\":6"), "rows are named by file and line");
    // --strict: nothing is written, exit 1.
    let run_out = d.path().join("never");
    let o = Command::new(env!("CARGO_BIN_EXE_vidfeat"))
        .args(["run", bad.to_str().unwrap(), "--vocab", "kinetics-400", "--strict", "--out", run_out.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(!run_out.exists());
}

#[test]
fn every_label_of_the_real_kinetics_val_csvs_maps_to_its_class() {
    for (csv, vocab, classes) in [("kinetics-400_val.csv", "kinetics-400", 400), ("kinetics-600_val.csv", "kinetics-600", 600)] {
        let d = tempfile::tempdir().unwrap();
        let path = root().join("tests/fixtures/kinetics").join(csv);
        let rows = std::fs::read_to_string(&path).unwrap().lines().count() - 1;
        let r = vidfeat(&["plan", path.to_str().unwrap(), "--vocab", vocab, "--video-root", d.path().to_str().unwrap(), "--out", d.path().join("p").to_str().unwrap(), "--json", "--dry-run"]);
        let s: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
        assert_eq!(s["rows"], rows as u64, "{csv}");
        assert_eq!(s["unknown_label"], 0, "{csv}: every label maps");
        assert_eq!(s["invalid_row"], 0, "{csv}");
        // No clips downloaded here: every row is reported missing, none silently dropped.
        assert_eq!(s["missing_source"].as_u64().unwrap() + s["duplicate_id"].as_u64().unwrap(), rows as u64, "{csv}");
        // The labels that occur are exactly the vocabulary's classes.
        let text = std::fs::read_to_string(&path).unwrap();
        let mut seen: Vec<String> = csv_labels(&text);
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), classes, "{csv}");
    }
}

fn csv_labels(text: &str) -> Vec<String> {
    // The label is the first field, quoted when it holds a comma.
    text.lines().skip(1).map(|l| if let Some(rest) = l.strip_prefix('"') { rest.split('"').next().unwrap().to_string() } else { l.split(',').next().unwrap().to_string() }).collect()
}

#[test]
fn verify_accepts_good_output_and_names_flipped_bits_and_truncation() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    vidfeat(&["run", "data-samples/samples.csv", "--vocab", "kinetics-400", "--shards", "1", "--out", out.to_str().unwrap()]);
    let check = |p: &Path| {
        let o = Command::new(env!("CARGO_BIN_EXE_vidfeat")).args(["verify", "--json"]).arg(p).output().unwrap();
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (o.status.code(), r)
    };
    let (code, r) = check(&out);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["records"], 6, "3 videos, frame and video level");
    // Flip one bit inside the second record's data of the train shard (two videos).
    let shard = out.join("frame/train-00000-of-00001.tfrecord");
    assert_eq!(read_file(&shard).unwrap().len(), 2);
    let good = std::fs::read(&shard).unwrap();
    let first_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let second = first_len + 16;
    let mut bad = good.clone();
    bad[second + 12 + 40] ^= 0x01;
    std::fs::write(&shard, &bad).unwrap();
    let (code, r) = check(&out);
    assert_eq!(code, Some(1));
    let text = r["problems"].to_string();
    assert!(text.contains(shard.file_name().unwrap().to_str().unwrap()) && text.contains(&format!("byte {second}")), "{text}");
    // Truncated: the last record is cut; the count no longer matches either.
    std::fs::write(&shard, &good[..good.len() - 10]).unwrap();
    let (code, r) = check(&out);
    assert_eq!(code, Some(1));
    assert!(r["problems"].to_string().contains("truncated"), "{r}");
    assert!(r["problems"].to_string().contains("summary.json says 2"), "{r}");
    // A single good file verifies on its own.
    std::fs::write(&shard, &good).unwrap();
    assert_eq!(check(&shard).0, Some(0));
}

#[test]
fn hostile_inputs_fail_with_their_kinds_and_the_good_videos_complete() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    let secret = "TOP-SECRET-TOKEN-7f3a9";
    std::fs::write(p("secret.txt"), format!("{secret}\n")).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let ffmpeg = |args: &[&str], out: &str| {
        assert!(Command::new("ffmpeg").args(["-v", "error", "-y"]).args(args).arg(p(out)).status().unwrap().success());
    };
    std::fs::write(p("empty.mp4"), b"").unwrap();
    let noise: Vec<u8> = (0..8192u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(p("noise.mp4"), noise).unwrap();
    std::fs::copy(root().join("data-samples/reference_frame.png"), p("picture.mp4")).unwrap();
    ffmpeg(&["-f", "lavfi", "-i", "sine=d=1"], "tone.m4a");
    std::fs::write(p("hls_secret.mp4"), format!("#EXTM3U\n#EXTINF:1.0,\n{}\n#EXT-X-ENDLIST\n", p("secret.txt").display())).unwrap();
    std::fs::write(p("hls_net.mp4"), format!("#EXTM3U\n#EXTINF:1.0,\nhttp://127.0.0.1:{port}/x.ts\n#EXT-X-ENDLIST\n")).unwrap();
    std::fs::write(p("concat.mp4"), format!("ffconcat version 1.0\nfile '/etc/passwd'\nfile '{}'\n", p("secret.txt").display())).unwrap();
    ffmpeg(&["-f", "lavfi", "-i", "color=c=gray:size=8000x8000:rate=1", "-frames:v", "1", "-c:v", "libx264", "-preset", "ultrafast"], "huge.mp4");
    // An hour of video (tiny frames, 1 fps): capped at --max-frames rows, streamed, no hang.
    ffmpeg(&["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=1", "-t", "3600", "-c:v", "libx264", "-preset", "ultrafast", "-g", "60"], "hour.mp4");
    let truncated = root().join("decode/tests/media/broken/mp4parse__invalid_userdata.mp4");
    let good = root().join("data-samples/videos");
    let rows = [
        ("good_1", good.join("mmaction2__demo.mp4"), "ok"),
        ("empty", p("empty.mp4"), "unsupported_format"),
        ("noise", p("noise.mp4"), "unsupported_format"),
        ("picture", p("picture.mp4"), "unsupported_format"),
        ("tone", p("tone.m4a"), "no_video_stream"),
        ("hls_secret", p("hls_secret.mp4"), "forbidden_format"),
        ("hls_net", p("hls_net.mp4"), "forbidden_format"),
        ("concat", p("concat.mp4"), "forbidden_format"),
        ("huge", p("huge.mp4"), "too_large"),
        ("truncated", truncated, "truncated"),
        ("missing", p("nope.mp4"), "not_found"),
        ("hour_long", p("hour.mp4"), "ok"),
        ("good_2", good.join("decord__flipping_a_pancake.mkv"), "ok"),
    ];
    let list = p("hostile.csv");
    let mut csv = String::from("id,source\n");
    for (id, path, _) in &rows {
        csv += &format!("{id},{}\n", path.display());
    }
    std::fs::write(&list, csv).unwrap();
    let out = p("out");
    let r = vidfeat(&["run", list.to_str().unwrap(), "--out", out.to_str().unwrap(), "--pca-dims", "16"]);
    assert_eq!(r.status.code(), Some(2));
    let failures: std::collections::HashMap<String, String> = std::fs::read_to_string(out.join("failures.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|f| (f["id"].as_str().unwrap().to_string(), f["kind"].as_str().unwrap().to_string()))
        .collect();
    for (id, _, kind) in &rows {
        if *kind == "ok" {
            assert!(!failures.contains_key(*id), "{id} should succeed");
        } else {
            assert_eq!(failures.get(*id).map(String::as_str), Some(*kind), "{id}");
        }
    }
    let recs = records(&out.join("frame"));
    let ids: Vec<&str> = recs.iter().map(|(_, p)| p.id.as_str()).collect();
    assert_eq!(ids, ["good_1", "hour_long", "good_2"]);
    assert_eq!(recs[1].1.rgb.len(), 300, "the hour-long video stops at --max-frames");
    assert!(listener.accept().is_err(), "nothing connected to the loopback port");
    // No byte of the secret anywhere in the output.
    let mut stack = vec![out.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "secret leaked into {}", path.display());
            }
        }
    }
}

#[test]
fn pca_fit_stops_early_without_hanging_the_decoders() {
    // More videos than the feeder may run ahead (2 x workers + 2), and a sample that is full
    // after the first one: the fit must stop and the process end.
    let d = tempfile::tempdir().unwrap();
    let list = d.path().join("many.csv");
    let clip = root().join("data-samples/videos/mmaction2__demo.mp4");
    let body: String = (0..12).map(|i| format!("v{i},{}\n", clip.display())).collect();
    std::fs::write(&list, format!("id,source\n{body}")).unwrap();
    let t = std::time::Instant::now();
    let o = Command::new("timeout")
        .arg("120")
        .arg(env!("CARGO_BIN_EXE_vidfeat"))
        .args(["pca", "fit", list.to_str().unwrap(), "--out", d.path().join("p.npz").to_str().unwrap(), "--pca-sample-frames", "3", "--dims", "2"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((s["frames"].as_u64(), s["videos"].as_u64()), (Some(3), Some(1)));
    assert!(t.elapsed().as_secs() < 60);
}

#[test]
fn gzip_and_zlib_shards_are_standard_streams_of_the_plain_bytes() {
    let d = tempfile::tempdir().unwrap();
    let run = |c: &str| {
        let out = d.path().join(c);
        vidfeat(&["run", "data-samples/samples.csv", "--vocab", "kinetics-400", "--shards", "1", "--compression", c, "--out", out.to_str().unwrap()]);
        out
    };
    let plain = run("none");
    for (c, py) in [("gzip", "import gzip,sys; sys.stdout.buffer.write(gzip.open(sys.argv[1]).read())"), ("zlib", "import zlib,sys; sys.stdout.buffer.write(zlib.decompress(open(sys.argv[1],'rb').read()))")] {
        let out = run(c);
        // Without a PCA given, each run fits its own (same frames, same PCA): compare bytes.
        for name in ["frame/train-00000-of-00001.tfrecord", "video/validate-00000-of-00001.tfrecord"] {
            let o = Command::new("python3").args(["-c", py]).arg(out.join(name)).output().unwrap();
            assert!(o.status.success(), "{c}: {}", String::from_utf8_lossy(&o.stderr));
            assert!(o.stdout == std::fs::read(plain.join(name)).unwrap(), "{c} {name}: decompressed bytes differ from the plain shard");
        }
        let v = Command::new(env!("CARGO_BIN_EXE_vidfeat")).args(["verify"]).arg(&out).output().unwrap();
        assert_eq!(v.status.code(), Some(0), "{}", String::from_utf8_lossy(&v.stdout));
        let s: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
        assert_eq!(s["settings"]["compression"], c.to_uppercase());
    }
}
