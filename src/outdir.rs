//! The one writer of an output folder, and what in it vidfeat wrote.
//!
//! Every file vidfeat puts in an output folder goes through [`OutDir`]: written under a
//! temporary name, fsynced, renamed into place, the folder fsynced (`vidfeat_export::atomic`),
//! so a failure (a full disk, a permission, a kill) leaves the old file or the new one, never a
//! fragment. Errors name the file, the step and what to do ("writing OUT/plan.jsonl: No space
//! left on device (os error 28) (the file system holding OUT is full: ...)").
//!
//! What vidfeat wrote is known from its own records, never guessed from where a file lies
//! ([`owned`]): the names only vidfeat writes at the top of a dataset folder (`dataset.json`,
//! `plan.json`, ...), the PCAs `dataset.json` or `plan.json` record as fitted there, the shards
//! `plan.json`, the done markers and the journals name (and their markers, journals, leases
//! and temporary files), done markers, leases, journals and event logs that are vidfeat's by
//! their content. `--overwrite`, the removal of shards that left the plan and the bucket
//! mirror delete only those; a user's `video/holiday.mp4`, `events/notes.txt` or a list that
//! lives in the folder stays, and is named as left.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Result;

pub use vidfeat_export::atomic::{sync_dir, At, AtomicFile, FileError};

/// Names only vidfeat writes at the top of a dataset folder.
pub const TOP_LEVEL: &[&str] = &[
    crate::pipeline::dataset::DATASET_FILE,
    "summary.json",
    "plan.json",
    "plan.jsonl",
    "plan-summary.json",
    "failures.jsonl",
    "vocabulary.csv",
    "predictions.jsonl",
];

/// The folders of a dataset folder that hold shard files and their records, and the event logs.
pub const SHARD_DIRS: &[&str] = &["frame", "video", "done", "journal", "leases"];

/// Writes `bytes` as `path`, whole or not at all (see the module).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(vidfeat_export::write_atomic(path, bytes)?)
}

/// Removes `path` if it is there; an error names it.
pub fn remove_file(path: &Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).at("removing", path).map_err(Into::into),
    }
}

/// An output folder: where its files are, written atomically; for a worker of a plan that
/// lives in a bucket, the bucket folder behind its local mirror (each committed shard and
/// file published there as it is done, done-ness and leases asked of the bucket). The worker
/// calls the same methods either way; which place is behind is known here only.
#[derive(Debug, Clone)]
pub struct OutDir {
    root: PathBuf,
    bucket: Option<String>,
}

impl OutDir {
    pub fn new(root: &Path) -> OutDir {
        OutDir { root: root.to_path_buf(), bucket: None }
    }

    /// `root` mirrors the bucket folder `url`, and what is committed goes there at once.
    pub fn mirroring(root: &Path, url: Option<&str>) -> OutDir {
        OutDir { root: root.to_path_buf(), bucket: url.map(|u| u.trim_end_matches('/').to_string()) }
    }

    /// The bucket folder behind the mirror, if any.
    pub fn bucket(&self) -> Option<&str> {
        self.bucket.as_deref()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of `rel` in the folder.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Writes `rel` whole or not at all.
    pub fn write(&self, rel: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.path(rel), bytes)
    }

    /// `rel` written as a stream, in place only once [`AtomicFile::commit`]ted.
    pub fn create(&self, rel: &str) -> Result<AtomicFile> {
        Ok(AtomicFile::create(&self.path(rel))?)
    }

    /// Removes `rel` if it is there.
    pub fn remove(&self, rel: &str) -> Result<bool> {
        remove_file(&self.path(rel))
    }
}

