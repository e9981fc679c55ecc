//! `myoscope multilabel cv` end to end on synthetic two-label images (a red disc, a blue
//! square, either, both): the protocol's files, SWA with recomputed batch norms, a kill and
//! resume that does not retrain finished folds, and clear errors for bad label tables;
//! `multilabel predict` with one fold model and the cv ensemble, and its errors; the run
//! manifest's record of the preset and of registry weights.
mod common;

use image::{Rgb, RgbImage};
use std::path::Path;
use std::process::{Command, Output};

fn myoscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_myoscope"))
        .args(args)
        .output()
        .expect("run myoscope")
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// 30 photos of 15 patients; labels from what is drawn.
fn synthetic_set(dir: &Path) -> std::path::PathBuf {
    let mut csv = String::from("path,labels,patient\n");
    for i in 0..30u32 {
        let (red, blue) = (i % 3 != 1, i % 3 != 0);
        let img = RgbImage::from_fn(48, 40, |x, y| {
            let mut p = Rgb([235u8, 225, 230]);
            let (dx, dy) = (x as i32 - 14, y as i32 - 20);
            if red && dx * dx + dy * dy < 64 {
                p = Rgb([200, 30, 40]);
            }
            if blue && (30..42).contains(&x) && (14..26).contains(&y) {
                p = Rgb([30, 40, 200]);
            }
            p
        });
        let name = format!("img{i:02}.png");
        img.save(dir.join(&name)).unwrap();
        let mut labels = Vec::new();
        if red {
            labels.push("red_disc");
        }
        if blue {
            labels.push("blue_square");
        }
        csv.push_str(&format!("{name},{},p{}\n", labels.join(";"), i / 2));
    }
    let path = dir.join("labels.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

#[test]
fn cv_runs_resumes_and_reports() {
    let dir = common::scratch("multilabel-cv");
    let labels = synthetic_set(&dir);
    let out = dir.join("run");
    let (labels_s, out_s) = (labels.to_str().unwrap(), out.to_str().unwrap());
    let args = [
        "multilabel",
        "cv",
        "--labels",
        labels_s,
        "--out",
        out_s,
        "--arch",
        "densenet-tiny",
        "--input-size",
        "32",
        "--group",
        "patient",
        "--folds",
        "3",
        "--epochs",
        "3",
        "--swa-start",
        "2",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--quiet",
    ];
    let mut first: Vec<&str> = args.to_vec();
    first.extend(["--stop-after-models", "1"]);
    let run = myoscope(&first);
    assert!(run.status.success(), "{}", text(&run));
    assert!(text(&run).contains("--resume"), "{}", text(&run));
    let fold0 = out.join("seed-0/fold-0/fold.json");
    let stamp = std::fs::metadata(&fold0).unwrap().modified().unwrap();
    assert!(!out.join("cv_metrics.json").exists());

    let again = myoscope(&["multilabel", "cv", "--out", out_s, "--resume", "--quiet"]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        std::fs::metadata(&fold0).unwrap().modified().unwrap(),
        stamp,
        "a finished fold is not retrained"
    );
    for f in [
        "config.toml",
        "run.json",
        "folds.csv",
        "summary.md",
        "f1_per_class.svg",
        "f1_per_class.png",
        "seed-0/fold-2/best.safetensors",
        "seed-0/fold-2/thresholds.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert!(
        !out.join("seed-0/fold-2/checkpoints").exists(),
        "a finished fold drops its training checkpoints"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("cv_metrics.json")).unwrap())
            .unwrap();
    assert_eq!(report["models"], 3);
    assert_eq!(report["scored_on"], "test");
    assert_eq!(report["classes"][0], "blue_square");
    let macro_f1 = report["macro_f1"]["mean"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&macro_f1), "{report}");
    assert_eq!(report["ensembles"].as_array().unwrap().len(), 1);

    let fold: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("seed-0/fold-1/fold.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(fold["kept"], "swa");
    assert_eq!(fold["swa_epochs"], 2, "epochs 2 and 3 are averaged");
    assert!(fold["batch_norms_recomputed"].as_u64().unwrap() > 0);
    // Folds are grouped: both photos of a patient share a part.
    let folds = std::fs::read_to_string(out.join("folds.csv")).unwrap();
    let mut part_of = std::collections::HashMap::new();
    for line in folds.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let prev = part_of.insert(f[1].to_string(), f[2].to_string());
        if let Some(p) = prev {
            assert_eq!(p, f[2], "patient {} split across parts", f[1]);
        }
    }

    // The run refuses to be overwritten.
    let twice = myoscope(&args);
    assert!(!twice.status.success());
    assert!(text(&twice).contains("--resume"), "{}", text(&twice));

    // The manifest says which preset ran and that no weights were used.
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["preset"], "corrected");
    assert!(run.get("pretrained").is_none(), "{run}");

    predict_with_the_run(&dir, &out);
}

