//! `vidfeat sample`: a stratified, reproducible sample of a finished output folder, for quick
//! trainer experiments, as TFRecords (records copied byte for byte), one `.npz` or WebDataset
//! tar shards. No FFmpeg, no model.
//!
//! Selection: the videos of the frame-level shards (in file order) are shuffled with ChaCha8
//! seeded by `--seed`; a video is taken when one of its labels among the wanted classes still
//! has fewer than K videos, and then counts for all its labels (so with multi-label videos a
//! class can end above K; a class with fewer than K videos gives all it has). The sample is
//! written in the source's order. Features are streamed: the sample is never held in memory.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use npyz::zip;
use npyz::WriterBuilder;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::json;

use vidfeat_export::{open_records, parse_record, AtomicShard, Parsed};
use vidfeat_features::dequantize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tfrecord,
    Npz,
    Webdataset,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tfrecord" => Ok(Format::Tfrecord),
            "npz" => Ok(Format::Npz),
            "webdataset" | "wds" => Ok(Format::Webdataset),
            _ => Err(format!("unknown sample format `{s}` (tfrecord, npz, webdataset)")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SampleConfig {
    pub from: PathBuf,
    pub out: PathBuf,
    pub per_class: usize,
    /// Names, KG ids or indices; empty: every class that occurs.
    pub classes: Vec<String>,
    pub seed: u64,
    pub format: Format,
    /// Samples per WebDataset tar shard.
    pub shard_size: usize,
}

/// One video of the source, from the first pass.
struct Entry {
    id: String,
    labels: Vec<i64>,
    rows: usize,
}

fn shards(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "tfrecord")).collect(),
        Err(_) => vec![],
    };
    v.sort();
    Ok(v)
}

/// Every record of the shards, parsed, in order; `f` returns false to stop early.
fn each_record(files: &[PathBuf], mut f: impl FnMut(&[u8], Parsed) -> Result<()>) -> Result<()> {
    for file in files {
        let (rdr, _) = open_records(file).with_context(|| format!("opening {}", file.display()))?;
        for (n, rec) in rdr.enumerate() {
            let rec = rec.with_context(|| format!("{}: record {n}", file.display()))?;
            let p = parse_record(&rec).with_context(|| format!("{}: record {n}", file.display()))?;
            f(&rec, p)?;
        }
    }
    Ok(())
}

/// A file-name-safe WebDataset key for an id: `[A-Za-z0-9_-]` kept, anything else (dots
/// included, which WebDataset reads as extension separators) replaced by `_`, at most 80
/// characters; an id that had to change gets 8 hex digits of its SHA-256 appended, so keys stay
/// distinct.
pub fn safe_key(id: &str) -> String {
    let clean: String = id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).take(80).collect();
    if clean == id && !clean.is_empty() {
        return clean;
    }
    use sha2::Digest;
    let h = sha2::Sha256::digest(id.as_bytes());
    format!("{clean}_{}", hex::encode(&h[..4]))
}

fn npy_bytes<T: npyz::AutoSerialize + Copy>(shape: &[u64], data: &[T]) -> Result<Vec<u8>> {
    let mut buf = vec![];
    let mut w = npyz::WriteOptions::new().default_dtype().shape(shape).writer(&mut buf).begin_nd()?;
    w.extend(data.iter().copied())?;
    w.finish()?;
    Ok(buf)
}

fn tar_add(b: &mut tar::Builder<std::fs::File>, name: &str, data: &[u8]) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, name, data)?;
    Ok(())
}

