//! Uploaded photos, checked in the order that keeps a hostile or mistaken upload cheap:
//! content sniffing (the first bytes, never the file name), then the size from the header
//! alone (a 20,000×20,000 PNG of zeros is refused before a pixel is inflated), then the
//! channel layout, then decoding under an allocation limit, then a bright-field H&E check.
use super::config::Limits;
use super::error::ApiError;
use image::{ColorType, DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};
use std::io::Cursor;

/// The formats a microscope camera writes, by their magic bytes.
pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.starts_with(PNG) {
        Some(ImageFormat::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.starts_with(b"II*\0")
        || bytes.starts_with(b"MM\0*")
        || bytes.starts_with(b"II+\0")
        || bytes.starts_with(b"MM\0+")
    {
        Some(ImageFormat::Tiff)
    } else {
        None
    }
}

/// What the header says, before anything is decoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Header {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    pub color: ColorType,
}

/// Sniffs the content and reads the header; refuses unknown formats (415) and photos over the
/// pixel limit (413) without decoding them.
pub fn check_header(name: &str, bytes: &[u8], limits: &Limits) -> Result<Header, ApiError> {
    let Some(format) = sniff(bytes) else {
        let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        return Err(ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_type",
            format!(
                "{name} is not a JPEG, PNG or TIFF image (its first bytes are {}); save the photo from the camera software as JPEG, PNG or TIFF",
                if head.is_empty() { "absent: the file is empty".to_string() } else { head.join(" ") }
            ),
        ));
    };
    let unreadable = |e: image::ImageError| {
        ApiError::unprocessable(
            "unreadable",
            format!("{name} cannot be read as {format:?}: {e}; the file is corrupt or truncated, take or export the photo again"),
        )
    };
    let decoder = ImageReader::with_format(Cursor::new(bytes), format)
        .into_decoder()
        .map_err(unreadable)?;
    let (width, height) = decoder.dimensions();
    let pixels = width as u64 * height as u64;
    if pixels > limits.max_pixels {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_pixels",
            format!(
                "{name} is {width}×{height} ({:.1} megapixels); this server takes photos up to {:.1} megapixels: resize it or photograph a field at the camera's normal resolution",
                pixels as f64 / 1e6,
                limits.max_pixels as f64 / 1e6
            ),
        ));
    }
    Ok(Header {
        format,
        width,
        height,
        color: decoder.color_type(),
    })
}

/// The check for `/v1/segment`: TIFFs are fluorescence stacks (float or 16-bit pages that the
/// photo decoder does not read), so only their signature is checked here and every page's
/// size is checked by the segmenter from the page directory before anything is decoded.
pub fn check_segment_header(name: &str, bytes: &[u8], limits: &Limits) -> Result<Header, ApiError> {
    if sniff(bytes) == Some(ImageFormat::Tiff) {
        return Ok(Header {
            format: ImageFormat::Tiff,
            width: 0,
            height: 0,
            color: ColorType::L8,
        });
    }
    check_header(name, bytes, limits)
}

/// Decodes under an allocation limit sized from the header (the decoder may not allocate more
/// than the image it announced, plus slack for its own buffers).
pub fn decode(name: &str, bytes: &[u8], header: &Header) -> Result<DynamicImage, ApiError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), header.format);
    let mut l = image::Limits::default();
    l.max_image_width = Some(header.width);
    l.max_image_height = Some(header.height);
    let bytes_needed =
        header.width as u64 * header.height as u64 * header.color.bytes_per_pixel() as u64;
    l.max_alloc = Some(bytes_needed * 2 + (16 << 20));
    reader.limits(l);
    reader.decode().map_err(|e| {
        ApiError::unprocessable(
            "unreadable",
            format!("{name} cannot be decoded: {e}; the file is corrupt or truncated, take or export the photo again"),
        )
    })
}

/// An H&E photo ready for the classifier.
#[derive(Debug, Clone)]
pub struct Photo {
    /// The client's file name, for display only (never used as a path).
    pub name: String,
    pub image: RgbImage,
}

