//! Full-size masks as PNG or TIFF.
//!
//! - [`MaskEncoding::Binary`]: 8-bit, 0 for background and 255 for any nucleus (visible in any
//!   viewer).
//! - [`MaskEncoding::ClassIds`]: 8-bit class ids as they are (0, 1, 2, …).
//! - [`MaskEncoding::Instances`]: one label per nucleus, 16-bit (PNG and TIFF); a TIFF with more
//!   than 65 535 nuclei is written 32-bit.
//!
//! TIFFs are deflate-compressed, single page, grey.
use super::LabelImage;
use anyhow::{bail, ensure, Context, Result};
use image::{ImageBuffer, Luma};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskEncoding {
    Binary,
    ClassIds,
    Instances,
}

enum Pixels {
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
}

fn encode(mask: &LabelImage, encoding: MaskEncoding, allow_32_bit: bool) -> Result<Pixels> {
    let labels = mask.labels();
    let max = mask.max_label();
    Ok(match encoding {
        MaskEncoding::Binary => Pixels::U8(
            labels
                .iter()
                .map(|&l| if l == 0 { 0 } else { 255 })
                .collect(),
        ),
        MaskEncoding::ClassIds => {
            ensure!(
                max <= u8::MAX as u32,
                "class id {max} does not fit an 8-bit mask: is this an instance label image? \
                 write it with the instances encoding"
            );
            Pixels::U8(labels.iter().map(|&l| l as u8).collect())
        }
        MaskEncoding::Instances if max <= u16::MAX as u32 => {
            Pixels::U16(labels.iter().map(|&l| l as u16).collect())
        }
        MaskEncoding::Instances if allow_32_bit => Pixels::U32(labels.to_vec()),
        MaskEncoding::Instances => {
            bail!("{max} nuclei do not fit a 16-bit PNG: write the instance labels as TIFF instead")
        }
    })
}

fn dimensions(mask: &LabelImage) -> Result<(u32, u32)> {
    ensure!(
        mask.width() > 0 && mask.height() > 0,
        "the mask is empty ({}×{}): there is no image to write",
        mask.width(),
        mask.height()
    );
    Ok((
        u32::try_from(mask.width()).context("mask too wide")?,
        u32::try_from(mask.height()).context("mask too tall")?,
    ))
}

pub fn write_mask_png(path: &Path, mask: &LabelImage, encoding: MaskEncoding) -> Result<()> {
    let (w, h) = dimensions(mask)?;
    let saved = match encode(mask, encoding, false)? {
        Pixels::U8(v) => ImageBuffer::<Luma<u8>, _>::from_raw(w, h, v)
            .context("mask buffer size")?
            .save_with_format(path, image::ImageFormat::Png),
        Pixels::U16(v) => ImageBuffer::<Luma<u16>, _>::from_raw(w, h, v)
            .context("mask buffer size")?
            .save_with_format(path, image::ImageFormat::Png),
        Pixels::U32(_) => bail!("PNG masks are at most 16-bit: write a TIFF"),
    };
    saved.with_context(|| format!("writing the mask PNG {}", path.display()))
}

pub fn write_mask_tiff(path: &Path, mask: &LabelImage, encoding: MaskEncoding) -> Result<()> {
    use tiff::encoder::{colortype, Compression, DeflateLevel, TiffEncoder};
    let (w, h) = dimensions(mask)?;
    let file = std::fs::File::create(path)
        .with_context(|| format!("creating the mask TIFF {}", path.display()))?;
    let mut encoder = TiffEncoder::new(std::io::BufWriter::new(file))?
        .with_compression(Compression::Deflate(DeflateLevel::Balanced));
    let written = match encode(mask, encoding, true)? {
        Pixels::U8(v) => encoder.write_image::<colortype::Gray8>(w, h, &v),
        Pixels::U16(v) => encoder.write_image::<colortype::Gray16>(w, h, &v),
        Pixels::U32(v) => encoder.write_image::<colortype::Gray32>(w, h, &v),
    };
    written.with_context(|| format!("writing the mask TIFF {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("myoscope-masks-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn png_masks_round_trip_with_their_encoding() {
        let dir = scratch("png");
        let mask = LabelImage::new(3, 2, vec![0, 1, 2, 0, 300, 0]).unwrap();
        let p = dir.join("binary.png");
        write_mask_png(&p, &mask, MaskEncoding::Binary).unwrap();
        let img = image::open(&p).unwrap().into_luma8();
        assert_eq!(img.dimensions(), (3, 2));
        assert_eq!(img.into_raw(), vec![0, 255, 255, 0, 255, 0]);
        let p = dir.join("instances.png");
        write_mask_png(&p, &mask, MaskEncoding::Instances).unwrap();
        let img = image::open(&p).unwrap();
        assert_eq!(img.color(), image::ColorType::L16);
        assert_eq!(img.into_luma16().into_raw(), vec![0, 1, 2, 0, 300, 0]);
        let e = write_mask_png(&dir.join("c.png"), &mask, MaskEncoding::ClassIds).unwrap_err();
        assert!(e.to_string().contains("instances encoding"), "{e}");
        let many = LabelImage::new(1, 1, vec![70_000]).unwrap();
        assert!(write_mask_png(&dir.join("m.png"), &many, MaskEncoding::Instances).is_err());
        let empty = LabelImage::new(0, 0, vec![]).unwrap();
        assert!(write_mask_png(&dir.join("e.png"), &empty, MaskEncoding::Binary).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tiff_masks_round_trip_up_to_32_bit() {
        use tiff::decoder::{Decoder, DecodingResult};
        let dir = scratch("tiff");
        let read = |p: &Path| {
            let mut d = Decoder::new(std::fs::File::open(p).unwrap()).unwrap();
            (d.dimensions().unwrap(), d.read_image().unwrap())
        };
        let mask = LabelImage::new(2, 2, vec![0, 3, 3, 1]).unwrap();
        let p = dir.join("classes.tif");
        write_mask_tiff(&p, &mask, MaskEncoding::ClassIds).unwrap();
        match read(&p) {
            ((2, 2), DecodingResult::U8(v)) => assert_eq!(v, vec![0, 3, 3, 1]),
            other => panic!("unexpected {:?}", other.0),
        }
        let many = LabelImage::new(2, 1, vec![70_000, 0]).unwrap();
        let p = dir.join("many.tif");
        write_mask_tiff(&p, &many, MaskEncoding::Instances).unwrap();
        match read(&p) {
            ((2, 1), DecodingResult::U32(v)) => assert_eq!(v, vec![70_000, 0]),
            other => panic!("unexpected {:?}", other.0),
        }
        let p = dir.join("instances.tif");
        write_mask_tiff(&p, &mask, MaskEncoding::Instances).unwrap();
        assert!(matches!(read(&p).1, DecodingResult::U16(_)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
