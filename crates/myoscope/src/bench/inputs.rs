//! The photos both sides read: synthetic H&E fields at the camera's 1360×1024 (the demo's
//! renderer, so the JPEGs have tissue-like texture and decode like real ones), written once
//! per output folder as baseline JPEG at quality 90 and reused by later runs.
use crate::data::augment::{to_chw, ColourJitter, Normalization};
use crate::data::crop::{crop_and_resize, crop_box, Crop};
use crate::data::decode::load_rgb;
use crate::synth::{render_photo, SlideStyle, SynthClass};
use anyhow::{Context, Result};
use image::codecs::jpeg::JpegEncoder;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Writes (or finds) `n` photos `photo-K.jpg` of `width`×`height` in `dir`.
pub fn write_photos(dir: &Path, n: usize, width: u32, height: u32) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    (0..n)
        .map(|k| {
            let path = dir.join(format!("photo-{k}-{width}x{height}.jpg"));
            if path.is_file() {
                return Ok(path);
            }
            let mut rng = ChaCha8Rng::seed_from_u64(k as u64);
            let style = SlideStyle::random(&mut rng);
            let class = SynthClass::ALL[k % SynthClass::ALL.len()];
            let photo = render_photo(class, &style, k as u64, width, height);
            let tmp = path.with_extension("jpg.tmp");
            let file = std::fs::File::create(&tmp)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            let mut w = std::io::BufWriter::new(file);
            JpegEncoder::new_with_quality(&mut w, 90)
                .encode_image(&photo.rgb)
                .with_context(|| format!("cannot encode {}", tmp.display()))?;
            drop(w);
            std::fs::rename(&tmp, &path)?;
            Ok(path)
        })
        .collect()
}

/// The photos' centre squares resized to `size`² and normalised (ImageNet statistics), decoded
/// in parallel into one row-major NCHW batch; with the side of the first photo's square.
pub fn centre_squares(photos: &[PathBuf], size: u32) -> Result<(Vec<f32>, u32)> {
    let norm = Normalization::default();
    let parts: Vec<(Vec<f32>, u32)> = photos
        .par_iter()
        .map(|p| -> Result<(Vec<f32>, u32)> {
            let img = load_rgb(p)?;
            let side = crop_box(img.width(), img.height(), Crop::Centre).2;
            let square = crop_and_resize(&img, Crop::Centre, size);
            Ok((to_chw(&square, ColourJitter::NONE, &norm), side))
        })
        .collect::<Result<_>>()?;
    let side = parts.first().map_or(0, |p| p.1);
    Ok((parts.into_iter().flat_map(|p| p.0).collect(), side))
}

/// Calibration batches for an int8 model: the first `n` photos' centre squares, one per batch
/// (the calibration model outputs every activation at once). The bench's models are random-init, so the bench's own photos serve for setting
/// the ranges that the timing runs through.
pub fn calibration_batches(
    photos: &[PathBuf],
    n: usize,
    size: i64,
) -> Result<Vec<(Vec<f32>, [i64; 4])>> {
    photos[..n.min(photos.len())]
        .chunks(1)
        .map(|photo| {
            let (pixels, _) = centre_squares(photo, size as u32)?;
            Ok((pixels, [1, 3, size, size]))
        })
        .collect()
}
