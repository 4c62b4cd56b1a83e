//! `vidfeat report DIR --out report.html`: one self-contained HTML page about an output folder.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

#[derive(clap::Args)]
pub struct ReportArgs {
    /// An output folder of run, work (a plan folder) or extract.
    pub dir: PathBuf,
    /// The HTML file to write (or an object: s3://bucket/report.html, gs://...).
    #[arg(long)]
    pub out: PathBuf,
    /// Videos that get a contact sheet (the first in plan order); 0 for none.
    #[arg(long, default_value_t = 24)]
    pub sheets: usize,
    /// Thumbnails per contact sheet, at most (a video's first rows).
    #[arg(long, default_value_t = 60)]
    pub thumbs: usize,
    /// Thumbnail width, pixels.
    #[arg(long, default_value_t = 160, value_parser = clap::value_parser!(u32).range(16..=1920))]
    pub thumb_width: u32,
    /// Print what the page holds as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn exec(a: ReportArgs) -> Result<ExitCode> {
    let out = vidfeat::mirror::OutFile::open(&a.out)?;
    let cfg = vidfeat::outputs::report::ReportConfig { dir: super::args::readable(&a.dir)?, out: out.local.clone(), sheets: a.sheets, thumbs: a.thumbs, thumb_width: a.thumb_width };
    let json_out = a.json;
    let r = vidfeat::outputs::report::report(&cfg)?;
    out.publish()?;
    if json_out {
        println!("{r}");
    } else {
        println!(
            "{}: {}, {} failed, {}, {} KiB",
            a.out.display(),
            vidfeat::telemetry::count(r["videos_ok"].as_u64().unwrap_or(0), "video"),
            r["videos_failed"],
            vidfeat::telemetry::count(r["contact_sheets"].as_u64().unwrap_or(0), "contact sheet"),
            r["bytes"].as_u64().unwrap_or(0) / 1024
        );
    }
    Ok(ExitCode::SUCCESS)
}

