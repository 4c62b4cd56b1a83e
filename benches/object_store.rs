//! Object storage against the local disk (prints figures; not a test): upload and download
//! throughput of `vidfeat-store` to a SeaweedFS S3 server on loopback (from
//! `scripts/servers-setup.sh`), beside a copy of the same file on the same disk, in one run;
//! then `vidfeat run` of the sample list into a local folder and into a bucket.
//!
//!   bash scripts/servers-setup.sh && cargo bench --bench object_store [-- MIB]
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let mib: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(512);
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let weed = root.join(".deps/servers/weed");
    assert!(weed.is_file(), "run scripts/servers-setup.sh first");
    assert!(std::net::TcpStream::connect("127.0.0.1:8333").is_err(), "127.0.0.1:8333 is taken");
    let d = tempfile::tempdir().unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench-secret"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:8333"),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_REGION", "us-east-1"),
    ];
    let mut server = Command::new(&weed)
        .args(["mini", &format!("-dir={}", d.path().join("weed").display()), "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false"])
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::fs::create_dir_all(d.path().join("weed")).ok();
    for (k, v) in env {
        std::env::set_var(k, v);
    }
    let t = Instant::now();
    while vidfeat_store::put("s3://bench/.ready", b"ok".to_vec()).is_err() {
        assert!(t.elapsed() < Duration::from_secs(60), "SeaweedFS did not start");
        std::thread::sleep(Duration::from_millis(300));
    }

    // A file of incompressible bytes.
    let src = d.path().join("blob");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).unwrap());
        let mut x = 0x9e3779b97f4a7c15u64;
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..mib {
            for c in buf.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                c.copy_from_slice(&x.to_le_bytes());
            }
            f.write_all(&buf).unwrap();
        }
    }
    let rate = |secs: f64| mib as f64 / secs;
    println!("== {mib} MiB, best of 3 (2 cores, loopback; SeaweedFS stores on the same disk)");
    let best = |f: &mut dyn FnMut()| (0..3).map(|_| { let t = Instant::now(); f(); t.elapsed().as_secs_f64() }).fold(f64::MAX, f64::min);
    let copy = best(&mut || {
        std::fs::copy(&src, d.path().join("copy")).unwrap();
        std::fs::File::open(d.path().join("copy")).unwrap().sync_all().unwrap();
    });
    let up = best(&mut || {
        vidfeat_store::upload(&src, "s3://bench/blob").unwrap();
    });
    let down = best(&mut || {
        vidfeat_store::get_to_file("s3://bench/blob", &d.path().join("down"), u64::MAX).unwrap();
    });
    assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(d.path().join("down")).unwrap());
    println!("local disk copy (fsynced): {copy:.2} s, {:.0} MiB/s", rate(copy));
    println!("upload (multipart, 8 MiB parts, 2 in flight): {up:.2} s, {:.0} MiB/s", rate(up));
    println!("download (streamed to a file, fsynced): {down:.2} s, {:.0} MiB/s", rate(down));

    // The sample list into a folder and into a bucket (same settings, PCA fitted once).
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_vidfeat"));
    {
        let pca = d.path().join("pca.npz");
        let o = Command::new(&bin).args(["pca", "fit", "data-samples/videos/mmaction2__demo.mp4", "--dims", "64", "--out"]).arg(&pca).current_dir(&root).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        for (what, out) in [("local folder", d.path().join("out").display().to_string()), ("bucket", "s3://bench/ds".to_string())] {
            let t = Instant::now();
            let o = Command::new(&bin)
                .args(["run", "data-samples/samples.csv", "--vocab", "kinetics-400", "--pca", pca.to_str().unwrap(), "--out", &out, "--work-dir"])
                .arg(d.path().join("work"))
                .envs(env)
                .current_dir(&root)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            println!("vidfeat run data-samples/samples.csv into a {what}: {:.2} s", t.elapsed().as_secs_f64());
        }
    }
    let _ = server.kill();
    let _ = server.wait();
}
