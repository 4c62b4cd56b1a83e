//! Remote sources into a local content cache: `http(s)://` URLs (ureq: timeouts, retries with
//! backoff, a size cap, resumable partial downloads, a recorded SHA-256) and sources that are
//! only ids, through a user command template (`--fetch-cmd`, e.g. yt-dlp) run with a time limit.
//! `s3://` and `gs://` objects land in the same cache through `vidfeat-store`.
//!
//! Cache layout (one folder, shared by runs):
//! ```text
//! DIR/{key}            the complete download (key = first 32 hex digits of SHA-256 of the URL)
//! DIR/{key}.json       url, final url, bytes, sha256, etag, last_modified, fetched_at
//! DIR/{key}.part       a partial download, resumed with a Range request on the next try
//! DIR/{key}.part.json  the validator (ETag / Last-Modified) the partial bytes came with
//! DIR/cmd-{key}.{ext}  output of --fetch-cmd for an id
//! ```
//! A cached file is used only when its size and SHA-256 match its record. FFmpeg never sees a
//! URL: it opens the cached file as any local file (so the local-only protocol whitelist holds).
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::address::Guard;

#[derive(Debug, Clone)]
pub struct FetchConfig {
    pub dir: PathBuf,
    /// Connect and per-read idle limit.
    pub io_timeout: Duration,
    /// Limit for one download attempt, body included.
    pub total_timeout: Duration,
    /// Further attempts after the first, for 5xx, 429, connection errors, short bodies, timeouts.
    pub retries: u32,
    /// Backoff before retry n (1-based) is `backoff * 2^(n-1)`.
    pub backoff: Duration,
    /// Largest download accepted, bytes.
    pub max_bytes: u64,
    /// Command template for id-only sources: `{id}` and `{out}` are replaced (shell-quoted)
    /// and the line runs under `sh -c`.
    pub fetch_cmd: Option<String>,
    pub fetch_cmd_timeout: Duration,
    /// Connect to loopback, link-local (cloud metadata), private and other non-public
    /// addresses too (`--allow-private-addresses`); by default such a source fails as
    /// `forbidden_address` (see [`crate::address`]).
    pub allow_private_addresses: bool,
    /// `host:port` of endpoints the user configured, trusted whatever they resolve to.
    pub trusted_hosts: Vec<String>,
}

impl FetchConfig {
    pub fn new(dir: PathBuf) -> Self {
        FetchConfig {
            dir,
            io_timeout: Duration::from_secs(30),
            total_timeout: Duration::from_secs(1800),
            retries: 3,
            backoff: Duration::from_millis(500),
            max_bytes: 64 << 30,
            fetch_cmd: None,
            fetch_cmd_timeout: Duration::from_secs(1800),
            allow_private_addresses: false,
            trusted_hosts: vec![],
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
    pub from_cache: bool,
    /// HTTP requests made (0 for a cache hit).
    pub requests: u32,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct FetchError {
    /// `download_failed`, `too_large`, `timeout`, `forbidden_protocol`, `forbidden_address`;
    /// for objects also `not_found` and `forbidden` (access denied).
    pub kind: &'static str,
    pub message: String,
}

fn err(kind: &'static str, message: impl Into<String>) -> FetchError {
    FetchError { kind, message: message.into() }
}

fn key_of(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..16])
}

/// The cache key of a URL source.
pub fn url_key(url: &str) -> String {
    key_of(url)
}

/// The cache key of an id fetched with the `--fetch-cmd` template `tpl`.
pub fn id_key(tpl: &str, id: &str) -> String {
    format!("cmd-{}", key_of(&format!("{tpl}\n{id}")))
}

/// The SHA-256 recorded for what the cache holds under `key`, if anything: the content a
/// remote source had when it was downloaded. Only the record is read (a cached file is checked
/// against it whenever it is used).
pub fn recorded_sha256(dir: &Path, key: &str) -> Option<String> {
    let rec: Record = serde_json::from_slice(&std::fs::read(dir.join(format!("{key}.json"))).ok()?).ok()?;
    let len = std::fs::metadata(dir.join(key)).ok()?.len();
    (len == rec.bytes).then_some(rec.sha256)
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Record {
    url: String,
    #[serde(default)]
    final_url: String,
    bytes: u64,
    sha256: String,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    last_modified: Option<String>,
    #[serde(default)]
    fetched_at: u64,
}

fn sha256_file(p: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, hex::encode(h.finalize())))
}

