//! The sampler's timestamp arithmetic over arbitrary time bases, rates, windows and frame
//! times (as a hostile container could declare them): no panic, no endless row loop, and the
//! rows it emits are consecutive.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vidfeat_decode::{Rational, Sampler};

fn take<const N: usize>(d: &mut &[u8]) -> Option<[u8; N]> {
    let (a, b) = d.split_first_chunk::<N>()?;
    *d = b;
    Some(*a)
}

fuzz_target!(|data: &[u8]| {
    let mut d = data;
    let (Some(h), Some(o), Some(l)) = (take::<16>(&mut d), take::<9>(&mut d), take::<9>(&mut d)) else { return };
    let pos = |b: [u8; 4]| (u32::from_le_bytes(b) as i64 & 0x7fff_ffff).max(1);
    // FFmpeg time bases are int/int; rates come from `--fps` (at most 1e6, microsecond steps).
    let tb = Rational::new(pos(h[0..4].try_into().unwrap()), pos(h[4..8].try_into().unwrap()));
    let fps = Rational::new(pos(h[8..12].try_into().unwrap()) % 1_000_000_000_000 + 1, pos(h[12..16].try_into().unwrap()) % 1_000_000 + 1);
    let opt = |b: [u8; 9]| (b[0] & 1 == 1).then(|| i64::from_le_bytes(b[1..9].try_into().unwrap()));
    let max_rows = Some(4096);
    let mut s = Sampler::new(tb, fps, opt(o), opt(l), max_rows);
    let mut next = 0u64;
    while let Some(p) = take::<8>(&mut d) {
        let pts = i64::from_le_bytes(p);
        let r = s.push(pts);
        assert_eq!(r.start, next);
        next = r.end;
        assert!(next <= 4096);
        let _ = s.row_in(pts, pts.saturating_add(1));
        let _ = s.done_before(pts);
    }
    let r = s.finish(i64::MAX);
    assert_eq!(r.start, next);
    assert!(r.end <= 4096);
});