pub fn sample(cfg: &SampleConfig) -> Result<serde_json::Value> {
    if cfg.per_class == 0 {
        bail!("--per-class must be at least 1");
    }
    let frame_files = shards(&cfg.from.join("frame"))?;
    let video_files = shards(&cfg.from.join("video"))?;
    if frame_files.is_empty() {
        bail!("no frame-level shards in {} (a `vidfeat run` output folder is expected)", cfg.from.join("frame").display());
    }
    let vocab_path = cfg.from.join("vocabulary.csv");
    let vocab = if vocab_path.exists() { Some(vidfeat_labels::Vocabulary::load(vocab_path.to_str().context("vocabulary path")?)?) } else { None };

    // Pass 1: ids, labels, rows.
    let mut entries: Vec<Entry> = vec![];
    let mut seen = HashSet::new();
    let mut dims = 0usize;
    // Further models' features (a run with several --model): name -> width.
    let mut extra: BTreeMap<String, usize> = BTreeMap::new();
    each_record(&frame_files, |_, p| {
        if let Some(&(_, w)) = p.lists.get("rgb") {
            if w > 0 {
                dims = w;
            }
        }
        for name in p.other.keys() {
            if let Some(&(_, w)) = p.lists.get(name).filter(|x| x.1 > 0) {
                extra.insert(name.clone(), w);
            }
        }
        if seen.insert(p.id.clone()) {
            entries.push(Entry { rows: p.lists.get("rgb").map(|x| x.0).unwrap_or(0), id: p.id, labels: p.labels });
        }
        Ok(())
    })?;

    // The wanted classes.
    let wanted: Vec<i64> = if cfg.classes.is_empty() {
        let mut all: Vec<i64> = entries.iter().flat_map(|e| e.labels.iter().copied()).collect();
        all.sort_unstable();
        all.dedup();
        all
    } else {
        let mut v = vec![];
        for c in &cfg.classes {
            let idx = match (c.parse::<i64>(), &vocab) {
                (Ok(i), _) => i,
                (Err(_), Some(vocab)) => vocab.lookup(c)?.0.index,
                (Err(_), None) => bail!("class `{c}` is not an index and {} has no vocabulary.csv", cfg.from.display()),
            };
            v.push(idx);
        }
        v
    };
    let wanted_set: HashSet<i64> = wanted.iter().copied().collect();

    // Selection.
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed));
    let mut counts: BTreeMap<i64, usize> = wanted.iter().map(|&c| (c, 0)).collect();
    let mut chosen = vec![false; entries.len()];
    for i in order {
        let e = &entries[i];
        if e.labels.iter().any(|l| wanted_set.contains(l) && counts[l] < cfg.per_class) {
            chosen[i] = true;
            for l in e.labels.iter().filter(|l| wanted_set.contains(l)) {
                *counts.get_mut(l).unwrap() += 1;
            }
        }
    }
    let picked: Vec<&Entry> = entries.iter().zip(&chosen).filter(|(_, c)| **c).map(|(e, _)| e).collect();
    let picked_ids: HashSet<&str> = picked.iter().map(|e| e.id.as_str()).collect();
    let total_rows: usize = picked.iter().map(|e| e.rows).sum();

    std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    let mut files_written: Vec<String> = vec![];
    match cfg.format {
        Format::Tfrecord => {
            for (level, files) in [("frame", &frame_files), ("video", &video_files)] {
                if files.is_empty() {
                    continue;
                }
                let rel = format!("{level}/sample-00000-of-00001.tfrecord");
                let mut shard = AtomicShard::create(&cfg.out.join(&rel))?;
                let mut done = HashSet::new();
                each_record(files, |rec, p| {
                    if picked_ids.contains(p.id.as_str()) && done.insert(p.id.clone()) {
                        shard.write_record(rec)?;
                    }
                    Ok(())
                })?;
                shard.commit()?;
                files_written.push(rel);
            }
        }
        Format::Npz => {
            let path = cfg.out.join("sample.npz");
            let tmp = cfg.out.join(".sample.npz.tmp");
            let mut npz = npyz::npz::NpzWriter::create(&tmp)?;
            let big = total_rows as u64 * dims as u64 * 4 > u32::MAX as u64 / 2;
            let opts = || zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored).large_file(big);
            // rgb and each further model's features: dequantized rows, streamed from the shards
            // in sample order.
            for (name, width) in std::iter::once(("rgb", dims)).chain(extra.iter().map(|(n, w)| (n.as_str(), *w))) {
                let mut w = npz.array::<f32>(name, opts())?.default_dtype().shape(&[total_rows as u64, width as u64]).begin_nd()?;
                let mut done = HashSet::new();
                each_record(&frame_files, |_, p| {
                    if picked_ids.contains(p.id.as_str()) && done.insert(p.id.clone()) {
                        let rows = if name == "rgb" { &p.rgb } else { p.other.get(name).with_context(|| format!("`{}` has no `{name}` rows", p.id))? };
                        anyhow::ensure!(rows.len() == p.rgb.len(), "`{}`: {} `{name}` rows, {} rgb rows", p.id, rows.len(), p.rgb.len());
                        for r in rows {
                            w.extend(dequantize(r))?;
                        }
                    }
                    Ok(())
                })?;
                w.finish()?;
            }
            let n = picked.len();
            let mut offsets = vec![0i64];
            let mut row_video = Vec::with_capacity(total_rows);
            for (i, e) in picked.iter().enumerate() {
                offsets.push(offsets[i] + e.rows as i64);
                row_video.extend(std::iter::repeat_n(i as i32, e.rows));
            }
            let max_labels = picked.iter().map(|e| e.labels.len()).max().unwrap_or(0).max(1);
            let mut labels = vec![-1i64; n * max_labels];
            for (i, e) in picked.iter().enumerate() {
                labels[i * max_labels..i * max_labels + e.labels.len()].copy_from_slice(&e.labels);
            }
            let write = |npz: &mut npyz::npz::NpzWriter<_>, name: &str, shape: &[u64], data: &[i64]| -> Result<()> {
                let mut w = npz.array::<i64>(name, opts())?.default_dtype().shape(shape).begin_nd()?;
                w.extend(data.iter().copied())?;
                w.finish()?;
                Ok(())
            };
            write(&mut npz, "labels", &[n as u64, max_labels as u64], &labels)?;
            write(&mut npz, "row_offsets", &[n as u64 + 1], &offsets)?;
            {
                let mut w = npz.array::<i32>("row_video", opts())?.default_dtype().shape(&[total_rows as u64]).begin_nd()?;
                w.extend(row_video)?;
                w.finish()?;
            }
            {
                let width = picked.iter().map(|e| e.id.chars().count()).max().unwrap_or(0).max(1);
                let dtype = npyz::DType::Plain(format!("<U{width}").parse().map_err(|e| anyhow::anyhow!("{e:?}"))?);
                let mut w = npz.array::<str>("ids", opts())?.dtype(dtype).shape(&[n as u64]).begin_nd()?;
                for e in &picked {
                    w.push(e.id.as_str())?;
                }
                w.finish()?;
            }
            // Video-level means of the unquantized features, when the video shards are there.
            if !video_files.is_empty() {
                let keys: Vec<String> = std::iter::once("mean_rgb".to_string()).chain(extra.keys().map(|n| format!("mean_{n}"))).collect();
                let mut means: HashMap<(String, String), Vec<f32>> = HashMap::new();
                each_record(&video_files, |_, mut p| {
                    if picked_ids.contains(p.id.as_str()) {
                        for k in &keys {
                            if let Some(m) = p.floats.remove(k) {
                                means.entry((k.clone(), p.id.clone())).or_insert(m);
                            }
                        }
                    }
                    Ok(())
                })?;
                for k in &keys {
                    let Some(d) = picked.first().and_then(|e| means.get(&(k.clone(), e.id.clone()))).map(Vec::len) else { continue };
                    let mut w = npz.array::<f32>(k, opts())?.default_dtype().shape(&[n as u64, d as u64]).begin_nd()?;
                    for e in &picked {
                        match means.get(&(k.clone(), e.id.clone())) {
                            Some(m) if m.len() == d => w.extend(m.iter().copied())?,
                            _ => bail!("video-level `{k}` of `{}` missing or of another width", e.id),
                        }
                    }
                    w.finish()?;
                }
            }
            // The archive's directory is written here: an error (a full disk) is an error, not
            // a truncated file that a drop would leave.
            let f = npz.zip_writer().finish().map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
            let f = f.into_inner().map_err(|e| e.into_error())?;
            crate::outdir::AtomicFile::finish(f, &tmp, &path)?;
            files_written.push("sample.npz".into());
        }
        Format::Webdataset => {
            let shard_size = cfg.shard_size.max(1);
            let n_shards = picked.len().div_ceil(shard_size).max(1);
            let mut builder: Option<(tar::Builder<std::fs::File>, PathBuf, PathBuf)> = None;
            let mut written = 0usize;
            let mut keys = HashSet::new();
            let names: HashMap<i64, String> = vocab.as_ref().map(|v| v.classes.iter().map(|c| (c.index, c.name.clone())).collect()).unwrap_or_default();
            let mut done = HashSet::new();
            let finish = |b: Option<(tar::Builder<std::fs::File>, PathBuf, PathBuf)>| -> Result<()> {
                if let Some((b, tmp, path)) = b {
                    let f = b.into_inner().map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
                    crate::outdir::AtomicFile::finish(f, &tmp, &path)?;
                }
                Ok(())
            };
            each_record(&frame_files, |_, p| {
                if !picked_ids.contains(p.id.as_str()) || !done.insert(p.id.clone()) {
                    return Ok(());
                }
                if written % shard_size == 0 {
                    finish(builder.take())?;
                    let name = format!("sample-{:06}-of-{:06}.tar", written / shard_size, n_shards);
                    let tmp = cfg.out.join(format!(".{name}.tmp"));
                    builder = Some((tar::Builder::new(std::fs::File::create(&tmp)?), tmp, cfg.out.join(&name)));
                    files_written.push(name);
                }
                let mut key = safe_key(&p.id);
                while !keys.insert(key.clone()) {
                    key.push('_');
                }
                let flat: Vec<f32> = p.rgb.iter().flat_map(|r| dequantize(r)).collect();
                let meta = json!({
                    "id": p.id,
                    "labels": p.labels,
                    "label_names": p.labels.iter().map(|l| names.get(l).cloned()).collect::<Vec<_>>(),
                    "rows": p.rgb.len(),
                    "segments": p.segments.iter().map(|s| json!({"start": s.start, "label": s.label, "score": s.score})).collect::<Vec<_>>(),
                });
                let b = &mut builder.as_mut().unwrap().0;
                tar_add(b, &format!("{key}.rgb.npy"), &npy_bytes(&[p.rgb.len() as u64, dims as u64], &flat)?)?;
                for (name, width) in &extra {
                    let rows = p.other.get(name).with_context(|| format!("`{}` has no `{name}` rows", p.id))?;
                    let flat: Vec<f32> = rows.iter().flat_map(|r| dequantize(r)).collect();
                    tar_add(b, &format!("{key}.{name}.npy"), &npy_bytes(&[rows.len() as u64, *width as u64], &flat)?)?;
                }
                tar_add(b, &format!("{key}.json"), &serde_json::to_vec(&meta)?)?;
                written += 1;
                Ok(())
            })?;
            finish(builder.take())?;
        }
    }
    if vocab_path.exists() {
        crate::outdir::write_atomic(&cfg.out.join("vocabulary.csv"), &std::fs::read(&vocab_path)?)?;
        files_written.push("vocabulary.csv".into());
    }
    let short: Vec<i64> = counts.iter().filter(|(_, &n)| n < cfg.per_class).map(|(&c, _)| c).collect();
    let manifest = json!({
        "from": cfg.from.display().to_string(),
        "format": format!("{:?}", cfg.format).to_lowercase(),
        "seed": cfg.seed,
        "per_class": cfg.per_class,
        "classes": wanted,
        "videos": picked.len(),
        "rows": total_rows,
        "dims": dims,
        "features": std::iter::once(json!({"name": "rgb", "dims": dims})).chain(extra.iter().map(|(n, d)| json!({"name": n, "dims": d}))).collect::<Vec<_>>(),
        "videos_in_source": entries.len(),
        "per_class_counts": counts.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "classes_short": short,
        "ids": picked.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        "files": files_written,
    });
    crate::outdir::write_atomic(&cfg.out.join("sample.json"), &serde_json::to_vec_pretty(&manifest)?)?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_safe_and_distinct() {
        assert_eq!(safe_key("abc-DEF_09"), "abc-DEF_09");
        for hostile in ["../../etc/passwd", "/abs/path", "a.b.c", "", "名前", &"x".repeat(500)] {
            let k = safe_key(hostile);
            assert!(!k.is_empty() && k.len() <= 89, "{k}");
            assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'), "{k}");
        }
        // Ids that clean to the same text still get different keys.
        assert_ne!(safe_key("a.b"), safe_key("a/b"));
        assert_ne!(safe_key("a.b"), safe_key("a_b"));
    }
}
