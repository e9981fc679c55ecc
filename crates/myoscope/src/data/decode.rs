//! Image decoding. Microscope cameras write JPEG, PNG (8 or 16 bit) and TIFF; everything is
//! brought to 8-bit RGB here so the rest of the pipeline has one pixel type.
use anyhow::{Context, Result};
use image::{DynamicImage, RgbImage};
use std::path::Path;

/// Decodes an image file by its content (not its extension) to 8-bit RGB. 16-bit samples are
/// scaled to 8 bit, grey is replicated to three channels, alpha is dropped.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let img = decode(path)?;
    Ok(to_rgb8(img))
}

pub fn decode(path: &Path) -> Result<DynamicImage> {
    let reader = image::ImageReader::open(path)
        .with_context(|| format!("cannot open image {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read image {}", path.display()))?;
    if reader.format().is_none() {
        anyhow::bail!(
            "{} is not a JPEG, PNG or TIFF image (unrecognised file signature)",
            path.display()
        );
    }
    reader.decode().with_context(|| {
        format!(
            "image {} is corrupt or truncated; re-export it from the camera software or remove it from the manifest",
            path.display()
        )
    })
}

fn to_rgb8(img: DynamicImage) -> RgbImage {
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    }
}

/// Width and height from the header alone: a cheap up-front check of every file.
pub fn dimensions(path: &Path) -> Result<(u32, u32)> {
    image::ImageReader::open(path)
        .with_context(|| format!("cannot open image {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read image {}", path.display()))?
        .into_dimensions()
        .with_context(|| format!("image {} is corrupt or not an image", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, Rgb};

    fn dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("myoscope-decode-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn decodes_16_bit_grey_png_to_scaled_rgb() {
        let p = dir().join("g16.png");
        let img: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_pixel(4, 3, Luma([65535u16]));
        img.save(&p).unwrap();
        let rgb = load_rgb(&p).unwrap();
        assert_eq!(rgb.dimensions(), (4, 3));
        assert_eq!(rgb.get_pixel(0, 0), &Rgb([255, 255, 255]));
    }

    #[test]
    fn decodes_jpeg_and_tiff() {
        let img = RgbImage::from_pixel(16, 8, Rgb([180, 90, 140]));
        for ext in ["jpg", "tif"] {
            let p = dir().join(format!("x.{ext}"));
            img.save(&p).unwrap();
            let back = load_rgb(&p).unwrap();
            assert_eq!(back.dimensions(), (16, 8));
            let px = back.get_pixel(3, 3);
            assert!((px[0] as i32 - 180).abs() < 6, "{ext}: {px:?}");
        }
    }

    #[test]
    fn truncated_and_garbage_files_are_errors_naming_the_file() {
        let good = dir().join("good.png");
        RgbImage::from_pixel(64, 64, Rgb([1, 2, 3]))
            .save(&good)
            .unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let cut = dir().join("cut.png");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let err = format!("{:#}", load_rgb(&cut).unwrap_err());
        assert!(err.contains("cut.png") && err.contains("corrupt"), "{err}");

        let junk = dir().join("junk.jpg");
        std::fs::write(&junk, b"this is not an image").unwrap();
        let err = format!("{:#}", load_rgb(&junk).unwrap_err());
        assert!(err.contains("junk.jpg"), "{err}");
    }
}
