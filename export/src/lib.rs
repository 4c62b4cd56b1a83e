//! TFRecord writing and reading, YouTube-8M frame- and video-level schemas, shard naming and
//! atomic shard commit. The only crate that knows the TFRecord format.
pub mod atomic;
pub mod proto;
pub mod shard;
pub mod tfrecord;
pub mod yt8m;

pub use atomic::{write_atomic, At, AtomicFile, FileError};
pub use shard::{shard_name, shard_of, AtomicShard, Compression};
pub use tfrecord::{masked_crc, RecordReader, RecordWriter};
pub use yt8m::{check_feature_name, encode_frame_level, encode_video_level, parse_record, NamedFeature, Parsed, Schema, SegmentLabel, VideoRecord, AUDIO_DIMS, SEGMENT_ROWS};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("corrupt record at byte {offset}: {what}")]
    Corrupt { offset: u64, what: String },
    #[error("schema: {0}")]
    Schema(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_shards_read_back_and_are_deterministic() {
        let d = tempfile::tempdir().unwrap();
        let recs: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 100 + i as usize * 7]).collect();
        let mut bytes = vec![];
        for c in [Compression::None, Compression::Gzip, Compression::Zlib] {
            let p = d.path().join(format!("{c:?}.tfrecord"));
            let mut s = AtomicShard::create_with(&p, c).unwrap();
            for r in &recs {
                s.write_record(r).unwrap();
            }
            s.commit().unwrap();
            let (rdr, detected) = open_records(&p).unwrap();
            assert_eq!(detected, c);
            assert_eq!(rdr.collect::<Result<Vec<_>, _>>().unwrap(), recs);
            bytes.push(std::fs::read(&p).unwrap());
        }
        assert_eq!(&bytes[1][..2], &[0x1f, 0x8b]);
        assert!(bytes[1].len() < bytes[0].len() / 5 && bytes[2].len() < bytes[0].len() / 5);
        // Same input, same bytes (gzip header without time or name).
        let p = d.path().join("again.tfrecord");
        let mut s = AtomicShard::create_with(&p, Compression::Gzip).unwrap();
        for r in &recs {
            s.write_record(r).unwrap();
        }
        s.commit().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), bytes[1]);
    }

    #[test]
    fn a_plain_file_that_looks_like_zlib_is_read_as_plain() {
        // A first record of 376 bytes starts with 0x78 0x01, a valid zlib header.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.tfrecord");
        let mut s = AtomicShard::create(&p).unwrap();
        s.write_record(&[9u8; 376]).unwrap();
        s.commit().unwrap();
        assert_eq!(&std::fs::read(&p).unwrap()[..2], &[0x78, 0x01]);
        let (rdr, c) = open_records(&p).unwrap();
        assert_eq!(c, Compression::None);
        assert_eq!(rdr.count(), 1);
    }
}

/// Opens a TFRecord file, plain or whole-file GZIP/ZLIB compressed (detected from its first
/// bytes; a plain file is recognised by its first length CRC). Offsets in errors are offsets in
/// the uncompressed stream.
pub fn open_records(path: &std::path::Path) -> Result<(RecordReader<Box<dyn std::io::Read>>, Compression), ExportError> {
    use std::io::{Read, Seek};
    let mut f = std::fs::File::open(path)?;
    let mut head = [0u8; 12];
    let n = f.read(&mut head)?;
    f.rewind()?;
    let plain_header = n == 12 && masked_crc(&head[..8]) == u32::from_le_bytes(head[8..12].try_into().unwrap());
    let buf = std::io::BufReader::new(f);
    let (r, c): (Box<dyn Read>, Compression) = if n >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        (Box::new(flate2::read::MultiGzDecoder::new(buf)), Compression::Gzip)
    } else if !plain_header && n >= 2 && head[0] & 0x0f == 8 && (head[0] as u16 * 256 + head[1] as u16) % 31 == 0 {
        (Box::new(flate2::read::ZlibDecoder::new(buf)), Compression::Zlib)
    } else {
        (Box::new(buf), Compression::None)
    };
    Ok((RecordReader::new(r), c))
}

/// Reads every record of a TFRecord file (plain, GZIP or ZLIB), checking CRCs.
pub fn read_file(path: &std::path::Path) -> Result<Vec<Vec<u8>>, ExportError> {
    open_records(path)?.0.collect()
}
