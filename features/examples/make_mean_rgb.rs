//! Writes `benches/models/mean-rgb.pt` and its sidecar: a TorchScript module whose features are
//! the three per-channel means of its input. It costs next to nothing, so `vidfeat extract`
//! with it measures everything around the network (cache reading, batching, PCA,
//! quantization, records) on a machine without a GPU. Traced with tch, no Python:
//!
//!   cargo run -p vidfeat-features --example make_mean_rgb [OUT.pt]
use tch::{CModule, Device, Kind, Tensor};

fn main() {
    let out = std::env::args().nth(1).unwrap_or_else(|| "benches/models/mean-rgb.pt".into());
    let x = Tensor::zeros([2, 3, 224, 224], (Kind::Float, Device::Cpu));
    let module = CModule::create_by_tracing("MeanRgb", "forward", &[x], &mut |xs| vec![xs[0].mean_dim([2i64, 3].as_slice(), false, Kind::Float)])
        .expect("tracing");
    module.save(&out).expect("saving the module");
    let sidecar = serde_json::json!({
        "name": "mean-rgb",
        "weights": "none: per-channel means of the normalised input (a benchmark model, benches/models/README.md)",
        "input_size": [224, 224],
        "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0],
        "channel_order": "rgb",
        "output_dim": 3,
        "fp16": true,
        "resize": "squash",
    });
    let json = std::path::Path::new(&out).with_extension("json");
    std::fs::write(&json, serde_json::to_string_pretty(&sidecar).unwrap() + "\n").unwrap_or_else(|e| panic!("{}: {e}", json.display()));
    println!("wrote {out} and {}", json.display());
}
