//! Training writes a complete run directory, and an interrupted run resumes from its last
//! finished epoch to exactly the result of an uninterrupted one.
mod common;
use myoscope::training::{train, TrainOptions};

#[test]
fn interrupted_run_resumes_to_the_same_result() {
    let dir = common::scratch("resume");
    let manifest = common::tiny_synthetic(&dir.join("data"));
    let cfg = common::tiny_config(&manifest);

    let whole = dir.join("whole");
    let full = train(
        &cfg,
        &TrainOptions {
            out: whole.clone(),
            resume: false,
            progress: false,
            stop_after: None,
            split: None,
            init_from: None,
        },
    )
    .unwrap();
    assert_eq!(full.epochs.len(), 3);
    for f in [
        "config.toml",
        "run.json",
        "split.json",
        "model.json",
        "metrics.json",
        "best.safetensors",
        "checkpoints/state.json",
    ] {
        assert!(whole.join(f).is_file(), "{f} missing");
    }
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(whole.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["seed"], 0);
    assert_eq!(run["data_sha256"].as_str().unwrap().len(), 64);
    assert!(run["backend"]["libtorch_version"]
        .as_str()
        .unwrap()
        .starts_with("2.13"));

    let parts = dir.join("parts");
    let first = train(
        &cfg,
        &TrainOptions {
            out: parts.clone(),
            resume: false,
            progress: false,
            stop_after: Some(1),
            split: None,
            init_from: None,
        },
    )
    .unwrap();
    assert_eq!(first.epochs.len(), 1);
    // Starting again without --resume must refuse rather than overwrite.
    let err = train(
        &cfg,
        &TrainOptions {
            out: parts.clone(),
            resume: false,
            progress: false,
            stop_after: None,
            split: None,
            init_from: None,
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("--resume"), "{err}");
    let rest = train(
        &cfg,
        &TrainOptions {
            out: parts.clone(),
            resume: true,
            progress: false,
            stop_after: None,
            split: None,
            init_from: None,
        },
    )
    .unwrap();
    assert_eq!(rest.epochs.len(), 3);
    assert_eq!(rest.epochs[0], first.epochs[0]);
    for (a, b) in rest.epochs.iter().zip(&full.epochs) {
        assert_eq!(a.epoch, b.epoch);
        assert!(
            (a.train_loss - b.train_loss).abs() < 1e-4,
            "epoch {}: {} vs {}",
            a.epoch,
            a.train_loss,
            b.train_loss
        );
        assert!((a.validation_accuracy - b.validation_accuracy).abs() < 1e-9);
    }
    // Only the latest checkpoint is kept.
    let ckpts: Vec<_> = std::fs::read_dir(parts.join("checkpoints"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(ckpts.len(), 2, "{ckpts:?}");
}

#[test]
fn resume_without_a_checkpoint_says_so() {
    let dir = common::scratch("noresume");
    let manifest = common::tiny_synthetic(&dir.join("data"));
    let cfg = common::tiny_config(&manifest);
    let err = train(
        &cfg,
        &TrainOptions {
            out: dir.join("nothing"),
            resume: true,
            progress: false,
            stop_after: None,
            split: None,
            init_from: None,
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("no checkpoint"), "{err}");
}
