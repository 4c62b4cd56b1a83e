//! The frames we sample equal those of `ffmpeg -vf setpts=PTS-STARTPTS,fps=1:round=up` (the
//! independent reference),
//! compared as pixels at the model size, on real clips from data-samples/.
use std::path::{Path, PathBuf};
use std::process::Command;

use vidfeat_decode::{decode_file, DecodeOptions};

const W: u32 = 224;
const H: u32 = 224;

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data-samples")
}

fn ffmpeg_rows(path: &Path, extra: &str) -> Vec<Vec<u8>> {
    // setpts=PTS-STARTPTS: our rows are timed from the video's first frame. The CLI otherwise
    // times them from the container start, which other streams can move (an Opus track that
    // starts at -0.007 s pushes the grid to start at 1 s and drops the first second).
    let vf = format!("setpts=PTS-STARTPTS,fps=1:round=up{extra},scale={W}:{H}:flags=bilinear");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-an", "-sn", "-vf", &vf, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("the ffmpeg CLI is installed by scripts/setup.sh");
    assert!(out.status.success(), "ffmpeg failed on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    out.stdout.chunks((W * H * 3) as usize).map(|c| c.to_vec()).collect()
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (*x as i32 - *y as i32).unsigned_abs() as f64).sum::<f64>() / a.len() as f64
}

fn ours(path: &Path, opts: &DecodeOptions) -> Vec<Vec<u8>> {
    let mut rows = vec![];
    decode_file(path, opts, |f| {
        assert_eq!(f.index as usize, rows.len());
        rows.push(f.rgb)
    })
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    rows
}

/// Same row count, and every row matches the reference row at the same index closely and
/// better than the neighbouring reference rows (so an off-by-one-second shift cannot pass).
fn check_same_frames(name: &str, a: &[Vec<u8>], b: &[Vec<u8>]) {
    assert_eq!(a.len(), b.len(), "{name}: row count ours {} vs ffmpeg {}", a.len(), b.len());
    for k in 0..a.len() {
        let d = mean_abs_diff(&a[k], &b[k]);
        assert!(d < 2.0, "{name} row {k}: mean abs diff {d:.2} vs ffmpeg");
        for j in [k.wrapping_sub(1), k + 1] {
            if let Some(n) = b.get(j) {
                let dn = mean_abs_diff(&a[k], n);
                assert!(d <= dn, "{name} row {k} is closer to ffmpeg row {j} ({dn:.2}) than to row {k} ({d:.2})");
            }
        }
    }
}

#[test]
fn real_clips_match_ffmpeg_fps_round_up() {
    let opts = DecodeOptions { size: Some((W, H)), max_frames: None, ..Default::default() };
    let dir = samples().join("videos");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let a = ours(&p, &opts);
        let b = ffmpeg_rows(&p, "");
        check_same_frames(&name, &a, &b);
        checked += 1;
    }
    assert!(checked >= 4);
}

#[test]
fn max_frames_caps_rows() {
    let p = samples().join("videos/mmaction2__demo.mp4");
    let opts = DecodeOptions { size: Some((W, H)), max_frames: Some(3), ..Default::default() };
    let a = ours(&p, &opts);
    let b = ffmpeg_rows(&p, "");
    assert_eq!(a.len(), 3);
    check_same_frames("demo capped", &a, &b[..3]);
}

#[test]
fn missing_and_corrupt_inputs_get_kinds() {
    let opts = DecodeOptions { size: Some((W, H)), ..Default::default() };
    let e = decode_file(Path::new("/nonexistent/video.mp4"), &opts, |_| {}).unwrap_err();
    assert_eq!(e.kind(), "not_found");
    let e = decode_file(&samples().join("broken/decord__corrupted.mp4"), &opts, |_| {}).unwrap_err();
    assert_eq!(e.kind(), "corrupt", "{e}");
    let junk = std::env::temp_dir().join(format!("junk-{}.mp4", std::process::id()));
    std::fs::write(&junk, b"this is not a video at all, just text").unwrap();
    let e = decode_file(&junk, &opts, |_| {}).unwrap_err();
    std::fs::remove_file(&junk).unwrap();
    assert_eq!(e.kind(), "unsupported_format", "{e}");
}
