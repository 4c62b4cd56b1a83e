//! Shard naming, the stable id -> shard function, and atomic shard files.
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::write::{GzEncoder, ZlibEncoder};

use sha2::{Digest, Sha256};

use crate::atomic::{At, AtomicFile};
use crate::tfrecord::RecordWriter;

/// `{split}-{shard:05}-of-{n:05}.tfrecord`
pub fn shard_name(split: &str, shard: u32, n: u32) -> String {
    format!("{split}-{shard:05}-of-{n:05}.tfrecord")
}

/// The shard a video belongs to: the first 8 bytes of SHA-256(id), big-endian, modulo n.
/// Depends on the id alone, so adding or removing other videos never moves a video.
pub fn shard_of(id: &str, n: u32) -> u32 {
    let h = Sha256::digest(id.as_bytes());
    (u64::from_be_bytes(h[..8].try_into().unwrap()) % n.max(1) as u64) as u32
}

/// Whole-file compression of a shard, as TensorFlow's `TFRecordDataset(compression_type=...)`
/// reads it: `GZIP` (RFC 1952, no file name, mtime 0: deterministic) or `ZLIB` (RFC 1950).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Zlib,
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "zlib" => Ok(Compression::Zlib),
            _ => Err(format!("unknown compression `{s}` (none, gzip, zlib)")),
        }
    }
}

enum Sink {
    Plain(BufWriter<File>),
    Gzip(GzEncoder<BufWriter<File>>),
    Zlib(ZlibEncoder<BufWriter<File>>),
}

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(b),
            Sink::Gzip(w) => w.write(b),
            Sink::Zlib(w) => w.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Gzip(w) => w.flush(),
            Sink::Zlib(w) => w.flush(),
        }
    }
}

impl Sink {
    /// Ends the compressed stream and returns the file.
    fn finish(self) -> std::io::Result<File> {
        let buf = match self {
            Sink::Plain(w) => w,
            Sink::Gzip(w) => w.finish()?,
            Sink::Zlib(w) => w.finish()?,
        };
        buf.into_inner().map_err(|e| e.into_error())
    }
}

/// A shard written under `.NAME.tmp` and renamed to NAME only once complete and fsynced, so
/// a reader never sees a partial shard. Dropping it without `commit` removes the temporary file.
pub struct AtomicShard {
    tmp: PathBuf,
    dest: PathBuf,
    writer: Option<RecordWriter<Sink>>,
}

impl AtomicShard {
    pub fn create(dest: &Path) -> std::io::Result<Self> {
        Self::create_with(dest, Compression::None)
    }

    pub fn create_with(dest: &Path, compression: Compression) -> std::io::Result<Self> {
        let dir = dest.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).at("creating the folder", dir)?;
        // The process id keeps two writers of one shard (a worker and the one that took over its
        // lease) off each other's temporary file.
        let tmp = crate::atomic::temp_name(dest);
        let f = BufWriter::new(File::create(&tmp).at("creating", &tmp)?);
        let sink = match compression {
            Compression::None => Sink::Plain(f),
            Compression::Gzip => Sink::Gzip(GzEncoder::new(f, flate2::Compression::default())),
            Compression::Zlib => Sink::Zlib(ZlibEncoder::new(f, flate2::Compression::default())),
        };
        Ok(AtomicShard { tmp, dest: dest.to_path_buf(), writer: Some(RecordWriter::new(sink)) })
    }

    pub fn write_record(&mut self, data: &[u8]) -> std::io::Result<()> {
        let dest = &self.dest;
        self.writer.as_mut().expect("shard open").write_record(data).at("writing", dest).map_err(Into::into)
    }

    /// fsync, rename into place, fsync the directory. Returns the record count.
    pub fn commit(mut self) -> std::io::Result<u64> {
        let w = self.writer.take().expect("shard open");
        let n = w.records();
        let f = w.into_inner().finish().at("writing", &self.dest)?;
        AtomicFile::finish(f, &self.tmp, &self.dest)?;
        Ok(n)
    }
}

impl Drop for AtomicShard {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_assignment_is_stable_and_spread() {
        assert_eq!(shard_of("abc", 7), shard_of("abc", 7));
        let mut counts = [0u32; 4];
        for i in 0..4000 {
            counts[shard_of(&format!("video{i}"), 4) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
        assert_eq!(shard_name("train", 3, 12), "train-00003-of-00012.tfrecord");
    }

    #[test]
    fn shard_is_invisible_until_commit() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("frame/train-00000-of-00001.tfrecord");
        let mut s = AtomicShard::create(&dest).unwrap();
        s.write_record(b"x").unwrap();
        assert!(!dest.exists());
        assert_eq!(s.commit().unwrap(), 1);
        assert!(dest.exists());
        let mut s = AtomicShard::create(&dir.path().join("frame/other.tfrecord")).unwrap();
        s.write_record(b"y").unwrap();
        drop(s);
        let left: Vec<_> = fs::read_dir(dir.path().join("frame")).unwrap().collect();
        assert_eq!(left.len(), 1, "an abandoned shard leaves nothing behind");
    }
}
