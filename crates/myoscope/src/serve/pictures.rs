//! Pictures in JSON answers: PNG as `data:` URIs, shrunk to the answer's picture size so six
//! photos of a slide stay a few megabytes (the heat-map itself is computed at full size).
use anyhow::{Context, Result};
use base64::Engine as _;
use image::{ImageEncoder, RgbImage};

/// A PNG `data:` URI of an RGB image, shrunk (never enlarged) so its longer side is `side`.
pub fn rgb_data_uri(img: &RgbImage, side: u32) -> Result<String> {
    let (w, h) = img.dimensions();
    let longer = w.max(h);
    let shrunk;
    let img = if side > 0 && longer > side {
        let scale = side as f64 / longer as f64;
        let (nw, nh) = (
            ((w as f64 * scale).round() as u32).max(1),
            ((h as f64 * scale).round() as u32).max(1),
        );
        shrunk = image::imageops::resize(img, nw, nh, image::imageops::FilterType::Triangle);
        &shrunk
    } else {
        img
    };
    png_data_uri(
        img.as_raw(),
        img.width(),
        img.height(),
        image::ExtendedColorType::Rgb8,
    )
}

/// A PNG `data:` URI of raw pixels.
pub fn png_data_uri(
    raw: &[u8],
    width: u32,
    height: u32,
    colour: image::ExtendedColorType,
) -> Result<String> {
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(raw, width, height, colour)
        .context("encoding a PNG")?;
    Ok(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&png)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_uris_hold_shrunk_pngs() {
        let img = RgbImage::from_pixel(300, 150, image::Rgb([10, 200, 30]));
        let uri = rgb_data_uri(&img, 100).unwrap();
        let b64 = uri.strip_prefix("data:image/png;base64,").unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let back = image::load_from_memory(&bytes).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), (100, 50));
        assert_eq!(back.get_pixel(50, 25), &image::Rgb([10, 200, 30]));
        // Small pictures are left as they are.
        let small = rgb_data_uri(&RgbImage::new(20, 10), 100).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(small.split(',').nth(1).unwrap())
            .unwrap();
        assert_eq!(image::load_from_memory(&bytes).unwrap().width(), 20);
    }
}
