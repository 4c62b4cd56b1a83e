//! The `vidfeat` command line. Only this file knows clap and exit codes.
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
#[cfg(feature = "ffmpeg")]
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use serde_json::json;

use vidfeat::{ConsumeConfig, JobSpec, Outcome, RunReport};
#[cfg(feature = "ffmpeg")]
use vidfeat_decode::Rational;

const EXIT_CODES: &str = "Exit codes:
  0  every video succeeded
  1  the run could not start or stopped (bad arguments or settings, unreadable list, model or output problem)
  2  some videos failed (see OUT/failures.jsonl); the rest were written
  3  no video succeeded (or there was none)";

const SETTINGS: &str = "Settings: every option can also come from a settings file (--config, else ./vidfeat.toml: top-level
keys for every subcommand, or a [run] / [work] / [pca.fit] ... table) and from VIDFEAT_<OPTION>
environment variables (VIDFEAT_BATCH_SIZE=64). Flags override the file; the environment overrides
both. --print-config shows the effective settings and where each came from.";

#[derive(Parser)]
#[command(name = "vidfeat", version, about = "Video lists in, YouTube-8M-compatible TFRecords of CNN frame features out",
          after_help = format!("Example:\n  vidfeat run data-samples/kinetics-400_sample.csv --vocab kinetics-400 --out out && vidfeat report out --out out/report.html\n\n{SETTINGS}\n\n{EXIT_CODES}"))]
