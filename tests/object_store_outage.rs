//! The S3 server stopped in the middle of an upload and restarted: the upload is retried, no
//! partial object is ever visible, and the run ends with the bucket a local run would write.
//!
//! A test binary of its own: it kills and restarts its SeaweedFS, which the tests of
//! `object_store.rs` (run in parallel threads of one process) must not see. cargo runs test
//! binaries one after another, so the ports are free once the other binary's server is gone.
//!
//! Between vidfeat and the server sits a small TCP relay on loopback that forwards bytes both
//! ways and does one thing more: when it sees the first PUT of a shard object, it forwards the
//! first half of that request only, tells the test, and holds every later connection until the
//! test lets them through. The test then kills the server (SIGKILL), restarts it on the same
//! data folder, looks into the bucket directly, and opens the relay.
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const KEY: (&str, &str) = ("vidfeat", "vidfeat-secret-key");
const S3: &str = "127.0.0.1:8333";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Weed {
    child: Option<Child>,
    dir: PathBuf,
}

impl Weed {
    fn start(dir: &Path) -> Weed {
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = dir.join("s3.json");
        std::fs::write(
            &config,
            serde_json::json!({"identities": [{"name": "admin", "credentials": [{"accessKey": KEY.0, "secretKey": KEY.1}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}).to_string(),
        )
        .unwrap();
        let mut w = Weed { child: None, dir: dir.to_path_buf() };
        w.spawn();
        w
    }

    /// Starts the server on the data folder (a restart keeps what it held).
    fn spawn(&mut self) {
        let dir = &self.dir;
        let child = Command::new(root().join(".deps/servers/weed"))
            .args(["mini", &format!("-dir={}", dir.join("data").display()), "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false"])
            .arg(format!("-s3.config={}", dir.join("s3.json").display()))
            .stdin(Stdio::null())
            .stdout(std::fs::File::options().create(true).append(true).open(dir.join("weed.log")).unwrap())
            .stderr(std::fs::File::options().create(true).append(true).open(dir.join("weed.err")).unwrap())
            .spawn()
            .unwrap();
        self.child = Some(child);
        // The gateway accepts connections before its filer is ready: wait for a first put.
        let t = Instant::now();
        while let Err(e) = vidfeat_store::put("s3://vidfeat/.ready", b"ok".to_vec()) {
            assert!(t.elapsed() < Duration::from_secs(90), "SeaweedFS not ready: {e}: {}", std::fs::read_to_string(dir.join("weed.err")).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Phase {
    /// Forwarding, watching for the first PUT of a shard.
    Armed,
    /// Tripped: new connections wait.
    Held,
    /// Forwarding, nothing watched.
    Open,
}

struct Gate {
    phase: Mutex<Phase>,
    cv: Condvar,
}

impl Gate {
    fn set(&self, p: Phase) {
        *self.phase.lock().unwrap() = p;
        self.cv.notify_all();
    }
    fn wait_not_held(&self) {
        let mut g = self.phase.lock().unwrap();
        while *g == Phase::Held {
            g = self.cv.wait(g).unwrap();
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The relay (see the module doc); returns its port and the channel that says it tripped.
fn relay(gate: Arc<Gate>) -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let (gate, tx) = (gate.clone(), tx.clone());
            std::thread::spawn(move || {
                gate.wait_not_held();
                let Ok(mut up) = TcpStream::connect(S3) else { return };
                let (mut up_r, mut client_w) = (up.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut up_r, &mut client_w);
                    let _ = client_w.shutdown(Shutdown::Both);
                });
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = match client.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let chunk = &buf[..n];
                    let tripped = {
                        let mut p = gate.phase.lock().unwrap();
                        let hit = *p == Phase::Armed && chunk.starts_with(b"PUT ") && contains(&chunk[..chunk.len().min(512)], b"/frame/");
                        if hit {
                            *p = Phase::Held;
                        }
                        hit
                    };
                    if tripped {
                        let _ = up.write_all(&chunk[..n / 2]);
                        let line = String::from_utf8_lossy(&chunk[..chunk.iter().position(|&b| b == b'\r').unwrap_or(n)]).into_owned();
                        tx.send(line).unwrap();
                        // Until the test has killed the server and let the relay go on, the
                        // request stays half sent; then this connection ends.
                        gate.wait_not_held();
                        let _ = client.shutdown(Shutdown::Both);
                        let _ = up.shutdown(Shutdown::Both);
                        return;
                    }
                    if up.write_all(chunk).is_err() {
                        break;
                    }
                }
                let _ = up.shutdown(Shutdown::Write);
            });
        }
    });
    (port, rx)
}

fn wait_free(addr: &str) {
    let t = Instant::now();
    while TcpStream::connect(addr).is_ok() {
        assert!(t.elapsed() < Duration::from_secs(60), "{addr} is still taken: SeaweedFS's ports must be free for this test");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every object under `prefix` (relative name -> bytes), read directly from the server.
fn bucket_files(prefix: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    vidfeat_store::list(&format!("{prefix}/")).unwrap().into_iter().map(|(u, _)| (u[prefix.len() + 1..].to_string(), vidfeat_store::read(&u, 1 << 30).unwrap())).collect()
}

fn local_files(dir: &Path, sub: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir.join(sub)).unwrap().map(|e| e.unwrap().path()).map(|p| (format!("{sub}/{}", p.file_name().unwrap().to_string_lossy()), std::fs::read(&p).unwrap())).collect()
}

#[test]
fn a_server_killed_mid_upload_and_restarted_costs_a_retry_and_leaves_no_partial_object() {
    if !root().join(".deps/servers/weed").is_file() {
        assert!(std::env::var_os("VIDFEAT_REQUIRE_SERVERS").is_none(), "SeaweedFS missing: run scripts/servers-setup.sh");
        eprintln!("SKIPPED: SeaweedFS not installed (scripts/servers-setup.sh)");
        return;
    }
    for addr in [S3, "127.0.0.1:9333", "127.0.0.1:8888"] {
        wait_free(addr);
    }
    let d = tempfile::tempdir().unwrap();
    // This process talks to the server directly.
    for (k, v) in [("AWS_ACCESS_KEY_ID", KEY.0), ("AWS_SECRET_ACCESS_KEY", KEY.1), ("AWS_ENDPOINT_URL", "http://127.0.0.1:8333"), ("AWS_ALLOW_HTTP", "true"), ("AWS_REGION", "us-east-1")] {
        std::env::set_var(k, v);
    }
    let mut weed = Weed::start(&d.path().join("weed"));

    let videos = root().join("data-samples/videos");
    let lf = d.path().join("l.csv");
    std::fs::write(
        &lf,
        format!("id,source,labels,split\ndemo,{0}/mmaction2__demo.mp4,arm wrestling,train\npool,{0}/mmaction2__rawvideo_part_0.mp4,cleaning pool,validate\n", videos.display()),
    )
    .unwrap();
    let pca = d.path().join("pca.npz");
    let o = Command::new(env!("CARGO_BIN_EXE_vidfeat")).args(["pca", "fit", "data-samples/videos/mmaction2__demo.mp4", "--dims", "8", "--out"]).arg(&pca).current_dir(root()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let args = |out: &str| -> Vec<String> {
        ["run", lf.to_str().unwrap(), "--vocab", "kinetics-400", "--max-frames", "3", "--shards", "2", "--pca", pca.to_str().unwrap(), "--out", out, "--work-dir", d.path().join("w").to_str().unwrap()]
            .map(String::from)
            .to_vec()
    };

    // The run into the bucket, through the relay.
    let gate = Arc::new(Gate { phase: Mutex::new(Phase::Armed), cv: Condvar::new() });
    let (port, tripped) = relay(gate.clone());
    let ds = "s3://vidfeat/datasets/outage";
    let child = Command::new(env!("CARGO_BIN_EXE_vidfeat"))
        .args(args(ds))
        .envs([("AWS_ACCESS_KEY_ID", KEY.0), ("AWS_SECRET_ACCESS_KEY", KEY.1), ("AWS_ALLOW_HTTP", "true"), ("AWS_REGION", "us-east-1")])
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = tripped.recv_timeout(Duration::from_secs(300)).expect("no shard upload seen");
    assert!(line.starts_with("PUT /vidfeat/datasets/outage/frame/"), "{line}");
    let object = line.split(' ').nth(1).unwrap().trim_start_matches("/vidfeat/datasets/outage/").to_string();

    // Half of the shard's request has reached the server: kill it, then bring it back.
    weed.kill();
    weed.spawn();
    // Before the upload is retried: the shard is not in the bucket (nor any part of it).
    let seen = bucket_files(ds);
    assert!(!seen.contains_key(&object), "{object} visible after an interrupted upload ({} bytes)", seen[&object].len());
    assert!(seen.keys().all(|k| !k.starts_with("done/")), "a marker before its shard: {:?}", seen.keys().collect::<Vec<_>>());
    gate.set(Phase::Open);

    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "the run did not survive the outage: {err}");

    // The bucket holds what a local run writes.
    let local = d.path().join("local");
    let o = Command::new(env!("CARGO_BIN_EXE_vidfeat")).args(args(local.to_str().unwrap())).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let files = bucket_files(ds);
    let shards: std::collections::BTreeMap<String, Vec<u8>> = files.iter().filter(|(k, _)| k.starts_with("frame/") || k.starts_with("video/")).map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut expected = local_files(&local, "frame");
    expected.extend(local_files(&local, "video"));
    assert!(shards == expected, "bucket shards differ from a local run's: {:?} vs {:?}", shards.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    assert!(files.contains_key("summary.json") && files.keys().filter(|k| k.starts_with("done/")).count() == expected.len() / 2, "{:?}", files.keys().collect::<Vec<_>>());
    drop(weed);
}
