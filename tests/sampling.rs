//! `--sampling keyframes` through the binary: the mode and the rows' lag are recorded (summary,
//! event log, report), a plan freezes the mode for its workers, and changing it rebuilds the
//! shards.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vidfeat_export::{parse_record, read_file};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn vidfeat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vidfeat")).current_dir(root()).env("RUST_LOG", "warn").args(args).output().unwrap()
}

fn ok(o: Output, what: &str) -> serde_json::Value {
    assert_eq!(o.status.code(), Some(0), "{what}: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{what}: {e}: {}", String::from_utf8_lossy(&o.stdout)))
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// Every frame-level shard's bytes, by name.
fn shards(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("frame")).unwrap().map(|e| e.unwrap().path()).map(|p| (p.file_name().unwrap().to_string_lossy().to_string(), std::fs::read(&p).unwrap())).collect();
    v.sort();
    v
}

/// Per video, the frame rows of a frame-level folder, by id.
fn rows(dir: &Path) -> Vec<(String, Vec<Vec<u8>>)> {
    let mut v = vec![];
    for (name, _) in shards(dir) {
        for r in read_file(&dir.join("frame").join(name)).unwrap() {
            let p = parse_record(&r).unwrap();
            v.push((p.id, p.rgb));
        }
    }
    v.sort();
    v
}

#[test]
fn keyframes_sampling_is_recorded_frozen_and_part_of_the_shard_key() {
    let d = tempfile::tempdir().unwrap();
    let o = |n: &str| d.path().join(n).display().to_string();
    let common = ["data-samples/samples.csv", "--vocab", "kinetics-400", "--shards", "2", "--pca-dims", "8", "--json"];

    // run, keyframes
    let s = ok(vidfeat(&[&["run"][..], &common, &["--sampling", "keyframes", "--out", &o("k")]].concat()), "run keyframes");
    assert_eq!(s["settings"]["sampling"], "keyframes");
    let (mean, max) = (s["row_lag"]["mean_s"].as_f64().unwrap(), s["row_lag"]["max_s"].as_f64().unwrap());
    // The bundled clips' key frames lie seconds apart.
    assert!(max >= 1.0 && mean > 0.1 && mean <= max, "{}", s["row_lag"]);
    assert_eq!(json(&d.path().join("k/plan.json"))["sampling"], "keyframes");
    // Each video's lag is in the event log; the summary's max is theirs.
    let mut lags = vec![];
    for e in std::fs::read_dir(d.path().join("k/events")).unwrap() {
        for l in std::fs::read_to_string(e.unwrap().path()).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            if v.get("id").is_some() {
                lags.push(v["lag_max_s"].as_f64().unwrap_or_else(|| panic!("no lag in {v}")));
                assert!(v["lag_mean_s"].as_f64().unwrap() <= v["lag_max_s"].as_f64().unwrap());
            }
        }
    }
    assert_eq!(lags.len(), 3);
    assert_eq!(lags.iter().cloned().fold(0.0, f64::max), max);
    // The report says which sampling, and how far rows lag.
    let r = ok(vidfeat(&["report", &o("k"), "--out", &o("k.html"), "--sheets", "0", "--json"]), "report");
    assert_eq!(r["sampling"], "keyframes");
    let html = std::fs::read_to_string(d.path().join("k.html")).unwrap();
    assert!(html.contains("<b>sampling</b> keyframes"), "the report does not name the sampling");

    // plan freezes the mode; a worker given no sampling flag follows the plan and writes what run wrote.
    ok(vidfeat(&[&["plan"][..], &common, &["--sampling", "keyframes", "--out", &o("p")]].concat()), "plan");
    assert_eq!(json(&d.path().join("p/plan.json"))["sampling"], "keyframes");
    let w = vidfeat(&["work", "--plan", &o("p"), "--worker-index", "0", "--num-workers", "1"]);
    assert!(w.status.success(), "{}", String::from_utf8_lossy(&w.stderr));
    let ws = json(&d.path().join("p/summary.json"));
    assert_eq!(ws["settings"]["sampling"], "keyframes");
    assert_eq!(ws["row_lag"], s["row_lag"]);
    assert!(shards(&d.path().join("p")) == shards(&d.path().join("k")), "the worker's shards differ from run's");
    // Each done marker says what computed its rows.
    for e in std::fs::read_dir(d.path().join("p/done")).unwrap() {
        let m = json(&e.unwrap().path());
        assert_eq!((m["compute"]["device"].as_str(), m["compute"]["hwdec"].as_str()), (Some("Cpu"), Some("none")), "{m}");
        assert!(m["compute"]["torch_threads"].as_i64().unwrap() >= 1);
    }

    // Exact sampling in the same folder: another dataset, every shard rebuilt.
    let keyframe_rows = rows(&d.path().join("k"));
    let e = ok(vidfeat(&[&["run"][..], &common, &["--out", &o("k")]].concat()), "run exact");
    assert_eq!(e["settings"]["sampling"], "exact");
    let n = shards(&d.path().join("k")).len();
    assert!(n >= 2);
    assert_eq!(e["update"]["rebuilt"], n, "{}", e["update"]);
    // Exact rows lie within a frame interval of their time.
    assert!(e["row_lag"]["max_s"].as_f64().unwrap() < 0.05, "{}", e["row_lag"]);
    let exact_rows = rows(&d.path().join("k"));
    assert_eq!(exact_rows.len(), keyframe_rows.len());
    let same_videos = exact_rows.iter().zip(&keyframe_rows).filter(|(a, b)| a == b).count();
    assert!(same_videos < exact_rows.len(), "keyframes and exact gave the same rows");
    for ((id, a), (_, b)) in exact_rows.iter().zip(&keyframe_rows) {
        assert_eq!(a.len(), b.len(), "{id}: the grid is the same, one row per second");
    }
}
