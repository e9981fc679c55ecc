//! Heat-maps as pictures a pathologist reads: upsampled onto the square of the photo the model
//! saw, colour-mapped over it, and the visualisation test's AI-focused / AI-unfocused images
//! (pixels above / below the map's median, the rest blacked out).
use anyhow::{bail, Result};
use image::{GrayImage, ImageBuffer, Luma, Rgb, RgbImage};
use tch::{Kind, Tensor};

/// A heat-map at photo resolution: `side`² values in [0, 1], row-major.
#[derive(Debug, Clone)]
pub struct SquareHeat {
    pub side: u32,
    pub values: Vec<f32>,
}

impl SquareHeat {
    /// Bilinear upsampling of one map [h, w] onto a `side`² square, scaled to a maximum of 1.
    pub fn from_map(map: &Tensor, side: u32) -> Result<Self> {
        if map.dim() != 2 {
            bail!("heat-map must be 2-D, got shape {:?}", map.size());
        }
        let s = side as i64;
        let up = map
            .to_kind(Kind::Float)
            .to_device(tch::Device::Cpu)
            .view([1, 1, map.size()[0], map.size()[1]])
            .upsample_bilinear2d([s, s], false, None, None)
            .clamp_min(0.0);
        let max = up.max().double_value(&[]);
        let up = if max > 0.0 { up / max } else { up };
        let values = Vec::<f32>::try_from(up.view([-1]))?;
        Ok(Self { side, values })
    }

    /// The median value: the visualisation test's threshold.
    pub fn median(&self) -> f32 {
        let mut v = self.values.clone();
        v.sort_by(f32::total_cmp);
        let n = v.len();
        if n == 0 {
            0.0
        } else if n % 2 == 1 {
            v[n / 2]
        } else {
            0.5 * (v[n / 2 - 1] + v[n / 2])
        }
    }

    /// 16-bit grey image of the map (0–65535), for measuring rather than looking.
    pub fn to_png16(&self) -> ImageBuffer<Luma<u16>, Vec<u16>> {
        let data = self
            .values
            .iter()
            .map(|v| (v.clamp(0.0, 1.0) * 65535.0).round() as u16)
            .collect();
        ImageBuffer::from_raw(self.side, self.side, data)
            .unwrap_or_else(|| ImageBuffer::new(self.side, self.side))
    }
}

/// The "jet" colour scale (blue → cyan → yellow → red) that Grad-CAM figures use.
pub fn jet(v: f32) -> [u8; 3] {
    let v = v.clamp(0.0, 1.0);
    let channel =
        |centre: f32| ((1.5 - (4.0 * v - centre).abs()).clamp(0.0, 1.0) * 255.0).round() as u8;
    [channel(3.0), channel(2.0), channel(1.0)]
}

/// The heat colour-mapped over the square at `alpha` opacity.
pub fn overlay(square: &RgbImage, heat: &SquareHeat, alpha: f32) -> Result<RgbImage> {
    check_sizes(square, heat)?;
    let mut out = square.clone();
    for (i, px) in out.pixels_mut().enumerate() {
        let c = jet(heat.values[i]);
        for ch in 0..3 {
            px[ch] = ((1.0 - alpha) * px[ch] as f32 + alpha * c[ch] as f32).round() as u8;
        }
    }
    Ok(out)
}

/// (AI-focused, AI-unfocused): the square with the pixels at or below / above the median
/// blacked out. Together they tile the image; ties at the median go to the unfocused one.
pub fn focus_split(square: &RgbImage, heat: &SquareHeat) -> Result<(RgbImage, RgbImage)> {
    check_sizes(square, heat)?;
    let median = heat.median();
    let mut focused = square.clone();
    let mut unfocused = square.clone();
    let black = Rgb([0, 0, 0]);
    for (i, (f, u)) in focused.pixels_mut().zip(unfocused.pixels_mut()).enumerate() {
        if heat.values[i] > median {
            *u = black;
        } else {
            *f = black;
        }
    }
    Ok((focused, unfocused))
}

/// Tiles images (all the same size) into rows of `columns`, for one slide's contact sheet.
pub fn contact_sheet(tiles: &[RgbImage], columns: u32) -> Option<RgbImage> {
    let first = tiles.first()?;
    let (w, h) = first.dimensions();
    let cols = columns.max(1).min(tiles.len() as u32);
    let rows = (tiles.len() as u32).div_ceil(cols);
    let gap = 4;
    let mut sheet = RgbImage::from_pixel(
        cols * (w + gap) - gap,
        rows * (h + gap) - gap,
        Rgb([255, 255, 255]),
    );
    for (i, t) in tiles.iter().enumerate() {
        let (x, y) = ((i as u32 % cols) * (w + gap), (i as u32 / cols) * (h + gap));
        image::imageops::overlay(&mut sheet, t, x as i64, y as i64);
    }
    Some(sheet)
}

/// A mask cropped the way its photo was: 255 marks lesion.
pub fn crop_mask(mask: &GrayImage, x: u32, y: u32, side: u32) -> GrayImage {
    image::imageops::crop_imm(mask, x, y, side, side).to_image()
}

fn check_sizes(square: &RgbImage, heat: &SquareHeat) -> Result<()> {
    if square.dimensions() != (heat.side, heat.side) {
        bail!(
            "heat-map is {}², the image {:?}; upsample the map to the image first",
            heat.side,
            square.dimensions()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(side: u32) -> SquareHeat {
        let n = (side * side) as usize;
        SquareHeat {
            side,
            values: (0..n).map(|i| i as f32 / (n - 1) as f32).collect(),
        }
    }

    #[test]
    fn focused_and_unfocused_split_at_the_median() {
        let heat = ramp(4);
        let img = RgbImage::from_pixel(4, 4, Rgb([200, 100, 50]));
        let (f, u) = focus_split(&img, &heat).unwrap();
        let kept = |m: &RgbImage| m.pixels().filter(|p| p[0] != 0).count();
        assert_eq!((kept(&f), kept(&u)), (8, 8));
        // The hottest pixel is in the focused image, the coldest in the unfocused one.
        assert_eq!(f.get_pixel(3, 3)[0], 200);
        assert_eq!(u.get_pixel(0, 0)[0], 200);
        assert_eq!(f.get_pixel(0, 0)[0], 0);
        assert!(focus_split(&RgbImage::new(5, 5), &heat).is_err());
    }

    #[test]
    fn upsampled_maps_keep_their_hot_spot() {
        let map = Tensor::zeros([4, 4], (Kind::Float, tch::Device::Cpu));
        let _ = map.get(1).get(2).fill_(3.0);
        let sq = SquareHeat::from_map(&map, 64).unwrap();
        let (i, max) = sq
            .values
            .iter()
            .enumerate()
            .fold((0, 0.0f32), |a, (i, &v)| if v > a.1 { (i, v) } else { a });
        assert!((max - 1.0).abs() < 1e-6);
        let (x, y) = (i as u32 % 64, i as u32 / 64);
        // Cell (row 1, column 2) of a 4×4 map covers x 32..48, y 16..32.
        assert!((32..48).contains(&x) && (16..32).contains(&y), "{x},{y}");
        assert_eq!(sq.to_png16().get_pixel(x, y)[0], 65535);
    }

    #[test]
    fn jet_runs_blue_to_red() {
        assert_eq!(jet(0.0), [0, 0, 128]);
        assert_eq!(jet(1.0), [128, 0, 0]);
        assert_eq!(jet(0.5), [128, 255, 128]);
    }
}
