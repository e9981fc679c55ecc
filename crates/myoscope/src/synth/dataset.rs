//! Writing a whole synthetic data set (images, masks, manifest) to disk.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::noise::derive_seed;
use super::{render_photo, SlideStyle, SynthClass};

/// Domain-separation tags so that a slide's style and its photos never share
/// a random stream.
const STYLE_TAG: u64 = 0x5354_594C;
const PHOTO_TAG: u64 = 0x5048_4F54;

/// Size and seed of a synthetic data set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthSpec {
    pub slides_per_class: usize,
    pub photos_per_slide: usize,
    pub width: u32,
    pub height: u32,
    pub seed: u64,
}

impl Default for SynthSpec {
    fn default() -> Self {
        Self {
            slides_per_class: 12,
            photos_per_slide: 3,
            width: 400,
            height: 300,
            seed: 0,
        }
    }
}

/// Class of slide number `slide`: classes are interleaved so that any prefix
/// of the slide list is balanced.
pub(crate) fn slide_class(slide: usize) -> SynthClass {
    SynthClass::ALL[slide % SynthClass::ALL.len()]
}

pub(crate) fn slide_style(seed: u64, slide: usize) -> SlideStyle {
    SlideStyle::random(&mut ChaCha8Rng::seed_from_u64(derive_seed(&[
        seed,
        STYLE_TAG,
        slide as u64,
    ])))
}

pub(crate) fn photo_seed(seed: u64, slide: usize, photo: usize) -> u64 {
    derive_seed(&[seed, PHOTO_TAG, slide as u64, photo as u64])
}

struct Row {
    path: String,
    label: &'static str,
    slide: String,
    patient: String,
    mask: String,
}

/// Writes `images/<slide>_<k>.png`, `masks/<slide>_<k>.png` and `manifest.csv` with columns
/// `path,label,slide,patient,mask` (paths relative to the manifest; one patient per slide) into `dir`;
/// renders photos in parallel with rayon; returns the manifest path.
///
/// Output is byte-identical for a given spec whatever the thread count,
/// because every photo draws from its own RNG derived from (seed, slide, photo).
pub fn write_dataset(dir: &Path, spec: &SynthSpec) -> Result<PathBuf> {
    ensure!(
        spec.slides_per_class > 0 && spec.photos_per_slide > 0,
        "synthetic data set needs at least one slide per class and one photo per slide"
    );
    ensure!(
        spec.width >= 32 && spec.height >= 32,
        "synthetic photos must be at least 32×32 pixels, got {}×{}",
        spec.width,
        spec.height
    );
    let images = dir.join("images");
    let masks = dir.join("masks");
    for sub in [&images, &masks] {
        fs::create_dir_all(sub).with_context(|| format!("creating directory {}", sub.display()))?;
    }

    let n_slides = spec.slides_per_class * SynthClass::ALL.len();
    let width = (n_slides.max(2) - 1).to_string().len().max(3);
    let jobs: Vec<(usize, usize)> = (0..n_slides)
        .flat_map(|s| (0..spec.photos_per_slide).map(move |k| (s, k)))
        .collect();
    let styles: Vec<SlideStyle> = (0..n_slides).map(|s| slide_style(spec.seed, s)).collect();

    let rows = jobs
        .par_iter()
        .map(|&(s, k)| -> Result<Row> {
            let class = slide_class(s);
            let slide = format!("slide_{s:0width$}");
            let stem = format!("{slide}_{k}.png");
            let photo = render_photo(
                class,
                &styles[s],
                photo_seed(spec.seed, s, k),
                spec.width,
                spec.height,
            );
            let img_path = images.join(&stem);
            photo
                .rgb
                .save(&img_path)
                .with_context(|| format!("writing synthetic image {}", img_path.display()))?;
            let mask_path = masks.join(&stem);
            photo
                .lesion_mask
                .save(&mask_path)
                .with_context(|| format!("writing synthetic mask {}", mask_path.display()))?;
            Ok(Row {
                path: format!("images/{stem}"),
                label: class.name(),
                patient: format!("patient_{s:0width$}"),
                slide,
                mask: format!("masks/{stem}"),
            })
        })
        .collect::<Result<Vec<Row>>>()?;

    let manifest = dir.join("manifest.csv");
    let write = || -> Result<()> {
        let mut wr = csv::Writer::from_path(&manifest)?;
        wr.write_record(["path", "label", "slide", "patient", "mask"])?;
        for r in &rows {
            wr.write_record([r.path.as_str(), r.label, &r.slide, &r.patient, &r.mask])?;
        }
        wr.flush()?;
        Ok(())
    };
    write().with_context(|| format!("writing manifest {}", manifest.display()))?;
    Ok(manifest)
}

/// How to read the manifest `write_dataset` writes: one patient per slide, grouped by patient.
pub fn manifest_columns() -> crate::data::ManifestColumns {
    crate::data::ManifestColumns {
        path: "path".into(),
        label: "label".into(),
        slide: Some("slide".into()),
        group: Some("patient".into()),
    }
}
