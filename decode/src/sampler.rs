//! The 1-fps sampling rule, as pure timestamp arithmetic (no FFmpeg), so it can be tested alone.
//!
//! Row k shows the frame *on screen* at `t_k = origin + k / fps`: the newest frame whose
//! presentation time is `<= t_k` (a frame exactly at `t_k` is taken). That is what FFmpeg's
//! `fps=1:round=up` filter outputs, and YouTube-8M's "frame at or just after each whole second"
//! for frame rates whose frames land on whole seconds. `origin` is the first frame's timestamp
//! (or the window start for clips), so files whose first frame is at 1.4 s still give row 0 =
//! first frame. A gap in the video repeats the last frame; later rows never shift. Rows run
//! while `t_k < end`, where `end` is the end of the last frame (or the window end), so a
//! 10.0 s clip gives 10 rows and a 10.4 s clip 11.
//!
//! Clip rows ([`Sampler::with_clip`]): row k is `T` frames, at `t_k + j / clip_fps` for
//! j = 0..T, each chosen by the same rule. The sampler then counts sub-rows `m = k * T + j`
//! (clips must not overlap: `T / clip_fps <= 1 / fps`, so sub-row times only grow). A clip
//! whose start is inside the video (or window) is always completed: sub-rows past the end
//! repeat the last frame shown.
//!
//! All comparisons are exact (i128 cross-multiplication of rationals).

/// A rational number `num / den` (den > 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rational {
    pub num: i64,
    pub den: i64,
}

impl Rational {
    pub fn new(num: i64, den: i64) -> Self {
        assert!(den != 0, "zero denominator");
        if den < 0 {
            Rational { num: -num, den: -den }
        } else {
            Rational { num, den }
        }
    }

    pub fn to_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// Parses `30`, `29.97`, `30000/1001`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if let Some((n, d)) = s.split_once('/') {
            let (n, d) = (n.trim().parse::<i64>().ok()?, d.trim().parse::<i64>().ok()?);
            return (n > 0 && d > 0).then(|| Rational::new(n, d));
        }
        let v: f64 = s.parse().ok()?;
        if !(v > 0.0 && v.is_finite() && v <= 1e6) {
            return None;
        }
        let den = 1_000_000i64;
        Some(Rational::new((v * den as f64).round() as i64, den))
    }
}

/// `a0*a1*a2 < b0*b1*b2`, exactly when the products fit in i128 (they do for real time bases
/// and rates); hostile values that overflow are compared in f64 instead of wrapping.
fn less_products(a: [i128; 3], b: [i128; 3]) -> bool {
    let prod = |x: [i128; 3]| x[0].checked_mul(x[1]).and_then(|y| y.checked_mul(x[2]));
    match (prod(a), prod(b)) {
        (Some(l), Some(r)) => l < r,
        _ => (a[0] as f64 * a[1] as f64 * a[2] as f64) < (b[0] as f64 * b[1] as f64 * b[2] as f64),
    }
}

/// Streaming sampler: feed frame timestamps in display order.
#[derive(Debug, Clone)]
pub struct Sampler {
    /// Stream time base (seconds per tick).
    tb: Rational,
    /// Output rows per second.
    fps: Rational,
    origin: Option<i64>,
    /// Exclusive end of sampling in stream ticks (window end), if any.
    limit: Option<i64>,
    max_rows: Option<u64>,
    /// Clip rows: (frames per clip, clip fps); `next_row` then counts sub-rows.
    clip: Option<(u64, Rational)>,
    next_row: u64,
    have_pending: bool,
}

/// Why clip rows cannot be made.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipOverlap(pub String);

impl Sampler {
    /// `origin`: `Some(window start)` in ticks for clips, `None` to start at the first frame.
    pub fn new(tb: Rational, fps: Rational, origin: Option<i64>, limit: Option<i64>, max_rows: Option<u64>) -> Self {
        Sampler { tb, fps, origin, limit, max_rows, clip: None, next_row: 0, have_pending: false }
    }

    /// Rows of `frames` frames at `clip_fps` (see the module doc). Refused when the clips of
    /// neighbouring rows would overlap.
    pub fn with_clip(mut self, frames: u64, clip_fps: Rational) -> Result<Self, ClipOverlap> {
        // frames / clip_fps <= 1 / fps  <=>  frames * clip_fps.den * fps.num <= clip_fps.num * fps.den
        if frames == 0 || less_products([self.fps.den as i128, clip_fps.num as i128, 1], [frames as i128, clip_fps.den as i128, self.fps.num as i128]) {
            return Err(ClipOverlap(format!(
                "clips of {frames} frames at {} fps last {:.3} s, longer than the {:.3} s between rows at {} rows/s: lower the row rate",
                clip_fps.to_f64(),
                frames as f64 / clip_fps.to_f64(),
                1.0 / self.fps.to_f64(),
                self.fps.to_f64()
            )));
        }
        self.clip = Some((frames.max(1), clip_fps));
        Ok(self)
    }

