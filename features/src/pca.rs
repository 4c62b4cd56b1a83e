//! PCA with whitening, as YouTube-8M applied it:
//! `y = ((x - mean) @ eigenvecs[:dims].T) / sqrt(eigenvals[:dims] + 1e-4)`.
//!
//! Storage mirrors YouTube-8M's three files: `mean` [D], `eigenvals` [K] (descending) and
//! `eigenvecs` [K, D] (one component per row; YouTube-8M's loader transposes it and keeps the
//! first columns). Ours is one `.npz` with those three arrays and `frames` (how many frames the
//! PCA was fitted on); a folder holding `mean.npy`, `eigenvals.npy`, `eigenvecs.npy` (Google's
//! layout) is read too.
//!
//! Supported components: a PCA fitted on n frames has at most n - 1 components with any
//! variance; the rest have eigenvalues of (numerically) zero, and whitening would multiply
//! whatever a new frame has along them by 1/sqrt(1e-4) = 100: noise that saturates the
//! quantizer. Such components are written as zero (the layout readers expect is kept). A
//! component is supported when its eigenvalue is above 1e-10 of the largest and, when the
//! frame count is known, it is among the first n - 1.
use std::path::Path;

use tch::{Kind, Tensor};

use crate::FeatureError;

pub const WHITEN_EPSILON: f64 = 1e-4;

/// Eigenvalues at or below this fraction of the largest are numerically zero.
const SUPPORT_TOLERANCE: f64 = 1e-10;

#[derive(Debug)]
pub struct Pca {
    /// [D]
    pub mean: Tensor,
    /// [K], descending.
    pub eigenvals: Tensor,
    /// [K, D]
    pub eigenvecs: Tensor,
    /// Output dims (<= K).
    pub dims: usize,
    /// Frames the PCA was fitted on, when known.
    pub frames: Option<u64>,
    /// Leading components with variance in the sample (<= dims); the others are written as 0.
    pub supported: usize,
    /// Precomputed projection [D, dims] / sqrt(eigenvals + eps), unsupported columns zero.
    proj: Tensor,
}

fn perr(path: &Path, msg: impl Into<String>) -> FeatureError {
    FeatureError::Pca { path: path.display().to_string(), msg: msg.into() }
}

impl Pca {
    pub fn new(mean: Tensor, eigenvals: Tensor, eigenvecs: Tensor, dims: usize) -> Result<Self, String> {
        Self::with_frames(mean, eigenvals, eigenvecs, dims, None)
    }

    /// A PCA that knows how many frames it was fitted on (which bounds its supported components).
    pub fn with_frames(mean: Tensor, eigenvals: Tensor, eigenvecs: Tensor, dims: usize, frames: Option<u64>) -> Result<Self, String> {
        let mean = mean.to_kind(Kind::Float).view([-1]);
        let eigenvals = eigenvals.to_kind(Kind::Float).view([-1]);
        let eigenvecs = eigenvecs.to_kind(Kind::Float);
        let d = mean.size()[0];
        let k = eigenvals.size()[0];
        let vs = eigenvecs.size();
        if vs.len() != 2 || vs[0] != k || vs[1] != d {
            return Err(format!("eigenvecs has shape {vs:?}, expected [{k}, {d}] (eigenvals {k}, mean {d})"));
        }
        if dims == 0 || dims as i64 > k {
            return Err(format!("cannot keep {dims} dims: the PCA has {k} components (give --pca-dims {k} or fewer)"));
        }
        let dims_i = dims as i64;
        let vals = Vec::<f32>::try_from(eigenvals.narrow(0, 0, dims_i).contiguous()).map_err(|e| e.to_string())?;
        let largest = vals.first().copied().unwrap_or(0.0).max(0.0) as f64;
        let mut supported = vals.iter().take_while(|&&v| v as f64 > largest * SUPPORT_TOLERANCE).count();
        if let Some(n) = frames {
            supported = supported.min(n.saturating_sub(1) as usize);
        }
        let scale = (eigenvals.narrow(0, 0, dims_i).to_kind(Kind::Double) + WHITEN_EPSILON).sqrt().to_kind(Kind::Float);
        let keep: Vec<f32> = (0..dims).map(|i| if i < supported { 1.0 } else { 0.0 }).collect();
        let keep = Tensor::from_slice(&keep).view([1, dims_i]);
        let proj = (eigenvecs.narrow(0, 0, dims_i).tr() / scale.view([1, dims_i]) * keep).contiguous();
        Ok(Pca { mean, eigenvals, eigenvecs, dims, frames, supported, proj })
    }

