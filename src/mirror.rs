//! An output folder that lives in a bucket (`--out s3://bucket/ds`, `gs://...`), worked on
//! through a local mirror in scratch space.
//!
//! The dataset rules (shard keys, done markers, refusal of another dataset, incremental
//! updates, atomic commits, journals) are written for a folder, and they stay written for one:
//! a command given a bucket URL first [`pull`]s the folder's objects into its mirror
//! (`--work-dir`, default a folder under the system's temp dir named after the URL), works on
//! the mirror as on any folder, then [`push`]es what changed. Journals, leases and the download
//! cache stay on local scratch only: a worker that loses its node redoes its unfinished shard.
//!
//! What readers of the bucket can rely on:
//! * every object is whole (one PUT, or a multipart upload that completes or is aborted);
//! * a done marker is never beside a shard it does not describe: a push first deletes the
//!   markers of shards it will replace or remove, then removes objects that left the dataset,
//!   then uploads the dataset's identity and settings, then shards, then their markers, then
//!   the summary; a push cut short leaves shards without markers, which the next run rebuilds
//!   and `verify` reports; a frame cache's `manifest.json` likewise goes first and comes back
//!   last, so a cache in a bucket without one is incomplete, as on disk;
//! * the next run pulls the bucket as the truth: a mirror's files that the bucket no longer
//!   holds are dropped, objects that changed are fetched again.
//!
//! The mirror remembers, per file, the size and modification time it had and the ETag the
//! bucket gave it (`.vidfeat-mirror.json`), so a pull fetches only changed objects and a push
//! uploads only changed files.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::Digest;

const MANIFEST: &str = ".vidfeat-mirror.json";
/// Folders of a dataset folder that stay on local scratch.
const LOCAL_ONLY: [&str; 3] = ["journal", "leases", "downloads"];

/// A folder a command writes (`--out`, `--cache`): a local folder as it is, or a bucket folder
/// worked on through its mirror, pulled by [`Folder::open`] and pushed by [`Folder::publish`].
pub struct Folder {
    pub url: Option<String>,
    /// Where the command works: the folder itself, or the mirror.
    pub local: PathBuf,
}

impl Folder {
    /// `pull`: bring the mirror up to the bucket first (a command that rebuilds the whole
    /// folder, such as a frame cache, need not fetch what it will replace).
    pub fn open(p: &Path, work_dir: Option<&Path>, pull: bool) -> Result<Folder> {
        let Some(url) = vidfeat_store::url_of(p) else { return Ok(Folder { url: None, local: p.to_path_buf() }) };
        let local = scratch(url, work_dir);
        if pull {
            let n = self::pull(url, &local)?;
            tracing::info!("{url}: mirrored in {} ({} fetched)", local.display(), crate::telemetry::count(n as u64, "object"));
        } else {
            std::fs::create_dir_all(&local).with_context(|| format!("scratch folder {}", local.display()))?;
        }
        Ok(Folder { url: Some(url.to_string()), local })
    }

    /// Pushes the mirror to its bucket (nothing for a local folder). Called whatever the
    /// command's outcome: what it committed goes up even when it stopped early.
    pub fn publish(&self) -> Result<()> {
        let Some(url) = &self.url else { return Ok(()) };
        let p = push(url, &self.local).with_context(|| format!("pushing {} to {url}", self.local.display()))?;
        tracing::info!("{url}: {} uploaded ({} bytes), {} deleted", crate::telemetry::count(p.uploaded as u64, "object"), p.bytes, p.deleted);
        Ok(())
    }
}

/// The mirror folder of `url` under `work_dir` (default: `vidfeat-mirror` in the temp dir).
pub fn scratch(url: &str, work_dir: Option<&Path>) -> PathBuf {
    let base = work_dir.map(Path::to_path_buf).unwrap_or_else(|| std::env::temp_dir().join("vidfeat-mirror"));
    let h = hex::encode(&sha2::Sha256::digest(url.trim_end_matches('/').as_bytes())[..8]);
    let tail: String = url.trim_end_matches('/').rsplit('/').next().unwrap_or("out").chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect();
    base.join(format!("{tail}-{h}"))
}

#[derive(Serialize, Deserialize, Default, Clone, PartialEq, Debug)]
struct Entry {
    size: u64,
    mtime_ns: i128,
    etag: Option<String>,
}

