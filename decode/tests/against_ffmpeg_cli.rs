//! Sampling checked against an independent reference, the ffmpeg CLI:
//! `ffmpeg -i V -vf setpts=PTS-STARTPTS,fps=1:round=up,scale=224:224:flags=bilinear` (the CLI
//! applies display rotation itself), compared as pixels at the model size, over every video of
//! the corpus (data-samples/videos and decode/tests/media) and over generated edge cases.
//!
//! `setpts=PTS-STARTPTS`: our rows are timed from the video's first frame; the CLI otherwise
//! times them from the container start, which other streams move (an Opus track starting at
//! -0.007 s pushes the CLI's grid to start at 1 s and drops the first second).
use std::path::{Path, PathBuf};
use std::process::Command;

use vidfeat_decode::{decode_file, DecodeOptions, Resize};

const W: u32 = 224;
const H: u32 = 224;

fn here() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn ffmpeg_rows(path: &Path, pre: &str) -> Vec<Vec<u8>> {
    let vf = format!("{pre}setpts=PTS-STARTPTS,fps=1:round=up,scale={W}:{H}:flags=bilinear");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-an", "-sn", "-dn", "-vf", &vf, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
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
        assert_eq!((f.width, f.height), (W, H));
        rows.push(f.rgb)
    })
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    rows
}

/// Single-threaded; `check_video` compares with frame threads too.
fn opts() -> DecodeOptions {
    DecodeOptions { size: Some((W, H)), max_frames: None, threads: 1, ..Default::default() }
}

/// Same row count, and every row matches the reference row at the same index closely and
/// better than the neighbouring reference rows (so an off-by-one-second shift cannot pass).
fn check_same_frames(name: &str, a: &[Vec<u8>], b: &[Vec<u8>]) {
    assert_eq!(a.len(), b.len(), "{name}: row count ours {} vs ffmpeg {}", a.len(), b.len());
    for k in 0..a.len() {
        let d = mean_abs_diff(&a[k], &b[k]);
        assert!(d < 2.5, "{name} row {k}: mean abs diff {d:.2} vs ffmpeg");
        for j in [k.wrapping_sub(1), k + 1] {
            // Only where the neighbouring reference row is visibly different (static scenes
            // give near-identical rows).
            if let Some(n) = b.get(j).filter(|n| mean_abs_diff(&b[k], n) > 2.0) {
                let dn = mean_abs_diff(&a[k], n);
                assert!(d <= dn, "{name} row {k} is closer to ffmpeg row {j} ({dn:.2}) than to row {k} ({d:.2})");
            }
        }
    }
}

/// Decodes with and without skipping unneeded frames: the rows must be identical, byte for byte.
fn check_video(path: &Path) -> usize {
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let a = ours(path, &opts());
    let full = ours(path, &DecodeOptions { skip_unneeded: false, ..opts() });
    assert!(a == full, "{name}: skipping non-reference frames changed the output");
    let threaded = ours(path, &DecodeOptions { threads: 0, ..opts() });
    assert!(a == threaded, "{name}: frame threading changed the output");
    let b = ffmpeg_rows(path, "");
    check_same_frames(&name, &a, &b);
    a.len()
}

fn videos_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

#[test]
fn every_real_clip_matches_the_cli() {
    let mut n = 0;
    for dir in [here().join("../data-samples/videos"), here().join("tests/media/real")] {
        for p in videos_in(&dir) {
            check_video(&p);
            n += 1;
        }
    }
    assert_eq!(n, 15);
}

#[test]
fn format_edge_cases_match_the_cli() {
    // HEVC, AV1, VP8, VP9 (with alpha, without duration), H.263, MPEG-4 Part 2, a 1x1 4:4:4
    // H.264, out-of-order timestamps, anamorphic SAR.
    let mut n = 0;
    for p in videos_in(&here().join("tests/media/edge")) {
        let rows = check_video(&p);
        assert!(rows >= 1, "{}", p.display());
        n += 1;
    }
    assert_eq!(n, 11);
}

#[test]
fn rotation_metadata_gives_upright_frames() {
    // The same 3-frame phone clip stored unrotated and with 90/180/270 display matrices.
    let mut base = vec![];
    decode_file(&here().join("tests/media/real/decord__video_0.mov"), &DecodeOptions { size: None, ..opts() }, |f| base.push(f.rgb)).unwrap();
    let mut seen = vec![];
    for deg in [90, 180, 270] {
        let p = here().join(format!("tests/media/real/decord__video_{deg}.mov"));
        let mut dims = None;
        let r = decode_file(&p, &DecodeOptions { size: None, ..opts() }, |f| dims = Some((f.width, f.height))).unwrap();
        seen.push((deg, r.rotation, dims.unwrap()));
    }
    assert_eq!(base[0].len(), 568 * 320 * 3);
    // decord's files: -90 in ffprobe terms is a 90-degree clockwise turn to display.
    assert_eq!(seen, [(90, 90, (320, 568)), (180, 180, (568, 320)), (270, 270, (320, 568))]);
}

