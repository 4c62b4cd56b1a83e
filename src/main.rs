//! The `vidfeat` command line. Only this file knows clap and exit codes.
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde_json::json;

use vidfeat::{Outcome, RunConfig};
use vidfeat_decode::Rational;

const EXIT_CODES: &str = "Exit codes:
  0  every video succeeded
  1  the run could not start or stopped (bad arguments, unreadable list, model or output problem)
  2  some videos failed (see OUT/failures.jsonl); the rest were written
  3  no video succeeded (or there was none)";

#[derive(Parser)]
#[command(name = "vidfeat", version, about = "Video lists in, YouTube-8M-compatible TFRecords of CNN frame features out", after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Decode, extract features, reduce, quantize and write shards.
    #[command(after_help = "Example:\n  vidfeat run data-samples/kinetics.csv --video-root data-samples/videos --vocab kinetics-400 --out out\n\n".to_string() + EXIT_CODES)]
    Run(RunArgs),
    /// Write the frames a video is sampled to (PNG per row, or one raw rgb24 file) plus
    /// frames.json (per row: index, time, source pts, source frame number), to check sampling.
    #[command(after_help = "Example:\n  vidfeat frames data-samples/videos/mmaction2__demo.mp4 --out /tmp/demo-frames\n  vidfeat frames clip.mp4 --out f --size 224x224 --format rgb24 --start 2 --end 5")]
    Frames(FramesArgs),
    /// Print the records of TFRecord files as JSON lines (ours or Google's YouTube-8M shards).
    #[command(after_help = "Example:\n  vidfeat inspect out/frame/train-00000-of-00001.tfrecord")]
    Inspect {
        files: Vec<PathBuf>,
        /// Also print the rgb rows (dequantized) of frame-level records.
        #[arg(long)]
        values: bool,
    },
}

