//! Helpers shared by the integration tests: scratch folders and tiny synthetic data sets.
#![allow(dead_code)]
use myoscope::config::TrainConfig;
use myoscope::synth::{manifest_columns, write_dataset, SynthSpec};
use std::path::{Path, PathBuf};

pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("myoscope-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A small synthetic H&E data set: 2 slides per class, 2 photos each, 96×72.
pub fn tiny_synthetic(dir: &Path) -> PathBuf {
    write_dataset(
        dir,
        &SynthSpec {
            slides_per_class: 2,
            photos_per_slide: 2,
            width: 96,
            height: 72,
            seed: 1,
        },
    )
    .unwrap()
}

/// A model small enough to train in seconds.
pub fn tiny_config(manifest: &Path) -> TrainConfig {
    let mut c = TrainConfig::default();
    c.data.source = manifest.to_path_buf();
    c.data.columns = manifest_columns();
    c.data.validation_fraction = 0.5;
    c.model.arch = "densenet-tiny".into();
    c.model.grid = 2;
    c.model.input_size = 32;
    c.training.epochs = 3;
    c.training.batch_size = 8;
    c.training.device = "cpu".into();
    c.training.optimizer.lr = 1e-3;
    c
}

pub fn shared_data() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!(
            "SKIP: ../shared/data is absent ({}); shared-data integration test not run",
            p.display()
        );
        None
    }
}
