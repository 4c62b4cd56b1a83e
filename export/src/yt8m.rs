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
    /// A classifier's logits averaged over the rows (`--predict`); empty: not written.
    pub logits: Vec<f32>,
    /// YouTube-8M 2019 segment labels (frame level only; none: no segment keys).
    pub segments: Vec<SegmentLabel>,
}

/// One rated segment: rows `start .. start + SEGMENT_ROWS` carry (or not, score 0) `label`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentLabel {
    pub start: i64,
    pub label: i64,
    pub score: f32,
}

/// YouTube-8M 2019 segments are 5 rows (seconds at 1 fps) long.
pub const SEGMENT_ROWS: i64 = 5;

/// Width of YouTube-8M's audio rows and `mean_audio`.
pub const AUDIO_DIMS: usize = 128;

/// The placeholder audio byte: the one whose dequantized value is nearest 0.0
/// (127 * 4/255 + 4/512 - 2 = -0.00003). Byte 0 would read back as about -1.99.
pub const AUDIO_PLACEHOLDER_BYTE: u8 = 127;

/// How records are laid out beyond the features themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Schema {
    /// The 2017 release's context key `video_id` instead of `id`.
    pub legacy_2017: bool,
    /// Write an `audio` feature list (128-byte placeholder rows, one per rgb row) and a
    /// `mean_audio` of zeros, for readers that require YouTube-8M's audio features.
    pub audio_zero: bool,
}

impl Schema {
    fn id_key(&self) -> &'static str {
        if self.legacy_2017 {
            "video_id"
        } else {
            "id"
        }
    }
}

pub fn encode_frame_level(r: &VideoRecord, schema: &Schema) -> Vec<u8> {
    let mut ctx = BTreeMap::new();
    ctx.insert(schema.id_key().to_string(), Feature::bytes(vec![r.id.as_bytes().to_vec()]));
    ctx.insert("labels".to_string(), Feature::int64s(r.labels.clone()));
    if !r.segments.is_empty() {
        let seg = &r.segments;
        ctx.insert("segment_start_times".into(), Feature::int64s(seg.iter().map(|s| s.start).collect()));
        ctx.insert("segment_end_times".into(), Feature::int64s(seg.iter().map(|s| s.start + SEGMENT_ROWS).collect()));
        ctx.insert("segment_labels".into(), Feature::int64s(seg.iter().map(|s| s.label).collect()));
        ctx.insert("segment_scores".into(), Feature::floats(seg.iter().map(|s| s.score).collect()));
    }
    let rows = r.rgb.iter().map(|row| Feature::bytes(vec![row.clone()])).collect();
    let mut lists = BTreeMap::new();
    lists.insert("rgb".to_string(), FeatureList { feature: rows });
    if schema.audio_zero {
        let row = Feature::bytes(vec![vec![AUDIO_PLACEHOLDER_BYTE; AUDIO_DIMS]]);
        lists.insert("audio".to_string(), FeatureList { feature: vec![row; r.rgb.len()] });
    }
    SequenceExample {
        context: Some(Features { feature: ctx }),
        feature_lists: Some(FeatureLists { feature_list: lists }),
    }
    .encode_to_vec()
}

