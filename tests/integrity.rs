//! The output-integrity contract, through the binary on real clips: an output folder is a
//! function of its inputs (edited labels, swapped, added and removed rows, a changed shard
//! count: the folder ends byte-identical to a clean run of the current list), another
//! dataset's folder is refused (and replaced with --overwrite), list values never write outside
//! OUT, retried transient failures, a kill -9 during an incremental update, plans that always
//! report, PCA components the sample cannot support, and provenance.
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use vidfeat_export::{parse_record, read_file};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn video(name: &str) -> String {
    root().join("data-samples/videos").join(name).display().to_string()
}

/// The bundled clips copied into `dir/videos` (for a test that changes a source).
fn own_videos(dir: &Path) -> PathBuf {
    let v = dir.join("videos");
    std::fs::create_dir_all(&v).unwrap();
    for f in [DEMO, BIRD, PANCAKE] {
        std::fs::copy(video(f), v.join(f)).unwrap();
    }
    v
}

fn bin(cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vidfeat"));
    c.current_dir(cwd).env_remove("VIDFEAT_CRASH_AT").env("RUST_LOG", "warn");
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `vidfeat run LIST --out OUT` with small, fast settings, and `extra`.
fn run(cwd: &Path, list: &Path, out: &Path, extra: &[&str]) -> Output {
    bin(cwd)
        .arg("run")
        .arg(list)
        .args(["--vocab", "kinetics-400", "--max-frames", "2", "--pca-dims", "16", "--json", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn ok(o: Output, what: &str) -> serde_json::Value {
    assert!(matches!(o.status.code(), Some(0) | Some(2)), "{what}: {:?}\n{}", o.status, stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{what}: {e}: {}", String::from_utf8_lossy(&o.stdout)))
}

/// Every shard file's bytes, by level/name.
fn shards(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    for level in ["frame", "video"] {
        for e in std::fs::read_dir(dir.join(level)).unwrap() {
            let e = e.unwrap();
            m.insert(format!("{level}/{}", e.file_name().to_string_lossy()), std::fs::read(e.path()).unwrap());
        }
    }
    m
}

/// (id, labels) of every frame-level record, by shard.
fn records(dir: &Path) -> Vec<(String, String, Vec<i64>)> {
    let mut out = vec![];
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("frame")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in files {
        for r in read_file(&f).unwrap() {
            let p = parse_record(&r).unwrap();
            out.push((f.file_name().unwrap().to_string_lossy().into_owned(), p.id, p.labels));
        }
    }
    out
}

fn verify(cwd: &Path, dir: &Path) -> (bool, String) {
    let o = bin(cwd).arg("verify").arg(dir).output().unwrap();
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o)))
}

/// A list of one-second windows of the bundled clips: (id, file, label, start, split).
fn write_list(path: &Path, rows: &[(&str, &str, &str, u32, &str)]) {
    write_list_in(path, rows, &root().join("data-samples/videos"))
}

fn write_list_in(path: &Path, rows: &[(&str, &str, &str, u32, &str)], videos: &Path) {
    let mut s = String::from("id,source,labels,start,end,split\n");
    for (id, file, label, t, split) in rows {
        s.push_str(&format!("{id},{},{label},{t},{},{split}\n", videos.join(file).display(), t + 1));
    }
    std::fs::write(path, s).unwrap();
}

const DEMO: &str = "mmaction2__demo.mp4";
const BIRD: &str = "imageio__cockatoo.mp4";
const PANCAKE: &str = "decord__flipping_a_pancake.mkv";

fn list_a() -> Vec<(&'static str, &'static str, &'static str, u32, &'static str)> {
    vec![
        ("d0", DEMO, "arm wrestling", 0, "train"),
        ("d1", DEMO, "arm wrestling", 1, "train"),
        ("d2", DEMO, "arm wrestling", 2, "val"),
        ("b0", BIRD, "feeding birds", 0, "train"),
        ("b1", BIRD, "feeding birds", 1, "train"),
        ("b2", BIRD, "feeding birds", 2, "val"),
        ("p0", PANCAKE, "flipping pancake", 0, "train"),
        ("p1", PANCAKE, "flipping pancake", 1, "train"),
        ("p2", PANCAKE, "flipping pancake", 2, "val"),
        ("p3", PANCAKE, "flipping pancake", 3, "train"),
    ]
}

/// List A edited: a label changed (d1), a row's video replaced under the same id (b0), a row
/// removed (p1), a row added (n0).
fn list_b() -> Vec<(&'static str, &'static str, &'static str, u32, &'static str)> {
    let mut b = list_a();
    b[1].2 = "abseiling";
    b[3] = ("b0", PANCAKE, "feeding birds", 5, "train");
    b.retain(|r| r.0 != "p1");
    b.push(("n0", DEMO, "arm wrestling", 5, "val"));
    b
}

#[test]
fn edited_swapped_added_and_removed_rows_and_a_new_shard_count_leave_a_clean_runs_bytes() {
    let d = tempfile::tempdir().unwrap();
    let list = d.path().join("list.csv");
    let (x, clean) = (d.path().join("x"), d.path().join("clean"));
    let videos = own_videos(d.path());
    write_list_in(&list, &list_a(), &videos);
    let first = ok(run(d.path(), &list, &x, &["--shards", "4"]), "first run");
    assert_eq!(first["update"]["new"], 8, "{}", first["update"]);
    let labels_before: Vec<_> = records(&x);

    write_list_in(&list, &list_b(), &videos);
    let s = ok(run(d.path(), &list, &x, &["--shards", "4"]), "update");
    let u = &s["update"];
    let (kept, rebuilt) = (u["kept"].as_u64().unwrap(), u["rebuilt"].as_u64().unwrap());
    assert_eq!(kept + rebuilt + u["new"].as_u64().unwrap(), 8, "{u}");
    assert!(kept >= 1 && rebuilt >= 1 && rebuilt <= 4, "an edit of 4 rows rebuilds only their shards: {u}");
    // The edits are in the shards, not just in plan.jsonl.
    let got = records(&x);
    let find = |id: &str| got.iter().find(|r| r.1 == id).cloned();
    assert_ne!(find("d1").unwrap().2, labels_before.iter().find(|r| r.1 == "d1").unwrap().2, "edited label");
    assert!(find("p1").is_none(), "removed row gone");
    assert!(find("n0").is_some(), "added row there");
    // Byte for byte what a clean run of the current list writes (with the folder's PCA).
    let pca = x.join("pca.npz");
    ok(run(d.path(), &list, &clean, &["--shards", "4", "--pca", pca.to_str().unwrap()]), "clean run");
    assert_eq!(shards(&x), shards(&clean), "updated folder differs from a clean run");
    let (good, report) = verify(d.path(), &x);
    assert!(good, "{report}");
    // Nothing changed: everything kept.
    let s = ok(run(d.path(), &list, &x, &["--shards", "4"]), "no-op");
    assert_eq!((s["update"]["kept"].as_u64(), s["update"]["rebuilt"].as_u64()), (Some(8), Some(0)), "{}", s["update"]);
    // A touched source (same bytes, new mtime) counts as changed: its shards are rebuilt.
    let f = std::fs::File::options().append(true).open(videos.join(DEMO)).unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
    let s = ok(run(d.path(), &list, &x, &["--shards", "4"]), "touched source");
    assert!(s["update"]["rebuilt"].as_u64().unwrap() >= 1, "{}", s["update"]);

    // Another shard count: the old shards go, the new ones are a clean run's.
    let s = ok(run(d.path(), &list, &x, &["--shards", "3"]), "reshard");
    assert_eq!((s["update"]["removed"].as_u64(), s["update"]["new"].as_u64()), (Some(8), Some(6)), "{}", s["update"]);
    let clean3 = d.path().join("clean3");
    ok(run(d.path(), &list, &clean3, &["--shards", "3", "--pca", pca.to_str().unwrap()]), "clean run, 3 shards");
    assert_eq!(shards(&x), shards(&clean3));
    assert!(!x.join("done/train-00000-of-00004.json").exists() && !x.join("journal").read_dir().unwrap().any(|_| true));
    assert!(verify(d.path(), &x).0);
}

#[test]
fn a_shard_left_stale_or_changed_fails_verify() {
    let d = tempfile::tempdir().unwrap();
    let list = d.path().join("list.csv");
    let x = d.path().join("x");
    write_list(&list, &list_a());
    ok(run(d.path(), &list, &x, &["--shards", "2"]), "run");
    // A new plan frozen into the folder but not worked: the old shards no longer match it.
    write_list(&list, &list_b());
    let o = bin(d.path()).arg("plan").arg(&list).args(["--vocab", "kinetics-400", "--max-frames", "2", "--pca-dims", "16", "--shards", "2", "--out"]).arg(&x).output().unwrap();
    assert!(matches!(o.status.code(), Some(0)), "{}", stderr(&o));
    let (good, report) = verify(d.path(), &x);
    assert!(!good && report.contains("stale") && report.contains("no readable summary.json"), "{report}");
    assert!(bin(d.path()).args(["work", "--worker-index", "0", "--num-workers", "1", "--plan"]).arg(&x).status().unwrap().success());
    let (good, report) = verify(d.path(), &x);
    assert!(good, "{report}");
    // A shard changed behind vidfeat's back (same size, one byte) is named.
    let f = x.join("video/train-00001-of-00002.tfrecord");
    let mut b = std::fs::read(&f).unwrap();
    let n = b.len();
    b[n - 1] ^= 1;
    std::fs::write(&f, b).unwrap();
    let (good, report) = verify(d.path(), &x);
    assert!(!good && report.contains("video/train-00001-of-00002.tfrecord: changed since it was written"), "{report}");
    // A plan.jsonl rewritten by a dry run is refused by workers.
    let o = bin(d.path()).arg("plan").arg(&list).args(["--vocab", "kinetics-400", "--dry-run", "--out"]).arg(&x).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "a dry run must not replace a frozen plan's plan.jsonl");
}

#[test]
fn another_datasets_folder_is_refused_until_overwrite_replaces_it() {
    let d = tempfile::tempdir().unwrap();
    let list = d.path().join("list.csv");
    let x = d.path().join("x");
    write_list(&list, &list_a()[..4]);
    ok(run(d.path(), &list, &x, &[]), "first run");
    let snapshot = |dir: &Path| -> BTreeMap<String, Vec<u8>> {
        let mut m = BTreeMap::new();
        for e in walk(dir) {
            m.insert(e.strip_prefix(dir).unwrap().display().to_string(), std::fs::read(&e).unwrap());
        }
        m
    };
    let before = snapshot(&x);
    let other_pca = d.path().join("other.npz");
    let o = bin(d.path()).args(["pca", "fit", &video(BIRD), "--dims", "16", "--out", other_pca.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let bare = |cwd: &Path, args: &[&str]| bin(cwd).args(args).output().unwrap();
    for (flags, names) in [
        (vec!["--vocab", "kinetics-600"], "vocabulary: kinetics-400"),
        (vec!["--legacy-2017"], "id key: id in the folder, video_id here"),
        (vec!["--compression", "gzip"], "compression: none in the folder, gzip here"),
        (vec!["--audio", "zero"], "audio"),
        (vec!["--pca", other_pca.to_str().unwrap()], "PCA: pca.npz"),
        (vec!["--pca-dims", "8"], "PCA dims"),
    ] {
        let mut args = vec!["run", list.to_str().unwrap(), "--max-frames", "2", "--out", x.to_str().unwrap()];
        if !flags.contains(&"--vocab") {
            args.extend(["--vocab", "kinetics-400"]);
        }
        if !flags.contains(&"--pca-dims") {
            args.extend(["--pca-dims", "16"]);
        }
        args.extend(&flags);
        let o = bare(d.path(), &args);
        assert_eq!(o.status.code(), Some(1), "{flags:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("holds another dataset") && stderr(&o).contains(names), "{flags:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("--overwrite"), "names the way out");
        assert_eq!(snapshot(&x), before, "{flags:?}: the folder was touched");
    }
    // extract writes another layout: refused too.
    let cache = d.path().join("cache");
    let o = bin(d.path()).arg("decode").arg(&list).args(["--vocab", "kinetics-400", "--max-frames", "2", "--cache"]).arg(&cache).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = bin(d.path()).args(["extract", "--pca-dims", "16", "--cache"]).arg(&cache).arg("--out").arg(&x).output().unwrap();
    assert!(o.status.code() == Some(1) && stderr(&o).contains("layout"), "{}", stderr(&o));
    assert_eq!(snapshot(&x), before);

    // --overwrite: the old dataset goes first, the new one is a clean run's.
    let k600 = |out: &Path, extra: &[&str]| {
        let mut args = vec!["run", list.to_str().unwrap(), "--vocab", "kinetics-600", "--max-frames", "2", "--pca-dims", "16", "--json", "--out", out.to_str().unwrap()];
        args.extend(extra);
        bare(d.path(), &args)
    };
    let s = ok(k600(&x, &["--overwrite"]), "overwrite");
    assert_eq!((s["update"]["new"].as_u64(), s["update"]["kept"].as_u64()), (Some(2), Some(0)), "{}", s["update"]);
    let id: serde_json::Value = serde_json::from_slice(&std::fs::read(x.join("dataset.json")).unwrap()).unwrap();
    assert_eq!(id["vocabulary"]["name"], "kinetics-600");
    let clean = d.path().join("clean");
    ok(k600(&clean, &["--pca", x.join("pca.npz").to_str().unwrap()]), "clean");
    assert_eq!(shards(&x), shards(&clean));

    // Output of unknown provenance (vidfeat's shards and done markers, no dataset.json: an
    // older vidfeat's) is refused as well; --overwrite removes what vidfeat's records name and
    // nothing else.
    let stray = d.path().join("stray");
    for sub in ["frame", "video", "done"] {
        std::fs::create_dir_all(stray.join(sub)).unwrap();
        for e in std::fs::read_dir(x.join(sub)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), stray.join(sub).join(e.file_name())).unwrap();
        }
    }
    std::fs::copy(x.join("frame/train-00000-of-00001.tfrecord"), stray.join("frame/old.tfrecord")).unwrap();
    std::fs::write(stray.join("notes.txt"), "mine").unwrap();
    let o = run(d.path(), &list, &stray, &[]);
    assert!(o.status.code() == Some(1) && stderr(&o).contains("without a dataset.json"), "{}", stderr(&o));
    let o = run(d.path(), &list, &stray, &["--overwrite"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("2 files in") && stderr(&o).contains("frame/old.tfrecord") && stderr(&o).contains("notes.txt"), "says what it left: {}", stderr(&o));
    assert_eq!(std::fs::read(stray.join("frame/old.tfrecord")).unwrap(), std::fs::read(x.join("frame/train-00000-of-00001.tfrecord")).unwrap(), "a file no record names is not vidfeat's");
    assert_eq!(std::fs::read_to_string(stray.join("notes.txt")).unwrap(), "mine", "files vidfeat did not write are left alone");
    // A user's files alone (no record of vidfeat's) are not a dataset: nothing to refuse.
    let users = d.path().join("users");
    std::fs::create_dir_all(users.join("video")).unwrap();
    std::fs::write(users.join("video/holiday.mp4"), "mine").unwrap();
    ok(run(d.path(), &list, &users, &[]), "a folder with a user's files");
    assert_eq!(std::fs::read_to_string(users.join("video/holiday.mp4")).unwrap(), "mine");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn hostile_list_values_in_every_format_never_write_outside_out_and_the_rest_completes() {
    let d = tempfile::tempdir().unwrap();
    let lists = d.path().join("lists");
    let cwd = d.path().join("a/b");
    std::fs::create_dir_all(&lists).unwrap();
    std::fs::create_dir_all(&cwd).unwrap();
    let (demo, bird, pancake) = (video(DEMO), video(BIRD), video(PANCAKE));
    let bom = "\u{feff}";
    // CSV: BOM, CRLF, a split that climbs out, an absolute one, an extra field, an open quote,
    // a NUL byte, bad UTF-8; then a good row after all of them.
    let mut csv = format!("{bom}id,source,labels,end,split\r\n").into_bytes();
    csv.extend(format!("c_ok,{demo},arm wrestling,1,train\r\nc_up,{demo},arm wrestling,1,../../escaped\r\nc_abs,{demo},arm wrestling,1,/tmp/escaped\r\nx1,{demo},Cooking,1,Car,train\r\nc_q,\"{demo},arm wrestling,1,train\r\n").as_bytes());
    csv.extend(b"c_nul,\x00.mp4,arm wrestling,1,train\r\nc_utf,\xff.mp4,arm wrestling,1,train\r\n");
    csv.extend(format!("c_last,{bird},feeding birds,1,val\r\n").as_bytes());
    std::fs::write(lists.join("l.csv"), csv).unwrap();
    std::fs::write(lists.join("l.tsv"), format!("{bom}id\tsource\tlabels\tend\tsplit\nt_ok\t{pancake}\tflipping pancake\t1\ttrain\nt_up\t{pancake}\tflipping pancake\t1\t..\nt_dot\t{pancake}\tflipping pancake\t1\t.hidden\n")).unwrap();
    std::fs::write(
        lists.join("l.jsonl"),
        format!(
            "{bom}{}\n{}\n{}\n{}\n",
            serde_json::json!({"id": "j_ok", "source": bird, "labels": ["feeding birds"], "end": 1, "split": "val"}),
            serde_json::json!({"id": "j_up", "source": bird, "labels": ["feeding birds"], "end": 1, "split": "a/../../../escaped"}),
            serde_json::json!({"id": "j_nl\nforged", "source": bird, "labels": ["feeding birds"], "end": 1}),
            serde_json::json!({"id": "j_ctl", "source": format!("{bird}\u{7}"), "end": 1}),
        ),
    )
    .unwrap();
    let videos = root().join("data-samples/videos");
    std::fs::write(lists.join("k.csv"), format!("{bom}label,youtube_id,time_start,time_end,split\r\narm wrestling,mmaction2__demo,0,1,train\r\narm wrestling,../../../etc/passwd,0,1,train\r\narm wrestling,mmaction2__demo,1,2,../up\r\n")).unwrap();
    std::fs::write(lists.join("l.txt"), format!("{bom}{demo}\r\n\x00bad\r\n")).unwrap();
    let before: Vec<PathBuf> = walk(d.path());
    let o = bin(&cwd)
        .arg("run")
        .args(["../../lists/l.csv", "../../lists/l.tsv", "../../lists/l.jsonl", "../../lists/k.csv", "../../lists/l.txt"])
        .args(["--vocab", "kinetics-400", "--max-frames", "2", "--pca-dims", "8", "--json", "--out", "out", "--video-root"])
        .arg(&videos)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // Nothing new anywhere but OUT.
    let out = cwd.join("out");
    let outside: Vec<PathBuf> = walk(d.path()).into_iter().filter(|p| !p.starts_with(&out) && !before.contains(p)).collect();
    assert!(outside.is_empty(), "written outside OUT: {outside:?}");
    // The good rows are written; each bad one is an invalid_row naming file, line and field.
    let ids: Vec<String> = records(&out).into_iter().map(|r| r.1).collect();
    for want in ["c_ok", "c_last", "t_ok", "j_ok", "mmaction2__demo_000000_000001"] {
        assert!(ids.contains(&want.to_string()), "{want} missing from {ids:?}");
    }
    let failures: Vec<serde_json::Value> = std::fs::read_to_string(out.join("failures.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let reason = |file: &str, line: u64| -> String {
        failures.iter().find(|f| f["file"].as_str().unwrap().ends_with(file) && f["line"] == line).map(|f| format!("{} {}", f["kind"], f["reason"])).unwrap_or_else(|| panic!("no failure at {file}:{line}: {failures:?}"))
    };
    assert!(reason("l.csv", 3).contains("field `split`"));
    assert!(reason("l.csv", 4).contains("field `split`"));
    assert!(reason("l.csv", 5).contains("6 fields, header has 5"));
    assert!(reason("l.csv", 6).contains("unterminated quote"));
    assert!(reason("l.csv", 7).contains("NUL byte"));
    assert!(reason("l.csv", 8).contains("UTF-8"));
    assert!(reason("l.tsv", 3).contains("field `split`") && reason("l.tsv", 4).contains("field `split`"));
    assert!(reason("l.jsonl", 2).contains("field `split`") && reason("l.jsonl", 3).contains("field `id`") && reason("l.jsonl", 4).contains("field `source`"));
    assert!(reason("k.csv", 3).contains("youtube_id") && reason("k.csv", 4).contains("field `split`"));
    assert!(reason("l.txt", 2).contains("NUL byte"));
    for f in &failures {
        assert_eq!(f["kind"], "invalid_row", "{f}");
    }
    assert!(bin(&cwd).args(["verify", "out"]).status().unwrap().success());
}

/// Serves data-samples/videos/NAME at /NAME; while `broken` is set, /flaky.mp4 answers 503.
fn flaky_server(broken: Arc<AtomicBool>, requests: Arc<AtomicUsize>) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let (broken, requests) = (broken.clone(), requests.clone());
            std::thread::spawn(move || {
                let mut s = s;
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
                requests.fetch_add(1, Ordering::SeqCst);
                let file = root().join("data-samples/videos").join(if path == "flaky.mp4" { BIRD } else { &path });
                let (head, body) = if path == "flaky.mp4" && broken.load(Ordering::SeqCst) {
                    ("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0".to_string(), vec![])
                } else if !path.contains('/') && file.is_file() {
                    let b = std::fs::read(&file).unwrap();
                    (format!("HTTP/1.1 200 OK\r\nContent-Length: {}", b.len()), b)
                } else {
                    ("HTTP/1.1 404 Not Found\r\nContent-Length: 0".to_string(), vec![])
                };
                let _ = s.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes());
                let _ = s.write_all(&body);
            });
        }
    });
    base
}