struct Cli {
    /// Settings file (TOML; default: ./vidfeat.toml when it exists).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Print the effective settings (a valid settings file, each value's source noted) and exit.
    #[arg(long, global = true)]
    print_config: bool,
    /// Progress display: auto (bars on a terminal, else a log line every --progress-interval),
    /// always (bars), never.
    #[arg(value_enum, long, global = true, default_value = "auto")]
    progress: vidfeat::telemetry::ProgressMode,
    /// Seconds between progress log lines when no bars are drawn (0: none).
    #[arg(long, global = true, default_value_t = 30)]
    progress_interval: u64,
    /// Log lines on stderr: text, or json (one object per line, for log collectors). Levels
    /// and modules filter with RUST_LOG (default info).
    #[arg(value_enum, long, global = true, default_value = "text")]
    log_format: vidfeat::telemetry::LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Decode, extract features, reduce, quantize and write shards.
    #[cfg(feature = "ffmpeg")]
    #[command(after_help = "Example:\n  vidfeat run data-samples/kinetics-400_sample.csv --video-root data-samples/videos --vocab kinetics-400 --out out\n\n".to_string() + EXIT_CODES)]
    Run(RunArgs),
    /// Decode and sample only, into a zstd frame cache for `vidfeat extract` (on a GPU node).
    #[cfg(feature = "ffmpeg")]
    #[command(after_help = "Example:\n  vidfeat decode data-samples/samples.csv --vocab kinetics-400 --cache /scratch/frames\n  vidfeat extract --cache /scratch/frames --out out --device cuda\n\nExit codes: 0 every video decoded; 1 could not start; 2 some videos failed (CACHE/failures.jsonl); 3 none decoded.")]
    Decode(DecodeArgs),
    /// Features, PCA and shards from a frame cache made by `vidfeat decode` (no FFmpeg needed).
    #[command(after_help = "Example:\n  vidfeat extract --cache /scratch/frames --out out --device cuda --fp16\n\n".to_string() + EXIT_CODES)]
    Extract(ExtractArgs),
    /// Write the frames a video is sampled to (PNG per row, or one raw rgb24 file) plus
    /// frames.json (per row: index, time, source pts, source frame number), to check sampling.
    #[cfg(feature = "ffmpeg")]
    #[command(after_help = "Example:\n  vidfeat frames data-samples/videos/mmaction2__demo.mp4 --out /tmp/demo-frames\n  vidfeat frames clip.mp4 --out f --size 224x224 --format rgb24 --start 2 --end 5\n\nExit codes: 0 done; 1 the video could not be decoded (its error kind is named) or written.")]
    Frames(FramesArgs),
    /// Fit a PCA (streaming covariance over a bounded sample of frames).
    #[cfg(feature = "ffmpeg")]
    #[command(subcommand, after_help = "Example:\n  vidfeat pca fit data-samples/videos --out pca.npz --dims 1024 --max-frames 10000\n\nExit codes: 0 fitted; 1 could not.")]
    Pca(PcaCmd),
    /// CNN-only throughput: frames/s of the model on synthetic frames at given batch sizes.
    #[command(name = "cnn-bench", after_help = "Example:\n  vidfeat cnn-bench --batch 32,64 --device cuda --fp16\n\nPrints one JSON line per precision and batch size.\nExit codes: 0 done; 1 the model could not be loaded or run.")]
    CnnBench(CnnBenchArgs),
    /// Resolve and validate lists without decoding: DIR/plan.jsonl (one task per line, with its
    /// shard), DIR/failures.jsonl, and a summary (rows, resolved, missing sources, invalid
    /// rows, unknown labels, counts by split and label).
    #[command(after_help = "Example:\n  vidfeat plan data-samples/kinetics-400_sample.csv --video-root data-samples/videos --vocab kinetics-400 --out plan --json\n\nExit codes: 0 all rows resolved; 2 some problems (listed in DIR/failures.jsonl); 1 with --strict and any problem, or when the lists cannot be read.")]
    Plan(PlanArgs),
    /// Process the shards of a frozen plan: resumable, for Slurm arrays and Kubernetes Indexed Jobs.
    #[cfg(feature = "ffmpeg")]
    #[command(after_help = "Examples:\n  vidfeat work --plan ds --worker-index 3 --num-workers 16\n  vidfeat work --plan ds            # in a Slurm array task or a Kubernetes Indexed Job\n  vidfeat work --plan ds --claim    # take any free shard (leases in ds/leases)\n\nA killed worker resumes where it stopped (finished videos are in ds/journal); finished shards are skipped.\nExit codes: 0 all its shards done; 1 could not run (changed model/PCA, a shard held by another worker with the same index); 2 done, some videos failed.")]
    Work(WorkArgs),
    /// Shards done, in progress (lease age), pending, and failed videos of a plan's output.
    #[command(after_help = "Example:\n  vidfeat status ds\n  vidfeat status ds --json\n\nExit codes: 0 read (whatever the progress); 1 not a plan folder.")]
    Status {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
        /// Leases older than this (seconds since their last heartbeat) count as stale.
        #[arg(long, default_value_t = 120)]
        lease_ttl: u64,
    },
    /// Check every record's CRCs and schema, and record counts per shard against summary.json.
    #[command(after_help = "Example:\n  vidfeat verify out\n  vidfeat verify out/frame/train-00000-of-00004.tfrecord --json\n\nExit codes: 0 all good; 1 any problem (each named with its shard, and byte offset for corrupt records).")]
    Verify {
        /// An output folder, or TFRecord files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// A stratified, reproducible sample of an output folder for quick trainer experiments.
    #[command(after_help = "Example:\n  vidfeat sample --from out --out sample --per-class 20 --seed 1 --format npz\n  vidfeat sample --from out --out wds --per-class 5 --classes 'arm wrestling,abseiling' --format webdataset\n\nFormats: tfrecord (records copied: frame/ and video/ shards), npz (sample.npz: rgb float32 [rows, dims] dequantized, row_video, row_offsets, ids, labels [videos, max_labels] padded with -1, mean_rgb), webdataset (tar shards of {key}.rgb.npy + {key}.json). sample.json lists what was taken; vocabulary.csv goes along.\n\nExit codes: 0 written; 1 could not (no such classes, unreadable shards).")]
    Sample(SampleCmdArgs),
    /// Print the records of TFRecord files as JSON lines (ours or Google's YouTube-8M shards).
    #[command(after_help = "Example:\n  vidfeat inspect out/frame/train-00000-of-00001.tfrecord\n\nExit codes: 0 every record read; 1 a file could not be opened, or a record is corrupt.")]
    Inspect {
        files: Vec<PathBuf>,
        /// Also print the rgb rows (dequantized) of frame-level records.
        #[arg(long)]
        values: bool,
    },
    /// One self-contained HTML page about an output folder: counts, failures by kind, label /
    /// duration / rows histograms, throughput over time, and contact sheets of sampled frames.
    #[command(after_help = "Example:\n  vidfeat report out --out out/report.html\n  vidfeat report ds --out report.html --sheets 100 --thumbs 30 --json\n\nContact sheets decode the local sources of DIR/plan.jsonl again (run and plan folders), with the plan's sampling.\nExit codes: 0 written; 1 DIR is not an output folder, or the page could not be written.")]
    Report {
        /// An output folder of run, work (a plan folder) or extract.
        dir: PathBuf,
        /// The HTML file to write.
        #[arg(long)]
        out: PathBuf,
        /// Videos that get a contact sheet (the first in plan order); 0 for none.
        #[arg(long, default_value_t = 24)]
        sheets: usize,
        /// Thumbnails per contact sheet, at most (a video's first rows).
        #[arg(long, default_value_t = 60)]
        thumbs: usize,
        /// Thumbnail width, pixels.
        #[arg(long, default_value_t = 160)]
        thumb_width: u32,
        /// Print what the page holds as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct ListArgs {
    /// List files (.csv .tsv .jsonl .txt), directories (crawled) and video files.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Where Kinetics annotation rows find their clips (default: the CSV's folder).
    #[arg(long)]
    video_root: Option<PathBuf>,
    /// yt8m, kinetics-400, kinetics-600, kinetics-700, or a vocabulary file.
    #[arg(long)]
    vocab: Option<String>,
    /// Shards per split (default: about 1,000 videos per shard).
    #[arg(long)]
    shards: Option<u32>,
    /// Split for rows that do not name one.
    #[arg(long, default_value = "train")]
    split: String,
    /// Header names of CSV/TSV lists whose columns are named otherwise, e.g.
    /// `id=video_id,source=path,labels=tags`.
    #[arg(long)]
    columns: Option<String>,
    /// Stop before any work when a row is invalid, a label unknown or a local source missing.
    #[arg(long)]
    strict: bool,
    /// Command that fetches a video by id, for rows with an id and no source and Kinetics rows
    /// whose clip is not on disk; `{id}` and `{out}` are replaced (shell-quoted), e.g.
    /// 'yt-dlp -q -f mp4 -o {out} -- {id}'. Runs under `sh -c` with --fetch-cmd-timeout.
    #[arg(long)]
    fetch_cmd: Option<String>,
}

impl ListArgs {
    fn spec(self) -> Result<JobSpec> {
        let columns = match &self.columns {
            Some(c) => vidfeat_ingest::parse_columns(c).map_err(|e| anyhow::anyhow!("--columns: {e}"))?,
            None => Default::default(),
        };
        Ok(JobSpec {
            inputs: self.inputs,
            video_root: self.video_root,
            split: self.split,
            vocab: self.vocab,
            shards: self.shards,
            columns,
            ids_as_sources: self.fetch_cmd.is_some(),
        })
    }
}

/// http(s) sources and --fetch-cmd downloads.
#[cfg(feature = "ffmpeg")]
#[derive(clap::Args)]
struct FetchArgs {
    /// Content cache for downloaded sources (default: OUT/downloads, or CACHE/downloads).
    #[arg(long)]
    fetch_cache: Option<PathBuf>,
    /// Connect and idle-read limit for http(s) sources, seconds.
    #[arg(long, default_value_t = 30)]
    http_timeout: u64,
    /// Limit for one download attempt, seconds.
    #[arg(long, default_value_t = 1800)]
    download_timeout: u64,
    /// Retries (with exponential backoff from 0.5 s) after 5xx, 429, dropped connections,
    /// short bodies and timeouts; partial downloads resume with a Range request.
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// Limit for one --fetch-cmd run, seconds.
    #[arg(long, default_value_t = 1800)]
    fetch_cmd_timeout: u64,
}

#[cfg(feature = "ffmpeg")]
impl FetchArgs {
    fn config(&self, fetch_cmd: Option<String>, max_bytes: u64) -> vidfeat_ingest::fetch::FetchConfig {
        vidfeat_ingest::fetch::FetchConfig {
            dir: self.fetch_cache.clone().unwrap_or_default(),
            io_timeout: Duration::from_secs(self.http_timeout.max(1)),
            total_timeout: Duration::from_secs(self.download_timeout.max(1)),
            retries: self.retries,
            backoff: Duration::from_millis(500),
            max_bytes,
            fetch_cmd,
            fetch_cmd_timeout: Duration::from_secs(self.fetch_cmd_timeout.max(1)),
        }
    }
}

#[cfg(feature = "ffmpeg")]
#[derive(clap::Args)]
struct SampleArgs {
    /// Rows per second of video (e.g. 1, 0.5, 30000/1001).
    #[arg(long, default_value = "1")]
    fps: String,
    /// Cap on rows per video (0 = no cap).
    #[arg(long, default_value_t = 300)]
    max_frames: u64,
    /// squash (YouTube-8M), center-crop or letterbox; default: the model sidecar's.
    #[arg(long)]
    resize: Option<String>,
    /// Videos decoded in parallel (0 = one per core; with the network on the CPU, the cores
    /// --torch-threads leaves, at least one).
    #[arg(long, default_value_t = 0)]
    decode_workers: usize,
    /// FFmpeg threads per decoder (0 = 1 when several workers run, else FFmpeg's choice).
    #[arg(long, default_value_t = 0)]
    decode_threads: usize,
    /// Per-video decode time limit, seconds.
    #[arg(long, default_value_t = vidfeat_decode::DEFAULT_TIMEOUT.as_secs())]
    timeout: u64,
    /// Largest frame accepted, pixels (larger videos fail as too_large).
    #[arg(long, default_value_t = vidfeat_decode::DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
    /// Largest input file, bytes.
    #[arg(long, default_value_t = vidfeat_decode::DEFAULT_MAX_INPUT_BYTES)]
    max_input_bytes: u64,
    /// Longest video accepted, seconds.
    #[arg(long, default_value_t = vidfeat_decode::DEFAULT_MAX_DURATION)]
    max_duration: f64,
    /// Largest estimated decoder frame memory, bytes (frame size in the stream's pixel format
    /// x (16 references + threads + 2)).
    #[arg(long, default_value_t = vidfeat_decode::DEFAULT_MAX_DECODER_BYTES)]
    max_decoder_memory: u64,
}

/// `--decode-workers` / `--decode-threads` with 0 resolved: one worker per core, and one
/// thread each when several run. Several single-threaded decoders beat one frame-threaded
/// decoder: no frame-thread synchronisation and no oversubscription (decode_vs_cli bench).
#[cfg(feature = "ffmpeg")]
fn decode_layout(workers: usize, threads: usize) -> (usize, usize) {
    let workers = match workers {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        w => w,
    };
    (workers, if threads == 0 && workers > 1 { 1 } else { threads })
}

/// Cores split between decoding and a network on the CPU (run, work): `--torch-threads 0` is
/// half the cores (rounded up), `--decode-workers 0` the rest, one single-threaded decoder
/// each. On 2 cores that is 1 + 1, which ran 32.0-33.9 frames/s end to end against 26-29.5
/// with 2 network threads and the decoders competing for the same cores, at 0.95 of the
/// network alone on its one core (docs/BENCHMARKS.md). The network's thread count does not
/// follow --decode-workers: it changes the last bits of the features (MKL's reduction order),
/// and decoding settings must not. With CUDA the network needs no cores: one decoder per core.
/// Returns (decode workers, torch threads).
#[cfg(feature = "ffmpeg")]
fn cpu_split(device: &str, decode_workers: usize, torch_threads: usize) -> (usize, usize) {
    let cpu = vidfeat_features::resolve_device(device).map_or(true, |(d, _)| !d.is_cuda());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if !cpu || cores < 2 {
        return (decode_workers, torch_threads);
    }
    let torch = if torch_threads == 0 { cores.div_ceil(2) } else { torch_threads };
    let workers = if decode_workers == 0 { cores.saturating_sub(torch).max(1) } else { decode_workers };
    (workers, torch)
}

#[cfg(feature = "ffmpeg")]
impl SampleArgs {
    fn settings(&self) -> Result<vidfeat::pipeline::DecodeSettings> {
        let (workers, threads) = decode_layout(self.decode_workers, self.decode_threads);
        Ok(vidfeat::pipeline::DecodeSettings {
            fps: Rational::parse(&self.fps).with_context(|| format!("--fps `{}` is not a positive number or ratio", self.fps))?,
            max_frames: self.max_frames,
            resize: self.resize.as_deref().map(str::parse).transpose().map_err(anyhow::Error::msg)?,
            workers,
            threads,
            timeout: Duration::from_secs(self.timeout),
            max_pixels: self.max_pixels,
            max_input_bytes: self.max_input_bytes,
            max_duration: self.max_duration,
            max_decoder_bytes: self.max_decoder_memory,
            fetch: vidfeat_ingest::fetch::FetchConfig { max_bytes: self.max_input_bytes, ..vidfeat_ingest::fetch::FetchConfig::new(PathBuf::new()) },
        })
    }
}

#[derive(clap::Args)]
struct ModelArgs {
    /// TorchScript model returning pre-logit features (default: bundled EfficientNet-Lite0).
    #[arg(long)]
    model: Option<PathBuf>,
    /// The model's sidecar JSON (default: the model path with .json).
    #[arg(long)]
    sidecar: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// libtorch intra-op threads (0 = run/work on the CPU: half the cores, rounded up, the rest
    /// decode; else libtorch's choice). The last bits of CPU features depend on it: give the
    /// same value to runs that must match byte for byte.
    #[arg(long, default_value_t = 0)]
    torch_threads: usize,
}

#[derive(clap::Args)]
struct OutputArgs {
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    shape: ShapeArgs,
}

/// Output-shaping options shared by run, extract and plan.
#[derive(clap::Args)]
struct ShapeArgs {
    /// A fitted PCA: our .npz, or a folder with YouTube-8M's mean.npy/eigenvals.npy/eigenvecs.npy.
    /// Without it, one is fitted on the first frames (run: in-stream; plan: before freezing)
    /// and saved as OUT/pca.npz.
    #[arg(long)]
    pca: Option<PathBuf>,
    /// Dimensions kept after PCA (default 1024, or the model's dim if smaller).
    #[arg(long)]
    pca_dims: Option<usize>,
    /// How many frames the PCA is fitted on when no --pca is given.
    #[arg(long, default_value_t = 10_000)]
    pca_sample_frames: usize,
    /// Frames per CNN batch (run: batches cross video boundaries); default 8 on the CPU, 64 on CUDA.
    #[arg(long)]
    batch_size: Option<usize>,
    /// none, gzip or zlib: whole-file shard compression, read by TensorFlow with
    /// `TFRecordDataset(files, compression_type="GZIP"|"ZLIB")`.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Write the 2017 release's context key `video_id` instead of `id`.
    #[arg(long)]
    legacy_2017: bool,
    /// none, or zero: an `audio` feature list of 128-byte placeholder rows (each value reads
    /// back as ~0.0) and a zero `mean_audio`, for readers that require YouTube-8M's audio.
    #[arg(long, default_value = "none")]
    audio: String,
}

impl ShapeArgs {
    fn audio_zero(&self) -> Result<bool> {
        match self.audio.as_str() {
            "none" => Ok(false),
            "zero" => Ok(true),
            a => anyhow::bail!("--audio `{a}`: expected none or zero"),
        }
    }
}

impl OutputArgs {
    fn consume(&self) -> Result<ConsumeConfig> {
        let sh = &self.shape;
        Ok(ConsumeConfig {
            compression: sh.compression.parse().map_err(anyhow::Error::msg)?,
            schema: vidfeat_export::Schema { legacy_2017: sh.legacy_2017, audio_zero: sh.audio_zero()? },
            out: self.out.clone(),
            batch_size: sh.batch_size,
            pca: sh.pca.clone(),
            pca_dims: sh.pca_dims,
            pca_sample_frames: sh.pca_sample_frames.max(2),
        })
    }
}

#[cfg(feature = "ffmpeg")]
#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    list: ListArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sample: SampleArgs,
    #[command(flatten)]
    fetch: FetchArgs,
}

#[cfg(feature = "ffmpeg")]
#[derive(clap::Args)]
struct DecodeArgs {
    #[command(flatten)]
    list: ListArgs,
    /// The frame cache folder to write.
    #[arg(long)]
    cache: PathBuf,
    #[command(flatten)]
    fetch: FetchArgs,
    /// Sidecar of the model the frames are for (sets the frame size; default: the bundled model's).
    #[arg(long)]
    sidecar: Option<PathBuf>,
    /// zstd level of the cache.
    #[arg(long, default_value_t = 3)]
    zstd_level: i32,
    #[command(flatten)]
    sample: SampleArgs,
}

#[derive(clap::Args)]
struct ExtractArgs {
    /// A frame cache made by `vidfeat decode`.
    #[arg(long)]
    cache: PathBuf,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// Half precision on CUDA (where the model sidecar allows it).
    #[arg(long)]
    fp16: bool,
}

#[cfg(feature = "ffmpeg")]
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

#[cfg(feature = "ffmpeg")]
#[derive(Subcommand)]
enum PcaCmd {
    /// Decode and extract features from the inputs and fit PCA with whitening on at most
    /// --max-frames frames. --out ending in .npz writes our file; anything else a folder with
    /// YouTube-8M's mean.npy, eigenvals.npy and eigenvecs.npy.
    #[command(after_help = "Example:\n  vidfeat pca fit data-samples/videos --out pca.npz --dims 1024 --max-frames 10000\n  vidfeat run list.csv --pca pca.npz --out out\n\nExit codes: 0 fitted; 1 could not (fewer than 2 frames decoded, model problem).")]
    Fit(PcaFitArgs),
}

#[cfg(feature = "ffmpeg")]
#[derive(clap::Args)]
struct PcaFitArgs {
    #[command(flatten)]
    list: ListArgs,
    /// pca.npz, or a folder for YouTube-8M's three .npy files.
    #[arg(long)]
    out: PathBuf,
    /// Components kept (at most the model's output dim).
    #[arg(long, default_value_t = 1024)]
    dims: usize,
    /// Frames sampled for the covariance (the first ones, in list order).
    #[arg(long = "max-frames", default_value_t = 100_000)]
    pca_frames: usize,
    /// Frames per CNN batch.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sample: PcaSampleArgs,
}

/// Sampling for `pca fit` (no per-video cap by default).
#[cfg(feature = "ffmpeg")]
#[derive(clap::Args)]
struct PcaSampleArgs {
    #[arg(long, default_value = "1")]
    fps: String,
    /// Cap on rows per video (0 = no cap).
    #[arg(long, default_value_t = 300)]
    max_rows_per_video: u64,
    /// Videos decoded in parallel (0 = one per core; with the network on the CPU, the cores
    /// --torch-threads leaves, at least one).
    #[arg(long, default_value_t = 0)]
    decode_workers: usize,
}

#[derive(clap::Args)]
struct CnnBenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Batch sizes to time, comma-separated.
    #[arg(long, default_value = "32")]
    batch: String,
    /// Seconds to time each batch size for (after one warm-up batch).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Also time half precision (CUDA only).
    #[arg(long)]
    fp16: bool,
}