#[derive(clap::Args)]
struct FramesArgs {
    video: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// WxH; default: the source's displayed size (rotation and sample aspect ratio applied).
    #[arg(long)]
    size: Option<String>,
    /// png (one file per row) or rgb24 (one raw file, rows back to back).
    #[arg(long, default_value = "png")]
    format: String,
    /// squash, center-crop or letterbox (matters with --size).
    #[arg(long, default_value = "squash")]
    resize: String,
    #[arg(long, default_value = "1")]
    fps: String,
    /// Cap on rows (0 = no cap).
    #[arg(long, default_value_t = 0)]
    max_frames: u64,
    /// Clip window start, seconds.
    #[arg(long)]
    start: Option<f64>,
    /// Clip window end, seconds.
    #[arg(long)]
    end: Option<f64>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// List files (.csv .tsv .jsonl .txt), directories (crawled) and video files.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Where Kinetics annotation rows find their clips (default: the CSV's folder).
    #[arg(long)]
    video_root: Option<PathBuf>,
    /// TorchScript model returning pre-logit features (default: bundled EfficientNet-Lite0).
    #[arg(long)]
    model: Option<PathBuf>,
    /// The model's sidecar JSON (default: the model path with .json).
    #[arg(long)]
    sidecar: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Rows per second of video (e.g. 1, 0.5, 30000/1001).
    #[arg(long, default_value = "1")]
    fps: String,
    /// Cap on rows per video (0 = no cap).
    #[arg(long, default_value_t = 300)]
    max_frames: u64,
    /// squash (YouTube-8M), center-crop or letterbox; default: the model sidecar's.
    #[arg(long)]
    resize: Option<String>,
    /// A fitted PCA: our .npz, or a folder with YouTube-8M's mean.npy/eigenvals.npy/eigenvecs.npy.
    /// Without it, one is fitted on the run's first frames and saved as OUT/pca.npz.
    #[arg(long)]
    pca: Option<PathBuf>,
    /// Dimensions kept after PCA (default 1024, or the model's dim if smaller).
    #[arg(long)]
    pca_dims: Option<usize>,
    /// How many frames the PCA is fitted on when no --pca is given.
    #[arg(long, default_value_t = 10_000)]
    pca_sample_frames: usize,
    /// yt8m, kinetics-400, kinetics-600, kinetics-700, or a vocabulary file.
    #[arg(long)]
    vocab: Option<String>,
    /// Shards per split (default: about 1,000 videos per shard).
    #[arg(long)]
    shards: Option<u32>,
    /// Split for rows that do not name one.
    #[arg(long, default_value = "train")]
    split: String,
    /// Frames per CNN batch (batches cross video boundaries).
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Videos decoded in parallel.
    #[arg(long, default_value_t = 1)]
    decode_workers: usize,
    /// FFmpeg threads per decoder (0 = FFmpeg's choice).
    #[arg(long, default_value_t = 2)]
    decode_threads: usize,
    /// libtorch intra-op threads (0 = libtorch's choice).
    #[arg(long, default_value_t = 0)]
    torch_threads: usize,
    /// Per-video decode time limit, seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

fn run_cmd(a: RunArgs) -> Result<ExitCode> {
    let fps = Rational::parse(&a.fps).with_context(|| format!("--fps `{}` is not a positive number or ratio", a.fps))?;
    let cfg = RunConfig {
        inputs: a.inputs,
        out: a.out,
        video_root: a.video_root,
        model: a.model.unwrap_or_else(vidfeat::default_model),
        sidecar: a.sidecar,
        device: a.device,
        fps,
        max_frames: a.max_frames,
        resize: a.resize.as_deref().map(str::parse).transpose().map_err(anyhow::Error::msg)?,
        pca: a.pca,
        pca_dims: a.pca_dims,
        pca_sample_frames: a.pca_sample_frames.max(2),
        vocab: a.vocab,
        shards: a.shards,
        split: a.split,
        batch_size: a.batch_size,
        decode_workers: a.decode_workers,
        decode_threads: a.decode_threads,
        torch_threads: a.torch_threads,
        timeout: Duration::from_secs(a.timeout),
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let report = vidfeat::run(&cfg)?;
    let s = &report.summary;
    if a.json {
        println!("{}", serde_json::to_string(s)?);
    } else {
        println!(
            "{} videos ok, {} failed, {} rows ({} s of video) in {:.1} s ({:.1} frames/s)",
            s["videos_ok"], s["videos_failed"], s["rows"], s["seconds_of_video"], s["wall_time_s"].as_f64().unwrap_or(0.0),
            s["throughput"]["frames_per_s"].as_f64().unwrap_or(0.0)
        );
        println!("output: {}", cfg.out.display());
        if s["videos_failed"].as_u64().unwrap_or(0) > 0 {
            println!("failures: {}", cfg.out.join("failures.jsonl").display());
        }
    }
    Ok(ExitCode::from(match report.outcome {
        Outcome::AllOk => 0,
        Outcome::SomeFailed => 2,
        Outcome::NoneOk => 3,
    }))
}

fn parse_size(s: &str) -> Result<(u32, u32)> {
    let (w, h) = s.split_once(['x', 'X']).with_context(|| format!("--size `{s}` is not WxH"))?;
    let (w, h): (u32, u32) = (w.trim().parse()?, h.trim().parse()?);
    anyhow::ensure!(w > 0 && h > 0 && w <= 16384 && h <= 16384, "--size `{s}` out of range");
    Ok((w, h))
}

fn frames_cmd(a: FramesArgs) -> Result<ExitCode> {
    use vidfeat_decode::{decode_file, DecodeOptions};
    let fps = Rational::parse(&a.fps).with_context(|| format!("--fps `{}` is not a positive number or ratio", a.fps))?;
    anyhow::ensure!(a.format == "png" || a.format == "rgb24", "--format must be png or rgb24");
    let window = match (a.start, a.end) {
        (None, None) => None,
        (s, e) => Some((s.unwrap_or(0.0), e.unwrap_or(f64::INFINITY))),
    };
    let opts = DecodeOptions {
        fps,
        max_frames: (a.max_frames > 0).then_some(a.max_frames),
        size: a.size.as_deref().map(parse_size).transpose()?,
        resize: a.resize.parse().map_err(anyhow::Error::msg)?,
        window,
        ..Default::default()
    };
    std::fs::create_dir_all(&a.out)?;
    let mut raw = if a.format == "rgb24" { Some(std::io::BufWriter::new(std::fs::File::create(a.out.join("frames.rgb24"))?)) } else { None };
    let mut rows = vec![];
    let mut err: Option<anyhow::Error> = None;
    let (mut w, mut h) = (0, 0);
    let report = decode_file(&a.video, &opts, |f| {
        if err.is_some() {
            return;
        }
        (w, h) = (f.width, f.height);
        let r = match raw.as_mut() {
            Some(out) => out.write_all(&f.rgb).map_err(anyhow::Error::from),
            None => image::RgbImage::from_raw(f.width, f.height, f.rgb.clone())
                .context("frame buffer size")
                .and_then(|img| img.save(a.out.join(format!("frame_{:05}.png", f.index))).map_err(anyhow::Error::from)),
        };
        if let Err(e) = r {
            err = Some(e);
        }
        rows.push(json!({"index": f.index, "time": f.time, "pts": f.source_pts, "source_frame": f.source_frame}));
    })
    .map_err(|e| anyhow::anyhow!("{} ({}): {e}", a.video.display(), e.kind()))?;
    if let Some(e) = err {
        return Err(e);
    }
    if let Some(mut out) = raw {
        out.flush()?;
    }
    let meta = json!({
        "video": a.video.display().to_string(),
        "format": a.format,
        "width": w,
        "height": h,
        "fps": fps.to_f64(),
        "source_width": report.source_width,
        "source_height": report.source_height,
        "rotation": report.rotation,
        "codec": report.codec,
        "duration": report.duration,
        "warnings": report.warnings,
        "rows": rows,
    });
    std::fs::write(a.out.join("frames.json"), serde_json::to_vec_pretty(&meta)?)?;
    println!("{} rows ({w}x{h}) written to {}", report.rows, a.out.display());
    Ok(ExitCode::SUCCESS)
}

fn inspect_cmd(files: Vec<PathBuf>, values: bool) -> Result<ExitCode> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut bad = false;
    for f in files {
        let file = std::fs::File::open(&f).with_context(|| format!("opening {}", f.display()))?;
        let mut rdr = vidfeat_export::RecordReader::new(std::io::BufReader::new(file));
        let mut n = 0usize;
        loop {
            let offset = rdr.offset();
            let rec = match rdr.read_record() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    eprintln!("{}: {e}", f.display());
                    bad = true;
                    break;
                }
            };
            let p = match vidfeat_export::parse_record(&rec) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("{}: record {n} at byte {offset}: {e}", f.display());
                    bad = true;
                    n += 1;
                    continue;
                }
            };
            let mut v = json!({"file": f.display().to_string(), "record": n, "level": p.level, "id": p.id, "labels": p.labels});
            if p.level == "frame" {
                v["rows"] = json!(p.lists.get("rgb").map(|x| x.0).unwrap_or(0));
                v["features"] = p.lists.iter().map(|(k, (rows, width))| (k.clone(), json!({"rows": rows, "bytes_per_row": width}))).collect();
                if values {
                    v["rgb"] = json!(p.rgb.iter().map(|r| vidfeat_features::dequantize(r)).collect::<Vec<_>>());
                }
            } else {
                v["features"] = p.floats.iter().map(|(k, x)| (k.clone(), json!({"len": x.len()}))).collect();
                if let Some(m) = p.floats.get("mean_rgb") {
                    v["mean_rgb_len"] = json!(m.len());
                    if values {
                        v["mean_rgb"] = json!(m);
                    }
                }
            }
            writeln!(out, "{v}")?;
            n += 1;
        }
    }
    out.flush()?;
    Ok(ExitCode::from(if bad { 1 } else { 0 }))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run(a) => run_cmd(a),
        Cmd::Frames(a) => frames_cmd(a),
        Cmd::Inspect { files, values } => inspect_cmd(files, values),
    };
    match r {
        Ok(c) => c,
        // `vidfeat inspect ... | head` is not an error.
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