    /// Sub-rows per row (1 without clips).
    fn per_row(&self) -> u64 {
        self.clip.map_or(1, |c| c.0)
    }

    /// Time of (sub-)row m from the origin, seconds, as num / den (den > 0); None on overflow.
    fn time_of(&self, m: u64) -> Option<(i128, i128)> {
        let (fd, fnum) = (self.fps.den as i128, self.fps.num as i128);
        match self.clip {
            None => Some(((m as i128).checked_mul(fd)?, fnum)),
            Some((t, c)) => {
                let (k, j) = ((m / t) as i128, (m % t) as i128);
                let (cd, cn) = (c.den as i128, c.num as i128);
                Some((k.checked_mul(fd)?.checked_mul(cn)?.checked_add(j.checked_mul(cd)?.checked_mul(fnum)?)?, fnum.checked_mul(cn)?))
            }
        }
    }

    /// Is (sub-)row m's time strictly before tick `p` (and before the limit)?
    fn row_before(&self, m: u64, p: i64) -> bool {
        if self.max_rows.is_some_and(|max| m / self.per_row() >= max) {
            return false;
        }
        let origin = self.origin.expect("origin set");
        let p = self.limit.map_or(p, |l| p.min(l));
        // origin + num/den / (tb.num/tb.den) < p  <=>  num * tb.den < (p - origin) * tb.num * den
        match self.time_of(m) {
            Some((num, den)) => less_products([num, self.tb.den as i128, 1], [p as i128 - origin as i128, self.tb.num as i128, den]),
            None => {
                let secs = (m / self.per_row()) as f64 * self.fps.den as f64 / self.fps.num as f64;
                secs < (p as f64 - origin as f64) * self.tb.to_f64()
            }
        }
    }

    /// The first sub-row of the clip that sub-row m belongs to (m itself without clips).
    fn clip_start(&self, m: u64) -> u64 {
        m - m % self.per_row()
    }

    /// Sub-rows still owed to a clip whose first frames are out (the rest of it repeats the
    /// frame last shown): the window ended, or the row cap. Empty between clips.
    pub fn pad_clip(&mut self) -> std::ops::Range<u64> {
        let start = self.next_row;
        if self.have_pending && start % self.per_row() != 0 {
            self.next_row = self.clip_start(start) + self.per_row();
        }
        start..self.next_row
    }

    /// A new frame at tick `pts` arrives. Returns the rows that the *previous* frame fills
    /// (possibly empty, possibly several through a gap). The new frame becomes the pending one.
    pub fn push(&mut self, pts: i64) -> std::ops::Range<u64> {
        if self.origin.is_none() {
            self.origin = Some(pts);
        }
        if !self.have_pending {
            // Nothing shown yet: the first frame covers everything up to its successor.
            self.have_pending = true;
            return self.next_row..self.next_row;
        }
        let start = self.next_row;
        while self.row_before(self.next_row, pts) {
            self.next_row += 1;
        }
        start..self.next_row
    }

    /// End of stream at tick `end` (end of the last frame): rows the pending frame still fills.
    pub fn finish(&mut self, end: i64) -> std::ops::Range<u64> {
        if !self.have_pending {
            return 0..0;
        }
        let start = self.next_row;
        // A clip begun before the end is completed by the last frame.
        while self.row_before(self.next_row, end) || (self.next_row % self.per_row() != 0 && self.row_before(self.clip_start(self.next_row), end)) {
            self.next_row += 1;
        }
        start..self.next_row
    }

    /// True once no later frame can produce a row (max rows reached or past the window end).
    /// With clips, a clip begun and cut by the window end is then owed its rest: [`Self::pad_clip`].
    pub fn done_before(&self, pts: i64) -> bool {
        if self.max_rows.is_some_and(|m| self.next_row >= m.saturating_mul(self.per_row())) {
            return true;
        }
        // Past the limit and the pending frame has filled every row before it (every sub-row
        // of the clips that started before it).
        self.limit.is_some_and(|l| pts >= l && self.origin.is_some() && !self.row_before(self.next_row, l))
    }

