//! Kabeya et al.'s cropping: training and validation take two squares at the two ends of the
//! long side (left and right of a landscape photo), testing takes the centre square. The
//! square side is the short edge; the square is then resized to the model's input size.
use image::RgbImage;

/// Which square of a photo to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Crop {
    /// Left (or top, for a portrait photo) end.
    Left,
    /// Right (or bottom) end.
    Right,
    Centre,
}

impl Crop {
    /// The crops a photo contributes to training/validation.
    pub const TRAINING: [Crop; 2] = [Crop::Left, Crop::Right];

    pub fn name(self) -> &'static str {
        match self {
            Crop::Left => "left",
            Crop::Right => "right",
            Crop::Centre => "centre",
        }
    }
}

/// (x, y, side) of the square crop within a w×h photo.
pub fn crop_box(w: u32, h: u32, crop: Crop) -> (u32, u32, u32) {
    let side = w.min(h);
    let slack = w.max(h) - side;
    let offset = match crop {
        Crop::Left => 0,
        Crop::Right => slack,
        Crop::Centre => slack / 2,
    };
    if w >= h {
        (offset, 0, side)
    } else {
        (0, offset, side)
    }
}

/// Crops the square and resizes it to `size`×`size`: triangle (bilinear) with antialiasing
/// when shrinking, like PIL's default resize. The same bytes as `image`'s
/// `resize(crop, Triangle)`, without copying the crop first (see [`super::resize`]).
pub fn crop_and_resize(img: &RgbImage, crop: Crop, size: u32) -> RgbImage {
    let (x, y, side) = crop_box(img.width(), img.height(), crop);
    super::resize::crop_resize_triangle(img, (x, y, side, side), size, size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::imageops::{self, FilterType};

    #[test]
    fn boxes_follow_the_paper() {
        // 1360×1024 camera photo: squares of 1024 at x = 0, 336 and 168.
        assert_eq!(crop_box(1360, 1024, Crop::Left), (0, 0, 1024));
        assert_eq!(crop_box(1360, 1024, Crop::Right), (336, 0, 1024));
        assert_eq!(crop_box(1360, 1024, Crop::Centre), (168, 0, 1024));
        // Portrait photos crop along the height.
        assert_eq!(crop_box(1200, 1600, Crop::Right), (0, 400, 1200));
    }

    #[test]
    fn left_and_right_see_different_ends() {
        let mut img = RgbImage::new(40, 20);
        img.put_pixel(0, 0, image::Rgb([255, 0, 0]));
        img.put_pixel(39, 0, image::Rgb([0, 255, 0]));
        let l = crop_and_resize(&img, Crop::Left, 20);
        let r = crop_and_resize(&img, Crop::Right, 20);
        assert_eq!(l.get_pixel(0, 0)[0], 255);
        assert_eq!(r.get_pixel(19, 0)[1], 255);
        assert_eq!(crop_and_resize(&img, Crop::Centre, 8).dimensions(), (8, 8));
    }

    #[test]
    fn matches_cropping_then_resizing_with_the_image_crate() {
        let img = RgbImage::from_fn(90, 50, |x, y| {
            image::Rgb([(x * 3) as u8, (y * 5) as u8, (x ^ y) as u8])
        });
        for crop in [Crop::Left, Crop::Right, Crop::Centre] {
            let (x, y, side) = crop_box(90, 50, crop);
            let square = imageops::crop_imm(&img, x, y, side, side).to_image();
            for size in [32, 50, 64] {
                let want = if side == size {
                    square.clone()
                } else {
                    imageops::resize(&square, size, size, FilterType::Triangle)
                };
                assert!(crop_and_resize(&img, crop, size) == want, "{crop:?} {size}");
            }
        }
    }
}
