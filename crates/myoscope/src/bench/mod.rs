//! The benchmark suite behind `myoscope bench`: each case (a workload, the engine and precision
//! that run our side) is timed next to the same workload in PyTorch eager fp32
//! (`bench/torch_cases.py`), in one interleaved run — ours, PyTorch, ours, PyTorch, … — so that
//! both see the same machine load. Each side runs in a fresh child process per case (ours:
//! `myoscope bench --worker`), which keeps each case's peak resident memory its own.
//!
//! One file per workload ([`classifier`], [`segmentation`], [`pipeline`], [`slide`]); the
//! [`runner`] spawns and interleaves the workers, [`report`] writes `bench.json` and
//! `bench.md`. A new engine for our side is an [`Engine`] variant, a branch where the workload
//! is built, and a line in [`cases`].
pub mod classifier;
pub mod inputs;
pub mod machine;
pub mod pipeline;
pub mod precision_check;
pub mod report;
pub mod runner;
pub mod segmentation;
pub mod slide;
pub mod worker;

pub use crate::precision::Precision;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Aggregated classifier forward pass on a batch of photos (no gradients).
    ClassifierInference,
    /// Forward, aggregated loss, backward and one RAdam step.
    ClassifierTraining,
    /// UNet-ResNet34 (scSE, depth 3): forward, weighted cross-entropy, backward, Adam step.
    SegmentationTraining,
    /// A whole DAPI page cut into overlapping tiles, softmax per tile, blended back, argmax.
    SegmentationTiled,
    /// JPEG decode, crop, resize, augment, normalise → training batches.
    Pipeline,
    /// One slide's two-step diagnosis with 5-model ensembles and patch-weighted heat-maps.
    Slide,
}

/// What runs our side of a case. PyTorch's side is always eager fp32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// libtorch through tch: the engine myoscope trains and predicts with.
    Libtorch,
    /// ONNX Runtime on our own export of the same model (`--engine onnx`; inference only).
    Onnx,
    /// ONNX Runtime on our static int8 quantization of that export (`--engine onnx-int8`).
    OnnxInt8,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Libtorch => "myoscope",
            Engine::Onnx => "myoscope-onnx",
            Engine::OnnxInt8 => "myoscope-onnx-int8",
        }
    }
}

/// Sizes shared by both sides; sent to both workers as JSON so they cannot drift apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Classifier backbone (PyTorch's side implements densenet121 only).
    pub arch: String,
    /// Classifier input side and patch grid (640², 4×4: 16 patches of 160²).
    pub size: i64,
    pub grid: i64,
    /// Photos per classifier batch.
    pub batch: i64,
    /// Segmentation training tile side and tiles per step.
    pub seg_tile: i64,
    pub seg_batch: i64,
    /// The DAPI page the tiled inference covers (height × width), its overlap and tiles per pass.
    pub page_height: i64,
    pub page_width: i64,
    pub overlap: i64,
    pub tile_batch: i64,
    /// Photos per pipeline epoch (each gives its left and right square) and batch size.
    pub pipeline_photos: usize,
    pub pipeline_batch: usize,
    /// DataLoader worker processes on PyTorch's side; our loader uses a rayon pool this wide.
    pub pipeline_workers: usize,
    /// Models per ensemble in the slide case; classes of step 1 and of the called step-2 group.
    pub ensemble: usize,
    pub step1_classes: i64,
    pub step2_classes: i64,
    /// Intra-op threads of both engines.
    pub threads: i64,
    /// The input photos (JPEG, 1360×1024), made once per suite run; the slide uses the first 3.
    pub photos: Vec<PathBuf>,
    pub device: String,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            arch: "densenet121".into(),
            size: 640,
            grid: 4,
            batch: 1,
            seg_tile: 480,
            seg_batch: 2,
            page_height: 1408,
            page_width: 1876,
            overlap: 64,
            tile_batch: 4,
            pipeline_photos: 24,
            pipeline_batch: 16,
            pipeline_workers: 2,
            ensemble: 5,
            step1_classes: 2,
            step2_classes: 4,
            threads: 0,
            photos: Vec::new(),
            device: "cpu".into(),
        }
    }
}

