//! The output folder's contract: an output folder holds one dataset, and every shard in it is
//! what the current inputs and settings make.
//!
//! * `OUT/dataset.json` says which dataset the folder holds: the model (and sidecar), the PCA,
//!   the vocabulary and the schema settings, and the layout (`plan`: run/plan/work; `extract`).
//!   A run into a folder that holds another dataset stops before any work and names what
//!   differs ([`check_out`]); `--overwrite` removes the old dataset first, `dataset.json`
//!   before anything else, so a crash never leaves a folder that claims one dataset and holds
//!   two. A PCA fitted by an earlier run in the folder is reused, as a given `--pca` would be.
//! * Files of shards that no longer belong to the plan (a split or shard count that went away)
//!   are removed ([`remove_stale_shards`]).
//! * Names made from data (shard names carry split names from lists) are checked before a file
//!   is created under them ([`shard_paths`]).
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

pub const DATASET_FILE: &str = "dataset.json";
const FORMAT: &str = "vidfeat-dataset";
const VERSION: u32 = 1;

/// What a dataset is made with, beyond its inputs: two folders that differ here hold
/// different datasets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Identity {
    pub format: String,
    pub version: u32,
    /// `plan` (run, plan + work) or `extract`.
    pub layout: String,
    pub model: Named,
    pub sidecar_sha256: String,
    pub pca: PcaIdentity,
    pub vocabulary: Option<Named>,
    pub schema: SchemaIdentity,
    /// Further models whose features the records hold (`--model A --model B`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_models: Vec<ExtraIdentity>,
}

