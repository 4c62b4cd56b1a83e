//! `--hwdec`: NVDEC through FFmpeg's `*_cuvid` decoders where the driver's libraries are, else
//! the CPU, with a warning when NVDEC was asked for by name. On a machine without the NVIDIA
//! driver (CI) the fallback is checked; on a GPU machine, NVDEC's rows against the CPU's.
use std::path::Path;

use vidfeat_decode::{decode_file, nvdec_available, DecodeOptions, DecodeReport, HwDecode};

fn rows(path: &Path, hwdec: HwDecode) -> (Vec<Vec<u8>>, DecodeReport) {
    let mut v = vec![];
    let o = DecodeOptions { size: Some((224, 224)), max_frames: None, hwdec, ..Default::default() };
    let r = decode_file(path, &o, |f| v.push(f.rgb)).unwrap();
    (v, r)
}

#[test]
fn hwdec_decodes_the_same_rows_or_says_why_not() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data-samples/videos/mmaction2__demo.mp4");
    let (cpu, r) = rows(&p, HwDecode::None);
    assert_eq!(r.decoder, "h264");
    assert!(r.warnings.is_empty());
    for hw in [HwDecode::Auto, HwDecode::Cuda] {
        let (got, r) = rows(&p, hw);
        assert_eq!(got.len(), cpu.len());
        match nvdec_available() {
            Err(why) => {
                assert_eq!(r.decoder, "h264", "{hw:?}");
                assert!(got == cpu, "{hw:?}: the CPU fallback changed the rows");
                if hw == HwDecode::Cuda {
                    assert!(r.warnings.iter().any(|w| w.contains("NVDEC unavailable") && w.contains(&why) && w.contains("CPU")), "{:?}", r.warnings);
                } else {
                    assert!(r.warnings.is_empty(), "auto falls back silently: {:?}", r.warnings);
                }
            }
            Ok(()) => {
                assert_eq!(r.decoder, "h264_cuvid", "{hw:?}: {:?}", r.warnings);
                // Bit-exact decoding; only the colour conversion's input layout (NV12) differs.
                for (a, b) in got.iter().zip(&cpu) {
                    let d = a.iter().zip(b).map(|(x, y)| (*x as i32 - *y as i32).unsigned_abs() as f64).sum::<f64>() / a.len() as f64;
                    assert!(d < 1.0, "{hw:?}: NVDEC rows differ from the CPU's by {d:.2}");
                }
            }
        }
    }
}