fn gen(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let st = Command::new("ffmpeg").args(["-v", "error", "-y"]).args(args).arg(&out).status().unwrap();
    assert!(st.success(), "generating {name}");
    out
}

#[test]
fn generated_edge_cases_match_the_cli() {
    let d = tempfile::tempdir().unwrap();
    let src = ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10", "-t", "6"];
    let cases = [
        // Variable frame rate with a gap: frames after 2 s are pushed 3 s later (2.0 -> 5.0).
        gen(d.path(), "vfr_gap.mp4", &[&src[..], &["-vf", "setpts='if(gte(T,2),PTS+3/TB,PTS)'", "-fps_mode", "vfr", "-c:v", "libx264", "-bf", "2"]].concat()),
        // First frame at 1.4 s and at 7 s.
        gen(d.path(), "start_1_4.mp4", &[&src[..], &["-c:v", "libx264", "-output_ts_offset", "1.4"]].concat()),
        gen(d.path(), "start_7.mkv", &[&src[..], &["-c:v", "libx264", "-output_ts_offset", "7"]].concat()),
        // 10-bit 4:2:0, odd size, interlaced MPEG-2 in TS, GIF, VP9.
        gen(d.path(), "10bit.mp4", &[&src[..], &["-pix_fmt", "yuv420p10le", "-c:v", "libx264"]].concat()),
        gen(d.path(), "odd.mp4", &["-f", "lavfi", "-i", "testsrc2=size=161x121:rate=25", "-t", "3", "-pix_fmt", "yuv444p", "-c:v", "libx264"]),
        gen(d.path(), "interlaced.ts", &[&src[..], &["-c:v", "mpeg2video", "-flags", "+ilme+ildct", "-top", "1"]].concat()),
        gen(d.path(), "anim.gif", &["-f", "lavfi", "-i", "testsrc2=size=80x60:rate=5", "-t", "4"]),
        gen(d.path(), "vp9.webm", &[&src[..], &["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"]].concat()),
    ];
    for p in &cases {
        check_video(p);
    }
    // The VFR clip: frames at 0.0..1.9 s, a gap, then 5.0..5.9 s -> 6 rows; rows 2..4 repeat
    // the last frame before the gap.
    let rows = ours(&cases[0], &opts());
    assert_eq!(rows.len(), 6);
    assert!(rows[2] == rows[3] && rows[3] == rows[4] && rows[4] != rows[5]);
    // Offsets: row 0 is the first frame, and rows follow the duration from it (6 s -> 6 rows).
    assert_eq!(ours(&cases[1], &opts()).len(), 6);
    assert_eq!(ours(&cases[2], &opts()).len(), 6);
}

#[test]
fn clip_windows_are_cut_exactly() {
    let d = tempfile::tempdir().unwrap();
    // Keyframes only every 5 s, so a window start needs decoding forward from a keyframe.
    let p = gen(d.path(), "gop.mp4", &["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-t", "12", "-c:v", "libx264", "-g", "125", "-bf", "3"]);
    for (s, e) in [(2.0, 5.0), (6.0, 11.0), (0.0, 3.0)] {
        let got = ours(&p, &DecodeOptions { window: Some((s, e)), ..opts() });
        let want = ffmpeg_rows(&p, &format!("trim=start={s}:end={e},"));
        check_same_frames(&format!("window [{s}, {e})"), &got, &want);
        assert_eq!(got.len(), (e - s) as usize);
    }
    let e = decode_file(&p, &DecodeOptions { window: Some((30.0, 40.0)), ..opts() }, |_| {}).unwrap_err();
    assert_eq!(e.kind(), "empty_window");
}

