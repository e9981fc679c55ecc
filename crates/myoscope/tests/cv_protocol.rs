//! The cross-validation protocol end to end on tiny synthetic slides: set-up, a run stopped
//! after one epoch and resumed, separate fold jobs and the merge step, evaluation, the
//! two-step diagnosis, and the errors a user meets.
mod common;

use common::{scratch, tiny_config};
use myoscope::cv::config::{DiagnosticGroup, Hierarchy};
use myoscope::cv::{run, CvConfig, CvOptions, CvOutcome};
use myoscope::synth::{write_dataset, SynthSpec};
use std::path::{Path, PathBuf};

fn data(dir: &Path) -> PathBuf {
    write_dataset(
        dir,
        &SynthSpec {
            slides_per_class: 4,
            photos_per_slide: 2,
            width: 64,
            height: 48,
            seed: 3,
        },
    )
    .unwrap()
}

fn two_step_config(manifest: &Path) -> CvConfig {
    let t = tiny_config(manifest);
    let mut c = CvConfig {
        data: t.data,
        model: t.model,
        training: t.training,
        hierarchy: Some(Hierarchy {
            positive_group: "myositis".into(),
            groups: vec![
                DiagnosticGroup {
                    name: "myositis".into(),
                    subtypes: vec!["inflammatory".into(), "perifascicular_atrophy".into()],
                },
                DiagnosticGroup {
                    name: "other".into(),
                    subtypes: vec!["normal".into(), "central_nuclei".into()],
                },
            ],
        }),
        ..Default::default()
    };
    c.training.epochs = 2;
    c.cv.folds = 2;
    c.cv.test_fraction = 0.25;
    c.evaluation.bootstrap = 50;
    c
}

fn opts(out: &Path, config: Option<CvConfig>) -> CvOptions {
    CvOptions {
        out: out.to_path_buf(),
        config,
        fold: None,
        merge_only: false,
        progress: false,
        stop_after: None,
    }
}

fn epochs_done(fold_dir: &Path) -> u64 {
    let text = std::fs::read_to_string(fold_dir.join("checkpoints/state.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["epochs_done"]
        .as_u64()
        .unwrap()
}

#[test]
fn two_step_protocol_resumes_merges_evaluates_and_diagnoses() {
    let d = scratch("cv-two-step");
    let manifest = data(&d.join("data"));
    let cfg = two_step_config(&manifest);
    let out = d.join("ens");

    // Interrupted after one epoch of the first fold: nothing merged yet.
    let stopped = run(&CvOptions {
        stop_after: Some(1),
        ..opts(&out, Some(cfg.clone()))
    })
    .unwrap();
    assert!(matches!(stopped, CvOutcome::FoldsDone(_)));
    assert_eq!(epochs_done(&out.join("step1/fold-1")), 1);
    assert!(!out.join("ensemble.json").exists());

    // Continued without a config: the saved one is used, fold 1 resumes at epoch 2.
    let merged = run(&opts(&out, None)).unwrap();
    let CvOutcome::Merged(manifest) = merged else {
        panic!("expected a merged ensemble");
    };
    let names: Vec<&str> = manifest
        .stages
        .iter()
        .map(|s| s.stage.name.as_str())
        .collect();
    assert_eq!(names, ["step1", "step2-myositis", "step2-other"]);
    assert!(manifest.stages.iter().all(|s| s.models.len() == 2));
    assert_eq!(epochs_done(&out.join("step1/fold-1")), 2);
    let run_log = std::fs::read_to_string(out.join("step2-other/fold-2/run.json")).unwrap();
    assert!(
        run_log.contains("\"seed\": 2"),
        "fold k is seeded with seed + k: {run_log}"
    );

    // Step-2 models start from the step-1 trunk: their first-epoch trunk differs from a
    // fresh initialisation, and their heads have the subtype count.
    let spec = std::fs::read_to_string(out.join("step2-myositis/fold-1/model.json")).unwrap();
    assert!(spec.contains("perifascicular_atrophy"));

    let ens = myoscope::ensemble::Ensemble::open(&out).unwrap();
    let plan = myoscope::cv::Plan::open(&out).unwrap();
    let metrics = myoscope::evaluation::cv_report::evaluate(
        &ens,
        &plan,
        &myoscope::evaluation::cv_report::EvaluateOptions {
            device: tch::Device::Cpu,
            batch_size: 8,
            progress: false,
        },
    )
    .unwrap();
    assert_eq!(metrics.primary_stage, "step1");
    assert_eq!(metrics.positive_class.as_deref(), Some("myositis"));
    assert_eq!(metrics.per_slide.n, 4, "one test slide per subtype");
    assert!(metrics.per_image.accuracy >= 0.0 && metrics.per_image.accuracy <= 1.0);
    let step1 = &metrics.stages[0];
    assert_eq!(step1.folds.len(), 2);
    assert_eq!(step1.folds[0].test_slides, 4);
    assert_eq!(
        step1.folds[0].train_images + step1.folds[0].validation_images + step1.folds[0].test_images,
        32
    );
    let t = step1
        .thresholds
        .as_ref()
        .expect("binary step has thresholds");
    let sf = t
        .sensitivity_first
        .expect("positive validation slides exist");
    assert_eq!(
        t.validation_per_slide.unwrap().counts.fn_,
        0,
        "threshold {sf} misses no validation positive"
    );
    let two = metrics.two_step.as_ref().expect("two-step report");
    assert_eq!(two.slides, 4);

    let report_dir = d.join("report");
    let html = myoscope::evaluation::report::write_all(&report_dir, &metrics).unwrap();
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(text.contains("<svg") && text.contains("Per fold"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report_dir.join("metrics.json")).unwrap())
            .unwrap();
    for level in ["per_image", "per_slide"] {
        assert!(json[level]["accuracy"].is_number(), "{level}");
        assert!(json[level].get("auc").is_some(), "{level}");
    }
    let pngs = std::fs::read_dir(&report_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "png")
        })
        .count();
    assert!(pngs >= 4, "ROC and confusion pictures as PNG, found {pngs}");

    // Diagnose one slide from a folder of its photos.
    let slide_dir = d.join("slide-x");
    std::fs::create_dir_all(&slide_dir).unwrap();
    let photo = plan.rows.iter().find(|r| r.is_test()).unwrap();
    std::fs::copy(&photo.path, slide_dir.join("a.png")).unwrap();
    let mut ds = myoscope::data::Dataset::unlabelled_files(
        &[slide_dir.join("a.png")],
        &ens.manifest.stages[0].stage.classes,
    )
    .unwrap();
    ds.samples[0].slide = Some("slide-x".into());
    let dx = myoscope::diagnose::diagnose(
        &ens,
        &ds,
        &myoscope::diagnose::DiagnoseOptions {
            threshold: Some(0.3),
            uncertainty_band: None,
            batch_size: 4,
            device: tch::Device::Cpu,
            progress: false,
            engine: myoscope::onnx::Engine::Torch,
        },
    )
    .unwrap();
    assert_eq!(dx.len(), 1);
    let total: f64 = dx[0].group_probabilities.values().sum();
    assert!((total - 1.0).abs() < 1e-5);
    assert_eq!(dx[0].call == "myositis", dx[0].positive_probability >= 0.3);
    assert_eq!(dx[0].subtype_probabilities.len(), 2);
}

