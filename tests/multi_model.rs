//! Several models from one decode (`--model A --model B`) on the bundled real clips: each
//! model's rows in the shared records are the rows its own run writes, byte for byte (an image
//! model fed from I3D's clip decode takes each clip's first frame, the frame its own decode
//! picks), each with its own PCA; the folder re-runs, retries and refuses as a one-model folder
//! does. Needs the I3D model (`scripts/i3d-setup.sh`, run by `make test`).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether the I3D model is there (the test is skipped, loudly, where it was not made and
/// `VIDFEAT_REQUIRE_I3D` is not set).
fn have_i3d() -> bool {
    let p = root().join(".deps/models/i3d-kinetics-400.pt");
    if p.is_file() {
        return true;
    }
    assert!(std::env::var_os("VIDFEAT_REQUIRE_I3D").is_none(), "{} missing: run scripts/i3d-setup.sh", p.display());
    eprintln!("SKIPPED: {} not made (scripts/i3d-setup.sh)", p.display());
    false
}

fn vidfeat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vidfeat")).args(args).current_dir(root()).output().unwrap()
}

/// A command's JSON output, its exit code checked (2: some videos failed).
fn ends(code: i32, args: &[&str]) -> serde_json::Value {
    let o = vidfeat(args);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null)
}

fn ok(args: &[&str]) -> serde_json::Value {
    ends(0, args)
}

/// Every record of a folder's shards, by id: (frame-level, video-level).
fn records(out: &Path) -> BTreeMap<String, (vidfeat_export::Parsed, vidfeat_export::Parsed)> {
    let read = |level: &str| -> Vec<vidfeat_export::Parsed> {
        let mut v = vec![];
        for e in std::fs::read_dir(out.join(level)).unwrap() {
            v.extend(vidfeat_export::read_file(&e.unwrap().path()).unwrap().iter().map(|r| vidfeat_export::parse_record(r).unwrap()));
        }
        v
    };
    let mut video: BTreeMap<String, vidfeat_export::Parsed> = read("video").into_iter().map(|p| (p.id.clone(), p)).collect();
    read("frame").into_iter().map(|f| (f.id.clone(), (f.clone(), video.remove(&f.id).unwrap()))).collect()
}

fn sha(p: &Path) -> String {
    vidfeat_features::file_sha256(p).unwrap()
}

