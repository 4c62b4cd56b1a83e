//! `vidfeat inspect FILE...`: records as JSON lines.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

#[derive(clap::Args)]
pub struct InspectArgs {
    /// TFRecord files (plain, GZIP or ZLIB).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Also print the values: rgb rows (dequantized) and mean_rgb, and under `values` each
    /// further model's rows and mean (a run with several --model).
    #[arg(long)]
    pub values: bool,
    /// Also print each label's name (`label_names`), from the vocabulary.csv of the output the
    /// shards belong to.
    #[arg(long)]
    pub names: bool,
}

pub fn exec(a: InspectArgs) -> Result<ExitCode> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let files = a.files.iter().map(|f| super::args::readable(f)).collect::<Result<Vec<_>>>()?;
    let good = vidfeat::outputs::inspect::inspect(&files, a.values, a.names, &mut out)?;
    Ok(ExitCode::from(if good { 0 } else { 1 }))
}
