//! Several models from one decode (`--model A --model B`): the decode options one pass gives
//! them all, and each model's rows out of the decoded ones.
//!
//! One decoder output feeds every model, so the models must take frames of one size and
//! resize mode. Rows follow the `--fps` grid for every model: a clip model's row k is the clip
//! starting at `t_k`, whose first frame is the frame an image model's row k shows (the same
//! rule picks both). So the pass decodes clip rows when one model takes clips, and an image
//! model takes each clip's first frame: the rows it would get from a decode of its own, byte
//! for byte. Two clip models must take the same clips.
#[cfg(feature = "ffmpeg")]
use std::borrow::Cow;

use anyhow::{bail, Result};

#[cfg(feature = "ffmpeg")]
use vidfeat_decode::DecodeOptions;
#[cfg(feature = "ffmpeg")]
use vidfeat_features::Sidecar;

#[cfg(feature = "ffmpeg")]
use crate::pipeline::decode::DecodeSettings;

/// The decode options one pass feeds `sidecars` with (in `--model` order), and which sidecar
/// the decoded rows are shaped for (the clip model's, else the first). Refuses models that
/// need frames of another size, resize mode or clip.
#[cfg(feature = "ffmpeg")]
pub(crate) fn shared_options(settings: &DecodeSettings, sidecars: &[&Sidecar]) -> Result<(DecodeOptions, usize)> {
    anyhow::ensure!(!sidecars.is_empty(), "no model");
    let shape = sidecars.iter().position(|s| s.clip.is_some()).unwrap_or(0);
    let opts = settings.options(sidecars[shape])?;
    let describe = |s: &Sidecar, o: &DecodeOptions| format!("{} takes {}x{} frames, resized by {}", s.name, s.input_size[1], s.input_size[0], o.resize.name());
    for s in sidecars {
        let o = settings.options(s)?;
        if o.size != opts.size {
            bail!("one decode feeds every --model, so they must take frames of one size: {}; {} (run them separately)", describe(sidecars[shape], &opts), describe(s, &o));
        }
        if o.resize != opts.resize {
            bail!(
                "one decode feeds every --model, so they must take frames resized one way: {}; {}. Give --resize (squash, center-crop or letterbox) for all of them",
                describe(sidecars[shape], &opts),
                describe(s, &o)
            );
        }
        if let (Some(a), Some(b)) = (o.clip, opts.clip) {
            if a != b {
                bail!("one decode feeds every --model: {} and {} take different clips ({} and {} frames at {} and {} fps); run them separately", sidecars[shape].name, s.name, b.0, a.0, b.1.to_f64(), a.1.to_f64());
            }
        }
    }
    Ok((opts, shape))
}

#[cfg(feature = "ffmpeg")]
/// A model's rows out of a decoded video's `rows` rows (shaped for `decoded`): the same bytes,
/// or the first frame of each clip row for an image model fed from a clip decode.
pub(crate) fn rows_for<'a>(frames: &'a [u8], rows: usize, decoded: &Sidecar, model: &Sidecar) -> Cow<'a, [u8]> {
    if decoded.clip == model.clip || rows == 0 {
        return Cow::Borrowed(frames);
    }
    let (row, frame) = (frames.len() / rows, model.row_bytes());
    Cow::Owned(frames.chunks_exact(row).flat_map(|clip| &clip[..frame]).copied().collect())
}

#[cfg(feature = "ffmpeg")]
/// One model's features of one video, gathered piece by piece as the video is decoded, one
/// batch in flight across pieces (on CUDA the next batch's upload overlaps the network).
#[derive(Default)]
pub(crate) struct VideoFeatures {
    raw: Vec<f32>,
    /// The classifier's logits summed over the rows (with predict).
    logits: Vec<f64>,
    rows: usize,
    in_flight: Option<vidfeat_features::Pending>,
}

#[cfg(feature = "ffmpeg")]
impl VideoFeatures {
    /// Runs `model` on more rows of the video (`input`: its rows, see [`rows_for`]), `batch`
    /// rows at a time; with `predict`, sums its classifier's logits. The last batch may still
    /// be running: [`VideoFeatures::drain`] waits for it.
    pub(crate) fn add(&mut self, model: &vidfeat_features::Model, input: &[u8], batch: usize, predict: bool) -> Result<(), String> {
        let row_bytes = model.sidecar.row_bytes();
        for c in input.chunks(batch.max(1) * row_bytes) {
            let next = model.submit(c, c.len() / row_bytes).map_err(|e| e.to_string())?;
            if let Some(p) = self.in_flight.replace(next) {
                self.take(model, p, predict)?;
            }
        }
        Ok(())
    }

    /// Waits for the batch still running.
    pub(crate) fn drain(&mut self, model: &vidfeat_features::Model, predict: bool) -> Result<(), String> {
        match self.in_flight.take() {
            Some(p) => self.take(model, p, predict),
            None => Ok(()),
        }
    }

