//! prost types for the tf.train protos in `schemas/example.proto` (same field numbers).
//! Maps are BTreeMaps so that encoding is deterministic (keys in sorted order).
use std::collections::BTreeMap;

#[derive(Clone, PartialEq, prost::Message)]
pub struct BytesList {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub value: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FloatList {
    #[prost(float, repeated, tag = "1")]
    pub value: Vec<f32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Int64List {
    #[prost(int64, repeated, tag = "1")]
    pub value: Vec<i64>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    #[prost(message, tag = "1")]
    BytesList(BytesList),
    #[prost(message, tag = "2")]
    FloatList(FloatList),
    #[prost(message, tag = "3")]
    Int64List(Int64List),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Feature {
    #[prost(oneof = "Kind", tags = "1, 2, 3")]
    pub kind: Option<Kind>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Features {
    #[prost(btree_map = "string, message", tag = "1")]
    pub feature: BTreeMap<String, Feature>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FeatureList {
    #[prost(message, repeated, tag = "1")]
    pub feature: Vec<Feature>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FeatureLists {
    #[prost(btree_map = "string, message", tag = "1")]
    pub feature_list: BTreeMap<String, FeatureList>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Example {
    #[prost(message, optional, tag = "1")]
    pub features: Option<Features>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SequenceExample {
    #[prost(message, optional, tag = "1")]
    pub context: Option<Features>,
    #[prost(message, optional, tag = "2")]
    pub feature_lists: Option<FeatureLists>,
}

impl Feature {
    pub fn bytes(v: Vec<Vec<u8>>) -> Self {
        Feature { kind: Some(Kind::BytesList(BytesList { value: v })) }
    }
    pub fn floats(v: Vec<f32>) -> Self {
        Feature { kind: Some(Kind::FloatList(FloatList { value: v })) }
    }
    pub fn int64s(v: Vec<i64>) -> Self {
        Feature { kind: Some(Kind::Int64List(Int64List { value: v })) }
    }
    pub fn as_bytes(&self) -> Option<&[Vec<u8>]> {
        match &self.kind {
            Some(Kind::BytesList(b)) => Some(&b.value),
            _ => None,
        }
    }
    pub fn as_floats(&self) -> Option<&[f32]> {
        match &self.kind {
            Some(Kind::FloatList(b)) => Some(&b.value),
            _ => None,
        }
    }
    pub fn as_int64s(&self) -> Option<&[i64]> {
        match &self.kind {
            Some(Kind::Int64List(b)) => Some(&b.value),
            _ => None,
        }
    }
}
