//! Object storage against real servers on loopback: SeaweedFS (the S3 API) and
//! fake-gcs-server (the GCS JSON API), both installed by `scripts/servers-setup.sh` into
//! `.deps/servers/` and started here, once per test binary, and stopped when it exits.
//!
//! Lists and videos in buckets give the same shards, byte for byte, as the same rows on disk;
//! relative sources in a bucket list are objects beside it; a bucket "folder" is crawled like
//! a directory; missing and forbidden objects fail as `not_found` and `forbidden`; wrong
//! credentials stop the run before any work, with one line.
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use vidfeat_export::{parse_record, read_file};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const ADMIN: (&str, &str) = ("vidfeat", "vidfeat-secret-key");
const READER: (&str, &str) = ("reader", "reader-secret-key");

struct Servers {
    s3: String,
    gcs_credentials: PathBuf,
    /// Server data and shared fixtures; removed when the S3 server stops.
    dir: PathBuf,
}

/// Starts `line` under `sh`, which kills it when our end of its stdin closes (when this test
/// process exits, however it exits), then runs `after`.
fn start_tied(line: &str, after: &str, log: &Path, envs: &[(&str, &str)]) {
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("{line} & p=$!; read _; kill $p; wait $p; {after}"))
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .spawn()
        .unwrap();
    // Never waited for or dropped: its stdin stays open as long as we live.
    Box::leak(Box::new(child));
}

