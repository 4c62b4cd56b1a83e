//! Object storage URLs, `s3://bucket/key` and `gs://bucket/key`, behind a small blocking API.
//!
//! The Apache Arrow project's `object_store` does the protocol work (request signing,
//! credentials from the standard places, retries with backoff, multipart uploads). It is
//! async; its runtime lives here and nowhere else: one small multi-threaded tokio runtime,
//! started on first use, that every call blocks on. Callers see plain functions and
//! [`StoreError`]s with a `kind`.
//!
//! Credentials and endpoints come from the environment, as the clouds' own tools read them:
//! * S3 and S3-compatible stores: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//!   `AWS_SESSION_TOKEN`, `AWS_REGION` (default us-east-1), `AWS_ENDPOINT_URL` (MinIO,
//!   SeaweedFS, Ceph, R2...), `AWS_ALLOW_HTTP=true` for a plain-http endpoint; without keys,
//!   the web-identity token (EKS pod roles) or the instance's role.
//! * GCS: `GOOGLE_APPLICATION_CREDENTIALS` (a service-account or user credentials file),
//!   `GOOGLE_SERVICE_ACCOUNT` (a service-account file), else the metadata server (workload
//!   identity). A service-account file may carry `gcs_base_url` and `disable_oauth` (how
//!   fake-gcs-server is reached in the tests).
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};

/// Uploads above this size go in parts (a part size S3 and GCS both accept).
pub const MULTIPART_ABOVE: u64 = 8 << 20;
const PART_SIZE: usize = 8 << 20;

/// Whether `s` names an object (`s3://` or `gs://`) rather than a local path or a web URL.
pub fn is_url(s: &str) -> bool {
    s.starts_with("s3://") || s.starts_with("gs://")
}

/// [`is_url`] for a path argument.
pub fn is_url_path(p: &Path) -> bool {
    p.to_str().is_some_and(is_url)
}

/// The URL a path argument names, when it names an object or a bucket folder.
pub fn url_of(p: &Path) -> Option<&str> {
    p.to_str().filter(|s| is_url(s))
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    /// `not_found`, `forbidden` (access denied or bad credentials), `already_exists`,
    /// `not_supported`, `too_large`, `invalid_url`, `io` (a local file), `storage_error`
    /// (anything else, after the client's retries).
    pub kind: &'static str,
    pub message: String,
}

fn err(kind: &'static str, message: impl Into<String>) -> StoreError {
    StoreError { kind, message: message.into() }
}

/// An object's size and ETag.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    pub size: u64,
    pub etag: Option<String>,
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("vidfeat-store")
            .enable_all()
            .build()
            .expect("a tokio runtime for object storage")
    })
}

/// One parsed object URL: its bucket's store and the key.
struct Target {
    store: Arc<dyn ObjectStore>,
    path: ObjPath,
    url: String,
}

/// Splits `s3://bucket/key` into (scheme, bucket, key path).
fn split(url: &str) -> Result<(&'static str, String, ObjPath), StoreError> {
    let u = url::Url::parse(url).map_err(|e| err("invalid_url", format!("{url}: {e}")))?;
    let scheme = match u.scheme() {
        "s3" => "s3",
        "gs" => "gs",
        s => return Err(err("invalid_url", format!("{url}: `{s}://` is not an object store (s3:// or gs://)"))),
    };
    let bucket = u.host_str().filter(|b| !b.is_empty()).ok_or_else(|| err("invalid_url", format!("{url}: no bucket")))?;
    let path = ObjPath::from_url_path(u.path()).map_err(|e| err("invalid_url", format!("{url}: {e}")))?;
    Ok((scheme, bucket.to_string(), path))
}

fn target(url: &str) -> Result<Target, StoreError> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    let (scheme, bucket, path) = split(url)?;
    let key = format!("{scheme}://{bucket}");
    // TLS through rustls with ring (no aws-lc C build): the process-wide provider, set before
    // the first client is built (an error only means one is set already).
    static PROVIDER: OnceLock<()> = OnceLock::new();
    PROVIDER.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let mut stores = STORES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    let store = match stores.get(&key) {
        Some(s) => s.clone(),
        None => {
            let s = build(scheme, &bucket).map_err(|e| err("forbidden", format!("{key}: cannot set up the {scheme} client: {e}")))?;
            stores.insert(key, s.clone());
            s
        }
    };
    Ok(Target { store, path, url: url.to_string() })
}

