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
    /// Further models' features in the same record (`--model A --model B`): each a frame-level
    /// feature list `NAME` (one row per rgb row) and a video-level `mean_NAME`.
    pub extra: Vec<NamedFeature>,
    /// YouTube-8M 2019 segment labels (frame level only; none: no segment keys).
    pub segments: Vec<SegmentLabel>,
}

/// One more model's features in a record: quantized rows and the mean of the unquantized ones.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedFeature {
    pub name: String,
    pub rows: Vec<Vec<u8>>,
    pub mean: Vec<f32>,
}

/// Feature names a record already uses (or YouTube-8M readers expect), which another model's
/// features may not take: `NAME` and `mean_NAME` must be free.
pub const RESERVED_FEATURE_NAMES: &[&str] = &["rgb", "audio", "id", "video_id", "labels", "logits", "segment_start_times", "segment_end_times", "segment_labels", "segment_scores"];

/// Whether `name` can name another model's features: 1 to 64 ASCII letters, digits, `_`, `-`,
/// `.`, not reserved, not starting with `mean_` (the video-level key is `mean_NAME`).
pub fn check_feature_name(name: &str) -> Result<(), String> {
    let chars_ok = name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if name.is_empty() || name.len() > 64 || !chars_ok {
        return Err(format!("feature name `{}`: 1 to 64 ASCII letters, digits, `_`, `-` or `.`", name.escape_debug()));
    }
    if RESERVED_FEATURE_NAMES.contains(&name) || name.starts_with("mean_") {
        return Err(format!("feature name `{name}`: taken by the YouTube-8M schema (rgb, audio, id, labels, logits, segment_*, mean_*)"));
    }
    Ok(())
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
    for x in &r.extra {
        lists.insert(x.name.clone(), FeatureList { feature: x.rows.iter().map(|row| Feature::bytes(vec![row.clone()])).collect() });
    }
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
    for x in &r.extra {
        f.insert(format!("mean_{}", x.name), Feature::floats(x.mean.clone()));
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
    /// Frame level: the rows of the other feature lists but `audio` (further models').
    pub other: BTreeMap<String, Vec<Vec<u8>>>,
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
                    other: BTreeMap::new(),
                    segments: segments_of(&ctx.feature)?,
                };
                for (name, fl) in &lists.feature_list {
                    let mut width = 0;
                    for f in &fl.feature {
                        let b = f.as_bytes().and_then(|v| v.first()).ok_or_else(|| {
                            ExportError::Schema(format!("feature list `{name}` holds a non-bytes row"))
                        })?;
                        width = b.len();
                        match name.as_str() {
                            "rgb" => out.rgb.push(b.clone()),
                            "audio" => {}
                            _ => out.other.entry(name.clone()).or_default().push(b.clone()),
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
    Ok(Parsed { level: "video", id: id_of(&f)?, labels: labels_of(&f)?, lists: BTreeMap::new(), floats, rgb: vec![], other: BTreeMap::new(), segments: vec![] })
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
            extra: vec![NamedFeature { name: "i3d".into(), rows: vec![vec![7, 8], vec![9, 10]], mean: vec![0.125, 4.0] }],
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
        // Another model's features: its own list and mean, beside rgb.
        assert_eq!((f.other["i3d"].clone(), f.lists["i3d"]), (r.extra[0].rows.clone(), (2, 2)));
        assert_eq!(v.floats["mean_i3d"], r.extra[0].mean);
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
            extra: vec![],
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

    #[test]
    fn feature_names_stay_clear_of_the_schema() {
        for ok in ["i3d", "i3d-kinetics-400", "clip_vit.b32", "A1"] {
            assert!(check_feature_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "rgb", "audio", "labels", "logits", "id", "video_id", "mean_x", "segment_labels", "a/b", "../x", "a b", "é", &"x".repeat(65)] {
            assert!(check_feature_name(bad).is_err(), "{bad:?}");
        }
    }
}
