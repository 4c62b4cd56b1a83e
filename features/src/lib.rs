//! CNN features through libtorch (tch), PCA with whitening, and 8-bit quantization.
//! Knows nothing of FFmpeg: it takes packed RGB24 frames at the model's input size.
/// The libtorch version this crate was built against (from its headers), if known.
pub const LIBTORCH_VERSION: Option<&str> = option_env!("VIDFEAT_LIBTORCH_VERSION");

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

pub mod i3d;
pub mod pca;
pub mod quant;
mod staging;
pub use pca::{CovarianceAccumulator, Pca};
pub use quant::{dequantize, quantize};

#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error("model {path}: {msg}")]
    Model { path: String, msg: String },
    #[error("sidecar {path}: {msg}")]
    Sidecar { path: String, msg: String },
    #[error("PCA {path}: {msg}")]
    Pca { path: String, msg: String },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What a TorchScript model expects and returns. Stored as `MODEL.json` beside `MODEL.pt`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sidecar {
    pub name: String,
    #[serde(default)]
    pub weights: String,
    /// [height, width]
    pub input_size: [u32; 2],
    /// Per-channel mean and std in pixel units (0..255): input = (pixel - mean) / std.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// `rgb` or `bgr`: the channel order the network expects.
    pub channel_order: String,
    pub output_dim: usize,
    /// Whether half precision is acceptable on GPU.
    #[serde(default)]
    pub fp16: bool,
    /// Default resize mode (`squash`).
    #[serde(default = "default_resize")]
    pub resize: String,
    /// A clip model: each row is `frames` frames `1 / fps` apart, and the network takes
    /// [N, 3, frames, H, W]. None: an image model, one frame per row, [N, 3, H, W].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip: Option<ClipSpec>,
    /// The network returns class logits too, over this vocabulary, for `--predict`: its
    /// output is then [N, output_dim + classes], the features followed by the logits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classifier: Option<ClassifierSpec>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct ClipSpec {
    pub frames: u32,
    /// Frames per second within a clip (a number such as 25, or a ratio such as 30000/1001
    /// written as a number).
    pub fps: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClassifierSpec {
    pub classes: usize,
    /// A vocabulary name `--vocab` knows (`kinetics-400`, `imagenet`...).
    pub vocabulary: String,
}

fn default_resize() -> String {
    "squash".into()
}

impl Sidecar {
    pub fn load(path: &Path) -> Result<Self, FeatureError> {
        let err = |msg: String| FeatureError::Sidecar { path: path.display().to_string(), msg };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let s: Sidecar = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        if s.input_size[0] == 0 || s.input_size[1] == 0 || s.output_dim == 0 {
            return Err(err("input_size and output_dim must be positive".into()));
        }
        if s.std.iter().any(|&v| v == 0.0) {
            return Err(err("std must be non-zero".into()));
        }
        if s.channel_order != "rgb" && s.channel_order != "bgr" {
            return Err(err(format!("channel_order must be rgb or bgr, not {}", s.channel_order)));
        }
        if let Some(c) = s.clip {
            if c.frames == 0 || c.frames > 1024 || !(c.fps > 0.0 && c.fps <= 1000.0) {
                return Err(err(format!("clip: frames must be 1..=1024 and fps in (0, 1000], not {} and {}", c.frames, c.fps)));
            }
        }
        if s.classifier.as_ref().is_some_and(|c| c.classes == 0) {
            return Err(err("classifier: classes must be positive".into()));
        }
        Ok(s)
    }

    /// Frames per row: the clip length, or 1.
    pub fn frames_per_row(&self) -> usize {
        self.clip.map_or(1, |c| c.frames as usize)
    }

    /// Bytes of one row of packed RGB24 at the input size (a whole clip for a clip model).
    pub fn row_bytes(&self) -> usize {
        self.frames_per_row() * (self.input_size[0] * self.input_size[1] * 3) as usize
    }
}

/// SHA-256 of a file, hex.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(path)?;
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// `auto`, `cpu`, `cuda`, `cuda:N`. CUDA needs libtorch_cuda, which is loaded on demand; when it
/// or a GPU is missing the answer is the CPU plus a message saying why.
pub fn resolve_device(spec: &str) -> Result<(Device, Option<String>), String> {
    let spec = spec.trim().to_lowercase();
    let want_cuda = match spec.as_str() {
        "cpu" => return Ok((Device::Cpu, None)),
        "auto" => None,
        "cuda" => Some(0),
        s if s.starts_with("cuda:") => Some(s[5..].parse::<usize>().map_err(|_| format!("bad device `{spec}`"))?),
        _ => return Err(format!("unknown device `{spec}` (auto, cpu, cuda, cuda:N)")),
    };
    let loaded = load_cuda_backend();
    let available = loaded.is_ok() && tch::Cuda::is_available();
    match (want_cuda, available) {
        (Some(i), true) if (i as i64) < tch::Cuda::device_count() => Ok((Device::Cuda(i), None)),
        // An explicit CUDA device that is not there is an error: a cluster job must not run
        // 100x slower on the CPU unnoticed. `auto` falls back.
        (Some(i), true) => Err(format!("--device cuda:{i}: this machine has {} CUDA device(s); give another index, or --device auto to fall back to the CPU", tch::Cuda::device_count())),
        (None, true) => Ok((Device::Cuda(0), None)),
        (Some(_), false) => Err(format!(
            "--device {spec}: CUDA is not available here ({}); give --device auto to fall back to the CPU, or --device cpu",
            loaded.err().unwrap_or_else(|| "no CUDA device".into())
        )),
        (None, false) => Ok((Device::Cpu, None)),
    }
}

/// dlopen(libtorch_cuda.so, RTLD_GLOBAL): the linker drops it (--as-needed) since nothing
/// references it directly, yet it registers the CUDA backend when loaded.
fn load_cuda_backend() -> Result<(), String> {
    use std::ffi::CString;
    static RESULT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    RESULT
        .get_or_init(|| {
            let mut candidates: Vec<PathBuf> = vec![];
            if let Some(dir) = option_env!("DEP_TCH_LIBTORCH_LIB") {
                candidates.push(Path::new(dir).join("libtorch_cuda.so"));
            }
            if let Ok(dir) = std::env::var("LIBTORCH") {
                candidates.push(Path::new(&dir).join("lib/libtorch_cuda.so"));
            }
            candidates.push(PathBuf::from("libtorch_cuda.so"));
            let mut last = String::from("libtorch_cuda.so not found");
            for c in candidates {
                let Ok(cs) = CString::new(c.to_string_lossy().as_bytes()) else { continue };
                let h = unsafe { libc::dlopen(cs.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
                if !h.is_null() {
                    return Ok(());
                }
                let e = unsafe { libc::dlerror() };
                if !e.is_null() {
                    last = unsafe { std::ffi::CStr::from_ptr(e) }.to_string_lossy().into_owned();
                }
            }
            Err(last)
        })
        .clone()
}

/// `n` packed RGB24 frames as the network's float NCHW input: `(pixel - mean) / std` per
/// channel in the sidecar's channel order, through a table of the 256 values per channel
/// (the same f32 operations as libtorch's, so the same bits).
pub fn normalise_nchw(sidecar: &Sidecar, rgb: &[u8], n: usize, out: &mut [f32]) {
    let plane = (sidecar.input_size[0] * sidecar.input_size[1]) as usize;
    let bgr = sidecar.channel_order == "bgr";
    let (m, sd) = (sidecar.mean, sidecar.std);
    // table[c][v]: value v normalised with output channel c's mean and std.
    let table: Vec<[f32; 256]> = (0..3).map(|c| std::array::from_fn(|v| (v as f32 - m[c]) / sd[c])).collect();
    // Output channel 0 takes the pixel's blue byte when the network wants BGR.
    let (s0, s2) = if bgr { (2, 0) } else { (0, 2) };
    assert_eq!(out.len(), n * 3 * plane, "output sized for n frames");
    for (frame, dst) in rgb.chunks_exact(plane * 3).zip(out.chunks_exact_mut(plane * 3)) {
        let (c0, rest) = dst.split_at_mut(plane);
        let (c1, c2) = rest.split_at_mut(plane);
        for (i, px) in frame.chunks_exact(3).enumerate() {
            c0[i] = table[0][px[s0] as usize];
            c1[i] = table[1][px[1] as usize];
            c2[i] = table[2][px[s2] as usize];
        }
    }
}

/// A TorchScript image model returning pre-logit features.
pub struct Model {
    module: tch::CModule,
    pub sidecar: Sidecar,
    pub device: Device,
    pub path: PathBuf,
    pub sha256: String,
    mean: Tensor,
    std: Tensor,
    half: bool,
    /// The module's weights are fp16 (inputs are cast to it); else fp16 runs as autocast.
    half_weights: bool,
    /// Inputs reach the network in channels-last memory order (NHWC strides, as the frames
    /// come): cuDNN's fastest convolutions on tensor cores take it. CUDA only by default, so
    /// CPU features keep their bits.
    channels_last: bool,
    /// CUDA: pinned buffers and a copy stream (see `staging.rs`); None on the CPU, or when
    /// they could not be set up (then `transfer` says why and uploads are plain copies).
    staging: Option<std::sync::Mutex<staging::Staging>>,
    /// How frames reach the device, for summaries and benchmarks.
    pub transfer: String,
}

/// What a batch gives: n * output_dim features, and n * classes logits for a model with a
/// classifier head.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    pub features: Vec<f32>,
    pub logits: Option<Vec<f32>>,
}

/// A batch queued on the device ([`Model::submit`]); [`Model::finish`] waits for its features.
pub struct Pending {
    /// The features (on the device until finished); None for an empty batch.
    out: Option<Tensor>,
    n: usize,
    /// The staging slot whose pinned buffer receives the features (CUDA with staging).
    slot: Option<(usize, u64)>,
}

impl Model {
    /// Loads `path` and its sidecar (`sidecar`, else `path` with the extension `.json`).
    pub fn load(path: &Path, sidecar: Option<&Path>, device: Device) -> Result<Self, FeatureError> {
        let side_path = sidecar.map(Path::to_path_buf).unwrap_or_else(|| path.with_extension("json"));
        let sidecar = Sidecar::load(&side_path)?;
        let err = |msg: String| FeatureError::Model { path: path.display().to_string(), msg };
        if !path.is_file() {
            return Err(err("no such file".into()));
        }
        let mut module = tch::CModule::load_on_device(path, device).map_err(|e| err(e.to_string()))?;
        module.set_eval();
        let sha256 = file_sha256(path)?;
        let mean = Tensor::from_slice(&sidecar.mean).view([1, 1, 1, 3]).to_device(device);
        let std = Tensor::from_slice(&sidecar.std).view([1, 1, 1, 3]).to_device(device);
        let (staging, transfer) = match device {
            Device::Cuda(_) => match staging::Staging::new(device) {
                Ok(s) => (Some(std::sync::Mutex::new(s)), "pinned double buffer, async copy stream".to_string()),
                Err(e) => (None, format!("pageable copies ({e})")),
            },
            _ => (None, "host memory".to_string()),
        };
        let channels_last = device.is_cuda();
        Ok(Model { module, sidecar, device, path: path.to_path_buf(), sha256, mean, std, half: false, half_weights: false, channels_last, staging, transfer })
    }

    /// Whether inputs go in channels-last memory order (see the field); on by default on CUDA.
    pub fn set_channels_last(&mut self, on: bool) {
        self.channels_last = on;
    }

    /// cuDNN picks convolution algorithms by timing them on the first batches of each shape:
    /// faster, but the choice (and so the features' last bits) may differ from run to run.
    pub fn set_cudnn_benchmark(on: bool) {
        tch::Cuda::cudnn_set_benchmark(on);
    }

    /// Runs the network in half precision, CUDA only, and only where the sidecar allows it:
    /// with fp16 weights where the module can be converted (its parameters are converted and a
    /// batch runs), else CUDA autocast (a frozen TorchScript module holds its weights as fp32
    /// constants that conversion leaves alone, and autocast casts around them).
    pub fn use_half(&mut self) -> Result<(), FeatureError> {
        let err = |msg: &str| FeatureError::Model { path: self.path.display().to_string(), msg: msg.into() };
        if !self.sidecar.fp16 {
            return Err(err("the sidecar does not allow fp16"));
        }
        if !self.device.is_cuda() {
            return Err(err("fp16 needs a CUDA device"));
        }
        self.half = true;
        self.module.to(self.device, Kind::Half, false);
        self.half_weights = true;
        if self.check().is_err() {
            // Not convertible: the module as it was, under autocast.
            let mut module = tch::CModule::load_on_device(&self.path, self.device).map_err(|e| err(&e.to_string()))?;
            module.set_eval();
            self.module = module;
            self.half_weights = false;
        }
        Ok(())
    }

    /// How half precision runs: `fp16 weights`, `autocast`, or `fp32`.
    pub fn precision(&self) -> &'static str {
        match (self.half, self.half_weights) {
            (true, true) => "fp16 weights",
            (true, false) => "autocast",
            _ => "fp32",
        }
    }

    pub fn is_half(&self) -> bool {
        self.half
    }

    /// (width, height) the model takes.
    pub fn input_wh(&self) -> (u32, u32) {
        (self.sidecar.input_size[1], self.sidecar.input_size[0])
    }

    /// Columns of the network's output: the features, then the logits when it has a head.
    fn out_cols(&self) -> usize {
        self.sidecar.output_dim + self.sidecar.classifier.as_ref().map_or(0, |c| c.classes)
    }

    fn err(&self, msg: String) -> FeatureError {
        FeatureError::Model { path: self.path.display().to_string(), msg }
    }

    /// Runs the network once on a small batch of gray frames, before any work: a model that
    /// loads but cannot run (a sidecar that does not match it, a classifier instead of a
    /// feature extractor) fails here with one line, not on every video. The error is the
    /// TorchScript error's last line, which names the problem.
    pub fn check(&self) -> Result<(), FeatureError> {
        let (w, h) = self.input_wh();
        let frames = vec![128u8; 2 * self.sidecar.row_bytes()];
        let what = match self.sidecar.clip {
            Some(c) => format!("2 clips of {} frames", c.frames),
            None => "2 frames".to_string(),
        };
        let out = self.extract(&frames, 2).map_err(|e| {
            let text = e.to_string();
            let last = text.lines().map(str::trim).filter(|l| !l.is_empty()).last().unwrap_or("").to_string();
            self.err(format!("does not run on a batch of {what} of {w}x{h} (its sidecar's input size): {last}"))
        })?;
        if out.iter().any(|v| !v.is_finite()) {
            return Err(self.err("gives non-finite features on gray frames".into()));
        }
        Ok(())
    }

    /// Features for `n` rows of packed RGB24 (n * [`Sidecar::row_bytes`] bytes: a frame each,
    /// or a clip each for a clip model): n * output_dim floats.
    pub fn extract(&self, rgb: &[u8], n: usize) -> Result<Vec<f32>, FeatureError> {
        let p = self.submit(rgb, n)?;
        self.finish(p)
    }

    /// Queues `n` frames on the device and returns without waiting for the network (on the
    /// CPU it computes them now). With one batch in flight, submit the next batch before
    /// finishing the previous one: on CUDA its upload (pinned buffer, copy stream) and the
    /// host's work then overlap the network running on the previous batch. `rgb` may be
    /// reused as soon as this returns.
    pub fn submit(&self, rgb: &[u8], n: usize) -> Result<Pending, FeatureError> {
        let (w, h) = self.input_wh();
        let expect = n * self.sidecar.row_bytes();
        if rgb.len() != expect {
            return Err(self.err(format!("got {} bytes for {n} rows, expected {expect}", rgb.len())));
        }
        if n == 0 {
            return Ok(Pending { out: None, n, slot: None });
        }
        // Clip rows: their frames go through the same preparation, then [N, 3, T, H, W].
        let t = self.sidecar.frames_per_row();
        let frames = n * t;
        let to_clips = |x: Tensor| -> Tensor {
            match self.sidecar.clip {
                Some(_) => x.reshape([n as i64, t as i64, 3, h as i64, w as i64]).permute([0, 2, 1, 3, 4]).contiguous(),
                None => x,
            }
        };
        let shape = [frames as i64, h as i64, w as i64, 3];
        // uint8 frames -> normalised float NCHW, on the device (4x less to upload than floats).
        let prepare = |x: &Tensor| -> Tensor {
            let mut x = x.to_kind(Kind::Float);
            if self.sidecar.channel_order == "bgr" {
                x = x.flip([3]);
            }
            let x = ((x - &self.mean) / &self.std).permute([0, 3, 1, 2]);
            let x = if self.channels_last { x } else { x.contiguous() };
            if self.half_weights {
                x.to_kind(Kind::Half)
            } else {
                x
            }
        };
        let err = |msg| self.err(msg);
        tch::no_grad(|| -> Result<Pending, FeatureError> {
            let (slot, x) = match &self.staging {
                Some(st) => {
                    let (slot, x) = st.lock().unwrap().upload(rgb, &shape, prepare).map_err(err)?;
                    (Some(slot), x)
                }
                // On the CPU, normalisation and layout in one pass (libtorch makes four).
                None if !self.device.is_cuda() && !self.channels_last => {
                    let x = Tensor::empty([frames as i64, 3, h as i64, w as i64], (Kind::Float, Device::Cpu));
                    // SAFETY: `x` is a new contiguous CPU float tensor of exactly this many
                    // elements, owned here and not shared until it is filled.
                    let buf = unsafe { std::slice::from_raw_parts_mut(x.data_ptr() as *mut f32, x.numel()) };
                    normalise_nchw(&self.sidecar, rgb, frames, buf);
                    (None, x)
                }
                None => {
                    let host = Tensor::from_slice(rgb).view(shape);
                    (None, prepare(&if self.device.is_cuda() { host.to_device_(self.device, Kind::Uint8, true, false) } else { host }))
                }
            };
            let x = to_clips(x);
            let out = if self.half && !self.half_weights { tch::autocast(true, || self.module.forward_ts(&[x]))? } else { self.module.forward_ts(&[x])? };
            let size = out.size();
            if size.len() != 2 || size[0] != n as i64 || size[1] != self.out_cols() as i64 {
                let head = self.sidecar.classifier.as_ref().map(|c| format!(" ({} features + {} logits)", self.sidecar.output_dim, c.classes)).unwrap_or_default();
                return Err(err(format!("returned shape {size:?}, sidecar says [{n}, {}]{head}", self.out_cols())));
            }
            let out = out.to_kind(Kind::Float).contiguous();
            if let (Some(st), Some(i)) = (&self.staging, slot) {
                st.lock().unwrap().download(i.0, &out).map_err(err)?;
            }
            Ok(Pending { out: Some(out), n, slot })
        })
    }

    /// Waits for a submitted batch and returns its features (n * output_dim floats).
    pub fn finish(&self, p: Pending) -> Result<Vec<f32>, FeatureError> {
        Ok(self.finish_all(p)?.features)
    }

    /// Waits for a submitted batch: its features, and its logits when the model has a
    /// classifier head (n * classes floats).
    pub fn finish_all(&self, p: Pending) -> Result<Outputs, FeatureError> {
        let n = p.n;
        let Some(out) = p.out else { return Ok(Outputs { features: vec![], logits: self.sidecar.classifier.as_ref().map(|_| vec![]) }) };
        let all = match (&self.staging, p.slot) {
            // `out` lives until the copy back is done (it is dropped after `wait`).
            (Some(st), Some(i)) => st.lock().unwrap().wait(i, n * self.out_cols()).map_err(|msg| self.err(msg))?,
            _ => Vec::<f32>::try_from(out.to_device(Device::Cpu).contiguous().view([-1]))?,
        };
        let d = self.sidecar.output_dim;
        if self.sidecar.classifier.is_none() {
            return Ok(Outputs { features: all, logits: None });
        }
        let (mut features, mut logits) = (Vec::with_capacity(n * d), Vec::with_capacity(all.len() - n * d));
        for row in all.chunks_exact(self.out_cols()) {
            features.extend_from_slice(&row[..d]);
            logits.extend_from_slice(&row[d..]);
        }
        Ok(Outputs { features, logits: Some(logits) })
    }

    /// Outputs of many batches in order, one batch in flight: `batches` yields (rows, n); `f`
    /// gets each batch's [`Outputs`] as they finish.
    pub fn extract_all<'a>(&self, batches: impl IntoIterator<Item = (&'a [u8], usize)>, mut f: impl FnMut(Outputs) -> Result<(), FeatureError>) -> Result<(), FeatureError> {
        let mut in_flight: Option<Pending> = None;
        for (rgb, n) in batches {
            let next = self.submit(rgb, n)?;
            if let Some(p) = in_flight.replace(next) {
                f(self.finish_all(p)?)?;
            }
        }
        if let Some(p) = in_flight {
            f(self.finish_all(p)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass normalisation gives libtorch's bits, in both channel orders.
    #[test]
    fn normalise_nchw_matches_libtorch() {
        let (n, h, w) = (3usize, 5u32, 7u32);
        let rgb: Vec<u8> = (0..n * (h * w * 3) as usize).map(|i| (i * 7919 % 256) as u8).collect();
        for order in ["rgb", "bgr"] {
            let sc = Sidecar {
                name: "t".into(),
                weights: String::new(),
                input_size: [h, w],
                mean: [123.675, 116.28, 103.53],
                std: [58.395, 57.12, 57.375],
                channel_order: order.into(),
                output_dim: 1,
                fp16: false,
                resize: "squash".into(),
                clip: None,
                classifier: None,
            };
            let mut x = Tensor::from_slice(&rgb).view([n as i64, h as i64, w as i64, 3]).to_kind(Kind::Float);
            if order == "bgr" {
                x = x.flip([3]);
            }
            let mean = Tensor::from_slice(&sc.mean).view([1, 1, 1, 3]);
            let std = Tensor::from_slice(&sc.std).view([1, 1, 1, 3]);
            let want = Vec::<f32>::try_from(((x - mean) / std).permute([0, 3, 1, 2]).contiguous().view([-1])).unwrap();
            let mut got = vec![0f32; want.len()];
            normalise_nchw(&sc, &rgb, n, &mut got);
            assert_eq!(got.len(), want.len());
            assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{order}: differs from libtorch");
        }
    }
}
