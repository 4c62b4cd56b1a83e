//! `vidfeat inspect FILE...`: every record of TFRecord files (ours or Google's YouTube-8M
//! shards) as one JSON object per line.
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::json;

/// Writes one JSON line per record to `out`; with `values`, the dequantized rgb rows and
/// `mean_rgb` too. Returns false when a record could not be read or parsed (each logged).
pub fn inspect(files: &[PathBuf], values: bool, out: &mut dyn Write) -> Result<bool> {
    let mut good = true;
    for f in files {
        let (mut rdr, _) = vidfeat_export::open_records(f).with_context(|| format!("opening {}", f.display()))?;
        let mut n = 0usize;
        loop {
            let offset = rdr.offset();
            let rec = match rdr.read_record() {
                Ok(Some(r)) => r,
                Ok(None) => break,
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
            if p.level == "frame" {
                v["rows"] = json!(p.lists.get("rgb").map(|x| x.0).unwrap_or(0));
                v["features"] = p.lists.iter().map(|(k, (rows, width))| (k.clone(), json!({"rows": rows, "bytes_per_row": width}))).collect();
                if !p.segments.is_empty() {
                    v["segments"] = p.segments.iter().map(|s| json!({"start": s.start, "end": s.start + vidfeat_export::SEGMENT_ROWS, "label": s.label, "score": s.score})).collect();
                }
                if values {
                    v["rgb"] = json!(p.rgb.iter().map(|r| vidfeat_features::dequantize(r)).collect::<Vec<_>>());
                }
            } else {
                v["features"] = p.floats.iter().map(|(k, x)| (k.clone(), json!({"len": x.len()}))).collect();
                if let Some(m) = p.floats.get("mean_rgb") {
                    v["mean_rgb_len"] = json!(m.len());
                    if values {
                        v["mean_rgb"] = json!(m);
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