fn write_json(p: &Path, v: &impl serde::Serialize) -> std::io::Result<()> {
    let tmp = p.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(v)?)?;
    std::fs::rename(tmp, p)
}

/// The cached file for `key` if its record matches its bytes.
fn cached(dir: &Path, key: &str) -> Option<Fetched> {
    let path = dir.join(key);
    let rec: Record = serde_json::from_slice(&std::fs::read(dir.join(format!("{key}.json"))).ok()?).ok()?;
    let (bytes, sha) = sha256_file(&path).ok()?;
    (bytes == rec.bytes && sha == rec.sha256).then_some(Fetched { path, bytes, sha256: sha, from_cache: true, requests: 0 })
}

/// Why one attempt failed, and whether another may help.
struct Attempt {
    error: FetchError,
    retry: bool,
}

fn attempt_err(kind: &'static str, message: String, retry: bool) -> Attempt {
    Attempt { error: err(kind, message), retry }
}

/// Downloads `url` (http, https, s3 or gs) into the cache (or finds it there).
pub fn fetch_url(url: &str, cfg: &FetchConfig) -> Result<Fetched, FetchError> {
    if vidfeat_store::is_url(url) {
        return fetch_object(url, cfg);
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(err("forbidden_protocol", format!("only http and https URLs are fetched: {url}")));
    }
    std::fs::create_dir_all(&cfg.dir).map_err(|e| err("download_failed", format!("cache {}: {e}", cfg.dir.display())))?;
    let key = url_key(url);
    if let Some(f) = cached(&cfg.dir, &key) {
        return Ok(f);
    }
    let guard = Guard::new(cfg.allow_private_addresses, cfg.trusted_hosts.clone());
    let agent = ureq::AgentBuilder::new()
        // Every connection's address is checked where it is resolved (each redirect hop).
        .resolver(guard.clone())
        .timeout_connect(cfg.io_timeout)
        .timeout_read(cfg.io_timeout)
        .timeout(cfg.total_timeout)
        // Redirects are followed by hand (`get_following`): ureq 2.12 panics on a Location
        // without a host (e.g. `file:///etc/passwd`), and each hop must stay in http(s).
        .redirects(0)
        .user_agent(concat!("vidfeat/", env!("CARGO_PKG_VERSION")))
        .build();
    let mut requests = 0u32;
    let mut last = None;
    for n in 0..=cfg.retries {
        if n > 0 {
            std::thread::sleep(cfg.backoff * 2u32.saturating_pow(n - 1));
        }
        requests += 1;
        match attempt(&agent, &guard, url, &key, cfg) {
            Ok(mut f) => {
                f.requests = requests;
                return Ok(f);
            }
            Err(a) if !a.retry => return Err(a.error),
            Err(a) => last = Some(a.error),
        }
    }
    let e = last.unwrap();
    Err(err(e.kind, format!("{} (after {} attempts)", e.message, cfg.retries + 1)))
}

