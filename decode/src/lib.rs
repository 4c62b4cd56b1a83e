//! FFmpeg decoding (through ffmpeg-next) with the 1-fps sampling rule of [`sampler`], producing
//! packed RGB24 frames at the requested size.
//!
//! Two sampling modes ([`Sampling`]): `exact`, the rule of [`sampler`] over every frame, and
//! `keyframes`, the same rule over key frames only: non-key packets are read (for timing) but
//! never decoded, so a row repeats the newest key frame at or before its time within a GOP.
//!
//! Work a filter graph cannot avoid is avoided here:
//! * only sampled frames are converted and scaled (the newest decoded frame is kept as
//!   "pending" and converted only when the sampler assigns it rows);
//! * non-reference frames that cannot be on screen at any row time are not decoded at all:
//!   packets are read a few ahead, and a packet whose successor in display order is known to
//!   start before the next row time is sent with `skip_frame = NONREF` (the decoder then drops
//!   it if nothing references it). This keeps the output identical to decoding everything.
use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use ffmpeg_next as ffmpeg;
use ffmpeg::format::Pixel;
use ffmpeg::media::Type as MediaType;
use ffmpeg::software::scaling;
use ffmpeg::util::frame::Video as VideoFrame;

pub mod geometry;
pub mod sampler;
pub use geometry::{Geometry, Resize};
pub use sampler::{Rational, Sampler};

/// Which frames rows may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sampling {
    /// Row k is the frame on screen at its time (every frame is a candidate).
    #[default]
    Exact,
    /// Row k is the newest key frame at or before its time; only key frames are decoded.
    Keyframes,
}

impl Sampling {
    pub fn name(&self) -> &'static str {
        match self {
            Sampling::Exact => "exact",
            Sampling::Keyframes => "keyframes",
        }
    }
}

impl std::str::FromStr for Sampling {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "exact" => Ok(Sampling::Exact),
            "keyframes" => Ok(Sampling::Keyframes),
            _ => Err(format!("sampling `{s}`: expected exact or keyframes")),
        }
    }
}

/// Where video is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HwDecode {
    /// FFmpeg's software decoders, on the CPU.
    #[default]
    None,
    /// NVDEC when the NVIDIA driver's libraries and an NVDEC decoder for the codec are there,
    /// else the CPU, silently.
    Auto,
    /// NVDEC; where it cannot be used (no driver libraries, no NVDEC decoder for the codec, it
    /// fails to open) the CPU decodes, with a warning saying why.
    Cuda,
}

impl HwDecode {
    pub fn name(&self) -> &'static str {
        match self {
            HwDecode::None => "none",
            HwDecode::Auto => "auto",
            HwDecode::Cuda => "cuda",
        }
    }
}

impl std::str::FromStr for HwDecode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(HwDecode::None),
            "auto" => Ok(HwDecode::Auto),
            "cuda" => Ok(HwDecode::Cuda),
            _ => Err(format!("hwdec `{s}`: expected none, auto or cuda")),
        }
    }
}

/// Whether the NVIDIA driver's decoding libraries can be loaded (FFmpeg's `*_cuvid`
/// decoders load `libcuda.so.1` and `libnvcuvid.so.1` when they open). Checked once.
pub fn nvdec_available() -> Result<(), String> {
    static RESULT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    RESULT
        .get_or_init(|| {
            for lib in ["libcuda.so.1", "libnvcuvid.so.1"] {
                let name = std::ffi::CString::new(lib).unwrap();
                let h = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
                if h.is_null() {
                    return Err(format!("{lib} not found (the NVIDIA driver's libraries)"));
                }
            }
            Ok(())
        })
        .clone()
}

/// FFmpeg's NVDEC decoder for a codec, by its name (`h264` -> `h264_cuvid`).
fn nvdec_decoder(codec: &str) -> Option<ffmpeg::Codec> {
    let name = match codec {
        "h264" | "hevc" | "av1" | "vp8" | "vp9" | "vc1" | "mjpeg" | "mpeg4" => format!("{codec}_cuvid"),
        "mpeg1video" => "mpeg1_cuvid".into(),
        "mpeg2video" => "mpeg2_cuvid".into(),
        _ => return None,
    };
    ffmpeg::decoder::find_by_name(&name)
}