#[test]
fn each_models_rows_are_its_own_runs_rows_from_one_decode() {
    if !have_i3d() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let p = |name: &str| d.path().join(name).to_str().unwrap().to_string();
    // Two real clips; the two-model run's list has a broken file among them too (a failure to
    // retry later). A video fails for all the models together: one decode feeds them (this
    // file fails as corrupt when decoded as far as I3D's clips reach).
    let videos = root().join("data-samples/videos");
    let rows = [format!("demo,{}/mmaction2__demo.mp4,arm wrestling", videos.display()), format!("pancake,{}/decord__flipping_a_pancake.mkv,flipping pancake", videos.display())];
    let broken = format!("broken,{},arm wrestling", root().join("data-samples/broken/decord__corrupted.mp4").display());
    let (good, with_broken) = (d.path().join("good.csv"), d.path().join("l.csv"));
    std::fs::write(&good, format!("id,source,labels\n{}\n{}\n", rows[0], rows[1])).unwrap();
    std::fs::write(&with_broken, format!("id,source,labels\n{}\n{broken}\n{}\n", rows[0], rows[1])).unwrap();
    let common = ["--vocab", "kinetics-400", "--max-frames", "3", "--resize", "center-crop", "--pca-dims", "16", "--torch-threads", "1", "--json"];
    ok(&[&["run", good.to_str().unwrap()][..], &common, &["--model", "efficientnet-lite0", "--out", &p("a")]].concat());
    ok(&[&["run", good.to_str().unwrap()][..], &common, &["--model", "i3d-kinetics-400", "--out", &p("b")]].concat());
    let run = |out: &str, models: &[&str]| ends(2, &[&["run", with_broken.to_str().unwrap()][..], &common, models, &["--out", out]].concat());
    let both = run(&p("ab"), &["--model", "efficientnet-lite0", "--model", "i3d-kinetics-400", "--predict", "3"]);
    assert_eq!((both["videos_ok"].as_u64(), both["videos_failed"].as_u64()), (Some(2), Some(1)), "{both}");
    let feats: Vec<(&str, u64)> = both["features"].as_array().unwrap().iter().map(|f| (f["name"].as_str().unwrap(), f["dims"].as_u64().unwrap())).collect();
    assert_eq!(feats, [("rgb", 16), ("i3d-kinetics-400", 16)]);

    // Each PCA is the one its model's own run fits (one decode fitted both).
    let pca_sha = |f: &str| vidfeat_features::Pca::load(Path::new(&p(f)), None).unwrap().content_sha256();
    assert_eq!(pca_sha("ab/pca.npz"), pca_sha("a/pca.npz"));
    assert_eq!(pca_sha("ab/pca-i3d-kinetics-400.npz"), pca_sha("b/pca.npz"));
    // Each model's rows and mean are its own run's, byte for byte.
    let (a, b, ab) = (records(&d.path().join("a")), records(&d.path().join("b")), records(&d.path().join("ab")));
    assert_eq!(ab.keys().collect::<Vec<_>>(), ["demo", "pancake"]);
    for (id, (f, v)) in &ab {
        assert_eq!(f.rgb, a[id].0.rgb, "{id}: rgb is not the image model's own rows");
        assert_eq!(f.other["i3d-kinetics-400"], b[id].0.rgb, "{id}: I3D rows are not its own run's");
        assert_eq!(f.lists["rgb"].0, 3);
        assert_eq!(v.floats["mean_rgb"], a[id].1.floats["mean_rgb"]);
        assert_eq!(v.floats["mean_i3d-kinetics-400"], b[id].1.floats["mean_rgb"]);
        assert_eq!(v.floats["logits"].len(), 400, "--predict takes the head of the model that has one");
    }
    assert_eq!(std::fs::read_to_string(p("ab/predictions.jsonl")).unwrap().lines().count(), 2);
    let v = ok(&["verify", &p("ab"), "--json"]);
    assert_eq!(v["ok"], true, "{v}");

    // Samples for trainers carry every model's features: npz arrays and WebDataset members.
    let m = ok(&["sample", "--from", &p("ab"), "--per-class", "1", "--format", "npz", "--out", &p("npz"), "--json"]);
    let ids: Vec<String> = m["ids"].as_array().unwrap().iter().map(|i| i.as_str().unwrap().to_string()).collect();
    assert_eq!(m["features"], serde_json::json!([{"name": "rgb", "dims": 16}, {"name": "i3d-kinetics-400", "dims": 16}]));
    let mut npz = npyz::npz::NpzArchive::open(d.path().join("npz/sample.npz")).unwrap();
    let i3d = npz.by_name("i3d-kinetics-400").unwrap().expect("the I3D rows");
    assert_eq!(i3d.shape(), &[6, 16]);
    let values: Vec<f32> = i3d.into_vec().unwrap();
    let want: Vec<f32> = ids.iter().flat_map(|id| ab[id].0.other["i3d-kinetics-400"].iter().flat_map(|r| vidfeat_features::dequantize(r))).collect();
    assert_eq!(values, want);
    let mean: Vec<f32> = npz.by_name("mean_i3d-kinetics-400").unwrap().expect("the I3D means").into_vec().unwrap();
    assert_eq!(mean, ids.iter().flat_map(|id| ab[id].1.floats["mean_i3d-kinetics-400"].clone()).collect::<Vec<_>>());
    ok(&["sample", "--from", &p("ab"), "--per-class", "1", "--format", "webdataset", "--out", &p("wds"), "--json"]);
    let tar = std::fs::read_dir(d.path().join("wds")).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|x| x == "tar")).unwrap();
    let names: Vec<String> = tar::Archive::new(std::fs::File::open(tar).unwrap()).entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
    assert!(names.iter().filter(|n| n.ends_with(".i3d-kinetics-400.npy")).count() == 2 && names.iter().filter(|n| n.ends_with(".rgb.npy")).count() == 2, "{names:?}");

    // Re-run: kept. A retry of the broken file reads the other videos back from the shard,
    // both models' features, and writes the same bytes.
    let shards: Vec<PathBuf> = std::fs::read_dir(d.path().join("ab/frame")).unwrap().map(|e| e.unwrap().path()).collect();
    let before: Vec<String> = shards.iter().map(|s| sha(s)).collect();
    let again = run(&p("ab"), &["--model", "efficientnet-lite0", "--model", "i3d-kinetics-400", "--predict", "3"]);
    assert_eq!(again["update"]["kept"], 1, "{again}");
    let retried = run(&p("ab"), &["--model", "efficientnet-lite0", "--model", "i3d-kinetics-400", "--predict", "3", "--retry-failed", "corrupt"]);
    assert_eq!(retried["update"]["rebuilt"], 1, "{retried}");
    assert_eq!(shards.iter().map(|s| sha(s)).collect::<Vec<_>>(), before, "a retry changed the other videos' bytes");
    let v = ok(&["verify", &p("ab"), "--json"]);
    assert_eq!(v["ok"], true, "{v}");

    // Another set of models is another dataset: refused, naming it, nothing touched.
    let o = vidfeat(&[&["run", with_broken.to_str().unwrap()][..], &common, &["--model", "efficientnet-lite0", "--out", &p("ab")]].concat());
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("further models: i3d-kinetics-400 (i3d-kinetics-400) in the folder, none here"), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(shards.iter().map(|s| sha(s)).collect::<Vec<_>>(), before);

    // A given PCA per model, in --model order (`fit`: fit that one): the same dataset as fitted.
    run(&p("given"), &["--model", "efficientnet-lite0", "--model", "i3d-kinetics-400", "--pca", "fit", "--pca", &p("b/pca.npz")]);
    let given = records(&d.path().join("given"));
    for (id, (f, _)) in &given {
        assert_eq!(f.other["i3d-kinetics-400"], ab[id].0.other["i3d-kinetics-400"], "{id}");
        assert_eq!(f.rgb, ab[id].0.rgb, "{id}");
    }
}