fn manifest(local: &Path) -> BTreeMap<String, Entry> {
    std::fs::read(local.join(MANIFEST)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

fn save_manifest(local: &Path, m: &BTreeMap<String, Entry>) -> Result<()> {
    crate::pipeline::write_atomic(&local.join(MANIFEST), &serde_json::to_vec(m)?)
}

fn stat(p: &Path) -> Option<(u64, i128)> {
    let m = std::fs::metadata(p).ok()?;
    let t = m.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos() as i128;
    Some((m.len(), t))
}

fn base(url: &str) -> String {
    url.trim_end_matches('/').to_string()
}

/// The mirror's files that belong in the bucket, relative, sorted: not the local-only folders,
/// not temporary files (dot names), not the manifest.
fn local_files(local: &Path) -> Result<Vec<String>> {
    let mut out = vec![];
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(local.join(&rel)) else { continue };
        for e in rd {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || (rel.as_os_str().is_empty() && LOCAL_ONLY.contains(&name.as_str())) {
                continue;
            }
            let r = rel.join(&name);
            if e.file_type()?.is_dir() {
                stack.push(r);
            } else {
                out.push(r.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn remote_files(url: &str) -> Result<BTreeMap<String, vidfeat_store::Meta>> {
    let b = base(url);
    let found = vidfeat_store::list(&format!("{b}/")).map_err(anyhow::Error::msg)?;
    Ok(found.into_iter().filter_map(|(u, m)| u.strip_prefix(&format!("{b}/")).map(|r| (r.to_string(), m))).collect())
}

/// Brings the mirror up to the bucket: fetches objects that are new or changed, drops files
/// the bucket does not hold (local-only folders kept). Returns how many objects were fetched.
pub fn pull(url: &str, local: &Path) -> Result<usize> {
    pull_where(url, local, &|_| true)
}

/// [`pull`] of the names `keep` accepts only (the others are neither fetched nor dropped): a
/// worker pulls the plan and its own shards, not every shard of the dataset.
pub fn pull_where(url: &str, local: &Path, keep: &dyn Fn(&str) -> bool) -> Result<usize> {
    std::fs::create_dir_all(local).with_context(|| format!("scratch folder {}", local.display()))?;
    let remote = remote_files(url).with_context(|| format!("reading {url}"))?;
    let mut m = manifest(local);
    let mut fetched = 0;
    for (rel, meta) in &remote {
        if rel.split('/').any(|c| c.is_empty() || c == "." || c == "..") || LOCAL_ONLY.contains(&rel.split('/').next().unwrap_or("")) || !keep(rel) {
            continue;
        }
        let p = local.join(rel);
        let same = m.get(rel).is_some_and(|e| e.etag.is_some() && e.etag == meta.etag && e.size == meta.size && stat(&p).is_some_and(|(s, t)| s == e.size && t == e.mtime_ns));
        if same {
            continue;
        }
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)?;
        }
        let tmp = p.with_file_name(format!(".{}.pull", p.file_name().unwrap().to_string_lossy()));
        vidfeat_store::get_to_file(&format!("{}/{rel}", base(url)), &tmp, u64::MAX).map_err(anyhow::Error::msg)?;
        std::fs::rename(&tmp, &p)?;
        let (size, mtime_ns) = stat(&p).unwrap_or_default();
        m.insert(rel.clone(), Entry { size, mtime_ns, etag: meta.etag.clone() });
        fetched += 1;
    }
    for rel in local_files(local)? {
        if !remote.contains_key(&rel) && keep(&rel) {
            std::fs::remove_file(local.join(&rel))?;
            m.remove(&rel);
        }
    }
    m.retain(|k, _| remote.contains_key(k) || !keep(k));
    save_manifest(local, &m)?;
    Ok(fetched)
}

/// Publishes one committed shard of a worker's mirror: its old marker goes first, then the
/// frame and video files, then its new marker (so the marker always describes the shard beside
/// it). Other objects are left alone: workers share the bucket.
pub fn push_shard(url: &str, local: &Path, stem: &str) -> Result<()> {
    let b = base(url);
    let rels = [format!("frame/{stem}.tfrecord"), format!("video/{stem}.tfrecord"), format!("done/{stem}.json")];
    vidfeat_store::delete(&format!("{b}/{}", rels[2])).map_err(anyhow::Error::msg)?;
    let mut m = manifest(local);
    for rel in &rels {
        let p = local.join(rel);
        let (size, mtime_ns) = stat(&p).with_context(|| format!("{} missing", p.display()))?;
        let etag = vidfeat_store::upload(&p, &format!("{b}/{rel}")).map_err(anyhow::Error::msg).with_context(|| format!("uploading {}", p.display()))?;
        m.insert(rel.clone(), Entry { size, mtime_ns, etag });
        crate::pipeline::worker::crash_point("after_upload");
    }
    save_manifest(local, &m)
}

/// Uploads one file of the mirror (a summary, an event log) as it is.
pub fn push_file(url: &str, local: &Path, rel: &str) -> Result<()> {
    let p = local.join(rel);
    vidfeat_store::upload(&p, &format!("{}/{rel}", base(url))).map_err(anyhow::Error::msg).with_context(|| format!("uploading {}", p.display()))?;
    Ok(())
}

/// The size of each object of the bucket folder (relative name -> bytes).
pub fn remote_sizes(url: &str) -> Result<BTreeMap<String, u64>> {
    Ok(remote_files(url)?.into_iter().map(|(k, m)| (k, m.size)).collect())
}

/// What a push did.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Pushed {
    pub uploaded: usize,
    pub deleted: usize,
    pub bytes: u64,
}

/// A frame cache's completeness mark (see `pipeline::cache`): deleted before, and uploaded
/// after, any other change to the cache's objects.
const CACHE_MANIFEST: &str = "manifest.json";

/// Order of uploads: identity and settings, shards, markers, the rest, the summary (or a
/// cache's manifest).
fn rank(rel: &str) -> u8 {
    match rel {
        crate::pipeline::dataset::DATASET_FILE | "plan.json" | "plan.jsonl" | "pca.npz" | "vocabulary.csv" => 0,
        _ if rel.starts_with("frame/") || rel.starts_with("video/") => 1,
        _ if rel.starts_with("done/") => 2,
        "summary.json" | CACHE_MANIFEST => 4,
        _ => 3,
    }
}

/// Makes the bucket hold what the mirror holds (see the module's ordering).
pub fn push(url: &str, local: &Path) -> Result<Pushed> {
    let b = base(url);
    let remote = remote_files(url).with_context(|| format!("reading {url}"))?;
    let mut m = manifest(local);
    let files: std::collections::BTreeSet<String> = local_files(local)?.into_iter().collect();
    let changed: Vec<&String> = files
        .iter()
        .filter(|rel| {
            let e = m.get(*rel);
            let local_same = e.is_some_and(|e| stat(&local.join(rel)).is_some_and(|(s, t)| s == e.size && t == e.mtime_ns));
            let remote_same = e.is_some_and(|e| remote.get(*rel).is_some_and(|r| r.etag.is_some() && r.etag == e.etag));
            !(local_same && remote_same)
        })
        .collect();
    let mut out = Pushed::default();
    let url_of = |rel: &str| format!("{b}/{rel}");
    // 1. Markers of shards about to be replaced or removed.
    let stem = |rel: &str| rel.rsplit('/').next().unwrap_or(rel).trim_end_matches(".json").trim_end_matches(".tfrecord").to_string();
    let touched: std::collections::BTreeSet<String> = changed
        .iter()
        .filter(|r| r.starts_with("frame/") || r.starts_with("video/"))
        .map(|r| stem(r))
        .chain(remote.keys().filter(|r| (r.starts_with("frame/") || r.starts_with("video/")) && !files.contains(*r)).map(|r| stem(r)))
        .collect();
    let stale_manifest = |r: &String| r == CACHE_MANIFEST && (!changed.is_empty() || remote.keys().any(|k| !files.contains(k)));
    // Only objects this mirror knew (pulled or pushed by it) are deleted: one that appeared in
    // the bucket since (another writer's, a user's) is not vidfeat's to remove.
    let known = m.clone();
    for rel in remote.keys().filter(|r| (r.starts_with("done/") && (touched.contains(&stem(r)) || (!files.contains(*r) && known.contains_key(*r)))) || stale_manifest(r)) {
        vidfeat_store::delete(&url_of(rel)).map_err(anyhow::Error::msg)?;
        m.remove(rel);
        out.deleted += 1;
    }
    // 2. Objects that left the dataset.
    for rel in remote.keys().filter(|r| !r.starts_with("done/") && !files.contains(*r) && known.contains_key(*r)) {
        if LOCAL_ONLY.contains(&rel.split('/').next().unwrap_or("")) {
            continue;
        }
        vidfeat_store::delete(&url_of(rel)).map_err(anyhow::Error::msg)?;
        m.remove(rel);
        out.deleted += 1;
    }
    // 3. New and changed files, in order.
    let mut todo = changed.clone();
    todo.sort_by_key(|r| (rank(r), r.to_string()));
    for rel in todo {
        let p = local.join(rel);
        let Some((size, mtime_ns)) = stat(&p) else { continue };
        let etag = vidfeat_store::upload(&p, &url_of(rel)).map_err(anyhow::Error::msg).with_context(|| format!("uploading {}", p.display()))?;
        m.insert(rel.clone(), Entry { size, mtime_ns, etag });
        out.uploaded += 1;
        crate::pipeline::worker::crash_point("after_upload");
        out.bytes += size;
        // Saved as it goes: a push cut short does not upload again what got there.
        if out.uploaded % 16 == 0 {
            save_manifest(local, &m)?;
        }
    }
    m.retain(|k, _| files.contains(k));
    save_manifest(local, &m)?;
    Ok(out)
}

/// An output file argument (or a folder of a few files, such as `pca fit`'s YouTube-8M
/// form) that may name an object: written locally under the temp dir, then uploaded by
/// [`OutFile::publish`], each object whole. Nothing else under the URL's folder is touched.
pub struct OutFile {
    pub url: Option<String>,
    /// Where the command writes.
    pub local: PathBuf,
}

impl OutFile {
    pub fn open(p: &Path) -> Result<OutFile> {
        let Some(url) = vidfeat_store::url_of(p) else { return Ok(OutFile { url: None, local: p.to_path_buf() }) };
        let name = url.trim_end_matches('/').rsplit('/').next().filter(|n| !n.is_empty() && *n != "." && *n != "..").with_context(|| format!("{url}: not an object name"))?;
        let dir = scratch(url, Some(&std::env::temp_dir().join("vidfeat-out")));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("scratch folder {}", dir.display()))?;
        Ok(OutFile { url: Some(url.trim_end_matches('/').to_string()), local: dir.join(name) })
    }

    /// Uploads what was written (a file, or the files of a folder); nothing for a local path.
    pub fn publish(&self) -> Result<()> {
        let Some(url) = &self.url else { return Ok(()) };
        if self.local.is_dir() {
            for rel in local_files(&self.local)? {
                vidfeat_store::upload(&self.local.join(&rel), &format!("{url}/{rel}")).map_err(anyhow::Error::msg).with_context(|| format!("uploading {url}/{rel}"))?;
            }
        } else if self.local.is_file() {
            vidfeat_store::upload(&self.local, url).map_err(anyhow::Error::msg).with_context(|| format!("uploading {url}"))?;
        }
        Ok(())
    }
}

/// A local copy of one object (a model, its sidecar, a PCA), under the temp dir in a folder
/// named after the object's bucket folder (so a model and its sidecar land side by side),
/// fetched again only when the object's ETag changed.
pub fn local_copy(url: &str) -> Result<PathBuf> {
    let (folder, name) = url.rsplit_once('/').filter(|(_, n)| !n.is_empty()).with_context(|| format!("{url}: not an object"))?;
    let h = hex::encode(&sha2::Sha256::digest(folder.as_bytes())[..8]);
    let dir = std::env::temp_dir().join("vidfeat-objects").join(h);
    std::fs::create_dir_all(&dir)?;
    let (p, tag) = (dir.join(name), dir.join(format!(".{name}.etag")));
    let meta = vidfeat_store::head(url).map_err(anyhow::Error::msg)?;
    let have = std::fs::read_to_string(&tag).ok();
    if p.exists() && meta.etag.is_some() && have.as_deref() == meta.etag.as_deref() && stat(&p).is_some_and(|(s, _)| s == meta.size) {
        return Ok(p);
    }
    let tmp = dir.join(format!(".{name}.{}.part", std::process::id()));
    let got = vidfeat_store::get_to_file(url, &tmp, u64::MAX).map_err(anyhow::Error::msg)?;
    std::fs::rename(&tmp, &p)?;
    std::fs::write(&tag, got.etag.unwrap_or_default())?;
    Ok(p)
}

/// `p` itself, or a local copy when it names an object.
pub fn local(p: &Path) -> Result<PathBuf> {
    match vidfeat_store::url_of(p) {
        Some(url) => local_copy(url),
        None => Ok(p.to_path_buf()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_folders_are_stable_and_distinct() {
        let a = scratch("s3://b/ds", None);
        assert_eq!(a, scratch("s3://b/ds/", None));
        assert_ne!(a, scratch("s3://b/ds2", None));
        assert_ne!(a, scratch("gs://b/ds", None));
        assert!(a.file_name().unwrap().to_string_lossy().starts_with("ds-"));
        assert!(scratch("s3://b/x", Some(Path::new("/w"))).starts_with("/w"));
    }

    #[test]
    fn uploads_go_identity_first_summary_last() {
        let mut v = vec!["summary.json", "done/train-00000-of-00001.json", "frame/train-00000-of-00001.tfrecord", "dataset.json", "failures.jsonl", "pca.npz"];
        v.sort_by_key(|r| (rank(r), r.to_string()));
        assert_eq!(v, ["dataset.json", "pca.npz", "frame/train-00000-of-00001.tfrecord", "done/train-00000-of-00001.json", "failures.jsonl", "summary.json"]);
    }

    #[test]
    fn local_only_folders_and_temporary_files_stay_local() {
        let d = tempfile::tempdir().unwrap();
        for f in ["frame/a.tfrecord", "journal/a.journal", "downloads/x", "leases/a.lease", "done/.a.json.1.tmp", "summary.json", ".vidfeat-mirror.json", "events/w.jsonl"] {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        assert_eq!(local_files(d.path()).unwrap(), ["events/w.jsonl", "frame/a.tfrecord", "summary.json"]);
    }
}
