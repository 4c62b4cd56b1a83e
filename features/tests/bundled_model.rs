//! The bundled EfficientNet-Lite0 really is the ImageNet network the export script produced.
use std::path::{Path, PathBuf};

use tch::{Device, Tensor};
use vidfeat_features::Model;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model() -> Model {
    Model::load(&root().join("models/efficientnet-lite0.pt"), None, Device::Cpu).expect("bundled model loads")
}

fn rgb_at(path: &Path, w: u32, h: u32) -> Vec<u8> {
    let img = image::open(path).unwrap().to_rgb8();
    let img = if img.dimensions() == (w, h) { img } else { image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle) };
    img.into_raw()
}

fn top5(feats: &[f32]) -> Vec<i64> {
    let head = tch::CModule::load(root().join("models/efficientnet-lite0.classifier.pt")).unwrap();
    let logits = head.forward_ts(&[Tensor::from_slice(feats).view([1, -1])]).unwrap();
    let (_, idx) = logits.topk(5, 1, true, true);
    Vec::<i64>::try_from(idx.view([-1])).unwrap()
}

#[test]
fn features_match_the_export_scripts_reference_vector() {
    let m = model();
    let (w, h) = m.input_wh();
    assert_eq!((w, h, m.sidecar.output_dim), (224, 224, 1280));
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("models/efficientnet-lite0.reference.json")).unwrap()).unwrap();
    assert_eq!(reference["model_sha256"].as_str().unwrap(), m.sha256, "reference made with this model file");
    let want: Vec<f32> = reference["features"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let rgb = rgb_at(&root().join("data-samples").join(reference["frame"].as_str().unwrap()), w, h);
    // Twice in one batch, with a different frame between: batching must not change a row.
    let other = vec![17u8; rgb.len()];
    let batch = [rgb.clone(), other, rgb].concat();
    let got = m.extract(&batch, 3).unwrap();
    assert_eq!(got.len(), 3 * 1280);
    let (a, c) = (&got[..1280], &got[2 * 1280..]);
    assert_eq!(a, c);
    let max_diff = a.iter().zip(&want).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    let scale = want.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    assert!(max_diff <= 1e-3 * scale.max(1.0), "max |diff| {max_diff} vs reference (max |v| {scale})");
}

#[test]
fn imagenet_top5_is_sensible_on_real_frames() {
    let m = model();
    let (w, h) = m.input_wh();
    // A frame of data-samples/videos/imageio__cockatoo.mp4: a sulphur-crested cockatoo (89).
    let cockatoo = m.extract(&rgb_at(&root().join("data-samples/reference_frame.png"), w, h), 1).unwrap();
    let t = top5(&cockatoo);
    assert!(t.contains(&89), "cockatoo not in top-5 {t:?}");
    let is_bird = |i: i64| (7..=24).contains(&i) || (80..=100).contains(&i) || (127..=146).contains(&i);
    assert!(is_bird(t[0]) && is_bird(t[1]), "top classes should be birds: {t:?}");
    // YouTube-8M's own extractor test frame, a South Park cartoon: comic book (917) in top-5.
    let cartoon = m.extract(&rgb_at(&root().join("data-samples/AO7u7fwGzJQ_at_second_0.jpg"), w, h), 1).unwrap();
    let t = top5(&cartoon);
    assert!(t.contains(&917), "comic book not in top-5 {t:?}");
}

/// On CUDA inputs reach the network in channels-last order; the bundled model must take them
/// (a `view` after a convolution would refuse such strides) and give the same features, which
/// the CPU shows as well as a GPU would.
#[test]
fn channels_last_input_gives_the_same_features() {
    let mut m = model();
    let (w, h) = m.input_wh();
    let frames = rgb_at(&root().join("data-samples/reference_frame.png"), w, h);
    let two: Vec<u8> = frames.iter().chain(frames.iter().rev()).copied().collect();
    let plain = m.extract(&two, 2).unwrap();
    m.set_channels_last(true);
    let nhwc = m.extract(&two, 2).unwrap();
    let worst = plain.iter().zip(&nhwc).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-3, "channels-last features differ by up to {worst}");
}
