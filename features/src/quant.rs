//! YouTube-8M's 8-bit quantization over [-2, 2].
//!
//! Write side: `q = round((clip(x, -2, 2) + 2) * 255 / 4)`.
//! Read side (the YouTube-8M readers): `x' = q * 4 / 255 + 4 / 512 - 2`. The half-bin offset
//! uses 512, not 510, so a stored 0 reads back as about -1.992, not -2. With round-to-nearest on
//! the write side, the read value is within half a bin of `x + 4/512`: the readers' offset
//! shifts every value up by just under half a bin (4/512 vs 4/510).

pub const MIN: f32 = -2.0;
pub const MAX: f32 = 2.0;

pub fn quantize(x: &[f32]) -> Vec<u8> {
    x.iter()
        .map(|&v| {
            let v = if v.is_nan() { 0.0 } else { v.clamp(MIN, MAX) };
            ((v - MIN) * 255.0 / (MAX - MIN)).round() as u8
        })
        .collect()
}

pub fn dequantize(q: &[u8]) -> Vec<f32> {
    let scalar = (MAX - MIN) / 255.0;
    let bias = (MAX - MIN) / 512.0 + MIN;
    q.iter().map(|&b| b as f32 * scalar + bias).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_within_half_a_bin_plus_the_read_bias() {
        let bin = 4.0f32 / 255.0;
        let read_bias = 4.0f32 / 512.0;
        let mut worst = 0.0f32;
        for i in 0..=4000 {
            let x = -2.0 + i as f32 * 0.001;
            let back = dequantize(&quantize(&[x]))[0];
            let err = back - read_bias - x;
            assert!(err.abs() <= bin / 2.0 + 1e-5, "{x} -> {back}");
            worst = worst.max(err.abs());
        }
        assert!(worst > bin / 2.0 * 0.95, "the grid is as coarse as one bin: {worst}");
        assert_eq!(quantize(&[-2.0, 2.0, 0.0, -9.0, 9.0, f32::NAN]), vec![0, 255, 128, 0, 255, 128]);
        // Stored 0 reads back as -1.992..., stored 255 as 2.0078...
        let d = dequantize(&[0, 255]);
        assert!((d[0] - (-2.0 + 4.0 / 512.0)).abs() < 1e-6 && (d[0] + 1.992).abs() < 1e-3);
        assert!((d[1] - (255.0 * 4.0 / 255.0 + 4.0 / 512.0 - 2.0)).abs() < 1e-6);
    }
}