/// What a worker does with its output folder, whatever is behind it.
impl OutDir {
    /// The records a worker reads (plan.json, plan.jsonl, done markers, ...): nothing to do
    /// locally; from a bucket, everything but the shards (other workers' files are not
    /// fetched). `claim`: leases will be taken in the bucket, which must honour conditional
    /// writes.
    pub fn pull_records(&self, claim: bool) -> Result<()> {
        let Some(url) = &self.bucket else { return Ok(()) };
        let shard_file = |rel: &str| rel.starts_with("frame/") || rel.starts_with("video/");
        crate::mirror::pull_where(url, &self.root, &|rel| !shard_file(rel)).map_err(|e| e.context(format!("reading the plan {url}")))?;
        if claim {
            // Leases are objects made with create-if-absent and kept with compare-and-swap: a
            // store that ignores those conditions would let two workers hold one shard.
            anyhow::ensure!(
                vidfeat_store::conditional_writes_work(&format!("{url}/leases")).map_err(anyhow::Error::msg)?,
                "--claim on {url}: this store does not honour conditional writes (create-if-absent, compare-and-swap), which shard leases need; give each worker a static slot instead (--worker-index I --num-workers N, or the Slurm / Kubernetes Indexed Job variables)"
            );
        }
        Ok(())
    }

    /// The shard's done marker if the shard is current: written under the plan's key, beside
    /// shard files (or objects, asked of the bucket afresh) of the sizes it records.
    pub fn done(&self, plan: &crate::pipeline::plan::PlanSettings, name: &str) -> Option<crate::pipeline::worker::DoneMarker> {
        match &self.bucket {
            Some(url) => crate::pipeline::worker::done_in_bucket_now(url, plan, name),
            None => crate::pipeline::worker::read_done(&self.root, name, plan.key(name)),
        }
    }

    /// Tries to take shard `name`'s lease: a file created exclusively, an object created if
    /// absent (claimed shards on a bucket), or none (a static slot on a bucket: its shards are
    /// its own by construction, and a worker restarted elsewhere must not wait for its old one).
    pub fn lease(&self, name: &str, owner: &str, ttl: std::time::Duration, claim: bool) -> Result<crate::pipeline::worker::TryLease> {
        use crate::pipeline::worker::{Lease, TryLease};
        let stem = name.trim_end_matches(".tfrecord");
        match (&self.bucket, claim) {
            (Some(_), false) => Ok(TryLease::Got(Lease::unguarded(owner))),
            (Some(url), true) => Lease::try_acquire_object(&format!("{url}/leases/{stem}.lease"), owner, ttl),
            (None, _) => Lease::try_acquire(&crate::pipeline::dataset::shard_paths(&self.root, name)?.lease, owner, ttl),
        }
    }

    /// Brings a done shard's own files here (a retry rebuilds it from its records).
    pub fn fetch_shard(&self, name: &str) -> Result<()> {
        let Some(url) = &self.bucket else { return Ok(()) };
        let stem = name.trim_end_matches(".tfrecord");
        crate::mirror::pull_where(url, &self.root, &|rel| rel == format!("frame/{name}") || rel == format!("video/{name}") || rel == format!("done/{stem}.json"))?;
        Ok(())
    }

    /// Publishes a committed shard (old marker deleted, frame and video files, new marker last).
    pub fn publish_shard(&self, name: &str) -> Result<()> {
        let Some(url) = &self.bucket else { return Ok(()) };
        crate::mirror::push_shard(url, &self.root, name.trim_end_matches(".tfrecord"))
    }

    /// Publishes one written file as it is (an event log).
    pub fn publish(&self, rel: &str) -> Result<()> {
        match &self.bucket {
            Some(url) if self.path(rel).exists() => crate::mirror::push_file(url, &self.root, rel),
            _ => Ok(()),
        }
    }

    /// When every shard of `plan` is done (as [`OutDir::done`] sees them): `summary.json` (and
    /// predictions) written, and published. Whether the plan is complete.
    pub fn summary_if_complete(&self, plan: &crate::pipeline::plan::PlanSettings) -> Result<bool> {
        use crate::pipeline::worker::{done_in_bucket, write_summary_with};
        let Some(url) = &self.bucket else { return write_summary_with(&self.root, plan, &|name| self.done(plan, name)) };
        // Predictions are read from every video shard (one small record per video).
        crate::mirror::pull_where(url, &self.root, &|rel| rel.starts_with("done/") || (plan.predict > 0 && rel.starts_with("video/")))?;
        let sizes = crate::mirror::remote_sizes(url)?;
        if !write_summary_with(&self.root, plan, &|name| done_in_bucket(&self.root, plan, &sizes, name))? {
            return Ok(false);
        }
        if plan.predict > 0 {
            crate::mirror::push_file(url, &self.root, "predictions.jsonl")?;
        }
        crate::mirror::push_file(url, &self.root, "summary.json")?;
        Ok(true)
    }
}