fn retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 10,
        retry_timeout: Duration::from_secs(120),
        backoff: object_store::BackoffConfig { init_backoff: Duration::from_millis(200), max_backoff: Duration::from_secs(10), base: 2.0 },
    }
}

fn build(scheme: &str, bucket: &str) -> object_store::Result<Arc<dyn ObjectStore>> {
    Ok(match scheme {
        "s3" => {
            let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket).with_retry(retry());
            if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
                b = b.with_region("us-east-1");
            }
            Arc::new(b.build()?)
        }
        _ => Arc::new(object_store::gcp::GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket).with_retry(retry()).build()?),
    })
}

fn map(url: &str, e: object_store::Error) -> StoreError {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => err("not_found", format!("{url}: no such object")),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => err("forbidden", format!("{url}: access denied ({e})")),
        E::AlreadyExists { .. } | E::Precondition { .. } => err("already_exists", format!("{url}: already exists")),
        E::NotImplemented { .. } | E::NotSupported { .. } => err("not_supported", format!("{url}: {e}")),
        e => {
            // Some stores answer 403 in a form the client does not classify.
            let m = e.to_string();
            if m.contains("403") || m.contains("AccessDenied") || m.contains("InvalidAccessKeyId") || m.contains("SignatureDoesNotMatch") {
                err("forbidden", format!("{url}: access denied ({m})"))
            } else if m.contains("NoSuchBucket") {
                // A listing of a bucket that is not there: say so, not the server's XML.
                let bucket = url.split("://").nth(1).and_then(|r| r.split('/').next()).unwrap_or("");
                err("not_found", format!("{url}: the bucket {bucket} does not exist (vidfeat does not create buckets)"))
            } else {
                err("storage_error", format!("{url}: {m}"))
            }
        }
    }
}

fn io(what: &Path, e: std::io::Error) -> StoreError {
    err("io", format!("{}: {e}", what.display()))
}

/// Size and ETag of an object.
pub fn head(url: &str) -> Result<Meta, StoreError> {
    let t = target(url)?;
    let m = runtime().block_on(t.store.head(&t.path)).map_err(|e| map(url, e))?;
    Ok(Meta { size: m.size, etag: m.e_tag })
}

/// Streams an object into `dest` (created or truncated), refusing one over `max_bytes` (kind
/// `too_large`, `dest` removed). The caller renames `dest` into place when it is complete.
pub fn get_to_file(url: &str, dest: &Path, max_bytes: u64) -> Result<Meta, StoreError> {
    let t = target(url)?;
    let r = runtime().block_on(async {
        let got = t.store.get(&t.path).await.map_err(|e| map(&t.url, e))?;
        if got.meta.size > max_bytes {
            return Err(err("too_large", format!("{url} is {} bytes, over the {max_bytes} byte cap", got.meta.size)));
        }
        let etag = got.meta.e_tag.clone();
        let mut f = std::fs::File::create(dest).map_err(|e| io(dest, e))?;
        let mut n = 0u64;
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let c = chunk.map_err(|e| map(&t.url, e))?;
            n += c.len() as u64;
            if n > max_bytes {
                return Err(err("too_large", format!("{url} is over the {max_bytes} byte cap")));
            }
            f.write_all(&c).map_err(|e| io(dest, e))?;
        }
        f.sync_all().map_err(|e| io(dest, e))?;
        Ok(Meta { size: n, etag })
    });
    if r.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    r
}

