//! http(s) sources against a scripted HTTP server on loopback with faults: 404, 500 then
//! success, a slow body, a truncated body (resumed with Range), a wrong Content-Length,
//! an oversized body, redirects (within http and out of it); and --fetch-cmd.
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vidfeat_ingest::fetch::{fetch_id, fetch_url, FetchConfig};

fn data() -> Vec<u8> {
    (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

#[derive(Default)]
struct Log {
    hits: HashMap<String, u32>,
    ranges: Vec<(String, String)>,
}

fn respond(s: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut h = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    let _ = s.write_all(h.as_bytes());
    let _ = s.write_all(body);
    let _ = s.flush();
}

fn serve_one(mut s: TcpStream, log: Arc<Mutex<Log>>) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.strip_prefix("Range:").or_else(|| h.strip_prefix("range:")) {
            range = Some(v.trim().to_string());
        }
    }
    let n = {
        let mut l = log.lock().unwrap();
        let n = {
            let c = l.hits.entry(path.clone()).or_default();
            *c += 1;
            *c
        };
        if let Some(rg) = &range {
            l.ranges.push((path.clone(), rg.clone()));
        }
        n
    };
    let d = data();
    let full = |s: &mut TcpStream| respond(s, "200 OK", &[("Content-Length", d.len().to_string()), ("ETag", "\"v1\"".into())], &d);
    let ranged = |s: &mut TcpStream, rg: &str| {
        let from: usize = rg.trim_start_matches("bytes=").trim_end_matches('-').parse().unwrap();
        if from >= d.len() {
            return respond(s, "416 Range Not Satisfiable", &[("Content-Length", "0".into())], b"");
        }
        respond(
            s,
            "206 Partial Content",
            &[
                ("Content-Length", (d.len() - from).to_string()),
                ("Content-Range", format!("bytes {from}-{}/{}", d.len() - 1, d.len())),
                ("ETag", "\"v1\"".into()),
            ],
            &d[from..],
        )
    };
    match path.as_str() {
        "/ok.bin" => match range {
            Some(rg) => ranged(&mut s, &rg),
            None => full(&mut s),
        },
        "/404" => respond(&mut s, "404 Not Found", &[("Content-Length", "9".into())], b"not here\n"),
        "/flaky" if n == 1 => respond(&mut s, "500 Internal Server Error", &[("Content-Length", "0".into())], b""),
        "/flaky" => full(&mut s),
        "/always500" => respond(&mut s, "503 Service Unavailable", &[("Content-Length", "0".into())], b""),
        "/slow" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1000\r\n\r\n");
            for _ in 0..1000 {
                if s.write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        "/truncated" => match range {
            Some(rg) => ranged(&mut s, &rg),
            None => {
                let h = format!("HTTP/1.1 200 OK\r\nConnection: close\r\nETag: \"v1\"\r\nContent-Length: {}\r\n\r\n", d.len());
                let _ = s.write_all(h.as_bytes());
                let _ = s.write_all(&d[..d.len() / 2]);
            }
        },
        "/wrong-length" => match range {
            Some(_) => respond(&mut s, "416 Range Not Satisfiable", &[("Content-Length", "0".into())], b""),
            None => {
                let h = format!("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", d.len() + 1000);
                let _ = s.write_all(h.as_bytes());
                let _ = s.write_all(&d);
            }
        },
        "/big" => respond(&mut s, "200 OK", &[("Content-Length", "50000000".into())], b""),
        "/big-no-length" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            for _ in 0..40 {
                if s.write_all(&d).is_err() {
                    return;
                }
            }
        }
        "/redirect" => respond(&mut s, "302 Found", &[("Location", "/ok.bin".into()), ("Content-Length", "0".into())], b""),
        "/redirect-file" => respond(&mut s, "302 Found", &[("Location", "file:///etc/passwd".into()), ("Content-Length", "0".into())], b""),
        "/inside.bin" => respond(&mut s, "200 OK", &[("Content-Length", d.len().to_string())], &d),
        p if p.starts_with("/redirect-to?") => respond(&mut s, "302 Found", &[("Location", p["/redirect-to?".len()..].into()), ("Content-Length", "0".into())], b""),
        _ => respond(&mut s, "404 Not Found", &[("Content-Length", "0".into())], b""),
    }
}

fn server() -> (String, Arc<Mutex<Log>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Log::default()));
    let lg = log.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let lg = lg.clone();
            std::thread::spawn(move || serve_one(s, lg));
        }
    });
    (base, log)
}

fn cfg(dir: &std::path::Path) -> FetchConfig {
    FetchConfig {
        io_timeout: Duration::from_secs(2),
        total_timeout: Duration::from_secs(3),
        retries: 2,
        backoff: Duration::from_millis(20),
        max_bytes: 1_000_000,
        // The test servers listen on loopback.
        allow_private_addresses: true,
        ..FetchConfig::new(dir.to_path_buf())
    }
}

