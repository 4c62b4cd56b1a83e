//! `keyframes` sampling: row k shows the newest key frame at or before its time, on the same
//! 1-fps grid as `exact`. Checked against two independent references over every real clip:
//! the key-frame times ffprobe lists, and the ffmpeg CLI decoding key frames only
//! (`-skip_frame nokey`) through the same `fps=1:round=up` rule the exact mode is checked with.
use std::path::{Path, PathBuf};
use std::process::Command;

use ffmpeg_next as ffmpeg;
use vidfeat_decode::{decode_file, DecodeOptions, DecodeReport, Sampling};

const W: u32 = 224;
const H: u32 = 224;

fn here() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn opts(sampling: Sampling) -> DecodeOptions {
    DecodeOptions { size: Some((W, H)), max_frames: None, threads: 1, sampling, ..Default::default() }
}

struct Row {
    time: f64,
    source_pts: f64,
    source_frame: u64,
    rgb: Vec<u8>,
}

fn ours(path: &Path, o: &DecodeOptions) -> (Vec<Row>, DecodeReport) {
    let mut rows = vec![];
    let r = decode_file(path, o, |f| {
        assert_eq!(f.index as usize, rows.len());
        rows.push(Row { time: f.time, source_pts: f.source_pts, source_frame: f.source_frame, rgb: f.rgb })
    })
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (rows, r)
}

/// Presentation times of stream `stream`'s key packets, and of its first frame, seconds.
fn key_times(path: &Path, stream: usize) -> (Vec<f64>, f64) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", &stream.to_string(), "-show_entries", "packet=pts_time,dts_time,flags", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe comes with the ffmpeg CLI scripts/setup.sh installs");
    assert!(out.status.success());
    let (mut keys, mut first) = (vec![], f64::INFINITY);
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        // pts, dts (an AVI has no pts), flags
        let f: Vec<&str> = line.split(',').collect();
        let Some(t) = f.first().and_then(|t| t.parse::<f64>().ok()).or_else(|| f.get(1).and_then(|t| t.parse().ok())) else { continue };
        first = first.min(t);
        if f.get(2).is_some_and(|s| s.starts_with('K')) {
            keys.push(t);
        }
    }
    keys.sort_by(f64::total_cmp);
    (keys, first)
}

