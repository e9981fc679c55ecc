//! The photos both sides read: synthetic H&E fields at the camera's 1360×1024 (the demo's
//! renderer, so the JPEGs have tissue-like texture and decode like real ones), written once
//! per output folder as baseline JPEG at quality 90 and reused by later runs.
use crate::synth::{render_photo, SlideStyle, SynthClass};
use anyhow::{Context, Result};
use image::codecs::jpeg::JpegEncoder;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
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
