//! `vidfeat verify PATH`: every record's CRCs and schema, and record counts per shard against
//! summary.json. PATH is an output folder (frame/ and video/ shards plus summary.json) or
//! TFRecord files. Problems name the shard and, for corrupt records, the byte offset. In a
//! folder made by run or plan + work, every shard must also be current: its done marker
//! carries the shard's key from plan.json (else it was made from other inputs or settings)
//! and the SHA-256 of both files as they are.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::json;

use vidfeat_export::parse_record;

#[derive(Debug, Default)]
pub struct ShardCheck {
    pub records: u64,
    pub ids: Vec<String>,
    pub problems: Vec<String>,
}

/// Reads one shard, checking framing, CRCs and the YouTube-8M schema (`dims`: the expected
/// feature width, when known; `extra`: further models' features the records must hold, with
/// their widths).
pub fn check_shard(path: &Path, dims: Option<usize>, extra: &[(String, usize)]) -> ShardCheck {
    let mut out = ShardCheck::default();
    let name = path.display().to_string();
    let mut rdr = match vidfeat_export::open_records(path) {
        Ok((r, _)) => r,
        Err(e) => {
            out.problems.push(format!("{name}: {e}"));
            return out;
        }
    };
    loop {
        let offset = rdr.offset();
        let rec = match rdr.read_record() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                out.problems.push(format!("{name}: {e}"));
                break;
            }
        };
        let n = out.records;
        out.records += 1;
        let p = match parse_record(&rec) {
            Ok(p) => p,
            Err(e) => {
                out.problems.push(format!("{name}: record {n} at byte {offset}: {e}"));
                continue;
            }
        };
        let bad = |what: String| format!("{name}: record {n} (`{}`) at byte {offset}: {what}", p.id);
        if p.id.is_empty() {
            out.problems.push(bad("empty id".into()));
        }
        if p.labels.iter().any(|&l| l < 0) {
            out.problems.push(bad("negative label index".into()));
        }
        match p.level {
            "frame" => match p.lists.get("rgb") {
                None => out.problems.push(bad("no `rgb` feature list".into())),
                Some(&(rows, width)) => {
                    if p.rgb.iter().any(|r| r.len() != width) {
                        out.problems.push(bad("rgb rows of different widths".into()));
                    }
                    if let Some(d) = dims.filter(|&d| rows > 0 && width != d) {
                        out.problems.push(bad(format!("rgb rows are {width} bytes, expected {d}")));
                    }
                    for (f, d) in extra {
                        match p.lists.get(f) {
                            None => out.problems.push(bad(format!("no `{f}` feature list (another model's features)"))),
                            Some(&(frows, fwidth)) if frows != rows || (frows > 0 && fwidth != *d) => {
                                out.problems.push(bad(format!("{f} has {frows} rows of {fwidth} bytes, rgb {rows} rows ({d} bytes expected)")))
                            }
                            Some(_) if p.other.get(f).is_some_and(|r| r.iter().any(|r| r.len() != *d)) => out.problems.push(bad(format!("{f} rows of different widths"))),
                            Some(_) => {}
                        }
                    }
                    if let Some(&(arows, awidth)) = p.lists.get("audio") {
                        if arows != rows || (arows > 0 && awidth != vidfeat_export::AUDIO_DIMS) {
                            out.problems.push(bad(format!("audio has {arows} rows of {awidth} bytes, rgb {rows} rows (audio rows are 128 bytes)")));
                        }
                    }
                }
            },
            _ => match p.floats.get("mean_rgb") {
                None => out.problems.push(bad("no `mean_rgb`".into())),
                Some(m) => {
                    if let Some(d) = dims.filter(|&d| m.len() != d) {
                        out.problems.push(bad(format!("mean_rgb has {} values, expected {d}", m.len())));
                    }
                    if m.iter().any(|v| !v.is_finite()) {
                        out.problems.push(bad("mean_rgb is not finite".into()));
                    }
                    for (f, d) in extra {
                        match p.floats.get(&format!("mean_{f}")) {
                            None => out.problems.push(bad(format!("no `mean_{f}` (another model's features)"))),
                            Some(m) if m.len() != *d || m.iter().any(|v| !v.is_finite()) => out.problems.push(bad(format!("mean_{f} has {} values, expected {d} finite ones", m.len()))),
                            Some(_) => {}
                        }
                    }
                    if p.floats.get("mean_audio").is_some_and(|a| a.len() != vidfeat_export::AUDIO_DIMS) {
                        out.problems.push(bad("mean_audio is not 128 values".into()));
                    }
                }
            },
        }
        out.ids.push(p.id);
    }
    out
}

