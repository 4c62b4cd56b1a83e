//! TFRecord writing and reading, YouTube-8M frame- and video-level schemas, shard naming and
//! atomic shard commit. The only crate that knows the TFRecord format.
pub mod proto;
pub mod shard;
pub mod tfrecord;
pub mod yt8m;

pub use shard::{shard_name, shard_of, AtomicShard};
pub use tfrecord::{masked_crc, RecordReader, RecordWriter};
pub use yt8m::{encode_frame_level, encode_video_level, parse_record, Parsed, VideoRecord};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("corrupt record at byte {offset}: {what}")]
    Corrupt { offset: u64, what: String },
    #[error("schema: {0}")]
    Schema(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads every record of a TFRecord file, checking CRCs.
pub fn read_file(path: &std::path::Path) -> Result<Vec<Vec<u8>>, ExportError> {
    let f = std::fs::File::open(path)?;
    RecordReader::new(std::io::BufReader::new(f)).collect()
}
