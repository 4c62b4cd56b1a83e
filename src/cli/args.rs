//! Argument groups shared by several subcommands (lists, fetching, sampling, model, output and
//! its shape), and their conversion into the library's resolved settings.
use std::path::PathBuf;
#[cfg(feature = "ffmpeg")]
use std::time::Duration;

use anyhow::{Context, Result};

use vidfeat::{ConsumeConfig, JobSpec};
#[cfg(feature = "ffmpeg")]
use vidfeat_decode::Rational;

#[derive(clap::Args)]
pub struct ListArgs {
    /// List files (.csv .tsv .jsonl .txt), directories (crawled) and video files.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Where Kinetics annotation rows find their clips (default: the CSV's folder).
    #[arg(long)]
    pub video_root: Option<PathBuf>,
    /// Vocabulary that maps list labels (names or Knowledge-Graph ids) to class indices:
    /// yt8m (YouTube-8M 2019: the 1,000 segment-rated classes with names and KG ids, indexed
    /// in the 3,862-class space); yt8m-2018 (YouTube-8M 2018: all 3,862 classes by name, KG ids
    /// for the 1,000 of the 2019 list); kinetics-400, kinetics-600, kinetics-700 (class names,
    /// index = position in the sorted list); or a file: a YouTube-8M vocabulary.csv (Index,
    /// KnowledgeGraphId, Name) or one class name per line. Without it, labels must be
    /// integer indices.
    #[arg(long)]
    pub vocab: Option<String>,
    /// Shards per split (default: about 1,000 videos per shard).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub shards: Option<u32>,
    /// Split for rows that do not name one (ASCII letters, digits, `_`, `-`, `.`).
    #[arg(long, default_value = "train", value_parser = split_name)]
    pub split: String,
    /// Header names of CSV/TSV lists whose columns are named otherwise, e.g.
    /// `id=video_id,source=path,labels=tags`.
    #[arg(long)]
    pub columns: Option<String>,
    /// Stop before any work when a row is invalid, a label unknown or a local source missing.
    #[arg(long)]
    pub strict: bool,
    /// Command that fetches a video by id, for rows with an id and no source and Kinetics rows
    /// whose clip is not on disk; `{id}` and `{out}` are replaced (shell-quoted), e.g.
    /// 'yt-dlp -q -f mp4 -o {out} -- {id}'. Runs under `sh -c` with --fetch-cmd-timeout.
    #[arg(long)]
    pub fetch_cmd: Option<String>,
}

