//! `vidfeat status DIR`: shards done, in progress, stale and pending, and failed videos.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

#[derive(clap::Args)]
pub struct StatusArgs {
    /// A plan folder (from `vidfeat plan`, or a `vidfeat run` output).
    pub dir: PathBuf,
    /// Print the status as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Leases older than this (seconds since their last heartbeat) count as stale.
    #[arg(long, default_value_t = 120)]
    pub lease_ttl: u64,
}

pub fn exec(a: StatusArgs) -> Result<ExitCode> {
    let (dir, json_out, ttl) = (a.dir, a.json, a.lease_ttl);
    let ttl = std::time::Duration::from_secs(ttl.max(1));
    let s = match vidfeat_store::url_of(&dir) {
        Some(url) => vidfeat::pipeline::worker::status_of_bucket(url, &vidfeat::mirror::scratch(url, Some(&std::env::temp_dir().join("vidfeat-read"))), ttl)?,
        None => vidfeat::pipeline::worker::status(&dir, ttl)?,
    };
    if json_out {
        println!("{s}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}: {} of {} shards done, {} in progress, {} stale, {} pending; {} videos ok, {} failed, {} rows",
        dir.display(),
        s["shards_done"],
        s["shards_total"],
        s["shards_in_progress"],
        s["shards_stale"],
        s["shards_pending"],
        s["videos_ok"],
        s["videos_failed"],
        s["rows"]
    );
    for sh in s["shards"].as_array().into_iter().flatten() {
        let extra = match sh["state"].as_str() {
            Some("done") => format!("{}, {} failed", vidfeat::telemetry::count(sh["videos"].as_u64().unwrap_or(0), "video"), sh["failed"]),
            Some("in_progress") => format!("{} (heartbeat {} s ago)", sh["owner"].as_str().unwrap_or("?"), sh["lease_age_s"]),
            Some("stale_lease") => format!("{} (gone, or silent for {} s: the next worker takes it over)", sh["owner"].as_str().unwrap_or("?"), sh["lease_age_s"]),
            _ => if sh["partial_journal"] == true { "partially done".into() } else { String::new() },
        };
        println!("  {:<40} {:<12} {}", sh["shard"].as_str().unwrap_or(""), sh["state"].as_str().unwrap_or(""), extra);
    }
    if let Some(k) = s["failures_by_kind"].as_object().filter(|k| !k.is_empty()) {
        println!("failures by kind: {}", serde_json::Value::Object(k.clone()));
    }
    Ok(ExitCode::SUCCESS)
}