/// The ffmpeg CLI decoding key frames only, sampled by the rule the exact mode matches.
fn cli_keyframe_rows(path: &Path) -> Vec<Vec<u8>> {
    let vf = format!("setpts=PTS-STARTPTS,fps=1:round=up,scale={W}:{H}:flags=bilinear");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-skip_frame", "nokey", "-i"])
        .arg(path)
        .args(["-an", "-sn", "-dn", "-vf", &vf, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout.chunks((W * H * 3) as usize).map(|c| c.to_vec()).collect()
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (*x as i32 - *y as i32).unsigned_abs() as f64).sum::<f64>() / a.len() as f64
}

fn gen(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let st = Command::new("ffmpeg").args(["-v", "error", "-y"]).args(args).arg(&out).status().unwrap();
    assert!(st.success());
    out
}

#[test]
fn every_real_clip_follows_the_keyframe_rule() {
    let mut n = 0;
    for dir in [here().join("../data-samples/videos"), here().join("tests/media/real")] {
        let mut clips: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        clips.sort();
        for p in clips {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let (exact, _) = ours(&p, &opts(Sampling::Exact));
            let (rows, rep) = ours(&p, &opts(Sampling::Keyframes));
            assert_eq!(rep.sampling, Sampling::Keyframes, "{name}");
            // The same grid: as many rows, at the same times.
            assert_eq!(rows.len(), exact.len(), "{name}: row count");
            for (a, b) in rows.iter().zip(&exact) {
                assert_eq!(a.time, b.time, "{name}");
            }
            // Each row shows the newest key frame at or before its time.
            let (keys, first) = key_times(&p, rep.stream);
            let mut lag_max = 0f64;
            for (k, r) in rows.iter().enumerate() {
                let want = keys.iter().map(|t| t - first).filter(|&t| t <= r.time + 1e-6).fold(f64::NEG_INFINITY, f64::max);
                assert!((r.source_pts - want).abs() < 1e-3, "{name} row {k} at {} s shows {} s, newest key frame {want} s", r.time, r.source_pts);
                lag_max = lag_max.max(r.time - r.source_pts);
            }
            assert!((rep.lag_max - lag_max).abs() < 1e-9, "{name}: lag_max {} vs {lag_max}", rep.lag_max);
            assert!(rep.lag_mean <= rep.lag_max);
            // Only key frames were decoded; the pixels are the CLI's key-frame-only decode.
            assert!(rep.decoded_frames <= keys.len() as u64, "{name}: decoded {} frames, {} key frames", rep.decoded_frames, keys.len());
            let cli = cli_keyframe_rows(&p);
            let common = cli.len().min(rows.len());
            // (The CLI stops one key frame's duration after the last key frame; the rule's
            // rows go on to the end of the video.)
            assert!(common + 1 >= keys.len().min(rows.len()), "{name}: the CLI gave {} rows", cli.len());
            for k in 0..common {
                let d = mean_abs_diff(&rows[k].rgb, &cli[k]);
                assert!(d < 2.5, "{name} row {k}: mean abs diff {d:.2} vs the CLI's key-frame decode");
            }
            n += 1;
        }
    }
    assert_eq!(n, 15);
}

/// 25 fps with a key frame every 2 s (scene cuts off): rows 2j and 2j+1 are both key frame j,
/// byte for byte the frame the exact mode gives at 2j s; 5 frames decoded instead of 250.
#[test]
fn rows_repeat_within_a_gop() {
    let d = tempfile::tempdir().unwrap();
    let p = gen(d.path(), "gop2.mp4", &["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "10", "-c:v", "libx264", "-g", "50", "-keyint_min", "50", "-sc_threshold", "0", "-bf", "2"]);
    let (exact, _) = ours(&p, &opts(Sampling::Exact));
    for threads in [1, 0] {
        let (rows, rep) = ours(&p, &DecodeOptions { threads, ..opts(Sampling::Keyframes) });
        assert_eq!(rows.len(), 10);
        for (k, r) in rows.iter().enumerate() {
            assert_eq!(r.source_pts, (k - k % 2) as f64, "row {k}");
            assert_eq!(r.source_frame, 25 * (k - k % 2) as u64, "row {k}: display-order number");
            assert!(r.rgb == exact[k - k % 2].rgb, "threads {threads} row {k} is not the exact mode's key frame");
        }
        assert_eq!(rep.decoded_frames, 5);
        assert_eq!(rep.nonkey_packets, 245);
        assert!((rep.lag_mean - 0.5).abs() < 1e-9 && (rep.lag_max - 1.0).abs() < 1e-9, "{} {}", rep.lag_mean, rep.lag_max);
        assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);
    }
    // The exact mode's lag is under a frame interval.
    let (_, rep) = ours(&p, &opts(Sampling::Exact));
    assert!(rep.lag_max < 0.04, "{}", rep.lag_max);

    // A window gives the full decode's rows at its times (the key frame before the window's
    // start included).
    let (full, _) = ours(&p, &opts(Sampling::Keyframes));
    let window = Some((3.0, 7.0));
    let (win, _) = ours(&p, &DecodeOptions { window, ..opts(Sampling::Keyframes) });
    let (win_exact, _) = ours(&p, &DecodeOptions { window, ..opts(Sampling::Exact) });
    assert_eq!(win.len(), 4);
    for (k, r) in win.iter().enumerate() {
        assert!(r.rgb == full[3 + k].rgb, "window row {k}");
        assert_eq!(r.time, win_exact[k].time);
    }
}

/// Variable frame rate (frames at irregular times): the rule holds on key-frame times.
#[test]
fn variable_frame_rate_follows_the_rule() {
    let d = tempfile::tempdir().unwrap();
    // Frames at 0, 0.1, ..., with every third frame's time stretched; a key frame every 7 frames.
    let p = gen(
        d.path(),
        "vfr.mkv",
        &["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10", "-t", "12", "-vf", "setpts='N/10/TB+if(eq(mod(N,3),0),0.05/TB,0)'", "-fps_mode", "vfr", "-c:v", "libx264", "-g", "7", "-sc_threshold", "0"],
    );
    let (rows, rep) = ours(&p, &opts(Sampling::Keyframes));
    let (keys, first) = key_times(&p, rep.stream);
    let (exact, _) = ours(&p, &opts(Sampling::Exact));
    assert_eq!(rows.len(), exact.len());
    assert!(keys.len() > 10);
    for (k, r) in rows.iter().enumerate() {
        let want = keys.iter().map(|t| t - first).filter(|&t| t <= r.time + 1e-6).fold(f64::NEG_INFINITY, f64::max);
        assert!((r.source_pts - want).abs() < 1e-3, "row {k}: {} vs {want}", r.source_pts);
    }
    assert!(rep.lag_max > 0.0);
}

/// A container whose packets carry no key-frame flag (NUT keeps the packets' flags as written;
/// Matroska, AVI and MP4 readers put them back): the exact rule, with a warning saying so.
#[test]
fn a_file_without_key_frame_flags_falls_back_to_exact() {
    let d = tempfile::tempdir().unwrap();
    let src = gen(d.path(), "src.nut", &["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-t", "6", "-c:v", "libvpx", "-g", "50"]);
    let dst = d.path().join("noflags.nut");
    strip_key_flags(&src, &dst);
    let (keys, _) = key_times(&dst, 0);
    assert!(keys.is_empty(), "the remux kept key flags: {keys:?}");

    let (exact, _) = ours(&dst, &opts(Sampling::Exact));
    let (rows, rep) = ours(&dst, &opts(Sampling::Keyframes));
    assert_eq!(rep.sampling, Sampling::Exact);
    assert!(rep.warnings.iter().any(|w| w.contains("flags no key frames")), "{:?}", rep.warnings);
    assert_eq!(rows.len(), exact.len());
    assert!(rows.iter().zip(&exact).all(|(a, b)| a.rgb == b.rgb));
}

/// Remuxes `src` with every packet's key flag cleared.
fn strip_key_flags(src: &Path, dst: &Path) {
    ffmpeg::init().unwrap();
    let mut ictx = ffmpeg::format::input(&src).unwrap();
    let mut octx = ffmpeg::format::output(&dst).unwrap();
    let ist = ictx.streams().best(ffmpeg::media::Type::Video).unwrap();
    let (si, itb) = (ist.index(), ist.time_base());
    let mut ost = octx.add_stream(ffmpeg::encoder::find(ffmpeg::codec::Id::None)).unwrap();
    ost.set_parameters(ist.parameters());
    unsafe {
        (*ost.parameters().as_mut_ptr()).codec_tag = 0;
    }
    octx.write_header().unwrap();
    let otb = octx.stream(0).unwrap().time_base();
    for (s, mut packet) in ictx.packets() {
        if s.index() != si {
            continue;
        }
        packet.set_flags(packet.flags() - ffmpeg::packet::Flags::KEY);
        packet.rescale_ts(itb, otb);
        packet.set_stream(0);
        packet.set_position(-1);
        packet.write_interleaved(&mut octx).unwrap();
    }
    octx.write_trailer().unwrap();
}

/// One key frame for a whole 24 s video: the rule holds, and the log says how far rows lag.
#[test]
fn a_long_gop_is_warned_about() {
    let d = tempfile::tempdir().unwrap();
    let p = gen(d.path(), "onekey.mp4", &["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10", "-t", "24", "-c:v", "libx264", "-g", "1000", "-sc_threshold", "0"]);
    let (rows, rep) = ours(&p, &opts(Sampling::Keyframes));
    assert_eq!(rows.len(), 24);
    assert!(rows.iter().all(|r| r.source_pts == 0.0 && r.rgb == rows[0].rgb));
    assert_eq!(rep.decoded_frames, 1);
    assert!(rep.warnings.iter().any(|w| w.contains("23.0 s older")), "{:?}", rep.warnings);
}
