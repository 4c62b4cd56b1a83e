//! The first hour with vidfeat, as a new user meets it: choices checked before any work (an
//! explicit CUDA device that is not there, a bad setting, a model that cannot run, counts of
//! zero, conflicting worker modes), messages that help (missing clips, unknown labels, files
//! that are not what they should be, plurals, a closing progress line that agrees with the
//! summary), `status` on a killed worker, `frames` over a window, `inspect --names`, and a
//! `pca fit --dims` that is the dims written.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin(cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vidfeat"));
    c.current_dir(cwd).env_remove("VIDFEAT_CRASH_AT").env_remove("RUST_LOG");
    c
}

fn vidfeat(args: &[&str]) -> Output {
    bin(&root()).args(args).output().unwrap()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn bad_choices_stop_before_any_work_with_one_clear_line() {
    let d = tempfile::tempdir().unwrap();
    let o = |name: &str| d.path().join(name).display().to_string();
    let samples = "data-samples/samples.csv";
    // An explicit CUDA device on a machine without one: exit 1, the reason, nothing written.
    if std::fs::metadata("/dev/nvidia0").is_err() {
        let r = vidfeat(&["run", samples, "--vocab", "kinetics-400", "--device", "cuda", "--out", &o("cuda")]);
        assert_eq!(r.status.code(), Some(1), "{}", err(&r));
        assert!(err(&r).contains("--device cuda: CUDA is not available here") && err(&r).contains("--device auto"), "{}", err(&r));
        assert!(!d.path().join("cuda").exists(), "a folder was written");
        // auto still falls back.
        let r = vidfeat(&["run", samples, "--vocab", "kinetics-400", "--device", "auto", "--max-frames", "2", "--pca-dims", "8", "--out", &o("auto")]);
        assert_eq!(r.status.code(), Some(0), "{}", err(&r));
    }
    // Settings checked by the command line, before the PCA fit.
    for (flag, value) in [("--compression", "bz2"), ("--audio", "silence"), ("--resize", "stretch"), ("--device", "gpu"), ("--shards", "0"), ("--batch-size", "0"), ("--pca-dims", "0"), ("--pca-sample-frames", "1"), ("--split", "../up"), ("--fps", "0")] {
        let r = vidfeat(&["run", samples, "--vocab", "kinetics-400", flag, value, "--out", &o("bad")]);
        assert_eq!(r.status.code(), Some(1), "{flag} {value}: {}", err(&r));
        assert!(err(&r).contains(flag), "{flag} {value}: {}", err(&r));
        assert!(!d.path().join("bad").exists(), "{flag} {value}: something was written");
    }
    // A model that loads but does not run with its sidecar: one line, before any video.
    let r = vidfeat(&["run", samples, "--vocab", "kinetics-400", "--model", "models/efficientnet-lite0.classifier.pt", "--sidecar", "models/efficientnet-lite0.json", "--out", &o("model")]);
    assert_eq!(r.status.code(), Some(1), "{}", err(&r));
    let e = err(&r);
    assert!(e.contains("does not run on a batch of 2 frames") && e.lines().count() == 1, "{e}");
    assert!(!d.path().join("model").exists());
    // Worker modes that contradict each other.
    let r = vidfeat(&["work", "--plan", &o("p"), "--claim", "--worker-index", "0", "--num-workers", "2"]);
    assert!(r.status.code() == Some(1) && err(&r).contains("cannot be used with"), "{}", err(&r));
}

#[test]
fn messages_name_what_was_looked_for_and_counts_agree() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("k");
    let r = bin(&root())
        .args(["run", "data-samples/kinetics-400_sample.csv", "--video-root", "data-samples/videos", "--vocab", "kinetics-400", "--progress", "auto", "--progress-interval", "1", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2), "{}", err(&r));
    let e = err(&r);
    // The missing clip: the names looked for and where, once.
    assert_eq!(e.lines().filter(|l| l.contains("deleted_video_id_000020_000030")).count(), 1, "logged once: {e}");
    assert!(e.contains("no clip `deleted_video_id_000020_000030.{mp4|mkv|webm}` nor full video `deleted_video_id.{mp4|mkv|webm}` in --video-root data-samples/videos"), "{e}");
    assert!(!e.contains("skipped for the PCA"), "{e}");
    // The closing progress line agrees with the summary and comes before it (stderr is not a
    // terminal here: progress lines are logged).
    let last = e.lines().filter(|l| l.contains("progress:")).last().unwrap();
    assert!(last.contains("4/4 videos written (1 failed)"), "{last}");
    let printed = stdout(&r);
    assert!(printed.starts_with("3 videos ok, 1 failed, 21 rows"), "{printed}");
    // Plurals.
    // (" 1 videos", not "1 videos": a rate such as "2.1 videos/s" is not a plural error.)
    assert!(e.contains("done, 1 video, 0 failed") && !e.contains(" 1 videos") && !e.lines().any(|l| l.starts_with("1 videos")), "{e}");
    // An unknown label names the vocabulary and where the label is.
    let list = d.path().join("l.csv");
    std::fs::write(&list, format!("id,source,labels\na,{},Bird\nb,{},arm wrestlng\n", root().join("data-samples/videos/imageio__cockatoo.mp4").display(), root().join("data-samples/videos/mmaction2__demo.mp4").display())).unwrap();
    let r = bin(d.path()).args(["plan", "l.csv", "--vocab", "yt8m", "--dry-run", "--out", "p"]).output().unwrap();
    let f = std::fs::read_to_string(d.path().join("p/failures.jsonl")).unwrap();
    assert!(f.contains("not in vocabulary yt8m") && f.contains("of yt8m-2018 (--vocab yt8m-2018)"), "{f}");
    assert_eq!(r.status.code(), Some(2));
    let r = bin(d.path()).args(["plan", "l.csv", "--vocab", "kinetics-400", "--dry-run", "--out", "q"]).output().unwrap();
    let f = std::fs::read_to_string(d.path().join("q/failures.jsonl")).unwrap();
    assert!(f.contains("nearest here: `arm wrestling`"), "{f}");
    assert!(stdout(&r).starts_with("2 rows: 0 resolved, 0 missing sources, 0 invalid rows, 0 duplicate ids, 2 unknown labels"), "{}", stdout(&r));
    // The 2018 list knows the 2019 list's Knowledge-Graph ids.
    std::fs::write(&list, format!("id,source,labels\na,{},/m/0gv1x\n", root().join("data-samples/videos/imageio__cockatoo.mp4").display())).unwrap();
    let r = bin(d.path()).args(["plan", "l.csv", "--vocab", "yt8m-2018", "--dry-run", "--json", "--out", "r"]).output().unwrap();
    assert_eq!(r.status.code(), Some(0), "{}", std::fs::read_to_string(d.path().join("r/failures.jsonl")).unwrap());
}