#[test]
fn fold_jobs_run_apart_and_merge_checks_their_configs() {
    let d = scratch("cv-folds");
    let manifest = data(&d.join("data"));
    let mut cfg = two_step_config(&manifest);
    cfg.hierarchy = None;
    cfg.training.epochs = 1;
    let out = d.join("ens");
    run(&CvOptions {
        fold: Some(2),
        ..opts(&out, Some(cfg.clone()))
    })
    .unwrap();
    let early = run(&CvOptions {
        merge_only: true,
        ..opts(&out, None)
    });
    let msg = format!("{:#}", early.err().unwrap());
    assert!(
        msg.contains("main fold 1") && msg.contains("--fold"),
        "{msg}"
    );
    run(&CvOptions {
        fold: Some(1),
        ..opts(&out, None)
    })
    .unwrap();

    // A fold folder from another configuration is refused by name.
    let fold_cfg = out.join("main/fold-1/config.toml");
    let text = std::fs::read_to_string(&fold_cfg).unwrap();
    std::fs::write(&fold_cfg, text.replace("grid = 2", "grid = 1")).unwrap();
    let msg = format!(
        "{:#}",
        run(&CvOptions {
            merge_only: true,
            ..opts(&out, None)
        })
        .err()
        .unwrap()
    );
    assert!(
        msg.contains("fold-1") && msg.contains("model.grid"),
        "{msg}"
    );
    std::fs::write(&fold_cfg, text).unwrap();
    let merged = run(&CvOptions {
        merge_only: true,
        ..opts(&out, None)
    })
    .unwrap();
    assert!(matches!(merged, CvOutcome::Merged(_)));

    // The same --out with another config is refused, naming the difference.
    let mut other = cfg.clone();
    other.model.arch = "resnet18".into();
    let msg = format!("{:#}", run(&opts(&out, Some(other))).err().unwrap());
    assert!(msg.contains("model.arch"), "{msg}");
}

#[test]
fn bad_protocols_are_refused_with_the_fix() {
    let d = scratch("cv-bad");
    let manifest = data(&d.join("data"));
    let mut cfg = two_step_config(&manifest);
    cfg.cv.folds = 5;
    let msg = format!(
        "{:#}",
        run(&opts(&d.join("a"), Some(cfg.clone()))).err().unwrap()
    );
    assert!(
        msg.contains("too few slides/groups for 5 folds") && msg.contains("lower cv.folds"),
        "{msg}"
    );

    let mut cfg = two_step_config(&manifest);
    cfg.hierarchy.as_mut().unwrap().groups[1].subtypes[1] = "centronuclear".into();
    let msg = format!("{:#}", run(&opts(&d.join("b"), Some(cfg))).err().unwrap());
    assert!(
        msg.contains("'centronuclear'") && msg.contains("central_nuclei"),
        "{msg}"
    );

    let msg = format!("{:#}", run(&opts(&d.join("c"), None)).err().unwrap());
    assert!(msg.contains("--config"), "{msg}");
}
