//! FFmpeg itself over arbitrary bytes, as a downloaded "video" would reach it: a file opened
//! with vidfeat's protocol and demuxer whitelists and limits. Whatever the bytes, decoding ends
//! in rows or a `DecodeError`: no crash inside FFmpeg, no hang (a 5 s watchdog), no panic, and
//! the rows delivered are the rows reported, at the size asked for.
//!
//! Seeds (corpus/decode_container): tiny clips made here with `ffmpeg -f lavfi -i testsrc` in
//! the containers and codecs the whitelist allows (mp4/h264, mkv/mpeg4 and hevc, webm/vp8,
//! avi/mjpeg, ts/mpeg2, flv, gif, ogv/theora, asf, nut/ffv1, ivf/av1, mov with audio), plus an
//! HLS playlist and an ffconcat script pointing at /etc/passwd (the whitelist must refuse them).
#![no_main]
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use vidfeat_decode::{decode_file, DecodeOptions, Rational, Resize};

fuzz_target!(|data: &[u8]| {
    // FFmpeg opens paths (the `file` protocol only): one scratch file per process.
    let dir = if std::path::Path::new("/dev/shm").is_dir() { std::path::PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    let path = dir.join(format!("vidfeat-fuzz-{}.bin", std::process::id()));
    std::fs::write(&path, data).unwrap();
    let opts = DecodeOptions {
        fps: Rational::new(2, 1),
        max_frames: Some(6),
        size: Some((32, 24)),
        resize: Resize::Squash,
        threads: 1,
        timeout: Some(Duration::from_secs(5)),
        max_pixels: 4_000_000,
        max_decoder_bytes: 256 << 20,
        max_duration: 3600.0,
        ..Default::default()
    };
    let mut rows = 0u64;
    let r = decode_file(&path, &opts, |f| {
        assert_eq!((f.width, f.height, f.rgb.len()), (32, 24, 32 * 24 * 3));
        assert_eq!(f.index, rows);
        rows += 1;
    });
    if let Ok(rep) = r {
        assert_eq!(rep.rows, rows);
        assert!(rows <= 6);
    }
    let _ = std::fs::remove_file(&path);
});