fn attempt(agent: &ureq::Agent, guard: &Guard, url: &str, key: &str, cfg: &FetchConfig) -> Result<Fetched, Attempt> {
    let part = cfg.dir.join(format!("{key}.part"));
    let part_meta = cfg.dir.join(format!("{key}.part.json"));
    let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let validator: Option<Record> = std::fs::read(&part_meta).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let mut headers = vec![];
    if have > 0 {
        headers.push(("Range", format!("bytes={have}-")));
        if let Some(v) = validator.as_ref().and_then(|r| r.etag.clone().or(r.last_modified.clone())) {
            headers.push(("If-Range", v));
        }
    }
    let started = Instant::now();
    let resp = get_following(agent, guard, url, &headers)?;
    let resp = match resp {
        Ok(r) => r,
        Err((code, text)) => {
            let retry = code >= 500 || code == 429 || code == 408;
            if code == 416 {
                // The partial file is no use against this resource: start over next time.
                let _ = std::fs::remove_file(&part);
                return Err(attempt_err("download_failed", format!("HTTP 416 for a resumed download of {url}"), true));
            }
            return Err(attempt_err("download_failed", format!("HTTP {code} {text} for {url}"), retry));
        }
    };
    let final_url = resp.get_url().to_string();
    if !(final_url.starts_with("http://") || final_url.starts_with("https://")) {
        return Err(attempt_err("forbidden_protocol", format!("{url} redirected to {final_url}"), false));
    }
    let etag = resp.header("ETag").map(str::to_string);
    let last_modified = resp.header("Last-Modified").map(str::to_string);
    let content_length: Option<u64> = resp.header("Content-Length").and_then(|v| v.trim().parse().ok());
    // 206 with the range we asked for: append; anything else: the whole body from byte 0.
    let resuming = resp.status() == 206
        && have > 0
        && resp.header("Content-Range").is_some_and(|cr| cr.trim().starts_with(&format!("bytes {have}-")));
    if resp.status() == 206 && !resuming {
        let _ = std::fs::remove_file(&part);
        return Err(attempt_err("download_failed", format!("{url}: unexpected partial response"), true));
    }
    let start = if resuming { have } else { 0 };
    let expected_total = content_length.map(|l| l + start);
    if let Some(t) = expected_total.filter(|&t| t > cfg.max_bytes) {
        return Err(attempt_err("too_large", format!("{url} is {t} bytes, over the {} byte cap", cfg.max_bytes), false));
    }
    write_json(&part_meta, &Record { url: url.into(), etag: etag.clone(), last_modified: last_modified.clone(), ..Default::default() })
        .map_err(|e| attempt_err("download_failed", format!("cache: {e}"), false))?;
    let file = std::fs::OpenOptions::new().create(true).write(true).append(resuming).truncate(!resuming).open(&part);
    let mut file = file.map_err(|e| attempt_err("download_failed", format!("cache: {e}"), false))?;
    let mut body = resp.into_reader().take(cfg.max_bytes.saturating_sub(start) + 1);
    let mut buf = vec![0u8; 1 << 16];
    let mut got = start;
    loop {
        let k = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) => {
                let _ = file.flush();
                let kind = if is_timeout(&e.to_string()) || started.elapsed() >= cfg.total_timeout { "timeout" } else { "download_failed" };
                let of = expected_total.map(|t| format!(" of {t} (Content-Length)")).unwrap_or_default();
                return Err(attempt_err(kind, format!("{url}: body ended after {got} bytes{of}: {e}"), true));
            }
        };
        got += k as u64;
        if got > cfg.max_bytes {
            drop(file);
            let _ = std::fs::remove_file(&part);
            return Err(attempt_err("too_large", format!("{url} is over the {} byte cap", cfg.max_bytes), false));
        }
        file.write_all(&buf[..k]).map_err(|e| attempt_err("download_failed", format!("cache: {e}"), false))?;
    }
    file.sync_all().map_err(|e| attempt_err("download_failed", format!("cache: {e}"), false))?;
    drop(file);
    if let Some(t) = expected_total.filter(|&t| t != got) {
        return Err(attempt_err("download_failed", format!("{url}: body ended after {got} of {t} bytes (Content-Length)"), true));
    }
    let (bytes, sha256) = sha256_file(&part).map_err(|e| attempt_err("download_failed", format!("cache: {e}"), false))?;
    let rec = Record {
        url: url.into(),
        final_url,
        bytes,
        sha256: sha256.clone(),
        etag,
        last_modified,
        fetched_at: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    };
    let path = cfg.dir.join(key);
    std::fs::rename(&part, &path).map_err(|e| attempt_err("download_failed", format!("cache: {e}"), false))?;
    write_json(&cfg.dir.join(format!("{key}.json")), &rec).map_err(|e| attempt_err("download_failed", format!("cache: {e}"), false))?;
    let _ = std::fs::remove_file(&part_meta);
    Ok(Fetched { path, bytes, sha256, from_cache: false, requests: 0 })
}

