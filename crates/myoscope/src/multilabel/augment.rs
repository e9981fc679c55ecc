//! DEDL's classification augmentation on the resized image: colour jitter, a random
//! perspective warp, a random rotation and flips, each geometric step with its own
//! probability. Warps map every output pixel back into the source (bilinear), filling with
//! black outside it, as torchvision's transforms do.
use crate::data::augment::ColourJitter;
use anyhow::{ensure, Result};
use image::{imageops, Rgb, RgbImage};
use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultiLabelAugmentation {
    /// Relative brightness, contrast and saturation change (0.2 = ±20 %).
    pub colour_jitter: f32,
    /// How far each corner may move inward, as a share of half the side (torchvision's
    /// `distortion_scale`).
    pub perspective: f32,
    pub perspective_p: f64,
    /// Largest rotation, degrees either way.
    pub rotation_degrees: f32,
    pub rotation_p: f64,
    /// Probability of a horizontal flip, and separately of a vertical one.
    pub flip_p: f64,
}

impl Default for MultiLabelAugmentation {
    /// The paper's: jitter 0.2, perspective 0.2 (p 0.3), affine ±10° (p 0.3), flips (p 0.3).
    fn default() -> Self {
        Self {
            colour_jitter: 0.2,
            perspective: 0.2,
            perspective_p: 0.3,
            rotation_degrees: 10.0,
            rotation_p: 0.3,
            flip_p: 0.3,
        }
    }
}

impl MultiLabelAugmentation {
    pub fn none() -> Self {
        Self {
            colour_jitter: 0.0,
            perspective: 0.0,
            perspective_p: 0.0,
            rotation_degrees: 0.0,
            rotation_p: 0.0,
            flip_p: 0.0,
        }
    }

    pub fn validate(&self) -> Result<()> {
        for (name, p) in [
            ("perspective_p", self.perspective_p),
            ("rotation_p", self.rotation_p),
            ("flip_p", self.flip_p),
        ] {
            ensure!(
                (0.0..=1.0).contains(&p),
                "augmentation.{name} is a probability in [0, 1], not {p}"
            );
        }
        ensure!(
            (0.0..1.0).contains(&self.perspective),
            "augmentation.perspective must lie in [0, 1), not {}",
            self.perspective
        );
        ensure!(
            (0.0..1.0).contains(&self.colour_jitter),
            "augmentation.colour_jitter must lie in [0, 1), not {}",
            self.colour_jitter
        );
        ensure!(
            (0.0..=180.0).contains(&self.rotation_degrees),
            "augmentation.rotation_degrees must lie in [0, 180], not {}",
            self.rotation_degrees
        );
        Ok(())
    }

    /// Applies the geometric steps and draws the colour factors (applied when the image is
    /// converted to a tensor).
    pub fn apply(&self, img: RgbImage, rng: &mut impl Rng) -> (RgbImage, ColourJitter) {
        let jitter = ColourJitter::sample(self.colour_jitter, rng);
        let mut img = img;
        if self.perspective > 0.0 && rng.gen_bool(self.perspective_p) {
            img = random_perspective(&img, self.perspective, rng);
        }
        if self.rotation_degrees > 0.0 && rng.gen_bool(self.rotation_p) {
            let deg = rng.gen_range(-self.rotation_degrees..=self.rotation_degrees);
            img = rotate(&img, deg.to_radians());
        }
        if rng.gen_bool(self.flip_p) {
            imageops::flip_horizontal_in_place(&mut img);
        }
        if rng.gen_bool(self.flip_p) {
            imageops::flip_vertical_in_place(&mut img);
        }
        (img, jitter)
    }
}

/// Moves each corner inward by up to `scale`·(half the side) and warps the image so the
/// original corners land there.
fn random_perspective(img: &RgbImage, scale: f32, rng: &mut impl Rng) -> RgbImage {
    let (w, h) = (img.width() as f64, img.height() as f64);
    let dx = (scale as f64 * w / 2.0).floor();
    let dy = (scale as f64 * h / 2.0).floor();
    let mut draw = |max: f64| {
        if max < 1.0 {
            0.0
        } else {
            rng.gen_range(0.0..=max).floor()
        }
    };
    let src = [
        (0.0, 0.0),
        (w - 1.0, 0.0),
        (w - 1.0, h - 1.0),
        (0.0, h - 1.0),
    ];
    let dst = [
        (draw(dx), draw(dy)),
        (w - 1.0 - draw(dx), draw(dy)),
        (w - 1.0 - draw(dx), h - 1.0 - draw(dy)),
        (draw(dx), h - 1.0 - draw(dy)),
    ];
    // Output pixels are looked up in the source: the homography from dst to src.
    match homography(&dst, &src) {
        Some(m) => warp(img, |x, y| {
            let d = m[6] * x + m[7] * y + 1.0;
            (
                (m[0] * x + m[1] * y + m[2]) / d,
                (m[3] * x + m[4] * y + m[5]) / d,
            )
        }),
        None => img.clone(),
    }
}

/// Rotation by `radians` about the image centre, counter-clockwise as torchvision's.
fn rotate(img: &RgbImage, radians: f32) -> RgbImage {
    let (cx, cy) = (
        (img.width() as f64 - 1.0) / 2.0,
        (img.height() as f64 - 1.0) / 2.0,
    );
    let (s, c) = (radians as f64).sin_cos();
    // Inverse of a counter-clockwise turn (y pointing down): rotate the output point back.
    warp(img, |x, y| {
        let (u, v) = (x - cx, y - cy);
        (cx + c * u - s * v, cy + s * u + c * v)
    })
}