    /// SHA-256 over the arrays' little-endian f32 bytes (mean, eigenvals, eigenvecs), so the
    /// same PCA hashes the same whatever file it came from (.npz timestamps, .npy layout).
    pub fn content_sha256(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for t in [&self.mean, &self.eigenvals, &self.eigenvecs] {
            h.update(format!("{:?};", t.size()).as_bytes());
            let v = Vec::<f32>::try_from(t.contiguous().view([-1])).expect("float tensor");
            for x in v {
                h.update(x.to_le_bytes());
            }
        }
        // The frame count decides which components are written; a PCA without one hashes as
        // it always did.
        if let Some(n) = self.frames {
            h.update(format!("frames:{n};").as_bytes());
        }
        hex::encode(h.finalize())
    }

    /// Another handle to the same tensors (read-only use), for another thread: `Tensor` is
    /// `Send` but not `Sync`.
    pub fn share(&self) -> Pca {
        Pca {
            mean: self.mean.shallow_clone(),
            eigenvals: self.eigenvals.shallow_clone(),
            eigenvecs: self.eigenvecs.shallow_clone(),
            dims: self.dims,
            frames: self.frames,
            supported: self.supported,
            proj: self.proj.shallow_clone(),
        }
    }

    pub fn input_dim(&self) -> usize {
        self.mean.size()[0] as usize
    }

    /// Whitened projection of `n` rows of `input_dim` floats: `n * dims` floats.
    pub fn apply(&self, x: &[f32], n: usize) -> Vec<f32> {
        if n == 0 {
            return vec![];
        }
        let d = self.input_dim() as i64;
        let t = Tensor::from_slice(x).view([n as i64, d]);
        let y = (t - self.mean.view([1, d])).mm(&self.proj);
        Vec::<f32>::try_from(y.contiguous().view([-1])).expect("float tensor")
    }

    /// Reads our `.npz` or a folder in YouTube-8M's layout, keeping `dims` components
    /// (`None`: all, capped at 1024 as YouTube-8M did).
    pub fn load(path: &Path, dims: Option<usize>) -> Result<Self, FeatureError> {
        let frames_of = |t: Tensor| Vec::<i64>::try_from(t.to_kind(Kind::Int64).view([-1])).ok().and_then(|v| v.first().map(|&n| n.max(0) as u64));
        let (mean, vals, vecs, frames) = if path.is_dir() {
            let rd = |n: &str| Tensor::read_npy(path.join(n)).map_err(|e| perr(path, format!("{n}: {e}")));
            let frames = if path.join("frames.npy").exists() { frames_of(rd("frames.npy")?) } else { None };
            (rd("mean.npy")?, rd("eigenvals.npy")?, rd("eigenvecs.npy")?, frames)
        } else {
            let arrays = Tensor::read_npz(path).map_err(|e| perr(path, e.to_string()))?;
            let find = |n: &str| arrays.iter().find(|(k, _)| k == n || k == &format!("{n}.npy")).map(|(_, t)| t.shallow_clone());
            let get = |n: &str| find(n).ok_or_else(|| perr(path, format!("no array `{n}`")));
            (get("mean")?, get("eigenvals")?, get("eigenvecs")?, find("frames").and_then(frames_of))
        };
        let k = vals.numel();
        let dims = dims.unwrap_or(k.min(1024));
        Pca::with_frames(mean, vals, vecs, dims, frames).map_err(|m| perr(path, m))
    }

    /// The files [`Pca::save`] writes at `path`: an `.npz` (mean, eigenvals, eigenvecs, and
    /// frames when known) or, for a path without that extension, a folder with YouTube-8M's
    /// three `.npy` files (and `frames.npy`). Built in memory, so a file that could not be
    /// finished is an error here, never a truncated archive on disk.
    pub fn files(&self, path: &Path) -> Result<Vec<(std::path::PathBuf, Vec<u8>)>, FeatureError> {
        use std::io::Write;
        let f32s = |t: &Tensor| Vec::<f32>::try_from(t.contiguous().view([-1])).map_err(|e| perr(path, e.to_string()));
        let mut arrays: Vec<(&str, Vec<u64>, Vec<f32>)> = vec![];
        for (name, t) in [("mean", &self.mean), ("eigenvals", &self.eigenvals), ("eigenvecs", &self.eigenvecs)] {
            arrays.push((name, t.size().iter().map(|&d| d as u64).collect(), f32s(t)?));
        }
        let npy_f32 = |shape: &[u64], data: &[f32]| -> std::io::Result<Vec<u8>> { Ok(npy("<f4", shape, data.iter().flat_map(|x| x.to_le_bytes()).collect())) };
        let npy_frames = |n: u64| -> std::io::Result<Vec<u8>> { Ok(npy("<i8", &[1], (n as i64).to_le_bytes().to_vec())) };
        let mut entries: Vec<(String, Vec<u8>)> = vec![];
        for (name, shape, data) in &arrays {
            entries.push((format!("{name}.npy"), npy_f32(shape, data)?));
        }
        if let Some(n) = self.frames {
            entries.push(("frames.npy".into(), npy_frames(n)?));
        }
        if path.extension().is_some_and(|e| e == "npz") {
            let mut zip = npyz::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            let opts = npyz::zip::write::FileOptions::default().compression_method(npyz::zip::CompressionMethod::Stored);
            for (name, bytes) in &entries {
                zip.start_file(name.as_str(), opts).map_err(|e| perr(path, e.to_string()))?;
                zip.write_all(bytes)?;
            }
            let bytes = zip.finish().map_err(|e| perr(path, e.to_string()))?.into_inner();
            Ok(vec![(path.to_path_buf(), bytes)])
        } else {
            Ok(entries.into_iter().map(|(name, bytes)| (path.join(name), bytes)).collect())
        }
    }