/// Each shard of a plan folder is current: done, under the key plan.json gives it, its files
/// what the done marker says (SHA-256).
fn check_plan_shards(dir: &Path) -> Vec<String> {
    use crate::pipeline::worker::DoneMarker;
    let plan = match crate::pipeline::plan::PlanSettings::load(dir) {
        Ok(p) => p,
        Err(e) => return vec![format!("{e:#}")],
    };
    let mut problems = vec![];
    for (_, _, name) in plan.shard_list() {
        let Ok(p) = crate::pipeline::dataset::shard_paths(dir, &name) else {
            problems.push(format!("plan.json names a shard `{}` that is not a plain file name", name.escape_debug()));
            continue;
        };
        let marker: Option<DoneMarker> = std::fs::read(&p.done).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let Some(m) = marker else {
            problems.push(format!("{name}: not done (no readable done marker): an unfinished run or update"));
            continue;
        };
        if m.key != plan.key(&name) {
            problems.push(format!("{name}: stale: its done marker's key differs from plan.json's, so it was made from other inputs or settings; re-run to rebuild it"));
            continue;
        }
        for (level, file, want) in [("frame", &p.frame, &m.frame_sha256), ("video", &p.video, &m.video_sha256)] {
            match vidfeat_features::file_sha256(file) {
                Ok(got) if got == *want => {}
                Ok(got) => problems.push(format!("{level}/{name}: changed since it was written (sha256 {}, its done marker says {})", &got[..12], &want[..want.len().min(12)])),
                Err(e) => problems.push(format!("{level}/{name}: {e}")),
            }
        }
    }
    problems
}

/// Verifies an output folder or a list of files. Returns the report and whether all is well.
pub fn verify(paths: &[PathBuf]) -> Result<(serde_json::Value, bool)> {
    let mut problems: Vec<String> = vec![];
    let mut shards: BTreeMap<String, u64> = BTreeMap::new();
    let mut total = 0u64;
    for path in paths {
        if !path.is_dir() {
            let c = check_shard(path, None, &[]);
            total += c.records;
            shards.insert(path.display().to_string(), c.records);
            problems.extend(c.problems);
            continue;
        }
        let summary: Option<serde_json::Value> =
            std::fs::read(path.join("summary.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
        if summary.is_none() {
            problems.push(format!("{}: no readable summary.json (an unfinished run or update, or not an output folder)", path.display()));
        }
        if path.join("plan.json").exists() {
            problems.extend(check_plan_shards(path));
        }
        let dims = summary.as_ref().and_then(|s| s["pca"]["dims"].as_u64()).map(|d| d as usize);
        // Further models' features (a run with several --model), with their widths.
        let extra: Vec<(String, usize)> = summary
            .as_ref()
            .and_then(|s| s["features"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|f| Some((f["name"].as_str()?.to_string(), f["dims"].as_u64()? as usize)))
            .filter(|(n, _)| n != "rgb")
            .collect();
        // Expected shards and counts from the summary.
        let mut expected: BTreeMap<String, u64> = BTreeMap::new();
        if let Some(s) = &summary {
            for (_, list) in s["shards"].as_object().into_iter().flatten() {
                for sh in list.as_array().into_iter().flatten() {
                    if let (Some(n), Some(v)) = (sh["shard"].as_str(), sh["videos"].as_u64()) {
                        expected.insert(n.to_string(), v);
                    }
                }
            }
        }
        for (name, want) in &expected {
            let f = check_shard(&path.join("frame").join(name), dims, &extra);
            let v = check_shard(&path.join("video").join(name), dims, &extra);
            for (level, c) in [("frame", &f), ("video", &v)] {
                if c.records != *want {
                    problems.push(format!("{level}/{name}: {} records, summary.json says {want}", c.records));
                }
                shards.insert(format!("{level}/{name}"), c.records);
                total += c.records;
            }
            if f.ids != v.ids && f.problems.is_empty() && v.problems.is_empty() {
                problems.push(format!("{name}: frame and video shards hold different ids"));
            }
            problems.extend(f.problems);
            problems.extend(v.problems);
        }
        // Shards on disk that the summary does not know, and leftovers of interrupted writes.
        for level in ["frame", "video"] {
            for e in std::fs::read_dir(path.join(level)).into_iter().flatten().flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with('.') && n.ends_with(".tmp") {
                    problems.push(format!("{level}/{n}: an unfinished shard (interrupted run)"));
                } else if n.ends_with(".tfrecord") && !expected.contains_key(&n) {
                    problems.push(format!("{level}/{n}: not listed in summary.json"));
                }
            }
        }
    }
    let ok = problems.is_empty();
    Ok((json!({"ok": ok, "records": total, "shards": shards, "problems": problems}), ok))
}
