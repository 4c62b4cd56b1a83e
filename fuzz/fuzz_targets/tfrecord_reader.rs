//! Any bytes as a TFRecord file: every record is CRC-checked and parsed as a YouTube-8M
//! SequenceExample or Example; errors are values, never panics or huge allocations.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for rec in vidfeat_export::RecordReader::new(data) {
        match rec {
            Ok(r) => {
                let _ = vidfeat_export::parse_record(&r);
            }
            Err(_) => break,
        }
    }
    // Records need not be framed to reach the parser: feed the bytes to it directly too.
    let _ = vidfeat_export::parse_record(data);
});
