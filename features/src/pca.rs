//! PCA with whitening, as YouTube-8M applied it:
//! `y = ((x - mean) @ eigenvecs[:dims].T) / sqrt(eigenvals[:dims] + 1e-4)`.
//!
//! Storage mirrors YouTube-8M's three files: `mean` [D], `eigenvals` [K] (descending) and
//! `eigenvecs` [K, D] (one component per row; YouTube-8M's loader transposes it and keeps the
//! first columns). Ours is one `.npz` with those three arrays; a folder holding
//! `mean.npy`, `eigenvals.npy`, `eigenvecs.npy` (Google's layout) is read too.
use std::path::Path;

use tch::{Kind, Tensor};

use crate::FeatureError;

pub const WHITEN_EPSILON: f64 = 1e-4;

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
    /// Precomputed projection [D, dims] / sqrt(eigenvals + eps).
    proj: Tensor,
}

fn perr(path: &Path, msg: impl Into<String>) -> FeatureError {
    FeatureError::Pca { path: path.display().to_string(), msg: msg.into() }
}

impl Pca {
    pub fn new(mean: Tensor, eigenvals: Tensor, eigenvecs: Tensor, dims: usize) -> Result<Self, String> {
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
            return Err(format!("cannot keep {dims} dims of a {k}-component PCA"));
        }
        let dims_i = dims as i64;
        let scale = (eigenvals.narrow(0, 0, dims_i).to_kind(Kind::Double) + WHITEN_EPSILON).sqrt().to_kind(Kind::Float);
        let proj = (eigenvecs.narrow(0, 0, dims_i).tr() / scale.view([1, dims_i])).contiguous();
        Ok(Pca { mean, eigenvals, eigenvecs, dims, proj })
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
        hex::encode(h.finalize())
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
        let (mean, vals, vecs) = if path.is_dir() {
            let rd = |n: &str| Tensor::read_npy(path.join(n)).map_err(|e| perr(path, format!("{n}: {e}")));
            (rd("mean.npy")?, rd("eigenvals.npy")?, rd("eigenvecs.npy")?)
        } else {
            let arrays = Tensor::read_npz(path).map_err(|e| perr(path, e.to_string()))?;
            let get = |n: &str| {
                arrays.iter().find(|(k, _)| k == n || k == &format!("{n}.npy")).map(|(_, t)| t.shallow_clone()).ok_or_else(|| perr(path, format!("no array `{n}`")))
            };
            (get("mean")?, get("eigenvals")?, get("eigenvecs")?)
        };
        let k = vals.numel();
        let dims = dims.unwrap_or(k.min(1024));
        Pca::new(mean, vals, vecs, dims).map_err(|m| perr(path, m))
    }

    /// Writes `.npz` (mean, eigenvals, eigenvecs) or, for a path without that extension, a
    /// folder with YouTube-8M's three `.npy` files.
    pub fn save(&self, path: &Path) -> Result<(), FeatureError> {
        if path.extension().is_some_and(|e| e == "npz") {
            Tensor::write_npz(&[("mean", &self.mean), ("eigenvals", &self.eigenvals), ("eigenvecs", &self.eigenvecs)], path)?;
        } else {
            std::fs::create_dir_all(path)?;
            self.mean.write_npy(path.join("mean.npy"))?;
            self.eigenvals.write_npy(path.join("eigenvals.npy"))?;
            self.eigenvecs.write_npy(path.join("eigenvecs.npy"))?;
        }
        Ok(())
    }
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

    /// Eigendecomposition of the covariance: components sorted by decreasing eigenvalue, each
    /// with its largest-magnitude entry made positive (so the result is reproducible).
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
        let k = vals.size()[0] as usize;
        Pca::new(mean, vals, vecs, dims.min(k))
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
}
