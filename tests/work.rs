//! Resumable workers (`vidfeat plan` + `vidfeat work`): kill -9 at many moments and resume to
//! byte-identical output; concurrent claim-mode workers take every video exactly once; a dead
//! worker's lease is taken over; two workers with one index do not corrupt the output.
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use vidfeat_export::{parse_record, read_file};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vidfeat"));
    c.current_dir(root()).env_remove("VIDFEAT_CRASH_AT").env_remove("SLURM_ARRAY_TASK_ID").env_remove("JOB_COMPLETION_INDEX");
    c
}

fn ok(o: Output, what: &str) -> Output {
    assert!(o.status.success(), "{what}: {:?}\n{}", o.status, String::from_utf8_lossy(&o.stderr));
    o
}

/// A list of `n` one-second clip windows of the bundled samples.
fn window_list(dir: &Path, n: usize) -> PathBuf {
    let v = root().join("data-samples/videos");
    let clips = [("mmaction2__demo.mp4", "arm wrestling", 10), ("imageio__cockatoo.mp4", "feeding birds", 14), ("decord__flipping_a_pancake.mkv", "flipping pancake", 10)];
    let mut s = String::from("id,source,labels,start,end\n");
    let mut k = 0;
    'outer: for t in 0..14 {
        for (f, label, len) in clips {
            if t < len {
                s.push_str(&format!("{}-{t},{}/{f},{label},{t},{}\n", f.split('.').next().unwrap(), v.display(), t + 1));
                k += 1;
                if k == n {
                    break 'outer;
                }
            }
        }
    }
    let p = dir.join("list.csv");
    std::fs::write(&p, s).unwrap();
    p
}

fn plan(list: &Path, out: &Path, shards: u32, pca: Option<&Path>) {
    let mut c = bin();
    c.args(["plan", list.to_str().unwrap(), "--vocab", "kinetics-400", "--out", out.to_str().unwrap(), "--shards", &shards.to_string(), "--max-frames", "2"]);
    if let Some(p) = pca {
        c.args(["--pca", p.to_str().unwrap()]);
    }
    ok(c.output().unwrap(), "plan");
}

/// Copies a plan folder (before any work) so two runs share the plan, PCA included.
fn copy_plan(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn work(dir: &Path, extra: &[&str]) -> Command {
    let mut c = bin();
    c.args(["work", "--plan", dir.to_str().unwrap(), "--decode-workers", "1"]).args(extra);
    c
}

/// Every shard file's bytes, by level/name.
fn shard_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    for level in ["frame", "video"] {
        for e in std::fs::read_dir(dir.join(level)).unwrap() {
            let e = e.unwrap();
            m.insert(format!("{level}/{}", e.file_name().to_string_lossy()), std::fs::read(e.path()).unwrap());
        }
    }
    m
}

fn frame_ids(dir: &Path) -> Vec<String> {
    let mut ids = vec![];
    for e in std::fs::read_dir(dir.join("frame")).unwrap() {
        for r in read_file(&e.unwrap().path()).unwrap() {
            ids.push(parse_record(&r).unwrap().id);
        }
    }
    ids.sort();
    ids
}