#[test]
fn a_retried_transient_failure_rebuilds_only_its_shard_to_a_clean_runs_bytes() {
    let d = tempfile::tempdir().unwrap();
    let (broken, requests) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicUsize::new(0)));
    let base = flaky_server(broken.clone(), requests.clone());
    let list = d.path().join("list.csv");
    let rows = [("d0", format!("{base}/{DEMO}"), "arm wrestling"), ("f0", format!("{base}/flaky.mp4"), "feeding birds"), ("p0", video(PANCAKE), "flipping pancake"), ("d1", video(DEMO), "arm wrestling")];
    let mut s = String::from("id,source,labels,end\n");
    for (id, src, label) in &rows {
        s.push_str(&format!("{id},{src},{label},1\n"));
    }
    std::fs::write(&list, s).unwrap();
    // A PCA both runs share (the flaky video must not change it).
    let pca = d.path().join("pca.npz");
    let o = bin(d.path()).args(["pca", "fit", &video(PANCAKE), "--dims", "16", "--out", pca.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let x = d.path().join("x");
    let args = ["--shards", "3", "--retries", "0", "--allow-private-addresses", "--pca", pca.to_str().unwrap()];
    let first = ok(run(d.path(), &list, &x, &args), "first run");
    assert_eq!((first["videos_failed"].as_u64(), first["failures_by_kind"]["download_failed"].as_u64()), (Some(1), Some(1)), "{first}");
    // A plain re-run keeps the recorded failure: nothing is fetched again.
    let n = requests.load(Ordering::SeqCst);
    let again = ok(run(d.path(), &list, &x, &args), "plain re-run");
    assert_eq!((again["videos_failed"].as_u64(), again["update"]["kept"].as_u64()), (Some(1), Some(3)));
    assert_eq!(requests.load(Ordering::SeqCst), n, "a plain re-run retried the failure");
    // The server recovers; --retry-failed attempts the transient failures again.
    broken.store(false, Ordering::SeqCst);
    let mut retry_args = args.to_vec();
    retry_args.push("--retry-failed");
    let retried = ok(run(d.path(), &list, &x, &retry_args), "retry");
    assert_eq!(retried["videos_failed"].as_u64(), Some(0), "{retried}");
    assert_eq!((retried["update"]["retried"].as_u64(), retried["update"]["rebuilt"].as_u64(), retried["update"]["kept"].as_u64()), (Some(1), Some(1), Some(2)), "{}", retried["update"]);
    // Only the flaky video was fetched (d0 came from the cache) and decoded again.
    assert_eq!(requests.load(Ordering::SeqCst), n + 1);
    let clean = d.path().join("clean");
    ok(run(d.path(), &list, &clean, &args), "clean run");
    assert_eq!(shards(&x), shards(&clean), "a retried run differs from one where the video succeeded first time");
    // Kinds are checked.
    let o = run(d.path(), &list, &x, &["--retry-failed=sometimes"]);
    assert!(o.status.code() == Some(1) && stderr(&o).contains("invalid value 'sometimes' for '--retry-failed") && stderr(&o).contains("download_failed"), "{}", stderr(&o));
}

#[test]
fn a_killed_incremental_update_resumes_to_a_clean_runs_bytes() {
    let d = tempfile::tempdir().unwrap();
    let list = d.path().join("list.csv");
    let (x, clean) = (d.path().join("x"), d.path().join("clean"));
    write_list(&list, &list_a());
    ok(run(d.path(), &list, &x, &["--shards", "3", "--decode-workers", "1"]), "first run");
    write_list(&list, &list_b());
    let pca = x.join("pca.npz");
    for p in ["after_journal_entry:1", "journal_mid_entry:2", "before_shard_commit:1", "between_shard_commits:1", "before_done_marker:1", "after_done_marker:1", "after_journal_entry:2"] {
        let o = bin(d.path())
            .arg("run")
            .arg(&list)
            .args(["--vocab", "kinetics-400", "--max-frames", "2", "--pca-dims", "16", "--shards", "3", "--decode-workers", "1", "--out"])
            .arg(&x)
            .env("VIDFEAT_CRASH_AT", p)
            .output()
            .unwrap();
        assert!(o.status.signal() == Some(9) || o.status.success(), "{p}: {:?}\n{}", o.status, stderr(&o));
        // Mid-update, the folder never claims to be complete.
        if o.status.signal() == Some(9) {
            assert!(!x.join("summary.json").exists() || verify(d.path(), &x).0, "{p}: a stale summary.json survived");
        }
    }
    ok(run(d.path(), &list, &x, &["--shards", "3", "--decode-workers", "1"]), "final run");
    ok(run(d.path(), &list, &clean, &["--shards", "3", "--decode-workers", "1", "--pca", pca.to_str().unwrap()]), "clean run");
    assert_eq!(shards(&x), shards(&clean));
    let (good, report) = verify(d.path(), &x);
    assert!(good, "{report}");
}

#[test]
fn plan_reports_before_anything_can_fail_and_a_pca_that_cannot_be_fitted_is_one_error() {
    let d = tempfile::tempdir().unwrap();
    // Only missing videos: the summary is printed and written, then one error (no per-row
    // warnings about the PCA).
    let list = d.path().join("missing.csv");
    std::fs::write(&list, "id,source\na,nope_a.mp4\nb,nope_b.mp4\n").unwrap();
    let out = d.path().join("p");
    let o = bin(d.path()).arg("plan").arg(&list).args(["--json", "--out"]).arg(&out).env("RUST_LOG", "info").output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("no summary printed: {}", stderr(&o)));
    assert_eq!((s["rows"].as_u64(), s["missing_source"].as_u64()), (Some(2), Some(2)));
    assert!(out.join("failures.jsonl").exists() && out.join("plan-summary.json").exists() && out.join("plan.jsonl").exists());
    let err = stderr(&o);
    assert!(!err.contains("skipped for the PCA") && err.matches("ERROR").count() == 1, "{err}");
    // Videos that exist but cannot be decoded: the PCA cannot be fitted; the summary comes
    // first, then one error naming the first failures.
    std::fs::write(d.path().join("empty.mp4"), b"").unwrap();
    std::fs::write(d.path().join("noise.mp4"), (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<u8>>()).unwrap();
    let list = d.path().join("bad.csv");
    std::fs::write(&list, "id,source\nempty,empty.mp4\nnoise,noise.mp4\n").unwrap();
    let out = d.path().join("q");
    let o = bin(d.path()).arg("plan").arg(&list).args(["--json", "--out"]).arg(&out).env("RUST_LOG", "info").output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["resolved"].as_u64(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("a PCA could not be fitted") && err.contains("empty (unsupported_format)") && !err.contains("skipped for the PCA"), "{err}");
    assert!(!out.join("plan.json").exists(), "no plan frozen");
}

#[test]
fn pca_components_the_sample_cannot_support_are_written_as_zero_and_recorded() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("o");
    // The bundled samples: 23 frames, so 22 supported components of the 1,024 kept.
    let o = bin(&root()).args(["run", "data-samples/samples.csv", "--vocab", "kinetics-400", "--json", "--out"]).arg(&out).output().unwrap();
    let s = ok(o, "run");
    let supported = s["pca"]["supported_components"].as_u64().unwrap() as usize;
    assert_eq!((s["pca"]["fitted_on_frames"].as_u64(), supported, s["pca"]["dims"].as_u64()), (Some(23), 22, Some(1024)), "{}", s["pca"]);
    let (mut saturated, mut supported_bytes, mut total) = (0usize, 0usize, 0usize);
    for f in std::fs::read_dir(out.join("frame")).unwrap() {
        for r in read_file(&f.unwrap().path()).unwrap() {
            for row in parse_record(&r).unwrap().rgb {
                assert!(row[supported..].iter().all(|&b| b == 128), "an unsupported component was not written as zero");
                saturated += row.iter().filter(|&&b| b == 0 || b == 255).count();
                supported_bytes += supported;
                total += row.len();
            }
        }
    }
    // Whitened to unit variance, the supported components clip at +-2 as often as data does
    // (a few percent of them); before, most bytes of every row were noise at 0 or 255.
    assert!(saturated * 5 < supported_bytes && saturated * 100 < total, "{saturated} of {total} bytes saturate");
    // The PCA file records its frame count; a later run given it writes the same zeros.
    let id: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("plan.json")).unwrap()).unwrap();
    assert_eq!((id["pca_frames"].as_u64(), id["pca_supported"].as_u64()), (Some(23), Some(22)));
}