#[test]
fn files_that_are_not_what_a_command_reads_are_named_as_such() {
    let d = tempfile::tempdir().unwrap();
    // inspect on a video.
    let r = vidfeat(&["inspect", "data-samples/videos/mmaction2__demo.mp4"]);
    assert_eq!(r.status.code(), Some(1));
    assert!(err(&r).contains("not a TFRecord file, but an MP4/MOV video"), "{}", err(&r));
    // report on a folder that is not an output.
    let r = vidfeat(&["report", "data-samples", "--out", d.path().join("r.html").to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    assert!(err(&r).contains("not a vidfeat output folder") && !d.path().join("r.html").exists(), "{}", err(&r));
    // An empty video file says so.
    std::fs::write(d.path().join("empty.mp4"), b"").unwrap();
    let r = bin(d.path()).args(["frames", "empty.mp4", "--out", "f"]).output().unwrap();
    assert!(r.status.code() == Some(1) && err(&r).contains("empty file (0 bytes)"), "{}", err(&r));
}

#[test]
fn a_segment_beyond_the_rows_is_warned_about() {
    let d = tempfile::tempdir().unwrap();
    let list = d.path().join("s.csv");
    std::fs::write(&list, format!("id,source,labels,end,segment_start_times,segment_labels\nseg,{},Parrot,3,1;7,Parrot;Parrot\n", root().join("data-samples/videos/imageio__cockatoo.mp4").display())).unwrap();
    let r = bin(d.path()).args(["run", "s.csv", "--vocab", "yt8m", "--pca-dims", "4", "--out", "o"]).output().unwrap();
    assert_eq!(r.status.code(), Some(0), "{}", err(&r));
    assert!(err(&r).contains("seg: a segment starts at row 7 beyond its 3 rows"), "{}", err(&r));
}

#[test]
fn status_shows_the_shard_of_a_killed_worker_as_stale() {
    let d = tempfile::tempdir().unwrap();
    let list = d.path().join("l.csv");
    let v = root().join("data-samples/videos/imageio__cockatoo.mp4");
    let mut s = String::from("id,source,labels,end\n");
    for i in 1..=6 {
        s.push_str(&format!("v{i},{},feeding birds,{i}\n", v.display()));
    }
    std::fs::write(&list, s).unwrap();
    let p = bin(d.path()).args(["plan", "l.csv", "--vocab", "kinetics-400", "--shards", "1", "--max-frames", "2", "--pca-dims", "4", "--out", "p"]).output().unwrap();
    assert!(p.status.success(), "{}", err(&p));
    // The worker kills itself with SIGKILL after its first video; not reaped yet, it is a
    // zombie, which a plain kill(pid, 0) still reports alive.
    let mut child = bin(d.path()).args(["work", "--plan", "p", "--worker-index", "0", "--num-workers", "1"]).env("VIDFEAT_CRASH_AT", "after_journal_entry:1").spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::read_to_string(format!("/proc/{}/stat", child.id())).is_ok_and(|s| !s.contains(") Z ")) {
        assert!(std::time::Instant::now() < deadline, "the worker did not stop");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let st = bin(d.path()).args(["status", "p"]).output().unwrap();
    let text = stdout(&st);
    child.wait().unwrap();
    assert!(text.contains("stale_lease") && text.contains("gone, or silent"), "{text}");
    assert!(text.contains("0 in progress, 1 stale"), "{text}");
}

#[test]
fn frames_over_a_window_gives_source_times_and_records_the_window() {
    let d = tempfile::tempdir().unwrap();
    let r = bin(d.path()).args(["frames"]).arg(root().join("data-samples/videos/imageio__cockatoo.mp4")).args(["--out", "f", "--start", "3", "--end", "8", "--format", "rgb24"]).output().unwrap();
    assert!(r.status.success(), "{}", err(&r));
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(d.path().join("f/frames.json")).unwrap()).unwrap();
    assert_eq!(m["window"], serde_json::json!([3.0, 8.0]));
    assert_eq!(m["origin"], 3.0);
    let rows = m["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    // 20 fps: source frame 60 is on screen at 3 s.
    assert_eq!((rows[0]["source_frame"].as_u64(), rows[0]["time"].as_f64(), rows[0]["pts"].as_f64()), (Some(60), Some(3.0), Some(3.0)));
    assert_eq!((rows[4]["time"].as_f64(), rows[4]["time_from_origin"].as_f64()), (Some(7.0), Some(4.0)));
}

#[test]
fn inspect_names_labels_and_pca_fit_writes_the_dims_asked_for() {
    let d = tempfile::tempdir().unwrap();
    let pca = d.path().join("p.npz");
    let r = vidfeat(&["pca", "fit", "data-samples/videos", "--dims", "16", "--pca-sample-frames", "40", "--out", pca.to_str().unwrap()]);
    assert!(r.status.success(), "{}", err(&r));
    let o = d.path().join("o");
    let r = vidfeat(&["run", "data-samples/samples.csv", "--vocab", "kinetics-400", "--pca", pca.to_str().unwrap(), "--json", "--out", o.to_str().unwrap()]);
    let s: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap_or_else(|_| panic!("{}", err(&r)));
    assert_eq!(s["pca"]["dims"], 16, "the dims fitted are the dims written");
    let r = vidfeat(&["inspect", "--names", o.join("frame/train-00000-of-00001.tfrecord").to_str().unwrap()]);
    assert!(r.status.success(), "{}", err(&r));
    let first: serde_json::Value = serde_json::from_str(stdout(&r).lines().next().unwrap()).unwrap();
    assert_eq!((first["labels"].clone(), first["label_names"].clone()), (serde_json::json!([6]), serde_json::json!(["arm wrestling"])));
    assert_eq!(first["features"]["rgb"]["bytes_per_row"], 16);
    // More dims than the file has is one clear error.
    let r = vidfeat(&["run", "data-samples/samples.csv", "--vocab", "kinetics-400", "--pca", pca.to_str().unwrap(), "--pca-dims", "32", "--out", d.path().join("o2").to_str().unwrap()]);
    assert!(r.status.code() == Some(1) && err(&r).contains("the PCA has 16 components"), "{}", err(&r));
    // `max-frames` in a settings file means rows per video for run and pca fit alike; the PCA
    // sample is `pca-sample-frames` in both.
    std::fs::write(d.path().join("vidfeat.toml"), "max-frames = 2\npca-sample-frames = 5\n").unwrap();
    let r = bin(d.path()).args(["pca", "fit"]).arg(root().join("data-samples/videos")).args(["--dims", "4", "--out", "q.npz"]).output().unwrap();
    let s: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap_or_else(|_| panic!("{}", err(&r)));
    assert_eq!(s["frames"], 5, "{s}");
}

#[test]
fn a_run_whose_lists_resolved_to_nothing_can_be_run_again_with_them_fixed() {
    // Labels that are names, without --vocab: every row fails, exit 3, no dataset made.
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("o");
    let o = out.to_str().unwrap();
    let r = vidfeat(&["run", "data-samples/samples.csv", "--max-frames", "2", "--pca-dims", "4", "--out", o]);
    assert_eq!(r.status.code(), Some(3), "{}", err(&r));
    assert!(std::fs::read_to_string(out.join("failures.jsonl")).unwrap().contains("label_unknown"));
    // The same folder with the flag added: a dataset, not a refusal.
    let r = vidfeat(&["run", "data-samples/samples.csv", "--vocab", "kinetics-400", "--max-frames", "2", "--pca-dims", "4", "--out", o]);
    assert_eq!(r.status.code(), Some(0), "{}", err(&r));
    assert!(!std::fs::read_to_string(out.join("failures.jsonl")).unwrap().contains("label_unknown"), "the first run's failures are not this dataset's");
}
