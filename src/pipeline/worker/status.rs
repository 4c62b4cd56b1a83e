//! `vidfeat status DIR`: shards done, in progress, stale or pending, and the failures so far.
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use super::lease::{lease_age, lease_owner, owner_dead_here};
use super::shards::read_done;
use crate::pipeline::dataset::shard_paths;
use crate::pipeline::jobs::Failure;
use crate::pipeline::plan::PlanSettings;

/// `vidfeat status DIR`.
pub fn status(dir: &Path, ttl: Duration) -> Result<serde_json::Value> {
    let plan = PlanSettings::load(dir)?;
    status_with(dir, &plan, ttl, &|name| read_done(dir, name, plan.key(name)))
}

/// `vidfeat status s3://...`: the plan, markers and failures pulled into a mirror, not the
/// shards (a bucket's listing gives their sizes).
pub fn status_of_bucket(url: &str, mirror: &Path, ttl: Duration) -> Result<serde_json::Value> {
    crate::mirror::pull_where(url, mirror, &|rel| !(rel.starts_with("frame/") || rel.starts_with("video/")))?;
    let plan = PlanSettings::load(mirror)?;
    let sizes = crate::mirror::remote_sizes(url)?;
    let mut s = status_with(mirror, &plan, ttl, &|name| super::done_in_bucket(mirror, &plan, &sizes, name))?;
    s["plan"] = json!(url);
    Ok(s)
}

fn status_with(dir: &Path, plan: &PlanSettings, ttl: Duration, done_marker: &dyn Fn(&str) -> Option<super::DoneMarker>) -> Result<serde_json::Value> {
    let mut shards = vec![];
    let (mut done, mut running, mut stale, mut pending) = (0u64, 0u64, 0u64, 0u64);
    let (mut videos, mut failed, mut rows) = (0u64, 0u64, 0u64);
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    let mut failures = vec![];
    for (split, _, name) in plan.shard_list() {
        let paths = shard_paths(dir, &name)?;
        let (lease, journal) = (paths.lease, paths.journal);
        let entry = if let Some(d) = done_marker(&name) {
            done += 1;
            videos += d.videos;
            failed += d.failed;
            rows += d.rows;
            for f in &d.failures {
                *by_kind.entry(f.kind.clone()).or_default() += 1;
            }
            failures.extend(d.failures.iter().cloned());
            json!({"shard": name, "split": split, "state": "done", "videos": d.videos, "failed": d.failed, "worker": d.worker})
        } else if let Some(age) = lease_age(&lease) {
            let state = if age < ttl && !owner_dead_here(&lease) {
                running += 1;
                "in_progress"
            } else {
                stale += 1;
                "stale_lease"
            };
            let journaled = std::fs::metadata(&journal).map(|m| m.len()).unwrap_or(0);
            json!({"shard": name, "split": split, "state": state, "lease_age_s": age.as_secs(), "owner": lease_owner(&lease), "journal_bytes": journaled})
        } else {
            pending += 1;
            let partial = journal.exists();
            json!({"shard": name, "split": split, "state": "pending", "partial_journal": partial})
        };
        shards.push(entry);
    }
    // Failures found while planning (bad rows, unknown labels, missing files). A folder made by
    // `run` also lists each shard's failures there: those are counted from the markers once.
    let in_shards: std::collections::BTreeSet<String> = failures.iter().map(|f| serde_json::to_string(f).unwrap_or_default()).collect();
    let plan_failures: Vec<Failure> = std::fs::read_to_string(dir.join("failures.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Failure>(l).ok())
        .filter(|f| !in_shards.contains(&serde_json::to_string(f).unwrap_or_default()))
        .collect();
    for f in &plan_failures {
        *by_kind.entry(f.kind.clone()).or_default() += 1;
    }
    let total = plan.shard_list().len() as u64;
    Ok(json!({
        "plan": dir.display().to_string(),
        "shards_total": total,
        "shards_done": done,
        "shards_in_progress": running,
        "shards_stale": stale,
        "shards_pending": pending,
        "complete": done == total,
        "videos_ok": videos,
        "videos_failed": failed + plan_failures.len() as u64,
        "rows": rows,
        "failures_by_kind": by_kind,
        "failed_videos": failures.iter().chain(plan_failures.iter()).take(1000).collect::<Vec<_>>(),
        "shards": shards,
    }))
}

/// The failures recorded in the done markers of current shards, in shard order.
pub fn shard_failures(dir: &Path, plan: &PlanSettings) -> Vec<Failure> {
    plan.shard_list().iter().filter_map(|(_, _, name)| read_done(dir, name, plan.key(name))).flat_map(|d| d.failures).collect()
}
