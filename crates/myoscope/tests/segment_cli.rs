//! `myoscope segment` end to end on tiny synthetic nucleus images: train (with and without
//! APP), resume, predict (mask, overlay, GeoJSON), evaluate, and the errors for bad input; on
//! the real Vectra QPTIFF, a full-size DAPI mask.
mod common;

use common::{scratch, shared_data};
use image::{GrayImage, ImageBuffer, Luma};
use myoscope::segmentation::config::{AppChoice, Preset, SegTrainConfig};
use myoscope::segmentation::train::{train, SegTrainOptions};
use myoscope::training::checkpoint::load_tensors;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn myoscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_myoscope"))
        .args(args)
        .output()
        .expect("run myoscope")
}

fn ok(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "myoscope failed:\n{text}");
    text
}

fn fails_with(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected a failure mentioning '{needle}'"
    );
    assert!(err.contains(needle), "error lacks '{needle}':\n{err}");
    assert!(!err.contains("panicked"), "panicked:\n{err}");
}

/// Dim background with bright noisy discs (nuclei), and their 16-bit instance labels.
fn nuclei_image(w: u32, h: u32, seed: u64) -> (GrayImage, ImageBuffer<Luma<u16>, Vec<u16>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let discs: Vec<(f32, f32, f32)> = (0..6)
        .map(|_| {
            (
                rng.gen_range(8.0..w as f32 - 8.0),
                rng.gen_range(8.0..h as f32 - 8.0),
                rng.gen_range(4.0..7.0),
            )
        })
        .collect();
    let mut img = GrayImage::new(w, h);
    let mut mask = ImageBuffer::new(w, h);
    for y in 0..h {
        for x in 0..w {
            let inside = discs.iter().position(|&(cx, cy, r)| {
                (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2) <= r * r
            });
            let base: f32 = if inside.is_some() { 170.0 } else { 25.0 };
            let v = base + rng.gen_range(-20.0..20.0);
            img.put_pixel(x, y, Luma([v.clamp(0.0, 255.0) as u8]));
            mask.put_pixel(x, y, Luma([inside.map_or(0, |i| i as u16 + 1)]));
        }
    }
    (img, mask)
}

fn nuclei_dataset(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::create_dir_all(dir.join("masks")).unwrap();
    let mut rows = String::from("image,mask,split\n");
    for i in 0..10u64 {
        let (img, mask) = nuclei_image(96, 80, i);
        img.save(dir.join(format!("images/n{i}.png"))).unwrap();
        mask.save(dir.join(format!("masks/n{i}.png"))).unwrap();
        let split = match i {
            0..=5 => "train",
            6 | 7 => "validation",
            _ => "test",
        };
        rows.push_str(&format!("images/n{i}.png,masks/n{i}.png,{split}\n"));
    }
    let manifest = dir.join("nuclei.csv");
    std::fs::write(&manifest, rows).unwrap();
    manifest
}

fn small_config(manifest: &Path, app: AppChoice) -> SegTrainConfig {
    let mut cfg = SegTrainConfig::preset(Preset::Corrected, manifest.to_path_buf());
    cfg.model.encoder = "resnet18".into();
    cfg.training.tile = 64;
    cfg.training.overlap = 16;
    cfg.training.epochs = 2;
    cfg.training.batch_size = 4;
    cfg.training.device = "cpu".into();
    cfg.training.optimizer.lr = 1e-3;
    cfg.training.app = app;
    cfg
}

#[test]
fn train_with_and_without_app_saves_the_same_model_and_resumes() {
    let dir = scratch("seg-app");
    let manifest = nuclei_dataset(&dir.join("data"));
    let opts = |out: &str, stop_after| SegTrainOptions {
        out: dir.join(out),
        resume: false,
        progress: false,
        stop_after,
    };
    let plain = train(
        &small_config(&manifest, AppChoice::None),
        &opts("plain", None),
    )
    .unwrap();
    let with_app = train(
        &small_config(&manifest, AppChoice::Convolutional),
        &opts("app", None),
    )
    .unwrap();
    assert!(with_app.app && !plain.app);
    assert_eq!(plain.parameters, with_app.parameters);
    assert!(with_app.epochs.iter().all(|e| e.app_loss.is_some()));
    // The kept model is the segmentation network alone: same tensors, same shapes.
    let a = load_tensors(&dir.join("plain/best.safetensors")).unwrap();
    let b = load_tensors(&dir.join("app/best.safetensors")).unwrap();
    let mut names_a: Vec<_> = a.iter().map(|(k, v)| (k.clone(), v.size())).collect();
    let mut names_b: Vec<_> = b.iter().map(|(k, v)| (k.clone(), v.size())).collect();
    names_a.sort();
    names_b.sort();
    assert_eq!(names_a, names_b);
    assert!(!names_b.iter().any(|(k, _)| k.contains("app")));

    // Killed after one epoch, then resumed: two epochs in all, one history.
    let cfg = small_config(&manifest, AppChoice::Convolutional);
    let first = train(&cfg, &opts("resumed", Some(1))).unwrap();
    assert_eq!(first.epochs.len(), 1);
    let resumed = train(
        &cfg,
        &SegTrainOptions {
            resume: true,
            ..opts("resumed", None)
        },
    )
    .unwrap();
    assert_eq!(resumed.epochs.len(), 2);
    assert_eq!(resumed.epochs[0].epoch, 1);
    assert_eq!(resumed.epochs[1].epoch, 2);
    // A second fresh start into the same folder is refused.
    let err = train(&cfg, &opts("resumed", None)).unwrap_err().to_string();
    assert!(err.contains("--resume"), "{err}");
}