/// One row of the suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub name: String,
    pub workload: Workload,
    pub engine: Engine,
    pub precision: Precision,
    /// Untimed runs before the first timed one, per side.
    pub warmup: usize,
    /// Timed runs per side, interleaved with the other side's.
    pub runs: usize,
    pub params: Params,
}

impl Case {
    /// Our side's label in tables ("myoscope", "myoscope bf16", …).
    pub fn ours_label(&self) -> String {
        match self.precision {
            Precision::Fp32 => self.engine.name().to_string(),
            p => format!("{} {}", self.engine.name(), p.name()),
        }
    }
}

/// The suite: every case, with warm-up and timed runs for the full or the quick run. Quick
/// runs fewer iterations of the same workloads at the same sizes.
pub fn cases(params: &Params, quick: bool) -> Vec<Case> {
    // (name, workload, engine, precision, warm-up, runs full, runs quick)
    let table: [(&str, Workload, Engine, Precision, usize, usize, usize); 12] = [
        (
            "classifier-inference",
            Workload::ClassifierInference,
            Engine::Libtorch,
            Precision::Fp32,
            2,
            9,
            3,
        ),
        (
            "classifier-inference-bf16",
            Workload::ClassifierInference,
            Engine::Libtorch,
            Precision::Bf16,
            2,
            9,
            3,
        ),
        (
            "classifier-inference-onnx",
            Workload::ClassifierInference,
            Engine::Onnx,
            Precision::Fp32,
            2,
            9,
            3,
        ),
        (
            "classifier-inference-int8",
            Workload::ClassifierInference,
            Engine::OnnxInt8,
            Precision::Fp32,
            2,
            9,
            3,
        ),
        (
            "classifier-training",
            Workload::ClassifierTraining,
            Engine::Libtorch,
            Precision::Fp32,
            1,
            7,
            3,
        ),
        (
            "segmentation-training",
            Workload::SegmentationTraining,
            Engine::Libtorch,
            Precision::Fp32,
            1,
            5,
            2,
        ),
        (
            "segmentation-tiled-inference",
            Workload::SegmentationTiled,
            Engine::Libtorch,
            Precision::Fp32,
            1,
            3,
            1,
        ),
        (
            "data-pipeline",
            Workload::Pipeline,
            Engine::Libtorch,
            Precision::Fp32,
            1,
            5,
            2,
        ),
        (
            "slide-diagnosis",
            Workload::Slide,
            Engine::Libtorch,
            Precision::Fp32,
            1,
            3,
            1,
        ),
        (
            "slide-diagnosis-bf16",
            Workload::Slide,
            Engine::Libtorch,
            Precision::Bf16,
            1,
            3,
            1,
        ),
        (
            "slide-diagnosis-onnx",
            Workload::Slide,
            Engine::Onnx,
            Precision::Fp32,
            1,
            3,
            1,
        ),
        (
            "slide-diagnosis-int8",
            Workload::Slide,
            Engine::OnnxInt8,
            Precision::Fp32,
            1,
            3,
            1,
        ),
    ];
    table
        .into_iter()
        .map(
            |(name, workload, engine, precision, warmup, full, quick_runs)| Case {
                name: name.into(),
                workload,
                engine,
                precision,
                warmup: if quick { warmup.min(1) } else { warmup },
                runs: if quick { quick_runs } else { full },
                params: params.clone(),
            },
        )
        .collect()
}