/// What in a dataset folder vidfeat wrote (relative paths), as its records show, and the
/// shards they name.
#[derive(Debug, Default, Clone)]
pub struct Owned {
    pub files: BTreeSet<String>,
    /// Shard file names (`train-00000-of-00001.tfrecord`) the records name.
    pub shards: BTreeSet<String>,
}

impl Owned {
    pub fn contains(&self, rel: &str) -> bool {
        self.files.contains(rel)
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn head(path: &Path, n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut b = vec![0u8; n];
    let k = std::fs::File::open(path).and_then(|mut f| f.read(&mut b)).unwrap_or(0);
    b.truncate(k);
    b
}

/// An event log vidfeat wrote: its first line is a `{"t": ..., "started": true}` line.
fn is_event_log(path: &Path) -> bool {
    let b = head(path, 512);
    let first = b.split(|&c| c == b'\n').next().unwrap_or_default();
    serde_json::from_slice::<serde_json::Value>(first).is_ok_and(|v| v["started"] == true && v["t"].is_number())
}

/// What vidfeat wrote in `root` (a dataset folder made by run, plan + work or extract).
pub fn owned(root: &Path) -> Owned {
    use crate::pipeline::dataset::{fitted_pca_file, read_identity, shard_paths};
    let mut o = Owned::default();
    let top = names_in(root);
    let mut mine: BTreeSet<String> = TOP_LEVEL.iter().map(|s| s.to_string()).collect();
    // PCAs fitted here, as dataset.json or plan.json record them.
    let identity = read_identity(root);
    if let Some(i) = &identity {
        if i.pca.fitted_here {
            mine.insert(fitted_pca_file("rgb"));
        }
        for e in i.extra_models.iter().filter(|e| e.pca.fitted_here) {
            mine.insert(fitted_pca_file(&e.feature));
        }
    }
    let plan = crate::pipeline::plan::PlanSettings::load(root).ok();
    if let Some(p) = &plan {
        for (feature, m) in p.models() {
            let f = fitted_pca_file(feature);
            let here = Path::new(&m.pca);
            if here.file_name().is_some_and(|n| n.to_string_lossy() == f) && (here.parent().is_some_and(|d| same_dir(d, root)) || m.pca.ends_with(&format!("/{f}"))) {
                mine.insert(f);
            }
        }
        o.shards.extend(p.shard_keys.keys().cloned());
    }
    for n in &top {
        if mine.contains(n) || mine.iter().any(|m| vidfeat_export::atomic::is_temp_of(n, m)) || n == ".failures.jsonl.tmp" {
            o.files.insert(n.clone());
        }
    }
    // Shards named by done markers (vidfeat's by their content), journals and leases.
    for n in names_in(&root.join("done")) {
        let p = root.join("done").join(&n);
        if let Some(m) = std::fs::read(&p).ok().and_then(|b| serde_json::from_slice::<crate::pipeline::worker::DoneMarker>(&b).ok()) {
            o.shards.insert(m.shard);
            o.files.insert(format!("done/{n}"));
        }
    }
    for n in names_in(&root.join("journal")) {
        let magic = head(&root.join("journal").join(&n), 4);
        if let (Some(stem), true) = (n.strip_suffix(".journal"), magic.starts_with(b"VFJ")) {
            o.shards.insert(format!("{stem}.tfrecord"));
            o.files.insert(format!("journal/{n}"));
        }
    }
    for n in names_in(&root.join("leases")) {
        let b = std::fs::read(root.join("leases").join(&n)).unwrap_or_default();
        if serde_json::from_slice::<serde_json::Value>(&b).is_ok_and(|v| v["owner"].is_string() && v["pid"].is_number()) {
            o.files.insert(format!("leases/{n}"));
        }
    }
    // An extract folder: the shards its summary lists, and names of vidfeat's exact shard form.
    if identity.as_ref().is_some_and(|i| i.layout == "extract") {
        for level in ["frame", "video"] {
            for n in names_in(&root.join(level)) {
                if is_shard_name(&n) {
                    o.shards.insert(n);
                }
            }
        }
    }
    for name in o.shards.clone() {
        let Ok(p) = shard_paths(root, &name) else { continue };
        for (level, path) in [("frame", &p.frame), ("video", &p.video), ("done", &p.done), ("journal", &p.journal), ("leases", &p.lease)] {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            for n in names_in(&root.join(level)) {
                let stem = file.trim_end_matches(".lease");
                let aside = level == "leases" && n.strip_prefix(&format!("{stem}.stale.")).is_some_and(|pid| pid.bytes().all(|b| b.is_ascii_digit()));
                if n == file || vidfeat_export::atomic::is_temp_of(&n, &file) || aside {
                    o.files.insert(format!("{level}/{n}"));
                }
            }
        }
    }
    for n in names_in(&root.join("events")) {
        if n.ends_with(".jsonl") && is_event_log(&root.join("events").join(&n)) {
            o.files.insert(format!("events/{n}"));
        }
    }
    o
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// `{split}-{NNNNN}-of-{NNNNN}.tfrecord`, the shard names vidfeat makes.
pub fn is_shard_name(n: &str) -> bool {
    let Some(stem) = n.strip_suffix(".tfrecord") else { return false };
    let Some((head, count)) = stem.rsplit_once("-of-") else { return false };
    let Some((split, index)) = head.rsplit_once('-') else { return false };
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    digits(index) && digits(count) && vidfeat_ingest::check_split(split).is_ok()
}

/// Every file under `root` that is not in `owned` (the download cache left out: it holds
/// content, kept for any dataset), relative, sorted.
pub fn not_owned(root: &Path, owned: &Owned) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(root.join(&rel)) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let r = rel.join(&name);
            let rs = r.to_string_lossy().into_owned();
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                if !(rel.as_os_str().is_empty() && name == "downloads") {
                    stack.push(r);
                }
            } else if !owned.contains(&rs) && !(rel.as_os_str().is_empty() && name == ".vidfeat-mirror.json") {
                out.push(rs);
            }
        }
    }
    out.sort();
    out
}

