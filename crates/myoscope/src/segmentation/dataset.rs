//! Segmentation data: a manifest of image / mask pairs, read into memory as one normalised
//! channel and a semantic mask each.
//!
//! Masks may be instance label maps (DSB2018's 16-bit PNGs, inForm's nucleus map): every
//! labelled pixel becomes class 1, nucleus. A mask whose size differs from its image, a
//! missing file or an unreadable image is an error naming the manifest row.
use crate::fluorescence::{
    read_channel, read_label_map, ChannelSelector, ClassMapping, Normalisation,
};
use crate::segmentation::augment::ImageMask;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// One manifest row.
#[derive(Debug, Clone, PartialEq)]
pub struct SegSample {
    pub image: PathBuf,
    pub mask: Option<PathBuf>,
    pub split: Option<String>,
    /// 1-based CSV line, for error messages.
    pub line: usize,
}

#[derive(Debug, Clone)]
pub struct SegManifest {
    pub path: PathBuf,
    pub samples: Vec<SegSample>,
}

impl SegManifest {
    /// Reads `image,mask[,split]` rows; paths are relative to `root`.
    pub fn read(path: &Path, root: &Path) -> Result<Self> {
        let mut rd = csv::Reader::from_path(path)
            .with_context(|| format!("cannot read the manifest {}", path.display()))?;
        let headers = rd.headers()?.clone();
        let col = |name: &str| headers.iter().position(|h| h.trim() == name);
        let Some(image_col) = col("image") else {
            bail!(
                "{} has no 'image' column (columns: {}); a segmentation manifest needs image and mask columns",
                path.display(),
                headers.iter().collect::<Vec<_>>().join(", ")
            );
        };
        let mask_col = col("mask");
        let split_col = col("split");
        let mut samples = Vec::new();
        for (i, row) in rd.records().enumerate() {
            let line = i + 2;
            let row = row.with_context(|| format!("{} line {line}", path.display()))?;
            let field = |c: Option<usize>| {
                c.and_then(|c| row.get(c))
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            };
            let Some(image) = field(Some(image_col)) else {
                bail!("{} line {line}: the image path is empty", path.display());
            };
            let split = field(split_col);
            if let Some(s) = &split {
                if !["train", "validation", "test"].contains(&s.as_str()) {
                    bail!(
                        "{} line {line}: split '{s}' is not one of train, validation, test",
                        path.display()
                    );
                }
            }
            samples.push(SegSample {
                image: root.join(image),
                mask: field(mask_col).map(|m| root.join(m)),
                split,
                line,
            });
        }
        if samples.is_empty() {
            bail!("{} lists no images", path.display());
        }
        Ok(Self {
            path: path.to_path_buf(),
            samples,
        })
    }

    /// The rows of one split (`train`, `validation`, `test`).
    pub fn split(&self, name: &str) -> Vec<SegSample> {
        self.samples
            .iter()
            .filter(|s| s.split.as_deref() == Some(name))
            .cloned()
            .collect()
    }

    /// Missing files are reported all at once, before any training time is spent.
    pub fn check_files(&self, samples: &[SegSample]) -> Result<()> {
        let mut missing = Vec::new();
        for s in samples {
            for p in std::iter::once(&s.image).chain(s.mask.as_ref()) {
                if !p.is_file() {
                    missing.push(format!("line {}: {}", s.line, p.display()));
                }
            }
        }
        if !missing.is_empty() {
            bail!(
                "{} names {} missing file(s): {}{}",
                self.path.display(),
                missing.len(),
                missing
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; "),
                if missing.len() > 5 { "; …" } else { "" }
            );
        }
        Ok(())
    }
}

/// Reads one image's channel, normalised, as a 1-channel [`ImageMask`] with its semantic mask
/// (all zeros when the row has no mask).
pub fn load_sample(
    sample: &SegSample,
    channel: &ChannelSelector,
    norm: &Normalisation,
) -> Result<ImageMask> {
    let context = || {
        format!(
            "image {} (manifest line {})",
            sample.image.display(),
            sample.line
        )
    };
    let plane = read_channel(&sample.image, channel, norm).with_context(context)?;
    let (w, h) = (plane.width, plane.height);
    let mask = match &sample.mask {
        Some(path) => {
            let labels = read_label_map(path, None).with_context(|| {
                format!("mask {} (manifest line {})", path.display(), sample.line)
            })?;
            labels.ensure_size(w, h, &sample.image.display().to_string())?;
            labels.to_semantic(&ClassMapping::Foreground)?.classes
        }
        None => vec![0; w * h],
    };
    Ok(ImageMask {
        channels: 1,
        height: h,
        width: w,
        image: plane.data,
        mask,
    })
}

/// Loads every sample (in parallel: decoding dominates), keeping the manifest order.
pub fn load_all(
    samples: &[SegSample],
    channel: &ChannelSelector,
    norm: &Normalisation,
) -> Result<Vec<ImageMask>> {
    use rayon::prelude::*;
    samples
        .par_iter()
        .map(|s| load_sample(s, channel, norm))
        .collect()
}

/// Background / nucleus pixel counts over the training masks, for the class weights.
pub fn pixel_counts(samples: &[ImageMask], classes: usize) -> Vec<u64> {
    let mut counts = vec![0u64; classes];
    for s in samples {
        for &m in &s.mask {
            if let Some(c) = counts.get_mut(m as usize) {
                *c += 1;
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("myoscope-segds-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn manifest_rows_become_samples_with_clear_errors() {
        let d = scratch("manifest");
        let img = image::GrayImage::from_fn(12, 10, |x, _| image::Luma([(x * 20) as u8]));
        img.save(d.join("a.png")).unwrap();
        let mask = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(12, 10, |x, y| {
            image::Luma([if x > 6 && y > 4 { 7 } else { 0 }])
        });
        mask.save(d.join("a_mask.png")).unwrap();
        std::fs::write(
            d.join("m.csv"),
            "image,mask,split\na.png,a_mask.png,train\n",
        )
        .unwrap();
        let m = SegManifest::read(&d.join("m.csv"), &d).unwrap();
        let train = m.split("train");
        m.check_files(&train).unwrap();
        let s = load_sample(
            &train[0],
            &ChannelSelector::Position(1),
            &Normalisation::default(),
        )
        .unwrap();
        assert_eq!((s.width, s.height), (12, 10));
        assert_eq!(s.mask.iter().filter(|&&v| v == 1).count(), 5 * 5);
        assert_eq!(pixel_counts(&[s], 2), vec![95, 25]);

        std::fs::write(
            d.join("bad.csv"),
            "image,mask,split\nb.png,b_mask.png,train\n",
        )
        .unwrap();
        let bad = SegManifest::read(&d.join("bad.csv"), &d).unwrap();
        let err = bad.check_files(&bad.samples).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("b.png"), "{err}");

        std::fs::write(d.join("split.csv"), "image,split\na.png,holdout\n").unwrap();
        let err = SegManifest::read(&d.join("split.csv"), &d)
            .unwrap_err()
            .to_string();
        assert!(err.contains("holdout"), "{err}");

        let small = image::ImageBuffer::<image::Luma<u16>, _>::new(5, 5);
        small.save(d.join("small_mask.png")).unwrap();
        std::fs::write(d.join("size.csv"), "image,mask\na.png,small_mask.png\n").unwrap();
        let m = SegManifest::read(&d.join("size.csv"), &d).unwrap();
        let err = load_sample(
            &m.samples[0],
            &ChannelSelector::Position(1),
            &Normalisation::default(),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("5"), "{err:#}");
    }
}
