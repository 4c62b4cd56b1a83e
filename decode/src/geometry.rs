//! Output geometry: display size (sample aspect ratio and rotation applied), resize mode, and
//! the crop or padding that places the scaled picture in the output.

/// How sampled frames are fitted to the output size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// Bilinear to the output size, no crop, aspect not kept (YouTube-8M).
    Squash,
    /// Scale so the short side fills the output, then crop the centre.
    CenterCrop,
    /// Scale so the long side fits, then pad with black, centred.
    Letterbox,
}

impl Resize {
    /// The mode's name as `--resize` takes it.
    pub fn name(&self) -> &'static str {
        match self {
            Resize::Squash => "squash",
            Resize::CenterCrop => "center-crop",
            Resize::Letterbox => "letterbox",
        }
    }
}

impl std::str::FromStr for Resize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "squash" => Ok(Resize::Squash),
            "center-crop" | "centre-crop" => Ok(Resize::CenterCrop),
            "letterbox" => Ok(Resize::Letterbox),
            _ => Err(format!("unknown resize mode `{s}` (squash, center-crop, letterbox)")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Displayed size of the source (SAR and rotation applied).
    pub display_w: u32,
    pub display_h: u32,
    pub rotation: u32,
    pub mode: Resize,
    /// Scaled picture after rotation, before crop or padding.
    pub content_w: u32,
    pub content_h: u32,
    pub out_w: u32,
    pub out_h: u32,
}

impl Geometry {
    pub fn new(src_w: u32, src_h: u32, sar: (u32, u32), rotation: u32, size: Option<(u32, u32)>, mode: Resize) -> Self {
        let (src_w, src_h) = (src_w.max(1), src_h.max(1));
        // FFmpeg's convention: the sample aspect ratio stretches the width.
        let w0 = if sar.0 > 0 && sar.1 > 0 && sar.0 != sar.1 {
            ((src_w as u64 * sar.0 as u64 + sar.1 as u64 / 2) / sar.1 as u64).max(1) as u32
        } else {
            src_w
        };
        let (dw, dh) = if rotation % 180 == 90 { (src_h, w0) } else { (w0, src_h) };
        let (tw, th) = size.unwrap_or((dw, dh));
        let (tw, th) = (tw.max(1), th.max(1));
        let (sx, sy) = (tw as f64 / dw as f64, th as f64 / dh as f64);
        let (cw, ch) = match mode {
            Resize::Squash => (tw, th),
            Resize::CenterCrop => {
                let s = sx.max(sy);
                (((dw as f64 * s).round() as u32).max(tw), ((dh as f64 * s).round() as u32).max(th))
            }
            Resize::Letterbox => {
                let s = sx.min(sy);
                (((dw as f64 * s).round() as u32).clamp(1, tw), ((dh as f64 * s).round() as u32).clamp(1, th))
            }
        };
        Geometry { display_w: dw, display_h: dh, rotation, mode, content_w: cw, content_h: ch, out_w: tw, out_h: th }
    }

    /// The size to scale the decoded (unrotated) picture to.
    pub fn scale_size(&self) -> (u32, u32) {
        if self.rotation % 180 == 90 {
            (self.content_h, self.content_w)
        } else {
            (self.content_w, self.content_h)
        }
    }

    /// Rotates the scaled picture upright and crops or pads it into the output.
    pub fn finish(&self, scaled: &[u8]) -> Vec<u8> {
        let (sw, sh) = self.scale_size();
        let (rgb, cw, ch) = crate::rotate_rgb(scaled, sw, sh, self.rotation);
        let (cw, ch, tw, th) = (cw as usize, ch as usize, self.out_w as usize, self.out_h as usize);
        if (cw, ch) == (tw, th) {
            return rgb;
        }
        let mut out = vec![0u8; tw * th * 3];
        if cw >= tw && ch >= th {
            let (x0, y0) = ((cw - tw) / 2, (ch - th) / 2);
            for y in 0..th {
                let s = ((y + y0) * cw + x0) * 3;
                out[y * tw * 3..(y + 1) * tw * 3].copy_from_slice(&rgb[s..s + tw * 3]);
            }
        } else {
            let (x0, y0) = ((tw - cw.min(tw)) / 2, (th - ch.min(th)) / 2);
            for y in 0..ch.min(th) {
                let d = ((y + y0) * tw + x0) * 3;
                let n = cw.min(tw) * 3;
                out[d..d + n].copy_from_slice(&rgb[y * cw * 3..y * cw * 3 + n]);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_size_applies_sar_and_rotation() {
        // 340x256 with SAR 64:51 displays as 427x256.
        let g = Geometry::new(340, 256, (64, 51), 0, None, Resize::Squash);
        assert_eq!((g.display_w, g.display_h), (427, 256));
        let g = Geometry::new(568, 320, (1, 1), 90, None, Resize::Squash);
        assert_eq!((g.display_w, g.display_h, g.scale_size()), (320, 568, (568, 320)));
    }

    #[test]
    fn crop_and_letterbox_place_the_picture() {
        // 400x200 source into 100x100.
        let g = Geometry::new(400, 200, (1, 1), 0, Some((100, 100)), Resize::CenterCrop);
        assert_eq!((g.content_w, g.content_h), (200, 100));
        let l = Geometry::new(400, 200, (1, 1), 0, Some((100, 100)), Resize::Letterbox);
        assert_eq!((l.content_w, l.content_h), (100, 50));
        // Content: left half red, right half blue (200x100 for crop; 100x50 for letterbox).
        let paint = |w: usize, h: usize| -> Vec<u8> {
            (0..h).flat_map(|_| (0..w).flat_map(move |x| if x < w / 2 { [255u8, 0, 0] } else { [0, 0, 255] })).collect()
        };
        let c = g.finish(&paint(200, 100));
        assert_eq!(c.len(), 100 * 100 * 3);
        assert_eq!(&c[..3], &[255, 0, 0]);
        assert_eq!(&c[(99) * 3..100 * 3], &[0, 0, 255]);
        let b = l.finish(&paint(100, 50));
        assert_eq!(&b[..3], &[0, 0, 0], "top band is padding");
        let mid = (50 * 100) * 3;
        assert_eq!(&b[mid..mid + 3], &[255, 0, 0]);
        assert_eq!(&b[(99 * 100) * 3..], &[0u8; 300][..], "bottom band is padding");
    }
}