#[test]
fn downloads_are_cached_with_a_checksum() {
    let (base, log) = server();
    let d = tempfile::tempdir().unwrap();
    let c = cfg(d.path());
    let f = fetch_url(&format!("{base}/ok.bin"), &c).unwrap();
    assert_eq!(std::fs::read(&f.path).unwrap(), data());
    assert!(!f.from_cache);
    use sha2::Digest;
    assert_eq!(f.sha256, hex::encode(sha2::Sha256::digest(data())));
    let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(f.path.with_extension("json")).unwrap()).unwrap();
    assert_eq!(rec["sha256"], f.sha256.as_str());
    assert_eq!(rec["bytes"], 100_000);
    // Second time: from the cache, no request.
    let again = fetch_url(&format!("{base}/ok.bin"), &c).unwrap();
    assert!(again.from_cache && again.path == f.path);
    assert_eq!(log.lock().unwrap().hits["/ok.bin"], 1);
    // A cached file whose bytes no longer match its record is fetched again.
    std::fs::write(&f.path, b"tampered").unwrap();
    let third = fetch_url(&format!("{base}/ok.bin"), &c).unwrap();
    assert!(!third.from_cache);
    assert_eq!(std::fs::read(&third.path).unwrap(), data());
    assert_eq!(log.lock().unwrap().hits["/ok.bin"], 2);
}

#[test]
fn http_errors_and_retries() {
    let (base, log) = server();
    let d = tempfile::tempdir().unwrap();
    let c = cfg(d.path());
    let e = fetch_url(&format!("{base}/404"), &c).unwrap_err();
    assert_eq!(e.kind, "download_failed");
    assert!(e.message.contains("404"), "{e}");
    assert_eq!(log.lock().unwrap().hits["/404"], 1, "a 404 is not retried");

    let f = fetch_url(&format!("{base}/flaky"), &c).unwrap();
    assert_eq!(f.requests, 2, "500 then success");
    assert_eq!(std::fs::read(&f.path).unwrap(), data());

    let e = fetch_url(&format!("{base}/always500"), &c).unwrap_err();
    assert_eq!(e.kind, "download_failed");
    assert!(e.message.contains("503") && e.message.contains("after 3 attempts"), "{e}");
    assert_eq!(log.lock().unwrap().hits["/always500"], 3);
}

#[test]
fn slow_body_times_out() {
    let (base, _) = server();
    let d = tempfile::tempdir().unwrap();
    let c = FetchConfig { retries: 0, ..cfg(d.path()) };
    let t = std::time::Instant::now();
    let e = fetch_url(&format!("{base}/slow"), &c).unwrap_err();
    assert_eq!(e.kind, "timeout", "{e}");
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
}

#[test]
fn truncated_body_resumes_with_range() {
    let (base, log) = server();
    let d = tempfile::tempdir().unwrap();
    let f = fetch_url(&format!("{base}/truncated"), &cfg(d.path())).unwrap();
    assert_eq!(std::fs::read(&f.path).unwrap(), data(), "resumed bytes join up exactly");
    let l = log.lock().unwrap();
    assert_eq!(l.hits["/truncated"], 2);
    assert_eq!(l.ranges, vec![("/truncated".to_string(), "bytes=50000-".to_string())]);
}

#[test]
fn wrong_length_too_large_and_redirects() {
    let (base, _) = server();
    let d = tempfile::tempdir().unwrap();
    let c = cfg(d.path());
    let e = fetch_url(&format!("{base}/wrong-length"), &c).unwrap_err();
    assert_eq!(e.kind, "download_failed");
    assert!(e.message.contains("Content-Length") || e.message.contains("416"), "{e}");

    let d2 = tempfile::tempdir().unwrap();
    let c2 = cfg(d2.path());
    let e = fetch_url(&format!("{base}/big"), &c2).unwrap_err();
    assert_eq!(e.kind, "too_large", "{e}");
    let e = fetch_url(&format!("{base}/big-no-length"), &c2).unwrap_err();
    assert_eq!(e.kind, "too_large", "{e}");
    assert!(std::fs::read_dir(d2.path()).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".part")), "no partial file left for an oversized body");

    let f = fetch_url(&format!("{base}/redirect"), &c).unwrap();
    assert_eq!(std::fs::read(&f.path).unwrap(), data());
    let e = fetch_url(&format!("{base}/redirect-file"), &c).unwrap_err();
    assert_eq!(e.kind, "forbidden_protocol", "{e:?}");
    assert!(!std::fs::read_dir(d.path()).unwrap().any(|e| std::fs::read(e.unwrap().path()).unwrap_or_default().starts_with(b"root:")));

    let e = fetch_url("ftp://example.org/x.mp4", &c).unwrap_err();
    assert_eq!(e.kind, "forbidden_protocol");
}