/// Sniff, header, channels, decode, size, stain: everything the classifier needs to trust a
/// photo. `min_side` comes from the model's patch grid.
pub fn classifier_photo(
    name: &str,
    bytes: &[u8],
    limits: &Limits,
    min_side: u32,
    check_stain: bool,
) -> Result<Photo, ApiError> {
    let header = check_header(name, bytes, limits)?;
    let channels = header.color.channel_count();
    if !header.color.has_color() {
        return Err(ApiError::unprocessable(
            "wrong_channels",
            format!(
                "{name} has {channels} channel{} (greyscale{}); the classifier reads colour (RGB) photos of H&E-stained sections. A fluorescence channel belongs in /v1/segment",
                if channels == 1 { "" } else { "s" },
                if header.color.has_alpha() { " with alpha" } else { "" }
            ),
        ));
    }
    if header.width.min(header.height) < min_side {
        return Err(ApiError::unprocessable(
            "too_small",
            format!(
                "{name} is {}×{}: too small for this model (the short side needs at least {min_side} pixels); send the camera's full-resolution photo",
                header.width, header.height
            ),
        ));
    }
    let image = decode(name, bytes, &header)?.into_rgb8();
    if check_stain {
        if let Some(problem) = stain_problem(&image) {
            return Err(ApiError::unprocessable(
                "wrong_stain",
                format!("{name} {problem}; the classifier was trained on bright-field H&E photos (send check_stain=false to analyse it anyway)"),
            ));
        }
    }
    Ok(Photo {
        name: name.to_string(),
        image,
    })
}

/// Why a photo does not look like a bright-field H&E section, if it does not: H&E is pink and
/// purple on a bright background, so a photo without colour (a grey scan saved as RGB) or one
/// that is mostly dark (fluorescence, dark field, a covered lens) is not what the model saw.
pub fn stain_problem(img: &RgbImage) -> Option<String> {
    let n = img.pixels().len().max(1) as f64;
    let (mut chroma, mut dark) = (0.0f64, 0usize);
    for p in img.pixels() {
        let [r, g, b] = p.0.map(i32::from);
        chroma += (r.max(g).max(b) - r.min(g).min(b)) as f64;
        if (r + g + b) < 3 * 40 {
            dark += 1;
        }
    }
    let chroma = chroma / n;
    let dark = dark as f64 / n;
    if dark > 0.6 {
        Some(format!(
            "is mostly dark ({:.0}% of pixels): it looks like a fluorescence or dark-field image",
            100.0 * dark
        ))
    } else if chroma < 4.0 {
        Some(format!(
            "has no colour (mean chroma {chroma:.1} of 255): it looks like a greyscale image, not an H&E stain"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, Rgb};

    fn png(img: &DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn pink(w: u32, h: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
            Rgb([220, 120 + ((x + y) % 40) as u8, 180])
        }))
    }

    #[test]
    fn sniffing_reads_content_not_names() {
        assert_eq!(sniff(&png(&pink(4, 4))), Some(ImageFormat::Png));
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0rest"), Some(ImageFormat::Jpeg));
        assert_eq!(sniff(b"II*\0...."), Some(ImageFormat::Tiff));
        assert_eq!(sniff(b"GIF89a"), None);
        assert_eq!(sniff(b""), None);
        let e = check_header("x.png", b"<html>", &Limits::default()).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (415, "unsupported_type"));
        assert!(e.message.contains("3c 68 74 6d"), "{}", e.message);
    }

    #[test]
    fn the_header_decides_before_decoding() {
        let limits = Limits {
            max_pixels: 1000,
            ..Limits::default()
        };
        let e = check_header("big.png", &png(&pink(40, 30)), &limits).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (413, "too_many_pixels"));
        assert!(e.message.contains("40×30"), "{}", e.message);
        let h = check_header("ok.png", &png(&pink(20, 30)), &limits).unwrap();
        assert_eq!((h.width, h.height), (20, 30));
    }

    #[test]
    fn photos_the_classifier_cannot_use_are_named() {
        let l = Limits::default();
        let grey = DynamicImage::ImageLuma8(GrayImage::from_pixel(64, 64, Luma([200])));
        let e = classifier_photo("g.png", &png(&grey), &l, 16, true).unwrap_err();
        assert_eq!(e.code, "wrong_channels");
        let e = classifier_photo("s.png", &png(&pink(12, 40)), &l, 16, true).unwrap_err();
        assert_eq!(e.code, "too_small");
        assert!(e.message.contains("12×40"));
        let bytes = png(&pink(64, 64));
        let e = classifier_photo("t.png", &bytes[..bytes.len() / 2], &l, 16, true).unwrap_err();
        assert_eq!(e.code, "unreadable");
        let dark = DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 64, Rgb([5, 10, 30])));
        let e = classifier_photo("d.png", &png(&dark), &l, 16, true).unwrap_err();
        assert_eq!(e.code, "wrong_stain");
        assert!(classifier_photo("d.png", &png(&dark), &l, 16, false).is_ok());
        let grey_rgb = DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 64, Rgb([150, 150, 150])));
        let e = classifier_photo("gr.png", &png(&grey_rgb), &l, 16, true).unwrap_err();
        assert!(e.message.contains("no colour"), "{}", e.message);
        let ok = classifier_photo("p.png", &png(&pink(64, 48)), &l, 16, true).unwrap();
        assert_eq!(ok.image.dimensions(), (64, 48));
    }
}
