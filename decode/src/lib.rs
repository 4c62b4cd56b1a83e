//! FFmpeg decoding (through ffmpeg-next) with the 1-fps sampling rule of [`sampler`], producing
//! packed RGB24 frames at the requested size.
//!
//! Only sampled frames are converted and scaled: the decoder keeps the newest decoded frame
//! ("pending") and converts it only when the sampler assigns it rows.
use std::path::Path;
use std::time::{Duration, Instant};

use ffmpeg_next as ffmpeg;
use ffmpeg::format::Pixel;
use ffmpeg::media::Type as MediaType;
use ffmpeg::software::scaling;
use ffmpeg::util::frame::Video as VideoFrame;

pub mod sampler;
pub use sampler::{Rational, Sampler};

/// How sampled frames are fitted to the output size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// Bilinear to the output size, no crop, aspect not kept (YouTube-8M).
    Squash,
}

#[derive(Debug, Clone)]
pub struct DecodeOptions {
    /// Rows per second (default 1).
    pub fps: Rational,
    /// Cap on rows; `None` = no cap.
    pub max_frames: Option<u64>,
    /// Output size (width, height); `None` = the source's displayed size.
    pub size: Option<(u32, u32)>,
    pub resize: Resize,
    /// Clip window [start, end) in seconds.
    pub window: Option<(f64, f64)>,
    /// Decoder threads (0 = FFmpeg's choice).
    pub threads: usize,
    /// Wall-clock limit for one video.
    pub timeout: Option<Duration>,
    /// A video fails as `corrupt` when more than this fraction of its packets fail to decode.
    pub max_error_ratio: f64,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            fps: Rational::new(1, 1),
            max_frames: Some(300),
            size: None,
            resize: Resize::Squash,
            window: None,
            threads: 0,
            timeout: Some(Duration::from_secs(600)),
            max_error_ratio: 0.01,
        }
    }
}

/// One output row.
#[derive(Debug, Clone)]
pub struct SampledFrame {
    pub index: u64,
    /// Presentation time of the row, seconds, relative to the origin (first frame or window start).
    pub time: f64,
    /// Presentation time of the source frame used, seconds, on the stream's own clock.
    pub source_pts: f64,
    /// 0-based number of the source frame in decode output order.
    pub source_frame: u64,
    pub width: u32,
    pub height: u32,
    /// Packed RGB24, `height` rows of `width * 3` bytes.
    pub rgb: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct DecodeReport {
    pub rows: u64,
    /// Seconds from the origin to the end of sampling.
    pub duration: f64,
    pub source_width: u32,
    pub source_height: u32,
    /// Display rotation applied, degrees clockwise (0, 90, 180, 270).
    pub rotation: u32,
    pub codec: String,
    pub decoded_frames: u64,
    pub decode_errors: u64,
    /// Non-fatal problems (a truncated tail, a few broken packets).
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("file not found: {0}")]
    NotFound(String),
    #[error("cannot open as a video container: {0}")]
    UnsupportedFormat(String),
    #[error("no video stream")]
    NoVideoStream,
    #[error("no decoder for codec {0}")]
    UnsupportedCodec(String),
    #[error("corrupt: {0}")]
    Corrupt(String),
    #[error("truncated: {0}")]
    Truncated(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("window [{0}, {1}) lies outside the video")]
    EmptyWindow(f64, f64),
    #[error("ffmpeg: {0}")]
    Ffmpeg(String),
}

impl DecodeError {
    /// Stable kind used in failures.jsonl and summary.json.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::NotFound(_) => "not_found",
            DecodeError::UnsupportedFormat(_) => "unsupported_format",
            DecodeError::NoVideoStream => "no_video_stream",
            DecodeError::UnsupportedCodec(_) => "unsupported_codec",
            DecodeError::Corrupt(_) => "corrupt",
            DecodeError::Truncated(_) => "truncated",
            DecodeError::Timeout(_) => "timeout",
            DecodeError::EmptyWindow(..) => "empty_window",
            DecodeError::Ffmpeg(_) => "decode_error",
        }
    }
}

/// Initialises FFmpeg once and silences its own logging (errors are reported per video instead).
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ffmpeg::init();
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
    });
}