#[derive(Debug, Clone)]
pub struct DecodeOptions {
    /// Rows per second (default 1).
    pub fps: Rational,
    /// Where to decode (default the CPU).
    pub hwdec: HwDecode,
    /// Which frames rows may use (default exact).
    pub sampling: Sampling,
    /// Cap on rows; `None` = no cap.
    pub max_frames: Option<u64>,
    /// Output size (width, height); `None` = the source's displayed size.
    pub size: Option<(u32, u32)>,
    pub resize: Resize,
    /// Clip window [start, end) in seconds from the stream's start.
    pub window: Option<(f64, f64)>,
    /// Clip rows: each row is this many frames at this rate, at `t_k + j / rate` (see the
    /// sampler); the row's `rgb` holds them back to back. None: one frame per row.
    pub clip: Option<(u32, Rational)>,
    /// Decoder threads (0 = FFmpeg's choice).
    pub threads: usize,
    /// Wall-clock limit for one video.
    pub timeout: Option<Duration>,
    /// A video fails as `corrupt` when more than this fraction of its packets fail to decode.
    pub max_error_ratio: f64,
    /// Skip non-reference frames that no row can use (exact; see the module docs).
    pub skip_unneeded: bool,
    /// Largest frame accepted, in pixels (default 36 M: 8K UHD passes, a 64-megapixel frame
    /// does not). Larger ones fail as `too_large` before any frame is decoded.
    pub max_pixels: u64,
    /// Largest decoder frame memory, estimated before decoding as one frame's bytes in the
    /// stream's pixel format x (16 reference frames + decoder threads + 2); default 4 GiB.
    /// Catches what a pixel cap alone does not: 16-bit 4:4:4 frames, many threads.
    pub max_decoder_bytes: u64,
    /// Largest input file, bytes (default 64 GiB).
    pub max_input_bytes: u64,
    /// Longest container duration accepted, seconds (default 24 h).
    pub max_duration: f64,
    /// Demuxers FFmpeg may use (its `format_whitelist`). The default leaves out the ones that
    /// open other files or the network from inside a file: `hls`, `concat`, `image2`
    /// (sequence globbing), `subfile`, `data`, DASH manifests.
    pub demuxers: String,
}

/// Default resource limits (see [`DecodeOptions`]).
pub const DEFAULT_MAX_PIXELS: u64 = 36_000_000;
/// Default cap on the decoder's estimated frame memory (see `DecodeOptions::max_decoder_bytes`).
pub const DEFAULT_MAX_DECODER_BYTES: u64 = 4 << 30;
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 64 << 30;
pub const DEFAULT_MAX_DURATION: f64 = 24.0 * 3600.0;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// The default demuxer whitelist (see [`DecodeOptions::demuxers`]).
pub const DEFAULT_DEMUXERS: &str = "mov,matroska,webm,avi,mpegts,mpegtsraw,flv,gif,ogg,asf,mpeg,mpegvideo,h264,hevc,h263,m4v,ivf,obu,av1,nut,mxf,rm,yuv4mpegpipe,mjpeg,dv,vc1,wtv";

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            fps: Rational::new(1, 1),
            hwdec: HwDecode::None,
            sampling: Sampling::Exact,
            max_frames: Some(300),
            size: None,
            resize: Resize::Squash,
            window: None,
            clip: None,
            threads: 0,
            timeout: Some(DEFAULT_TIMEOUT),
            max_error_ratio: 0.01,
            skip_unneeded: true,
            max_pixels: DEFAULT_MAX_PIXELS,
            max_decoder_bytes: DEFAULT_MAX_DECODER_BYTES,
            max_input_bytes: DEFAULT_MAX_INPUT_BYTES,
            max_duration: DEFAULT_MAX_DURATION,
            demuxers: DEFAULT_DEMUXERS.to_string(),
        }
    }
}

/// One output row.
#[derive(Debug, Clone)]
pub struct SampledFrame {
    pub index: u64,
    /// Time of the row, seconds, relative to the origin (first frame or window start).
    pub time: f64,
    /// Presentation time of the source frame used, seconds, relative to the origin.
    pub source_pts: f64,
    /// The origin in the source's media time, seconds (its first frame's presentation time, or
    /// the window start): `origin + time` and `origin + source_pts` are source times.
    pub origin: f64,
    /// 0-based number of the source frame in display order (frames skipped undecoded count too).
    pub source_frame: u64,
    pub width: u32,
    pub height: u32,
    /// Packed RGB24, `height` rows of `width * 3` bytes (a clip row: its frames back to back).
    pub rgb: Vec<u8>,
    /// A clip row's frames: (time, source_pts, source_frame) each, as the fields above. Empty
    /// for a frame row.
    pub clip_frames: Vec<(f64, f64, u64)>,
}