    /// Is there a row not yet emitted whose time lies in [p, s)? (A frame shown from p until
    /// its successor at s is needed exactly when this holds.)
    pub fn row_in(&self, p: i64, s: i64) -> bool {
        let Some(origin) = self.origin else { return true };
        if let Some((t, _)) = self.clip {
            // The first clip row starting at or after p, k1 (from the row grid); a sub-row at
            // or after p is the first such of row k1 - 1, or row k1's first.
            let k1 = self.first_row_at(p, origin);
            let mut m = k1.saturating_mul(t);
            if k1 > 0 {
                if let Some(j) = (0..t).find(|j| !self.sub_row_before_tick((k1 - 1) * t + j, p, origin)) {
                    m = (k1 - 1) * t + j;
                }
            }
            return self.row_before(m.max(self.next_row), s);
        }
        let k = self.first_row_at(p, origin).max(self.next_row);
        self.row_before(k, s)
    }

    /// Is sub-row m's time strictly before tick p (no limit, no cap)?
    fn sub_row_before_tick(&self, m: u64, p: i64, origin: i64) -> bool {
        match self.time_of(m) {
            Some((num, den)) => less_products([num, self.tb.den as i128, 1], [p as i128 - origin as i128, self.tb.num as i128, den]),
            None => false,
        }
    }

    /// The first row (of the row grid, not sub-rows) whose time is at or after tick p.
    fn first_row_at(&self, p: i64, origin: i64) -> u64 {
        // First row at or after p: k0 = ceil((p - origin) * b / a).
        let a = self.fps.den as i128 * self.tb.den as i128;
        let b = self.fps.num as i128 * self.tb.num as i128;
        let k0 = match (p as i128 - origin as i128).checked_mul(b) {
            Some(rhs) if rhs <= 0 => 0,
            Some(rhs) => rhs.checked_add(a - 1).map_or(u64::MAX as i128, |x| x / a),
            // Astronomical timestamps: f64 is exact enough to land past any real row.
            None => ((p as f64 - origin as f64) * b as f64 / a as f64).ceil().max(0.0) as i128,
        };
        k0.clamp(0, u64::MAX as i128) as u64
    }

    /// Whether a frame has been seen (the pending frame exists).
    pub fn has_pending(&self) -> bool {
        self.have_pending
    }

    pub fn rows(&self) -> u64 {
        self.next_row
    }

    /// Time of (sub-)row m in seconds relative to the origin.
    pub fn row_time(&self, m: u64) -> f64 {
        match self.time_of(m) {
            Some((num, den)) => num as f64 / den as f64,
            None => (m / self.per_row()) as f64 * self.fps.den as f64 / self.fps.num as f64,
        }
    }

