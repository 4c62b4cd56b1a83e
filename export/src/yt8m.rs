//! The YouTube-8M schemas: frame level (SequenceExample) and video level (Example).
use std::collections::BTreeMap;

use prost::Message;

use crate::proto::{Example, Feature, FeatureList, FeatureLists, Features, SequenceExample};
use crate::ExportError;

/// One video as written: quantized rows and the mean of the unquantized features.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoRecord {
    pub id: String,
    pub labels: Vec<i64>,
    /// One quantized feature vector per sampled second.
    pub rgb: Vec<Vec<u8>>,
    /// Mean over rows of the (PCA'd, unquantized) features.
    pub mean_rgb: Vec<f32>,
}

pub fn encode_frame_level(r: &VideoRecord) -> Vec<u8> {
    let mut ctx = BTreeMap::new();
    ctx.insert("id".to_string(), Feature::bytes(vec![r.id.as_bytes().to_vec()]));
    ctx.insert("labels".to_string(), Feature::int64s(r.labels.clone()));
    let rows = r.rgb.iter().map(|row| Feature::bytes(vec![row.clone()])).collect();
    let mut lists = BTreeMap::new();
    lists.insert("rgb".to_string(), FeatureList { feature: rows });
    SequenceExample {
        context: Some(Features { feature: ctx }),
        feature_lists: Some(FeatureLists { feature_list: lists }),
    }
    .encode_to_vec()
}

pub fn encode_video_level(r: &VideoRecord) -> Vec<u8> {
    let mut f = BTreeMap::new();
    f.insert("id".to_string(), Feature::bytes(vec![r.id.as_bytes().to_vec()]));
    f.insert("labels".to_string(), Feature::int64s(r.labels.clone()));
    f.insert("mean_rgb".to_string(), Feature::floats(r.mean_rgb.clone()));
    Example { features: Some(Features { feature: f }) }.encode_to_vec()
}

/// What a record holds, read back from either schema (ours or Google's).
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub level: &'static str,
    pub id: String,
    pub labels: Vec<i64>,
    /// Frame level: rows and bytes per row of each feature list (e.g. rgb, audio).
    pub lists: BTreeMap<String, (usize, usize)>,
    /// Video level: float features and their lengths (e.g. mean_rgb, mean_audio).
    pub floats: BTreeMap<String, Vec<f32>>,
    /// Frame level: the rgb rows themselves.
    pub rgb: Vec<Vec<u8>>,
}

fn id_of(f: &BTreeMap<String, Feature>) -> Result<String, ExportError> {
    let b = f
        .get("id")
        .or_else(|| f.get("video_id"))
        .and_then(|x| x.as_bytes())
        .and_then(|v| v.first())
        .ok_or_else(|| ExportError::Schema("no bytes feature `id` (or `video_id`)".into()))?;
    Ok(String::from_utf8_lossy(b).into_owned())
}

fn labels_of(f: &BTreeMap<String, Feature>) -> Result<Vec<i64>, ExportError> {
    match f.get("labels") {
        None => Ok(vec![]),
        Some(x) => x
            .as_int64s()
            .map(|v| v.to_vec())
            .ok_or_else(|| ExportError::Schema("`labels` is not an int64 list".into())),
    }
}

/// Parses a record as a frame-level SequenceExample if it has feature lists, else as an Example.
pub fn parse_record(data: &[u8]) -> Result<Parsed, ExportError> {
    if let Ok(seq) = SequenceExample::decode(data) {
        // An Example decodes as a SequenceExample too (same field 1), and Google's video-level
        // records even carry an empty field 2: frame level means at least one feature list.
        if let (Some(ctx), Some(lists)) = (&seq.context, &seq.feature_lists) {
            if !lists.feature_list.is_empty() {
                let mut out = Parsed {
                    level: "frame",
                    id: id_of(&ctx.feature)?,
                    labels: labels_of(&ctx.feature)?,
                    lists: BTreeMap::new(),
                    floats: BTreeMap::new(),
                    rgb: vec![],
                };
                for (name, fl) in &lists.feature_list {
                    let mut width = 0;
                    for f in &fl.feature {
                        let b = f.as_bytes().and_then(|v| v.first()).ok_or_else(|| {
                            ExportError::Schema(format!("feature list `{name}` holds a non-bytes row"))
                        })?;
                        width = b.len();
                        if name == "rgb" {
                            out.rgb.push(b.clone());
                        }
                    }
                    out.lists.insert(name.clone(), (fl.feature.len(), width));
                }
                return Ok(out);
            }
        }
    }
    let ex = Example::decode(data).map_err(|e| ExportError::Schema(format!("not a tf.Example: {e}")))?;
    let f = ex.features.map(|f| f.feature).unwrap_or_default();
    let mut floats = BTreeMap::new();
    for (k, v) in &f {
        if let Some(x) = v.as_floats() {
            floats.insert(k.clone(), x.to_vec());
        }
    }
    Ok(Parsed { level: "video", id: id_of(&f)?, labels: labels_of(&f)?, lists: BTreeMap::new(), floats, rgb: vec![] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_schemas_round_trip() {
        let r = VideoRecord {
            id: "vid-1".into(),
            labels: vec![3, 400],
            rgb: vec![vec![0, 255, 128], vec![1, 2, 3]],
            mean_rgb: vec![0.5, -1.25, 2.0],
        };
        let f = parse_record(&encode_frame_level(&r)).unwrap();
        assert_eq!((f.level, f.id.as_str(), f.labels.clone()), ("frame", "vid-1", vec![3, 400]));
        assert_eq!(f.rgb, r.rgb);
        assert_eq!(f.lists["rgb"], (2, 3));
        let v = parse_record(&encode_video_level(&r)).unwrap();
        assert_eq!((v.level, v.id.as_str()), ("video", "vid-1"));
        assert_eq!(v.floats["mean_rgb"], r.mean_rgb);
        // Deterministic bytes.
        assert_eq!(encode_frame_level(&r), encode_frame_level(&r.clone()));
    }
}