#[test]
fn resize_modes() {
    let p = here().join("../data-samples/videos/mmaction2__demo.mp4"); // 340x256, SAR 64:51 -> 427x256
    let one = |mode| {
        let mut first = None;
        let r = decode_file(&p, &DecodeOptions { size: Some((W, H)), max_frames: Some(1), resize: mode, ..Default::default() }, |f| {
            first.get_or_insert(f.rgb);
        })
        .unwrap();
        (r, first.unwrap())
    };
    let (r, squash) = one(Resize::Squash);
    assert_eq!((r.source_width, r.source_height), (427, 256));
    let (_, crop) = one(Resize::CenterCrop);
    let (_, boxed) = one(Resize::Letterbox);
    let reference = |vf: &str| {
        let out = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&p)
            .args(["-frames:v", "1", "-vf", vf, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .output()
            .unwrap();
        out.stdout
    };
    assert!(mean_abs_diff(&squash, &reference("scale=224:224:flags=bilinear")) < 2.5);
    // Short side 256 -> 224 keeps 427 -> 374 wide (SAR applied); crop the centre 224.
    assert!(mean_abs_diff(&crop, &reference("scale=374:224:flags=bilinear,crop=224:224")) < 2.5);
    // Long side 427 -> 224 gives 134 high; padded to 224 with 45 rows of black above.
    assert!(mean_abs_diff(&boxed, &reference("scale=224:134:flags=bilinear,pad=224:224:0:45")) < 2.5);
    assert!(boxed[..224 * 45 * 3].iter().all(|&b| b == 0));
}

#[test]
fn max_frames_caps_rows() {
    let p = here().join("../data-samples/videos/mmaction2__demo.mp4");
    let a = ours(&p, &DecodeOptions { max_frames: Some(3), ..opts() });
    let b = ffmpeg_rows(&p, "");
    assert_eq!(a.len(), 3);
    check_same_frames("demo capped", &a, &b[..3]);
}

#[test]
fn bad_inputs_get_kinds() {
    let o = opts();
    let kind = |p: &Path| decode_file(p, &o, |_| {}).unwrap_err().kind();
    assert_eq!(kind(Path::new("/nonexistent/video.mp4")), "not_found");
    assert_eq!(kind(&here().join("../data-samples/broken/decord__corrupted.mp4")), "corrupt");
    // moov claims 231 s but the file ends after 135 KB, before any frame.
    assert_eq!(kind(&here().join("tests/media/broken/mp4parse__invalid_userdata.mp4")), "truncated");
    let d = tempfile::tempdir().unwrap();
    let junk = d.path().join("junk.mp4");
    std::fs::write(&junk, b"this is not a video at all, just text").unwrap();
    assert_eq!(kind(&junk), "unsupported_format");
    let audio = gen(d.path(), "tone.m4a", &["-f", "lavfi", "-i", "sine=d=1"]);
    assert_eq!(kind(&audio), "no_video_stream");
    // A truncated file keeps what decodes, with a warning.
    let full = gen(d.path(), "full.ts", &["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10", "-t", "6", "-c:v", "libx264"]);
    let bytes = std::fs::read(&full).unwrap();
    let cut = d.path().join("cut.ts");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let mut rows = 0;
    let r = decode_file(&cut, &o, |_| rows += 1).unwrap();
    assert!((2..6).contains(&rows), "{rows} rows from half a 6 s file");
    assert_eq!(r.rows, rows);
    assert!(r.warnings.iter().any(|w| w.contains("failed") || w.contains("truncated")) || rows < 6);
}

#[test]
fn playlists_and_scripts_cannot_reach_other_files_or_the_network() {
    let d = tempfile::tempdir().unwrap();
    // A real video standing in for a "secret" local file, and a listener on loopback.
    let secret = gen(d.path(), "secret.ts", &["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=5", "-t", "2", "-c:v", "libx264"]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let o = opts();
    let cases = [
        ("hls_local.mp4", format!("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{}\n#EXT-X-ENDLIST\n", secret.display())),
        ("hls_net.mp4", format!("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nhttp://127.0.0.1:{port}/seg.ts\n#EXT-X-ENDLIST\n")),
        ("concat.mp4", format!("ffconcat version 1.0\nfile '{}'\nfile '/etc/passwd'\n", secret.display())),
        // Without the tell-tale first line, the demuxer whitelist still refuses to probe them.
        ("concat_nohdr.mov", format!("file '{}'\n", secret.display())),
        ("m3u_bom.mkv", format!("\u{feff}#EXTM3U\n{}\n", secret.display())),
    ];
    for (name, body) in cases {
        let p = d.path().join(name);
        std::fs::write(&p, body).unwrap();
        let e = decode_file(&p, &o, |_| panic!("{name}: no row may come out")).unwrap_err();
        assert!(["forbidden_format", "unsupported_format"].contains(&e.kind()), "{name}: {e}");
    }
    assert!(listener.accept().is_err(), "nothing connected to the loopback port");
    // The real file itself is fine.
    assert!(decode_file(&secret, &o, |_| {}).is_ok());
}

#[test]
fn resource_limits_fail_as_too_large() {
    let d = tempfile::tempdir().unwrap();
    // A 64-megapixel frame (8000 x 8000), one frame of it.
    let big = gen(d.path(), "64mp.mp4", &["-f", "lavfi", "-i", "color=c=gray:size=8000x8000:rate=1", "-frames:v", "1", "-c:v", "libx264", "-preset", "ultrafast"]);
    let e = decode_file(&big, &opts(), |_| panic!("no rows")).unwrap_err();
    assert_eq!(e.kind(), "too_large", "{e}");
    // The same file with the limit raised decodes.
    assert!(decode_file(&big, &DecodeOptions { max_pixels: 70_000_000, max_frames: Some(1), size: Some((32, 32)), ..opts() }, |_| {}).is_ok());
    // Byte and duration limits.
    let clip = here().join("../data-samples/videos/mmaction2__demo.mp4");
    assert_eq!(decode_file(&clip, &DecodeOptions { max_input_bytes: 1000, ..opts() }, |_| {}).unwrap_err().kind(), "too_large");
    assert_eq!(decode_file(&clip, &DecodeOptions { max_duration: 5.0, ..opts() }, |_| {}).unwrap_err().kind(), "too_large");
    // Decoder memory: estimated before any frame is decoded.
    let e = decode_file(&clip, &DecodeOptions { max_decoder_bytes: 1 << 20, ..opts() }, |_| panic!("no rows")).unwrap_err();
    assert!(e.kind() == "too_large" && e.to_string().contains("frame buffers"), "{e}");
    assert!(decode_file(&clip, &DecodeOptions { max_decoder_bytes: 64 << 20, max_frames: Some(1), ..opts() }, |_| {}).is_ok());
}

#[test]
fn the_time_limit_stops_a_long_decode() {
    let d = tempfile::tempdir().unwrap();
    let p = gen(d.path(), "long.mp4", &["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-t", "60", "-c:v", "libx264", "-preset", "ultrafast"]);
    let t0 = std::time::Instant::now();
    let e = decode_file(&p, &DecodeOptions { timeout: Some(std::time::Duration::from_millis(200)), ..opts() }, |_| {}).unwrap_err();
    assert_eq!(e.kind(), "timeout");
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));
    // Time the caller holds a row (a consumer busy with earlier videos) is not decode time:
    // 1.2 s of waiting in rows under a 1 s limit, and the video decodes.
    let clip = here().join("../data-samples/videos/mmaction2__demo.mp4");
    let slow = |_: vidfeat_decode::SampledFrame| std::thread::sleep(std::time::Duration::from_millis(400));
    let r = decode_file(&clip, &DecodeOptions { timeout: Some(std::time::Duration::from_secs(1)), max_frames: Some(3), ..opts() }, slow).unwrap();
    assert_eq!(r.rows, 3);
}