#[derive(Debug, Clone, Default)]
pub struct DecodeReport {
    pub rows: u64,
    /// Seconds from the origin to the end of sampling.
    pub duration: f64,
    /// Displayed size of the source (sample aspect ratio and rotation applied).
    pub source_width: u32,
    pub source_height: u32,
    /// Display rotation applied, degrees clockwise (0, 90, 180, 270).
    pub rotation: u32,
    pub codec: String,
    /// Index of the stream decoded (the default-disposition video stream, else the largest).
    pub stream: usize,
    /// The decoder that ran (`h264`, or `h264_cuvid` with NVDEC).
    pub decoder: String,
    pub packets: u64,
    pub decoded_frames: u64,
    /// Packets sent with skip_frame=NONREF because no row could use them.
    pub skippable_packets: u64,
    pub decode_errors: u64,
    /// Packets not decoded because `keyframes` sampling uses key frames only.
    pub nonkey_packets: u64,
    /// The sampling the rows were made with (`keyframes` falls back to `exact` for a file
    /// without key-frame flags).
    pub sampling: Sampling,
    /// Distance between a row's time and the time of the frame it shows, seconds: mean and
    /// maximum over the rows (about half a frame interval exact, up to a GOP with key frames).
    pub lag_mean: f64,
    pub lag_max: f64,
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
    #[error("refused: {0}")]
    Forbidden(String),
    #[error("too large: {0}")]
    TooLarge(String),
    /// Options that cannot sample this way (clips longer than the row spacing).
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// Internal: a seek landed on a frame the decoder cannot start from (the container's index
    /// marks non-keyframes as keyframes); `decode_file` retries from the start of the file.
    #[error("seek did not land on a keyframe")]
    SeekMissedKeyframe,
    /// Internal: `keyframes` sampling over a file whose packets carry no key-frame flag;
    /// `decode_file` decodes it exactly instead.
    #[error("no key-frame flags")]
    NoKeyFrameFlags,
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
            DecodeError::Forbidden(_) => "forbidden_format",
            DecodeError::TooLarge(_) => "too_large",
            DecodeError::InvalidOptions(_) => "invalid_options",
            DecodeError::SeekMissedKeyframe | DecodeError::NoKeyFrameFlags => "decode_error",
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

/// The FFmpeg libraries this process runs with: (name, `major.minor.micro`).
pub fn library_versions() -> Vec<(&'static str, String)> {
    let v = |n: u32| format!("{}.{}.{}", n >> 16, (n >> 8) & 0xff, n & 0xff);
    vec![
        ("libavcodec", v(ffmpeg::codec::version())),
        ("libavformat", v(ffmpeg::format::version())),
        ("libavutil", v(ffmpeg::util::version())),
        ("libswscale", v(ffmpeg::software::scaling::version())),
    ]
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
/// Read through the FFI: ffmpeg-next's side-data type conversion panics on unknown types.
fn rotation_of(stream: &ffmpeg::format::stream::Stream) -> u32 {
    unsafe {
        let st = stream.as_ptr();
        let mut size: usize = 0;
        #[allow(deprecated)]
        let data = ffmpeg::ffi::av_stream_get_side_data(
            st,
            ffmpeg::ffi::AVPacketSideDataType::AV_PKT_DATA_DISPLAYMATRIX,
            &mut size as *mut usize as *mut _,
        );
        if data.is_null() || size < 36 {
            return 0;
        }
        let theta = ffmpeg::ffi::av_display_rotation_get(data as *const i32);
        if !theta.is_finite() {
            return 0;
        }
        // av_display_rotation_get is counter-clockwise; FFmpeg's autorotate turns the picture
        // clockwise by -theta.
        let cw = (-theta).rem_euclid(360.0);
        (((cw / 90.0).round() as u32) % 4) * 90
    }
}

fn secs_to_ticks(s: f64, tb: Rational) -> i64 {
    (s * tb.den as f64 / tb.num as f64).round() as i64
}

/// Converts decoded frames to packed RGB24 at the geometry's scale size, reusing the scaler
/// and the output frame.
struct Converter {
    ctx: Option<(scaling::Context, (Pixel, u32, u32, i32, bool))>,
    out: VideoFrame,
    packed: Vec<u8>,
}

impl Converter {
    fn convert(&mut self, f: &VideoFrame, w: u32, h: u32) -> Result<&[u8], DecodeError> {
        // Colour matrix and range of the frame, as FFmpeg's scale filter honours them.
        let (space, full) = unsafe {
            let p = f.as_ptr();
            ((*p).colorspace as i32, (*p).color_range == ffmpeg::ffi::AVColorRange::AVCOL_RANGE_JPEG)
        };
        let key = (f.format(), f.width(), f.height(), space, full);
        if self.ctx.as_ref().is_none_or(|c| c.1 != key) {
            let mut ctx = scaling::Context::get(key.0, key.1, key.2, Pixel::RGB24, w, h, scaling::Flags::BILINEAR)
                .map_err(|e| DecodeError::Ffmpeg(format!("scaler {:?} {}x{} -> rgb24 {w}x{h}: {e}", key.0, key.1, key.2)))?;
            unsafe {
                use ffmpeg::ffi::{sws_getCoefficients, sws_setColorspaceDetails, SWS_CS_DEFAULT};
                // Unknown matrices (2, 8, > 10) fall back to swscale's default (BT.601).
                sws_setColorspaceDetails(
                    ctx.as_mut_ptr(),
                    sws_getCoefficients(space),
                    full as i32,
                    sws_getCoefficients(SWS_CS_DEFAULT as i32),
                    1,
                    0,
                    1 << 16,
                    1 << 16,
                );
            }
            self.ctx = Some((ctx, key));
        }
        let ctx = &mut self.ctx.as_mut().unwrap().0;
        ctx.run(f, &mut self.out).map_err(|e| DecodeError::Ffmpeg(format!("scale: {e}")))?;
        let stride = self.out.stride(0);
        let data = self.out.data(0);
        let row = w as usize * 3;
        self.packed.clear();
        for y in 0..h as usize {
            self.packed.extend_from_slice(&data[y * stride..y * stride + row]);
        }
        Ok(&self.packed)
    }
}

/// The per-video state between the decoder and the caller.
struct Session<'a> {
    sampler: Sampler,
    tb: Rational,
    geom: Geometry,
    conv: Converter,
    /// Newest decoded frame: (frame, pts, display-order number).
    pending: Option<(VideoFrame, i64, u64)>,
    report: DecodeReport,
    finished: bool,
    on_row: &'a mut dyn FnMut(SampledFrame),
    /// After a seek, until the first row: the first frame must be a keyframe and no frame
    /// may be damaged (else the seek missed a real keyframe).
    seek_guard: bool,
    /// Packets read so far, and the pts of the most recent ones: a frame's display-order
    /// number is (packets read) - (recent packets with a later pts), counting skipped frames.
    packets_read: u64,
    recent_pts: VecDeque<i64>,
    max_pixels: u64,
    /// Sum of the rows' lags (see `DecodeReport::lag_mean`).
    lag_sum: f64,
    /// `keyframes` sampling: time and display-order number of each key packet sent and not yet
    /// out of the decoder; the time stands in for a frame that carries none (an AVI's packets have decode times only, and the
    /// newest packet read is seconds later than the key frame being flushed).
    key_times: VecDeque<(i64, u64)>,
}

impl Session<'_> {
    fn emit(&mut self, rows: std::ops::Range<u64>) -> Result<(), DecodeError> {
        if rows.is_empty() {
            return Ok(());
        }
        let (f, pts, no) = self.pending.as_ref().expect("rows need a frame");
        let (sw, sh) = self.geom.scale_size();
        let scaled = self.conv.convert(f, sw, sh)?;
        let rgb = self.geom.finish(scaled);
        let origin = self.sampler.origin().unwrap_or(0);
        for k in rows {
            let (time, source_pts) = (self.sampler.row_time(k), (*pts - origin) as f64 * self.tb.to_f64());
            let lag = (time - source_pts).max(0.0);
            self.lag_sum += lag;
            self.report.lag_max = self.report.lag_max.max(lag);
            (self.on_row)(SampledFrame {
                index: k,
                time,
                source_pts,
                origin: origin as f64 * self.tb.to_f64(),
                source_frame: *no,
                width: self.geom.out_w,
                height: self.geom.out_h,
                rgb: rgb.clone(),
                clip_frames: vec![],
            });
            self.report.rows = k + 1;
        }
        Ok(())
    }