    /// Writes the PCA at `path` ([`Pca::files`]), each file whole or not at all (a temporary
    /// name, fsync, rename): a save that fails (a full disk) leaves no file under its name.
    pub fn save(&self, path: &Path) -> Result<(), FeatureError> {
        for (p, bytes) in self.files(path)? {
            vidfeat_export::write_atomic(&p, &bytes).map_err(std::io::Error::from)?;
        }
        Ok(())
    }
}

/// A `.npy` file (format 1.0, C order, little-endian) of `data` (raw bytes of `descr`), with
/// the header spelled as numpy writes it and as tch's reader parses it (`(1280,)`: no space
/// after the last comma, which npyz puts there and tch's parser refuses).
fn npy(descr: &str, shape: &[u64], data: Vec<u8>) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n', padded to a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend(data);
    out
}

/// Streaming mean and covariance (f64); holds D + D*D numbers however many rows it sees.
pub struct CovarianceAccumulator {
    d: i64,
    n: i64,
    sum: Tensor,
    sxx: Tensor,
}

impl CovarianceAccumulator {
    pub fn new(d: usize) -> Self {
        let d = d as i64;
        CovarianceAccumulator {
            d,
            n: 0,
            sum: Tensor::zeros([d], (Kind::Double, tch::Device::Cpu)),
            sxx: Tensor::zeros([d, d], (Kind::Double, tch::Device::Cpu)),
        }
    }

    pub fn rows(&self) -> usize {
        self.n as usize
    }

    pub fn add(&mut self, x: &[f32], n: usize) {
        if n == 0 {
            return;
        }
        let t = Tensor::from_slice(x).view([n as i64, self.d]).to_kind(Kind::Double);
        self.sum += t.sum_dim_intlist([0i64].as_slice(), false, Kind::Double);
        self.sxx += t.tr().mm(&t);
        self.n += n as i64;
    }