/// Each output pixel takes the bilinear sample of the source at `inverse(x, y)`; outside the
/// source it is black.
fn warp(img: &RgbImage, inverse: impl Fn(f64, f64) -> (f64, f64)) -> RgbImage {
    let (w, h) = img.dimensions();
    RgbImage::from_fn(w, h, |x, y| {
        let (sx, sy) = inverse(x as f64, y as f64);
        bilinear(img, sx, sy)
    })
}

fn bilinear(img: &RgbImage, x: f64, y: f64) -> Rgb<u8> {
    let (w, h) = (img.width() as i64, img.height() as i64);
    if x < -0.5 || y < -0.5 || x > w as f64 - 0.5 || y > h as f64 - 0.5 {
        return Rgb([0, 0, 0]);
    }
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let px = |xi: i64, yi: i64| {
        let p = img.get_pixel(xi.clamp(0, w - 1) as u32, yi.clamp(0, h - 1) as u32);
        [p[0] as f64, p[1] as f64, p[2] as f64]
    };
    let (x0, y0) = (x0 as i64, y0 as i64);
    let (a, b, c, d) = (
        px(x0, y0),
        px(x0 + 1, y0),
        px(x0, y0 + 1),
        px(x0 + 1, y0 + 1),
    );
    let mut out = [0u8; 3];
    for k in 0..3 {
        let top = a[k] + (b[k] - a[k]) * fx;
        let bottom = c[k] + (d[k] - c[k]) * fx;
        out[k] = (top + (bottom - top) * fy).round().clamp(0.0, 255.0) as u8;
    }
    Rgb(out)
}

/// The projective map taking `from[i]` to `to[i]` (four point pairs), as the 8 free entries of
/// its 3×3 matrix with m33 = 1; `None` when the points are degenerate.
fn homography(from: &[(f64, f64); 4], to: &[(f64, f64); 4]) -> Option<[f64; 8]> {
    let mut a = [[0.0f64; 9]; 8];
    for (i, (&(x, y), &(u, v))) in from.iter().zip(to).enumerate() {
        a[2 * i] = [x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y, u];
        a[2 * i + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y, v];
    }
    // Gauss–Jordan with partial pivoting on the augmented 8×9 system.
    for col in 0..8 {
        let pivot = (col..8).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        let p = a[col][col];
        for v in a[col].iter_mut() {
            *v /= p;
        }
        for row in 0..8 {
            if row != col {
                let f = a[row][col];
                if f != 0.0 {
                    let pivot_row = a[col];
                    for (v, pv) in a[row].iter_mut().zip(pivot_row) {
                        *v -= f * pv;
                    }
                }
            }
        }
    }
    let mut m = [0.0; 8];
    for (i, v) in m.iter_mut().enumerate() {
        *v = a[i][8];
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn homography_maps_the_four_points() {
        let from = [(0.0, 0.0), (9.0, 0.0), (9.0, 9.0), (0.0, 9.0)];
        let to = [(1.0, 2.0), (8.0, 1.0), (9.0, 9.0), (0.0, 7.0)];
        let m = homography(&from, &to).unwrap();
        for (&(x, y), &(u, v)) in from.iter().zip(&to) {
            let d = m[6] * x + m[7] * y + 1.0;
            assert!(((m[0] * x + m[1] * y + m[2]) / d - u).abs() < 1e-9);
            assert!(((m[3] * x + m[4] * y + m[5]) / d - v).abs() < 1e-9);
        }
    }

    #[test]
    fn rotation_by_zero_and_identity_warps_keep_the_image() {
        let img = RgbImage::from_fn(7, 5, |x, y| Rgb([(x * 30) as u8, (y * 40) as u8, 9]));
        assert_eq!(rotate(&img, 0.0), img);
        // A quarter turn of a square moves the top-left corner to the bottom-left.
        let sq = RgbImage::from_fn(5, 5, |x, y| Rgb([u8::from(x == 0 && y == 0) * 255, 0, 0]));
        let turned = rotate(&sq, std::f32::consts::FRAC_PI_2);
        assert_eq!(turned.get_pixel(0, 4)[0], 255, "counter-clockwise");
    }

    #[test]
    fn perspective_keeps_size_blackens_corners_and_is_seeded() {
        let img = RgbImage::from_pixel(40, 30, Rgb([200, 100, 50]));
        let aug = MultiLabelAugmentation {
            perspective_p: 1.0,
            perspective: 0.5,
            ..MultiLabelAugmentation::none()
        };
        let mut r1 = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let mut r2 = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let (a, _) = aug.apply(img.clone(), &mut r1);
        let (b, _) = aug.apply(img, &mut r2);
        assert_eq!(a, b);
        assert_eq!(a.dimensions(), (40, 30));
        assert_eq!(*a.get_pixel(20, 15), Rgb([200, 100, 50]));
        let black = a.pixels().filter(|p| p[0] == 0).count();
        assert!(black > 0, "inward corners leave black margins");
    }

    #[test]
    fn bad_probabilities_are_rejected() {
        let aug = MultiLabelAugmentation {
            flip_p: 1.5,
            ..Default::default()
        };
        assert!(aug.validate().unwrap_err().to_string().contains("flip_p"));
    }
}
