//! `vidfeat verify OUT|FILE...`: CRCs, schema and record counts.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// An output folder, or TFRecord files.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn exec(a: VerifyArgs) -> Result<ExitCode> {
    let (paths, json_out) = (a.paths, a.json);
    let paths = paths.iter().map(|p| super::args::readable(p)).collect::<Result<Vec<_>>>()?;
    let (r, ok) = vidfeat::outputs::verify::verify(&paths)?;
    if json_out {
        println!("{r}");
    } else {
        for p in r["problems"].as_array().into_iter().flatten() {
            println!("problem: {}", p.as_str().unwrap_or(""));
        }
        let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
        println!(
            "{} in {}: {}",
            vidfeat::telemetry::count(n(&r["records"]), "record"),
            vidfeat::telemetry::count(r["shards"].as_object().map_or(0, |m| m.len()) as u64, "shard file"),
            if ok { "ok" } else { "PROBLEMS" }
        );
    }
    Ok(ExitCode::from(if ok { 0 } else { 1 }))
}

