//! The images of a multi-label set decoded once and resized to the network input, kept in
//! memory for every fold and seed (364 BCCD photos at 384² are 160 MB), and turned into
//! batches with or without augmentation.
use super::augment::MultiLabelAugmentation;
use super::dataset::MultiLabelSet;
use crate::data::augment::{to_chw, ColourJitter, Normalization};
use anyhow::{bail, Result};
use image::{imageops, RgbImage};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use tch::Tensor;

pub struct ImageBank {
    pub size: u32,
    images: Vec<RgbImage>,
}

impl ImageBank {
    /// Decodes and resizes every image (in parallel), reporting all unreadable ones at once.
    pub fn load(set: &MultiLabelSet, size: u32, progress: bool) -> Result<Self> {
        let bar = crate::progress::bar(
            progress,
            set.images.len() as u64,
            "loading images",
            "images",
        );
        let loaded: Vec<Result<RgbImage, String>> = set
            .images
            .par_iter()
            .map(|img| {
                let out = crate::data::decode::load_rgb(&img.path)
                    .map(|rgb| imageops::resize(&rgb, size, size, imageops::FilterType::Triangle))
                    .map_err(|e| format!("line {}: {e:#}", img.row));
                bar.inc(1);
                out
            })
            .collect();
        bar.finish_and_clear();
        let problems: Vec<&String> = loaded.iter().filter_map(|r| r.as_ref().err()).collect();
        if !problems.is_empty() {
            bail!(
                "{} unreadable image(s) in {}:\n  {}",
                problems.len(),
                set.source.display(),
                problems
                    .iter()
                    .take(20)
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("\n  ")
            );
        }
        Ok(Self {
            size,
            images: loaded.into_iter().map(|r| r.unwrap_or_default()).collect(),
        })
    }

    pub fn from_images(size: u32, images: Vec<RgbImage>) -> Self {
        Self { size, images }
    }

    /// The batch [B, 3, S, S] of `indices`; with `augment`, each image's augmentation is drawn
    /// from `seed` and its position so a resumed epoch repeats it exactly.
    pub fn batch(
        &self,
        indices: &[usize],
        norm: &Normalization,
        augment: Option<(&MultiLabelAugmentation, u64)>,
    ) -> Tensor {
        let pixels: Vec<f32> = indices
            .par_iter()
            .enumerate()
            .flat_map_iter(|(pos, &i)| {
                let img = &self.images[i];
                match augment {
                    Some((aug, seed)) => {
                        let mut rng = ChaCha8Rng::seed_from_u64(crate::data::loader::mix_seed(
                            seed, i as u64, pos as u64,
                        ));
                        let (warped, jitter) = aug.apply(img.clone(), &mut rng);
                        to_chw(&warped, jitter, norm)
                    }
                    None => to_chw(img, ColourJitter::NONE, norm),
                }
            })
            .collect();
        let s = self.size as i64;
        Tensor::from_slice(&pixels).view([indices.len() as i64, 3, s, s])
    }
}

/// The 0/1 target matrix [B, K] of `indices`.
pub fn targets(set: &MultiLabelSet, indices: &[usize]) -> Tensor {
    let k = set.classes.len() as i64;
    let flat: Vec<f32> = indices
        .iter()
        .flat_map(|&i| set.images[i].labels.iter().map(|&l| f32::from(u8::from(l))))
        .collect();
    Tensor::from_slice(&flat).view([indices.len() as i64, k])
}