/// An `s3://` or `gs://` object into the cache, with the same record as a web download (its
/// ETag kept). The store's client retries transient errors itself (with backoff).
fn fetch_object(url: &str, cfg: &FetchConfig) -> Result<Fetched, FetchError> {
    std::fs::create_dir_all(&cfg.dir).map_err(|e| err("download_failed", format!("cache {}: {e}", cfg.dir.display())))?;
    let key = url_key(url);
    if let Some(f) = cached(&cfg.dir, &key) {
        return Ok(f);
    }
    let part = cfg.dir.join(format!("{key}.part"));
    let meta = vidfeat_store::get_to_file(url, &part, cfg.max_bytes).map_err(|e| {
        let kind = match e.kind {
            "not_found" => "not_found",
            "forbidden" => "forbidden",
            "too_large" => "too_large",
            _ => "download_failed",
        };
        err(kind, e.message)
    })?;
    let (bytes, sha256) = sha256_file(&part).map_err(|e| err("download_failed", format!("cache: {e}")))?;
    let path = cfg.dir.join(&key);
    std::fs::rename(&part, &path).map_err(|e| err("download_failed", format!("cache: {e}")))?;
    let rec = Record {
        url: url.into(),
        final_url: url.into(),
        bytes,
        sha256: sha256.clone(),
        etag: meta.etag,
        fetched_at: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        ..Default::default()
    };
    write_json(&cfg.dir.join(format!("{key}.json")), &rec).map_err(|e| err("download_failed", format!("cache: {e}")))?;
    Ok(Fetched { path, bytes, sha256, from_cache: false, requests: 1 })
}

/// GET with redirects followed by hand (at most 5), each hop checked to stay in http(s).
/// Inner `Err`: an HTTP error status and its text.
fn get_following(agent: &ureq::Agent, guard: &Guard, url: &str, headers: &[(&str, String)]) -> Result<Result<ureq::Response, (u16, String)>, Attempt> {
    let mut current = url::Url::parse(url).map_err(|e| attempt_err("download_failed", format!("{url}: {e}"), false))?;
    for _ in 0..=5 {
        if !matches!(current.scheme(), "http" | "https") || current.host_str().is_none() {
            return Err(attempt_err("forbidden_protocol", format!("{url}: redirected out of http(s), to {current}"), false));
        }
        let mut req = agent.request_url("GET", &current);
        for (k, v) in headers {
            req = req.set(k, v);
        }
        match req.call() {
            Ok(r) if (300..400).contains(&r.status()) => {
                let Some(loc) = r.header("Location") else {
                    return Err(attempt_err("download_failed", format!("{url}: HTTP {} without a Location", r.status()), false));
                };
                current = current.join(loc).map_err(|e| attempt_err("download_failed", format!("{url}: bad redirect `{loc}`: {e}"), false))?;
            }
            Ok(r) => return Ok(Ok(r)),
            Err(ureq::Error::Status(code, r)) => return Ok(Err((code, r.status_text().to_string()))),
            Err(ureq::Error::Transport(t)) => {
                if let Some(r) = guard.take_refusal() {
                    let hop = if current.as_str() == url { String::new() } else { format!(" (redirected to {current})") };
                    return Err(attempt_err(
                        "forbidden_address",
                        format!("{url}{hop}: {r}; sources may not reach the machine, its cloud's metadata service or private networks (--allow-private-addresses allows it)"),
                        false,
                    ));
                }
                return Err(match t.kind() {
                    ureq::ErrorKind::UnknownScheme => attempt_err("forbidden_protocol", format!("{url}: {t}"), false),
                    ureq::ErrorKind::InvalidUrl => attempt_err("download_failed", format!("{url}: {t}"), false),
                    ureq::ErrorKind::Io if is_timeout(&t.to_string()) => attempt_err("timeout", format!("{url}: {t}"), true),
                    _ => attempt_err("download_failed", format!("{url}: {t}"), true),
                });
            }
        }
    }
    Err(attempt_err("download_failed", format!("{url}: more than 5 redirects"), false))
}