    pub fn origin(&self) -> Option<i64> {
        self.origin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the sampler over frame times and returns, per row, the index of the frame used.
    fn sample(tb: Rational, pts: &[i64], end: i64, origin: Option<i64>, limit: Option<i64>, max: Option<u64>) -> Vec<usize> {
        let mut s = Sampler::new(tb, Rational::new(1, 1), origin, limit, max);
        let mut rows = vec![];
        for (i, &p) in pts.iter().enumerate() {
            for _ in s.push(p) {
                rows.push(i - 1);
            }
        }
        for _ in s.finish(end) {
            rows.push(pts.len() - 1);
        }
        rows
    }

    #[test]
    fn hostile_time_bases_and_timestamps_neither_overflow_nor_run_away() {
        // Products far beyond i128: compared in f64, and the row cap holds.
        let tb = Rational::new(0x7fff_ffff, 1);
        let fps = Rational::new(1_000_000_000_000, 1);
        let mut s = Sampler::new(tb, fps, Some(i64::MIN), None, Some(10));
        assert_eq!(s.push(0), 0..0);
        assert_eq!(s.push(i64::MAX), 0..10);
        assert_eq!(s.finish(i64::MAX), 10..10);
        assert!(s.done_before(i64::MAX));
        let mut s = Sampler::new(Rational::new(1, 0x7fff_ffff), Rational::new(1, 1_000_000), None, Some(i64::MAX), Some(5));
        s.push(i64::MIN);
        assert!(s.row_in(i64::MIN, i64::MAX));
        // 2^64 ticks of 1/(2^31 - 1) s = 8.6e9 s, one row per 1e6 s: 8589 rows, capped at 5.
        assert_eq!(s.push(i64::MAX), 0..5);
        // Exact arithmetic is unchanged for ordinary values.
        assert!(less_products([3, 1, 1], [2, 2, 1]) && !less_products([4, 1, 1], [2, 2, 1]));
    }

    #[test]
    fn constant_rate_takes_the_frame_at_each_second() {
        // 25 fps for 10 s, tb 1/25: frames 0, 25, 50, ... ; 10 rows.
        let pts: Vec<i64> = (0..250).collect();
        assert_eq!(sample(Rational::new(1, 25), &pts, 250, None, None, None), (0..10).map(|k| k * 25).collect::<Vec<_>>());
    }

    #[test]
    fn unaligned_rate_takes_the_frame_on_screen() {
        // 45000/1499 fps (~30.02): frame 30 is at 0.99933 s, frame 31 at 1.0327 s.
        let pts: Vec<i64> = (0..36).map(|i| i * 1499).collect();
        let rows = sample(Rational::new(1, 45000), &pts, 36 * 1499, None, None, None);
        assert_eq!(rows, vec![0, 30]);
    }

    #[test]
    fn offset_start_gap_and_partial_last_second() {
        // First frame at 1.4 s; frames every 0.5 s until 2.9, then a gap to 6.4, then 6.9; end 7.4.
        let tb = Rational::new(1, 10);
        let pts = [14, 19, 24, 29, 64, 69];
        // Rows at 1.4, 2.4, 3.4, 4.4, 5.4, 6.4 (7.4 is the end, excluded).
        let rows = sample(tb, &pts, 74, None, None, None);
        assert_eq!(rows, vec![0, 2, 3, 3, 3, 4], "the gap repeats the last frame before it");
    }

    #[test]
    fn window_and_max_rows() {
        let tb = Rational::new(1, 10);
        let pts: Vec<i64> = (0..100).collect(); // 10 fps for 10 s
        // Window [2.5, 5.5): rows at 2.5, 3.5, 4.5.
        assert_eq!(sample(tb, &pts, 100, Some(25), Some(55), None), vec![25, 35, 45]);
        // Window start between frames takes the frame on screen: [2.55, 4.0) -> frames 25, 35.
        let tb2 = Rational::new(1, 100);
        let pts2: Vec<i64> = (0..100).map(|i| i * 10).collect();
        assert_eq!(sample(tb2, &pts2, 1000, Some(255), Some(400), None), vec![25, 35]);
        assert_eq!(sample(tb, &pts, 100, None, None, Some(3)), vec![0, 10, 20]);
    }

    #[test]
    fn row_in_finds_rows_covered_by_a_frame() {
        let mut s = Sampler::new(Rational::new(1, 10), Rational::new(1, 1), None, None, Some(5));
        s.push(0);
        s.push(5); // emits nothing yet (row 0 at 0 needs a frame > 0 to be decided: 5 > 0 -> row 0)
        assert_eq!(s.rows(), 1);
        assert!(s.row_in(9, 11), "row 1 at t=10 lies in [9, 11)");
        assert!(!s.row_in(6, 9), "no row in [0.6, 0.9)");
        assert!(s.row_in(6, 10) == false && s.row_in(6, 11));
        assert!(!s.row_in(95, 200), "past max rows (rows 0..5 end at t=4)");
    }

    #[test]
    fn rational_parsing() {
        assert_eq!(Rational::parse("30000/1001"), Some(Rational::new(30000, 1001)));
        assert_eq!(Rational::parse("1").map(|r| r.to_f64()), Some(1.0));
        assert_eq!(Rational::parse("0.5").map(|r| r.to_f64()), Some(0.5));
        assert_eq!(Rational::parse("-1"), None);
        assert_eq!(Rational::parse("x"), None);
    }

    /// Clip rows through the sampler as the decoder drives it: frame indices per clip row.
    /// `pts` in display order; a window ends the way the decoder ends it (done_before, then
    /// the rest of a cut clip from the frame last shown).
    fn sample_clips(tb: Rational, pts: &[i64], end: i64, origin: Option<i64>, limit: Option<i64>, max: Option<u64>, t: u64, cfps: Rational) -> Vec<Vec<usize>> {
        let mut s = Sampler::new(tb, Rational::new(1, 1), origin, limit, max).with_clip(t, cfps).unwrap();
        let mut subs = vec![];
        let mut finished = false;
        for (i, &p) in pts.iter().enumerate() {
            if s.done_before(p) {
                for _ in s.pad_clip() {
                    subs.push(i - 1);
                }
                finished = true;
                break;
            }
            for _ in s.push(p) {
                subs.push(i - 1);
            }
        }
        if !finished {
            for _ in s.finish(end) {
                subs.push(pts.len() - 1);
            }
        }
        assert_eq!(subs.len() as u64 % t, 0, "whole clips only: {subs:?}");
        assert_eq!(s.rows(), subs.len() as u64);
        subs.chunks(t as usize).map(|c| c.to_vec()).collect()
    }

    #[test]
    fn clip_rows_take_the_frame_on_screen_at_each_clip_time() {
        // 30 fps for 10 s; clips of 4 frames at 10 fps: row k, frame j at k + j/10 s.
        let tb = Rational::new(1, 30);
        let pts: Vec<i64> = (0..300).collect();
        let rows = sample_clips(tb, &pts, 300, None, None, None, 4, Rational::new(10, 1));
        assert_eq!(rows.len(), 10, "one clip row per second, as frame rows");
        for (k, r) in rows.iter().enumerate() {
            assert_eq!(r, &(0..4).map(|j| 30 * k + 3 * j).collect::<Vec<_>>());
        }
        // A video ending 0.067 s after row 10's time: that row's clip repeats the last frame.
        let pts: Vec<i64> = (0..302).collect();
        let rows = sample_clips(tb, &pts, 302, None, None, None, 4, Rational::new(10, 1));
        assert_eq!(rows.len(), 11);
        assert_eq!(rows[10], [300, 301, 301, 301]);
        // A row cap counts clip rows.
        assert_eq!(sample_clips(tb, &pts, 302, None, None, Some(3), 4, Rational::new(10, 1)).len(), 3);
        // 25 fps clips of a 29.97 fps video: each clip frame is the newest at or before its time.
        let tb = Rational::new(1001, 30000);
        let pts: Vec<i64> = (0..150).collect();
        let rows = sample_clips(tb, &pts, 150, None, None, None, 16, Rational::new(25, 1));
        for (k, r) in rows.iter().enumerate() {
            for (j, &i) in r.iter().enumerate() {
                let t = k as f64 + j as f64 / 25.0;
                let want = (0..150usize).filter(|&f| f as f64 * 1001.0 / 30000.0 <= t + 1e-12).last().unwrap();
                assert_eq!(i, want, "row {k} frame {j}");
            }
        }
    }

    #[test]
    fn a_clip_cut_by_the_window_end_repeats_the_last_frame_in_the_window() {
        // Window [1 s, 2.5 s) of a 30 fps video; clips of 4 frames at 4 fps (1 s long).
        let tb = Rational::new(1, 30);
        let pts: Vec<i64> = (0..300).collect();
        let rows = sample_clips(tb, &pts, 300, Some(30), Some(75), None, 4, Rational::new(4, 1));
        assert_eq!(rows.len(), 2);
        // Row 0 at 1.0 s: 1.0, 1.25, 1.5, 1.75 s; row 1 at 2.0 s: 2.0, 2.25, then the frame on
        // screen at the window end (frame 74 at 2.467 s) twice.
        assert_eq!(rows[0], [30, 37, 45, 52]);
        assert_eq!(rows[1], [60, 67, 74, 74]);
    }

    #[test]
    fn overlapping_clips_are_refused() {
        let s = Sampler::new(Rational::new(1, 30), Rational::new(2, 1), None, None, None);
        let e = s.clone().with_clip(16, Rational::new(25, 1)).unwrap_err();
        assert!(e.0.contains("0.640 s") && e.0.contains("0.500 s"), "{}", e.0);
        assert!(s.clone().with_clip(12, Rational::new(24, 1)).is_ok(), "exactly the row spacing is allowed");
        assert!(s.with_clip(0, Rational::new(25, 1)).is_err());
    }

    /// row_in with clips says exactly whether a frame shown over [p, s) is needed by a
    /// sub-row not yet emitted, checked against every sub-row time.
    #[test]
    fn row_in_with_clips_matches_brute_force() {
        let tb = Rational::new(1, 90_000);
        // Irregular frame times (VFR): 0..12 s.
        let mut pts = vec![0i64];
        let mut x = 7u64;
        while *pts.last().unwrap() < 12 * 90_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            pts.push(pts.last().unwrap() + 1_000 + (x >> 33) as i64 % 9_000);
        }
        let mut s = Sampler::new(tb, Rational::new(1, 1), None, None, None).with_clip(8, Rational::new(25, 1)).unwrap();
        let times: Vec<i128> = (0..14u64 * 8).map(|m| ((m / 8) as i128 * 25 + (m % 8) as i128) * 90_000 / 25).collect();
        let mut emitted = 0usize;
        for w in pts.windows(2) {
            let (p, q) = (w[0], w[1]);
            if s.has_pending() {
                let want = times.iter().enumerate().any(|(m, &t)| m >= emitted && t >= p as i128 && t < q as i128);
                // times are exact here (90 kHz / 25 = 3600 ticks)
                assert_eq!(s.row_in(p, q), want, "frame [{p}, {q}) after {emitted} sub-rows");
            }
            emitted += s.push(p).count();
        }
    }
}
