//! Our segmentation counts, IoU, Dice, accuracy and pixel accuracy equal
//! segmentation_models_pytorch 0.6.0's on the cases in fixtures/smp_metrics.json (regenerate with
//! `.venv-ref/bin/python scripts/seg_metrics_oracle.py`). smp computes in float32, hence 1e-6.
use myoscope::segmentation::metrics::{
    score, score_per_image_per_class, ImageCounts, MaskMode, Metric, MetricsAccumulator, Reduction,
};
use serde_json::Value;

const TOLERANCE: f64 = 1e-6;

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/smp_metrics.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

/// smp's NaN (micro reduction, every count zero) is null in the fixture; ours is zero_division.
fn smp_value(v: &Value, zero_division: f64) -> f64 {
    v.as_f64().unwrap_or_else(|| {
        assert!(v.is_null(), "{v} is not a score");
        zero_division
    })
}

fn assert_close(what: &str, ours: f64, smp: f64) {
    assert!(
        (ours - smp).abs() <= TOLERANCE,
        "{what}: ours {ours} vs smp {smp} (difference {})",
        (ours - smp).abs()
    );
}

struct Case {
    name: String,
    mode: MaskMode,
    zero_division: f64,
    images: Vec<ImageCounts>,
    report: myoscope::segmentation::metrics::SegmentationReport,
    raw: Value,
}

fn cases() -> Vec<Case> {
    let f = fixture();
    f["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let mode = match c["mode"].as_str().unwrap() {
                "binary" => MaskMode::Binary,
                _ => MaskMode::Multiclass {
                    num_classes: c["num_classes"].as_u64().unwrap() as usize,
                },
            };
            let zero_division = c["zero_division"].as_f64().unwrap();
            let shape = ints(&c["shape"]);
            let per = (shape[1] * shape[2]) as usize;
            let (pred, truth) = (ints(&c["predicted"]), ints(&c["truth"]));
            let mut acc = MetricsAccumulator::new(mode, zero_division).unwrap();
            for i in 0..shape[0] as usize {
                acc.add_image(
                    &pred[i * per..(i + 1) * per],
                    &truth[i * per..(i + 1) * per],
                )
                .unwrap();
            }
            Case {
                name: c["name"].as_str().unwrap().to_string(),
                mode,
                zero_division,
                images: acc.images().to_vec(),
                report: acc.report().unwrap(),
                raw: c.clone(),
            }
        })
        .collect()
}

#[test]
fn per_image_per_class_counts_equal_smp_get_stats() {
    for case in cases() {
        for (key, pick) in [("tp", 0usize), ("fp", 1), ("fn", 2), ("tn", 3)] {
            let theirs = case.raw["stats"][key].as_array().unwrap();
            assert_eq!(theirs.len(), case.images.len(), "{}", case.name);
            for (image, (ours, theirs)) in case.images.iter().zip(theirs).enumerate() {
                let ours: Vec<i64> = ours
                    .per_class
                    .iter()
                    .map(|c| {
                        [
                            c.true_positive,
                            c.false_positive,
                            c.false_negative,
                            c.true_negative,
                        ][pick] as i64
                    })
                    .collect();
                assert_eq!(ours, ints(theirs), "{} image {image} {key}", case.name);
            }
        }
        assert_eq!(case.images[0].per_class.len(), case.mode.scored_classes());
    }
}

#[test]
fn iou_dice_and_accuracy_equal_smp_under_every_reduction() {
    let mut worst: f64 = 0.0;
    for case in cases() {
        for (name, metric) in [
            ("iou", Metric::Iou),
            ("dice", Metric::Dice),
            ("accuracy", Metric::Accuracy),
        ] {
            for (key, reduction) in [
                ("micro", Reduction::Micro),
                ("macro", Reduction::Macro),
                ("micro-imagewise", Reduction::MicroImagewise),
                ("macro-imagewise", Reduction::MacroImagewise),
            ] {
                let ours = score(metric, reduction, &case.images, case.zero_division).unwrap();
                let theirs = smp_value(&case.raw["scores"][name][key], case.zero_division);
                assert_close(&format!("{} {name} {key}", case.name), ours, theirs);
                worst = worst.max((ours - theirs).abs());
            }
            let ours = score_per_image_per_class(metric, &case.images, case.zero_division);
            let theirs = case.raw["scores"][name]["none"].as_array().unwrap();
            for (i, (o, t)) in ours.iter().zip(theirs).enumerate() {
                let t = t.as_array().unwrap();
                assert_eq!(o.len(), t.len());
                for (c, (o, t)) in o.iter().zip(t).enumerate() {
                    let t = smp_value(t, case.zero_division);
                    assert_close(&format!("{} {name} image {i} class {c}", case.name), *o, t);
                    worst = worst.max((o - t).abs());
                }
            }
        }
    }
    println!("largest difference from smp: {worst:.3e}");
}

#[test]
fn the_report_names_each_reduction_as_smp_computes_it() {
    for case in cases() {
        let r = &case.report;
        let s = &case.raw["scores"];
        let z = case.zero_division;
        let n = &case.name;
        assert_close(
            &format!("{n} iou_micro"),
            r.iou_micro,
            smp_value(&s["iou"]["micro"], z),
        );
        assert_close(
            &format!("{n} iou_macro"),
            r.iou_macro,
            smp_value(&s["iou"]["macro"], z),
        );
        assert_close(
            &format!("{n} iou_micro_imagewise"),
            r.iou_micro_imagewise,
            smp_value(&s["iou"]["micro-imagewise"], z),
        );
        assert_close(
            &format!("{n} iou_macro_imagewise"),
            r.iou_macro_imagewise,
            smp_value(&s["iou"]["macro-imagewise"], z),
        );
        assert_close(
            &format!("{n} dice_micro"),
            r.dice_micro,
            smp_value(&s["dice"]["micro"], z),
        );
        assert_close(
            &format!("{n} dice_macro"),
            r.dice_macro,
            smp_value(&s["dice"]["macro"], z),
        );
        assert_close(
            &format!("{n} dice_macro_imagewise"),
            r.dice_macro_imagewise,
            smp_value(&s["dice"]["macro-imagewise"], z),
        );
        // The per-class vector is the one smp's macro averages.
        let mean_iou = r.iou_per_class.iter().sum::<f64>() / r.iou_per_class.len() as f64;
        assert_close(&format!("{n} mean of iou_per_class"), mean_iou, r.iou_macro);
        // Per image: micro over one image's classes = smp's micro-imagewise term of that image.
        let imagewise = r.per_image.iter().map(|m| m.iou_micro).sum::<f64>() / r.images as f64;
        assert_close(
            &format!("{n} mean of per-image iou_micro"),
            imagewise,
            r.iou_micro_imagewise,
        );
        assert_close(
            &format!("{n} pixel_accuracy"),
            r.pixel_accuracy,
            case.raw["pixel_accuracy"].as_f64().unwrap(),
        );
        for (m, t) in r
            .per_image
            .iter()
            .zip(case.raw["pixel_accuracy_per_image"].as_array().unwrap())
        {
            assert_close(
                &format!("{n} image {} pixel_accuracy", m.image),
                m.pixel_accuracy,
                t.as_f64().unwrap(),
            );
        }
        let json = serde_json::to_string(r).unwrap();
        assert!(
            !json.contains("null"),
            "{n}: a score is not a number: {json}"
        );
    }
}
