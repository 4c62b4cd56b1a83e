//! `vidfeat frames`: the frames a video is sampled to (a PNG per row, or one raw rgb24 file)
//! and `frames.json` (per row: index, the row's time and the presentation time of the source
//! frame used, in the source's media timeline and from the origin, and the source frame's
//! number; the window and origin), to check sampling by eye or against another tool.
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::json;

use vidfeat_decode::{decode_file, DecodeOptions, Rational, Resize};

#[derive(Debug, Clone)]
pub struct FramesConfig {
    pub video: PathBuf,
    pub out: PathBuf,
    /// Output size; None: the source's displayed size.
    pub size: Option<(u32, u32)>,
    /// One raw rgb24 file instead of a PNG per row.
    pub raw: bool,
    pub resize: Resize,
    pub fps: Rational,
    pub sampling: vidfeat_decode::Sampling,
    pub hwdec: vidfeat_decode::HwDecode,
    /// 0 = no cap.
    pub max_frames: u64,
    pub window: Option<(f64, f64)>,
    /// Clip rows: frames per clip and their rate (as a clip model's rows).
    pub clip: Option<(u32, Rational)>,
}

/// Writes the frames and frames.json; returns (rows, width, height).
pub fn write_frames(cfg: &FramesConfig) -> Result<(u64, u32, u32)> {
    let opts = DecodeOptions {
        fps: cfg.fps,
        sampling: cfg.sampling,
        hwdec: cfg.hwdec,
        max_frames: (cfg.max_frames > 0).then_some(cfg.max_frames),
        size: cfg.size,
        resize: cfg.resize,
        window: cfg.window,
        clip: cfg.clip,
        ..Default::default()
    };
    if let Some((n, rate)) = cfg.clip {
        vidfeat_decode::check_clip(cfg.fps, n, rate).map_err(anyhow::Error::msg)?;
    }
    std::fs::create_dir_all(&cfg.out)?;
    let mut raw = if cfg.raw { Some(crate::outdir::AtomicFile::create(&cfg.out.join("frames.rgb24"))?) } else { None };
    let mut rows = vec![];
    let mut origin: Option<f64> = None;
    let mut err: Option<anyhow::Error> = None;
    let (mut w, mut h) = (0, 0);
    let report = decode_file(&cfg.video, &opts, |f| {
        if err.is_some() {
            return;
        }
        (w, h) = (f.width, f.height);
        let frame = (f.width * f.height * 3) as usize;
        let r = match raw.as_mut() {
            Some(out) => out.write_all(&f.rgb).map_err(anyhow::Error::from),
            // A clip row: one PNG per frame, frame_KKKKK_JJ.png.
            None => f.rgb.chunks_exact(frame).enumerate().try_for_each(|(j, px)| {
                let name = if f.clip_frames.is_empty() { format!("frame_{:05}.png", f.index) } else { format!("frame_{:05}_{j:02}.png", f.index) };
                let img = image::RgbImage::from_raw(f.width, f.height, px.to_vec()).context("frame buffer size")?;
                let mut png = std::io::Cursor::new(vec![]);
                img.write_to(&mut png, image::ImageFormat::Png)?;
                crate::outdir::write_atomic(&cfg.out.join(name), png.get_ref())
            }),
        };
        if let Err(e) = r {
            err = Some(e);
        }
        // Times in the source's media timeline (what a player or ffprobe shows), and relative to
        // row 0 (what the row index means: time = index / fps).
        let r = |x: f64| (x * 1e6).round() / 1e6;
        let mut row = json!({
            "index": f.index,
            "time": r(f.origin + f.time),
            "pts": r(f.origin + f.source_pts),
            "time_from_origin": r(f.time),
            "pts_from_origin": r(f.source_pts),
            "source_frame": f.source_frame,
        });
        if !f.clip_frames.is_empty() {
            row["clip"] = f.clip_frames.iter().map(|(t, p, n)| json!({"time": r(f.origin + t), "pts": r(f.origin + p), "source_frame": n})).collect();
        }
        rows.push(row);
        origin.get_or_insert(f.origin);
    })
    .map_err(|e| anyhow::anyhow!("{} ({}): {e}", cfg.video.display(), e.kind()))?;
    if let Some(e) = err {
        return Err(e);
    }
    if let Some(out) = raw {
        out.commit()?;
    }
    let meta = json!({
        "video": cfg.video.display().to_string(),
        "format": if cfg.raw { "rgb24" } else { "png" },
        "width": w,
        "height": h,
        "fps": cfg.fps.to_f64(),
        "clip": cfg.clip.map(|(n, rate)| json!({"frames": n, "fps": rate.to_f64()})),
        "sampling": report.sampling.name(),
        "lag_mean_s": report.lag_mean,
        "lag_max_s": report.lag_max,
        "window": cfg.window.map(|(s, e)| json!([s, if e.is_finite() { json!(e) } else { json!(null) }])),
        "origin": origin,
        "source_width": report.source_width,
        "source_height": report.source_height,
        "rotation": report.rotation,
        "codec": report.codec,
        "decoder": report.decoder,
        "duration": report.duration,
        "warnings": report.warnings,
        "rows": rows,
    });
    crate::outdir::write_atomic(&cfg.out.join("frames.json"), &serde_json::to_vec_pretty(&meta)?)?;
    Ok((report.rows, w, h))
}
