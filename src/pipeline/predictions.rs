//! `--predict K`: a classifier's view of each video, written after the last shard.
//!
//! The logits averaged over a video's rows are part of its video-level record (`logits`), so
//! they live and die with the shard (kept, rebuilt or removed by the same rules as the
//! features). Once every shard is done, `predictions.jsonl` is made from the video shards, in
//! shard order: per video `{"id", "top": [{"index", "name", "score"}]}` with softmax scores.
//! When the dataset's labels are in the classifier's vocabulary, the summary gets top-1 and
//! top-5 accuracy over the labelled videos (a video counts when any of its labels is there)
//! and the pairs (label, top-1 prediction) most often confused: a dataset build that checks
//! itself, since broken decoding, colour or sampling makes the accuracy fall.
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use crate::pipeline::plan::PlanSettings;

/// Softmax of `logits`, then the `k` best (index, probability), best first.
pub fn top_k(logits: &[f32], k: usize) -> Vec<(usize, f64)> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let exp: Vec<f64> = logits.iter().map(|&v| (v as f64 - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    order.into_iter().take(k).map(|i| (i, exp[i] / sum)).collect()
}

/// Writes `dir/predictions.jsonl` from the video shards of `plan` (all present); returns what
/// goes into summary.json's `predictions`.
pub fn write(dir: &Path, plan: &PlanSettings) -> Result<serde_json::Value> {
    let head = plan.classifier.as_ref().context("--predict without a classifier recorded in the plan")?;
    let names: Vec<String> = vidfeat_labels::Vocabulary::load(&head.vocabulary).map(|v| v.classes.iter().map(|c| c.name.clone()).collect()).unwrap_or_default();
    // Labels are comparable when the dataset's vocabulary is the classifier's.
    let comparable = plan.vocabulary.as_ref().is_some_and(|v| v.name == head.vocabulary);
    let mut out = crate::outdir::AtomicFile::create(&dir.join("predictions.jsonl"))?;
    let (mut videos, mut labelled, mut top1, mut top5) = (0u64, 0u64, 0u64, 0u64);
    let mut confused: BTreeMap<(i64, i64), u64> = BTreeMap::new();
    let k = plan.predict.max(5);
    for (_, _, name) in plan.shard_list() {
        let path = dir.join("video").join(&name);
        for r in vidfeat_export::read_file(&path).with_context(|| format!("{}", path.display()))? {
            let v = vidfeat_export::parse_record(&r)?;
            let Some(logits) = v.floats.get("logits").filter(|l| l.len() == head.classes) else { continue };
            let best = top_k(logits, k);
            let top: Vec<serde_json::Value> = best
                .iter()
                .take(plan.predict)
                .map(|&(i, p)| json!({"index": i, "name": names.get(i).map(String::as_str).unwrap_or(""), "score": (p * 1e6).round() / 1e6}))
                .collect();
            serde_json::to_writer(&mut out, &json!({"id": v.id, "top": top}))?;
            out.write_all(b"\n")?;
            videos += 1;
            if comparable && !v.labels.is_empty() {
                labelled += 1;
                let first = best[0].0 as i64;
                if v.labels.contains(&first) {
                    top1 += 1;
                } else {
                    *confused.entry((v.labels[0], first)).or_default() += 1;
                }
                if best.iter().take(5).any(|(i, _)| v.labels.contains(&(*i as i64))) {
                    top5 += 1;
                }
            }
        }
    }
    out.commit()?;
    let mut s = json!({"videos": videos, "top": plan.predict, "vocabulary": head.vocabulary});
    if comparable {
        let rate = |n: u64| if labelled == 0 { serde_json::Value::Null } else { json!(((n as f64 / labelled as f64) * 1e4).round() / 1e4) };
        let mut pairs: Vec<((i64, i64), u64)> = confused.into_iter().collect();
        pairs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let name = |i: i64| names.get(i as usize).cloned().unwrap_or_else(|| i.to_string());
        s["labelled"] = json!(labelled);
        s["top1"] = rate(top1);
        s["top5"] = rate(top5);
        s["most_confused"] = pairs.iter().take(10).map(|((l, p), n)| json!({"label": name(*l), "predicted": name(*p), "videos": n})).collect();
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_softmax_ordered_with_ties_by_index() {
        let t = top_k(&[1.0, 3.0, 3.0, -1.0], 3);
        assert_eq!(t.iter().map(|x| x.0).collect::<Vec<_>>(), [1, 2, 0]);
        let z: f64 = [1.0f64, 3.0, 3.0, -1.0].iter().map(|v| v.exp()).sum();
        assert!((t[0].1 - 3f64.exp() / z).abs() < 1e-12 && (t[2].1 - 1f64.exp() / z).abs() < 1e-12);
        // Large logits do not overflow.
        let t = top_k(&[1000.0, 999.0], 2);
        assert!((t[0].1 + t[1].1 - 1.0).abs() < 1e-12 && t[0].1 > 0.7);
    }
}
