//! PNG, JPEG and other single-image files through the `image` crate, as one-page channel
//! stacks, so that DSB2018-style PNG nuclei images go through the same calls as TIFFs.
//! Grey images have one channel, `channel 1`; colour images have `red`, `green`, `blue` (and
//! `alpha`), like an RGB TIFF page.
use super::layout::{ChannelInfo, ChannelLayout};
use super::plane::{Plane, SampleType};
use anyhow::{bail, Context, Result};
use image::DynamicImage;
use std::path::Path;

/// Decodes `path` and returns its layout and its planes (values as stored).
pub fn read_raster(path: &Path) -> Result<(ChannelLayout, Vec<Plane>)> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if matches!(ext.as_str(), "tif" | "tiff" | "qptiff" | "btf" | "tf8") {
        let len = std::fs::metadata(path)
            .with_context(|| format!("cannot open {}", path.display()))?
            .len();
        bail!(
            "{} is not a TIFF file: it does not start with II* or MM* ({len} bytes long; \
             empty, truncated or mislabelled?)",
            path.display()
        );
    }
    let img = image::ImageReader::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read {}", path.display()))?
        .decode()
        .with_context(|| {
            format!(
                "cannot decode {} (truncated, or not an image format myoscope reads?)",
                path.display()
            )
        })?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (values, names, sample_type): (Vec<f32>, &[&str], SampleType) = match img {
        DynamicImage::ImageLuma8(b) => (to_f32(b.into_raw()), &["channel 1"], SampleType::U8),
        DynamicImage::ImageLumaA8(b) => (
            to_f32(b.into_raw()),
            &["channel 1", "alpha"],
            SampleType::U8,
        ),
        DynamicImage::ImageRgb8(b) => (to_f32(b.into_raw()), &RGB, SampleType::U8),
        DynamicImage::ImageRgba8(b) => (to_f32(b.into_raw()), &RGBA, SampleType::U8),
        DynamicImage::ImageLuma16(b) => (to_f32(b.into_raw()), &["channel 1"], SampleType::U16),
        DynamicImage::ImageLumaA16(b) => (
            to_f32(b.into_raw()),
            &["channel 1", "alpha"],
            SampleType::U16,
        ),
        DynamicImage::ImageRgb16(b) => (to_f32(b.into_raw()), &RGB, SampleType::U16),
        DynamicImage::ImageRgba16(b) => (to_f32(b.into_raw()), &RGBA, SampleType::U16),
        DynamicImage::ImageRgb32F(b) => (b.into_raw(), &RGB, SampleType::F32),
        DynamicImage::ImageRgba32F(b) => (b.into_raw(), &RGBA, SampleType::F32),
        other => bail!(
            "{} has pixel type {:?}, which myoscope does not read",
            path.display(),
            other.color()
        ),
    };
    let n = names.len();
    let planes = (0..n)
        .map(|k| Plane::new(w, h, values.iter().skip(k).step_by(n).copied().collect()))
        .collect::<Result<Vec<_>>>()?;
    let channels = names
        .iter()
        .enumerate()
        .map(|(k, name)| ChannelInfo {
            name: name.to_string(),
            ifd_index: 0,
            sample: k,
            sample_type,
        })
        .collect();
    let layout = ChannelLayout {
        path: path.to_path_buf(),
        width: w,
        height: h,
        channels,
        skipped: Vec::new(),
        pages: Vec::new(),
    };
    Ok((layout, planes))
}

const RGB: [&str; 3] = ["red", "green", "blue"];
const RGBA: [&str; 4] = ["red", "green", "blue", "alpha"];

fn to_f32<T: Into<f32>>(v: Vec<T>) -> Vec<f32> {
    v.into_iter().map(Into::into).collect()
}