#[test]
fn models_one_decode_cannot_feed_are_refused_before_any_work() {
    if !have_i3d() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("o");
    let refused = |extra: &[&str], says: &str| {
        let o = vidfeat(&[&["run", "data-samples/samples.csv", "--vocab", "kinetics-400", "--out", out.to_str().unwrap()][..], extra].concat());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {err}");
        assert!(err.contains(says), "{extra:?}: {err}");
        assert!(!out.join("frame").exists() && !out.join("plan.json").exists(), "{extra:?}: work was done");
    };
    // I3D center-crops, EfficientNet squashes: one decode cannot give both.
    refused(&["--model", "efficientnet-lite0", "--model", "i3d-kinetics-400"], "Give --resize");
    // Names: the first model's are rgb; the others' must be free and distinct.
    refused(&["--model", "efficientnet-lite0", "--model", "i3d-kinetics-400", "--resize", "squash", "--feature-name", "x"], "the first model's features are written as `rgb`");
    refused(&["--model", "efficientnet-lite0", "--model", "i3d-kinetics-400", "--resize", "squash", "--feature-name", "rgb", "--feature-name", "mean_x"], "taken by the YouTube-8M schema");
    refused(&["--model", "efficientnet-lite0", "--model", "i3d-kinetics-400", "--model", "i3d-kinetics-400", "--resize", "squash"], "its own --feature-name");
    refused(&["--model", "efficientnet-lite0", "--pca", "fit", "--pca", "fit"], "2 --pca values for 1 model");
    // A PCA given for the wrong model.
    let pca = d.path().join("p.npz");
    let mut acc = vidfeat_features::CovarianceAccumulator::new(1280);
    acc.add(&(0..1280 * 3).map(|i| (i % 7) as f32).collect::<Vec<_>>(), 3);
    acc.fit(2).unwrap().save(&pca).unwrap();
    refused(&["--model", "efficientnet-lite0", "--model", "i3d-kinetics-400", "--resize", "squash", "--pca", "fit", "--pca", pca.to_str().unwrap()], "takes 1280-d features, i3d-kinetics-400 gives 1024-d");
    // Commands with one model say so.
    let o = vidfeat(&["extract", "--cache", d.path().join("c").to_str().unwrap(), "--model", "efficientnet-lite0", "--model", "i3d-kinetics-400", "--out", out.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("only run and plan take several models"), "{}", String::from_utf8_lossy(&o.stderr));
}
