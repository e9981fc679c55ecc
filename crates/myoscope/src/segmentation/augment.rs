//! Training crops and augmentation that move the image and its mask together: a random crop,
//! horizontal and vertical flips and a small rotation (the paper's ±3°).
//!
//! The public DEDL code augmented image and mask independently, so a flipped image was trained
//! against an unflipped mask; here one drawn transform is applied to both, the image with
//! bilinear interpolation and the mask with nearest neighbour (class ids must not blend).
use rand::Rng;
use serde::{Deserialize, Serialize};

/// One image (channels × height × width, row-major) and its class-id mask (height × width).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageMask {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub image: Vec<f32>,
    pub mask: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegAugmentation {
    pub horizontal_flip: bool,
    pub vertical_flip: bool,
    /// Largest rotation in degrees, drawn uniformly in ±this; 0 turns rotation off.
    pub max_rotation_degrees: f32,
}

impl Default for SegAugmentation {
    fn default() -> Self {
        Self {
            horizontal_flip: true,
            vertical_flip: true,
            max_rotation_degrees: 3.0,
        }
    }
}

impl SegAugmentation {
    pub fn none() -> Self {
        Self {
            horizontal_flip: false,
            vertical_flip: false,
            max_rotation_degrees: 0.0,
        }
    }
}

/// Where [`crop`] looks outside the image: mirrored, so a small image still fills a tile with
/// nucleus-like texture instead of a black frame the network would learn as a cue.
fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let mut j = i.rem_euclid(period);
    if j >= n as isize {
        j = period - j;
    }
    j as usize
}

/// A `side`² window whose top-left corner is (`y0`, `x0`); beyond the image edges it reflects.
pub fn crop(src: &ImageMask, y0: isize, x0: isize, side: usize) -> ImageMask {
    let (c, h, w) = (src.channels, src.height, src.width);
    let mut image = vec![0.0f32; c * side * side];
    let mut mask = vec![0u8; side * side];
    for y in 0..side {
        let sy = reflect(y0 + y as isize, h);
        for x in 0..side {
            let sx = reflect(x0 + x as isize, w);
            mask[y * side + x] = src.mask[sy * w + sx];
            for ch in 0..c {
                image[(ch * side + y) * side + x] = src.image[(ch * h + sy) * w + sx];
            }
        }
    }
    ImageMask {
        channels: c,
        height: side,
        width: side,
        image,
        mask,
    }
}

/// A uniformly placed `side`² crop (reflect-padded where the image is smaller than `side`).
pub fn random_crop(src: &ImageMask, side: usize, rng: &mut impl Rng) -> ImageMask {
    let mut pick = |n: usize| -> isize {
        if n > side {
            rng.gen_range(0..=(n - side)) as isize
        } else {
            // Centre the image in the tile; the reflected margins surround it.
            -(((side - n) / 2) as isize)
        }
    };
    let y0 = pick(src.height);
    let x0 = pick(src.width);
    crop(src, y0, x0, side)
}

/// Applies one randomly drawn flip/rotation to image and mask alike.
pub fn augment(sample: &ImageMask, aug: &SegAugmentation, rng: &mut impl Rng) -> ImageMask {
    let flip_x = aug.horizontal_flip && rng.gen_bool(0.5);
    let flip_y = aug.vertical_flip && rng.gen_bool(0.5);
    let degrees = if aug.max_rotation_degrees > 0.0 {
        rng.gen_range(-aug.max_rotation_degrees..=aug.max_rotation_degrees)
    } else {
        0.0
    };
    transform(sample, flip_x, flip_y, degrees)
}