/// With --strict, plans first (into a scratch folder) and refuses to start on any problem.
#[cfg(feature = "ffmpeg")]
fn strict_spec(list: ListArgs) -> Result<JobSpec> {
    let strict = list.strict;
    let spec = list.spec()?;
    if strict {
        let scratch = std::env::temp_dir().join(format!("vidfeat-strict-{}", std::process::id()));
        let s = vidfeat::jobs::plan(&spec, &scratch)?;
        let problems: Vec<String> = std::fs::read_to_string(scratch.join("failures.jsonl"))?.lines().take(5).map(str::to_string).collect();
        let _ = std::fs::remove_dir_all(&scratch);
        let n = plan_problems(&s);
        anyhow::ensure!(n == 0, "--strict: {n} problem(s) in the lists, nothing done; first ones:\n{}", problems.join("\n"));
    }
    Ok(spec)
}

#[derive(clap::Args)]
struct PlanArgs {
    #[command(flatten)]
    list: ListArgs,
    #[arg(long)]
    out: PathBuf,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Only resolve and validate: no PCA fit and no plan.json, which `vidfeat work` needs.
    /// (Without FFmpeg support every plan is a dry run.)
    #[arg(long)]
    dry_run: bool,
    #[cfg(feature = "ffmpeg")]
    #[command(flatten)]
    model: ModelArgs,
    #[cfg(feature = "ffmpeg")]
    #[command(flatten)]
    sample: SampleArgs,
    #[cfg(feature = "ffmpeg")]
    #[command(flatten)]
    shape: ShapeArgs,
}