/// Picks the video stream: the default-disposition one, else the largest; never a cover image.
fn pick_stream(ictx: &ffmpeg::format::context::Input) -> Option<usize> {
    use ffmpeg::format::stream::Disposition;
    let mut best: Option<(bool, i64, usize)> = None;
    for s in ictx.streams() {
        let p = s.parameters();
        if p.medium() != MediaType::Video || s.disposition().contains(Disposition::ATTACHED_PIC) {
            continue;
        }
        let (w, h) = unsafe { ((*p.as_ptr()).width as i64, (*p.as_ptr()).height as i64) };
        let key = (s.disposition().contains(Disposition::DEFAULT), w * h, s.index());
        if best.is_none_or(|b| (key.0, key.1) > (b.0, b.1)) {
            best = Some(key);
        }
    }
    best.map(|b| b.2)
}

/// Display rotation (clockwise degrees, multiple of 90) from the stream's display matrix.
fn rotation_of(stream: &ffmpeg::format::stream::Stream) -> u32 {
    unsafe {
        let st = stream.as_ptr();
        let mut size: usize = 0;
        #[allow(deprecated)]
        let data = ffmpeg::ffi::av_stream_get_side_data(st, ffmpeg::ffi::AVPacketSideDataType::AV_PKT_DATA_DISPLAYMATRIX, &mut size as *mut usize as *mut _);
        if data.is_null() || size < 36 {
            return 0;
        }
        let theta = ffmpeg::ffi::av_display_rotation_get(data as *const i32);
        if !theta.is_finite() {
            return 0;
        }
        // av_display_rotation_get gives counter-clockwise degrees; FFmpeg's autorotate turns
        // the picture clockwise by -theta.
        let cw = (-theta).rem_euclid(360.0);
        (((cw / 90.0).round() as u32) % 4) * 90
    }
}

fn secs_to_ticks(s: f64, tb: Rational) -> i64 {
    (s * tb.den as f64 / tb.num as f64).round() as i64
}

struct Converter {
    ctx: Option<(scaling::Context, Pixel, u32, u32)>,
    out: VideoFrame,
}

impl Converter {
    fn convert(&mut self, f: &VideoFrame, w: u32, h: u32) -> Result<Vec<u8>, DecodeError> {
        let key = (f.format(), f.width(), f.height());
        if self.ctx.as_ref().is_none_or(|c| (c.1, c.2, c.3) != key) {
            let ctx = scaling::Context::get(key.0, key.1, key.2, Pixel::RGB24, w, h, scaling::Flags::BILINEAR)
                .map_err(|e| DecodeError::Ffmpeg(format!("scaler {:?} {}x{} -> rgb24 {w}x{h}: {e}", key.0, key.1, key.2)))?;
            self.ctx = Some((ctx, key.0, key.1, key.2));
        }
        let ctx = &mut self.ctx.as_mut().unwrap().0;
        ctx.run(f, &mut self.out).map_err(|e| DecodeError::Ffmpeg(format!("scale: {e}")))?;
        let stride = self.out.stride(0);
        let data = self.out.data(0);
        let row = w as usize * 3;
        let mut rgb = Vec::with_capacity(row * h as usize);
        for y in 0..h as usize {
            rgb.extend_from_slice(&data[y * stride..y * stride + row]);
        }
        Ok(rgb)
    }
}

/// Rotates packed RGB24 clockwise by 90, 180 or 270 degrees.
pub fn rotate_rgb(rgb: &[u8], w: u32, h: u32, cw: u32) -> (Vec<u8>, u32, u32) {
    let (w, h) = (w as usize, h as usize);
    match cw {
        90 | 270 => {
            let mut out = vec![0u8; rgb.len()];
            // Output is h wide, w high.
            for y in 0..h {
                for x in 0..w {
                    let (ox, oy) = if cw == 90 { (h - 1 - y, x) } else { (y, w - 1 - x) };
                    let s = (y * w + x) * 3;
                    let d = (oy * h + ox) * 3;
                    out[d..d + 3].copy_from_slice(&rgb[s..s + 3]);
                }
            }
            (out, h as u32, w as u32)
        }
        180 => {
            let mut out = Vec::with_capacity(rgb.len());
            for px in rgb.chunks_exact(3).rev() {
                out.extend_from_slice(px);
            }
            (out, w as u32, h as u32)
        }
        _ => (rgb.to_vec(), w as u32, h as u32),
    }
}