impl ListArgs {
    pub fn spec(self) -> Result<JobSpec> {
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
pub struct FetchArgs {
    /// Content cache for downloaded sources (default: OUT/downloads, or CACHE/downloads).
    #[arg(long)]
    pub fetch_cache: Option<PathBuf>,
    /// Connect and idle-read limit for http(s) sources, seconds.
    #[arg(long, default_value_t = 30)]
    pub http_timeout: u64,
    /// Limit for one download attempt, seconds.
    #[arg(long, default_value_t = 1800)]
    pub download_timeout: u64,
    /// Retries (with exponential backoff from 0.5 s) after 5xx, 429, dropped connections,
    /// short bodies and timeouts; partial downloads resume with a Range request.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// Limit for one --fetch-cmd run, seconds.
    #[arg(long, default_value_t = 1800)]
    pub fetch_cmd_timeout: u64,
    /// Let http(s) sources reach loopback, link-local (cloud metadata), private and other
    /// non-public addresses. By default they fail as `forbidden_address`: a scraped list must
    /// not make a worker read its cloud's metadata service or an internal server.
    #[arg(long)]
    pub allow_private_addresses: bool,
}

#[cfg(feature = "ffmpeg")]
impl FetchArgs {
    pub fn config(&self, fetch_cmd: Option<String>, max_bytes: u64) -> vidfeat_ingest::fetch::FetchConfig {
        vidfeat_ingest::fetch::FetchConfig {
            dir: self.fetch_cache.clone().unwrap_or_default(),
            io_timeout: Duration::from_secs(self.http_timeout.max(1)),
            total_timeout: Duration::from_secs(self.download_timeout.max(1)),
            retries: self.retries,
            backoff: Duration::from_millis(500),
            max_bytes,
            fetch_cmd,
            fetch_cmd_timeout: Duration::from_secs(self.fetch_cmd_timeout.max(1)),
            allow_private_addresses: self.allow_private_addresses,
            trusted_hosts: vec![],
        }
    }
}

#[cfg(feature = "ffmpeg")]
#[derive(clap::Args)]
pub struct SampleArgs {
    /// Rows per second of video (e.g. 1, 0.5, 30000/1001).
    #[arg(long, default_value = "1", value_parser = rate)]
    pub fps: String,
    /// Cap on rows per video (0 = no cap).
    #[arg(long, default_value_t = 300)]
    pub max_frames: u64,
    /// exact: row k is the frame on screen at its time. keyframes: the newest key frame at or
    /// before it, decoding key frames only (far cheaper on long GOPs; rows repeat within a
    /// GOP; a file without key-frame flags is decoded exactly, with a warning).
    #[arg(long, default_value = "exact", value_parser = ["exact", "keyframes"])]
    pub sampling: String,
    /// squash (YouTube-8M), center-crop or letterbox; default: the model sidecar's.
    #[arg(long, value_parser = RESIZE)]
    pub resize: Option<String>,
    /// Where to decode: none (the CPU), auto (NVDEC where the NVIDIA driver and an NVDEC decoder
    /// for the codec are there, else the CPU), cuda (NVDEC, falling back to the CPU with a
    /// warning). The rows are the same.
    #[arg(long, default_value = "none", value_parser = ["none", "auto", "cuda"])]
    pub hwdec: String,
    /// Videos decoded in parallel (0 = one per core; with the network on the CPU, the cores
    /// --torch-threads leaves, at least one).
    #[arg(long, default_value_t = 0)]
    pub decode_workers: usize,
    /// FFmpeg threads per decoder (0 = 1 when several workers run, else FFmpeg's choice).
    #[arg(long, default_value_t = 0)]
    pub decode_threads: usize,
    /// Per-video decode time limit, seconds.
    #[arg(long, default_value_t = vidfeat_decode::DEFAULT_TIMEOUT.as_secs())]
    pub timeout: u64,
    /// Largest frame accepted, pixels (larger videos fail as too_large).
    #[arg(long, default_value_t = vidfeat_decode::DEFAULT_MAX_PIXELS)]
    pub max_pixels: u64,
    /// Largest input file, bytes.
    #[arg(long, default_value_t = vidfeat_decode::DEFAULT_MAX_INPUT_BYTES)]
    pub max_input_bytes: u64,
    /// Longest video accepted, seconds.
    #[arg(long, default_value_t = vidfeat_decode::DEFAULT_MAX_DURATION)]
    pub max_duration: f64,
    /// Largest estimated decoder frame memory, bytes (frame size in the stream's pixel format
    /// x (16 references + threads + 2)).
    #[arg(long, default_value_t = vidfeat_decode::DEFAULT_MAX_DECODER_BYTES)]
    pub max_decoder_memory: u64,
}

#[cfg(feature = "ffmpeg")]
impl SampleArgs {
    pub fn settings(&self) -> Result<vidfeat::pipeline::decode::DecodeSettings> {
        let (workers, threads) = vidfeat::pipeline::layout::decode_layout(self.decode_workers, self.decode_threads);
        Ok(vidfeat::pipeline::decode::DecodeSettings {
            fps: Rational::parse(&self.fps).with_context(|| format!("--fps `{}` is not a positive number or ratio", self.fps))?,
            sampling: self.sampling.parse().map_err(anyhow::Error::msg)?,
            hwdec: self.hwdec.parse().map_err(anyhow::Error::msg)?,
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
pub struct ModelArgs {
    /// TorchScript model returning pre-logit features (default: bundled EfficientNet-Lite0),
    /// or a model's name: efficientnet-lite0, i3d-kinetics-400 (Kinetics-400 I3D, clip rows
    /// of 16 frames at 25 fps; made once by scripts/i3d-setup.sh). run and plan take several
    /// (`--model A --model B`): each video is decoded once for all of them, and each writes
    /// its features into the same records (the first as rgb, see --feature-name); they must
    /// take frames of one size.
    #[arg(long)]
    pub model: Vec<PathBuf>,
    /// The (first) model's sidecar JSON (default: the model path with .json; further models
    /// take theirs from beside them).
    #[arg(long)]
    pub sidecar: Option<PathBuf>,
    /// auto (CUDA when there is one, else the CPU), cpu, cuda or cuda:N (no CUDA device there
    /// is an error, not a fallback).
    #[arg(long, default_value = "auto", value_parser = device)]
    pub device: String,
    /// libtorch intra-op threads (0 = run/work on the CPU: half the cores, rounded up, the rest
    /// decode; else libtorch's choice). The last bits of CPU features depend on it: give the
    /// same value to runs that must match byte for byte.
    #[arg(long, default_value_t = 0)]
    pub torch_threads: usize,
}

#[derive(clap::Args)]
pub struct OutputArgs {
    /// Output folder, or a bucket folder (s3://bucket/ds, gs://bucket/ds: worked on through a
    /// local mirror under --work-dir and pushed when the run ends).
    #[arg(long)]
    pub out: PathBuf,
    /// Local scratch for an --out in a bucket: the mirror, journals, downloads (default: a
    /// folder under the system temp dir named after the URL).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub shape: ShapeArgs,
}

/// Output-shaping options shared by run, extract and plan.
#[derive(clap::Args)]
pub struct ShapeArgs {
    /// A fitted PCA: our .npz, or a folder with YouTube-8M's mean.npy/eigenvals.npy/eigenvecs.npy.
    /// Without it, one is fitted on the first frames (run: in-stream; plan: before freezing)
    /// and saved as OUT/pca.npz. With several --model, one per model in order (`fit`: fit
    /// that model's, into OUT/pca-NAME.npz; models after the last given are fitted).
    #[arg(long)]
    pub pca: Vec<PathBuf>,
    /// Feature names of the models, in --model order: the first model's are `rgb` (and
    /// `mean_rgb`), what YouTube-8M readers read; each further model's default to its name
    /// (e.g. `i3d-kinetics-400` and `mean_i3d-kinetics-400`).
    #[arg(long)]
    pub feature_name: Vec<String>,
    /// Dimensions kept after PCA (default: all the given PCA's components up to 1,024; a fitted
    /// one keeps 1,024, or the model's dim if smaller).
    #[arg(long, value_parser = positive)]
    pub pca_dims: Option<usize>,
    /// How many frames the PCA is fitted on when no --pca is given (at least 2; a real
    /// dataset's PCA wants 10 x its dims).
    #[arg(long, default_value_t = 10_000, value_parser = at_least_two)]
    pub pca_sample_frames: usize,
    /// Frames per CNN batch (run: batches cross video boundaries); default 8 on the CPU, 64 on CUDA.
    #[arg(long, value_parser = positive)]
    pub batch_size: Option<usize>,
    /// none, gzip or zlib: whole-file shard compression, read by TensorFlow with
    /// `TFRecordDataset(files, compression_type="GZIP"|"ZLIB")`.
    #[arg(long, default_value = "none", value_parser = ["none", "gzip", "zlib"])]
    pub compression: String,
    /// Write the 2017 release's context key `video_id` instead of `id`.
    #[arg(long)]
    pub legacy_2017: bool,
    /// none, or zero: an `audio` feature list of 128-byte placeholder rows (each value reads
    /// back as ~0.0) and a zero `mean_audio`, for readers that require YouTube-8M's audio.
    #[arg(long, default_value = "none", value_parser = ["none", "zero"])]
    pub audio: String,
    /// When the output folder holds another dataset (another model, PCA, vocabulary or schema
    /// setting, or output of unknown provenance), remove it first instead of stopping.
    #[arg(long)]
    pub overwrite: bool,
    /// Kinetics-style predictions from a model with a classifier head (i3d-kinetics-400):
    /// the logits averaged over each video's rows go into its video-level record (`logits`),
    /// OUT/predictions.jsonl lists each video's top K classes with softmax scores, and when
    /// the list's labels are in the classifier's vocabulary, summary.json gets top-1/top-5
    /// accuracy. 0: off.
    #[arg(long, default_value_t = 0)]
    pub predict: usize,
}

impl ShapeArgs {
    /// --pca of a command with one model (a local copy of an object).
    pub fn pca_path(&self) -> Result<Option<PathBuf>> {
        anyhow::ensure!(self.pca.len() <= 1, "--pca given {} times: only run and plan take several models", self.pca.len());
        anyhow::ensure!(self.feature_name.is_empty(), "--feature-name: only run and plan take several models (this command writes `rgb`)");
        Ok(self.pca_paths()?.into_iter().next().flatten())
    }

    /// Every --pca in order (local copies of objects; `fit`: None).
    pub fn pca_paths(&self) -> Result<Vec<Option<PathBuf>>> {
        self.pca.iter().map(|p| if p.as_os_str() == "fit" { Ok(None) } else { vidfeat::mirror::local(p).with_context(|| format!("--pca {}", p.display())).map(Some) }).collect()
    }

    pub fn audio_zero(&self) -> Result<bool> {
        match self.audio.as_str() {
            "none" => Ok(false),
            "zero" => Ok(true),
            a => anyhow::bail!("--audio `{a}`: expected none or zero"),
        }
    }
}

impl OutputArgs {
    pub fn consume(&self) -> Result<ConsumeConfig> {
        let sh = &self.shape;
        Ok(ConsumeConfig {
            compression: sh.compression.parse().map_err(anyhow::Error::msg)?,
            schema: vidfeat_export::Schema { legacy_2017: sh.legacy_2017, audio_zero: sh.audio_zero()? },
            out: self.out.clone(),
            batch_size: sh.batch_size,
            pca: sh.pca_path()?,
            pca_dims: sh.pca_dims,
            pca_sample_frames: sh.pca_sample_frames.max(2),
            threads: 0,
        })
    }
}

/// What shapes the output, from the flags of run and plan.
#[cfg(feature = "ffmpeg")]
pub fn freeze_config(model: &ModelArgs, sample: &SampleArgs, shape: &ShapeArgs, fetch_cmd: Option<String>) -> Result<vidfeat::pipeline::plan::FreezeConfig> {
    let first = model.path_of(model.model.first().cloned().unwrap_or_else(vidfeat::default_model), model.sidecar.is_some())?;
    let sidecar = model.sidecar_path()?;
    let extra_paths = model.model.iter().skip(1).map(|p| Ok((p, model.path_of(p.clone(), false)?))).collect::<Result<Vec<_>>>()?;
    // Feature names from the sidecars' model names.
    let name_of = |s: &std::path::Path| vidfeat_features::Sidecar::load(s).map(|s| s.name).map_err(anyhow::Error::from);
    let mut names = vec![name_of(&sidecar.clone().unwrap_or_else(|| first.with_extension("json")))?];
    for (_, p) in &extra_paths {
        names.push(name_of(&p.with_extension("json"))?);
    }
    let features = vidfeat::pipeline::models::feature_names(&names.iter().map(String::as_str).collect::<Vec<_>>(), &shape.feature_name)?;
    let mut pcas = shape.pca_paths()?;
    anyhow::ensure!(pcas.len() <= names.len(), "{} --pca values for {}", pcas.len(), vidfeat::telemetry::count(names.len() as u64, "model"));
    pcas.resize(names.len(), None);
    let pca_urls: Vec<Option<String>> = shape.pca.iter().map(|p| url_of(Some(p))).collect();
    let extra = extra_paths
        .into_iter()
        .zip(features.into_iter().skip(1))
        .enumerate()
        .map(|(i, ((given, path), feature))| vidfeat::pipeline::plan::ExtraModel {
            feature,
            sidecar: path.with_extension("json"),
            model: path,
            pca: pcas[i + 1].clone(),
            sources: vidfeat::pipeline::plan::Sources {
                model: url_of(Some(given)),
                sidecar: url_of(Some(given)).map(|u| sidecar_beside(&u)),
                pca: pca_urls.get(i + 1).cloned().flatten(),
            },
        })
        .collect();
    Ok(vidfeat::pipeline::plan::FreezeConfig {
        model: first,
        sidecar,
        device: model.device.clone(),
        decode: sample.settings()?,
        fps: sample.fps.clone(),
        resize: sample.resize.clone(),
        pca: pcas[0].clone(),
        pca_dims: shape.pca_dims,
        pca_sample_frames: shape.pca_sample_frames.max(2),
        batch_size: shape.batch_size,
        compression: shape.compression.clone(),
        legacy_2017: shape.legacy_2017,
        audio_zero: shape.audio_zero()?,
        predict: shape.predict,
        fetch_cmd,
        overwrite: shape.overwrite,
        provenance: super::provenance(),
        sources: vidfeat::pipeline::plan::Sources {
            model: url_of(model.model.first().map(PathBuf::as_path)),
            sidecar: url_of(model.sidecar.as_deref()).or_else(|| url_of(model.model.first().map(PathBuf::as_path)).map(|u| sidecar_beside(&u))),
            pca: pca_urls.first().cloned().flatten(),
        },
        out_url: None,
        extra,
    })
}

/// `--retry-failed [KINDS]` of run and work.
#[cfg(feature = "ffmpeg")]
#[derive(clap::Args)]
pub struct RetryArgs {
    /// Attempt again the videos that failed with these kinds (comma-separated; given alone:
    /// the transient ones, download_failed and timeout) and rebuild only their shards; the
    /// other videos of those shards are taken from the shards as they are. A plain re-run
    /// keeps recorded failures as they are.
    #[arg(long, value_name = "KINDS", num_args = 0..=1, default_missing_value = "download_failed,timeout", value_delimiter = ',',
          value_parser = clap::builder::PossibleValuesParser::new(vidfeat::pipeline::jobs::VIDEO_FAILURE_KINDS))]
    pub retry_failed: Option<Vec<String>>,
}

#[cfg(feature = "ffmpeg")]
impl RetryArgs {
    pub fn kinds(&self) -> Result<std::collections::BTreeSet<String>> {
        let mut out = std::collections::BTreeSet::new();
        // clap checked the kinds against VIDEO_FAILURE_KINDS.
        out.extend(self.retry_failed.iter().flatten().map(|k| k.trim().to_string()).filter(|k| !k.is_empty()));
        if self.retry_failed.is_some() && out.is_empty() {
            out.extend(vidfeat::pipeline::worker::TRANSIENT_KINDS.map(String::from));
        }
        Ok(out)
    }
}


impl ModelArgs {
    /// The model file of a command with one model: --model, else the bundled one (a local
    /// copy of an object; its default sidecar, the object beside it, is copied beside it).
    pub fn path(&self) -> Result<PathBuf> {
        anyhow::ensure!(self.model.len() <= 1, "--model given {} times: only run and plan take several models", self.model.len());
        self.path_of(self.model.first().cloned().unwrap_or_else(vidfeat::default_model), self.sidecar.is_some())
    }

    /// A --model value as a local file (`own_sidecar`: its sidecar is given apart, else the
    /// one beside an object is fetched too).
    fn path_of(&self, p: PathBuf, own_sidecar: bool) -> Result<PathBuf> {
        if let Some(named) = vidfeat::named_model_arg(&p) {
            return named.map_err(anyhow::Error::msg);
        }
        if let (Some(url), false) = (vidfeat_store::url_of(&p), own_sidecar) {
            let side = sidecar_beside(url);
            vidfeat::mirror::local_copy(&side).with_context(|| format!("the model's sidecar {side}"))?;
        }
        vidfeat::mirror::local(&p).with_context(|| format!("--model {}", p.display()))
    }

    #[cfg(feature = "ffmpeg")]
    /// The models' sidecars, those that can be read now (local files and named models; the
    /// others are read, and their problems reported, when the run starts).
    pub fn sidecars(&self) -> Vec<vidfeat_features::Sidecar> {
        let first = self.model.first().cloned().unwrap_or_else(vidfeat::default_model);
        let mut paths: Vec<PathBuf> = vec![];
        paths.extend(self.sidecar.clone().or_else(|| self.local_model(&first).map(|p| p.with_extension("json"))));
        paths.extend(self.model.iter().skip(1).filter_map(|m| self.local_model(m)).map(|p| p.with_extension("json")));
        paths.iter().filter_map(|p| vidfeat_features::Sidecar::load(p).ok()).collect()
    }

    #[cfg(feature = "ffmpeg")]
    /// A --model value as a local file without fetching anything: a named model's file, or
    /// the path itself.
    fn local_model(&self, p: &std::path::Path) -> Option<PathBuf> {
        match vidfeat::named_model_arg(p) {
            Some(named) => named.ok(),
            None if vidfeat_store::url_of(p).is_none() => Some(p.to_path_buf()),
            None => None,
        }
    }

    /// --sidecar (a local copy of an object).
    pub fn sidecar_path(&self) -> Result<Option<PathBuf>> {
        self.sidecar.as_deref().map(|p| vidfeat::mirror::local(p).with_context(|| format!("--sidecar {}", p.display()))).transpose()
    }
}

impl ListArgs {
    /// The job spec, checked first with --strict (run, decode).
    #[cfg(feature = "ffmpeg")]
    pub fn strict_spec(self) -> Result<JobSpec> {
        let strict = self.strict;
        let spec = self.spec()?;
        if strict {
            vidfeat::pipeline::plan::check_strict(&spec)?;
        }
        Ok(spec)
    }
}

/// The values --resize takes.
#[cfg(feature = "ffmpeg")]
pub const RESIZE: [&str; 3] = ["squash", "center-crop", "letterbox"];

/// A count of at least 1.
pub fn positive(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A count of at least 2 (a PCA needs two frames).
pub fn at_least_two(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 2 => Ok(n),
        Ok(_) => Err("must be at least 2".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// auto, cpu, cuda or cuda:N, checked before any work (whether CUDA is there is checked when
/// the device is opened).
pub fn device(s: &str) -> Result<String, String> {
    let d = s.trim().to_ascii_lowercase();
    let ok = matches!(d.as_str(), "auto" | "cpu" | "cuda") || d.strip_prefix("cuda:").is_some_and(|n| n.parse::<usize>().is_ok());
    if ok {
        Ok(d)
    } else {
        Err("expected auto, cpu, cuda or cuda:N".into())
    }
}

/// A split name (it becomes part of file names).
pub fn split_name(s: &str) -> Result<String, String> {
    vidfeat_ingest::check_split(s).map(|_| s.to_string())
}

/// A positive rate: a number or a ratio such as 30000/1001.
#[cfg(feature = "ffmpeg")]
pub fn rate(s: &str) -> Result<String, String> {
    match Rational::parse(s) {
        Some(_) => Ok(s.to_string()),
        None => Err("not a positive number or ratio (e.g. 1, 0.5, 30000/1001)".into()),
    }
}

/// A folder (or file) argument that may name a bucket, for reading: a local copy (a folder
/// pulled into a mirror under the temp dir, a file fetched).
pub fn readable(p: &std::path::Path) -> Result<PathBuf> {
    let Some(url) = vidfeat_store::url_of(p) else { return Ok(p.to_path_buf()) };
    if url.ends_with(".tfrecord") || url.ends_with(".tfrecord.gz") || url.ends_with(".json") {
        return vidfeat::mirror::local_copy(url);
    }
    let local = vidfeat::mirror::scratch(url, Some(&std::env::temp_dir().join("vidfeat-read")));
    vidfeat::mirror::pull(url, &local).with_context(|| format!("reading {url}"))?;
    Ok(local)
}


/// The argument's text when it names an object.
#[cfg(feature = "ffmpeg")]
fn url_of(p: Option<&std::path::Path>) -> Option<String> {
    p.and_then(vidfeat_store::url_of).map(str::to_string)
}

/// A model object's default sidecar: the `.json` object beside it.
fn sidecar_beside(model_url: &str) -> String {
    match model_url.rsplit_once('.') {
        Some((stem, ext)) if !ext.contains('/') => format!("{stem}.json"),
        _ => format!("{model_url}.json"),
    }
}