    /// Eigendecomposition of the covariance: the `dims` leading components, sorted by
    /// decreasing eigenvalue, each with its largest-magnitude entry made positive (so the result
    /// is reproducible).
    pub fn fit(&self, dims: usize) -> Result<Pca, String> {
        if self.n < 2 {
            return Err(format!("PCA needs at least 2 frames, got {}", self.n));
        }
        let n = self.n as f64;
        let mean = &self.sum / n;
        let cov = (&self.sxx - mean.outer(&mean) * n) / (n - 1.0);
        let cov = (&cov + cov.tr()) / 2.0;
        let (vals, vecs) = cov.linalg_eigh("L");
        // Ascending -> descending; columns -> rows.
        let vals = vals.flip([0]).clamp_min(0.0);
        let mut vecs = vecs.flip([1]).tr().contiguous();
        let idx = vecs.abs().argmax(1, true);
        let signs = vecs.gather(1, &idx, false).sign();
        let signs = signs.where_self(&signs.ne(0.0), &Tensor::ones_like(&signs));
        vecs = vecs * signs;
        // Only the components asked for are kept (and written): a PCA fitted with 16 dims is a
        // 16-component PCA, which later runs keep whole by default.
        let keep = dims.min(vals.size()[0] as usize).max(1) as i64;
        Pca::with_frames(mean, vals.narrow(0, 0, keep), vecs.narrow(0, 0, keep).contiguous(), keep as usize, Some(self.n as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitening_matches_the_youtube8m_formula_by_hand() {
        // D = 2, components e1 = (0.6, 0.8), e2 = (-0.8, 0.6); eigenvalues 4 and 1.
        let pca = Pca::new(
            Tensor::from_slice(&[1.0f32, 2.0]),
            Tensor::from_slice(&[4.0f32, 1.0]),
            Tensor::from_slice(&[0.6f32, 0.8, -0.8, 0.6]).view([2, 2]),
            2,
        )
        .unwrap();
        // x - mean = (2, 1); projections: 0.6*2 + 0.8*1 = 2.0 and -0.8*2 + 0.6*1 = -1.0;
        // whitened: 2.0 / sqrt(4.0001) and -1.0 / sqrt(1.0001).
        let y = pca.apply(&[3.0, 3.0], 1);
        let want = [2.0 / 4.0001f64.sqrt(), -1.0 / 1.0001f64.sqrt()];
        for (a, b) in y.iter().zip(want) {
            assert!((*a as f64 - b).abs() < 1e-6, "{y:?} vs {want:?}");
        }
        // Keeping one dim keeps the leading component only.
        let one = Pca::new(pca.mean.shallow_clone(), pca.eigenvals.shallow_clone(), pca.eigenvecs.shallow_clone(), 1).unwrap();
        assert_eq!(one.apply(&[3.0, 3.0], 1).len(), 1);
    }

    #[test]
    fn fit_recovers_a_known_covariance_and_round_trips_through_npz() {
        // Points spread along (1, 1) with variance 2 and along (1, -1) with a smaller variance.
        let mut acc = CovarianceAccumulator::new(2);
        let mut rows = vec![];
        for i in 0..200 {
            let a = (i as f32 / 199.0 - 0.5) * 4.0;
            let b = if i % 2 == 0 { 0.1 } else { -0.1 };
            rows.extend_from_slice(&[5.0 + a + b, -1.0 + a - b]);
        }
        acc.add(&rows[..200], 100);
        acc.add(&rows[200..], 100);
        let pca = acc.fit(2).unwrap();
        let m = Vec::<f32>::try_from(&pca.mean).unwrap();
        assert!((m[0] - 5.0).abs() < 1e-4 && (m[1] + 1.0).abs() < 1e-4, "{m:?}");
        let v = Vec::<f32>::try_from(pca.eigenvecs.view([-1])).unwrap();
        let s = std::f32::consts::FRAC_1_SQRT_2;
        assert!((v[0] - s).abs() < 2e-3 && (v[1] - s).abs() < 2e-3, "leading component along (1,1): {v:?}");
        let ev = Vec::<f32>::try_from(&pca.eigenvals).unwrap();
        assert!(ev[0] > ev[1] && ev[1] > 0.0);
        // Whitened training data has unit variance along the leading component.
        let y = pca.apply(&rows, 200);
        let var0 = y.iter().step_by(2).map(|v| v * v).sum::<f32>() / 199.0;
        assert!((var0 - 1.0).abs() < 0.01, "{var0}");

        let dir = std::env::temp_dir().join(format!("pca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for p in [dir.join("p.npz"), dir.join("yt8m")] {
            pca.save(&p).unwrap();
            let back = Pca::load(&p, Some(2)).unwrap();
            assert_eq!(back.apply(&rows, 200), y);
            assert_eq!(back.content_sha256(), pca.content_sha256());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn components_the_sample_cannot_support_are_written_as_zero() {
        // 5 frames in 8 dimensions: at most 4 components have variance.
        let mut acc = CovarianceAccumulator::new(8);
        let rows: Vec<f32> = (0..40).map(|i| ((i * 37 % 11) as f32 - 5.0) * if i % 3 == 0 { 2.0 } else { 0.5 }).collect();
        acc.add(&rows, 5);
        let pca = acc.fit(8).unwrap();
        assert_eq!((pca.frames, pca.supported), (Some(5), 4));
        // A new frame off the sample's span: supported dims carry it, the others are exactly 0.
        let x: Vec<f32> = (0..8).map(|i| (i as f32 * 1.7).sin() * 3.0).collect();
        let y = pca.apply(&x, 1);
        assert!(y[..4].iter().any(|v| v.abs() > 1e-3), "{y:?}");
        assert!(y[4..].iter().all(|&v| v == 0.0), "unsupported components amplified: {y:?}");
        // The same arrays without the frame count: only eigenvalues above the tolerance count,
        // and the hash differs (the written bytes do).
        let bare = Pca::new(pca.mean.shallow_clone(), pca.eigenvals.shallow_clone(), pca.eigenvecs.shallow_clone(), 8).unwrap();
        assert!(bare.supported <= 5 && bare.supported >= 4, "{}", bare.supported);
        assert_ne!(bare.content_sha256(), pca.content_sha256());
        // The count survives saving and loading in both layouts.
        let dir = std::env::temp_dir().join(format!("pca-support-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for p in [dir.join("p.npz"), dir.join("yt8m")] {
            pca.save(&p).unwrap();
            let back = Pca::load(&p, None).unwrap();
            assert_eq!((back.frames, back.supported), (Some(5), 4));
            assert_eq!(back.apply(&x, 1), y);
            assert_eq!(back.content_sha256(), pca.content_sha256());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
