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