    /// `number`: the frame's display-order number where known from its packet (key frames
    /// only); else counted from the packets read around it.
    fn on_frame(&mut self, f: VideoFrame, pts: i64, number: Option<u64>) -> Result<(), DecodeError> {
        self.report.decoded_frames += 1;
        let pixels = f.width() as u64 * f.height() as u64;
        if pixels > self.max_pixels {
            return Err(DecodeError::TooLarge(format!("a {}x{} frame mid-stream ({pixels} pixels > {} allowed)", f.width(), f.height(), self.max_pixels)));
        }
        // After a seek, until the first row is out: the first frame must be a keyframe and no
        // frame may be flagged corrupt (an open-GOP I-frame's followers reference frames from
        // before the seek point).
        if self.seek_guard && self.report.rows == 0 {
            // decode_error_flags: error concealment ran (missing references, broken slices).
            let concealed = unsafe { (*f.as_ptr()).decode_error_flags } != 0;
            let first = self.report.decoded_frames == 1;
            if first && !f.is_key() || f.is_corrupt() || concealed || self.report.decode_errors > 0 {
                return Err(DecodeError::SeekMissedKeyframe);
            }
        }
        if f.is_corrupt() {
            self.report.decode_errors += 1;
        }
        if self.finished {
            return Ok(());
        }
        if self.sampler.done_before(pts) {
            // A clip cut by the window end or the row cap: its rest shows the last frame.
            let rest = self.sampler.pad_clip();
            self.emit(rest)?;
            self.finished = true;
            return Ok(());
        }
        let rows = self.sampler.push(pts);
        self.emit(rows)?;
        let no = number.unwrap_or_else(|| self.display_number(pts));
        self.pending = Some((f, pts, no));
        Ok(())
    }

    /// Display-order number of the frame at `pts` among the packets read so far.
    fn display_number(&self, pts: i64) -> u64 {
        let later = self.recent_pts.iter().filter(|&&q| q > pts).count() as u64;
        self.packets_read.saturating_sub(later + 1)
    }

    fn drain(&mut self, decoder: &mut ffmpeg::decoder::Video, fallback_pts: i64) -> Result<(), DecodeError> {
        loop {
            let mut f = VideoFrame::empty();
            match decoder.receive_frame(&mut f) {
                Ok(()) => {
                    // Key frames only: frames leave in the order their packets went in, and a
                    // frame's time is its own packet's (the decoder's best-effort guess is
                    // thrown off by the missing frames between).
                    let (time, number) = match self.key_times.pop_front() {
                        Some((t, no)) => (Some(f.pts().unwrap_or(t)), Some(no)),
                        None => (f.timestamp(), None),
                    };
                    self.on_frame(f, time.unwrap_or(fallback_pts), number)?
                }
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => return Ok(()),
                Err(ffmpeg::Error::Eof) => return Ok(()),
                Err(_) => {
                    self.report.decode_errors += 1;
                    return Ok(());
                }
            }
        }
    }
}