    fn take(&mut self, model: &vidfeat_features::Model, p: vidfeat_features::Pending, predict: bool) -> Result<(), String> {
        let o = model.finish_all(p).map_err(|e| e.to_string())?;
        self.rows += o.features.len() / model.sidecar.output_dim;
        self.raw.extend_from_slice(&o.features);
        if let (true, Some(l), Some(head)) = (predict, &o.logits, &model.sidecar.classifier) {
            self.logits.resize(head.classes, 0.0);
            for row in l.chunks_exact(head.classes) {
                self.logits.iter_mut().zip(row).for_each(|(s, v)| *s += *v as f64);
            }
        }
        Ok(())
    }

    /// Rows finished so far, and their raw features (rows x the model's dims).
    pub(crate) fn raw(&self) -> (usize, &[f32]) {
        (self.rows, &self.raw)
    }

    /// The rows reduced by `pca` and quantized, the mean of the reduced rows, and the mean
    /// logits when they were summed (after [`VideoFeatures::drain`]).
    pub(crate) fn finish(self, pca: &vidfeat_features::Pca) -> (Vec<Vec<u8>>, Vec<f32>, Option<Vec<f32>>) {
        debug_assert!(self.in_flight.is_none(), "drained");
        let (q, mean) = crate::pipeline::consume::reduce_video(pca, &self.raw, self.rows);
        let rows = self.rows.max(1) as f64;
        (q, mean, (!self.logits.is_empty()).then(|| self.logits.iter().map(|s| (s / rows) as f32).collect()))
    }
}

/// The feature names of `models` (their sidecar names) given `--feature-name` values in order:
/// the first model's is `rgb` (what YouTube-8M readers read), the others' their name unless
/// given. Checked: valid, unique, free of the schema's keys.
pub fn feature_names(models: &[&str], given: &[String]) -> Result<Vec<String>> {
    anyhow::ensure!(given.len() <= models.len(), "{} --feature-name values for {} --model", given.len(), models.len());
    let mut out: Vec<String> = vec![];
    for (i, m) in models.iter().enumerate() {
        let name = given.get(i).cloned().unwrap_or_else(|| if i == 0 { "rgb".into() } else { m.to_string() });
        if i == 0 {
            anyhow::ensure!(
                name == "rgb",
                "--feature-name {name}: the first model's features are written as `rgb` and `mean_rgb`, the keys YouTube-8M readers read; names are for the other models"
            );
        } else {
            vidfeat_export::check_feature_name(&name).map_err(|e| anyhow::anyhow!("--model {m}: {e}; give it another with --feature-name"))?;
        }
        if out.contains(&name) {
            bail!("two models would write the features `{name}`: give each --model its own --feature-name (in --model order)");
        }
        out.push(name);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "ffmpeg")]
    fn sidecar(name: &str, size: u32, clip: Option<u32>) -> Sidecar {
        Sidecar {
            name: name.into(),
            weights: String::new(),
            input_size: [size, size],
            mean: [0.0; 3],
            std: [1.0; 3],
            channel_order: "rgb".into(),
            output_dim: 4,
            fp16: false,
            resize: "squash".into(),
            clip: clip.map(|frames| vidfeat_features::ClipSpec { frames, fps: 25.0 }),
            classifier: None,
        }
    }

    #[cfg(feature = "ffmpeg")]
    #[test]
    fn an_image_model_takes_each_clips_first_frame() {
        let (img, clip) = (sidecar("a", 2, None), sidecar("b", 2, Some(3)));
        // Two clip rows of three 2x2 frames, every frame's bytes its number.
        let frames: Vec<u8> = (0..6u8).flat_map(|f| [f; 12]).collect();
        assert_eq!(rows_for(&frames, 2, &clip, &img).into_owned(), [[0u8; 12], [3u8; 12]].concat());
        assert_eq!(rows_for(&frames, 2, &clip, &clip).len(), frames.len());
        let one: Vec<u8> = vec![5; 24];
        assert_eq!(rows_for(&one, 2, &img, &img).into_owned(), one);
    }

    #[test]
    fn feature_names_default_check_and_refuse_clashes() {
        assert_eq!(feature_names(&["efficientnet-lite0", "i3d-kinetics-400"], &[]).unwrap(), ["rgb", "i3d-kinetics-400"]);
        assert_eq!(feature_names(&["a", "b"], &["rgb".into(), "i3d".into()]).unwrap(), ["rgb", "i3d"]);
        assert!(feature_names(&["a", "b", "b"], &[]).is_err(), "two models of one name: one feature name");
        assert!(feature_names(&["a", "b"], &["x".into()]).is_err(), "the first is rgb");
        assert!(feature_names(&["a", "b"], &["rgb".into(), "mean_x".into()]).is_err());
        assert!(feature_names(&["a", "b"], &["rgb".into(), "../x".into()]).is_err());
        assert!(feature_names(&["a", "rgb"], &[]).is_err(), "a model named rgb needs a name");
        assert!(feature_names(&["a"], &["rgb".into(), "b".into()]).is_err(), "more names than models");
    }
}
