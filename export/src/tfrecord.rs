//! TFRecord framing: `u64 len (LE) | u32 masked crc32c(len) | data | u32 masked crc32c(data)`.
use std::io::{self, Read, Write};

use crate::ExportError;

const MASK_DELTA: u32 = 0xa282_ead8;

/// TensorFlow's masked CRC-32C (Castagnoli).
pub fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    (c.rotate_right(15)).wrapping_add(MASK_DELTA)
}

/// Appends records to any writer.
pub struct RecordWriter<W: Write> {
    inner: W,
    records: u64,
}

impl<W: Write> RecordWriter<W> {
    pub fn new(inner: W) -> Self {
        RecordWriter { inner, records: 0 }
    }

    pub fn write_record(&mut self, data: &[u8]) -> io::Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        self.inner.write_all(&len)?;
        self.inner.write_all(&masked_crc(&len).to_le_bytes())?;
        self.inner.write_all(data)?;
        self.inner.write_all(&masked_crc(data).to_le_bytes())?;
        self.records += 1;
        Ok(())
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

/// Reads records one at a time, checking both CRCs; errors name the byte offset of the record.
pub struct RecordReader<R: Read> {
    inner: R,
    offset: u64,
}

impl<R: Read> RecordReader<R> {
    pub fn new(inner: R) -> Self {
        RecordReader { inner, offset: 0 }
    }

    /// Byte offset of the next record.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next record, `None` at a clean end of file.
    pub fn read_record(&mut self) -> Result<Option<Vec<u8>>, ExportError> {
        let start = self.offset;
        let mut header = [0u8; 12];
        let got = read_full(&mut self.inner, &mut header)?;
        if got == 0 {
            return Ok(None);
        }
        if got < header.len() {
            return Err(ExportError::Corrupt { offset: start, what: "truncated record header".into() });
        }
        let len_bytes: [u8; 8] = header[..8].try_into().unwrap();
        let len_crc = u32::from_le_bytes(header[8..12].try_into().unwrap());
        if masked_crc(&len_bytes) != len_crc {
            return Err(ExportError::Corrupt { offset: start, what: "length CRC mismatch".into() });
        }
        let len = u64::from_le_bytes(len_bytes);
        if len > (1 << 31) {
            return Err(ExportError::Corrupt { offset: start, what: format!("record length {len} is implausible") });
        }
        let mut data = vec![0u8; len as usize];
        if read_full(&mut self.inner, &mut data)? < data.len() {
            return Err(ExportError::Corrupt { offset: start, what: "truncated record data".into() });
        }
        let mut crc = [0u8; 4];
        if read_full(&mut self.inner, &mut crc)? < 4 {
            return Err(ExportError::Corrupt { offset: start, what: "truncated record CRC".into() });
        }
        if masked_crc(&data) != u32::from_le_bytes(crc) {
            return Err(ExportError::Corrupt { offset: start, what: "data CRC mismatch".into() });
        }
        self.offset += 16 + len;
        Ok(Some(data))
    }
}

impl<R: Read> Iterator for RecordReader<R> {
    type Item = Result<Vec<u8>, ExportError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.read_record().transpose()
    }
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_answer() {
        assert_eq!(crc32c::crc32c(b"Hello world!"), 0x7B98_E751);
    }

    #[test]
    fn round_trip_and_corruption_is_located() {
        let mut w = RecordWriter::new(Vec::new());
        let recs: Vec<Vec<u8>> = vec![b"first".to_vec(), vec![], vec![7u8; 1000]];
        for r in &recs {
            w.write_record(r).unwrap();
        }
        let bytes = w.into_inner();
        let back: Vec<Vec<u8>> = RecordReader::new(&bytes[..]).map(|r| r.unwrap()).collect();
        assert_eq!(back, recs);

        // Flip one bit in the third record's data: the error names that record's offset.
        let third = (16 + 5) + 16;
        let mut bad = bytes.clone();
        bad[third + 12 + 10] ^= 1;
        let errs: Vec<_> = RecordReader::new(&bad[..]).filter_map(|r| r.err()).collect();
        match &errs[0] {
            ExportError::Corrupt { offset, .. } => assert_eq!(*offset, third as u64),
            e => panic!("unexpected {e}"),
        }
        // Truncation is an error, not a silent end.
        let cut = &bytes[..bytes.len() - 3];
        assert!(RecordReader::new(cut).any(|r| r.is_err()));
    }
}