/// How many packets are read ahead to learn the display-order successor of each packet.
const LOOKAHEAD: usize = 24;

/// The most rows `--max-duration` allows at the output rate.
fn duration_rows(opts: &DecodeOptions) -> u64 {
    let r = (opts.max_duration.max(0.0) * opts.fps.to_f64()).ceil() + 1.0;
    if r.is_finite() && r < u64::MAX as f64 { r as u64 } else { u64::MAX }
}

/// With `keyframes` sampling, a video whose rows lag their time by more than this is warned
/// about (a long GOP, or a stream with one key frame).
pub const LONG_GOP_SECONDS: f64 = 10.0;

/// Checks that clip rows can be sampled at this row rate (clips must not overlap).
pub fn check_clip(fps: Rational, frames: u32, rate: Rational) -> Result<(), String> {
    Sampler::new(Rational::new(1, 1), fps, None, None, None).with_clip(frames as u64, rate).map(|_| ()).map_err(|e| e.0)
}

/// Decodes `path`, calling `on_row` for each sampled row in order. With clip rows, each
/// row carries its clip's frames back to back (`rgb` is frames x height x width x 3 bytes);
/// its times and source frame are its first frame's. Only one clip is held at a time.
pub fn decode_file(path: &Path, opts: &DecodeOptions, mut on_row: impl FnMut(SampledFrame)) -> Result<DecodeReport, DecodeError> {
    let Some((frames, _)) = opts.clip else { return decode_rows(path, opts, &mut on_row) };
    let t = frames.max(1) as u64;
    let mut clip: Option<SampledFrame> = None;
    let mut group = |f: SampledFrame| {
        let (k, j) = (f.index / t, f.index % t);
        let this = (f.time, f.source_pts, f.source_frame);
        match clip.as_mut() {
            Some(c) if j > 0 => {
                c.rgb.extend_from_slice(&f.rgb);
                c.clip_frames.push(this);
            }
            _ => {
                let mut rgb = Vec::with_capacity(f.rgb.len() * t as usize);
                rgb.extend_from_slice(&f.rgb);
                clip = Some(SampledFrame { index: k, rgb, clip_frames: vec![this], ..f });
            }
        }
        if j + 1 == t {
            on_row(clip.take().expect("a clip in progress"));
        }
    };
    let mut r = decode_rows(path, opts, &mut group)?;
    r.rows /= t;
    Ok(r)
}

fn decode_rows(path: &Path, opts: &DecodeOptions, mut on_row: &mut dyn FnMut(SampledFrame)) -> Result<DecodeReport, DecodeError> {
    match decode_once(path, opts, true, &mut on_row) {
        // Key frames only, but the container flags none: the exact rule, said so.
        Err(DecodeError::NoKeyFrameFlags) => {
            let exact = DecodeOptions { sampling: Sampling::Exact, ..opts.clone() };
            let mut r = decode_rows(path, &exact, on_row)?;
            r.warnings.push("keyframes sampling: the file flags no key frames; decoded every frame (exact sampling)".into());
            Ok(r)
        }
        // Windows are cut by seeking to the keyframe before the start. Some files' indexes
        // call every frame a keyframe (an MP4 without a sync-sample table): the decoder then
        // starts mid-GOP and outputs broken frames. Decode from the start instead (exact,
        // slower); no row has been delivered yet when this is detected.
        Err(DecodeError::SeekMissedKeyframe) => {
            let mut r = decode_once(path, opts, false, &mut on_row)?;
            r.warnings.push("the index's keyframes are wrong: decoded the window from the start of the file".into());
            Ok(r)
        }
        r => r,
    }
}