/// List problems a plan summary counts (what `--strict` refuses).
fn plan_problems(s: &serde_json::Value) -> u64 {
    ["missing_source", "invalid_row", "duplicate_id", "unknown_label"].iter().map(|k| s[k].as_u64().unwrap_or(0)).sum()
}

fn plan_cmd(a: PlanArgs) -> Result<ExitCode> {
    let (list, out, json_out) = (a.list, a.out.clone(), a.json);
    let strict = list.strict;
    let fetch_cmd = list.fetch_cmd.clone();
    let spec = list.spec()?;
    let s = vidfeat::jobs::plan(&spec, &out)?;
    let problems = plan_problems(&s);
    #[cfg(feature = "ffmpeg")]
    if !a.dry_run && !(strict && problems > 0) {
        let f = freeze_config(&a.model, &a.sample, &a.shape, fetch_cmd)?;
        if let Err(failures) = vidfeat::pipeline::freeze(&spec, &out, &f, &s)? {
            anyhow::bail!("plan: no video could be decoded to fit a PCA ({} failed; see above), give --pca", failures.len());
        }
        if !json_out {
            println!("frozen: {} (run `vidfeat work --plan {}` on each worker)", out.join("plan.json").display(), out.display());
        }
    }
    #[cfg(not(feature = "ffmpeg"))]
    let _ = (a.dry_run, fetch_cmd);
    if json_out {
        println!("{s}");
    } else {
        println!(
            "{} rows: {} resolved, {} missing sources, {} invalid rows, {} duplicate ids, {} unknown labels",
            s["rows"], s["resolved"], s["missing_source"], s["invalid_row"], s["duplicate_id"], s["unknown_label"]
        );
        println!("by split: {}", s["by_split"]);
        println!("plan: {}  problems: {}", out.join("plan.jsonl").display(), out.join("failures.jsonl").display());
    }
    Ok(ExitCode::from(match (problems, strict) {
        (0, _) => 0,
        (_, true) => 1,
        _ => 2,
    }))
}