pub fn encode_video_level(r: &VideoRecord, schema: &Schema) -> Vec<u8> {
    let mut f = BTreeMap::new();
    f.insert(schema.id_key().to_string(), Feature::bytes(vec![r.id.as_bytes().to_vec()]));
    f.insert("labels".to_string(), Feature::int64s(r.labels.clone()));
    f.insert("mean_rgb".to_string(), Feature::floats(r.mean_rgb.clone()));
    if !r.logits.is_empty() {
        f.insert("logits".to_string(), Feature::floats(r.logits.clone()));
    }
    if schema.audio_zero {
        f.insert("mean_audio".to_string(), Feature::floats(vec![0.0; AUDIO_DIMS]));
    }
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
    /// Frame level: the 2019 segment labels, if any.
    pub segments: Vec<SegmentLabel>,
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

fn segments_of(f: &BTreeMap<String, Feature>) -> Result<Vec<SegmentLabel>, ExportError> {
    let Some(starts) = f.get("segment_start_times") else { return Ok(vec![]) };
    let ints = |k: &str| {
        f.get(k).and_then(|x| x.as_int64s()).ok_or_else(|| ExportError::Schema(format!("segment labels without an int64 list `{k}`")))
    };
    let starts = starts.as_int64s().ok_or_else(|| ExportError::Schema("`segment_start_times` is not an int64 list".into()))?;
    let labels = ints("segment_labels")?;
    let scores = f
        .get("segment_scores")
        .and_then(|x| x.as_floats())
        .ok_or_else(|| ExportError::Schema("segment labels without a float list `segment_scores`".into()))?;
    if labels.len() != starts.len() || scores.len() != starts.len() {
        return Err(ExportError::Schema(format!(
            "segment lists differ in length: {} start times, {} labels, {} scores",
            starts.len(),
            labels.len(),
            scores.len()
        )));
    }
    Ok(starts.iter().zip(labels).zip(scores).map(|((&start, &label), &score)| SegmentLabel { start, label, score }).collect())
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
                    segments: segments_of(&ctx.feature)?,
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
    Ok(Parsed { level: "video", id: id_of(&f)?, labels: labels_of(&f)?, lists: BTreeMap::new(), floats, rgb: vec![], segments: vec![] })
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
            logits: vec![],
            segments: vec![],
        };
        let sc = Schema::default();
        let f = parse_record(&encode_frame_level(&r, &sc)).unwrap();
        assert_eq!((f.level, f.id.as_str(), f.labels.clone()), ("frame", "vid-1", vec![3, 400]));
        assert_eq!(f.rgb, r.rgb);
        assert_eq!(f.lists["rgb"], (2, 3));
        let v = parse_record(&encode_video_level(&r, &sc)).unwrap();
        assert_eq!((v.level, v.id.as_str()), ("video", "vid-1"));
        assert_eq!(v.floats["mean_rgb"], r.mean_rgb);
        // Deterministic bytes.
        assert_eq!(encode_frame_level(&r, &sc), encode_frame_level(&r.clone(), &sc));
        assert!(!f.lists.contains_key("audio") && !v.floats.contains_key("mean_audio"));
    }

    #[test]
    fn legacy_audio_and_segment_keys() {
        let r = VideoRecord {
            id: "v2".into(),
            labels: vec![7],
            rgb: vec![vec![9; 4]; 3],
            mean_rgb: vec![0.25; 4],
            logits: vec![],
            segments: vec![SegmentLabel { start: 0, label: 7, score: 1.0 }, SegmentLabel { start: 5, label: 3, score: 0.0 }],
        };
        let sc = Schema { legacy_2017: true, audio_zero: true };
        let bytes = encode_frame_level(&r, &sc);
        let seq = SequenceExample::decode(bytes.as_slice()).unwrap();
        let ctx = seq.context.unwrap().feature;
        assert!(ctx.contains_key("video_id") && !ctx.contains_key("id"));
        assert_eq!(ctx["segment_end_times"].as_int64s().unwrap(), &[5, 10]);
        let f = parse_record(&bytes).unwrap();
        assert_eq!(f.id, "v2");
        assert_eq!(f.segments, r.segments);
        // One audio row per rgb row, each 128 placeholder bytes that read back as ~0.
        assert_eq!(f.lists["audio"], (3, AUDIO_DIMS));
        let deq = AUDIO_PLACEHOLDER_BYTE as f32 * 4.0 / 255.0 + 4.0 / 512.0 - 2.0;
        assert!(deq.abs() < 1e-3, "{deq}");
        let v = parse_record(&encode_video_level(&r, &sc)).unwrap();
        assert_eq!(v.floats["mean_audio"], vec![0.0; AUDIO_DIMS]);
        assert!(v.segments.is_empty());
    }
}