#[test]
fn fetch_cmd_runs_quoted_with_a_time_limit() {
    let d = tempfile::tempdir().unwrap();
    let mut c = cfg(d.path());
    // The id is hostile: quoting keeps it one argument and out of the shell.
    c.fetch_cmd = Some("printf 'video %s' {id} > {out}".into());
    let f = fetch_id("a'b; touch PWNED", &c).unwrap();
    assert_eq!(std::fs::read_to_string(&f.path).unwrap(), "video a'b; touch PWNED");
    assert!(!std::path::Path::new("PWNED").exists());
    let again = fetch_id("a'b; touch PWNED", &c).unwrap();
    assert!(again.from_cache);

    c.fetch_cmd = Some("echo no such video >&2; exit 3".into());
    let e = fetch_id("x", &c).unwrap_err();
    assert_eq!(e.kind, "download_failed");
    assert!(e.message.contains("no such video"), "{e}");

    c.fetch_cmd = Some("true".into());
    assert!(fetch_id("y", &c).unwrap_err().message.contains("wrote no"));

    c.fetch_cmd = Some("sleep 30; touch {out}".into());
    c.fetch_cmd_timeout = Duration::from_millis(300);
    let t = std::time::Instant::now();
    assert_eq!(fetch_id("z", &c).unwrap_err().kind, "timeout");
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn private_addresses_are_refused_on_every_hop_unless_allowed() {
    let (base, log) = server();
    let d = tempfile::tempdir().unwrap();
    let hostport = base.trim_start_matches("http://").to_string();
    let port = hostport.rsplit_once(':').unwrap().1.to_string();
    let strict = FetchConfig { allow_private_addresses: false, ..cfg(d.path()) };
    let hits = |p: &str| log.lock().unwrap().hits.get(p).copied().unwrap_or(0);

    // The server itself is on loopback: refused before any connection, and not retried.
    let e = fetch_url(&format!("{base}/inside.bin"), &strict).unwrap_err();
    assert_eq!(e.kind, "forbidden_address", "{e}");
    assert!(e.message.contains("127.0.0.1 is a loopback address") && e.message.contains("--allow-private-addresses"), "{e}");
    assert_eq!(hits("/inside.bin"), 0);
    // A name that resolves to a private address, IPv6 loopback, an IPv4-mapped address, the
    // metadata service: all refused by their resolved address.
    for (url, says) in [
        (format!("http://localhost:{port}/inside.bin"), "localhost resolves to"),
        (format!("http://[::1]:{port}/inside.bin"), "[::1] is a loopback address"),
        (format!("http://[::ffff:127.0.0.1]:{port}/inside.bin"), "loopback"),
        ("http://169.254.169.254/latest/meta-data/".to_string(), "169.254.169.254 is a link-local"),
        ("http://10.0.0.5/x.mp4".to_string(), "10.0.0.5 is a private address"),
    ] {
        let e = fetch_url(&url, &strict).unwrap_err();
        assert_eq!(e.kind, "forbidden_address", "{url}: {e}");
        assert!(e.message.contains(says), "{url}: {e}");
    }
    assert_eq!(hits("/inside.bin"), 0);
    assert!(std::fs::read_dir(d.path()).unwrap().next().is_none(), "nothing cached or half-written");

    // A trusted endpoint (one the user configured) is reached, but a redirect from it to a
    // private address is checked like any hop.
    let trusting = FetchConfig { trusted_hosts: vec![hostport.clone()], ..strict.clone() };
    assert_eq!(std::fs::read(fetch_url(&format!("{base}/ok.bin"), &trusting).unwrap().path).unwrap(), data());
    for (target, says) in [
        (format!("http://localhost:{port}/inside.bin"), "localhost resolves to"),
        ("http://169.254.169.254/latest/meta-data/iam/".to_string(), "169.254.169.254 is a link-local"),
    ] {
        let e = fetch_url(&format!("{base}/redirect-to?{target}"), &trusting).unwrap_err();
        assert_eq!(e.kind, "forbidden_address", "{target}: {e}");
        assert!(e.message.contains(&format!("redirected to {target}")) && e.message.contains(says), "{target}: {e}");
    }
    assert_eq!(hits("/inside.bin"), 0);

    // Opted in: the same redirect is followed.
    let open = FetchConfig { dir: d.path().join("open"), ..cfg(d.path()) };
    let f = fetch_url(&format!("{base}/redirect-to?http://localhost:{port}/inside.bin"), &open).unwrap();
    assert_eq!(std::fs::read(&f.path).unwrap(), data());
    assert_eq!(hits("/inside.bin"), 1);
}