/// Another model of a dataset: the features it writes, the model, its sidecar and its PCA.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExtraIdentity {
    pub feature: String,
    pub model: Named,
    pub sidecar_sha256: String,
    pub pca: PcaIdentity,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Named {
    pub name: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PcaIdentity {
    pub sha256: String,
    pub dims: usize,
    /// Fitted by a run into this folder (`OUT/pca.npz`), not given with `--pca`.
    pub fitted_here: bool,
    /// Where it was given from (or `pca.npz`).
    pub source: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SchemaIdentity {
    /// `id`, or `video_id` (`--legacy-2017`).
    pub id_key: String,
    /// `none` or `zero`.
    pub audio: String,
    /// `none`, `gzip` or `zlib`.
    pub compression: String,
}

impl SchemaIdentity {
    pub fn new(legacy_2017: bool, audio_zero: bool, compression: vidfeat_export::Compression) -> Self {
        SchemaIdentity {
            id_key: if legacy_2017 { "video_id" } else { "id" }.into(),
            audio: if audio_zero { "zero" } else { "none" }.into(),
            compression: format!("{compression:?}").to_lowercase(),
        }
    }
}

/// The PCA a run will use, as known before any work.
#[derive(Debug, Clone)]
pub enum PcaChoice {
    /// `--pca PATH`, already loaded.
    Given { path: PathBuf, sha256: String, dims: usize },
    /// None given: fit one (or reuse the one an earlier run fitted in this folder).
    Fit { dims: usize },
}

/// What a run knows of its dataset before any work.
#[derive(Debug, Clone)]
pub struct Draft {
    pub layout: &'static str,
    pub model: Named,
    pub sidecar_sha256: String,
    pub pca: PcaChoice,
    pub vocabulary: Option<Named>,
    pub schema: SchemaIdentity,
    /// Further models, in `--model` order.
    pub extra: Vec<ExtraDraft>,
}

/// Another model as known before any work.
#[derive(Debug, Clone)]
pub struct ExtraDraft {
    pub feature: String,
    pub model: Named,
    pub sidecar_sha256: String,
    pub pca: PcaChoice,
}

impl PcaChoice {
    pub fn dims(&self) -> usize {
        match self {
            PcaChoice::Fit { dims } | PcaChoice::Given { dims, .. } => *dims,
        }
    }
}

/// Where a PCA fitted into the folder is kept: `pca.npz` for the first model, `pca-NAME.npz`
/// for the model writing the features NAME.
pub fn fitted_pca_file(feature: &str) -> String {
    if feature == "rgb" {
        "pca.npz".into()
    } else {
        format!("pca-{feature}.npz")
    }
}

impl Draft {
    /// The identity once the PCAs are known (`extra`: the further models', in order).
    pub fn identity(&self, pca: PcaIdentity, extra: Vec<PcaIdentity>) -> Identity {
        Identity {
            format: FORMAT.into(),
            version: VERSION,
            layout: self.layout.into(),
            model: self.model.clone(),
            sidecar_sha256: self.sidecar_sha256.clone(),
            pca,
            vocabulary: self.vocabulary.clone(),
            schema: self.schema.clone(),
            extra_models: self
                .extra
                .iter()
                .zip(extra)
                .map(|(e, pca)| ExtraIdentity { feature: e.feature.clone(), model: e.model.clone(), sidecar_sha256: e.sidecar_sha256.clone(), pca })
                .collect(),
        }
    }
}

/// A vocabulary's name and the SHA-256 of its classes (index, Knowledge-Graph id, name).
pub fn vocabulary_identity(v: &vidfeat_labels::Vocabulary) -> Named {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for c in &v.classes {
        h.update(format!("{}\t{}\t{}\n", c.index, c.kg_id.as_deref().unwrap_or(""), c.name).as_bytes());
    }
    Named { name: v.source.clone(), sha256: hex::encode(h.finalize()) }
}

pub fn read_identity(out: &Path) -> Option<Identity> {
    let i: Identity = serde_json::from_slice(&std::fs::read(out.join(DATASET_FILE)).ok()?).ok()?;
    (i.format == FORMAT).then_some(i)
}

pub fn write_identity(out: &Path, id: &Identity) -> Result<()> {
    if read_identity(out).as_ref() == Some(id) {
        return Ok(());
    }
    crate::pipeline::write_atomic(&out.join(DATASET_FILE), &serde_json::to_vec_pretty(id)?)
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// Whether `out` holds a dataset: a frozen plan, or shard files or done markers vidfeat wrote
/// (see [`crate::outdir::owned`]). A run whose lists resolved to no video leaves its summary
/// and failures and nothing else: no dataset, so a run with the lists fixed may go there; a
/// user's own files in the folder are not a dataset either.
fn holds_output(out: &Path) -> bool {
    out.join("plan.json").exists() || crate::outdir::owned(out).files.iter().any(|f| ["frame/", "video/", "done/"].iter().any(|d| f.starts_with(d)))
}

/// Removes the dataset in `out`: `dataset.json` first (so an interrupted removal leaves a
/// folder that claims nothing), then every other file vidfeat wrote there, as its records show
/// ([`crate::outdir::owned`]); files it did not write are left, and named.
fn remove_dataset(out: &Path) -> Result<()> {
    let left = crate::outdir::remove_owned(out)?;
    if let Some(m) = crate::outdir::describe_left(out, &left) {
        tracing::warn!("--overwrite: {m}");
    }
    Ok(())
}

/// Checks `out` before any work: a fresh folder, or one holding the same dataset, is fine; one
/// holding another dataset (or output of unknown provenance) stops the run, naming what
/// differs, unless `overwrite`, which removes that dataset first. Returns the PCAs to reuse:
/// the ones an earlier run fitted in this folder, when none is given.
pub fn check_out(out: &Path, draft: &Draft, overwrite: bool) -> Result<Reuse> {
    let reuse = check_identity(out, draft, overwrite)?;
    // A PCA this run will fit goes to pca.npz / pca-NAME.npz: one there that vidfeat did not
    // fit in this folder (a user's own, copied in) is not replaced.
    let owned = crate::outdir::owned(out);
    let fits = std::iter::once(("rgb", &draft.pca, reuse.pca.is_some())).chain(draft.extra.iter().zip(reuse.extra.iter().chain(std::iter::repeat(&None))).map(|(e, r)| (e.feature.as_str(), &e.pca, r.is_some())));
    for (feature, choice, reused) in fits {
        if matches!(choice, PcaChoice::Fit { .. }) && !reused && draft.layout == "plan" {
            let file = fitted_pca_file(feature);
            crate::outdir::refuse_foreign(out, &owned, &file, &format!("give it as --pca {} to use it, or move it away", out.join(&file).display()))?;
        }
    }
    Ok(reuse)
}

fn check_identity(out: &Path, draft: &Draft, overwrite: bool) -> Result<Reuse> {
    let Some(old) = read_identity(out) else {
        if holds_output(out) {
            if overwrite {
                tracing::info!("--overwrite: removing the output in {}", out.display());
                remove_dataset(out)?;
                return Ok(Reuse::default());
            }
            bail!(
                "{} holds vidfeat output without a dataset.json (written by an older vidfeat, or a folder made by hand): its provenance is unknown, so nothing is added to it; give --overwrite to replace it, or another --out",
                out.display()
            );
        }
        return Ok(Reuse::default());
    };
    let mut diffs = vec![];
    if old.layout != draft.layout {
        diffs.push(format!("layout: the folder holds the output of `vidfeat {}`, this is `vidfeat {}`", if old.layout == "plan" { "run`/`plan" } else { "extract" }, if draft.layout == "plan" { "run`/`plan" } else { "extract" }));
    }
    if old.model.sha256 != draft.model.sha256 {
        diffs.push(format!("model: {} (sha256 {}) in the folder, {} (sha256 {}) here", old.model.name, short(&old.model.sha256), draft.model.name, short(&draft.model.sha256)));
    } else if old.sidecar_sha256 != draft.sidecar_sha256 {
        diffs.push(format!("model sidecar: sha256 {} in the folder, {} here", short(&old.sidecar_sha256), short(&draft.sidecar_sha256)));
    }
    match (&old.vocabulary, &draft.vocabulary) {
        (a, b) if a == b => {}
        (a, b) => {
            let show = |v: &Option<Named>| v.as_ref().map_or("none (integer labels)".to_string(), |v| format!("{} (sha256 {})", v.name, short(&v.sha256)));
            diffs.push(format!("vocabulary: {} in the folder, {} here", show(a), show(b)));
        }
    }
    for (what, a, b) in [("id key", &old.schema.id_key, &draft.schema.id_key), ("audio", &old.schema.audio, &draft.schema.audio), ("compression", &old.schema.compression, &draft.schema.compression)] {
        if a != b {
            diffs.push(format!("{what}: {a} in the folder, {b} here"));
        }
    }
    let mut reuse = None;
    match pca_diff(out, draft.layout, "rgb", &old.pca, &draft.pca) {
        Ok(r) => reuse = r,
        Err(d) => diffs.push(d),
    }
    let features = |v: Vec<(&str, &str)>| if v.is_empty() { "none".to_string() } else { v.iter().map(|(f, m)| format!("{f} ({m})")).collect::<Vec<_>>().join(", ") };
    let old_extra: Vec<(&str, &str)> = old.extra_models.iter().map(|e| (e.feature.as_str(), e.model.name.as_str())).collect();
    let new_extra: Vec<(&str, &str)> = draft.extra.iter().map(|e| (e.feature.as_str(), e.model.name.as_str())).collect();
    let mut reuse_extra = vec![];
    if old_extra != new_extra {
        diffs.push(format!("further models: {} in the folder, {} here", features(old_extra), features(new_extra)));
    } else {
        for (o, d) in old.extra_models.iter().zip(&draft.extra) {
            if o.model.sha256 != d.model.sha256 || o.sidecar_sha256 != d.sidecar_sha256 {
                diffs.push(format!("model of `{}`: {} (sha256 {}) in the folder, sha256 {} here", o.feature, o.model.name, short(&o.model.sha256), short(&d.model.sha256)));
            }
            match pca_diff(out, draft.layout, &o.feature, &o.pca, &d.pca) {
                Ok(r) => reuse_extra.push(r),
                Err(x) => diffs.push(x),
            }
        }
    }
    if diffs.is_empty() {
        return Ok(Reuse { pca: reuse, extra: reuse_extra });
    }
    if overwrite {
        tracing::info!("--overwrite: removing the dataset in {} ({})", out.display(), diffs.join("; "));
        remove_dataset(out)?;
        return Ok(Reuse::default());
    }
    bail!(
        "{} holds another dataset, so nothing was done:\n  {}\ngive --overwrite to replace it, or another --out",
        out.display(),
        diffs.join("\n  ")
    )
}

/// PCAs fitted by an earlier run in the folder, to use again: the first model's, and each
/// further model's (in order; None where it is given or fitted anew).
#[derive(Debug, Default)]
pub struct Reuse {
    pub pca: Option<PathBuf>,
    pub extra: Vec<Option<PathBuf>>,
}

/// How the PCA the folder's dataset used for the features `feature` (`old`) compares with the
/// one this run will use: the fitted file to reuse (or None), or what differs.
fn pca_diff(out: &Path, layout: &str, feature: &str, old: &PcaIdentity, choice: &PcaChoice) -> std::result::Result<Option<PathBuf>, String> {
    let of = if feature == "rgb" { String::new() } else { format!(" of `{feature}`") };
    match choice {
        PcaChoice::Given { path, sha256, dims } => {
            if *sha256 != old.sha256 || *dims != old.dims {
                return Err(format!("PCA{of}: {} (sha256 {}, {} dims) in the folder, {} (sha256 {}, {dims} dims) here", old.source, short(&old.sha256), old.dims, path.display(), short(sha256)));
            }
            Ok(None)
        }
        PcaChoice::Fit { dims } => {
            if !old.fitted_here {
                return Err(format!("PCA{of}: the folder's dataset was made with --pca {} (sha256 {}); this run gives none and would fit another (give that --pca again)", old.source, short(&old.sha256)));
            }
            if *dims != old.dims {
                return Err(format!("PCA dims{of}: {} in the folder, {dims} here", old.dims));
            }
            if layout != "plan" {
                return Ok(None);
            }
            // Reused, as long as it is the one the folder's shards were made with.
            let file = fitted_pca_file(feature);
            let p = out.join(&file);
            match vidfeat_features::Pca::load(&p, Some(*dims)).map(|x| x.content_sha256()) {
                Ok(sha) if sha == old.sha256 => Ok(Some(p)),
                Ok(sha) => Err(format!("PCA{of}: {file} has changed since the folder's shards were made (sha256 {}, dataset.json says {})", short(&sha), short(&old.sha256))),
                Err(e) => Err(format!("PCA{of}: the folder's {file} cannot be read ({e})")),
            }
        }
    }
}

/// A file name made from data, checked before anything is created under it: one plain path
/// component (no separator, not `.` or `..`, no NUL), so `dir/name` lies in `dir`.
pub fn checked_name(name: &str) -> Result<&str> {
    let ok = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']);
    anyhow::ensure!(ok, "refusing the file name `{}`: not a plain file name", name.escape_debug());
    Ok(name)
}

/// Where a shard's files go, its name checked: frame and video shards, journal, done marker,
/// lease.
#[derive(Debug, Clone)]
pub struct ShardPaths {
    pub frame: PathBuf,
    pub video: PathBuf,
    pub journal: PathBuf,
    pub done: PathBuf,
    pub lease: PathBuf,
}

/// `name` is the shard's file name (`train-00003-of-00016.tfrecord`).
pub fn shard_paths(dir: &Path, name: &str) -> Result<ShardPaths> {
    let name = checked_name(name)?;
    let stem = name.strip_suffix(".tfrecord").unwrap_or(name);
    Ok(ShardPaths {
        frame: dir.join("frame").join(name),
        video: dir.join("video").join(name),
        journal: dir.join("journal").join(format!("{stem}.journal")),
        done: dir.join("done").join(format!("{stem}.json")),
        lease: dir.join("leases").join(format!("{stem}.lease")),
    })
}

/// Removes the files of shards that are not in `names` (file names, `x.tfrecord`): shards of a
/// split or a shard count that went away. Only files vidfeat wrote, as `owned` (the folder's
/// records before the new plan replaced them) and the records still there show: shard files
/// first, their done markers last. Returns how many shards were removed.
pub fn remove_stale_shards(out: &Path, owned: &crate::outdir::Owned, names: &BTreeSet<String>) -> Result<usize> {
    let now = crate::outdir::owned(out);
    let mut files: BTreeSet<&String> = owned.files.iter().chain(&now.files).collect();
    let shards: BTreeSet<&String> = owned.shards.iter().chain(&now.shards).filter(|s| !names.contains(*s)).collect();
    let mut removed = 0;
    let mut doomed: Vec<String> = vec![];
    for name in shards {
        let p = shard_paths(out, name)?;
        let had = p.frame.exists() || p.video.exists() || p.done.exists();
        let stem = name.strip_suffix(".tfrecord").unwrap_or(name);
        for f in files.iter().filter(|f| {
            let (dir, file) = f.split_once('/').unwrap_or(("", f));
            SHARD_DIR_NAMES.contains(&dir) && (file == name || file == format!("{stem}.json") || file == format!("{stem}.journal") || file.starts_with(&format!("{stem}.lease")) || file.starts_with(&format!("{stem}.stale.")) || vidfeat_export::atomic::is_temp_of(file, name) || vidfeat_export::atomic::is_temp_of(file, &format!("{stem}.json")))
        }) {
            doomed.push((*f).clone());
        }
        removed += had as usize;
    }
    files.clear();
    doomed.sort_by_key(|f| (f.starts_with("done/"), f.clone()));
    doomed.dedup();
    for f in doomed {
        crate::outdir::remove_file(&out.join(&f))?;
    }
    Ok(removed)
}

const SHARD_DIR_NAMES: &[&str] = crate::outdir::SHARD_DIRS;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_shard_files_and_only_those_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let marker = |shard: &str| format!("{{\"shard\":\"{shard}\",\"split\":\"train\",\"videos\":0,\"failed\":0,\"rows\":0,\"seconds_of_video\":0.0,\"frame_sha256\":\"\",\"video_sha256\":\"\",\"frame_bytes\":1,\"video_bytes\":1,\"failures\":[],\"video_seconds\":[],\"worker\":\"w\",\"vidfeat\":\"0\",\"finished_at\":0,\"key\":\"k\"}}");
        let files = [
            ("frame/train-00000-of-00002.tfrecord", "x".to_string()),
            ("frame/train-00001-of-00002.tfrecord", "x".into()),
            ("frame/train-00000-of-00001.tfrecord", "x".into()),
            ("frame/.train-00000-of-00001.tfrecord.123.tmp", "x".into()),
            ("video/train-00000-of-00001.tfrecord", "x".into()),
            ("video/val.v2-00000-of-00001.tfrecord", "x".into()),
            ("done/train-00000-of-00001.json", marker("train-00000-of-00001.tfrecord")),
            ("done/.train-00000-of-00001.json.77.tmp", "x".into()),
            ("journal/train-00000-of-00001.journal", "VFJ2".into()),
            ("leases/train-00000-of-00001.lease", "{\"owner\":\"w\",\"pid\":1}".into()),
            ("frame/notes.txt", "x".into()),
            ("frame/old-00000-of-00001.tfrecord", "a user's, named by no record".into()),
        ];
        for (f, body) in &files {
            std::fs::create_dir_all(d.path().join(f).parent().unwrap()).unwrap();
            std::fs::write(d.path().join(f), body).unwrap();
        }
        let keep: BTreeSet<String> = ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord", "val.v2-00000-of-00001.tfrecord"].map(String::from).into();
        let owned = crate::outdir::owned(d.path());
        assert_eq!(remove_stale_shards(d.path(), &owned, &keep).unwrap(), 1);
        let left: Vec<&str> = files.iter().map(|(f, _)| *f).filter(|f| d.path().join(f).exists()).collect();
        assert_eq!(left, ["frame/train-00000-of-00002.tfrecord", "frame/train-00001-of-00002.tfrecord", "video/val.v2-00000-of-00001.tfrecord", "frame/notes.txt", "frame/old-00000-of-00001.tfrecord"]);
    }

    #[test]
    fn names_from_data_cannot_leave_their_folder() {
        for bad in ["", ".", "..", "../x.tfrecord", "a/b.tfrecord", "a\\b", "x\0y"] {
            assert!(shard_paths(Path::new("/out"), bad).is_err(), "{bad:?}");
        }
        let p = shard_paths(Path::new("/out"), "train-00001-of-00004.tfrecord").unwrap();
        assert_eq!(p.journal, Path::new("/out/journal/train-00001-of-00004.journal"));
        assert_eq!(p.done, Path::new("/out/done/train-00001-of-00004.json"));
    }
}
