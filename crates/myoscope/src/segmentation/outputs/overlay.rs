//! An overlay PNG for a pathologist's eye: the grey (fluorescence) image, each nucleus filled
//! with a translucent colour and outlined opaque. Colours differ between neighbouring nuclei
//! (golden-ratio hues) so touching nuclei that were split show as two.
use super::LabelImage;
use anyhow::{ensure, Context, Result};
use image::{GrayImage, Rgb, RgbImage};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverlayStyle {
    /// 0 = no fill, 1 = opaque fill.
    pub fill_opacity: f32,
    /// A hue per nucleus; otherwise every nucleus gets `fill`.
    pub colour_by_nucleus: bool,
    pub fill: [u8; 3],
    pub contour: [u8; 3],
}

impl Default for OverlayStyle {
    fn default() -> Self {
        Self {
            fill_opacity: 0.35,
            colour_by_nucleus: true,
            fill: [0, 200, 255],
            contour: [255, 230, 0],
        }
    }
}

/// A saturated colour for label `l`, hues spread by the golden ratio.
fn colour_of(l: u32) -> [u8; 3] {
    let h = (l as f64 * 0.618_033_988_749_895).fract() * 6.0;
    let (s, v) = (0.8, 1.0);
    let f = h.fract();
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    let (r, g, b) = match h as u32 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    };
    [(r * 255.0) as u8, (g * 255.0) as u8, (b * 255.0) as u8]
}

/// Draws `labels` (instance labels or class ids; 0 = background) over `grey`, which must have the
/// same size. A pixel is outline when one of its four neighbours (or the image border) carries
/// another label.
pub fn render_overlay(
    grey: &GrayImage,
    labels: &LabelImage,
    style: &OverlayStyle,
) -> Result<RgbImage> {
    let (w, h) = grey.dimensions();
    ensure!(
        w as usize == labels.width() && h as usize == labels.height(),
        "the image is {w}×{h} but the mask {}×{}: overlay the mask on the image it was predicted from",
        labels.width(),
        labels.height()
    );
    ensure!(
        (0.0..=1.0).contains(&style.fill_opacity),
        "fill opacity must be between 0 and 1, got {}",
        style.fill_opacity
    );
    let a = style.fill_opacity;
    let mut out = RgbImage::new(w, h);
    for (x, y, px) in out.enumerate_pixels_mut() {
        let g = grey.get_pixel(x, y)[0];
        let (xi, yi) = (x as i64, y as i64);
        let l = labels.at(xi, yi);
        if l == 0 {
            *px = Rgb([g, g, g]);
            continue;
        }
        let edge = [(1, 0), (-1, 0), (0, 1), (0, -1)]
            .iter()
            .any(|(dx, dy)| labels.at(xi + dx, yi + dy) != l);
        *px = if edge {
            Rgb(style.contour)
        } else {
            let c = if style.colour_by_nucleus {
                colour_of(l)
            } else {
                style.fill
            };
            let blend = |c: u8| ((1.0 - a) * g as f32 + a * c as f32).round() as u8;
            Rgb([blend(c[0]), blend(c[1]), blend(c[2])])
        };
    }
    Ok(out)
}

pub fn write_overlay_png(
    path: &Path,
    grey: &GrayImage,
    labels: &LabelImage,
    style: &OverlayStyle,
) -> Result<()> {
    ensure!(
        grey.width() > 0 && grey.height() > 0,
        "the image is empty: there is nothing to overlay"
    );
    render_overlay(grey, labels, style)?
        .save_with_format(path, image::ImageFormat::Png)
        .with_context(|| format!("writing the overlay {}", path.display()))
}

/// An 8-bit display image from raw intensities (any range, e.g. 16-bit or float fluorescence):
/// the 0.5th to 99.5th percentile of the finite values is stretched to 0–255, so a dim DAPI
/// channel is visible; NaN and infinities show black.
pub fn grey_from_values(values: &[f32], width: usize, height: usize) -> Result<GrayImage> {
    ensure!(
        width.checked_mul(height) == Some(values.len()),
        "a {width}×{height} image needs {} values, got {}",
        width.saturating_mul(height),
        values.len()
    );
    let mut finite: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
    finite.sort_by(f32::total_cmp);
    let pick = |q: f64| -> f32 {
        if finite.is_empty() {
            0.0
        } else {
            finite[((finite.len() - 1) as f64 * q).round() as usize]
        }
    };
    let (lo, hi) = (pick(0.005), pick(0.995));
    let span = if hi > lo { hi - lo } else { 1.0 };
    let pixels = values
        .iter()
        .map(|&v| {
            if v.is_finite() {
                (((v - lo) / span).clamp(0.0, 1.0) * 255.0).round() as u8
            } else {
                0
            }
        })
        .collect();
    GrayImage::from_raw(width as u32, height as u32, pixels).context("display image size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overlay_has_the_image_size_with_fill_and_outline() {
        let grey = GrayImage::from_pixel(7, 5, image::Luma([100]));
        let mut v = vec![0u32; 35];
        for y in 1..4 {
            for x in 1..4 {
                v[y * 7 + x] = 1;
            }
        }
        let labels = LabelImage::new(7, 5, v).unwrap();
        let style = OverlayStyle::default();
        let out = render_overlay(&grey, &labels, &style).unwrap();
        assert_eq!(out.dimensions(), grey.dimensions());
        assert_eq!(out.get_pixel(0, 0), &Rgb([100, 100, 100]));
        assert_eq!(out.get_pixel(1, 1), &Rgb(style.contour));
        let centre = out.get_pixel(2, 2);
        assert_ne!(centre, &Rgb([100, 100, 100]));
        assert_ne!(centre, &Rgb(style.contour));
        let wrong = LabelImage::new(6, 5, vec![0; 30]).unwrap();
        let e = render_overlay(&grey, &wrong, &style).unwrap_err();
        assert!(e.to_string().contains("7×5"), "{e}");
        let dir = std::env::temp_dir().join(format!("myoscope-overlay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("overlay.png");
        write_overlay_png(&p, &grey, &labels, &style).unwrap();
        assert_eq!(image::open(&p).unwrap().into_rgb8().dimensions(), (7, 5));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn intensities_are_stretched_and_nan_is_black() {
        let mut v: Vec<f32> = (0..200).map(|i| 1000.0 + i as f32).collect();
        v[0] = f32::NAN;
        let g = grey_from_values(&v, 20, 10).unwrap();
        assert_eq!(g.get_pixel(0, 0)[0], 0);
        assert_eq!(g.get_pixel(19, 9)[0], 255);
        let mid = g.get_pixel(0, 5)[0];
        assert!((100..156).contains(&mid), "{mid}");
        assert!(grey_from_values(&v, 20, 11).is_err());
        let flat = grey_from_values(&[f32::NAN; 4], 2, 2).unwrap();
        assert_eq!(flat.into_raw(), vec![0; 4]);
    }
}