/// The order files of a dataset are removed in: its identity first (a folder cut short in the
/// middle claims no dataset), then what describes the whole, the PCAs, shard files, journals,
/// leases, event logs, the rest, and the records that name shards last (so a removal cut short
/// still knows what is vidfeat's).
fn removal_rank(rel: &str) -> u8 {
    match rel {
        crate::pipeline::dataset::DATASET_FILE => 0,
        "summary.json" | "predictions.jsonl" => 1,
        r if r.ends_with(".npz") => 2,
        r if r.starts_with("frame/") || r.starts_with("video/") => 3,
        r if r.starts_with("done/") => 6,
        "plan.json" => 7,
        _ => 4,
    }
}

/// Removes every file vidfeat wrote in `root` (see [`owned`]), in a safe order, and the
/// folders it made when they are left empty. Returns the files left (not vidfeat's).
pub fn remove_owned(root: &Path) -> Result<Vec<String>> {
    let o = owned(root);
    let mut files: Vec<&String> = o.files.iter().collect();
    files.sort_by_key(|r| (removal_rank(r), r.to_string()));
    for rel in files {
        remove_file(&root.join(rel))?;
        if rel == crate::pipeline::dataset::DATASET_FILE {
            sync_dir(root);
        }
    }
    for d in SHARD_DIRS.iter().chain(&["events"]) {
        let _ = std::fs::remove_dir(root.join(d));
    }
    sync_dir(root);
    Ok(not_owned(root, &Owned::default()))
}