/// A whole object in memory (lists, settings, markers), at most `max_bytes`.
pub fn read(url: &str, max_bytes: u64) -> Result<Vec<u8>, StoreError> {
    let t = target(url)?;
    runtime().block_on(async {
        let got = t.store.get(&t.path).await.map_err(|e| map(&t.url, e))?;
        if got.meta.size > max_bytes {
            return Err(err("too_large", format!("{url} is {} bytes, over the {max_bytes} byte cap", got.meta.size)));
        }
        Ok(got.bytes().await.map_err(|e| map(&t.url, e))?.to_vec())
    })
}

/// Writes `bytes` as the object `url` (replacing it); its ETag. The object appears whole or not
/// at all.
pub fn put(url: &str, bytes: Vec<u8>) -> Result<Option<String>, StoreError> {
    let t = target(url)?;
    let r = runtime().block_on(t.store.put(&t.path, PutPayload::from(bytes))).map_err(|e| map(url, e))?;
    Ok(r.e_tag)
}

/// Creates the object only if no object has that name (a conditional write: S3's and GCS's
/// create-if-absent). `Ok(None)` when one exists, else its ETag; kind `not_supported` where
/// the store cannot.
pub fn create(url: &str, bytes: Vec<u8>) -> Result<Option<Option<String>>, StoreError> {
    conditional(url, bytes, PutMode::Create)
}

/// Replaces the object only if it is still the version with `etag` (compare-and-swap).
/// `Ok(None)` when it changed (or is gone), else the new ETag.
pub fn replace_if(url: &str, bytes: Vec<u8>, etag: &str) -> Result<Option<Option<String>>, StoreError> {
    conditional(url, bytes, PutMode::Update(object_store::UpdateVersion { e_tag: Some(etag.to_string()), version: None }))
}

fn conditional(url: &str, bytes: Vec<u8>, mode: PutMode) -> Result<Option<Option<String>>, StoreError> {
    let t = target(url)?;
    let opts = PutOptions { mode, ..Default::default() };
    match runtime().block_on(t.store.put_opts(&t.path, PutPayload::from(bytes), opts)) {
        Ok(r) => Ok(Some(r.e_tag)),
        Err(e) => match map(url, e) {
            e if e.kind == "already_exists" || e.kind == "not_found" => Ok(None),
            e => Err(e),
        },
    }
}

/// A whole object and its ETag (at most `max_bytes`).
pub fn read_versioned(url: &str, max_bytes: u64) -> Result<(Vec<u8>, Meta), StoreError> {
    let t = target(url)?;
    runtime().block_on(async {
        let got = t.store.get(&t.path).await.map_err(|e| map(&t.url, e))?;
        if got.meta.size > max_bytes {
            return Err(err("too_large", format!("{url} is {} bytes, over the {max_bytes} byte cap", got.meta.size)));
        }
        let meta = Meta { size: got.meta.size, etag: got.meta.e_tag.clone() };
        Ok((got.bytes().await.map_err(|e| map(&t.url, e))?.to_vec(), meta))
    })
}

/// Whether the store honours conditional writes (create-if-absent and compare-and-swap), tried
/// on a probe object under `prefix_url`: a store that ignored them would let two writers both
/// win. Leaves nothing behind.
pub fn conditional_writes_work(prefix_url: &str) -> Result<bool, StoreError> {
    let probe = format!("{}/.vidfeat-probe-{}-{}", prefix_url.trim_end_matches('/'), std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    let first = match create(&probe, b"1".to_vec()) {
        Ok(r) => r,
        Err(e) if e.kind == "not_supported" => return Ok(false),
        Err(e) => return Err(e),
    };
    let ok = (|| -> Result<bool, StoreError> {
        let Some(Some(etag)) = first else { return Ok(false) };
        if create(&probe, b"2".to_vec())?.is_some() {
            return Ok(false);
        }
        let wrong = format!("\"{}\"", "0".repeat(32));
        if replace_if(&probe, b"3".to_vec(), &wrong)?.is_some() {
            return Ok(false);
        }
        Ok(replace_if(&probe, b"4".to_vec(), &etag)?.is_some())
    })();
    let _ = delete(&probe);
    ok.or_else(|e| if e.kind == "not_supported" { Ok(false) } else { Err(e) })
}

/// Uploads a local file as the object `url`: one request up to [`MULTIPART_ABOVE`], else a
/// multipart upload (aborted on failure). Either way the object appears only when complete.
/// Returns its ETag.
pub fn upload(local: &Path, url: &str) -> Result<Option<String>, StoreError> {
    let len = std::fs::metadata(local).map_err(|e| io(local, e))?.len();
    if len <= MULTIPART_ABOVE {
        return put(url, std::fs::read(local).map_err(|e| io(local, e))?);
    }
    let t = target(url)?;
    runtime().block_on(async {
        let up = t.store.put_multipart(&t.path).await.map_err(|e| map(url, e))?;
        let mut w = WriteMultipart::new_with_chunk_size(up, PART_SIZE);
        let mut f = std::fs::File::open(local).map_err(|e| io(local, e))?;
        let mut buf = vec![0u8; PART_SIZE];
        loop {
            let k = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e) => {
                    let _ = w.abort().await;
                    return Err(io(local, e));
                }
            };
            // At most two parts in flight.
            if let Err(e) = w.wait_for_capacity(2).await {
                return Err(map(url, e));
            }
            w.write(&buf[..k]);
        }
        let r = w.finish().await.map_err(|e| map(url, e))?;
        Ok(r.e_tag)
    })
}