/// Decodes `path`, calling `on_row` for each sampled row in order.
pub fn decode_file(path: &Path, opts: &DecodeOptions, mut on_row: impl FnMut(SampledFrame)) -> Result<DecodeReport, DecodeError> {
    init();
    let started = Instant::now();
    if !path.exists() {
        return Err(DecodeError::NotFound(path.display().to_string()));
    }
    let mut ictx = ffmpeg::format::input(&path).map_err(|e| DecodeError::UnsupportedFormat(e.to_string()))?;
    let si = pick_stream(&ictx).ok_or(DecodeError::NoVideoStream)?;
    let stream = ictx.stream(si).unwrap();
    let tb = {
        let r = stream.time_base();
        if r.numerator() <= 0 || r.denominator() <= 0 {
            return Err(DecodeError::Corrupt("invalid stream time base".into()));
        }
        Rational::new(r.numerator() as i64, r.denominator() as i64)
    };
    let rotation = rotation_of(&stream);
    let avg = stream.avg_frame_rate();
    let params = stream.parameters();
    let mut cctx = ffmpeg::codec::context::Context::from_parameters(params).map_err(|e| DecodeError::Ffmpeg(e.to_string()))?;
    cctx.set_threading(ffmpeg::codec::threading::Config {
        kind: ffmpeg::codec::threading::Type::Frame,
        count: opts.threads,
        ..Default::default()
    });
    let codec_name = cctx.id().name().to_string();
    let mut decoder = cctx.decoder().video().map_err(|e| match e {
        ffmpeg::Error::DecoderNotFound => DecodeError::UnsupportedCodec(codec_name.clone()),
        e => DecodeError::UnsupportedCodec(format!("{codec_name}: {e}")),
    })?;
    let (src_w, src_h) = (decoder.width(), decoder.height());
    let (disp_w, disp_h) = if rotation % 180 == 90 { (src_h, src_w) } else { (src_w, src_h) };
    let (out_w, out_h) = opts.size.unwrap_or((disp_w.max(1), disp_h.max(1)));
    // Scale to the pre-rotation size, then rotate into (out_w, out_h).
    let (scale_w, scale_h) = if rotation % 180 == 90 { (out_h, out_w) } else { (out_w, out_h) };

    let (origin, limit) = match opts.window {
        Some((s, e)) => {
            // Window times are seconds from the stream's start.
            let st0 = match stream.start_time() {
                t if t == ffmpeg::ffi::AV_NOPTS_VALUE => 0,
                t => t,
            };
            let start = st0 + secs_to_ticks(s, tb);
            if s > 0.0 {
                // Seek to the keyframe at or before start; decode forward from there.
                let ts = (start as f64 * tb.to_f64() * 1_000_000.0) as i64;
                let _ = ictx.seek(ts, ..ts + 1);
            }
            (Some(start), e.is_finite().then(|| st0 + secs_to_ticks(e, tb)))
        }
        None => (None, None),
    };
    let mut sampler = Sampler::new(tb, opts.fps, origin, limit, opts.max_frames);
    let mut report = DecodeReport { source_width: disp_w, source_height: disp_h, rotation, codec: codec_name, ..Default::default() };
    let mut conv = Converter { ctx: None, out: VideoFrame::empty() };
    let mut pending: Option<(VideoFrame, i64, u64)> = None;
    let mut last_end: Option<i64> = None;
    let default_dur = if avg.numerator() > 0 && avg.denominator() > 0 {
        // One frame at the average rate, in ticks.
        ((avg.denominator() as i128 * tb.den as i128) / (avg.numerator() as i128 * tb.num as i128)).max(1) as i64
    } else {
        1
    };
    let mut packets = 0u64;
    let mut read_error: Option<String> = None;
    let mut first_error: Option<String> = None;
    let mut frame_no = 0u64;
    let mut finished = false;

    let mut emit = |rows: std::ops::Range<u64>, pending: &Option<(VideoFrame, i64, u64)>, sampler: &Sampler, report: &mut DecodeReport| -> Result<(), DecodeError> {
        if rows.is_empty() {
            return Ok(());
        }
        let (f, pts, no) = pending.as_ref().expect("rows need a frame");
        let rgb = conv.convert(f, scale_w, scale_h)?;
        let (rgb, w, h) = rotate_rgb(&rgb, scale_w, scale_h, rotation);
        for k in rows {
            on_row(SampledFrame {
                index: k,
                time: sampler.row_time(k),
                source_pts: *pts as f64 * tb.to_f64(),
                source_frame: *no,
                width: w,
                height: h,
                rgb: rgb.clone(),
            });
            report.rows = k + 1;
        }
        Ok(())
    };

    let mut receive = |decoder: &mut ffmpeg::decoder::Video,
                       sampler: &mut Sampler,
                       pending: &mut Option<(VideoFrame, i64, u64)>,
                       last_end: &mut Option<i64>,
                       report: &mut DecodeReport,
                       frame_no: &mut u64,
                       finished: &mut bool|
     -> Result<(), DecodeError> {
        loop {
            let mut f = VideoFrame::empty();
            match decoder.receive_frame(&mut f) {
                Ok(()) => {}
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => return Ok(()),
                Err(ffmpeg::Error::Eof) => return Ok(()),
                Err(_) => {
                    report.decode_errors += 1;
                    continue;
                }
            }
            report.decoded_frames += 1;
            if f.is_corrupt() {
                report.decode_errors += 1;
            }
            let pts = f.timestamp().or_else(|| last_end.map(|e| e)).unwrap_or(0);
            let dur = match f.packet().duration {
                d if d > 0 => d,
                _ => default_dur,
            };
            *last_end = Some(last_end.map_or(pts + dur, |e| e.max(pts + dur)));
            if *finished {
                continue;
            }
            if sampler.done_before(pts) {
                *finished = true;
                continue;
            }
            let rows = sampler.push(pts);
            emit(rows, pending, sampler, report)?;
            *pending = Some((f, pts, *frame_no));
            *frame_no += 1;
        }
    };

    let mut packet = ffmpeg::Packet::empty();
    loop {
        if let Some(t) = opts.timeout {
            if started.elapsed() > t {
                return Err(DecodeError::Timeout(t));
            }
        }
        if finished {
            break;
        }
        match packet.read(&mut ictx) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(e) => {
                read_error = Some(e.to_string());
                break;
            }
        }
        if packet.stream() != si {
            continue;
        }
        packets += 1;
        if let Err(e) = decoder.send_packet(&packet) {
            report.decode_errors += 1;
            first_error.get_or_insert_with(|| e.to_string());
        }
        receive(&mut decoder, &mut sampler, &mut pending, &mut last_end, &mut report, &mut frame_no, &mut finished)?;
    }
    let _ = decoder.send_eof();
    receive(&mut decoder, &mut sampler, &mut pending, &mut last_end, &mut report, &mut frame_no, &mut finished)?;

    if pending.is_none() {
        if let Some(e) = read_error {
            return Err(DecodeError::Truncated(format!("no frame decoded before the read failed: {e}")));
        }
        if report.decode_errors > 0 || packets > 0 {
            return Err(DecodeError::Corrupt(format!(
                "no decodable frame ({} of {packets} packets failed{})",
                report.decode_errors,
                first_error.map(|e| format!(": {e}")).unwrap_or_default()
            )));
        }
        if let Some((s, e)) = opts.window {
            if packets > 0 || s > 0.0 {
                return Err(DecodeError::EmptyWindow(s, e));
            }
        }
        return Err(DecodeError::Corrupt("the video stream holds no frames".into()));
    }
    let ratio = report.decode_errors as f64 / packets.max(1) as f64;
    if report.decode_errors > 0 && ratio > opts.max_error_ratio {
        return Err(DecodeError::Corrupt(format!(
            "{} of {packets} packets failed to decode ({:.1}% > {:.1}% allowed){}",
            report.decode_errors,
            ratio * 100.0,
            opts.max_error_ratio * 100.0,
            first_error.map(|e| format!(": {e}")).unwrap_or_default()
        )));
    }
    if report.decode_errors > 0 {
        report.warnings.push(format!("{} of {packets} packets failed to decode", report.decode_errors));
    }
    if let Some(e) = read_error {
        report.warnings.push(format!("truncated: reading stopped early ({e}); kept what decoded"));
    }
    if !finished {
        let end = last_end.unwrap_or(0);
        let rows = sampler.finish(end);
        emit(rows, &pending, &sampler, &mut report)?;
    }
    if let (Some((s, e)), 0) = (opts.window, report.rows) {
        return Err(DecodeError::EmptyWindow(s, e));
    }
    let origin = sampler.origin().unwrap_or(0);
    let end = match (limit, last_end) {
        (Some(l), Some(e)) => l.min(e),
        (_, Some(e)) => e,
        (Some(l), None) => l,
        _ => origin,
    };
    report.duration = ((end - origin).max(0)) as f64 * tb.to_f64();
    Ok(report)
}