/// "3 files vidfeat did not write were left: a, b, c" (up to 8 named), or None.
pub fn describe_left(root: &Path, left: &[String]) -> Option<String> {
    if left.is_empty() {
        return None;
    }
    let shown: Vec<&str> = left.iter().take(8).map(String::as_str).collect();
    let more = if left.len() > shown.len() { format!(" and {} more", left.len() - shown.len()) } else { String::new() };
    Some(format!(
        "{} in {} that vidfeat did not write {} left as {}: {}{more}",
        crate::telemetry::count(left.len() as u64, "file"),
        root.display(),
        if left.len() == 1 { "was" } else { "were" },
        if left.len() == 1 { "it was" } else { "they were" },
        shown.join(", ")
    ))
}

/// A file vidfeat is about to write at `rel` that is already there and is not vidfeat's:
/// refused rather than replaced.
pub fn refuse_foreign(root: &Path, owned: &Owned, rel: &str, what_to_do: &str) -> Result<()> {
    let p = root.join(rel);
    if std::fs::symlink_metadata(&p).is_ok() && !owned.contains(rel) {
        anyhow::bail!("{} is already there and vidfeat did not write it (no record of this folder names it), so it is not replaced: {what_to_do}", p.display());
    }
    Ok(())
}

/// Context for an I/O step on a path, with the hint [`vidfeat_export::atomic::hint`] gives.
pub fn io_at<T>(r: std::io::Result<T>, op: &'static str, path: &Path) -> Result<T> {
    r.at(op, path).map_err(Into::into)
}

/// Creates a folder (and its parents); an error names it.
pub fn create_dir_all(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).at("creating the folder", p).map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_of_vidfeat_form_only() {
        assert!(is_shard_name("train-00003-of-00016.tfrecord"));
        assert!(is_shard_name("val.v2-00000-of-00001.tfrecord"));
        for n in ["train-3-of-16.tfrecord", "holiday.mp4", "x-00000-of-00001.tfrecord.tmp", ".a-00000-of-00001.tfrecord", "-00000-of-00001.tfrecord"] {
            assert!(!is_shard_name(n), "{n}");
        }
    }

    #[test]
    fn only_records_make_a_file_vidfeat_s() {
        let d = tempfile::tempdir().unwrap();
        let w = |rel: &str, body: &[u8]| {
            let p = d.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        };
        w("summary.json", b"{}");
        w("pca.npz", b"a user's");
        w("notes.txt", b"mine");
        w("video/holiday.mp4", b"mine");
        w("events/notes.txt", b"mine");
        w("events/w.jsonl", b"{\"t\":1.5,\"started\":true}\n");
        w("events/other.jsonl", b"{\"mine\":1}\n");
        w("journal/train-00000-of-00001.journal", b"VFJ2....");
        w("journal/x.journal", b"not ours");
        w("frame/train-00000-of-00001.tfrecord", b"x");
        w(&format!("frame/.train-00000-of-00001.tfrecord.{}.tmp", 77), b"x");
        w("frame/train-00001-of-00002.tfrecord", b"not named by any record");
        w("downloads/abc", b"cache");
        let o = owned(d.path());
        let got: Vec<&str> = o.files.iter().map(String::as_str).collect();
        assert_eq!(got, ["events/w.jsonl", "frame/.train-00000-of-00001.tfrecord.77.tmp", "frame/train-00000-of-00001.tfrecord", "journal/train-00000-of-00001.journal", "summary.json"]);
        let left = remove_owned(d.path()).unwrap();
        assert_eq!(left, ["events/notes.txt", "events/other.jsonl", "frame/train-00001-of-00002.tfrecord", "journal/x.journal", "notes.txt", "pca.npz", "video/holiday.mp4"]);
        assert!(d.path().join("downloads/abc").exists());
        let m = describe_left(d.path(), &left).unwrap();
        assert!(m.starts_with("7 files in ") && m.contains("video/holiday.mp4"), "{m}");
    }
}
