//! Turns (photo, crop) items into normalised tensors. Decoding, cropping and augmentation run
//! on a rayon pool in a producer thread that stays a couple of batches ahead, so the model
//! does not wait on JPEG decoding; cropped+resized squares are cached when they fit in memory.
use super::augment::{self, Augmentation, ColourJitter, Normalization};
use super::crop::{crop_and_resize, Crop};
use super::decode::load_rgb;
use super::manifest::Dataset;
use anyhow::Result;
use image::RgbImage;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex};

/// One network input: which photo and which square of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Item {
    pub sample: usize,
    pub crop: Crop,
}

/// The left and right squares of every photo (training and validation, as in the paper).
pub fn edge_items(n_samples: usize) -> Vec<Item> {
    (0..n_samples)
        .flat_map(|sample| Crop::TRAINING.map(|crop| Item { sample, crop }))
        .collect()
}

/// The centre square of every photo (testing).
pub fn centre_items(n_samples: usize) -> Vec<Item> {
    (0..n_samples)
        .map(|sample| Item {
            sample,
            crop: Crop::Centre,
        })
        .collect()
}

/// A batch ready for the model: `pixels` is [B, 3, S, S] row-major.
#[derive(Debug)]
pub struct BatchData {
    pub pixels: Vec<f32>,
    pub labels: Vec<i64>,
    pub items: Vec<Item>,
    pub size: u32,
}

impl BatchData {
    pub fn images(&self) -> tch::Tensor {
        let s = self.size as i64;
        tch::Tensor::from_slice(&self.pixels).view([self.items.len() as i64, 3, s, s])
    }

    pub fn labels(&self) -> tch::Tensor {
        tch::Tensor::from_slice(&self.labels)
    }
}

/// How to read a data set's images.
pub struct ImageSource {
    dataset: Arc<Dataset>,
    size: u32,
    norm: Normalization,
    cache: Option<Mutex<HashMap<Item, Arc<RgbImage>>>>,
}

/// Squares cached per data set at most (bytes).
const CACHE_BUDGET: u64 = 3 << 30;

impl ImageSource {
    pub fn new(dataset: Arc<Dataset>, size: u32, norm: Normalization) -> Self {
        let per_item = 3 * size as u64 * size as u64;
        // Three squares per photo at most (left, right, centre).
        let fits = 3 * dataset.samples.len() as u64 * per_item <= CACHE_BUDGET;
        Self {
            dataset,
            size,
            norm,
            cache: fits.then(|| Mutex::new(HashMap::new())),
        }
    }

    pub fn dataset(&self) -> &Dataset {
        &self.dataset
    }

    /// The resized square for an item, decoded once when caching.
    pub fn square(&self, item: Item) -> Result<Arc<RgbImage>> {
        if let Some(cache) = &self.cache {
            if let Some(hit) = cache
                .lock()
                .map_err(|_| anyhow::anyhow!("image cache poisoned"))?
                .get(&item)
            {
                return Ok(hit.clone());
            }
        }
        let sample = &self.dataset.samples[item.sample];
        let img = load_rgb(&sample.path)?;
        let square = Arc::new(crop_and_resize(&img, item.crop, self.size));
        if let Some(cache) = &self.cache {
            // Training takes both end squares of every photo: cut the other one from this
            // decode too, so each photo is decoded once per data set, not once per square.
            let sibling = match item.crop {
                Crop::Left => Some(Crop::Right),
                Crop::Right => Some(Crop::Left),
                Crop::Centre => None,
            }
            .map(|crop| Item {
                sample: item.sample,
                crop,
            });
            let sibling = sibling
                .filter(|s| cache.lock().is_ok_and(|c| !c.contains_key(s)))
                .map(|s| (s, Arc::new(crop_and_resize(&img, s.crop, self.size))));
            if let Ok(mut c) = cache.lock() {
                c.insert(item, square.clone());
                if let Some((s, sq)) = sibling {
                    c.insert(s, sq);
                }
            }
        }
        Ok(square)
    }

    /// Writes one item's normalised CHW pixels into its slot of the batch.
    fn prepare_into(
        &self,
        item: Item,
        augmentation: Option<&Augmentation>,
        seed: u64,
        out: &mut [f32],
    ) -> Result<()> {
        let square = self.square(item)?;
        match augmentation {
            None => augment::to_chw_into(&square, ColourJitter::NONE, &self.norm, out),
            Some(aug) => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let img = augment::geometric((*square).clone(), aug, &mut rng);
                let jitter = ColourJitter::sample(aug.colour_jitter, &mut rng);
                augment::to_chw_into(&img, jitter, &self.norm, out);
            }
        }
        Ok(())
    }

    /// Builds one batch in parallel, each item straight into its slot of the batch buffer;
    /// item k of the batch gets augmentation seed `seeds[k]`.
    pub fn batch(
        &self,
        items: &[Item],
        augmentation: Option<&Augmentation>,
        seeds: &[u64],
    ) -> Result<BatchData> {
        let per_item = 3 * self.size as usize * self.size as usize;
        let mut pixels = vec![0f32; items.len() * per_item];
        pixels
            .par_chunks_mut(per_item)
            .zip(items.par_iter().zip(seeds.par_iter()))
            .try_for_each(|(out, (&item, &seed))| {
                self.prepare_into(item, augmentation, seed, out)
            })?;
        Ok(BatchData {
            pixels,
            labels: items
                .iter()
                .map(|i| self.dataset.samples[i.sample].label as i64)
                .collect(),
            items: items.to_vec(),
            size: self.size,
        })
    }
}