/// What shapes the output, from the flags of run and plan.
#[cfg(feature = "ffmpeg")]
fn freeze_config(model: &ModelArgs, sample: &SampleArgs, shape: &ShapeArgs, fetch_cmd: Option<String>) -> Result<vidfeat::pipeline::FreezeConfig> {
    Ok(vidfeat::pipeline::FreezeConfig {
        model: model_path(model),
        sidecar: model.sidecar.clone(),
        device: model.device.clone(),
        decode: sample.settings()?,
        fps: sample.fps.clone(),
        resize: sample.resize.clone(),
        pca: shape.pca.clone(),
        pca_dims: shape.pca_dims,
        pca_sample_frames: shape.pca_sample_frames.max(2),
        batch_size: shape.batch_size,
        compression: shape.compression.clone(),
        legacy_2017: shape.legacy_2017,
        audio_zero: shape.audio_zero()?,
        fetch_cmd,
    })
}

#[cfg(feature = "ffmpeg")]
#[derive(clap::Args)]
struct WorkArgs {
    /// The plan folder (from `vidfeat plan ... --out DIR`); the output goes there too.
    #[arg(long)]
    plan: PathBuf,
    /// This worker's index (default: SLURM_ARRAY_TASK_ID, else JOB_COMPLETION_INDEX).
    #[arg(long)]
    worker_index: Option<usize>,
    /// How many workers share the plan (default: SLURM_ARRAY_TASK_COUNT, else VIDFEAT_NUM_WORKERS).
    #[arg(long)]
    num_workers: Option<usize>,
    /// Claim shards dynamically with lease files instead of a static index.
    #[arg(long)]
    claim: bool,
    /// A lease with no heartbeat for this long (seconds) is taken over.
    #[arg(long, default_value_t = 120)]
    lease_ttl: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// libtorch intra-op threads (0 = run/work on the CPU: half the cores, rounded up, the rest
    /// decode; else libtorch's choice). The last bits of CPU features depend on it: give the
    /// same value to runs that must match byte for byte.
    #[arg(long, default_value_t = 0)]
    torch_threads: usize,
    /// Videos decoded in parallel (0 = one per core; with the network on the CPU, the cores
    /// --torch-threads leaves, at least one).
    #[arg(long, default_value_t = 0)]
    decode_workers: usize,
    /// FFmpeg threads per decoder (0 = 1 when several workers run, else FFmpeg's choice).
    #[arg(long, default_value_t = 0)]
    decode_threads: usize,
    #[command(flatten)]
    fetch: FetchArgs,
    #[arg(long)]
    json: bool,
}

#[cfg(feature = "ffmpeg")]
fn work_cmd(a: WorkArgs) -> Result<ExitCode> {
    let assignment = if a.claim {
        vidfeat::work::Assignment::Claim
    } else {
        let (index, count) = vidfeat::work::worker_slot(a.worker_index, a.num_workers, &|k| std::env::var(k).ok())?;
        vidfeat::work::Assignment::Static { index, count }
    };
    let (decode_workers, torch_threads) = cpu_split(&a.device, a.decode_workers, a.torch_threads);
    let (workers, threads) = decode_layout(decode_workers, a.decode_threads);
    let cfg = vidfeat::pipeline::WorkConfig {
        dir: a.plan.clone(),
        assignment,
        lease_ttl: Duration::from_secs(a.lease_ttl.max(1)),
        device: a.device,
        torch_threads,
        workers,
        threads,
        fetch: a.fetch.config(None, u64::MAX),
    };
    let r = vidfeat::pipeline::work(&cfg)?;
    if a.json {
        println!("{r}");
    } else {
        tracing::info!(
            "worker: {} shard(s) processed, {} already done, {} held by others; plan complete: {}",
            r["processed"].as_array().map(Vec::len).unwrap_or(0),
            r["skipped_done"],
            r["busy"].as_array().map(Vec::len).unwrap_or(0),
            r["complete"]
        );
    }
    Ok(ExitCode::from(if r["failed"].as_u64().unwrap_or(0) > 0 { 2 } else { 0 }))
}