/// The objects under `prefix_url` (a "folder": `s3://b/dir/`; a trailing `/` is implied), as
/// (full URL, size and ETag), sorted by name.
pub fn list(prefix_url: &str) -> Result<Vec<(String, Meta)>, StoreError> {
    let t = target(prefix_url)?;
    let (scheme, bucket, _) = split(prefix_url)?;
    let prefix = if t.path.as_ref().is_empty() { None } else { Some(&t.path) };
    let mut out: Vec<(String, Meta)> = runtime().block_on(async {
        let mut s = t.store.list(prefix);
        let mut out = vec![];
        while let Some(m) = s.next().await {
            let m = m.map_err(|e| map(prefix_url, e))?;
            out.push((format!("{scheme}://{bucket}/{}", m.location), Meta { size: m.size, etag: m.e_tag }));
        }
        Ok::<_, StoreError>(out)
    })?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Deletes an object (no error when it is already gone).
pub fn delete(url: &str) -> Result<(), StoreError> {
    let t = target(url)?;
    match runtime().block_on(t.store.delete(&t.path)) {
        Ok(()) => Ok(()),
        Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(map(url, e)),
    }
}

/// `base` joined with a relative reference, as a browser would (`..` resolved), for sources
/// written relative to a list that lives in a bucket.
pub fn join(base: &str, rel: &str) -> Result<String, StoreError> {
    let u = url::Url::parse(base).map_err(|e| err("invalid_url", format!("{base}: {e}")))?;
    Ok(u.join(rel).map_err(|e| err("invalid_url", format!("{rel} against {base}: {e}")))?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_bucket_and_key() {
        let (s, b, p) = split("s3://my-bucket/videos/a%20b.mp4").unwrap();
        assert_eq!((s, b.as_str(), p.as_ref()), ("s3", "my-bucket", "videos/a b.mp4"));
        let (s, b, p) = split("gs://bkt").unwrap();
        assert_eq!((s, b.as_str(), p.as_ref()), ("gs", "bkt", ""));
        assert_eq!(split("s3:///key").unwrap_err().kind, "invalid_url");
        assert_eq!(split("http://x/y").unwrap_err().kind, "invalid_url");
        assert!(is_url("s3://b/k") && is_url("gs://b/k") && !is_url("https://b/k") && !is_url("/s3://x"));
    }

    #[test]
    fn relative_sources_join_against_the_list() {
        assert_eq!(join("s3://b/lists/l.csv", "v/a.mp4").unwrap(), "s3://b/lists/v/a.mp4");
        assert_eq!(join("s3://b/lists/l.csv", "../videos/a.mp4").unwrap(), "s3://b/videos/a.mp4");
        assert_eq!(join("gs://b/l.csv", "/abs/a.mp4").unwrap(), "gs://b/abs/a.mp4");
    }
}