fn is_timeout(msg: &str) -> bool {
    let m = msg.to_lowercase();
    m.contains("timed out") || m.contains("timeout") || m.contains("would block")
}

/// Single-quotes `s` for `sh`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs `--fetch-cmd` for an id-only source; the command must create `{out}`.
pub fn fetch_id(id: &str, cfg: &FetchConfig) -> Result<Fetched, FetchError> {
    let Some(tpl) = &cfg.fetch_cmd else {
        return Err(err("download_failed", format!("`{id}` has no source and no --fetch-cmd was given")));
    };
    std::fs::create_dir_all(&cfg.dir).map_err(|e| err("download_failed", format!("cache {}: {e}", cfg.dir.display())))?;
    let key = id_key(tpl, id);
    if let Some(f) = cached(&cfg.dir, &key) {
        return Ok(f);
    }
    let out = cfg.dir.join(format!("{key}.mp4"));
    let _ = std::fs::remove_file(&out);
    let line = tpl.replace("{id}", &shell_quote(id)).replace("{out}", &shell_quote(&out.display().to_string()));
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(&line)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| err("download_failed", format!("--fetch-cmd could not start: {e}")))?;
    // Drain stderr on a thread so a chatty command cannot block on a full pipe.
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + cfg.fetch_cmd_timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                // The whole process group: yt-dlp starts ffmpeg children.
                kill_group(child.id());
                let _ = child.wait();
                return Err(err("timeout", format!("--fetch-cmd for `{id}` ran over {} s", cfg.fetch_cmd_timeout.as_secs())));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(err("download_failed", format!("--fetch-cmd: {e}"))),
        }
    };
    let stderr = reader.join().unwrap_or_default();
    let tail: String = stderr.lines().rev().take(3).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join(" | ");
    if !status.success() {
        return Err(err("download_failed", format!("--fetch-cmd for `{id}` exited with {status}: {tail}")));
    }
    let (bytes, sha256) = sha256_file(&out).map_err(|_| err("download_failed", format!("--fetch-cmd for `{id}` succeeded but wrote no {{out}} file")))?;
    if bytes > cfg.max_bytes {
        let _ = std::fs::remove_file(&out);
        return Err(err("too_large", format!("--fetch-cmd output for `{id}` is {bytes} bytes, over the cap")));
    }
    let path = cfg.dir.join(&key);
    std::fs::rename(&out, &path).map_err(|e| err("download_failed", format!("cache: {e}")))?;
    let rec = Record { url: format!("fetch-cmd:{id}"), bytes, sha256: sha256.clone(), ..Default::default() };
    write_json(&cfg.dir.join(format!("{key}.json")), &rec).map_err(|e| err("download_failed", format!("cache: {e}")))?;
    Ok(Fetched { path, bytes, sha256, from_cache: false, requests: 0 })
}

fn kill_group(pid: u32) {
    // The child leads its own process group (process_group(0)); a pid of 0 or 1 would mean
    // our own group or every process, so refuse those.
    if pid > 1 {
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
        }
    }
}
