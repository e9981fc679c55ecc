//! `myoscope multilabel cv` end to end on synthetic two-label images (a red disc, a blue
//! square, either, both): the protocol's files, SWA with recomputed batch norms, a kill and
//! resume that does not retrain finished folds, and clear errors for bad label tables.
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