fn decode_once(path: &Path, opts: &DecodeOptions, allow_seek: bool, on_row: &mut dyn FnMut(SampledFrame)) -> Result<DecodeReport, DecodeError> {
    init();
    // Windows are cut by seeking to the keyframe before their start.
    let will_seek = allow_seek && opts.window.is_some_and(|(s, _)| s > 0.0);
    let started = Instant::now();
    if !path.exists() {
        return Err(DecodeError::NotFound(path.display().to_string()));
    }
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if size > opts.max_input_bytes {
        return Err(DecodeError::TooLarge(format!("{size} bytes > {} allowed", opts.max_input_bytes)));
    }
    if size == 0 {
        // FFmpeg would say "Invalid data found when processing input".
        return Err(DecodeError::UnsupportedFormat("empty file (0 bytes)".into()));
    }
    refuse_playlists(path)?;
    // Local files: the `file` protocol only, and only demuxers that cannot reach other files.
    let mut dict = ffmpeg::Dictionary::new();
    dict.set("protocol_whitelist", "file");
    dict.set("format_whitelist", &opts.demuxers);
    // The time limit counts decoding, not the time `on_row` takes (a consumer that holds the
    // rows back while its network works on earlier videos).
    let paused = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let busy = {
        let paused = paused.clone();
        move || started.elapsed().saturating_sub(Duration::from_nanos(paused.load(std::sync::atomic::Ordering::Relaxed)))
    };
    let mut on_row = |f: SampledFrame| {
        let t = Instant::now();
        on_row(f);
        paused.fetch_add(t.elapsed().as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
    };
    let on_row: &mut dyn FnMut(SampledFrame) = &mut on_row;
    // FFmpeg's interrupt callback enforces the time limit inside blocking reads too.
    let limit = opts.timeout;
    let interrupted = busy.clone();
    let mut ictx = ffmpeg::format::input_with_interrupt_and_dictionary(&path, move || limit.is_some_and(|t| interrupted() > t), dict)
        .map_err(|e| match (e, opts.timeout) {
            (ffmpeg::Error::Exit, Some(t)) => DecodeError::Timeout(t),
            (e, _) => DecodeError::UnsupportedFormat(e.to_string()),
        })?;
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
    let container_secs = ictx.duration().max(0) as f64 / 1e6;
    if container_secs > opts.max_duration {
        return Err(DecodeError::TooLarge(format!("{container_secs:.0} s long > {:.0} s allowed", opts.max_duration)));
    }
    // What the container's index promises, to tell a truncated file from an empty one.
    let claimed = (stream.frames().max(0), ictx.duration().max(0));
    let avg = stream.avg_frame_rate();
    let stream_sar = stream.parameters();
    let mut cctx = ffmpeg::codec::context::Context::from_parameters(stream_sar).map_err(|e| DecodeError::Ffmpeg(e.to_string()))?;
    cctx.set_threading(ffmpeg::codec::threading::Config {
        kind: ffmpeg::codec::threading::Type::Frame,
        // Windows that start with a seek decode single-threaded: whether the seek landed
        // where decoding can start is judged from the first frames' flags and errors, which
        // frame threads report at timing-dependent moments (the same clip could pass the check
        // in one run and not in the next).
        count: if will_seek { 1 } else { opts.threads },
        ..Default::default()
    });
    let codec_name = cctx.id().name().to_string();
    let mut hw_warning = None;
    // NVDEC (FFmpeg's *_cuvid decoders, frames downloaded to system memory) where asked for and
    // possible; else the software decoder. H.264, HEVC, VP9 and AV1 decoding is bit-exact by
    // their specifications, so the rows are the same either way.
    let nvdec = match opts.hwdec {
        HwDecode::None => None,
        hw => match (nvdec_available(), nvdec_decoder(&codec_name)) {
            (Ok(()), Some(codec)) => {
                let hctx = ffmpeg::codec::context::Context::from_parameters(stream.parameters()).map_err(|e| DecodeError::Ffmpeg(e.to_string()))?;
                match hctx.decoder().open_as(codec).and_then(|o| o.video()) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        hw_warning = (hw == HwDecode::Cuda).then(|| format!("NVDEC could not open a {codec_name} decoder ({e}): decoded on the CPU"));
                        None
                    }
                }
            }
            (Err(why), _) => {
                hw_warning = (hw == HwDecode::Cuda).then(|| format!("NVDEC unavailable ({why}): decoded on the CPU"));
                None
            }
            (Ok(()), None) => {
                hw_warning = (hw == HwDecode::Cuda).then(|| format!("no NVDEC decoder for {codec_name}: decoded on the CPU"));
                None
            }
        },
    };
    let mut decoder = match nvdec {
        Some(d) => d,
        None => cctx.decoder().video().map_err(|e| match e {
            ffmpeg::Error::DecoderNotFound => DecodeError::UnsupportedCodec(codec_name.clone()),
            e => DecodeError::UnsupportedCodec(format!("{codec_name}: {e}")),
        })?,
    };
    let decoder_name = decoder.codec().map_or_else(|| codec_name.clone(), |c| c.name().to_string());
    let sar = {
        let s = unsafe { (*stream.as_ptr()).sample_aspect_ratio };
        if s.num > 0 && s.den > 0 {
            (s.num as u32, s.den as u32)
        } else {
            let a = decoder.aspect_ratio();
            if a.numerator() > 0 && a.denominator() > 0 {
                (a.numerator() as u32, a.denominator() as u32)
            } else {
                (1, 1)
            }
        }
    };
    let pixels = decoder.width() as u64 * decoder.height() as u64;
    if pixels > opts.max_pixels {
        return Err(DecodeError::TooLarge(format!("{}x{} frames ({pixels} pixels > {} allowed)", decoder.width(), decoder.height(), opts.max_pixels)));
    }
    let frame_bytes = unsafe {
        ffmpeg::ffi::av_image_get_buffer_size((*decoder.as_ptr()).pix_fmt, decoder.width() as i32, decoder.height() as i32, 1)
    }
    .max(0) as u64;
    let threads = if opts.threads == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { opts.threads } as u64;
    let estimate = frame_bytes.max(pixels * 3 / 2) * (16 + threads + 2);
    if estimate > opts.max_decoder_bytes {
        return Err(DecodeError::TooLarge(format!(
            "decoding {}x{} frames would take about {} MiB of frame buffers (> {} MiB allowed)",
            decoder.width(),
            decoder.height(),
            estimate >> 20,
            opts.max_decoder_bytes >> 20
        )));
    }
    let geom = Geometry::new(decoder.width(), decoder.height(), sar, rotation, opts.size, opts.resize);

    let st0 = match stream.start_time() {
        t if t == ffmpeg::ffi::AV_NOPTS_VALUE => 0,
        t => t,
    };
    let (origin, limit) = match opts.window {
        Some((s, e)) => {
            let start = st0.saturating_add(secs_to_ticks(s, tb));
            if will_seek {
                // Seek to the keyframe at or before start; decode forward from there.
                let ts = (start as f64 * tb.to_f64() * 1_000_000.0) as i64;
                let _ = ictx.seek(ts, ..ts.saturating_add(1));
            }
            (Some(start), e.is_finite().then(|| st0.saturating_add(secs_to_ticks(e, tb))))
        }
        None => (None, None),
    };
    let default_dur = if avg.numerator() > 0 && avg.denominator() > 0 {
        ((avg.denominator() as i128 * tb.den as i128) / (avg.numerator() as i128 * tb.num as i128)).max(1) as i64
    } else {
        1
    };

    let mut session = Session {
        // Rows are capped by --max-duration too: a crafted timestamp jump (the container's
        // declared duration may lie) cannot make the sampler emit billions of rows.
        sampler: {
            let s = Sampler::new(tb, opts.fps, origin, limit, Some(opts.max_frames.unwrap_or(u64::MAX).min(duration_rows(opts))));
            match opts.clip {
                Some((frames, rate)) => s.with_clip(frames as u64, rate).map_err(|e| DecodeError::InvalidOptions(e.0))?,
                None => s,
            }
        },
        tb,
        conv: Converter { ctx: None, out: VideoFrame::empty(), packed: vec![] },
        pending: None,
        report: DecodeReport {
            source_width: geom.display_w,
            source_height: geom.display_h,
            rotation,
            codec: codec_name,
            stream: si,
            decoder: decoder_name,
            sampling: opts.sampling,
            warnings: hw_warning.into_iter().collect(),
            ..Default::default()
        },
        geom,
        finished: false,
        on_row,
        seek_guard: will_seek,
        packets_read: 0,
        recent_pts: VecDeque::new(),
        max_pixels: opts.max_pixels,
        lag_sum: 0.0,
        key_times: VecDeque::new(),
    };

    let mut lookahead: VecDeque<ffmpeg::Packet> = VecDeque::new();
    let mut eof = false;
    let mut read_error: Option<String> = None;
    let mut first_error: Option<String> = None;
    // End of the stream in ticks: max over packets of pts + duration.
    let mut stream_end: Option<i64> = None;
    let mut last_pts: i64 = 0;
    // Key frames only: non-key packets are not sent to the decoder at all.
    let keyframes_only = opts.sampling == Sampling::Keyframes;
    let mut key_packets = 0u64;
    loop {
        if let Some(t) = opts.timeout {
            if busy() > t {
                return Err(DecodeError::Timeout(t));
            }
        }
        if session.finished {
            break;
        }
        // Fill the look-ahead.
        while !eof && lookahead.len() < LOOKAHEAD {
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(&mut ictx) {
                Ok(()) => {
                    if packet.stream() != si {
                        continue;
                    }
                    if let Some(p) = packet.pts().or(packet.dts()) {
                        let d = if packet.duration() > 0 { packet.duration() } else { default_dur };
                        // Hostile timestamps sit anywhere in i64 (found by the decode_container fuzz target).
                        let pe = p.saturating_add(d);
                        stream_end = Some(stream_end.map_or(pe, |e| e.max(pe)));
                        session.packets_read += 1;
                        session.recent_pts.push_back(p);
                        if session.recent_pts.len() > 4 * LOOKAHEAD {
                            session.recent_pts.pop_front();
                        }
                    }
                    lookahead.push_back(packet);
                }
                Err(ffmpeg::Error::Eof) => eof = true,
                Err(e) => {
                    read_error = Some(e.to_string());
                    eof = true;
                }
            }
        }
        let Some(packet) = lookahead.pop_front() else { break };
        session.report.packets += 1;
        if keyframes_only {
            if packet.is_key() {
                key_packets += 1;
            } else {
                // Read for the stream's timing, never decoded.
                session.report.nonkey_packets += 1;
                if let Some(p) = packet.pts() {
                    last_pts = last_pts.max(p);
                }
                continue;
            }
        }
        // (With key frames only, the look-ahead's successors are never decoded: nothing skips.)
        let skip = opts.skip_unneeded && !keyframes_only && skippable(&packet, &lookahead, &session.sampler);
        if skip {
            session.report.skippable_packets += 1;
        }
        unsafe {
            (*decoder.as_mut_ptr()).skip_frame = if skip { ffmpeg::ffi::AVDiscard::AVDISCARD_NONREF } else { ffmpeg::ffi::AVDiscard::AVDISCARD_DEFAULT };
        }
        if let Some(p) = packet.pts() {
            last_pts = last_pts.max(p);
        }
        if let Err(e) = decoder.send_packet(&packet) {
            session.report.decode_errors += 1;
            first_error.get_or_insert_with(|| e.to_string());
        } else if keyframes_only {
            if let Some(t) = packet.pts().or(packet.dts()) {
                session.key_times.push_back((t, session.display_number(t)));
            }
        }
        session.drain(&mut decoder, last_pts)?;
    }
    if let Some(t) = opts.timeout.filter(|&t| busy() > t) {
        return Err(DecodeError::Timeout(t));
    }
    unsafe {
        (*decoder.as_mut_ptr()).skip_frame = ffmpeg::ffi::AVDiscard::AVDISCARD_DEFAULT;
    }
    let _ = decoder.send_eof();
    session.drain(&mut decoder, last_pts)?;
    if keyframes_only && key_packets == 0 && session.report.packets > 0 {
        return Err(DecodeError::NoKeyFrameFlags);
    }

    let packets = session.report.packets;
    let errors = session.report.decode_errors;
    if session.pending.is_none() {
        if let Some(e) = read_error {
            return Err(DecodeError::Truncated(format!("no frame decoded before reading failed: {e}")));
        }
        if packets > 0 {
            return Err(DecodeError::Corrupt(format!(
                "no decodable frame ({errors} of {packets} packets failed{})",
                first_error.map(|e| format!(": {e}")).unwrap_or_default()
            )));
        }
        if let Some((s, e)) = opts.window {
            return Err(DecodeError::EmptyWindow(s, e));
        }
        if claimed.0 > 0 || claimed.1 > 0 {
            return Err(DecodeError::Truncated(format!(
                "the index promises {} frames / {:.1} s but the file ends before the first packet",
                claimed.0,
                claimed.1 as f64 / 1e6
            )));
        }
        return Err(DecodeError::Corrupt("the video stream holds no packets".into()));
    }
    let ratio = errors as f64 / packets.max(1) as f64;
    if errors > 0 && ratio > opts.max_error_ratio {
        return Err(DecodeError::Corrupt(format!(
            "{errors} of {packets} packets failed to decode ({:.1}% > {:.1}% allowed){}",
            ratio * 100.0,
            opts.max_error_ratio * 100.0,
            first_error.map(|e| format!(": {e}")).unwrap_or_default()
        )));
    }
    if errors > 0 {
        session.report.warnings.push(format!("{errors} of {packets} packets failed to decode"));
    }
    if let Some(e) = &read_error {
        session.report.warnings.push(format!("truncated: reading stopped early ({e}); kept what decoded"));
    }
    let end = stream_end.unwrap_or(last_pts.saturating_add(default_dur));
    if !session.finished {
        let rows = session.sampler.finish(end);
        session.emit(rows)?;
    }
    if let (Some((s, e)), 0) = (opts.window, session.report.rows) {
        return Err(DecodeError::EmptyWindow(s, e));
    }
    let origin = session.sampler.origin().unwrap_or(0);
    let end = limit.map_or(end, |l| l.min(end));
    session.report.duration = end.saturating_sub(origin).max(0) as f64 * tb.to_f64();
    session.report.lag_mean = session.lag_sum / session.report.rows.max(1) as f64;
    if keyframes_only && session.report.lag_max > LONG_GOP_SECONDS {
        session.report.warnings.push(format!(
            "keyframes sampling: rows show frames up to {:.1} s older than their time (key frames that far apart); exact sampling follows the video",
            session.report.lag_max
        ));
    }
    Ok(session.report)
}