/// The cases named in `wanted` (all when empty), refusing unknown names with the list.
pub fn select(all: Vec<Case>, wanted: &[String]) -> Result<Vec<Case>> {
    if wanted.is_empty() {
        return Ok(all);
    }
    let names: Vec<String> = all.iter().map(|c| c.name.clone()).collect();
    if let Some(bad) = wanted.iter().find(|w| !names.contains(w)) {
        bail!(
            "there is no bench case '{bad}'; the cases are: {}",
            names.join(", ")
        );
    }
    Ok(all
        .into_iter()
        .filter(|c| wanted.contains(&c.name))
        .collect())
}

/// Timed work our worker process runs; built once per case, then run again and again.
pub trait Runnable {
    /// One timed unit of work (a batch, a step, a page, an epoch, a slide).
    fn run(&mut self) -> Result<()>;
    /// How many items one run processes (patches, tiles, images, slides), for throughput.
    fn items(&self) -> f64;
    /// What an item is ("patches", "tiles", "images", "slides").
    fn unit(&self) -> &'static str;
    /// One line saying exactly what is timed, for the table's notes.
    fn detail(&self) -> String;
}

/// Builds our side of a case.
pub fn build(case: &Case) -> Result<Box<dyn Runnable>> {
    let device = crate::device::parse_device(&case.params.device)?;
    match case.engine {
        Engine::Libtorch => match case.workload {
            Workload::ClassifierInference => Ok(Box::new(classifier::Inference::new(
                &case.params,
                case.precision,
                device,
            )?)),
            Workload::ClassifierTraining => {
                fp32_only(case)?;
                Ok(Box::new(classifier::Training::new(&case.params, device)?))
            }
            Workload::SegmentationTraining => {
                fp32_only(case)?;
                Ok(Box::new(segmentation::Training::new(&case.params, device)?))
            }
            Workload::SegmentationTiled => {
                fp32_only(case)?;
                Ok(Box::new(segmentation::Tiled::new(&case.params, device)?))
            }
            Workload::Pipeline => Ok(Box::new(pipeline::Pipeline::new(&case.params)?)),
            Workload::Slide => Ok(Box::new(slide::SlideDiagnosis::new(
                &case.params,
                case.precision,
                case.engine,
                device,
            )?)),
        },
        Engine::Onnx | Engine::OnnxInt8 => {
            let int8 = case.engine == Engine::OnnxInt8;
            match (case.workload, case.precision) {
                (Workload::ClassifierInference, Precision::Fp32) => {
                    Ok(Box::new(classifier::OnnxInference::new(&case.params, int8)?))
                }
                (Workload::Slide, Precision::Fp32) => Ok(Box::new(slide::SlideDiagnosis::new(
                    &case.params,
                    case.precision,
                    case.engine,
                    device,
                )?)),
                _ => bail!(
                    "case {}: the ONNX engines run classifier inference and the slide, from fp32 models",
                    case.name
                ),
            }
        }
    }
}

fn fp32_only(case: &Case) -> Result<()> {
    if case.precision != Precision::Fp32 {
        bail!(
            "case {}: reduced precision is for inference; training runs in fp32",
            case.name
        );
    }
    Ok(())
}

/// Median of a non-empty list (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Peak resident memory of this process (VmHWM) in MiB.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmHWM:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_keeps_sizes_and_cuts_runs() {
        let p = Params::default();
        let full = cases(&p, false);
        let quick = cases(&p, true);
        assert_eq!(full.len(), quick.len());
        for (f, q) in full.iter().zip(&quick) {
            assert_eq!(f.params, q.params);
            assert_eq!(f.workload, q.workload);
            assert!(q.runs >= 1 && q.runs <= f.runs);
        }
        let names: Vec<_> = full.iter().map(|c| c.name.as_str()).collect();
        let mut dedup = names.clone();
        dedup.dedup();
        assert_eq!(names, dedup);
    }

    #[test]
    fn selection_refuses_unknown_names() {
        let all = cases(&Params::default(), true);
        let err = select(all.clone(), &["nope".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("classifier-inference"), "{err}");
        let one = select(all, &["data-pipeline".into()]).unwrap();
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