#[test]
fn frames_report_display_order_numbers_and_times() {
    // 25 fps, with B-frames: row k is source frame 25 k at k seconds, whether or not the
    // frames between were decoded.
    let d = tempfile::tempdir().unwrap();
    let p = gen(d.path(), "b.mp4", &["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-t", "5", "-c:v", "libx264", "-bf", "3"]);
    for skip in [true, false] {
        let mut got = vec![];
        let r = decode_file(&p, &DecodeOptions { skip_unneeded: skip, ..opts() }, |f| got.push((f.index, f.time, f.source_pts, f.source_frame))).unwrap();
        let want: Vec<_> = (0..5u64).map(|k| (k, k as f64, k as f64, 25 * k)).collect();
        assert_eq!(got, want, "skip={skip}");
        assert_eq!(r.skippable_packets > 0, skip);
    }
}

/// The cockatoo clip's MP4 index marks 3.8 s as a keyframe, but decoding cannot start there
/// (the ffmpeg CLI's `-ss 4` gives a green, broken frame). A window starting at 4 s must still
/// give the frame a decode from the start gives at 4 s, every time (frame threads included).
#[test]
fn windows_survive_an_index_with_false_keyframes() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data-samples/videos/imageio__cockatoo.mp4");
    let full = ours(&p, &opts());
    for threads in [1, 0] {
        let mut warnings = vec![];
        let mut rows = vec![];
        let r = decode_file(&p, &DecodeOptions { window: Some((4.0, 6.0)), threads, ..opts() }, |f| rows.push(f.rgb)).unwrap();
        warnings.extend(r.warnings);
        assert_eq!(rows.len(), 2);
        assert!(rows[0] == full[4] && rows[1] == full[5], "threads {threads}: window rows differ from the full decode");
        assert!(warnings.iter().any(|w| w.contains("keyframes are wrong")), "{warnings:?}");
    }
}

/// Packet timestamps near the i64 limit (an IVF/AV1 file the decode_container fuzz target
/// made): `pts + duration` and the duration's `end - origin` overflowed. Now the file ends in a
/// result, with a finite, non-negative duration when it decodes.
#[test]
fn hostile_timestamps_do_not_overflow() {
    let f = here().join("tests/media/fuzz/ivf-av1-pts-overflow.ivf");
    let mut rows = 0u64;
    match decode_file(&f, &opts(), |_| rows += 1) {
        Ok(r) => {
            assert_eq!(r.rows, rows);
            assert!(r.duration.is_finite() && r.duration >= 0.0, "{}", r.duration);
        }
        Err(e) => assert!(!e.kind().is_empty()),
    }
}