/// Mixes run seed, epoch and position into one reproducible 64-bit seed.
pub fn mix_seed(seed: u64, a: u64, b: u64) -> u64 {
    let mut x =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x
}

/// One pass over `items`: shuffled (by `seed`, `epoch`) and augmented when training.
pub struct EpochPlan {
    pub items: Vec<Item>,
    pub batch_size: usize,
    pub augmentation: Option<Augmentation>,
    pub shuffle: bool,
    pub seed: u64,
    pub epoch: u64,
}

/// Starts producing the epoch's batches in the background; the channel holds two batches.
pub fn spawn_epoch(source: Arc<ImageSource>, plan: EpochPlan) -> mpsc::Receiver<Result<BatchData>> {
    let (tx, rx) = mpsc::sync_channel(2);
    std::thread::spawn(move || {
        let mut items = plan.items;
        if plan.shuffle {
            items.shuffle(&mut ChaCha8Rng::seed_from_u64(mix_seed(
                plan.seed,
                plan.epoch,
                u64::MAX,
            )));
        }
        let bs = plan.batch_size.max(1);
        for (b, chunk) in items.chunks(bs).enumerate() {
            let seeds: Vec<u64> = (0..chunk.len())
                .map(|k| mix_seed(plan.seed, plan.epoch, (b * bs + k) as u64))
                .collect();
            let batch = source.batch(chunk, plan.augmentation.as_ref(), &seeds);
            let failed = batch.is_err();
            if tx.send(batch).is_err() || failed {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::manifest::{Dataset, Sample};

    fn tiny_dataset() -> Dataset {
        let d = std::env::temp_dir().join(format!("myoscope-loader-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let mut samples = Vec::new();
        for i in 0..5 {
            let p = d.join(format!("{i}.png"));
            RgbImage::from_fn(24, 16, |x, _| image::Rgb([(x * 10) as u8, i as u8 * 40, 0]))
                .save(&p)
                .unwrap();
            samples.push(Sample {
                path: p,
                rel_path: format!("{i}.png"),
                label: i % 2,
                group: i.to_string(),
                slide: None,
                row: i + 1,
            });
        }
        Dataset {
            source: d,
            classes: vec!["a".into(), "b".into()],
            samples,
            labelled: true,
        }
    }

    #[test]
    fn epochs_cover_every_item_once_and_are_reproducible() {
        let src = Arc::new(ImageSource::new(
            Arc::new(tiny_dataset()),
            8,
            Normalization::default(),
        ));
        let run = |seed| {
            let plan = EpochPlan {
                items: edge_items(5),
                batch_size: 3,
                augmentation: Some(Augmentation::default()),
                shuffle: true,
                seed,
                epoch: 1,
            };
            spawn_epoch(src.clone(), plan)
                .into_iter()
                .map(|b| b.unwrap())
                .collect::<Vec<_>>()
        };
        let a = run(7);
        let b = run(7);
        assert_eq!(a.iter().map(|x| x.items.len()).sum::<usize>(), 10);
        let mut seen: Vec<_> = a.iter().flat_map(|x| x.items.clone()).collect();
        seen.sort_by_key(|i| (i.sample, i.crop.name()));
        seen.dedup();
        assert_eq!(seen.len(), 10);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.pixels, y.pixels);
            assert_eq!(x.labels, y.labels);
        }
        assert_eq!(a[0].images().size(), vec![3, 3, 8, 8]);
    }

    #[test]
    fn a_corrupt_file_stops_the_epoch_with_its_name() {
        let mut ds = tiny_dataset();
        let bad = ds.source.join("bad.png");
        std::fs::write(&bad, b"\x89PNG\r\n\x1a\n garbage").unwrap();
        ds.samples[3].path = bad;
        let src = Arc::new(ImageSource::new(Arc::new(ds), 8, Normalization::default()));
        let plan = EpochPlan {
            items: centre_items(5),
            batch_size: 2,
            augmentation: None,
            shuffle: false,
            seed: 0,
            epoch: 0,
        };
        let results: Vec<_> = spawn_epoch(src, plan).into_iter().collect();
        let err = results.into_iter().find_map(|r| r.err()).expect("an error");
        assert!(format!("{err:#}").contains("bad.png"));
    }
}