/// Flips, then rotates by `degrees` about the centre. Each output pixel looks up its source
/// point: the image interpolates bilinearly, the mask takes the nearest pixel; points that
/// fall outside reflect back in.
pub fn transform(sample: &ImageMask, flip_x: bool, flip_y: bool, degrees: f32) -> ImageMask {
    let (c, h, w) = (sample.channels, sample.height, sample.width);
    let (sin, cos) = degrees.to_radians().sin_cos();
    let (cy, cx) = ((h as f32 - 1.0) / 2.0, (w as f32 - 1.0) / 2.0);
    let mut image = vec![0.0f32; c * h * w];
    let mut mask = vec![0u8; h * w];
    let at = |y: isize, x: isize| reflect(y, h) * w + reflect(x, w);
    for y in 0..h {
        for x in 0..w {
            // Inverse map: rotate the output point back, then undo the flip.
            let (dy, dx) = (y as f32 - cy, x as f32 - cx);
            let mut sy = cy + cos * dy - sin * dx;
            let mut sx = cx + sin * dy + cos * dx;
            if flip_y {
                sy = h as f32 - 1.0 - sy;
            }
            if flip_x {
                sx = w as f32 - 1.0 - sx;
            }
            let out = y * w + x;
            mask[out] = sample.mask[at(sy.round() as isize, sx.round() as isize)];
            let (y0, x0) = (sy.floor(), sx.floor());
            let (fy, fx) = (sy - y0, sx - x0);
            let (y0, x0) = (y0 as isize, x0 as isize);
            let corners = [
                (at(y0, x0), (1.0 - fy) * (1.0 - fx)),
                (at(y0, x0 + 1), (1.0 - fy) * fx),
                (at(y0 + 1, x0), fy * (1.0 - fx)),
                (at(y0 + 1, x0 + 1), fy * fx),
            ];
            for ch in 0..c {
                let plane = &sample.image[ch * h * w..(ch + 1) * h * w];
                image[ch * h * w + out] = corners.iter().map(|&(i, wt)| plane[i] * wt).sum();
            }
        }
    }
    ImageMask {
        channels: c,
        height: h,
        width: w,
        image,
        mask,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// An image whose value is its mask id, so image and mask must stay in register.
    fn registered(h: usize, w: usize) -> ImageMask {
        let mask: Vec<u8> = (0..h * w)
            .map(|i| u8::from((i / w) * 3 < h && (i % w) * 2 < w))
            .collect();
        ImageMask {
            channels: 1,
            height: h,
            width: w,
            image: mask.iter().map(|&m| m as f32).collect(),
            mask,
        }
    }

    #[test]
    fn flips_move_image_and_mask_together() {
        let s = registered(6, 8);
        let t = transform(&s, true, true, 0.0);
        for i in 0..48 {
            assert_eq!(t.image[i], t.mask[i] as f32);
        }
        // A double flip is a 180° turn: pixel (0, 0) comes from (5, 7).
        assert_eq!(t.mask[0], s.mask[47]);
        assert_eq!(transform(&t, true, true, 0.0), s);
    }

    #[test]
    fn small_rotation_keeps_registration_away_from_edges() {
        let s = registered(64, 64);
        let t = transform(&s, false, false, 3.0);
        // Away from label boundaries, the interpolated image equals the nearest mask label.
        let mut agree = 0;
        for i in 0..64 * 64 {
            if (t.image[i] - t.mask[i] as f32).abs() < 0.01 {
                agree += 1;
            }
        }
        assert!(agree > 64 * 64 * 9 / 10, "{agree}");
        assert_ne!(t.mask, s.mask, "3° must move something");
        assert_eq!(transform(&s, false, false, 0.0), s);
    }

    #[test]
    fn crops_reflect_at_edges_and_pad_small_images() {
        let s = registered(10, 12);
        let c = crop(&s, -2, -3, 16);
        assert_eq!((c.height, c.width, c.image.len()), (16, 16, 256));
        // Row -2 mirrors row 2, column -3 mirrors column 3.
        assert_eq!(c.mask[0], s.mask[2 * 12 + 3]);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let r = random_crop(&s, 32, &mut rng);
        assert_eq!(r.mask.len(), 32 * 32);
        let big = registered(100, 90);
        for _ in 0..20 {
            let r = random_crop(&big, 48, &mut rng);
            assert!(r.image.iter().zip(&r.mask).all(|(a, &b)| *a == b as f32));
        }
    }

    #[test]
    fn augmentation_draws_are_reproducible() {
        let s = registered(20, 20);
        let aug = SegAugmentation::default();
        let a = augment(&s, &aug, &mut ChaCha8Rng::seed_from_u64(7));
        let b = augment(&s, &aug, &mut ChaCha8Rng::seed_from_u64(7));
        assert_eq!(a, b);
        assert_eq!(
            augment(
                &s,
                &SegAugmentation::none(),
                &mut ChaCha8Rng::seed_from_u64(7)
            ),
            s
        );
    }
}
