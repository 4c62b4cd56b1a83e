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

    let out = d.path().join("out");
    let o = vidfeat(s, READER, &["run", "s3://vidfeat/lists/list.csv", "--vocab", "kinetics-400", "--max-frames", "3", "--pca", pca(d.path()).to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    let f = failures(&out);
    let kinds: Vec<(&str, &str)> = f.iter().map(|(i, k, _)| (i.as_str(), k.as_str())).collect();
    assert_eq!(kinds, [("gone", "not_found"), ("locked", "forbidden")], "{f:?}");
    assert!(f[0].2.contains("s3://vidfeat/videos/missing.mp4"), "{f:?}");
    assert!(f[1].2.contains("s3://private/secret.mp4") && f[1].2.contains("access denied"), "{f:?}");
    assert_eq!(ids(&out), ["demo", "pancake", "pool"]);

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