/// `multilabel predict` on the run of `cv_runs_resumes_and_reports`.
fn predict_with_the_run(dir: &Path, out: &Path) {
    let images: Vec<String> = (0..4)
        .map(|i| dir.join(format!("img{i:02}.png")).display().to_string())
        .collect();
    let predict = |model: &Path, into: &Path| -> serde_json::Value {
        let mut args = vec![
            "multilabel".to_string(),
            "predict".into(),
            "--model".into(),
            model.display().to_string(),
            "--out".into(),
            into.display().to_string(),
            "--device".into(),
            "cpu".into(),
        ];
        args.extend(images.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = myoscope(&args);
        assert!(run.status.success(), "{}", text(&run));
        serde_json::from_str(&std::fs::read_to_string(into.join("predictions.json")).unwrap())
            .unwrap()
    };
    let ensemble = predict(out, &dir.join("pred-ensemble"));
    assert_eq!(ensemble["models"], 3);
    assert_eq!(ensemble["classes"][0], "blue_square");
    // The ensemble's probabilities are the mean of the fold models', its thresholds the mean of
    // the thresholds each fold saved, and a class is called where it reaches its threshold.
    let mut mean_probs = vec![vec![0.0; 2]; 4];
    let mut mean_thresholds = [0.0; 2];
    for k in 0..3 {
        let fold_dir = out.join(format!("seed-0/fold-{k}"));
        let single = predict(&fold_dir, &dir.join(format!("pred-fold-{k}")));
        assert_eq!(single["models"], 1);
        let saved: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fold_dir.join("thresholds.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(single["thresholds"], saved["thresholds"]);
        for c in 0..2 {
            mean_thresholds[c] += saved["thresholds"][c].as_f64().unwrap() / 3.0;
            for (i, row) in mean_probs.iter_mut().enumerate() {
                row[c] += single["predictions"][i]["probabilities"][c]
                    .as_f64()
                    .unwrap()
                    / 3.0;
            }
        }
    }
    for c in 0..2 {
        let t = ensemble["thresholds"][c].as_f64().unwrap();
        assert!(
            (t - mean_thresholds[c]).abs() < 1e-12,
            "{t} vs {mean_thresholds:?}"
        );
    }
    for (i, row) in mean_probs.iter().enumerate() {
        let p = &ensemble["predictions"][i];
        assert_eq!(p["image"], images[i].as_str());
        let mut called = Vec::new();
        for c in 0..2 {
            let got = p["probabilities"][c].as_f64().unwrap();
            assert!(
                (got - row[c]).abs() < 1e-9,
                "image {i} class {c}: {got} vs {}",
                row[c]
            );
            if got >= mean_thresholds[c] {
                called.push(ensemble["classes"][c].as_str().unwrap());
            }
        }
        let labels: Vec<&str> = p["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert_eq!(labels, called, "image {i}");
    }
    let csv = std::fs::read_to_string(dir.join("pred-ensemble/predictions.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("image,blue_square,red_disc,labels"));
    assert_eq!(lines.count(), 4);

    // A manifest: its image column, paths relative to it.
    let manifest = myoscope(&[
        "multilabel",
        "predict",
        "--model",
        out.to_str().unwrap(),
        "--manifest",
        dir.join("labels.csv").to_str().unwrap(),
        "--out",
        dir.join("pred-manifest").to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert!(manifest.status.success(), "{}", text(&manifest));
    let csv = std::fs::read_to_string(dir.join("pred-manifest/predictions.csv")).unwrap();
    assert_eq!(csv.lines().count(), 31);

    // Bad input: a missing image, a corrupt one, a grey one, a folder without models.
    std::fs::write(dir.join("broken.png"), b"\x89PNG\r\n\x1a\nnot an image").unwrap();
    image::GrayImage::from_pixel(20, 20, image::Luma([128]))
        .save(dir.join("grey.png"))
        .unwrap();
    let model_s = out.to_str().unwrap();
    for (file, expect) in [
        ("absent.png", "does not exist"),
        ("broken.png", "corrupt"),
        ("grey.png", "1 channel"),
    ] {
        let path = dir.join(file);
        let run = myoscope(&[
            "multilabel",
            "predict",
            "--model",
            model_s,
            path.to_str().unwrap(),
        ]);
        assert!(!run.status.success(), "{file}");
        let msg = text(&run);
        assert!(
            msg.contains(expect) && !msg.contains("panicked"),
            "{file}: {msg}"
        );
    }
    let grey = dir.join("grey.png");
    let run = myoscope(&[
        "multilabel",
        "predict",
        "--model",
        model_s,
        "--allow-grey",
        grey.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let run = myoscope(&[
        "multilabel",
        "predict",
        "--model",
        dir.to_str().unwrap(),
        &images[0],
    ]);
    assert!(!run.status.success());
    assert!(
        text(&run).contains("holds no multi-label model"),
        "{}",
        text(&run)
    );
}

/// `--weights NAME`: the run manifest records the weights' name, architecture and both checksums.
#[test]
fn registry_weights_are_recorded_in_the_run_manifest() {
    use myoscope::models::build_backbone;
    use myoscope::training::checkpoint::{save_tensors, sorted_variables};

    let dir = common::scratch("multilabel-weights");
    let labels = synthetic_set(&dir);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _trunk = build_backbone("densenet-tiny", &vs.root(), 3).unwrap();
    let file = dir.join("tiny-trunk.safetensors");
    save_tensors(&file, &sorted_variables(&vs)).unwrap();
    let registry = dir.join("registry");
    let import = Command::new(env!("CARGO_BIN_EXE_myoscope"))
        .args([
            "weights",
            "--registry",
            registry.to_str().unwrap(),
            "import",
        ])
        .arg(&file)
        .args(["--arch", "densenet-tiny", "--name", "tiny-test"])
        .output()
        .unwrap();
    assert!(import.status.success(), "{}", text(&import));
    let entry: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(registry.join("tiny-test/weights.json")).unwrap(),
    )
    .unwrap();

    let out = dir.join("run");
    let run = Command::new(env!("CARGO_BIN_EXE_myoscope"))
        .env("MYOSCOPE_WEIGHTS", &registry)
        .args(["multilabel", "cv", "--labels"])
        .arg(&labels)
        .arg("--out")
        .arg(&out)
        .args([
            "--weights",
            "tiny-test",
            "--preset",
            "faithful",
            "--input-size",
            "32",
            "--folds",
            "3",
            "--epochs",
            "1",
            "--seeds",
            "0",
            "--stop-after-models",
            "1",
            "--device",
            "cpu",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    let p = &manifest["pretrained"];
    assert_eq!(p["name"], "tiny-test");
    assert_eq!(p["arch"], "densenet-tiny");
    assert_eq!(p["weights_sha256"], entry["weights_sha256"]);
    assert_eq!(p["source_sha256"], entry["source"]["sha256"]);
    assert_eq!(manifest["preset"], "faithful");
}

#[test]
fn bad_label_tables_are_clear_errors() {
    let dir = common::scratch("multilabel-bad");
    let labels = synthetic_set(&dir);
    let bad = dir.join("bad.csv");
    let mut table = std::fs::read_to_string(&labels).unwrap();
    table.push_str("img00.png,red_disc;green_star,p99\nnowhere.png,red_disc,p98\n");
    std::fs::write(&bad, table).unwrap();
    let out = dir.join("run");
    let run = myoscope(&[
        "multilabel",
        "cv",
        "--labels",
        bad.to_str().unwrap(),
        "--classes",
        "red_disc,blue_square",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(!run.status.success());
    let msg = text(&run);
    assert!(msg.contains("line 32: label 'green_star'"), "{msg}");
    assert!(
        msg.contains("line 33: image") && msg.contains("nowhere.png"),
        "{msg}"
    );
    assert!(!msg.contains("panicked"), "{msg}");

    // A class that no training image carries stops the fold with its name.
    let rare = dir.join("rare.csv");
    let mut table = std::fs::read_to_string(&labels).unwrap();
    table = table.replacen("img00.png,red_disc", "img00.png,red_disc;rare", 1);
    std::fs::write(&rare, table).unwrap();
    let run = myoscope(&[
        "multilabel",
        "cv",
        "--labels",
        rare.to_str().unwrap(),
        "--out",
        dir.join("run-rare").to_str().unwrap(),
        "--arch",
        "densenet-tiny",
        "--input-size",
        "32",
        "--folds",
        "3",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--quiet",
    ]);
    assert!(!run.status.success());
    assert!(
        text(&run).contains("no training sample carries rare"),
        "{}",
        text(&run)
    );
}
