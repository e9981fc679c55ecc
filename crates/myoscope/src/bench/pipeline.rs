//! The training data pipeline: every photo's left and right squares (Kabeya et al.'s training
//! crops) are decoded from JPEG, cropped, resized to the input size, flipped/rotated, colour
//! jittered and normalised into batches — as `myoscope train` feeds its first epoch. Each run
//! starts a fresh image source, so nothing comes from the decoded-square cache that later
//! epochs of a real training run would enjoy.
use super::{Params, Runnable};
use crate::data::augment::{Augmentation, Normalization};
use crate::data::loader::{edge_items, spawn_epoch, EpochPlan, ImageSource};
use crate::data::{Dataset, Sample};
use anyhow::{bail, Result};
use std::sync::Arc;

pub struct Pipeline {
    dataset: Arc<Dataset>,
    params: Params,
    epoch: u64,
}

impl Pipeline {
    pub fn new(params: &Params) -> Result<Self> {
        if params.photos.is_empty() {
            bail!("the pipeline case needs input photos");
        }
        let samples = (0..params.pipeline_photos)
            .map(|i| {
                let path = params.photos[i % params.photos.len()].clone();
                Sample {
                    rel_path: path.display().to_string(),
                    path,
                    label: i % 2,
                    group: i.to_string(),
                    slide: None,
                    row: i + 1,
                }
            })
            .collect();
        let dataset = Dataset {
            source: params.photos[0]
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .to_path_buf(),
            classes: vec!["a".into(), "b".into()],
            samples,
            labelled: true,
        };
        Ok(Self {
            dataset: Arc::new(dataset),
            params: params.clone(),
            epoch: 0,
        })
    }
}

impl Runnable for Pipeline {
    fn run(&mut self) -> Result<()> {
        let source = Arc::new(ImageSource::new(
            self.dataset.clone(),
            self.params.size as u32,
            Normalization::default(),
        ));
        self.epoch += 1;
        let plan = EpochPlan {
            items: edge_items(self.dataset.samples.len()),
            batch_size: self.params.pipeline_batch,
            augmentation: Some(Augmentation::default()),
            shuffle: true,
            seed: 0,
            epoch: self.epoch,
        };
        let mut seen = 0;
        for batch in spawn_epoch(source, plan) {
            let batch = batch?;
            // The tensors the model would get.
            let images = batch.images();
            let _labels = batch.labels();
            seen += images.size()[0] as usize;
        }
        anyhow::ensure!(seen == 2 * self.dataset.samples.len(), "lost items");
        Ok(())
    }
    fn items(&self) -> f64 {
        2.0 * self.params.pipeline_photos as f64
    }
    fn unit(&self) -> &'static str {
        "images"
    }
    fn detail(&self) -> String {
        format!(
            "{} JPEG photos 1360×1024 → left+right 1024² squares → {}², flips, 90° turns, colour jitter 0.1, normalise, batches of {}; {} worker threads (PyTorch: DataLoader, {} worker processes)",
            self.params.pipeline_photos,
            self.params.size,
            self.params.pipeline_batch,
            self.params.pipeline_workers,
            self.params.pipeline_workers
        )
    }
}
