//! Crop + antialiased bilinear resize of an RGB photo in one pass over its pixels, giving the
//! same bytes as `image::imageops::resize(&crop, w, h, FilterType::Triangle)` of the cropped
//! square (the tests check that bit for bit) at a fraction of the cost: the crop is read in
//! place instead of copied, the filter weights are computed once per output row and column,
//! and both passes run along memory rows, where the generic implementation walks the
//! intermediate image column by column through a four-channel float buffer.
//!
//! The arithmetic is the generic implementation's, operation for operation: the triangle
//! kernel widened by the shrink ratio, weights normalised to sum 1, a vertical pass into f32,
//! then a horizontal pass, each output the sum of its taps in increasing order, rounded to
//! the nearest integer and clamped to 0–255.
use image::RgbImage;

/// Filter taps of one output position: the first input index and the normalised weights.
struct Taps {
    first: usize,
    weights: Vec<f32>,
}

/// The triangle filter's taps for `new_len` outputs from `len` inputs (as `image` computes
/// them, in f32).
fn taps(len: u32, new_len: u32) -> Vec<Taps> {
    let ratio = len as f32 / new_len as f32;
    let sratio = if ratio < 1.0 { 1.0 } else { ratio };
    let support = sratio; // the triangle's support is 1, widened by the ratio
    (0..new_len)
        .map(|out| {
            let centre = (out as f32 + 0.5) * ratio;
            let left = ((centre - support).floor() as i64).clamp(0, len as i64 - 1);
            let right = ((centre + support).ceil() as i64).clamp(left + 1, len as i64);
            let centre = centre - 0.5;
            let mut weights: Vec<f32> = (left..right)
                .map(|i| {
                    let x = (i as f32 - centre) / sratio;
                    if x.abs() < 1.0 {
                        1.0 - x.abs()
                    } else {
                        0.0
                    }
                })
                .collect();
            let sum: f32 = weights.iter().fold(0.0, |s, w| s + w);
            for w in &mut weights {
                *w /= sum;
            }
            Taps {
                first: left as usize,
                weights,
            }
        })
        .collect()
}

/// The `width`×`height` region of `img` at (`x`, `y`), resized to `new_width`×`new_height`.
/// The region must lie inside the image.
pub fn crop_resize_triangle(
    img: &RgbImage,
    (x, y, width, height): (u32, u32, u32, u32),
    new_width: u32,
    new_height: u32,
) -> RgbImage {
    assert!(
        x + width <= img.width() && y + height <= img.height(),
        "crop {width}×{height} at ({x}, {y}) outside a {}×{} image",
        img.width(),
        img.height()
    );
    if width == 0 || height == 0 || new_width == 0 || new_height == 0 {
        return RgbImage::new(new_width, new_height);
    }
    let src = img.as_raw();
    let stride = img.width() as usize * 3;
    let row_len = width as usize * 3;
    let x0 = x as usize * 3;
    if (new_width, new_height) == (width, height) {
        let mut out = Vec::with_capacity(row_len * height as usize);
        for r in 0..height as usize {
            let start = (y as usize + r) * stride + x0;
            out.extend_from_slice(&src[start..start + row_len]);
        }
        return RgbImage::from_raw(width, height, out).expect("buffer of the right size");
    }

    // Vertical pass: new_height rows of width×3 floats.
    let mut tmp = vec![0f32; new_height as usize * row_len];
    for (acc, t) in tmp.chunks_exact_mut(row_len).zip(taps(height, new_height)) {
        for (k, &w) in t.weights.iter().enumerate() {
            let start = (y as usize + t.first + k) * stride + x0;
            for (a, &v) in acc.iter_mut().zip(&src[start..start + row_len]) {
                *a += v as f32 * w;
            }
        }
    }

    // Horizontal pass, row by row.
    let cols = taps(width, new_width);
    let out_len = new_width as usize * 3;
    let mut out = vec![0u8; new_height as usize * out_len];
    for (line, row) in out.chunks_exact_mut(out_len).zip(tmp.chunks_exact(row_len)) {
        for (px, t) in line.chunks_exact_mut(3).zip(&cols) {
            let mut sum = [0f32; 3];
            for (k, &w) in t.weights.iter().enumerate() {
                let p = &row[(t.first + k) * 3..(t.first + k) * 3 + 3];
                sum[0] += p[0] * w;
                sum[1] += p[1] * w;
                sum[2] += p[2] * w;
            }
            for (o, s) in px.iter_mut().zip(sum) {
                *o = s.clamp(0.0, 255.0).round() as u8;
            }
        }
    }
    RgbImage::from_raw(new_width, new_height, out).expect("buffer of the right size")
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::imageops::{self, FilterType};
    use rand::{Rng, SeedableRng};

    /// Bit for bit what `image` gives, shrinking (the pipeline's case), enlarging, uneven
    /// ratios, off-centre crops and one-pixel edges.
    #[test]
    fn equals_the_image_crate() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let img = RgbImage::from_fn(137, 101, |_, _| image::Rgb(rng.gen::<[u8; 3]>()));
        for (crop, w, h) in [
            ((18, 0, 101, 101), 64, 64),
            ((0, 0, 101, 101), 40, 40),
            ((36, 0, 101, 101), 101, 101),
            ((5, 7, 60, 33), 97, 50),
            ((0, 0, 137, 101), 13, 71),
            ((3, 3, 1, 9), 4, 2),
        ] {
            let (x, y, cw, ch) = crop;
            let want = imageops::resize(
                &imageops::crop_imm(&img, x, y, cw, ch).to_image(),
                w,
                h,
                FilterType::Triangle,
            );
            let got = crop_resize_triangle(&img, crop, w, h);
            assert_eq!(got.dimensions(), (w, h));
            assert!(got == want, "crop {crop:?} → {w}×{h} differs");
        }
    }
}
