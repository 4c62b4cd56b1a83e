//! `vidfeat verify OUT|FILE...`: CRCs, schema and record counts.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// An output folder, or TFRecord files.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

pub fn exec(a: VerifyArgs) -> Result<ExitCode> {
    let (paths, json_out) = (a.paths, a.json);
    let (r, ok) = vidfeat::outputs::verify::verify(&paths)?;
    if json_out {
        println!("{r}");
    } else {
        for p in r["problems"].as_array().into_iter().flatten() {
            println!("problem: {}", p.as_str().unwrap_or(""));
        }
        println!("{} records in {} shard files: {}", r["records"], r["shards"].as_object().map_or(0, |m| m.len()), if ok { "ok" } else { "PROBLEMS" });
    }
    Ok(ExitCode::from(if ok { 0 } else { 1 }))
}