fn status_cmd(dir: PathBuf, json_out: bool, ttl: u64) -> Result<ExitCode> {
    let s = vidfeat::work::status(&dir, std::time::Duration::from_secs(ttl.max(1)))?;
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
            Some("done") => format!("{} videos, {} failed", sh["videos"], sh["failed"]),
            Some("in_progress") | Some("stale_lease") => format!("{} (heartbeat {} s ago)", sh["owner"].as_str().unwrap_or("?"), sh["lease_age_s"]),
            _ => if sh["partial_journal"] == true { "partially done".into() } else { String::new() },
        };
        println!("  {:<40} {:<12} {}", sh["shard"].as_str().unwrap_or(""), sh["state"].as_str().unwrap_or(""), extra);
    }
    if let Some(k) = s["failures_by_kind"].as_object().filter(|k| !k.is_empty()) {
        println!("failures by kind: {}", serde_json::Value::Object(k.clone()));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
struct SampleCmdArgs {
    /// A `vidfeat run` (or extract) output folder.
    #[arg(long)]
    from: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Videos per class.
    #[arg(long)]
    per_class: usize,
    /// Classes to sample (names, KG ids or indices, comma-separated); default: all that occur.
    #[arg(long, value_delimiter = ',')]
    classes: Vec<String>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// tfrecord, npz or webdataset.
    #[arg(long, default_value = "tfrecord")]
    format: String,
    /// Samples per WebDataset tar shard.
    #[arg(long, default_value_t = 1000)]
    shard_size: usize,
    /// Print sample.json on stdout.
    #[arg(long)]
    json: bool,
}

fn sample_cmd(a: SampleCmdArgs) -> Result<ExitCode> {
    let cfg = vidfeat::sample::SampleConfig {
        from: a.from,
        out: a.out.clone(),
        per_class: a.per_class,
        classes: a.classes,
        seed: a.seed,
        format: a.format.parse().map_err(anyhow::Error::msg)?,
        shard_size: a.shard_size,
    };
    let m = vidfeat::sample::sample(&cfg)?;
    if a.json {
        println!("{}", serde_json::to_string(&m)?);
    } else {
        println!(
            "{} videos, {} rows from {} classes into {} ({})",
            m["videos"],
            m["rows"],
            m["classes"].as_array().map(Vec::len).unwrap_or(0),
            a.out.display(),
            m["format"].as_str().unwrap_or("")
        );
        if let Some(s) = m["classes_short"].as_array().filter(|s| !s.is_empty()) {
            println!("{} classes have fewer than {} videos in the source (all were taken)", s.len(), cfg.per_class);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn verify_cmd(paths: Vec<PathBuf>, json_out: bool) -> Result<ExitCode> {
    let (r, ok) = vidfeat::verify::verify(&paths)?;
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

fn model_path(m: &ModelArgs) -> PathBuf {
    m.model.clone().unwrap_or_else(vidfeat::default_model)
}

fn report(r: RunReport, json_out: bool, out: &std::path::Path) -> Result<ExitCode> {
    let s = &r.summary;
    if json_out {
        println!("{}", serde_json::to_string(s)?);
    } else {
        println!(
            "{} videos ok, {} failed, {} rows ({} s of video) in {:.1} s ({:.1} frames/s)",
            s["videos_ok"], s["videos_failed"], s["rows"], s["seconds_of_video"], s["wall_time_s"].as_f64().unwrap_or(0.0),
            s["throughput"]["frames_per_s"].as_f64().unwrap_or(0.0)
        );
        println!("output: {}", out.display());
        if s["videos_failed"].as_u64().unwrap_or(0) > 0 {
            println!("failures: {}", out.join("failures.jsonl").display());
        }
    }
    Ok(ExitCode::from(match r.outcome {
        Outcome::AllOk => 0,
        Outcome::SomeFailed => 2,
        Outcome::NoneOk => 3,
    }))
}

#[cfg(feature = "ffmpeg")]
fn run_cmd(mut a: RunArgs) -> Result<ExitCode> {
    (a.sample.decode_workers, a.model.torch_threads) = cpu_split(&a.model.device, a.sample.decode_workers, a.model.torch_threads);
    let fetch_cmd = a.list.fetch_cmd.clone();
    let mut freeze = freeze_config(&a.model, &a.sample, &a.output.shape, fetch_cmd.clone())?;
    freeze.decode.fetch = a.fetch.config(fetch_cmd, a.sample.max_input_bytes);
    let out = a.output.out.clone();
    let cfg = vidfeat::pipeline::RunConfig {
        work: vidfeat::pipeline::WorkConfig {
            dir: out.clone(),
            assignment: vidfeat::work::Assignment::Static { index: 0, count: 1 },
            lease_ttl: Duration::from_secs(120),
            device: a.model.device.clone(),
            torch_threads: a.model.torch_threads,
            workers: freeze.decode.workers,
            threads: freeze.decode.threads,
            fetch: freeze.decode.fetch.clone(),
        },
        freeze,
        out: out.clone(),
        jobs: strict_spec(a.list)?,
    };
    report(vidfeat::pipeline::run(&cfg)?, a.output.json, &out)
}

#[cfg(feature = "ffmpeg")]
fn decode_cmd(a: DecodeArgs) -> Result<ExitCode> {
    let mut decode = a.sample.settings()?;
    decode.fetch = a.fetch.config(a.list.fetch_cmd.clone(), a.sample.max_input_bytes);
    let cfg = vidfeat::pipeline::DecodeToCacheConfig {
        cache: a.cache.clone(),
        sidecar: a.sidecar.clone().unwrap_or_else(|| vidfeat::default_model().with_extension("json")),
        decode,
        zstd_level: a.zstd_level,
        jobs: strict_spec(a.list)?,
    };
    let s = vidfeat::pipeline::decode_to_cache(&cfg)?;
    println!("{} videos decoded, {} failed, {} rows, into {}", s["videos_ok"], s["videos_failed"], s["rows"], a.cache.display());
    let (ok, failed) = (s["videos_ok"].as_u64().unwrap_or(0), s["videos_failed"].as_u64().unwrap_or(0));
    Ok(ExitCode::from(if ok == 0 { 3 } else if failed > 0 { 2 } else { 0 }))
}

#[cfg(feature = "ffmpeg")]
fn pca_fit_cmd(a: PcaFitArgs) -> Result<ExitCode> {
    let decode = SampleArgs {
        fps: a.sample.fps.clone(),
        max_frames: a.sample.max_rows_per_video,
        resize: None,
        decode_workers: a.sample.decode_workers,
        decode_threads: 0,
        timeout: vidfeat_decode::DEFAULT_TIMEOUT.as_secs(),
        max_pixels: vidfeat_decode::DEFAULT_MAX_PIXELS,
        max_input_bytes: vidfeat_decode::DEFAULT_MAX_INPUT_BYTES,
        max_duration: vidfeat_decode::DEFAULT_MAX_DURATION,
        max_decoder_memory: vidfeat_decode::DEFAULT_MAX_DECODER_BYTES,
    }
    .settings()?;
    let cfg = vidfeat::pipeline::PcaFitConfig {
        out: a.out.clone(),
        dims: a.dims,
        max_frames: a.pca_frames.max(2),
        model: model_path(&a.model),
        sidecar: a.model.sidecar.clone(),
        device: a.model.device.clone(),
        decode,
        batch_size: a.batch_size,
        jobs: a.list.spec()?,
        log_list_problems: true,
    };
    let s = vidfeat::pipeline::pca_fit(&cfg)?;
    println!("{s}");
    anyhow::ensure!(s["sha256"].is_string(), "no PCA written: {} frame(s) decoded, at least 2 needed", s["frames"]);
    Ok(ExitCode::SUCCESS)
}

fn extract_cmd(a: ExtractArgs) -> Result<ExitCode> {
    let cfg = vidfeat::extract::ExtractConfig {
        cache: a.cache.clone(),
        consume: a.output.consume()?,
        model: model_path(&a.model),
        sidecar: a.model.sidecar.clone(),
        device: a.model.device.clone(),
        torch_threads: a.model.torch_threads,
        fp16: a.fp16,
    };
    report(vidfeat::extract::extract(&cfg)?, a.output.json, &cfg.consume.out)
}

fn cnn_bench_cmd(a: CnnBenchArgs) -> Result<ExitCode> {
    let (device, note) = vidfeat_features::resolve_device(&a.model.device).map_err(anyhow::Error::msg)?;
    if let Some(n) = note {
        tracing::warn!("{n}");
    }
    if a.model.torch_threads > 0 {
        tch::set_num_threads(a.model.torch_threads as i32);
    }
    let batches: Vec<usize> = a.batch.split(',').map(|b| b.trim().parse()).collect::<Result<_, _>>().context("--batch")?;
    let precisions: &[bool] = if a.fp16 { &[false, true] } else { &[false] };
    for &half in precisions {
        let mut m = vidfeat_features::Model::load(&model_path(&a.model), a.model.sidecar.as_deref(), device)?;
        if half {
            m.use_half()?;
        }
        let (w, h) = m.input_wh();
        for &b in &batches {
            // Deterministic synthetic frames (the network's speed does not depend on content).
            let frames: Vec<u8> = (0..b * (w * h * 3) as usize).map(|i| (i * 7 % 251) as u8).collect();
            m.extract(&frames, b)?;
            // As the pipeline runs it: each batch is submitted before the previous one is
            // waited for (on CUDA the upload overlaps the network).
            let t = std::time::Instant::now();
            let mut n = 0usize;
            let mut in_flight = m.submit(&frames, b)?;
            while t.elapsed().as_secs_f64() < a.seconds || n == 0 {
                let next = m.submit(&frames, b)?;
                m.finish(std::mem::replace(&mut in_flight, next))?;
                n += b;
            }
            m.finish(in_flight)?;
            n += b;
            let fps = n as f64 / t.elapsed().as_secs_f64();
            println!(
                "{}",
                json!({"model": m.sidecar.name, "device": format!("{device:?}"), "precision": if half { "fp16" } else { "fp32" },
                       "batch": b, "frames": n, "frames_per_s": (fps * 10.0).round() / 10.0, "threads": tch::get_num_threads(), "transfer": m.transfer})
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "ffmpeg")]
fn parse_size(s: &str) -> Result<(u32, u32)> {
    let (w, h) = s.split_once(['x', 'X']).with_context(|| format!("--size `{s}` is not WxH"))?;
    let (w, h): (u32, u32) = (w.trim().parse()?, h.trim().parse()?);
    anyhow::ensure!(w > 0 && h > 0 && w <= 16384 && h <= 16384, "--size `{s}` out of range");
    Ok((w, h))
}


#[cfg(feature = "ffmpeg")]
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
        let (mut rdr, _) = vidfeat_export::open_records(&f).with_context(|| format!("opening {}", f.display()))?;
        let mut n = 0usize;
        loop {
            let offset = rdr.offset();
            let rec = match rdr.read_record() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    tracing::error!("{}: {e}", f.display());
                    bad = true;
                    break;
                }
            };
            let p = match vidfeat_export::parse_record(&rec) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!("{}: record {n} at byte {offset}: {e}", f.display());
                    bad = true;
                    n += 1;
                    continue;
                }
            };
            let mut v = json!({"file": f.display().to_string(), "record": n, "level": p.level, "id": p.id, "labels": p.labels});
            if p.level == "frame" {
                v["rows"] = json!(p.lists.get("rgb").map(|x| x.0).unwrap_or(0));
                v["features"] = p.lists.iter().map(|(k, (rows, width))| (k.clone(), json!({"rows": rows, "bytes_per_row": width}))).collect();
                if !p.segments.is_empty() {
                    v["segments"] = p.segments.iter().map(|s| json!({"start": s.start, "end": s.start + vidfeat_export::SEGMENT_ROWS, "label": s.label, "score": s.score})).collect();
                }
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
    // Deterministic CPU features: MKL and OpenMP may otherwise use fewer threads when the
    // machine is busy, which changes the order of float sums and so the last bits of a
    // feature (found by the kill -9 test under load). Set before libtorch first runs.
    for (k, v) in [("MKL_DYNAMIC", "FALSE"), ("OMP_DYNAMIC", "FALSE")] {
        if std::env::var_os(k).is_none() {
            std::env::set_var(k, v);
        }
    }
    // Flags, the settings file and VIDFEAT_* variables, merged; clap parses the result.
    // Usage errors exit 1 like every error that stops a run (clap's own default is 2, which
    // here means "some videos failed"); --help and --version exit 0.
    let usage = |e: clap::Error| -> ExitCode {
        let _ = e.print();
        ExitCode::from(if e.use_stderr() { 1 } else { 0 })
    };
    let resolved = match vidfeat::config::resolve(&Cli::command(), std::env::args_os().collect(), &|k| std::env::var(k).ok(), std::path::Path::new("vidfeat.toml")) {
        Ok(r) => r,
        Err(e) => return usage(e),
    };
    let cli = match Cli::try_parse_from(&resolved.argv) {
        Ok(c) => c,
        Err(e) => {
            if resolved.argv.iter().any(|a| a == "--print-config") {
                // Show what was resolved even when it does not parse, then why.
                print!("{}", vidfeat::config::render(&resolved));
            }
            return usage(e);
        }
    };
    if cli.print_config {
        print!("{}", vidfeat::config::render(&resolved));
        return ExitCode::SUCCESS;
    }
    vidfeat::telemetry::init_logging(cli.log_format);
    // Long-running commands show progress; the display stops (bars cleared) when it drops.
    #[allow(unused_mut)]
    let mut long = matches!(cli.cmd, Cmd::Extract(_));
    #[cfg(feature = "ffmpeg")]
    {
        long |= matches!(cli.cmd, Cmd::Run(_) | Cmd::Decode(_) | Cmd::Work(_) | Cmd::Pca(_));
    }
    let display = long.then(|| vidfeat::telemetry::Display::start(cli.progress, std::time::Duration::from_secs(cli.progress_interval)));
    let r = match cli.cmd {
        #[cfg(feature = "ffmpeg")]
        Cmd::Run(a) => run_cmd(a),
        #[cfg(feature = "ffmpeg")]
        Cmd::Decode(a) => decode_cmd(a),
        Cmd::Extract(a) => extract_cmd(a),
        #[cfg(feature = "ffmpeg")]
        Cmd::Frames(a) => frames_cmd(a),
        Cmd::CnnBench(a) => cnn_bench_cmd(a),
        #[cfg(feature = "ffmpeg")]
        Cmd::Pca(PcaCmd::Fit(a)) => pca_fit_cmd(a),
        Cmd::Inspect { files, values } => inspect_cmd(files, values),
        Cmd::Plan(a) => plan_cmd(a),
        #[cfg(feature = "ffmpeg")]
        Cmd::Work(a) => work_cmd(a),
        Cmd::Status { dir, json, lease_ttl } => status_cmd(dir, json, lease_ttl),
        Cmd::Verify { paths, json } => verify_cmd(paths, json),
        Cmd::Sample(a) => sample_cmd(a),
        Cmd::Report { dir, out, sheets, thumbs, thumb_width, json } => report_cmd(vidfeat::report::ReportConfig { dir, out, sheets, thumbs, thumb_width }, json),
    };
    drop(display);
    match r {
        Ok(c) => c,
        // `vidfeat inspect ... | head` is not an error.
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(1)
        }
    }
}

fn report_cmd(cfg: vidfeat::report::ReportConfig, json_out: bool) -> Result<ExitCode> {
    let r = vidfeat::report::report(&cfg)?;
    if json_out {
        println!("{r}");
    } else {
        println!(
            "{}: {} videos, {} failed, {} contact sheets, {} KiB",
            cfg.out.display(),
            r["videos_ok"],
            r["videos_failed"],
            r["contact_sheets"],
            r["bytes"].as_u64().unwrap_or(0) / 1024
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subcommand's --help shows an example and its exit codes; every option of every
    /// subcommand can be set from the environment without clashing with another meaning.
    #[test]
    fn every_subcommand_help_has_an_example_and_exit_codes() {
        fn walk(c: &mut clap::Command, path: String, seen: &mut Vec<String>) {
            let help = c.render_long_help().to_string();
            assert!(help.contains("Example"), "`{path} --help` has no example");
            assert!(help.contains("Exit codes"), "`{path} --help` has no exit codes");
            seen.push(path.clone());
            for s in c.get_subcommands_mut() {
                if s.get_name() != "help" {
                    let p = format!("{path} {}", s.get_name());
                    walk(s, p, seen);
                }
            }
        }
        let mut seen = vec![];
        let mut c = Cli::command();
        c.build();
        walk(&mut c, "vidfeat".into(), &mut seen);
        for want in ["vidfeat report", "vidfeat status", "vidfeat verify", "vidfeat inspect", "vidfeat sample", "vidfeat plan", "vidfeat extract", "vidfeat cnn-bench"] {
            assert!(seen.contains(&want.to_string()), "{want} not checked: {seen:?}");
        }
        #[cfg(feature = "ffmpeg")]
        for want in ["vidfeat run", "vidfeat work", "vidfeat decode", "vidfeat frames", "vidfeat pca", "vidfeat pca fit"] {
            assert!(seen.contains(&want.to_string()), "{want} not checked: {seen:?}");
        }
    }

    #[test]
    fn command_names_for_print_config() {
        let name = |v: &[&str]| vidfeat::config::resolve(&Cli::command(), v.iter().map(std::ffi::OsString::from).collect(), &|_| None, std::path::Path::new("/nonexistent/vidfeat.toml")).unwrap().command;
        assert_eq!(name(&["vidfeat", "--log-format=json", "status", "dir"]), "status");
        #[cfg(feature = "ffmpeg")]
        assert_eq!(name(&["vidfeat", "pca", "fit", "x", "--out", "p.npz"]), "pca fit");
    }
}