fn wait_port(addr: &str, what: &str, log: &Path) {
    let t = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(t.elapsed() < Duration::from_secs(60), "{what} did not start: {}", std::fs::read_to_string(log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The servers, or None (the test is skipped, loudly) where they are not installed and
/// `VIDFEAT_REQUIRE_SERVERS` is not set (`make test` sets it and installs them).
fn servers() -> Option<&'static Servers> {
    static S: OnceLock<Option<Servers>> = OnceLock::new();
    S.get_or_init(|| {
        let bin = root().join(".deps/servers");
        if !bin.join("weed").is_file() || !bin.join("fake-gcs-server").is_file() {
            assert!(std::env::var_os("VIDFEAT_REQUIRE_SERVERS").is_none(), "object-storage servers missing: run scripts/servers-setup.sh");
            eprintln!("SKIPPED: object-storage servers not installed (scripts/servers-setup.sh)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap().keep();
        assert!(TcpStream::connect("127.0.0.1:8333").is_err(), "127.0.0.1:8333 is taken: SeaweedFS's S3 port must be free for these tests");
        // S3: two identities, an admin and a reader of the `vidfeat` bucket only.
        let config = dir.join("s3.json");
        std::fs::write(
            &config,
            serde_json::json!({"identities": [
                {"name": "admin", "credentials": [{"accessKey": ADMIN.0, "secretKey": ADMIN.1}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
                {"name": "reader", "credentials": [{"accessKey": READER.0, "secretKey": READER.1}], "actions": ["Read:vidfeat", "List:vidfeat"]},
            ]})
            .to_string(),
        )
        .unwrap();
        let data = dir.join("weed");
        std::fs::create_dir_all(&data).unwrap();
        let log = dir.join("weed.log");
        start_tied(
            &format!(
                "exec {} mini -dir={} -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false -s3.config={}",
                bin.join("weed").display(),
                data.display(),
                config.display()
            ),
            &format!("rm -rf {}", dir.display()),
            &log,
            &[],
        );
        wait_port("127.0.0.1:8333", "SeaweedFS", &log);
        // GCS: one bucket with its objects, from a data folder (fake-gcs-server takes uploads
        // on its JSON API only; object_store writes through the XML API, so objects are put
        // in place before the server starts); no OAuth (the credentials file says so and where
        // the server is).
        let port = free_port();
        let gdata = dir.join("gcs");
        std::fs::create_dir_all(gdata.join("vidfeat-gcs/v")).unwrap();
        std::fs::copy(root().join("data-samples/videos").join(VIDEOS[0]), gdata.join("vidfeat-gcs/v").join(VIDEOS[0])).unwrap();
        std::fs::write(
            gdata.join("vidfeat-gcs/l.jsonl"),
            format!("{{\"id\":\"demo\",\"source\":\"v/{}\",\"labels\":[\"arm wrestling\"]}}\n{{\"id\":\"gone\",\"source\":\"v/nothing.mp4\"}}\n", VIDEOS[0]),
        )
        .unwrap();
        let glog = dir.join("gcs.log");
        start_tied(
            &format!("exec {} -scheme http -host 127.0.0.1 -port {port} -public-host 127.0.0.1:{port} -backend memory -data {}", bin.join("fake-gcs-server").display(), gdata.display()),
            "true",
            &glog,
            &[],
        );
        wait_port(&format!("127.0.0.1:{port}"), "fake-gcs-server", &glog);
        let gcs_credentials = dir.join("gcs-credentials.json");
        std::fs::write(
            &gcs_credentials,
            serde_json::json!({"disable_oauth": true, "gcs_base_url": format!("http://127.0.0.1:{port}"), "client_email": "", "private_key": "", "private_key_id": ""}).to_string(),
        )
        .unwrap();
        let s = Servers { s3: "http://127.0.0.1:8333".into(), gcs_credentials, dir };
        // This process uploads the fixtures, as the admin, through the tool's own store crate.
        for (k, v) in env(&s, ADMIN) {
            std::env::set_var(k, v);
        }
        // The S3 gateway accepts connections before its filer is ready: wait for a first put.
        let t = Instant::now();
        while let Err(e) = vidfeat_store::put("s3://vidfeat/.ready", b"ok".to_vec()) {
            assert!(t.elapsed() < Duration::from_secs(60), "SeaweedFS not ready: {e}");
            std::thread::sleep(Duration::from_millis(300));
        }
        Some(s)
    })
    .as_ref()
}

/// The environment a user sets for these stores.
fn env(s: &Servers, key: (&str, &str)) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", key.0.to_string()),
        ("AWS_SECRET_ACCESS_KEY", key.1.to_string()),
        ("AWS_ENDPOINT_URL", s.s3.clone()),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("GOOGLE_SERVICE_ACCOUNT", s.gcs_credentials.display().to_string()),
    ]
}

fn vidfeat(s: &Servers, key: (&str, &str), args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vidfeat")).args(args).envs(env(s, key)).current_dir(root()).output().unwrap()
}

fn upload(_: &Servers, local: &Path, url: &str) {
    vidfeat_store::upload(local, url).unwrap_or_else(|e| panic!("upload {url}: {e}"));
}

fn frame_bytes(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(out.join("frame")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.into_iter().map(|f| (f.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&f).unwrap())).collect()
}

fn ids(out: &Path) -> Vec<String> {
    let mut v = vec![];
    for (name, _) in frame_bytes(out) {
        for r in read_file(&out.join("frame").join(name)).unwrap() {
            v.push(parse_record(&r).unwrap().id);
        }
    }
    v
}

fn failures(out: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(out.join("failures.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|f| (f["id"].as_str().unwrap_or("").to_string(), f["kind"].as_str().unwrap().to_string(), f["reason"].as_str().unwrap().to_string()))
        .collect()
}

const VIDEOS: [&str; 3] = ["mmaction2__demo.mp4", "decord__flipping_a_pancake.mkv", "mmaction2__rawvideo_part_0.mp4"];

/// A PCA shared by the bucket and local runs (so the shards depend on the rows only).
fn pca(_: &Path) -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let p = servers().unwrap().dir.join("pca.npz");
        let o = Command::new(env!("CARGO_BIN_EXE_vidfeat"))
            .args(["pca", "fit", "data-samples/videos/mmaction2__demo.mp4", "--dims", "16", "--out"])
            .arg(&p)
            .current_dir(root())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        p
    })
    .clone()
}

fn local_run(list: &str, d: &Path) -> PathBuf {
    let l = d.join("local.csv");
    std::fs::write(&l, list).unwrap();
    let out = d.join("local-out");
    let o = Command::new(env!("CARGO_BIN_EXE_vidfeat"))
        .arg("run")
        .arg(&l)
        .args(["--vocab", "kinetics-400", "--max-frames", "3", "--pca", pca(d).to_str().unwrap(), "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

#[test]
fn s3_lists_and_videos_give_a_local_runs_bytes() {
    let Some(s) = servers() else { return };
    let d = tempfile::tempdir().unwrap();
    let videos = root().join("data-samples/videos");
    for v in VIDEOS {
        upload(s, &videos.join(v), &format!("s3://vidfeat/videos/{v}"));
    }
    // Relative sources are objects beside the list; an absolute s3:// URL as it is.
    let list = format!(
        "id,source,labels\ndemo,../videos/{},arm wrestling\npancake,s3://vidfeat/videos/{},flipping pancake\npool,../videos/{},cleaning pool\ngone,../videos/missing.mp4,arm wrestling\nlocked,s3://private/secret.mp4,arm wrestling\n",
        VIDEOS[0], VIDEOS[1], VIDEOS[2]
    );
    let lf = d.path().join("list.csv");
    std::fs::write(&lf, &list).unwrap();
    upload(s, &lf, "s3://vidfeat/lists/list.csv");
    // An object the reader may not read.
    upload(s, &videos.join(VIDEOS[0]), "s3://private/secret.mp4");

    // The model (over the multipart threshold), its sidecar beside it, and the PCA, from the
    // bucket too.
    upload(s, &root().join("models/efficientnet-lite0.pt"), "s3://vidfeat/models/lite0.pt");
    upload(s, &root().join("models/efficientnet-lite0.json"), "s3://vidfeat/models/lite0.json");
    upload(s, &pca(d.path()), "s3://vidfeat/models/pca.npz");
    let out = d.path().join("out");
    let o = vidfeat(s, READER, &["run", "s3://vidfeat/lists/list.csv", "--vocab", "kinetics-400", "--max-frames", "3", "--model", "s3://vidfeat/models/lite0.pt", "--pca", "s3://vidfeat/models/pca.npz", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    let f = failures(&out);
    let kinds: Vec<(&str, &str)> = f.iter().map(|(i, k, _)| (i.as_str(), k.as_str())).collect();
    assert_eq!(kinds, [("gone", "not_found"), ("locked", "forbidden")], "{f:?}");
    assert!(f[0].2.contains("s3://vidfeat/videos/missing.mp4"), "{f:?}");
    assert!(f[1].2.contains("s3://private/secret.mp4") && f[1].2.contains("access denied"), "{f:?}");
    assert_eq!(ids(&out), ["demo", "pancake", "pool"]);
    // status counts each failure once (run also lists the shards' failures in failures.jsonl).
    let o = vidfeat(s, READER, &["status", out.to_str().unwrap(), "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((st["videos_failed"].as_u64(), st["failed_videos"].as_array().map(Vec::len)), (Some(2), Some(2)), "{st}");

    // The same rows from disk: the same shard bytes.
    let local = local_run(
        &format!(
            "id,source,labels\ndemo,{0}/{1},arm wrestling\npancake,{0}/{2},flipping pancake\npool,{0}/{3},cleaning pool\n",
            videos.display(),
            VIDEOS[0],
            VIDEOS[1],
            VIDEOS[2]
        ),
        d.path(),
    );
    assert_eq!(frame_bytes(&out), frame_bytes(&local));

    // Downloads sit in the content cache with size, SHA-256 and ETag; a re-run uses them.
    let recs: Vec<serde_json::Value> = std::fs::read_dir(out.join("downloads"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect();
    assert_eq!(recs.len(), 3, "{recs:?}");
    for r in &recs {
        let size = std::fs::metadata(videos.join(r["url"].as_str().unwrap().rsplit('/').next().unwrap())).unwrap().len();
        assert_eq!(r["bytes"].as_u64(), Some(size), "{r}");
        assert!(r["sha256"].as_str().unwrap().len() == 64 && r["etag"].is_string(), "{r}");
    }
    let o = vidfeat(s, READER, &["run", "s3://vidfeat/lists/list.csv", "--vocab", "kinetics-400", "--max-frames", "3", "--pca", pca(d.path()).to_str().unwrap(), "--out", out.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(frame_bytes(&out), frame_bytes(&local));
}

#[test]
fn a_bucket_folder_is_crawled_like_a_directory() {
    let Some(s) = servers() else { return };
    let videos = root().join("data-samples/videos");
    upload(s, &videos.join(VIDEOS[0]), "s3://vidfeat/crawl/a/demo.mp4");
    upload(s, &videos.join(VIDEOS[1]), "s3://vidfeat/crawl/pancake.mkv");
    upload(s, &root().join("data-samples/samples.csv"), "s3://vidfeat/crawl/not-a-video.csv");
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let o = vidfeat(s, ADMIN, &["run", "s3://vidfeat/crawl/", "--max-frames", "2", "--pca", pca(d.path()).to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(ids(&out), ["a/demo", "pancake"]);
}

#[test]
fn gcs_lists_and_videos_give_a_local_runs_bytes() {
    let Some(s) = servers() else { return };
    let d = tempfile::tempdir().unwrap();
    let videos = root().join("data-samples/videos");
    // The list and video were put in the bucket when the server started (see `servers`).
    let out = d.path().join("out");
    let o = vidfeat(s, ADMIN, &["run", "gs://vidfeat-gcs/l.jsonl", "--vocab", "kinetics-400", "--max-frames", "3", "--pca", pca(d.path()).to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    let f = failures(&out);
    assert_eq!(f.iter().map(|(i, k, _)| (i.as_str(), k.as_str())).collect::<Vec<_>>(), [("gone", "not_found")], "{f:?}");
    let local = local_run(&format!("id,source,labels\ndemo,{}/{},arm wrestling\n", videos.display(), VIDEOS[0]), d.path());
    assert_eq!(frame_bytes(&out), frame_bytes(&local));
}

#[test]
fn wrong_credentials_stop_before_any_work_with_one_line() {
    let Some(s) = servers() else { return };
    let d = tempfile::tempdir().unwrap();
    let lf = d.path().join("l.csv");
    std::fs::write(&lf, "id,source\nx,a.mp4\n").unwrap();
    upload(s, &lf, "s3://vidfeat/creds/l.csv");
    let out = d.path().join("out");
    for (what, key) in [("wrong secret", (ADMIN.0, "not-the-secret")), ("unknown key", ("nobody", "nothing"))] {
        let o = vidfeat(s, key, &["run", "s3://vidfeat/creds/l.csv", "--out", out.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{what}: {err}");
        let errors: Vec<&str> = err.lines().filter(|l| l.contains(" ERROR ")).collect();
        assert_eq!(errors.len(), 1, "{what}: {err}");
        assert!(errors[0].contains("s3://vidfeat/creds/l.csv") && errors[0].contains("access denied"), "{what}: {err}");
        assert!(!out.join("frame").exists() && !out.join("summary.json").exists(), "{what}: work was done");
    }
    // A list that is not there: named, exit 1.
    let o = vidfeat(s, ADMIN, &["run", "s3://vidfeat/creds/nope.csv", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("s3://vidfeat/creds/nope.csv: no such object"));
}

/// Every object under `prefix` (relative name -> bytes).
fn bucket_files(prefix: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    vidfeat_store::list(&format!("{prefix}/"))
        .unwrap()
        .into_iter()
        .map(|(u, _)| (u[prefix.len() + 1..].to_string(), vidfeat_store::read(&u, 1 << 30).unwrap()))
        .collect()
}

/// The shard files of a local folder (relative name -> bytes).
fn local_shards(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut m = std::collections::BTreeMap::new();
    for sub in ["frame", "video"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            let p = e.unwrap().path();
            m.insert(format!("{sub}/{}", p.file_name().unwrap().to_string_lossy()), std::fs::read(&p).unwrap());
        }
    }
    m
}

fn shards_of(files: &std::collections::BTreeMap<String, Vec<u8>>) -> std::collections::BTreeMap<String, Vec<u8>> {
    files.iter().filter(|(k, _)| k.starts_with("frame/") || k.starts_with("video/")).map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[test]
fn a_run_into_a_bucket_keeps_every_promise_of_a_folder() {
    let Some(s) = servers() else { return };
    let d = tempfile::tempdir().unwrap();
    let videos = root().join("data-samples/videos");
    let list = |pancake_label: &str| {
        format!(
            "id,source,labels,split\ndemo,{0}/{1},arm wrestling,train\npancake,{0}/{2},{pancake_label},train\npool,{0}/{3},cleaning pool,validate\n",
            videos.display(),
            VIDEOS[0],
            VIDEOS[1],
            VIDEOS[2]
        )
    };
    let lf = d.path().join("l.csv");
    std::fs::write(&lf, list("flipping pancake")).unwrap();
    let pca = pca(d.path());
    let args = |out: &str, work: &Path| -> Vec<String> {
        ["run", lf.to_str().unwrap(), "--vocab", "kinetics-400", "--max-frames", "3", "--shards", "2", "--pca", pca.to_str().unwrap(), "--json", "--out", out, "--work-dir", work.to_str().unwrap()]
            .map(String::from)
            .to_vec()
    };
    let run = |out: &str, work: &Path| {
        let a = args(out, work);
        let o = vidfeat(s, ADMIN, &a.iter().map(String::as_str).collect::<Vec<_>>());
        (o.status.code(), String::from_utf8_lossy(&o.stdout).to_string(), String::from_utf8_lossy(&o.stderr).to_string())
    };
    let ds = "s3://vidfeat/datasets/k";
    let (code, stdout, err) = run(ds, &d.path().join("w1"));
    assert_eq!(code, Some(0), "{err}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["videos_ok"], 3, "{summary}");

    // The bucket holds what a local run writes, byte for byte, and no scratch files.
    let local = d.path().join("local");
    let (code, _, err) = run(local.to_str().unwrap(), &d.path().join("unused"));
    assert_eq!(code, Some(0), "{err}");
    let objects = bucket_files(ds);
    assert_eq!(shards_of(&objects), local_shards(&local));
    for f in ["summary.json", "dataset.json", "vocabulary.csv", "done/train-00000-of-00002.json", "done/validate-00000-of-00002.json"] {
        assert!(objects.contains_key(f), "{f} missing: {:?}", objects.keys().collect::<Vec<_>>());
    }
    assert!(objects.keys().all(|k| !k.starts_with("journal/") && !k.starts_with("downloads/") && !k.starts_with("leases/") && !k.contains("/.")), "{:?}", objects.keys().collect::<Vec<_>>());

    // The readers take the bucket folder.
    let o = vidfeat(s, READER, &["verify", ds]);
    assert_eq!(o.status.code(), Some(0), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let o = vidfeat(s, READER, &["status", ds, "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(st["shards_done"], st["shards_total"], "{st}");
    let o = vidfeat(s, READER, &["inspect", &format!("{ds}/frame/train-00000-of-00002.tfrecord")]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("demo") || String::from_utf8_lossy(&o.stdout).contains("pancake"));

    // An edited label, from another machine (a fresh work dir): an incremental update of the
    // bucket, equal to a clean local run of the new list.
    std::fs::write(&lf, list("making tea")).unwrap();
    let (code, stdout, err) = run(ds, &d.path().join("w2"));
    assert_eq!(code, Some(0), "{err}");
    let u: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((u["update"]["kept"].as_u64(), u["update"]["rebuilt"].as_u64()), (Some(3), Some(1)), "four shards, one of them changed: {}", u["update"]);
    let clean = d.path().join("clean");
    let (code, _, err) = run(clean.to_str().unwrap(), &d.path().join("unused"));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(shards_of(&bucket_files(ds)), local_shards(&clean));

    // Another dataset's bucket folder is refused before any work; the bucket is untouched.
    let before = bucket_files(ds);
    let a = args(ds, &d.path().join("w3"));
    let mut a: Vec<&str> = a.iter().map(String::as_str).collect();
    let i = a.iter().position(|x| *x == "kinetics-400").unwrap();
    a[i] = "kinetics-600";
    let o = vidfeat(s, ADMIN, &a);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds another dataset"), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(bucket_files(ds), before);

    // Fewer shards: the ones that left the plan leave the bucket, markers included.
    let a = args(ds, &d.path().join("w1"));
    let mut a: Vec<&str> = a.iter().map(String::as_str).collect();
    let i = a.iter().position(|x| *x == "--shards").unwrap();
    a[i + 1] = "1";
    let o = vidfeat(s, ADMIN, &a);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let names: Vec<String> = bucket_files(ds).into_keys().filter(|k| k.contains("-of-")).collect();
    assert!(names.iter().all(|k| k.contains("-of-00001")), "{names:?}");
    assert_eq!(names.len(), 6, "frame, video and done of two splits: {names:?}");
}

#[test]
fn a_push_killed_midway_never_shows_a_marker_beside_a_shard_it_does_not_describe() {
    let Some(s) = servers() else { return };
    let d = tempfile::tempdir().unwrap();
    let videos = root().join("data-samples/videos");
    let lf = d.path().join("l.csv");
    let write_list = |label: &str| {
        std::fs::write(&lf, format!("id,source,labels\ndemo,{0}/{1},{label}\npool,{0}/{2},cleaning pool\n", videos.display(), VIDEOS[0], VIDEOS[2])).unwrap()
    };
    write_list("arm wrestling");
    let pca = pca(d.path());
    let ds = "s3://vidfeat/datasets/killed";
    let work = d.path().join("w");
    let run = |crash: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vidfeat"));
        c.args(["run", lf.to_str().unwrap(), "--vocab", "kinetics-400", "--max-frames", "3", "--shards", "2", "--pca", pca.to_str().unwrap(), "--out", ds, "--work-dir", work.to_str().unwrap()])
            .envs(env(s, ADMIN));
        if let Some(c2) = crash {
            c.env("VIDFEAT_CRASH_AT", c2);
        }
        c.output().unwrap()
    };
    let o = run(None);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    // Change one video's label, then kill the push after each number of uploads in turn: at
    // every point, each marker in the bucket describes the shard beside it.
    for (k, label) in [(1, "making tea"), (2, "arm wrestling"), (3, "making tea"), (4, "arm wrestling")] {
        write_list(label);
        let o = run(Some(&format!("after_upload:{k}")));
        assert_eq!(o.status.code(), None, "killed by SIGKILL after upload {k}");
        let files = bucket_files(ds);
        for (name, bytes) in files.iter().filter(|(n, _)| n.starts_with("done/")) {
            let m: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            let stem = name.trim_start_matches("done/").trim_end_matches(".json");
            let frame = &files[&format!("frame/{stem}.tfrecord")];
            use sha2::Digest;
            assert_eq!(m["frame_sha256"].as_str().unwrap(), hex::encode(sha2::Sha256::digest(frame)), "after upload {k}: {name} does not describe its shard");
        }
        // The next run completes the bucket.
        let o = run(None);
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        let o = vidfeat(s, READER, &["verify", ds]);
        assert_eq!(o.status.code(), Some(0), "after upload {k}: {}", String::from_utf8_lossy(&o.stdout));
    }
}

#[test]
fn workers_that_share_only_a_bucket_finish_a_plan_exactly_once() {
    let Some(s) = servers() else { return };
    let d = tempfile::tempdir().unwrap();
    let videos = root().join("data-samples/videos");
    for v in VIDEOS {
        upload(s, &videos.join(v), &format!("s3://vidfeat/w/videos/{v}"));
    }
    let mut list = String::from("id,source,labels,split\n");
    for (i, v) in VIDEOS.iter().enumerate() {
        for c in 0..2 {
            list.push_str(&format!("v{i}_{c},videos/{v},arm wrestling,{}\n", if c == 0 { "train" } else { "validate" }));
        }
    }
    let lf = d.path().join("l.csv");
    std::fs::write(&lf, &list).unwrap();
    upload(s, &lf, "s3://vidfeat/w/l.csv");
    let ds = "s3://vidfeat/w/ds";
    let common = ["--max-frames", "2", "--torch-threads", "1", "--decode-workers", "1"];
    let o = vidfeat(s, ADMIN, &[&["plan", "s3://vidfeat/w/l.csv", "--vocab", "kinetics-400", "--shards", "3", "--pca-dims", "16", "--out", ds, "--work-dir"][..], &[d.path().join("planner").to_str().unwrap()], &common[..2]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&vidfeat_store::read(&format!("{ds}/plan.json"), 1 << 20).unwrap()).unwrap();
    assert_eq!(plan["pca"], format!("{ds}/pca.npz"), "a PCA fitted into a bucket plan is recorded as its object");

    // Three workers, each with its own scratch and nothing else in common; worker 1 is killed
    // (SIGKILL) while publishing its first shard, then started again on a fresh node.
    let work = |i: usize, scratch: &str, crash: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vidfeat"));
        c.args(["work", "--plan", ds, "--worker-index", &i.to_string(), "--num-workers", "3", "--json", "--work-dir"])
            .arg(d.path().join(scratch))
            .args(&common[2..])
            .envs(env(s, ADMIN));
        if let Some(p) = crash {
            c.env("VIDFEAT_CRASH_AT", p);
        }
        c.output().unwrap()
    };
    let o = work(1, "node1", Some("after_upload:2"));
    assert_eq!(o.status.code(), None, "killed");
    for (i, node) in [(0, "node0"), (2, "node2"), (1, "node1-again")] {
        let o = work(i, node, None);
        assert_eq!(o.status.code(), Some(0), "worker {i}: {}", String::from_utf8_lossy(&o.stderr));
        if i == 0 {
            // Part-way: the bucket's status counts worker 0's shards, and there is no summary.
            let o = vidfeat(s, READER, &["status", ds, "--json"]);
            let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&o.stderr)));
            assert_eq!((st["shards_done"].as_u64(), st["complete"].as_bool(), st["plan"].as_str()), (Some(2), Some(false), Some(ds)), "{st}");
            assert!(vidfeat_store::head(&format!("{ds}/summary.json")).is_err());
        }
    }
    // The last one to finish saw every marker and wrote the summary.
    let o = vidfeat(s, READER, &["status", ds, "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!((st["shards_done"].as_u64(), st["shards_total"].as_u64()), (Some(6), Some(6)), "{st}");
    let objects = bucket_files(ds);
    assert!(objects.contains_key("summary.json"), "{:?}", objects.keys().collect::<Vec<_>>());
    let summary: serde_json::Value = serde_json::from_slice(&objects["summary.json"]).unwrap();
    assert_eq!(summary["videos_ok"], 6, "every video exactly once: {summary}");
    assert!(objects.keys().all(|k| !k.starts_with("journal/") && !k.starts_with("leases/")));
    assert!(objects.keys().filter(|k| k.starts_with("events/")).count() >= 3, "each worker's event log: {:?}", objects.keys().collect::<Vec<_>>());
    let o = vidfeat(s, READER, &["verify", ds]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));

    // The same plan worked locally by one worker: the same shard bytes.
    let local_list = d.path().join("local.csv");
    std::fs::write(&local_list, list.replace("videos/", &format!("{}/", videos.display()))).unwrap();
    let local = d.path().join("local");
    let pca_local = d.path().join("pca.npz");
    std::fs::write(&pca_local, &objects["pca.npz"]).unwrap();
    let o = vidfeat(s, ADMIN, &[&["plan", local_list.to_str().unwrap(), "--vocab", "kinetics-400", "--shards", "3", "--pca", pca_local.to_str().unwrap(), "--out", local.to_str().unwrap()][..], &common[..2]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let o = vidfeat(s, ADMIN, &[&["work", "--plan", local.to_str().unwrap(), "--worker-index", "0", "--num-workers", "1"][..], &common[2..]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(shards_of(&objects), local_shards(&local));

    // The same plan again, by workers that claim shards through lease objects: one is killed
    // in the middle of a shard (its lease goes stale and is taken over), three more run at
    // once. Every shard is done once, to the same bytes; a worker leaves (exit 4) only shards it
    // saw others beat on, and the last one out finds the plan complete (exit 0).
    let ds2 = "s3://vidfeat/w/claimed";
    let o = vidfeat(s, ADMIN, &[&["plan", "s3://vidfeat/w/l.csv", "--vocab", "kinetics-400", "--shards", "3", "--pca", &format!("{ds}/pca.npz"), "--out", ds2, "--work-dir"][..], &[d.path().join("planner2").to_str().unwrap()], &common[..2]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let claim = |scratch: &str, crash: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vidfeat"));
        c.args(["work", "--plan", ds2, "--claim", "--lease-ttl", "4", "--json", "--work-dir"]).arg(d.path().join(scratch)).args(&common[2..]).envs(env(s, ADMIN));
        if let Some(p) = crash {
            c.env("VIDFEAT_CRASH_AT", p);
        }
        c
    };
    let o = claim("c-killed", Some("after_journal_entry:1")).output().unwrap();
    assert_eq!(o.status.code(), None, "killed: {}", String::from_utf8_lossy(&o.stderr));
    let leases: Vec<String> = vidfeat_store::list(&format!("{ds2}/leases/")).unwrap().into_iter().map(|(u, _)| u).collect();
    assert_eq!(leases.len(), 1, "the killed worker's lease stays behind: {leases:?}");
    // Started at once: they wait on the dead worker's lease until it is stale (4 s) and one
    // takes it over; none leaves a shard whose holder it has not seen beat.
    let kids: Vec<_> = (0..3).map(|i| claim(&format!("c{i}"), None).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()).collect();
    let (mut processed, mut complete) = (0, 0);
    for k in kids {
        let o = k.wait_with_output().unwrap();
        // 0: it saw the plan complete; 4: it left shards to workers it saw beating.
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        match o.status.code() {
            Some(0) => complete += 1,
            Some(4) => assert!(r["complete"] == false && !r["busy"].as_array().unwrap().is_empty(), "{r}"),
            c => panic!("exit {c:?}: {}", String::from_utf8_lossy(&o.stderr)),
        }
        processed += r["processed"].as_array().unwrap().len();
    }
    assert!(complete >= 1, "the last worker sees the plan complete");
    assert_eq!(processed, 6, "each shard processed by one worker");
    let claimed = bucket_files(ds2);
    assert_eq!(shards_of(&claimed), shards_of(&objects));
    assert!(claimed.keys().all(|k| !k.starts_with("leases/")), "leases released: {:?}", claimed.keys().collect::<Vec<_>>());
    let summary: serde_json::Value = serde_json::from_slice(&claimed["summary.json"]).unwrap();
    assert_eq!(summary["videos_ok"], 6, "{summary}");
}

#[test]
fn the_s3_server_honours_conditional_writes() {
    let Some(_) = servers() else { return };
    assert!(vidfeat_store::conditional_writes_work("s3://vidfeat/probe").unwrap());
    let u = "s3://vidfeat/probe/lease";
    let Some(Some(tag)) = vidfeat_store::create(u, b"a".to_vec()).unwrap() else { panic!("created") };
    assert_eq!(vidfeat_store::create(u, b"b".to_vec()).unwrap(), None, "create-if-absent");
    let Some(Some(tag2)) = vidfeat_store::replace_if(u, b"c".to_vec(), &tag).unwrap() else { panic!("swap with the current ETag") };
    assert_eq!(vidfeat_store::replace_if(u, b"d".to_vec(), &tag).unwrap(), None, "a stale ETag loses");
    assert_eq!(vidfeat_store::read_versioned(u, 10).unwrap(), (b"c".to_vec(), vidfeat_store::Meta { size: 1, etag: Some(tag2) }));
}

/// Every file under a local folder (relative name -> bytes).
fn folder_files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut m = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                m.insert(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap());
            }
        }
    }
    m
}

#[test]
fn a_frame_cache_and_every_written_output_can_live_in_a_bucket() {
    let Some(s) = servers() else { return };
    let d = tempfile::tempdir().unwrap();
    let videos = root().join("data-samples/videos");
    let lf = d.path().join("l.csv");
    let write_list = |n: usize| {
        let rows = [("demo", VIDEOS[0], "arm wrestling"), ("pool", VIDEOS[2], "cleaning pool")];
        let body: String = rows[..n].iter().map(|(id, v, l)| format!("{id},{}/{v},{l}\n", videos.display())).collect();
        std::fs::write(&lf, format!("id,source,labels\n{body}")).unwrap();
    };
    write_list(2);
    let run = |args: &[&str]| {
        let o = vidfeat(s, ADMIN, args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        o
    };
    let (l, cache, local_cache) = (lf.to_str().unwrap(), "s3://vidfeat/caches/c", d.path().join("cache"));
    let decode = |to: &str| run(&["decode", l, "--vocab", "kinetics-400", "--max-frames", "3", "--cache", to, "--work-dir", d.path().join("w").to_str().unwrap()]);

    // decode --cache into a bucket: the same objects as a local cache's files, manifest
    // included, and nothing of the scratch (downloads).
    decode(cache);
    decode(local_cache.to_str().unwrap());
    let objects = bucket_files(cache);
    assert_eq!(objects, folder_files(&local_cache));
    assert!(objects.contains_key("manifest.json") && objects.keys().filter(|k| k.starts_with("frames/")).count() == 2, "{:?}", objects.keys().collect::<Vec<_>>());

    // extract from the bucket's cache into a bucket: a local extract's shards.
    let pca = pca(d.path());
    let ds = "s3://vidfeat/datasets/from-cache";
    run(&["extract", "--cache", cache, "--pca", pca.to_str().unwrap(), "--out", ds, "--work-dir", d.path().join("w2").to_str().unwrap()]);
    let local_ds = d.path().join("from-cache");
    run(&["extract", "--cache", local_cache.to_str().unwrap(), "--pca", pca.to_str().unwrap(), "--out", local_ds.to_str().unwrap()]);
    let objects = bucket_files(ds);
    assert_eq!(shards_of(&objects), local_shards(&local_ds));
    assert!(objects.contains_key("summary.json") && objects.contains_key("dataset.json"), "{:?}", objects.keys().collect::<Vec<_>>());

    // A smaller list: the cache is rebuilt, and the frames of the video that left go with it.
    write_list(1);
    decode(cache);
    let objects = bucket_files(cache);
    assert_eq!(objects.keys().filter(|k| k.starts_with("frames/")).count(), 1, "{:?}", objects.keys().collect::<Vec<_>>());
    assert!(objects.contains_key("manifest.json"));
    assert_eq!(String::from_utf8_lossy(&objects["videos.jsonl"]).lines().count(), 1);

    // The readers' outputs: report, sample, a PCA fit and frames, each into the bucket.
    run(&["report", ds, "--out", "s3://vidfeat/reports/r.html", "--sheets", "1"]);
    let html = vidfeat_store::read("s3://vidfeat/reports/r.html", 1 << 30).unwrap();
    assert!(String::from_utf8_lossy(&html).contains("<html") && String::from_utf8_lossy(&html).contains("demo"));
    run(&["sample", "--from", ds, "--out", "s3://vidfeat/samples/s", "--per-class", "1", "--format", "npz"]);
    let sample = bucket_files("s3://vidfeat/samples/s");
    let local_sample = d.path().join("sample");
    run(&["sample", "--from", local_ds.to_str().unwrap(), "--out", local_sample.to_str().unwrap(), "--per-class", "1", "--format", "npz"]);
    assert_eq!(sample.keys().collect::<Vec<_>>(), folder_files(&local_sample).keys().collect::<Vec<_>>());
    assert!(sample.contains_key("sample.json"), "{:?}", sample.keys().collect::<Vec<_>>());
    let video = format!("data-samples/videos/{}", VIDEOS[0]);
    // A fitted PCA (its content hash, printed, is the local fit's; the object is whole).
    let fit = |to: &str| serde_json::from_slice::<serde_json::Value>(&run(&["pca", "fit", &video, "--dims", "4", "--out", to]).stdout).unwrap();
    let (remote_fit, local_fit) = (fit("s3://vidfeat/models/fitted.npz"), fit(d.path().join("fitted.npz").to_str().unwrap()));
    assert_eq!((remote_fit["sha256"].as_str(), remote_fit["out"].as_str()), (local_fit["sha256"].as_str(), Some("s3://vidfeat/models/fitted.npz")));
    assert_eq!(vidfeat_store::head("s3://vidfeat/models/fitted.npz").unwrap().size, std::fs::metadata(d.path().join("fitted.npz")).unwrap().len());
    run(&["frames", &video, "--max-frames", "2", "--out", "s3://vidfeat/frames/f"]);
    let frames = bucket_files("s3://vidfeat/frames/f");
    assert_eq!(frames.keys().collect::<Vec<_>>(), ["frame_00000.png", "frame_00001.png", "frames.json"]);
}