/// Playlists and concat scripts make FFmpeg open further inputs; say so plainly rather than
/// reporting an unknown format.
fn refuse_playlists(path: &Path) -> Result<(), DecodeError> {
    use std::io::Read;
    let mut head = [0u8; 64];
    let n = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)).unwrap_or(0);
    let text = String::from_utf8_lossy(&head[..n]);
    let t = text.trim_start_matches('\u{feff}').trim_start();
    if t.starts_with("#EXTM3U") || t.starts_with("#EXT-X-") {
        return Err(DecodeError::Forbidden("an HLS playlist: playlists are not followed".into()));
    }
    if t.starts_with("ffconcat") {
        return Err(DecodeError::Forbidden("an ffconcat script: concat scripts are not followed".into()));
    }
    if t.starts_with("<?xml") && text.contains("<MPD") {
        return Err(DecodeError::Forbidden("a DASH manifest: manifests are not followed".into()));
    }
    Ok(())
}

/// A packet may be skipped (if it is a non-reference frame) when some other packet in the
/// look-ahead starts after it and no later than the next row time: then a later frame is on
/// screen at every row time this one could cover.
fn skippable(p: &ffmpeg::Packet, lookahead: &VecDeque<ffmpeg::Packet>, sampler: &Sampler) -> bool {
    let Some(pts) = p.pts() else { return false };
    if sampler.origin().is_none() || !sampler.has_pending() {
        return false;
    }
    let successor = lookahead.iter().filter_map(|q| q.pts()).filter(|&q| q > pts).min();
    match successor {
        Some(s) => !sampler.row_in(pts, s),
        None => false,
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
