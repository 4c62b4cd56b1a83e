//! `vidfeat inspect FILE...`: records as JSON lines.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

#[derive(clap::Args)]
pub struct InspectArgs {
    pub files: Vec<PathBuf>,
    /// Also print the rgb rows (dequantized) of frame-level records.
    #[arg(long)]
    pub values: bool,
}

pub fn exec(a: InspectArgs) -> Result<ExitCode> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let good = vidfeat::outputs::inspect::inspect(&a.files, a.values, &mut out)?;
    Ok(ExitCode::from(if good { 0 } else { 1 }))
}