#[test]
fn segment_cli_trains_predicts_evaluates_and_explains_bad_input() {
    let dir = scratch("seg-cli");
    let manifest = nuclei_dataset(&dir.join("data"));
    let run = dir.join("run");
    let m = manifest.to_str().unwrap();
    let r = run.to_str().unwrap();
    let text = ok(&myoscope(&[
        "segment",
        "train",
        "--data",
        m,
        "--out",
        r,
        "--encoder",
        "resnet18",
        "--tile",
        "64",
        "--overlap",
        "16",
        "--epochs",
        "3",
        "--batch-size",
        "3",
        "--lr",
        "1e-3",
        "--app",
        "none",
        "--device",
        "cpu",
        "--quiet",
    ]));
    assert!(text.contains("best validation IoU"), "{text}");
    for f in [
        "config.toml",
        "model.json",
        "run.json",
        "best.safetensors",
        "metrics.json",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }

    let out = dir.join("pred");
    let image = dir.join("data/images/n8.png");
    ok(&myoscope(&[
        "segment",
        "predict",
        "--model",
        r,
        "--out",
        out.to_str().unwrap(),
        image.to_str().unwrap(),
    ]));
    let mask = image::open(out.join("n8_mask.png")).unwrap();
    assert_eq!((mask.width(), mask.height()), (96, 80));
    let overlay = image::open(out.join("n8_overlay.png")).unwrap();
    assert_eq!((overlay.width(), overlay.height()), (96, 80));
    let geo: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("n8_nuclei.geojson")).unwrap())
            .unwrap();
    assert_eq!(geo["type"], "FeatureCollection");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("segment.json")).unwrap()).unwrap();
    assert_eq!(summary["images"][0]["width"], 96);

    let eval = dir.join("eval");
    let text = ok(&myoscope(&[
        "segment",
        "evaluate",
        "--model",
        r,
        "--data",
        m,
        "--out",
        eval.to_str().unwrap(),
    ]));
    assert!(text.contains("IoU"), "{text}");
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(eval.join("metrics.json")).unwrap()).unwrap();
    let iou = metrics["metrics"]["iou_micro"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&iou), "{iou}");
    assert_eq!(metrics["metrics"]["images"], 2);

    // Bad input: a missing file, a mask of the wrong size, a corrupt image, no model.
    std::fs::write(
        dir.join("missing.csv"),
        "image,mask,split\nimages/none.png,masks/none.png,train\n",
    )
    .unwrap();
    let missing = dir.join("data/missing.csv");
    std::fs::copy(dir.join("missing.csv"), &missing).unwrap();
    fails_with(
        &myoscope(&[
            "segment",
            "train",
            "--data",
            missing.to_str().unwrap(),
            "--out",
            dir.join("x").to_str().unwrap(),
        ]),
        "missing file",
    );
    let small = ImageBuffer::<Luma<u16>, _>::new(10, 10);
    small.save(dir.join("data/masks/small.png")).unwrap();
    let sized = dir.join("data/sized.csv");
    std::fs::write(
        &sized,
        "image,mask,split\nimages/n0.png,masks/small.png,train\n",
    )
    .unwrap();
    fails_with(
        &myoscope(&[
            "segment",
            "train",
            "--data",
            sized.to_str().unwrap(),
            "--out",
            dir.join("y").to_str().unwrap(),
            "--device",
            "cpu",
        ]),
        "10",
    );
    let corrupt = dir.join("corrupt.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    fails_with(
        &myoscope(&[
            "segment",
            "predict",
            "--model",
            r,
            "--out",
            out.to_str().unwrap(),
            corrupt.to_str().unwrap(),
        ]),
        "corrupt.png",
    );
    fails_with(
        &myoscope(&[
            "segment",
            "predict",
            "--model",
            dir.to_str().unwrap(),
            image.to_str().unwrap(),
        ]),
        "segment train",
    );

    // Real multi-page TIFFs: an unknown channel lists the names; the Vectra DAPI page gives a
    // mask of exactly its size.
    let Some(shared) = shared_data() else { return };
    let component =
        shared.join("multiplex/phenoptr_inform_sample/FIHC4__0929309_HP_IM3_2_component_data.tif");
    fails_with(
        &myoscope(&[
            "segment",
            "predict",
            "--model",
            r,
            "--channel",
            "Hoechst",
            "--out",
            out.to_str().unwrap(),
            component.to_str().unwrap(),
        ]),
        "DAPI",
    );
    let qptiff = shared.join("multiplex/pathml_vectra_qptiff/small_vectra.qptiff");
    ok(&myoscope(&[
        "segment",
        "predict",
        "--model",
        r,
        "--channel",
        "DAPI",
        "--out",
        out.to_str().unwrap(),
        qptiff.to_str().unwrap(),
    ]));
    let mask = image::open(out.join("small_vectra_mask.png")).unwrap();
    assert_eq!((mask.width(), mask.height()), (1920, 1440));
}
