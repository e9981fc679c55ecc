//! Integration tests on the real public images in ../shared/data (each skips with a message
//! where that folder is absent): Herlev's grouped manifest, real muscle H&E photos at the
//! paper's camera geometry through the whole predict pipeline, BreakHis CCD JPEGs with slide
//! aggregation, and the TIFF flavours of the muscle set.
mod common;
use myoscope::data::crop::{crop_and_resize, Crop};
use myoscope::data::decode::load_rgb;
use myoscope::data::split::grouped_holdout;
use myoscope::data::{Dataset, ManifestColumns};
use myoscope::inference::{predict, slide_means};
use myoscope::training::{LoadedModel, ModelSpec};
use std::collections::HashSet;
use tch::nn;

#[test]
fn herlev_manifest_groups_never_straddle_the_split() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let cols = ManifestColumns {
        path: "path".into(),
        label: "group".into(),
        slide: None,
        group: Some("image_id".into()),
    };
    let ds =
        Dataset::from_manifest(&data.join("herlev-pap-smear/manifest.csv"), &cols, None).unwrap();
    assert_eq!(ds.samples.len(), 917);
    assert_eq!(ds.classes, vec!["abnormal", "normal"]);
    let split = grouped_holdout(&ds, 0.2, 0);
    let groups = |idx: &[usize]| {
        idx.iter()
            .map(|&i| ds.samples[i].group.clone())
            .collect::<HashSet<_>>()
    };
    assert!(groups(&split.train).is_disjoint(&groups(&split.validation)));
    let frac = split.validation.len() as f64 / 917.0;
    assert!((0.1..0.3).contains(&frac), "{frac}");
    // Herlev cells are small non-square BMP-derived JPEGs: both edge squares decode and resize.
    let img = load_rgb(&ds.samples[0].path).unwrap();
    for crop in Crop::TRAINING {
        assert_eq!(crop_and_resize(&img, crop, 64).dimensions(), (64, 64));
    }
}

/// A randomly initialised aggregated DenseNet, saved as a run directory would hold it.
fn random_model(dir: &std::path::Path, classes: &[&str]) -> LoadedModel {
    let mut spec = ModelSpec {
        model: Default::default(),
        classes: classes.iter().map(|c| c.to_string()).collect(),
    };
    spec.model.arch = "densenet-tiny".into();
    spec.model.input_size = 128;
    tch::manual_seed(0);
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let _net = spec.build(&vs).unwrap();
    let weights = dir.join("w.safetensors");
    vs.save(&weights).unwrap();
    LoadedModel::from_parts(spec, &weights, tch::Device::Cpu).unwrap()
}

#[test]
fn muscle_he_camera_photos_run_through_predict() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let dir = common::scratch("muscle-he");
    let photos: Vec<_> = [
        "31_01_HE_x_400.jpg",
        "31_01_NADH-TR_x_400.jpg",
        "31_01_Tri_x_400.jpg",
    ]
    .iter()
    .map(|f| data.join("muscle-he/impatient_histo").join(f))
    .collect();
    let img = load_rgb(&photos[0]).unwrap();
    assert_eq!(img.dimensions(), (1360, 1024));
    let model = random_model(&dir, &["iim", "non_iim"]);
    let ds = Dataset::unlabelled_files(&photos, &model.spec.classes).unwrap();
    let preds = predict(&model, ds, 2, false).unwrap();
    assert_eq!(preds.len(), 3);
    for p in &preds {
        assert!((p.probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-5);
        assert!(p.truth.is_none());
    }
    // TIFF flavours of the same set (Cellpose H&E tiles, an ImageJ mask) decode too.
    let tif = load_rgb(&data.join("muscle-he/central_nuclei_he/sample_img_01.tif")).unwrap();
    assert_eq!(tif.dimensions(), (1002, 1002));
    assert!(load_rgb(&data.join("muscle-he/myoquant_samples/binary_mask.tif")).is_ok());
}

#[test]
fn breakhis_slides_average_their_photos() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let dir = common::scratch("breakhis");
    let cols = ManifestColumns {
        path: "path".into(),
        label: "group".into(),
        slide: Some("slide".into()),
        group: Some("patient".into()),
    };
    let model = random_model(&dir, &["benign", "malignant"]);
    let ds = Dataset::from_manifest(
        &data.join("breakhis-40x/manifest.csv"),
        &cols,
        Some(&model.spec.classes),
    )
    .unwrap();
    assert_eq!(ds.samples.len(), 12);
    let preds = predict(&model, ds, 4, false).unwrap();
    let slides = slide_means(&preds, &model.spec.classes);
    assert_eq!(slides.iter().map(|s| s.images).sum::<usize>(), 12);
    for s in &slides {
        let members: Vec<_> = preds
            .iter()
            .filter(|p| p.slide.as_deref() == Some(s.slide.as_str()))
            .collect();
        let mean0 = members.iter().map(|p| p.probabilities[0]).sum::<f64>() / members.len() as f64;
        assert!((s.probabilities[0] - mean0).abs() < 1e-12);
        assert!(s.truth.is_some());
    }
}

/// The Herlev two-step plan (configs/herlev-two-step.toml): every photo lands in the test set
/// or exactly one fold, no field of view straddles them, each fold holds every subtype, and
/// the stages are step 1 plus one step-2 model per group.
#[test]
fn herlev_two_step_plan_is_grouped_and_stratified() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let config_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../configs/herlev-two-step.toml"
    );
    let mut cfg =
        myoscope::cv::CvConfig::from_toml_file(std::path::Path::new(config_path)).unwrap();
    cfg.data.source = data.join("herlev-pap-smear/manifest.csv");
    let dir = common::scratch("herlev-plan");
    let plan = myoscope::cv::Plan::create(&dir, &cfg).unwrap();
    assert_eq!(plan.rows.len(), 917);
    let names: Vec<&str> = plan.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["step1", "step2-abnormal", "step2-normal"]);
    let mut fold_of_group = std::collections::HashMap::new();
    for r in &plan.rows {
        let prev = fold_of_group.insert(r.group.clone(), r.fold.clone());
        assert!(
            prev.is_none() || prev.as_ref() == Some(&r.fold),
            "{} straddles",
            r.group
        );
    }
    for k in 1..=5 {
        let subtypes: HashSet<&str> = plan
            .rows
            .iter()
            .filter(|r| r.fold_number() == Some(k))
            .map(|r| r.label.as_str())
            .collect();
        assert_eq!(subtypes.len(), 7, "fold {k} holds every subtype");
    }
    let test = plan.rows.iter().filter(|r| r.is_test()).count() as f64 / 917.0;
    assert!((0.15..0.25).contains(&test), "test share {test}");
    let step2 = plan.stage("step2-normal").unwrap();
    assert_eq!(plan.test_set(step2).classes.len(), 3);
    let reopened = myoscope::cv::Plan::open(&dir).unwrap();
    assert_eq!(reopened.rows, plan.rows);
}
