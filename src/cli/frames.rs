//! `vidfeat frames VIDEO --out DIR`: the frames a video is sampled to, to check sampling.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use vidfeat_decode::Rational;

#[derive(clap::Args)]
pub struct FramesArgs {
    /// The video file.
    pub video: PathBuf,
    /// Folder for the frames and frames.json (created), or a bucket folder (written in a local
    /// mirror under the temp dir, then pushed).
    #[arg(long)]
    pub out: PathBuf,
    /// WxH; default: the source's displayed size (rotation and sample aspect ratio applied).
    #[arg(long)]
    pub size: Option<String>,
    /// png (one file per row) or rgb24 (one raw file, rows back to back).
    #[arg(long, default_value = "png", value_parser = ["png", "rgb24"])]
    pub format: String,
    /// squash, center-crop or letterbox (matters with --size).
    #[arg(long, default_value = "squash", value_parser = super::args::RESIZE)]
    pub resize: String,
    /// Rows per second of video (e.g. 1, 0.5, 30000/1001).
    #[arg(long, default_value = "1", value_parser = super::args::rate)]
    pub fps: String,
    /// Where to decode: none (the CPU), auto or cuda (NVDEC; see `vidfeat run --help`).
    #[arg(long, default_value = "none", value_parser = ["none", "auto", "cuda"])]
    pub hwdec: String,
    /// exact or keyframes (see `vidfeat run --help`).
    #[arg(long, default_value = "exact", value_parser = ["exact", "keyframes"])]
    pub sampling: String,
    /// Clip rows, as a clip model's (e.g. i3d-kinetics-400: 16): each row is this many frames
    /// at --clip-fps, written frame_KKKKK_JJ.png (row k, frame j) or back to back in rgb24.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub clip: Option<u32>,
    /// Frames per second within a clip row (with --clip).
    #[arg(long, default_value = "25", value_parser = super::args::rate, requires = "clip")]
    pub clip_fps: String,
    /// Cap on rows (0 = no cap).
    #[arg(long, default_value_t = 0)]
    pub max_frames: u64,
    /// Clip window start, seconds.
    #[arg(long)]
    pub start: Option<f64>,
    /// Clip window end, seconds.
    #[arg(long)]
    pub end: Option<f64>,
}

pub fn exec(a: FramesArgs) -> Result<ExitCode> {
    let folder = vidfeat::mirror::Folder::open(&a.out, None, true).with_context(|| format!("--out {}", a.out.display()))?;
    let fps = Rational::parse(&a.fps).with_context(|| format!("--fps `{}` is not a positive number or ratio", a.fps))?;
    anyhow::ensure!(a.format == "png" || a.format == "rgb24", "--format must be png or rgb24");
    let window = match (a.start, a.end) {
        (None, None) => None,
        (s, e) => Some((s.unwrap_or(0.0), e.unwrap_or(f64::INFINITY))),
    };
    let cfg = vidfeat::pipeline::frames::FramesConfig {
        video: a.video,
        out: folder.local.clone(),
        size: a.size.as_deref().map(parse_size).transpose()?,
        raw: a.format == "rgb24",
        resize: a.resize.parse().map_err(anyhow::Error::msg)?,
        fps,
        sampling: a.sampling.parse().map_err(anyhow::Error::msg)?,
        hwdec: a.hwdec.parse().map_err(anyhow::Error::msg)?,
        max_frames: a.max_frames,
        window,
        clip: a.clip.map(|n| (n, Rational::parse(&a.clip_fps).expect("checked at parse time"))),
    };
    let written = vidfeat::pipeline::frames::write_frames(&cfg);
    folder.publish()?;
    let (rows, w, h) = written?;
    let what = if a.clip.is_some() { "clip row" } else { "row" };
    println!("{} ({w}x{h}) written to {}", vidfeat::telemetry::count(rows, what), a.out.display());
    Ok(ExitCode::SUCCESS)
}

fn parse_size(s: &str) -> Result<(u32, u32)> {
    let (w, h) = s.split_once(['x', 'X']).with_context(|| format!("--size `{s}` is not WxH"))?;
    let (w, h): (u32, u32) = (w.trim().parse()?, h.trim().parse()?);
    anyhow::ensure!(w > 0 && h > 0 && w <= 16384 && h <= 16384, "--size `{s}` out of range");
    Ok((w, h))
}
