//! On-the-fly augmentation and conversion to the network's input layout. Microscope fields
//! have no preferred orientation, so flips and 90° rotations are label-preserving; a small
//! colour jitter stands in for slide-to-slide staining variation.
use image::{imageops, RgbImage};
use rand::Rng;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augmentation {
    pub flips: bool,
    pub rotate90: bool,
    /// Maximum relative change of brightness, contrast and saturation (0.1 = ±10 %).
    pub colour_jitter: f32,
}

impl Default for Augmentation {
    fn default() -> Self {
        Self {
            flips: true,
            rotate90: true,
            colour_jitter: 0.1,
        }
    }
}

/// Per-channel mean and standard deviation the model's weights expect (RGB order, 0–1 scale).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for Normalization {
    /// ImageNet statistics: what torchvision and timm weights are trained with.
    fn default() -> Self {
        Self {
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }
}

/// Applies the geometric part of the augmentation in place.
pub fn geometric(img: RgbImage, aug: &Augmentation, rng: &mut impl Rng) -> RgbImage {
    let mut img = img;
    if aug.flips && rng.gen_bool(0.5) {
        imageops::flip_horizontal_in_place(&mut img);
    }
    if aug.flips && rng.gen_bool(0.5) {
        imageops::flip_vertical_in_place(&mut img);
    }
    if aug.rotate90 && img.width() == img.height() {
        img = match rng.gen_range(0..4) {
            1 => imageops::rotate90(&img),
            2 => imageops::rotate180(&img),
            3 => imageops::rotate270(&img),
            _ => img,
        };
    }
    img
}

/// Colour factors drawn once per image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColourJitter {
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
}

impl ColourJitter {
    pub const NONE: ColourJitter = ColourJitter {
        brightness: 1.0,
        contrast: 1.0,
        saturation: 1.0,
    };

    pub fn sample(strength: f32, rng: &mut impl Rng) -> Self {
        if strength <= 0.0 {
            return Self::NONE;
        }
        let mut f = || 1.0 + rng.gen_range(-strength..=strength);
        Self {
            brightness: f(),
            contrast: f(),
            saturation: f(),
        }
    }
}

/// RGB u8 HWC → normalised f32 CHW, applying the colour jitter on the way.
pub fn to_chw(img: &RgbImage, jitter: ColourJitter, norm: &Normalization) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let mut out = vec![0f32; 3 * (w * h) as usize];
    to_chw_into(img, jitter, norm, &mut out);
    out
}

/// [`to_chw`] into a caller's buffer of 3·w·h values (a photo's slot in a batch), so a batch
/// is assembled without copying each photo again.
pub fn to_chw_into(img: &RgbImage, jitter: ColourJitter, norm: &Normalization, out: &mut [f32]) {
    let (w, h) = img.dimensions();
    let n = (w * h) as usize;
    assert_eq!(out.len(), 3 * n, "CHW buffer of the wrong size");
    let raw = img.as_raw();
    let mut mean_luma = 0.0f64;
    if jitter.contrast != 1.0 {
        for px in raw.chunks_exact(3) {
            mean_luma += luma(px[0] as f32, px[1] as f32, px[2] as f32) as f64;
        }
        mean_luma /= n as f64 * 255.0;
    }
    let mean_luma = mean_luma as f32;
    for (i, px) in raw.chunks_exact(3).enumerate() {
        let mut rgb = [
            px[0] as f32 / 255.0,
            px[1] as f32 / 255.0,
            px[2] as f32 / 255.0,
        ];
        if jitter != ColourJitter::NONE {
            let grey = luma(rgb[0], rgb[1], rgb[2]);
            for v in rgb.iter_mut() {
                let mut x = *v * jitter.brightness;
                x = grey * jitter.brightness + (x - grey * jitter.brightness) * jitter.saturation;
                x = mean_luma + (x - mean_luma) * jitter.contrast;
                *v = x.clamp(0.0, 1.0);
            }
        }
        for c in 0..3 {
            out[c * n + i] = (rgb[c] - norm.mean[c]) / norm.std[c];
        }
    }
}

fn luma(r: f32, g: f32, b: f32) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn no_jitter_is_plain_normalisation() {
        let img = RgbImage::from_pixel(2, 2, image::Rgb([255, 0, 128]));
        let norm = Normalization {
            mean: [0.5; 3],
            std: [0.5; 3],
        };
        let v = to_chw(&img, ColourJitter::NONE, &norm);
        assert_eq!(v.len(), 12);
        assert!((v[0] - 1.0).abs() < 1e-6);
        assert!((v[4] + 1.0).abs() < 1e-6);
        assert!((v[8] - (128.0 / 255.0 - 0.5) / 0.5).abs() < 1e-6);
    }

    #[test]
    fn geometry_keeps_pixels_and_is_seeded() {
        let mut img = RgbImage::new(4, 4);
        img.put_pixel(0, 0, image::Rgb([9, 9, 9]));
        let aug = Augmentation::default();
        let a = geometric(
            img.clone(),
            &aug,
            &mut rand_chacha::ChaCha8Rng::seed_from_u64(3),
        );
        let b = geometric(
            img.clone(),
            &aug,
            &mut rand_chacha::ChaCha8Rng::seed_from_u64(3),
        );
        assert_eq!(a, b);
        let marked = a.pixels().filter(|p| p[0] == 9).count();
        assert_eq!(marked, 1);
        // The marked pixel stays in a corner under flips and quarter turns.
        let corner = [(0, 0), (3, 0), (0, 3), (3, 3)]
            .iter()
            .any(|&(x, y)| a.get_pixel(x, y)[0] == 9);
        assert!(corner);
    }

    #[test]
    fn jitter_stays_in_range() {
        let img = RgbImage::from_fn(8, 8, |x, y| {
            image::Rgb([(x * 30) as u8, (y * 30) as u8, 200])
        });
        let j = ColourJitter {
            brightness: 1.1,
            contrast: 0.9,
            saturation: 1.1,
        };
        let norm = Normalization {
            mean: [0.0; 3],
            std: [1.0; 3],
        };
        assert!(to_chw(&img, j, &norm)
            .iter()
            .all(|v| (0.0..=1.0).contains(v)));
    }
}
