//! Remote sources end to end: `vidfeat run` over a list of http URLs served on loopback (one
//! good, a 404, a redirect out of http) and an id-only row fetched with --fetch-cmd. Downloaded
//! videos give the same features as the local file; failures carry their kinds. Without
//! --allow-private-addresses, rows pointing at loopback, private or metadata addresses fail as
//! `forbidden_address` and nothing connects to them.
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

use vidfeat_export::{parse_record, read_file};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Serves data-samples/videos/NAME at /NAME; /gone is 404; /escape redirects to a file URL.
fn server() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
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
                let file = root().join("data-samples/videos").join(&path);
                let (head, body) = if path == "escape" {
                    ("HTTP/1.1 302 Found\r\nLocation: file:///etc/passwd\r\nContent-Length: 0".to_string(), vec![])
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

fn frame_records(dir: &std::path::Path) -> Vec<vidfeat_export::Parsed> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("frame")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.iter().flat_map(|f| read_file(f).unwrap()).map(|r| parse_record(&r).unwrap()).collect()
}

#[test]
fn http_and_fetch_cmd_sources_end_to_end() {
    let base = server();
    let d = tempfile::tempdir().unwrap();
    let list = d.path().join("list.csv");
    std::fs::write(
        &list,
        format!(
            "id,source,labels\nweb,{base}/mmaction2__demo.mp4,arm wrestling\ngone,{base}/gone.mp4,arm wrestling\nescape,{base}/escape,arm wrestling\nbyid,,arm wrestling\n"
        ),
    )
    .unwrap();
    let videos = root().join("data-samples/videos");
    let fetch_cmd = format!("cp {}/$(printf %s {{id}} | sed s/byid/mmaction2__demo/).mp4 {{out}}", videos.display());
    let out = d.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_vidfeat"))
        .args(["run", list.to_str().unwrap(), "--vocab", "kinetics-400", "--out", out.to_str().unwrap(), "--retries", "1", "--http-timeout", "5"])
        .args(["--fetch-cmd", &fetch_cmd, "--allow-private-addresses"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    let failures: Vec<serde_json::Value> =
        std::fs::read_to_string(out.join("failures.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<(&str, &str)> = failures.iter().map(|f| (f["id"].as_str().unwrap(), f["kind"].as_str().unwrap())).collect();
    assert_eq!(kinds, [("gone", "download_failed"), ("escape", "forbidden_protocol")]);
    assert!(failures[0]["reason"].as_str().unwrap().contains("404"));

    // The same video locally: identical rows.
    let local = d.path().join("local");
    let o = Command::new(env!("CARGO_BIN_EXE_vidfeat"))
        .args(["run", videos.join("mmaction2__demo.mp4").to_str().unwrap(), "--out", local.to_str().unwrap(), "--pca", out.join("pca.npz").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let want = &frame_records(&local)[0];
    let got = frame_records(&out);
    let ids: Vec<&str> = got.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["web", "byid"]);
    for p in &got {
        assert_eq!(p.rgb, want.rgb, "{}", p.id);
    }
    // The content cache holds each download once, with its checksum.
    let recs: Vec<serde_json::Value> = std::fs::read_dir(out.join("downloads"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect();
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert!(recs.iter().all(|r| r["sha256"].as_str().unwrap().len() == 64 && r["bytes"].as_u64().unwrap() > 1000));
}

#[test]
fn list_rows_cannot_reach_private_addresses_by_default() {
    let base = server();
    let port = base.rsplit_once(':').unwrap().1.to_string();
    let d = tempfile::tempdir().unwrap();
    let list = d.path().join("list.csv");
    let local = root().join("data-samples/videos/mmaction2__demo.mp4");
    std::fs::write(
        &list,
        format!(
            "id,source,labels\nloop,{base}/mmaction2__demo.mp4,arm wrestling\nname,http://localhost:{port}/mmaction2__demo.mp4,arm wrestling\nmeta,http://169.254.169.254/latest/meta-data/,arm wrestling\nlan,http://192.168.0.10/v.mp4,arm wrestling\nfile,{},arm wrestling\n",
            local.display()
        ),
    )
    .unwrap();
    let out = d.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_vidfeat"))
        .args(["run", list.to_str().unwrap(), "--vocab", "kinetics-400", "--out", out.to_str().unwrap(), "--retries", "3", "--max-frames", "2"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    let failures: Vec<serde_json::Value> =
        std::fs::read_to_string(out.join("failures.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let got: Vec<(&str, &str)> = failures.iter().map(|f| (f["id"].as_str().unwrap(), f["kind"].as_str().unwrap())).collect();
    assert_eq!(got, [("loop", "forbidden_address"), ("name", "forbidden_address"), ("meta", "forbidden_address"), ("lan", "forbidden_address")]);
    let reason = |i: usize| failures[i]["reason"].as_str().unwrap().to_string();
    assert!(reason(0).contains("127.0.0.1 is a loopback address"), "{}", reason(0));
    assert!(reason(1).contains("localhost resolves to"), "{}", reason(1));
    assert!(reason(2).contains("169.254.169.254 is a link-local"), "{}", reason(2));
    assert!(reason(3).contains("192.168.0.10 is a private address") && reason(3).contains("--allow-private-addresses"), "{}", reason(3));
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["failures_by_kind"]["forbidden_address"], 4, "{summary}");
    // The good local row is written; nothing was downloaded.
    let ids: Vec<String> = frame_records(&out).into_iter().map(|p| p.id).collect();
    assert_eq!(ids, ["file"]);
    let downloaded = std::fs::read_dir(out.join("downloads")).map(|r| r.count()).unwrap_or(0);
    assert_eq!(downloaded, 0);
}