#[test]
fn summary_and_report_say_what_made_the_dataset() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("o");
    let list = d.path().join("list.csv");
    write_list(&list, &list_a()[..2]);
    let s = ok(run(d.path(), &list, &out, &["--batch-size", "4"]), "run");
    let p = &s["provenance"];
    assert_eq!(p["vidfeat"], env!("CARGO_PKG_VERSION"));
    assert!(p["command"].as_array().unwrap().iter().any(|a| a == "--batch-size"), "{p}");
    assert_eq!(p["settings"]["batch-size"]["value"], "4");
    assert_eq!(p["settings"]["batch-size"]["source"], "command line");
    assert!(p["ffmpeg"]["libavcodec"].as_str().unwrap().starts_with("59."), "{p}");
    assert!(p["libtorch"].as_str().unwrap().starts_with("2."), "{p}");
    assert!(p["created_at"].as_str().unwrap().len() >= 20);
    assert_eq!(p["workers"].as_array().unwrap().len(), 1, "{p}");
    if root().join(".git").is_dir() {
        assert_eq!(p["git_commit"].as_str().map(str::len), Some(40), "{p}");
    }
    let html = d.path().join("r.html");
    let o = bin(d.path()).arg("report").arg(&out).arg("--out").arg(&html).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("libavcodec") && page.contains("libtorch") && page.contains("--batch-size") && page.contains("supported"), "report header lacks provenance");
}
