//! `vidfeat inspect FILE...`: every record of TFRecord files (ours or Google's YouTube-8M
//! shards) as one JSON object per line.
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::json;

/// The vocabulary of the output a shard belongs to: `vocabulary.csv` in the shard's folder or
/// the one above it (`OUT/frame/x.tfrecord` -> `OUT/vocabulary.csv`).
fn names_for(shard: &std::path::Path) -> Result<std::collections::HashMap<i64, String>> {
    let dir = shard.parent().unwrap_or(std::path::Path::new("."));
    let found = [dir.join("vocabulary.csv"), dir.join("../vocabulary.csv")].into_iter().find(|p| p.is_file());
    let p = found.with_context(|| format!("--names: no vocabulary.csv beside {} or in the folder above it", shard.display()))?;
    let v = vidfeat_labels::Vocabulary::load(&p.display().to_string())?;
    Ok(v.classes.into_iter().map(|c| (c.index, c.name)).collect())
}

/// Writes one JSON line per record to `out`; with `values`, the dequantized rgb rows and
/// `mean_rgb` too; with `names`, each label's name (from the output's vocabulary.csv) beside
/// its index. Returns false when a record could not be read or parsed (each logged).
pub fn inspect(files: &[PathBuf], values: bool, names: bool, out: &mut dyn Write) -> Result<bool> {
    let mut good = true;
    for f in files {
        let vocab = if names { Some(names_for(f)?) } else { None };
        let (mut rdr, _) = vidfeat_export::open_records(f).with_context(|| format!("opening {}", f.display()))?;
        let mut n = 0usize;
        loop {
            let offset = rdr.offset();
            let rec = match rdr.read_record() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) if n == 0 && offset == 0 => {
                    tracing::error!("{}: not a TFRecord file{} (its first record does not frame: {e})", f.display(), sniff(f));
                    good = false;
                    break;
                }
                Err(e) => {
                    tracing::error!("{}: {e}", f.display());
                    good = false;
                    break;
                }
            };
            let p = match vidfeat_export::parse_record(&rec) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!("{}: record {n} at byte {offset}: {e}", f.display());
                    good = false;
                    n += 1;
                    continue;
                }
            };
            let mut v = json!({"file": f.display().to_string(), "record": n, "level": p.level, "id": p.id, "labels": p.labels});
            if let Some(vocab) = &vocab {
                v["label_names"] = p.labels.iter().map(|l| vocab.get(l).map_or(serde_json::Value::Null, |n| json!(n))).collect();
            }
            if p.level == "frame" {
                v["rows"] = json!(p.lists.get("rgb").map(|x| x.0).unwrap_or(0));
                v["features"] = p.lists.iter().map(|(k, (rows, width))| (k.clone(), json!({"rows": rows, "bytes_per_row": width}))).collect();
                if !p.segments.is_empty() {
                    v["segments"] = p.segments.iter().map(|s| json!({"start": s.start, "end": s.start + vidfeat_export::SEGMENT_ROWS, "label": s.label, "score": s.score})).collect();
                }
                if values {
                    v["rgb"] = json!(p.rgb.iter().map(|r| vidfeat_features::dequantize(r)).collect::<Vec<_>>());
                    // Further models' features (a run with several --model).
                    for (name, rows) in &p.other {
                        v["values"][name] = json!(rows.iter().map(|r| vidfeat_features::dequantize(r)).collect::<Vec<_>>());
                    }
                }
            } else {
                v["features"] = p.floats.iter().map(|(k, x)| (k.clone(), json!({"len": x.len()}))).collect();
                if let Some(m) = p.floats.get("mean_rgb") {
                    v["mean_rgb_len"] = json!(m.len());
                    if values {
                        v["mean_rgb"] = json!(m);
                    }
                }
                if values {
                    for (name, m) in p.floats.iter().filter(|(k, _)| k.starts_with("mean_") && !matches!(k.as_str(), "mean_rgb" | "mean_audio")) {
                        v["values"][name] = json!(m);
                    }
                }
            }
            writeln!(out, "{v}")?;
            n += 1;
        }
    }
    out.flush()?;
    Ok(good)
}

/// What a file that is not a TFRecord looks like, from its first bytes (for the message).
pub fn sniff(path: &std::path::Path) -> &'static str {
    let mut head = [0u8; 12];
    let n = std::fs::File::open(path).and_then(|mut f| std::io::Read::read(&mut f, &mut head)).unwrap_or(0);
    let head = &head[..n];
    if head.len() >= 8 && &head[4..8] == b"ftyp" {
        ", but an MP4/MOV video"
    } else if head.starts_with(&[0x1a, 0x45, 0xdf, 0xa3]) {
        ", but a Matroska/WebM video"
    } else if head.starts_with(b"RIFF") {
        ", but a RIFF (AVI/WAV) file"
    } else if head.starts_with(b"PK") {
        ", but a zip archive (an .npz?)"
    } else if head.starts_with(b"{") || head.starts_with(b"[") {
        ", but JSON"
    } else {
        ""
    }
}