fn plan_ids(dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_to_string(dir.join("plan.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn verify_ok(dir: &Path) {
    let o = bin().args(["verify", dir.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "verify: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
}

#[test]
fn killed_workers_resume_to_byte_identical_output() {
    let d = tempfile::tempdir().unwrap();
    let list = window_list(d.path(), 16);
    let a = d.path().join("a");
    plan(&list, &a, 4, None);
    let b = d.path().join("b");
    copy_plan(&a, &b);

    // Reference: one uninterrupted worker.
    ok(work(&b, &["--worker-index", "0", "--num-workers", "1"]).output().unwrap(), "reference worker");
    let want = shard_bytes(&b);
    assert_eq!(want.len(), 8);

    // The same plan, killed with SIGKILL at 13 moments: mid journal entry, after entries,
    // around and between the shard commits, after the done marker, before taking a lease.
    let points = [
        "after_journal_entry:1",
        "journal_mid_entry:1",
        "after_journal_entry:2",
        "before_shard_commit:1",
        "between_shard_commits:1",
        "before_done_marker:1",
        "after_done_marker:1",
        "before_lease:2",
        "journal_mid_entry:2",
        "after_journal_entry:1",
        "before_shard_commit:1",
        "between_shard_commits:1",
        "after_journal_entry:1",
    ];
    for p in points {
        let o = work(&a, &["--worker-index", "0", "--num-workers", "1"]).env("VIDFEAT_CRASH_AT", p).output().unwrap();
        assert_eq!(o.status.signal(), Some(9), "{p}: the worker was not killed there: {:?}\n{}", o.status, String::from_utf8_lossy(&o.stderr));
    }
    let s: serde_json::Value =
        serde_json::from_slice(&ok(bin().args(["status", a.to_str().unwrap(), "--json"]).output().unwrap(), "status").stdout).unwrap();
    assert!(s["shards_done"].as_u64().unwrap() < 4, "work is left for the last runs: {s}");
    // And twice from outside, at whatever it is doing.
    for ms in [900, 1500] {
        let mut c = work(&a, &["--worker-index", "0", "--num-workers", "1"]).stderr(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        let _ = c.kill();
        let _ = c.wait();
    }
    ok(work(&a, &["--worker-index", "0", "--num-workers", "1"]).output().unwrap(), "final worker");
    let got = shard_bytes(&a);
    let mut differ: Vec<String> = vec![];
    for k in want.keys().chain(got.keys()) {
        if got.get(k) != want.get(k) && !differ.iter().any(|d| d.starts_with(k.as_str())) {
            // Which videos: parse both versions.
            let parse = |b: Option<&Vec<u8>>| -> Vec<(String, Vec<Vec<u8>>)> {
                b.map(|b| vidfeat_export::RecordReader::new(b.as_slice()).map(|r| parse_record(&r.unwrap()).unwrap()).map(|p| (p.id, p.rgb)).collect()).unwrap_or_default()
            };
            let (g, w) = (parse(got.get(k)), parse(want.get(k)));
            let ids: Vec<String> = g.iter().zip(&w).filter(|(x, y)| x != y).map(|(x, _)| x.0.clone()).collect();
            differ.push(format!("{k} ({} vs {} records; differing: {ids:?})", g.len(), w.len()));
        }
    }
    assert!(differ.is_empty(), "resumed output differs from the uninterrupted run in {differ:?}");
    assert_eq!(frame_ids(&a), plan_ids(&a));
    verify_ok(&a);
    assert!(!a.join("journal").read_dir().unwrap().any(|e| e.unwrap().path().extension().is_some_and(|x| x == "journal")), "journals removed");
    // A finished plan: another run does nothing.
    let o = ok(work(&a, &["--worker-index", "0", "--num-workers", "1", "--json"]).output().unwrap(), "idle worker");
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["skipped_done"], 4);
}

#[test]
fn four_claiming_workers_take_every_video_exactly_once() {
    let d = tempfile::tempdir().unwrap();
    let list = window_list(d.path(), 24);
    let dir = d.path().join("p");
    plan(&list, &dir, 16, None);
    let kids: Vec<_> = (0..4).map(|_| work(&dir, &["--claim", "--torch-threads", "1", "--json"]).stderr(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap()).collect();
    let mut processed = vec![];
    for k in kids {
        let o = ok(k.wait_with_output().unwrap(), "claim worker");
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        processed.extend(r["processed"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()));
    }
    processed.sort();
    let before = processed.len();
    processed.dedup();
    assert_eq!((before, processed.len()), (16, 16), "each shard processed by exactly one worker");
    let ids = frame_ids(&dir);
    assert_eq!(ids, plan_ids(&dir), "every video exactly once");
    assert_eq!(ids.len(), 24);
    verify_ok(&dir);
    let s: serde_json::Value = serde_json::from_slice(&bin().args(["status", dir.to_str().unwrap(), "--json"]).output().unwrap().stdout).unwrap();
    assert_eq!((s["complete"].as_bool(), s["videos_ok"].as_u64()), (Some(true), Some(24)));
}

fn ghost_lease(dir: &Path, shard: &str, age: Duration) {
    let p = dir.join("leases").join(format!("{shard}.lease"));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, r#"{"owner":"ghost:1:0","host":"another-node","pid":12345,"acquired":0}"#).unwrap();
    std::fs::File::options().append(true).open(&p).unwrap().set_modified(std::time::SystemTime::now() - age).unwrap();
}

/// A worker on another node that beats its lease (touches it) every 200 ms until `stop`.
fn beating_ghost(dir: &Path, shard: &str) -> (std::sync::Arc<std::sync::atomic::AtomicBool>, std::thread::JoinHandle<()>) {
    ghost_lease(dir, shard, Duration::from_secs(0));
    let p = dir.join("leases").join(format!("{shard}.lease"));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let h = std::thread::spawn(move || {
        while !s.load(std::sync::atomic::Ordering::SeqCst) {
            if let Ok(f) = std::fs::File::options().append(true).open(&p) {
                let _ = f.set_modified(std::time::SystemTime::now());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    (stop, h)
}

#[test]
fn stale_leases_are_taken_over_and_live_ones_respected() {
    let d = tempfile::tempdir().unwrap();
    let list = window_list(d.path(), 4);
    let dir = d.path().join("p");
    plan(&list, &dir, 2, None);
    // Shard 0: a worker on another node died an hour ago. Shard 1: one is alive there now,
    // beating its lease.
    ghost_lease(&dir, "train-00000-of-00002", Duration::from_secs(3600));
    let (stop, beats) = beating_ghost(&dir, "train-00001-of-00002");
    let st = String::from_utf8(bin().args(["status", dir.to_str().unwrap(), "--lease-ttl", "60"]).output().unwrap().stdout).unwrap();
    assert!(st.contains("stale_lease") && st.contains("in_progress"), "{st}");

    // The claim worker takes the dead one's shard over, sees the live one beat, and leaves
    // that shard to it: the plan is not complete, which its exit status says (4).
    let o = work(&dir, &["--claim", "--lease-ttl", "3", "--json"]).output().unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["processed"], serde_json::json!(["train-00000-of-00002.tfrecord"]), "{r}");
    assert_eq!((r["busy"].clone(), r["complete"].clone()), (serde_json::json!(["train-00001-of-00002.tfrecord"]), serde_json::json!(false)));
    assert!(String::from_utf8_lossy(&o.stderr).contains("taking over"));

    // A static worker whose shard is held by a live worker stops with a clear error.
    let o = work(&dir, &["--worker-index", "1", "--num-workers", "2", "--lease-ttl", "60"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("same index"), "{}", String::from_utf8_lossy(&o.stderr));

    // The live one dies on its node (its heartbeat stops; its lease is still fresh): a claim
    // worker started now finds the lease held, sees no heartbeat, waits for the TTL, takes
    // the shard over and finishes the plan (exit 0).
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    beats.join().unwrap();
    let o = ok(work(&dir, &["--claim", "--lease-ttl", "3", "--json"]).output().unwrap(), "the waiting claim worker");
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((r["processed"].clone(), r["complete"].clone()), (serde_json::json!(["train-00001-of-00002.tfrecord"]), serde_json::json!(true)), "{r}");
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("held by other workers") && e.contains("taking over"), "{e}");
    assert_eq!(frame_ids(&dir), plan_ids(&dir));
    verify_ok(&dir);
}

#[test]
fn a_claim_worker_killed_holding_a_lease_is_finished_by_the_one_left() {
    let d = tempfile::tempdir().unwrap();
    let list = window_list(d.path(), 8);
    let dir = d.path().join("p");
    plan(&list, &dir, 2, None);
    // Both claim at once; one is killed (SIGKILL) in the middle of its shard, lease held.
    let killed = work(&dir, &["--claim", "--lease-ttl", "30", "--json", "--torch-threads", "1"]).env("VIDFEAT_CRASH_AT", "after_journal_entry:2").stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let survivor = work(&dir, &["--claim", "--lease-ttl", "30", "--json", "--torch-threads", "1"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let k = killed.wait_with_output().unwrap();
    let o = survivor.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "the survivor finishes the plan: {}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["complete"], true, "{r}");
    if k.status.signal() == Some(9) {
        // It held a shard when it died: the survivor took that one over (its process is gone
        // on this host, so without waiting for the TTL) and resumed from its journal.
        assert_eq!(r["processed"].as_array().unwrap().len(), 2, "{r}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("taking over"), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(frame_ids(&dir), plan_ids(&dir));
    verify_ok(&dir);
    let s: serde_json::Value = serde_json::from_slice(&bin().args(["status", dir.to_str().unwrap(), "--json"]).output().unwrap().stdout).unwrap();
    assert_eq!(s["complete"], true);
}

#[test]
fn the_command_plan_prints_for_workers_works_as_printed() {
    let d = tempfile::tempdir().unwrap();
    let list = window_list(d.path(), 3);
    let dir = d.path().join("p");
    let o = ok(bin().args(["plan", list.to_str().unwrap(), "--vocab", "kinetics-400", "--out", dir.to_str().unwrap(), "--shards", "2", "--max-frames", "2"]).output().unwrap(), "plan");
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out.lines().find(|l| l.contains("vidfeat work")).unwrap_or_else(|| panic!("no worker command: {out}"));
    let cmd = line.split('`').nth(1).unwrap_or_else(|| panic!("no `command` in: {line}"));
    let words: Vec<&str> = cmd.split_whitespace().collect();
    assert_eq!(words[0], "vidfeat", "{cmd}");
    let o = ok(bin().args(&words[1..]).output().unwrap(), cmd);
    assert!(String::from_utf8_lossy(&o.stderr).contains("plan complete: true"), "{}", String::from_utf8_lossy(&o.stderr));
    verify_ok(&dir);
}

#[test]
fn two_workers_with_one_index_do_not_corrupt_the_output_and_a_changed_pca_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let list = window_list(d.path(), 8);
    let dir = d.path().join("p");
    plan(&list, &dir, 2, None);
    let reference = d.path().join("r");
    copy_plan(&dir, &reference);
    ok(work(&reference, &["--worker-index", "0", "--num-workers", "1"]).output().unwrap(), "reference");

    // Slurm-style: both think they are task 0 of 1.
    let spawn = || work(&dir, &[]).env("SLURM_ARRAY_TASK_ID", "0").env("SLURM_ARRAY_TASK_COUNT", "1").stderr(std::process::Stdio::piped()).spawn().unwrap();
    let (x, y) = (spawn(), spawn());
    let (ox, oy) = (x.wait_with_output().unwrap(), y.wait_with_output().unwrap());
    for o in [&ox, &oy] {
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() || e.contains("same index"), "{:?}: {e}", o.status);
    }
    // Whatever the interleaving, the plan completes (rerun once if one of them stopped) and
    // matches the single-worker output byte for byte.
    ok(work(&dir, &["--worker-index", "0", "--num-workers", "1"]).output().unwrap(), "finisher");
    assert_eq!(shard_bytes(&dir), shard_bytes(&reference));
    verify_ok(&dir);

    // The PCA the plan was made with is changed: workers refuse.
    let plan_json: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("plan.json")).unwrap()).unwrap();
    let pca = PathBuf::from(plan_json["pca"].as_str().unwrap());
    let other = d.path().join("other-list.csv");
    std::fs::write(&other, format!("id,source\nx,{}\n", root().join("data-samples/videos/imageio__cockatoo.mp4").display())).unwrap();
    ok(bin().args(["pca", "fit", other.to_str().unwrap(), "--out", pca.to_str().unwrap(), "--pca-sample-frames", "20"]).output().unwrap(), "refit");
    let o = work(&dir, &["--worker-index", "0", "--num-workers", "1"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("has changed since the plan was made"), "{}", String::from_utf8_lossy(&o.stderr));
}
